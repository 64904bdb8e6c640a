"""Held-out metrics computed without Inception: reconstruction error, KL, ELBO, active units.

Active units follow Burda et al. (2016) as used by Dai & Wipf (2019): a latent dimension
is active when the variance over the data of its posterior mean exceeds 0.01.
"""
from __future__ import annotations

import math

import torch

from vaes.losses import bernoulli_nll, gaussian_nll, kl_standard_normal, squared_error

ACTIVE_THRESHOLD = 0.01


def to_float(x_u8: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float 0..1, on the tensor's device."""
    return x_u8.float().div_(255.0)


@torch.no_grad()
def heldout_metrics(model, images: torch.Tensor, *, batch_size: int = 500) -> dict[str, float]:
    """recon_mse, psnr, kl, neg_elbo (nats per image), active_units and gamma on uint8 images.

    Reconstructions decode the posterior mean; the ELBO samples z once per image and uses
    the variant's current gamma (or the Bernoulli likelihood where it has none).
    """
    was_training = model.training
    model.eval()
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
    model.train(was_training)
    sse, kl, nelbo, n = sums.tolist()
    dims = images[0].numel()
    mse = sse / (n * dims)
    mu = torch.cat(mus)
    return {
        "recon_mse": mse,
        "psnr": 10 * math.log10(1.0 / mse) if mse > 0 else float("inf"),
        "kl": kl / n,
        "neg_elbo": nelbo / n,
        "active_units": int((mu.var(dim=0) > ACTIVE_THRESHOLD).sum()),
        "gamma": None if gamma is None else float(gamma),
    }
