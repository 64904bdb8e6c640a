"""Held-out metrics computed without Inception: reconstruction error, KL, ELBO and the
importance-weighted bound on one footing, active units, the spread of prior samples.

Active units follow Burda et al. (2016) as used by Dai & Wipf (2019): a latent dimension
is active when the variance over the data of its posterior mean exceeds 0.01.
"""
from __future__ import annotations

import copy
import math

import torch
from torch.utils.flop_counter import FlopCounterMode

from vaes.evaluation.likelihood import iw_metrics
from vaes.losses import bernoulli_nll, gaussian_nll, kl_standard_normal, softclip, squared_error
from vaes.networks import eval_mode

ACTIVE_THRESHOLD = 0.01
# gamma / sqrt(MSE) above this at the end of a stage: gamma has not reached its optimum
# (gamma^2 = MSE for a fixed decoder), so the run is flagged as not converged in tables.
CONVERGED_RATIO = 1.2


def gamma_ratio(history: list[dict] | None) -> float | None:
    """gamma / sqrt(MSE) of a stage's last epoch (1 at the optimum); None without gamma, or
    where gamma never moved (a fixed gamma, as beta's, is not meant to reach the optimum)."""
    history = history or [{}]
    gamma, mse = history[-1].get("gamma"), history[-1].get("mse")
    if gamma is None or mse is None or not mse > 0 or len({h.get("gamma") for h in history}) == 1:
        return None
    return float(gamma) / math.sqrt(float(mse))


def to_float(x_u8: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float 0..1, on the tensor's device."""
    return x_u8.float().div_(255.0)


# The samples whose spread tells a collapsed generator: decode(z), z ~ N(0, I), with their own
# seeded generator; a mean pixel std below one grey level (1/255) is an image that never changes.
SPREAD_SAMPLES = 100
COLLAPSED_SPREAD = 1 / 255
SEED = 0


@torch.no_grad()
def heldout_metrics(model, images: torch.Tensor, *, batch_size: int = 500, bn_eval: str = "debiased",
                    train_images: torch.Tensor | None = None, levels: int = 256) -> dict[str, float]:
    """recon_mse, psnr, kl, neg_elbo (nats per image), active_units, gamma (the variant's own at
    the end of training), sample_spread, and the likelihood on one footing (vaes/evaluation/likelihood.py):
    iw_nll and iw_elbo on the same first held-out images with the same decoder std
    (likelihood_gamma; likelihood_gamma_source says where it came from), their bits
    per dimension at ``levels`` pixel levels (bpd_levels), iw_k, iw_images; heldout_images, the
    count of ``images``; on uint8 images.

    Reconstructions decode the posterior mean; neg_elbo samples z once per image, over all
    ``images``, with the same decoder std (or the Bernoulli likelihood where there is none).
    ``train_images`` (uint8): sigma's test-time std is the root of the MSE over them, as Rybkin
    et al. evaluate with the training data's average MSE; without them, the held-out MSE.
    Eval-mode BatchNorm statistics as ``bn_eval`` says (vaes.networks.eval_mode).
    """
    with eval_mode(model, bn_eval):
        gamma, source = likelihood_gamma(model, images, train_images, batch_size)
        out = _heldout(model, images, batch_size, gamma)
        return {**out, "heldout_images": len(images), "likelihood_gamma_source": source,
                "sample_spread": sample_spread(model),
                **iw_metrics(model, images, gamma, levels=levels)}


def likelihood_gamma(model, images: torch.Tensor, train_images: torch.Tensor | None,
                     batch_size: int = 500) -> tuple[torch.Tensor | None, str]:
    """The decoder std both held-out bounds use, and where it comes from: 'bernoulli' (no std),
    'learned' (a trained parameter), 'running training MSE' (a buffer updated in training),
    'training MSE' (sigma: recomputed over ``train_images``), 'held-out MSE' (sigma without
    them), 'fixed' (gamma = 1 by construction)."""
    gamma, balance = model.gamma(), model.balance
    if gamma is None:
        return None, "bernoulli"
    if getattr(balance, "gamma_is_batch_mse", False):
        # gamma() is the last TRAINING batch's: one batch's noise, not the decoder's variance
        which = "training MSE" if train_images is not None else "held-out MSE"
        mse = sampled_mse(model, train_images if train_images is not None else images, batch_size)
        return softclip(0.5 * torch.log(torch.tensor(mse)), -6.0).exp(), which  # as training clips it
    if isinstance(getattr(balance, "running_mse", None), torch.Tensor):
        return gamma, "running training MSE"
    if any(p.requires_grad for p in balance.parameters()):
        return gamma, "learned"
    return gamma, "fixed"


@torch.no_grad()
def sampled_mse(model, images: torch.Tensor, batch_size: int = 500) -> float:
    """Per-pixel MSE of decode(z), one z ~ q(z|x) per uint8 image (what sigma's training loss
    averages per batch), from a seeded generator so the run's random stream is untouched."""
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(SEED)
    sse, n = 0.0, 0
    for i in range(0, len(images), batch_size):
        x = to_float(images[i:i + batch_size].to(device))
        mu, logvar = model.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g, device=device)
        sse += float(squared_error(x, model.decode(z)).double().sum())
        n += x.numel()
    return sse / n


