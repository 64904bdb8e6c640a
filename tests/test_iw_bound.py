"""The importance-weighted bound (Burda et al. 2016) against a model whose likelihood is exact,
its K = 1 case against the ELBO, its place in the held-out metrics, and bits per dimension."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vaes.build import build_model, resolve
from vaes.config import TrainConfig
from vaes.data import load_dataset
from vaes.evaluation.likelihood import bits_per_dim, importance_weighted_nll
from vaes.losses import gaussian_nll, kl_standard_normal, squared_error
from vaes.evaluation.metrics import heldout_metrics
from vaes.model import VAE

D, LATENT = 6, 2


class Affine(nn.Module):
    """z (B, d) -> W z + b as a (B, 1, 1, D) "image"; fixed random weights."""

    def __init__(self, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(D, LATENT, generator=g))
        self.bias = nn.Parameter(torch.rand(D, generator=g))

    def forward(self, z):
        return (z @ self.weight.T + self.bias).view(-1, 1, 1, D)


class PriorEncoder(nn.Module):
    """q(z|x) = N(0.3, 0.8^2 I) for every x: a poor posterior, so the ELBO is loose."""

    def forward(self, x):
        mu = torch.full((len(x), LATENT), 0.3)
        return mu, torch.full_like(mu, 2 * math.log(0.8))


@pytest.fixture
def linear_gaussian():
    """p(z) = N(0, I), p(x|z) = N(W z + b, gamma^2 I): p(x) = N(b, W W^T + gamma^2 I), exactly."""
    model = VAE(PriorEncoder(), Affine(seed=1), nn.Identity(), latent_dim=LATENT, output="identity")
    gamma = torch.tensor(0.5)
    x = torch.rand(5, 1, 1, D, generator=torch.Generator().manual_seed(2))
    w, b = model.decoder.weight.detach(), model.decoder.bias.detach()
    exact = torch.distributions.MultivariateNormal(b, w @ w.T + gamma ** 2 * torch.eye(D))
    return model, gamma, x, -exact.log_prob(x.flatten(1)).double()


def neg_elbo(model, x, gamma, samples: int = 20000) -> torch.Tensor:
    """E_q[-log p(x|z)] + KL(q || p) per image, the expectation by many samples."""
    mu, logvar = model.encode(x)
    g = torch.Generator().manual_seed(3)
    z = mu + torch.exp(0.5 * logvar) * torch.randn((samples, *mu.shape), generator=g)
    x_hat = model.decoder(z.flatten(0, 1))
    nll = gaussian_nll(squared_error(x.expand(samples, *x.shape).flatten(0, 1), x_hat), torch.log(gamma), D)
    return nll.view(samples, -1).double().mean(0) + kl_standard_normal(mu, logvar).double()


def test_bound_closes_the_gap_to_the_exact_likelihood(linear_gaussian):
    model, gamma, x, exact = linear_gaussian
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        elbo = neg_elbo(model, x, gamma)
    iw_5000 = importance_weighted_nll(model, x, gamma, k=5000, generator=g)
    iw_10 = importance_weighted_nll(model, x, gamma, k=10, generator=g)
    assert (elbo - exact > 5).all()  # the posterior is poor: the ELBO is nats away from log p(x)
    # -L_K is an estimate whose mean is >= -log p(x); at K = 5000 it is within noise (seen: 0.05)
    # of the exact value, while the ELBO is 6 to 8 nats away, and K = 10 already beats the ELBO
    assert (iw_5000 - exact).abs().max() < 0.1
    assert (iw_10 < elbo - 3).all()


def test_k_equal_one_is_the_elbo_in_expectation(linear_gaussian):
    model, gamma, x, _ = linear_gaussian
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([importance_weighted_nll(model, x, gamma, k=1, generator=g) for _ in range(4000)])
    standard_error = draws.std(0) / math.sqrt(len(draws))
    with torch.no_grad():
        expected = neg_elbo(model, x, gamma)
    assert (draws.mean(0) - expected).abs().max() < 4 * standard_error.max()


def test_k_must_be_positive(linear_gaussian):
    model, gamma, x, _ = linear_gaussian
    with pytest.raises(ValueError, match="k=0"):
        importance_weighted_nll(model, x, gamma, k=0)


def test_bits_per_dim_arithmetic():
    # the uniform density on [0, 1]^D (nll 0) spreads over 256^D bins: exactly 8 bits a dimension
    assert bits_per_dim(0.0, 3072) == pytest.approx(8.0)
    nll, dims = 1234.5, 64
    assert bits_per_dim(nll, dims) == pytest.approx((nll / dims + math.log(256)) / math.log(2))
    assert bits_per_dim(-dims * math.log(2), dims) == pytest.approx(7.0)  # a density of 2 on each axis
    # 17 levels (the digits): the uniform density is log2(17) bits, 256 would add log2(256 / 17)
    assert bits_per_dim(0.0, 64, 17) == pytest.approx(math.log2(17))
    assert bits_per_dim(nll, dims) - bits_per_dim(nll, dims, 17) == pytest.approx(math.log2(256 / 17))
    with pytest.raises(ValueError, match="levels"):
        bits_per_dim(nll, dims, 1)


@pytest.mark.parametrize("variant", ["balanced", "sigma", "beta"])
def test_heldout_metrics_record_the_bound_below_the_negative_elbo(variant):
    """Each variant's own decoder: a running-MSE gamma, sigma's gamma from the data's MSE (its
    gamma() is the last training batch's), Bernoulli where beta has no gamma (no bits per dimension)."""
    torch.manual_seed(0)
    opts = {"likelihood": "bernoulli"} if variant == "beta" else {}
    images = load_dataset("digits").test[:100]
    cfg = resolve(TrainConfig(variant=variant, dataset="digits", options=opts), tuple(images.shape[1:]))
    model = build_model(cfg, tuple(images.shape[1:]))
    m = heldout_metrics(model, images)
    assert m["iw_k"] >= 50 and m["iw_images"] == 100
    assert m["iw_nll"] < m["neg_elbo"]  # an untrained encoder: the gap is wide, far above the noise
    if variant == "sigma":
        assert m["likelihood_gamma_source"] == "held-out MSE"  # no training images given
        assert m["likelihood_gamma"] != pytest.approx(m["gamma"])
        assert m["gamma"] == pytest.approx(1.0)  # untrained: gamma() is its initial buffer, not the data's
    elif variant == "beta":
        assert m["likelihood_gamma"] is None and m["iw_bpd"] is None and m["likelihood_gamma_source"] == "bernoulli"
    else:
        assert m["likelihood_gamma"] == m["gamma"] and m["likelihood_gamma_source"] == "running training MSE"
    if m["iw_bpd"] is not None:
        assert m["iw_bpd"] == pytest.approx(bits_per_dim(m["iw_nll"], 64, 256))
