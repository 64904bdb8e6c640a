"""Held-out metrics computed without Inception: reconstruction error, KL, ELBO, active units.

Active units follow Burda et al. (2016) as used by Dai & Wipf (2019): a latent dimension
is active when the variance over the data of its posterior mean exceeds 0.01.
"""
from __future__ import annotations

import copy
import math

import torch
from torch.utils.flop_counter import FlopCounterMode

from vaes.likelihood import iw_metrics
from vaes.losses import bernoulli_nll, gaussian_nll, kl_standard_normal, squared_error
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


@torch.no_grad()
def heldout_metrics(model, images: torch.Tensor, *, batch_size: int = 500,
                    bn_eval: str = "debiased") -> dict[str, float]:
    """recon_mse, psnr, kl, neg_elbo (nats per image), active_units, gamma, and the
    importance-weighted bound iw_nll, iw_bpd, iw_k, iw_images, iw_gamma (vaes/likelihood.py) on uint8 images.

    Reconstructions decode the posterior mean; the ELBO samples z once per image and uses
    the variant's current gamma (or the Bernoulli likelihood where it has none). Eval-mode
    BatchNorm statistics as ``bn_eval`` says (vaes.networks.eval_mode).
    """
    with eval_mode(model, bn_eval):
        return _heldout(model, images, batch_size)


def _heldout(model, images: torch.Tensor, batch_size: int) -> dict[str, float]:
    device = next(model.parameters()).device
    gamma = model.gamma()
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
    dims = images[0].numel()
    mse = sse / (n * dims)
    mu = torch.cat(mus)
    iw_gamma = gamma
    if gamma is not None and getattr(model.balance, "gamma_is_batch_mse", False):
        # sigma-VAE: gamma() is sqrt(MSE) of the last TRAINING batch; its decoder std on these
        # images is, by the same rule (Rybkin et al.), the root of their own MSE.
        iw_gamma = torch.tensor(math.sqrt(mse))
    return {
        "recon_mse": mse,
        "psnr": 10 * math.log10(1.0 / mse) if mse > 0 else float("inf"),
        "kl": kl / n,
        "neg_elbo": nelbo / n,
        "active_units": int((mu.var(dim=0) > ACTIVE_THRESHOLD).sum()),
        "gamma": None if gamma is None else float(gamma),
        # the importance-weighted bound (Burda et al. 2016) with the decoder std it used
        **iw_metrics(model, images, iw_gamma),
        "iw_gamma": None if iw_gamma is None else float(iw_gamma),
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