@torch.no_grad()
def sample_spread(model, n: int = SPREAD_SAMPLES) -> float:
    """Mean over pixels of the std over ``n`` prior samples decode(z), z ~ N(0, I): about 0 for a
    generator whose samples are all one image (below COLLAPSED_SPREAD: collapsed)."""
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(SEED)
    x = model.decode(torch.randn(n, model.latent_dim, generator=g, device=device))
    return float(x.float().flatten(1).std(dim=0).mean())


def _heldout(model, images: torch.Tensor, batch_size: int, gamma: torch.Tensor | None) -> dict[str, float]:
    device = next(model.parameters()).device
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # sse, kl, nelbo, count
    mus = []
    for i in range(0, len(images), batch_size):
        x = to_float(images[i:i + batch_size].to(device))
        mu, logvar = model.encode(x)
        sse = squared_error(x, model.decode(mu))
        out = model(x)
        kl = kl_standard_normal(mu, logvar)
        if gamma is None:
            nll = bernoulli_nll(x, out["logits"])
        else:
            nll = gaussian_nll(squared_error(x, out["x_hat"]), torch.log(gamma.to(device)), x[0].numel())
        sums += torch.stack([sse.sum(), kl.sum(), (nll + kl).sum(), torch.tensor(len(x), device=device)]).double()
        mus.append(mu.float())
    sse, kl, nelbo, n = sums.tolist()
    mse = sse / (n * images[0].numel())
    own = model.gamma()
    return {
        "recon_mse": mse,
        "psnr": 10 * math.log10(1.0 / mse) if mse > 0 else float("inf"),
        "kl": kl / n,
        "neg_elbo": nelbo / n,
        "active_units": int((torch.cat(mus).var(dim=0) > ACTIVE_THRESHOLD).sum()),
        "gamma": None if own is None else float(own),
        "likelihood_gamma": None if gamma is None else float(gamma),
    }


def train_step_flops(model, x: torch.Tensor) -> int:
    """FLOPs of one training step's loss, forward and backward, on batch ``x``, as counted by
    torch's FlopCounterMode (matrix products and convolutions; the optimiser's elementwise
    update is not counted). Measured on a copy of the model under a forked RNG, so the model's
    BatchNorm statistics and the run's random stream are untouched: training is bit-identical
    with or without it."""
    probe = copy.deepcopy(model)
    probe.train()
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), FlopCounterMode(display=False) as counter:
        probe.loss(x)["loss"].backward()
    return int(counter.get_total_flops())
