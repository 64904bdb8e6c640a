"""Optimal sigma-VAE (Rybkin, Daniilidis & Levine, "Simple and Effective VAE Training with
Calibrated Decoders", ICML 2021, https://arxiv.org/abs/2006.13202).

gamma^2 is the MSE of the current batch: the closed-form optimum of the Gaussian NLL
for a fixed decoder, with no memory across batches. As in the authors' code, the gradient
flows through gamma (at the optimum d NLL / d gamma = 0, so it only adds D/2 log MSE).
"""
from __future__ import annotations

import torch
from torch import nn

from vaes.losses import gaussian_nll, kl_standard_normal, softclip, squared_error
from vaes.registry import KLWeights, register_variant


@register_variant("sigma")
class Sigma(nn.Module):
    """loss = NLL(gamma) + KL with gamma^2 = batch MSE, log gamma soft-clipped at -6."""

    # gamma() reports the last training batch's; held-out metrics take the held-out MSE instead
    gamma_is_batch_mse = True

    def __init__(self, opts, *, shape: tuple[int, ...], latent_dim: int):
        super().__init__()
        # last batch's log gamma, kept only to report it; not used by the loss
        self.register_buffer("last_log_gamma", torch.zeros(()))

    def loss(self, x, out):
        dims = x[0].numel()
        sse = squared_error(x, out["x_hat"])
        mse = sse.mean() / dims
        log_gamma = softclip(0.5 * torch.log(mse), -6.0)
        recon = gaussian_nll(sse, log_gamma, dims)
        kl = kl_standard_normal(out["mu"], out["logvar"])
        if self.training:
            self.last_log_gamma.copy_(log_gamma.detach())
        return {"loss": (recon + kl).mean(), "recon": recon.mean(), "kl": kl.mean(), "mse": mse}

    def gamma(self):
        return self.last_log_gamma.exp()

    @classmethod
    def kl_weights(cls, opts, *, shape, latent_dim, epochs, steps_per_epoch) -> KLWeights:
        """KL weight 1 against gamma^2 = the batch MSE: an effective beta of gamma^2 (vaes.balance)."""
        return KLWeights(1.0, [1.0] * len(epochs), "gamma^2, gamma^2 = last batch MSE (Rybkin et al. 2021)")
