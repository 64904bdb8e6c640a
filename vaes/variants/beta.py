"""beta-VAE with a fixed decoder variance (Higgins et al., ICLR 2017).

With beta = 1 and gamma = 1 this is the "VAE, fixed gamma" baseline of Dai & Wipf (2019).
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from vaes.losses import check_likelihood, kl_standard_normal, unit_gamma_recon
from vaes.registry import KLWeights, register_variant


@dataclasses.dataclass(frozen=True)
class BetaOptions:
    beta: float = 1.0              # weight of the KL term; 1 is the plain ELBO with gamma = 1
    likelihood: str = "gaussian"   # 'gaussian' (1/2 squared error) or 'bernoulli' (cross-entropy)

    def __post_init__(self):
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        check_likelihood(self.likelihood)


@register_variant("beta", options=BetaOptions)
class Beta(nn.Module):
    """loss = 1/2 sum (x - x_hat)^2 + beta * KL   (or BCE + beta * KL)."""

    def __init__(self, opts: BetaOptions, *, shape: tuple[int, ...], latent_dim: int):
        super().__init__()
        self.opts = opts

    def loss(self, x, out):
        recon, sse = unit_gamma_recon(x, out, self.opts.likelihood)
        kl = kl_standard_normal(out["mu"], out["logvar"])
        loss = recon + self.opts.beta * kl
        return {"loss": loss.mean(), "recon": recon.mean(), "kl": kl.mean(),
                "mse": sse.mean() / x[0].numel()}

    def gamma(self):
        return None if self.opts.likelihood == "bernoulli" else torch.ones(())

    @classmethod
    def kl_weights(cls, opts, *, shape, latent_dim, epochs, steps_per_epoch) -> KLWeights:
        """beta itself: gamma is fixed at 1 (vaes.balance)."""
        return KLWeights(opts.beta, [opts.beta] * len(epochs), f"fixed: gamma = 1, beta = {opts.beta:g}")
