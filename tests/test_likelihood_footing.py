"""The held-out likelihood on one footing: -ELBO and NLL_K on the same images with the same
decoder std, sigma's std from the training data's MSE (Rybkin et al. 2021 evaluate with it),
bits per dimension at the data's own pixel levels, and the spread of a generator's samples."""
from __future__ import annotations

import math

import pytest
import torch

from vaes.build import build_model, resolve
from vaes.config import TrainConfig
from vaes.data import load_dataset
from vaes.evaluation.likelihood import bits_per_dim
from vaes.networks import eval_mode
from vaes.evaluation.metrics import COLLAPSED_SPREAD, heldout_metrics, sample_spread, sampled_mse


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _sigma_model(digits, steps: int = 30):
    """A sigma model trained a few steps, so its last batch's gamma differs from the data's MSE."""
    torch.manual_seed(0)
    cfg = resolve(TrainConfig(variant="sigma", dataset="digits"), digits.shape)
    model = build_model(cfg, digits.shape)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for i in range(steps):
        x = digits.train[(i % 15) * 100:(i % 15 + 1) * 100].float() / 255
        opt.zero_grad()
        model.loss(x)["loss"].backward()
        opt.step()
    return model


def test_digits_have_17_levels_and_their_bpd_counts_them(digits):
    assert digits.levels == 17 and load_dataset("shapes").levels == 256
    # every stored value is one of the 17 scaled levels
    assert len(torch.unique(digits.train)) <= 17


def test_sigma_likelihood_uses_the_training_mse_for_both_bounds(digits):
    model = _sigma_model(digits)
    train = digits.train
    m = heldout_metrics(model, digits.test, train_images=train, levels=digits.levels)
    with eval_mode(model, "debiased"):  # heldout_metrics' default BatchNorm statistics
        mse = sampled_mse(model, train)
    expected = -6.0 + math.log1p(math.exp(0.5 * math.log(mse) + 6.0))  # log gamma soft-clipped as in training
    expected = math.exp(expected)
    assert m["likelihood_gamma_source"] == "training MSE"
    assert m["likelihood_gamma"] == pytest.approx(expected, rel=1e-4)
    assert m["gamma"] != pytest.approx(m["likelihood_gamma"], rel=1e-3)  # not the last batch's
    # the same images: -L_1 and -L_K on the first iw_images held-out images, and -L_K below -L_1
    assert m["iw_images"] == 100 and m["iw_nll"] < m["iw_elbo"]
    # another std (the held-out MSE) moves both bounds: they follow the std recorded
    other = heldout_metrics(model, digits.test, levels=digits.levels)
    assert other["likelihood_gamma_source"] == "held-out MSE"
    assert other["likelihood_gamma"] != pytest.approx(m["likelihood_gamma"], rel=1e-3)
    assert other["iw_elbo"] != pytest.approx(m["iw_elbo"], rel=1e-4)


def test_negative_elbo_over_the_bounds_images_matches_iw_elbo(digits):
    """With all held-out images inside the bound's 100, neg_elbo (analytic KL) and iw_elbo
    (one-sample KL) estimate the same -L_1 with the same std: they agree within Monte Carlo noise."""
    model = _sigma_model(digits)
    m = heldout_metrics(model, digits.test[:100], train_images=digits.train, levels=17)
    assert abs(m["neg_elbo"] - m["iw_elbo"]) < 0.05 * abs(m["iw_elbo"]) + 2.0


def test_bits_per_dimension_use_the_recorded_levels(digits):
    model = _sigma_model(digits, steps=2)
    m17 = heldout_metrics(model, digits.test[:100], train_images=digits.train, levels=17)
    assert m17["bpd_levels"] == 17
    assert m17["iw_bpd"] == pytest.approx(bits_per_dim(m17["iw_nll"], 64, 17))
    assert m17["iw_elbo_bpd"] == pytest.approx(bits_per_dim(m17["iw_elbo"], 64, 17))
    m256 = heldout_metrics(model, digits.test[:100], train_images=digits.train, levels=256)
    assert m256["iw_bpd"] - m17["iw_bpd"] == pytest.approx(math.log2(256 / 17), rel=1e-6)


def test_a_generator_that_ignores_z_has_no_sample_spread(digits):
    cfg = resolve(TrainConfig(variant="beta", dataset="digits"), digits.shape)
    model = build_model(cfg, digits.shape).eval()
    assert sample_spread(model) > COLLAPSED_SPREAD  # an untrained decoder still moves with z
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.zero_()  # every output the same: a constant image
    assert sample_spread(model) < COLLAPSED_SPREAD
