"""The importance-weighted bound on held-out log-likelihood (Burda, Grosse & Salakhutdinov,
"Importance Weighted Autoencoders", ICLR 2016, https://arxiv.org/abs/1509.00519), and bits per
dimension with the data's own number of pixel levels.

log p(x) >= L_K = E[log (1/K) sum_k p(x, z_k) / q(z_k | x)], z_k ~ q(z | x) independently.
L_1 is the ELBO; L_K grows with K and tends to log p(x) (Burda et al., Theorem 1), so
-L_K (``iw_nll``) sits between the true negative log-likelihood and the negative ELBO. The
decoder is each variant's own: Gaussian with its std gamma, or Bernoulli where it has none.

Bits per dimension: a pixel takes one of L levels (L = 256 for 8-bit images; 17 for
scikit-learn's digits, whose values 0..16 are stored scaled to 0..255: vaes/data.py's
``ImageData.levels``). Uniform dequantisation (Theis, van den Oord & Bethge 2016,
https://arxiv.org/abs/1511.01844) turns a density p on [0, 1]^D into a probability of the L^D
bins of width 1/L: -log P(x) <= -log p((v + u) / L) + D log L, so
bpd = (nll + D log L) / (D ln 2). Counting 256 levels on data that has 17 would add
log2(256 / 17) = 3.9 bits to every dimension. Here the density is read at the level's point
v / (L - 1) rather than averaged over the bin (the ELBO's data, so iw_nll and iw_elbo compare);
a decoder std far above the bin width makes the two nearly equal. A Bernoulli decoder is not a
density on [0, 1]^D, so it has no bits per dimension in this convention (None).
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


def bits_per_dim(nll: float, dims: int, levels: int = 256) -> float:
    """Nats per image of a density on [0, 1]^D -> bits per dimension of images whose pixels take
    ``levels`` values: (nll + D log L) / (D ln 2)."""
    if levels < 2:
        raise ValueError(f"bits per dimension need at least 2 pixel levels, got {levels}")
    return (nll + dims * math.log(levels)) / (dims * math.log(2))


@torch.no_grad()
def iw_metrics(model, images: torch.Tensor, gamma: torch.Tensor | None, *, k: int = IW_K,
               n_images: int = IW_IMAGES, batch_size: int = 100, levels: int = 256) -> dict:
    """On the first ``n_images`` uint8 ``images``, with decoder std ``gamma``: iw_nll (-L_K, nats
    per image), iw_elbo (-L_1 on the same images with the same std: the ELBO the NLL_K column
    is compared with), their bits per dimension iw_bpd and iw_elbo_bpd at ``levels`` pixel
    levels (None for a Bernoulli decoder), iw_k, iw_images and bpd_levels. The model must already
    be in eval mode (vaes.evaluation.metrics.heldout_metrics puts it there)."""
    images = images[:n_images]
    nll, elbo = (_mean_bound(model, images, gamma, kk, batch_size) for kk in (k, 1))
    dims = images[0].numel()
    bpd = (lambda v: None) if gamma is None else (lambda v: bits_per_dim(v, dims, levels))
    return {"iw_nll": nll, "iw_elbo": elbo, "iw_bpd": bpd(nll), "iw_elbo_bpd": bpd(elbo),
            "iw_k": k, "iw_images": len(images), "bpd_levels": levels}


def _mean_bound(model, images: torch.Tensor, gamma: torch.Tensor | None, k: int, batch_size: int) -> float:
    """-L_k averaged over ``images``, its samples from the bound's own seeded generator (the
    run's random stream untouched, the same numbers on every evaluation)."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(SEED)
    total = sum(importance_weighted_nll(model, images[i:i + batch_size].to(device).float() / 255.0, gamma,
                                        k=k, generator=generator).sum().item()
                for i in range(0, len(images), batch_size))
    return total / len(images)
