"""The balance in every convention (vaes.balance): the conversions pinned on PyTorch-VAE's
kld_weight, a run's effective beta from its history, the figure and the command line."""
import math
import warnings

import pytest
from PIL import Image

from vaes.balance import (beta_from_gamma, beta_from_mean_mse, beta_from_sse, conventions, effective_beta,
                          fixed_std, main, parse_dims, plot_effective_beta)
from vaes.records import Record


def test_pytorch_vae_kld_weight_is_beta_1_5():
    # PyTorch-VAE's hidden kld_weight = 0.00025 with mean MSE on 3x64x64 images in [0, 1]
    beta = beta_from_mean_mse(0.00025, parse_dims("3x64x64"))
    assert beta == pytest.approx(0.00025 * 12288 / 2) and beta == pytest.approx(1.536)
    assert fixed_std(beta) == pytest.approx(1.2394, abs=1e-4)
    # the same images in [-1, 1] have 4x the SSE: a quarter of the beta
    assert beta_from_mean_mse(0.00025, 12288, "minus1to1") == pytest.approx(1.536 / 4)


def test_gamma_and_sse_conventions():
    assert beta_from_gamma(0.1) == pytest.approx(0.01)
    assert beta_from_gamma(0.1, kl_weight=4) == pytest.approx(0.04)
    # gamma measured on [-1, 1] data is twice the [0, 1] gamma of the same decoder
    assert beta_from_gamma(0.2, data_range="minus1to1") == pytest.approx(beta_from_gamma(0.1))
    assert beta_from_sse(1.0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="data_range"):
        beta_from_gamma(0.1, data_range="0to255")


def test_conventions_round_trip():
    """Each weight the table prints gives back the same beta through its own formula."""
    beta, dims = 0.37, 784
    c = conventions(beta, dims)
    assert beta_from_mean_mse(c["w in mean MSE + w KL, [0,1]"], dims) == pytest.approx(beta)
    assert beta_from_mean_mse(c["w in mean MSE + w KL, [-1,1]"], dims, "minus1to1") == pytest.approx(beta)
    assert beta_from_sse(c["w in SSE + w KL, [-1,1]"], "minus1to1") == pytest.approx(beta)
    assert beta_from_gamma(c["fixed std, KL weight 1, [-1,1]"], 1.0, "minus1to1") == pytest.approx(beta)
    assert c["fixed std, KL weight 1, [0,1]"] == pytest.approx(math.sqrt(beta))


def _record(variant, options, gammas, stage2_gammas=None, shape=(1, 28, 28)):
    rec = {"run_id": "x", "seed": 0, "status": "finished", "reason": None,
           "config": {"variant": variant, "options": options, "latent_dim": 64, "batch_size": 100,
                      "stage2_variant": "balanced", "stage2_latent_dim": 64},
           "data": {"shape": list(shape), "n_train": 1000},
           "history": [{"epoch": i + 1, "gamma": g} for i, g in enumerate(gammas)]}
    if stage2_gammas:
        rec["stage2"] = {"history": [{"epoch": i + 1, "gamma": g} for i, g in enumerate(stage2_gammas)]}
    return Record.from_json(rec)


def test_effective_beta_follows_gamma_over_training():
    # balanced at 64x64, d = 64: the paper's k = (2 * 64 / 64)^2 = 4
    (c,) = effective_beta(_record("balanced", {}, [1.0, 0.5, 0.1], shape=(3, 64, 64)))
    assert c.kl_weight == 4 and c.beta == pytest.approx([4.0, 1.0, 0.04])
    (c,) = effective_beta(_record("balanced", {"kl_weight": 2.5}, [0.2]))
    assert c.beta == pytest.approx([2.5 * 0.04])
    one, two = effective_beta(_record("learned_gamma", {}, [0.9, 0.3], stage2_gammas=[0.8, 0.5, 0.2]))
    assert one.beta == pytest.approx([0.81, 0.09]) and two.stage == 2 and two.beta == pytest.approx([0.64, 0.25, 0.04])
    assert "latent" in two.note
    (c,) = effective_beta(_record("sigma", {}, [0.05]))
    assert c.beta == pytest.approx([0.0025])
    (c,) = effective_beta(_record("beta", {"beta": 3.0}, [1.0, 1.0]))
    assert c.beta == [3.0, 3.0] and "fixed" in c.note


