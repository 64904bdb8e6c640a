"""Balancing reconstruction error and KL with a running average of the MSE
(Asperti & Trentin, "Balancing reconstruction error and Kullback-Leibler divergence in
Variational Autoencoders", IEEE Access 8:199440, 2020, https://arxiv.org/abs/2002.07514).

gamma^2 is not learned: it is m, a running average of the batch MSE, updated after every
training step as m <- min(m, a m + (1 - a) mse). No gradient flows through gamma.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from vaes.losses import gaussian_nll, kl_standard_normal, squared_error
from vaes.registry import KLWeights, register_variant


@dataclasses.dataclass(frozen=True)
class BalancedOptions:
    momentum: float = 0.99                # a in m <- a m + (1 - a) mse (the paper's value)
    monotone: bool = True                 # keep m non-increasing with min(m, .) as the paper's code does
    kl_weight: float | str = "paper"      # k; 'paper' = (2 H / d)^2: 1 for 32x32, 4 for 64x64 at d = 64
    gamma_floor: float = 0.0              # lower bound on gamma (std); 0 disables it

    def __post_init__(self):
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if isinstance(self.kl_weight, str) and self.kl_weight != "paper":
            raise ValueError(f"kl_weight must be a number >= 0 or 'paper', got {self.kl_weight!r}")
        if not isinstance(self.kl_weight, str) and self.kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {self.kl_weight}")
        if self.gamma_floor < 0:
            raise ValueError(f"gamma_floor must be >= 0, got {self.gamma_floor}")


def paper_kl_weight(shape: tuple[int, ...], latent_dim: int) -> float:
    """k = (2 H / d)^2, the weight of the KL term in Asperti & Trentin's code for H x H images;
    1 for vector data (the second stage of a two-stage VAE), where the formula has no meaning."""
    return (2 * shape[-1] / latent_dim) ** 2 if len(shape) == 3 else 1.0


def _k(opts: BalancedOptions, shape: tuple[int, ...], latent_dim: int) -> float:
    return paper_kl_weight(shape, latent_dim) if opts.kl_weight == "paper" else float(opts.kl_weight)


@register_variant("balanced", options=BalancedOptions)
class Balanced(nn.Module):
    """loss = NLL(gamma) + k * KL with gamma^2 = m, the running MSE (a buffer)."""

    def __init__(self, opts: BalancedOptions, *, shape: tuple[int, ...], latent_dim: int):
        super().__init__()
        self.opts = opts
        self.k = _k(opts, shape, latent_dim)
        self.register_buffer("running_mse", torch.ones(()))   # m starts at 1 (gamma = 1)

    def log_gamma(self) -> torch.Tensor:
        log_gamma = 0.5 * torch.log(self.running_mse)
        if self.opts.gamma_floor > 0:
            log_gamma = log_gamma.clamp_min(torch.log(torch.tensor(self.opts.gamma_floor)))
        return log_gamma

    def loss(self, x, out):
        dims = x[0].numel()
        sse = squared_error(x, out["x_hat"])
        recon = gaussian_nll(sse, self.log_gamma(), dims)     # buffer: no gradient through gamma
        kl = kl_standard_normal(out["mu"], out["logvar"])
        return {"loss": (recon + self.k * kl).mean(), "recon": recon.mean(), "kl": kl.mean(),
                "mse": sse.mean() / dims}

    def after_step(self, terms):
        a, m = self.opts.momentum, self.running_mse
        new = a * m + (1 - a) * terms["mse"].detach().float()
        m.copy_(torch.minimum(m, new) if self.opts.monotone else new)

    def gamma(self):
        return self.log_gamma().exp()

    @classmethod
    def kl_weights(cls, opts, *, shape, latent_dim, epochs, steps_per_epoch) -> KLWeights:
        """k against gamma^2 = the running MSE: an effective beta of k gamma^2 (vaes.balance)."""
        k = _k(opts, shape, latent_dim)
        return KLWeights(k, [k] * len(epochs), f"k gamma^2 with k = {k:g}, gamma^2 = running MSE "
                                               "(Asperti & Trentin 2020)")
