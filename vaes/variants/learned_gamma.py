"""VAE with a learned scalar decoder variance (Dai & Wipf, "Diagnosing and Enhancing VAE
Models", ICLR 2019, https://arxiv.org/abs/1903.05789)."""
from __future__ import annotations

import torch
from torch import nn

from vaes.losses import gaussian_nll, kl_standard_normal, squared_error
from vaes.registry import KLWeights, register_variant


@register_variant("learned_gamma")
class LearnedGamma(nn.Module):
    """loss = NLL(gamma) + KL, with log gamma a trainable scalar (init 0) in the same optimiser."""

    def __init__(self, opts, *, shape: tuple[int, ...], latent_dim: int):
        super().__init__()
        self.log_gamma = nn.Parameter(torch.zeros(()))  # gamma = 1 at the start, as in Dai & Wipf

    def loss(self, x, out):
        sse = squared_error(x, out["x_hat"])
        recon = gaussian_nll(sse, self.log_gamma, x[0].numel())
        kl = kl_standard_normal(out["mu"], out["logvar"])
        return {"loss": (recon + kl).mean(), "recon": recon.mean(), "kl": kl.mean(),
                "mse": sse.mean() / x[0].numel()}

    def gamma(self):
        return self.log_gamma.detach().exp()

    @classmethod
    def kl_weights(cls, opts, *, shape, latent_dim, epochs, steps_per_epoch) -> KLWeights:
        """KL weight 1 against the learned gamma: an effective beta of gamma^2 (vaes.balance)."""
        return KLWeights(1.0, [1.0] * len(epochs), "gamma^2, gamma learned (Dai & Wipf 2019)")
