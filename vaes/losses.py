"""Loss terms shared by the variants.

Every term is summed over dimensions per sample, then averaged over the batch, so weights
between terms mean what they say.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, summed over latents. mu, logvar: (B, d) -> (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(dim=1)


def squared_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Sum of squared errors per sample. (B, C, H, W) -> (B,)."""
    return (x - x_hat).pow(2).flatten(1).sum(dim=1)


def gaussian_nll(sse: torch.Tensor, log_gamma: torch.Tensor, dims: int) -> torch.Tensor:
    """Negative log-likelihood of a Gaussian decoder with scalar std gamma, per sample.

    NLL = sum_i (x_i - x_hat_i)^2 / (2 gamma^2) + D log gamma + D/2 log(2 pi).
    sse: (B,) summed squared errors; log_gamma: scalar tensor; dims: D = C*H*W.
    """
    return sse * torch.exp(-2 * log_gamma) / 2 + dims * (log_gamma + HALF_LOG_2PI)


def bernoulli_nll(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy per sample, summed over pixels (x in [0, 1] as soft targets)."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(dim=1)


def softclip(t: torch.Tensor, low: float) -> torch.Tensor:
    """Smooth lower bound: low + softplus(t - low) (Rybkin et al. 2021 clip log sigma at -6)."""
    return low + F.softplus(t - low)


LIKELIHOODS = ("gaussian", "bernoulli")


def check_likelihood(likelihood: str) -> None:
    """The options' check of a unit-variance variant's ``likelihood``."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be 'gaussian' or 'bernoulli', got {likelihood!r}")


def unit_gamma_recon(x: torch.Tensor, out: dict, likelihood: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(recon, sse) per sample of a decoder with gamma = 1: 1/2 sum (x - x_hat)^2 (the Gaussian
    NLL, constants dropped) or the Bernoulli cross-entropy; the squared error either way."""
    sse = squared_error(x, out["x_hat"])
    recon = bernoulli_nll(x, out["logits"]) if likelihood == "bernoulli" else 0.5 * sse
    return recon, sse
