"""The importance-weighted bound on held-out log-likelihood (Burda, Grosse & Salakhutdinov,
"Importance Weighted Autoencoders", ICLR 2016, https://arxiv.org/abs/1509.00519), and bits per
dimension in the 8-bit convention.

log p(x) >= L_K = E[log (1/K) sum_k p(x, z_k) / q(z_k | x)], z_k ~ q(z | x) independently.
L_1 is the ELBO; L_K grows with K and tends to log p(x) (Burda et al., Theorem 1), so
-L_K (``iw_nll``) sits between the true negative log-likelihood and the negative ELBO. The
decoder is each variant's own: Gaussian with its std gamma, or Bernoulli where it has none.

Bits per dimension: images are 8-bit, x in {0..255}^D. Uniform dequantisation (Theis, van den
Oord & Bethge 2016, https://arxiv.org/abs/1511.01844) turns a density p on [0, 1]^D into a
probability of the 256^D bins: -log P(x) <= -log p(x / 256 + u / 256) + D log 256, so
bpd = (nll + D log 256) / (D ln 2). Here the density is read at the bin's point x / 255 rather
than averaged over the bin (the ELBO's data, so iw_nll and neg_elbo compare); a decoder std far
above the bin width 1/256 makes the two nearly equal. A Bernoulli decoder is not a density on
[0, 1]^D, so it has no bits per dimension in this convention (None).
"""
from __future__ import annotations

import math

import torch

from vaes.losses import HALF_LOG_2PI, bernoulli_nll, gaussian_nll, squared_error

# K = 50 samples for each of the first 100 held-out images: 5,000 decodes, about 0.7 s for the
# digits network on a CPU. K = 50 is Burda et al.'s training K; their Table 1 shows most of the
# gain from K = 1 to 5000 already reached there.
IW_K = 50
IW_IMAGES = 100
SEED = 0  # the bound's own generator: the same samples on every evaluation, the run's RNG untouched


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, exp(logvar)) summed over the last dimension."""
    return -0.5 * ((z - mu).pow(2) * torch.exp(-logvar) + logvar).sum(-1) - z.shape[-1] * HALF_LOG_2PI


@torch.no_grad()
def importance_weighted_nll(model, x: torch.Tensor, gamma: torch.Tensor | None, *, k: int = IW_K,
                            generator: torch.Generator | None = None, max_rows: int = 8192) -> torch.Tensor:
    """-L_K per image (nats, (B,), float64) of float images ``x`` in [0, 1]; ``gamma`` is the
    decoder std (None: Bernoulli). Decodes at most ``max_rows`` samples at a time."""
    if k < 1:
        raise ValueError(f"the importance-weighted bound needs k >= 1 samples, got k={k}")
    mu, logvar = model.encode(x)                                    # (B, d) each
    dims = x[0].numel()
    log_w = []
    for start in range(0, k, max(1, max_rows // len(x))):
        m = min(k - start, max(1, max_rows // len(x)))
        eps = torch.randn((m, *mu.shape), generator=generator, device=mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps                      # (m, B, d)
        logits = model.decoder(z.flatten(0, 1))                      # (m B, C, H, W)
        target = x.expand(m, *x.shape).flatten(0, 1)
        if gamma is None:
            log_px = -bernoulli_nll(target, logits)
        else:
            x_hat = torch.sigmoid(logits) if model.output == "sigmoid" else logits
            log_px = -gaussian_nll(squared_error(target, x_hat), torch.log(gamma.to(x.device)), dims)
        log_pz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
        log_qz = log_normal(z, mu, logvar)
        log_w.append(log_px.view(m, -1).double() + (log_pz - log_qz).double())
    log_w = torch.cat(log_w)                                         # (k, B)
    return -(torch.logsumexp(log_w, dim=0) - math.log(k))


def bits_per_dim(nll: float, dims: int) -> float:
    """Nats per image of a density on [0, 1]^D -> bits per dimension of the 8-bit images:
    (nll + D log 256) / (D ln 2)."""
    return (nll + dims * math.log(256)) / (dims * math.log(2))


@torch.no_grad()
def iw_metrics(model, images: torch.Tensor, gamma: torch.Tensor | None, *, k: int = IW_K,
               n_images: int = IW_IMAGES, batch_size: int = 100) -> dict:
    """iw_nll (nats per image), iw_bpd (None for a Bernoulli decoder), iw_k and iw_images on
    the first ``n_images`` uint8 ``images``, with decoder std ``gamma``. The model must already
    be in eval mode (vaes.metrics.heldout_metrics puts it there)."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(SEED)
    images = images[:n_images]
    total = sum(importance_weighted_nll(model, images[i:i + batch_size].to(device).float() / 255.0, gamma,
                                        k=k, generator=generator).sum().item()
                for i in range(0, len(images), batch_size))
    nll = total / len(images)
    return {"iw_nll": nll, "iw_bpd": None if gamma is None else bits_per_dim(nll, images[0].numel()),
            "iw_k": k, "iw_images": len(images)}
