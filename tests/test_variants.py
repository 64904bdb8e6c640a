"""Tests parametrised over the registry: a new variant is tested without new test code."""
import json
import math
import os
from pathlib import Path

import pytest
import torch

import vaes
from vaes.config import TrainConfig
from vaes.build import build_model, resolve
from vaes.variants.balanced import paper_kl_weight

GOLDEN = Path(__file__).parent / "golden" / "losses.json"
REGEN = os.environ.get("VAEBENCH_REGEN_GOLDEN") == "1"  # regenerate on purpose, never by hand
SHAPE = (1, 8, 8)


def tiny(variant: str, **options):
    cfg = resolve(TrainConfig(variant=variant, options=options, dataset="digits", latent_dim=4))
    return build_model(cfg, SHAPE)


def batch(n=16, seed=0):
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant", vaes.list_variants())
def test_forward_backward_and_every_parameter_gets_a_gradient(variant):
    model = tiny(variant)
    terms = model.loss(batch())
    for k in ("loss", "recon", "kl", "mse"):
        assert terms[k].shape == () and torch.isfinite(terms[k]), k
    terms["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"


@pytest.mark.parametrize("variant", vaes.list_variants())
def test_state_dict_round_trip_restores_the_variants_state(variant):
    model = tiny(variant)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for i in range(5):  # move the variant's state away from its initial value
        terms = model.loss(batch(seed=i))
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        model.after_step(terms)
    fresh = tiny(variant)
    fresh.load_state_dict(model.state_dict())
    g1, g2 = model.gamma(), fresh.gamma()
    assert (g1 is None) == (g2 is None)
    state, initial = model.balance.state_dict(), tiny(variant).balance.state_dict()
    # a variant with state (a learned gamma, a running MSE, a step counter): the training steps
    # moved it, and loading brings every tensor of it back
    assert any(not torch.equal(state[k], initial[k]) for k in state) or not state, "the steps should move the state"
    for k, v in fresh.balance.state_dict().items():
        assert torch.equal(v, state[k]), k
    if g1 is not None:
        assert torch.equal(g1, g2)


@pytest.mark.parametrize("variant", vaes.list_variants())
def test_golden_loss_values(variant):
    torch.manual_seed(0)
    model = tiny(variant)
    torch.manual_seed(1)
    terms = {k: float(v.detach()) for k, v in model.loss(batch()).items()}
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
    if REGEN:
        golden[variant] = terms
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    assert variant in golden, f"no golden values for {variant}: run VAEBENCH_REGEN_GOLDEN=1 pytest {__file__}"
    for k, v in golden[variant].items():
        assert terms[k] == pytest.approx(v, rel=1e-4, abs=1e-5), k


# ---- the math of each variant ------------------------------------------------------------

def fixed_output(model, x, x_hat):
    """Forward pass with a given reconstruction and a zero-KL posterior."""
    zeros = torch.zeros(len(x), model.latent_dim)
    return {"mu": zeros, "logvar": zeros, "z": zeros, "x_hat": x_hat, "logits": torch.logit(x_hat)}


def test_balanced_gamma_follows_the_update_rule():
    model = tiny("balanced")
    mses = [0.5, 0.2, 0.9, 0.05, 0.05, 0.3]
    m = 1.0
    for mse in mses:
        model.after_step({"mse": torch.tensor(mse)})
        m = min(m, 0.99 * m + 0.01 * mse)
        assert float(model.balance.running_mse) == pytest.approx(m, rel=1e-6)
        assert float(model.gamma()) == pytest.approx(math.sqrt(m), rel=1e-6)


def test_balanced_without_min_can_increase_and_floor_holds():
    model = tiny("balanced", momentum=0.5, monotone=False, gamma_floor=0.3)
    for mse, m in [(0.01, 0.505), (1.0, 0.7525), (0.0, 0.37625), (0.0, 0.188125)]:
        model.after_step({"mse": torch.tensor(mse)})
        assert float(model.balance.running_mse) == pytest.approx(m)
    assert float(model.gamma()) == pytest.approx(math.sqrt(0.188125))  # above the floor
    model.after_step({"mse": torch.tensor(0.0)})
    model.after_step({"mse": torch.tensor(0.0)})                        # sqrt(0.047) < 0.3
    assert float(model.gamma()) == pytest.approx(0.3)


def test_balanced_loss_weights_and_no_gradient_through_gamma():
    model = tiny("balanced", kl_weight=3.0)
    model.balance.running_mse.fill_(0.04)
    x = batch(4)
    x_hat = (x * 0.5 + 0.25).requires_grad_()
    out = fixed_output(model, x, x_hat)
    out["mu"] = torch.ones(4, 4)
    terms = model.balance.loss(x, out)
    sse = ((x - x_hat) ** 2).flatten(1).sum(1)
    nll = sse / (2 * 0.04) + 64 * (math.log(0.2) + 0.5 * math.log(2 * math.pi))
    kl = 0.5 * 4 * 1.0  # mu = 1, sigma = 1 in each of 4 latents
    assert float(terms["loss"].detach()) == pytest.approx(float(nll.detach().mean()) + 3.0 * kl, rel=1e-5)
    assert not model.balance.running_mse.requires_grad


def test_paper_kl_weight_preset():
    assert paper_kl_weight((3, 32, 32), 64) == 1.0 and paper_kl_weight((3, 64, 64), 64) == 4.0
    assert paper_kl_weight((64,), 64) == 1.0  # second stage: latent vectors


def test_learned_gamma_moves_toward_sqrt_mse():
    model = tiny("learned_gamma")
    x = batch(32)
    x_hat = (x + 0.1 * torch.randn_like(x)).clamp(0.01, 0.99)
    mse = float(((x - x_hat) ** 2).mean())
    opt = torch.optim.Adam([model.balance.log_gamma], lr=0.05)
    for _ in range(400):
        loss = model.balance.loss(x, fixed_output(model, x, x_hat))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(model.gamma()) == pytest.approx(math.sqrt(mse), rel=0.01)


def test_sigma_gamma_is_the_batch_mse():
    model = tiny("sigma")
    x = batch(8)
    x_hat = (x * 0.8 + 0.1)
    model.balance.loss(x, fixed_output(model, x, x_hat))
    log_gamma = 0.5 * math.log(float(((x - x_hat) ** 2).mean()))
    # soft clip at -6 (Rybkin et al.): -6 + softplus(log gamma + 6)
    assert float(model.gamma()) == pytest.approx(math.exp(-6 + math.log1p(math.exp(log_gamma + 6))), rel=1e-5)


@pytest.mark.parametrize("beta", [0.0, 1.0, 4.0])
def test_beta_weights_the_kl(beta):
    model = tiny("beta", beta=beta)
    x = batch(4)
    out = fixed_output(model, x, x * 0.5 + 0.25)
    out["mu"] = torch.full((4, 4), 2.0)
    t = model.balance.loss(x, out)
    assert float(t["kl"]) == pytest.approx(8.0)
    assert float(t["loss"]) == pytest.approx(float(t["recon"]) + beta * 8.0, rel=1e-6)


def test_beta_bernoulli_uses_cross_entropy():
    model = tiny("beta", likelihood="bernoulli")
    x = batch(4)
    out = fixed_output(model, x, torch.full_like(x, 0.5))
    t = model.balance.loss(x, out)
    assert float(t["recon"]) == pytest.approx(64 * math.log(2), rel=1e-5)  # BCE at p = 1/2
    assert model.gamma() is None
