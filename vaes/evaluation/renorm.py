"""The renormalised evaluation of Asperti & Trentin's code, recorded beside vaebench's own.

What runs in asperti/BalancingVAE ``computed_gamma.py`` at its latest commit (d9f3997, May 2020,
``adjust=True``), read from the code rather than the paper; every statistic comes from 10,000
shuffled test images there (``renorm_stats="heldout"``, the default; "train" is offered):

- reconstructions (which decode one z ~ q(z|x) there) are always rescaled about their per-pixel
  mean so that their mean per-pixel spread matches the data's, then clipped to [0, 1];
- the second stage's "variance loss" is measured on the codes: z_hat = decoder2(u), u ~ q(u|mu(x)),
  mse2 = mean (mu - z_hat)^2, var_loss2 = mean var(mu) - mean var(z_hat). Only when
  var_loss2 / mse2 > 0.25 is the "variance law" sqrt(mean(var(mu) + E[sd])) applied: second-stage
  z is rescaled to that spread (its std measured per batch of 100 generated codes) and the
  first-stage prior is widened by it (z ~ N(0, law^2 I));
- generated images would be rescaled like reconstructions, but that branch never runs: its type
  check asks for a Python float and receives the per-pixel std array. Not reproduced, as it
  does not happen there.

The original's ``zlogvar`` is the encoder's log *sigma*, so its "variance law" adds the mean
posterior standard deviation (not variance) to the variance of the means; reproduced as it runs.
"""
from __future__ import annotations

import math

import torch

from vaes.evaluation.metrics import to_float
from vaes.networks import eval_mode

VARIANCE_LOSS_THRESHOLD = 0.25  # computed_gamma.py: adjust only "if there is an evident variance loss"


@torch.no_grad()
def renorm_statistics(model, stage2, images: torch.Tensor, *, seed: int, source: str,
                      bn_eval: str = "debiased", batch: int = 500) -> dict:
    """The numbers the original's adjustment is made of, from uint8 ``images`` (the record's
    ``renorm`` entry). ``prior_scale`` is the variance law where the condition fired, else None;
    one-stage runs have no second stage to test, so their prior is never widened (``fired`` None)."""
    device = next(model.parameters()).device
    mus, sds = [], []
    with eval_mode(model, bn_eval):
        for i in range(0, len(images), batch):
            mu, logvar = model.encode(to_float(images[i:i + batch].to(device)))
            mus.append(mu.double())
            sds.append(torch.exp(0.5 * logvar).double())  # exp(their zlogvar) = exp(log sigma) = sigma
    mu, sd = torch.cat(mus), torch.cat(sds)
    mean_var = mu.var(0, unbiased=False)          # numpy's np.var: ddof 0
    law = float((mean_var + sd.mean(0)).mean().sqrt())
    x = to_float(images.to(device)).double()
    out = {"stats": source, "n_images": len(images), "threshold": VARIANCE_LOSS_THRESHOLD,
           "pixel_std": float(x.std(0, unbiased=False).mean()), "variance_law": law,
           "mse2": None, "var_loss2": None, "ratio": None, "fired": None, "prior_scale": None}
    if stage2 is None:
        return out
    g = torch.Generator(device=device).manual_seed(seed)
    hats = []
    with eval_mode(stage2, bn_eval):
        for i in range(0, len(mu), batch):
            m_u, logvar_u = stage2.encode(mu[i:i + batch].float())
            u = m_u + torch.exp(0.5 * logvar_u) * torch.randn(m_u.shape, generator=g, device=device)
            hats.append(stage2.decode(u).double())  # the original's reconstruct2: decoder2 of a sampled u
    z_hat = torch.cat(hats)
    mse2 = float((mu - z_hat).pow(2).mean())
    var_loss2 = float(mean_var.mean() - z_hat.var(0, unbiased=False).mean())
    # numpy's division as the original does it: x / 0 is +-inf, 0 / 0 is nan (which never fires)
    ratio = var_loss2 / mse2 if mse2 > 0 else None if var_loss2 == 0 else math.copysign(math.inf, var_loss2)
    fired = ratio is not None and ratio > VARIANCE_LOSS_THRESHOLD
    out.update(mse2=mse2, var_loss2=var_loss2, ratio=ratio, fired=fired, prior_scale=law if fired else None)
    return out


def rescale_codes(z: torch.Tensor, target: float, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Second-stage codes rescaled to spread ``target``, per batch of ``batch`` codes as the
    original's generate does (the spread of each 100-code batch: the mean over dimensions of
    the std over codes); returns the codes and each batch's factor."""
    factors = torch.stack([target / c.std(0, unbiased=False).mean() for c in z.split(batch)])
    parts = [c * f for c, f in zip(z.split(batch), factors)]
    return torch.cat(parts), factors.cpu()


def rescale_pixels(x: torch.Tensor, target_std: float) -> tuple[torch.Tensor, float]:
    """Float images in [0, 1] moved about their per-pixel mean so that their mean per-pixel std
    is ``target_std`` (the data's), then clipped to [0, 1] as the original does; returns the
    images and the factor."""
    x = x.double()
    centre = x.mean(0)
    scale = target_std / float(x.std(0, unbiased=False).mean())
    return ((x - centre) * scale + centre).clamp(0, 1).float(), scale

