"""Free bits (Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling, "Improved Variational
Inference with Inverse Autoregressive Flow", NeurIPS 2016, https://arxiv.org/abs/1606.04934,
eq. 15).

The latent dimensions are split into K groups z_1..z_K; the KL term is replaced by

    sum_j max(lambda, KL_j),   KL_j = mean over the batch of KL(q(z_j|x) || p(z_j)),

so no group gains anything from carrying fewer than lambda nats (on average over the batch):
below lambda its KL gets no gradient. The reconstruction term is that of ``beta``
(1/2 sum (x - x_hat)^2, gamma = 1, or BCE). ``loss`` is the clamped objective; ``kl`` is the
true, unclamped KL, so records compare with the other variants.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from vaes.losses import check_likelihood, unit_gamma_recon
from vaes.registry import KLWeights, register_variant


@dataclasses.dataclass(frozen=True)
class FreeBitsOptions:
    # lambda, in nats per group. 0.25 is the kl_min of the command that reproduces Table 3
    # (CIFAR-10) in the authors' code, https://github.com/openai/iaf (README: margs.kl_min=0.25).
    free_nats: float = 0.25
    groups: int | None = None      # K; None = every latent dimension its own group (K = d)
    likelihood: str = "gaussian"   # 'gaussian' (1/2 squared error) or 'bernoulli' (cross-entropy)

    def __post_init__(self):
        if not self.free_nats >= 0:
            raise ValueError(f"free_nats must be >= 0 (0 = the plain KL), got {self.free_nats}")
        if self.groups is not None and (not isinstance(self.groups, int) or isinstance(self.groups, bool)
                                        or self.groups < 1):
            raise ValueError(f"groups must be an integer >= 1 that divides the latent dimension "
                             f"(or unset: one group per dimension), got {self.groups!r}")
        check_likelihood(self.likelihood)


@register_variant("free_bits", options=FreeBitsOptions)
class FreeBits(nn.Module):
    """loss = recon + sum_j max(lambda, batch-mean KL of group j)."""

    def __init__(self, opts: FreeBitsOptions, *, shape: tuple[int, ...], latent_dim: int):
        super().__init__()
        self.opts = opts
        self.groups = latent_dim if opts.groups is None else opts.groups
        if latent_dim % self.groups:
            raise ValueError(f"groups={self.groups} must divide the latent dimension {latent_dim} "
                             "(equal, contiguous groups)")

    def loss(self, x, out):
        recon, sse = unit_gamma_recon(x, out, self.opts.likelihood)
        mu, logvar = out["mu"], out["logvar"]
        kl_dims = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1)        # (B, d), sums to the KL
        kl = kl_dims.sum(dim=1)
        kl_groups = kl_dims.mean(dim=0).view(self.groups, -1).sum(dim=1)  # (K,) batch means
        kl_free = kl_groups.clamp_min(self.opts.free_nats).sum()
        return {"loss": recon.mean() + kl_free, "recon": recon.mean(), "kl": kl.mean(),
                "mse": sse.mean() / x[0].numel()}

    def gamma(self):
        return None if self.opts.likelihood == "bernoulli" else torch.ones(())

    @classmethod
    def kl_weights(cls, opts, *, shape, latent_dim, epochs, steps_per_epoch) -> KLWeights:
        """1 where a group's KL is above the clamp, 0 below it (vaes.balance); gamma = 1."""
        return KLWeights(1.0, [1.0] * len(epochs), (
            f"1 above the clamp only: a latent group whose batch KL is below {opts.free_nats:g} nats "
            "gets no KL gradient (weight 0 there)"))