def test_variants_without_a_decoder_variance_say_what_the_number_means():
    (c,) = effective_beta(_record("beta", {"likelihood": "bernoulli"}, [None, None]))
    assert c.beta is None and "Bernoulli" in c.note
    (c,) = effective_beta(_record("free_bits", {"free_nats": 0.5}, [1.0]))
    assert c.beta == [1.0] and "0.5 nats" in c.note
    # kl_annealing's own schedule: 1000 images / batch 100 = 10 steps an epoch, warm-up 25 steps
    (c,) = effective_beta(_record("kl_annealing", {"warmup_steps": 25, "beta": 2.0}, [1.0] * 4))
    assert c.beta == pytest.approx([2.0 * 10 / 25, 2.0 * 20 / 25, 2.0, 2.0]) and "warm-up" in c.note
    (c,) = effective_beta(_record("no_such_variant", {}, [1.0]))
    assert c.beta is None and "no_such_variant" in c.note


def test_plot_effective_beta(tmp_path):
    recs = [_record("balanced", {}, [1.0, 0.4, 0.1], stage2_gammas=[0.9, 0.3]), _record("learned_gamma", {}, [0.8, 0.2])]
    out = plot_effective_beta(recs, tmp_path / "fig" / "beta.png", labels=["balanced", "learned"])
    with Image.open(out) as im:
        assert im.width > 100 and im.height > 100
    with pytest.raises(ValueError, match="labels"):
        plot_effective_beta(recs, tmp_path / "b.png", labels=["one"])


def test_plot_effective_beta_keeps_its_axes_with_many_seeds(tmp_path):
    # a suite's worth: 6 labels x 3 seeds, each with a second stage (36 curves); the legend is one
    # entry per label plus the two stages, beside the axes, and the axes keep their height
    recs = [_record(v, {}, [1.0, 0.5, 0.2], stage2_gammas=[0.9, 0.3]) for v in ("balanced", "learned_gamma") * 9]
    labels = [f"row{i % 6}" for i in range(len(recs))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns when the axes collapse under a legend
        out = plot_effective_beta(recs, tmp_path / "many.png", labels=labels)
    with Image.open(out) as im:
        assert im.width > 100 and im.height > 100


def test_cli_prints_every_convention(capsys):
    assert main(["--kld-weight", "0.00025", "--dims", "3x64x64"]) == 0
    out = capsys.readouterr().out
    assert "1.536" in out and "1.23935" in out


@pytest.mark.parametrize("argv, names", [
    (["--gamma", "-1"], "--gamma"), (["--gamma", "nan"], "--gamma"), (["--dims", "3x0x4", "--beta", "1"], "--dims"),
    (["--kld-weight", "0.1"], "--dims"), (["--beta", "1", "--kl-weight", "2"], "--kl-weight"),
    (["--beta", "1", "--range", "0to255"], "--range"), ([], "--beta"), (["--beta", "1", "--gamma", "1"], "--gamma"),
])
def test_cli_refuses_with_status_2_naming_the_argument(argv, names, capsys):
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own refusals
        rc = e.code
    assert rc == 2 and names in capsys.readouterr().err


def test_cli_run_folder(tmp_path, capsys):
    _record("balanced", {}, [1.0, 0.5]).write(tmp_path / "record.json")
    assert main(["--run", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "stage 1 (balanced" in out and "last 0.1914" in out  # k = (56/64)^2 = 0.7656, times 0.25
    assert main(["--run", str(tmp_path / "nothing")]) == 2
    assert "--run" in capsys.readouterr().err
