"""Tables that cannot mislead, on records made for each point: a collapsed generator, runs with
overridden image counts, the ≈ mark of a Welch t-test, a sigma run's likelihood on one footing,
the ledger's rows with a likelihood counterpart."""
from __future__ import annotations


import pytest

from benchmarks.reporting.caption import CAPTION_CHARS
from benchmarks.reporting.frames import read_runs
from benchmarks.reporting.ledger import load_ledger
from benchmarks.reporting.render import render_latex, render_markdown
from benchmarks.reporting.stats import detectable_difference, pooled_std
from benchmarks.reporting.table import build_table
from tests.test_report import _fake


def _prc(p: float, r: float, n: int = 50) -> dict:
    return {"precision": p, "recall": r, "k": 3, "n_images": n}


def _kid(v: float, n: int = 50, real: int | None = None) -> dict:
    return {"value": v, "std": 0.001, "subset_size": n // 2, "subsets": 100, "n_images": n}


def test_a_collapsed_generator_is_marked_never_bold_and_out_of_the_pool(tmp_path):
    # 'flat' decodes one image: precision 1 with no spread, 0 active units; 'real' varies
    for seed, (p, au) in enumerate([(0.80, 5), (0.90, 6), (0.85, 4)]):
        _fake(tmp_path, "real", seed, variant="sigma",
              metrics={"prc_samples": _prc(p, 0.5 + seed / 10), "active_units": au, "sample_spread": 0.2})
        _fake(tmp_path, "flat", seed, metrics={"prc_samples": _prc(1.0, 0.0), "active_units": 0,
                                               "sample_spread": 1e-5})
        _fake(tmp_path, "blurry", seed, metrics={"prc_samples": _prc(0.3 + seed / 10, 0.2), "active_units": 3})
    table = build_table(read_runs(tmp_path).frame, {"name": "t", "reference": False})
    rows = {r.name: r for r in table.rows}
    flat, real = rows["flat"], rows["real"]
    assert flat.collapsed and not real.collapsed
    assert flat.cells["samples_prc_precision"].mean == 1.0 and not flat.cells["samples_prc_precision"].bold
    assert real.cells["samples_prc_precision"].bold  # the best of the rows that can be best
    note = dict(table.notes)[flat.notes[0]]
    assert "collapsed generator in 3 of 3 seeds" in note and "precision is 1" in note
    md = render_markdown(table)
    assert "| flat (collapsed) [" in md and "collapsed" in " ".join(table.caption)
    assert "flat (collapsed)" in render_latex(table)
    # the detectable difference pools the rows with a spread: the zero spread of 'flat' would shrink it
    detectable = next(t for _, t in table.notes if t.startswith("Smallest true difference"))
    cells = [rows[n].cells["samples_prc_precision"] for n in ("real", "blurry")]
    expected = detectable_difference(pooled_std([c.std for c in cells], [3, 3]), 3)
    shrunk = detectable_difference(pooled_std([c.std for c in cells] + [1e-9], [3, 3, 3]), 3)
    assert shrunk < 0.9 * expected
    assert f"Samples Prec. ↑: {expected:.3g}" in detectable or f"Samples Prec.: {expected:.3g}" in detectable


def test_pooled_std_leaves_out_rows_without_spread():
    assert pooled_std([0.1, 0.0], [3, 3]) == pytest.approx(0.1)
    assert pooled_std([0.0], [3]) is None


def test_caption_counts_come_from_the_records_not_the_suite(tmp_path):
    # the suite's description claims 3 seeds and 10k images; the records hold other numbers
    _fake(tmp_path, "a", 0, metrics={"kid_samples": _kid(0.1, 300)})
    _fake(tmp_path, "b", 0, metrics={"kid_samples": _kid(0.2, 50)})
    _fake(tmp_path, "b", 1, status="failed", reason="boom")
    suite = {"name": "mnist", "description": "every variant, 3 seeds, 10k images for FID", "reference": False}
    table = build_table(read_runs(tmp_path).frame, suite)
    caption = " ".join(table.caption)
    assert len(caption) <= CAPTION_CHARS
    assert "10k" not in caption and "3 seeds" not in caption  # the description is not printed
    assert "50, 300 generated" in caption  # both overridden counts, from the records
    assert "(0; 2 of 3 runs)" in caption and "one seed" in caption
    md = render_markdown(table)
    assert "\n- 1. " in md and "\n- 2. " in md  # everything else as numbered notes under the table


def test_welch_marks_rows_the_seeds_cannot_tell_from_the_best(tmp_path):
    values = {"best": (0.010, 0.012, 0.011), "noisy": (0.005, 0.030, 0.020), "far": (0.100, 0.101, 0.102)}
    for label, vs in values.items():
        for seed, v in enumerate(vs):
            _fake(tmp_path, label, seed, metrics={"kid_samples": _kid(v)})
    table = build_table(read_runs(tmp_path).frame, {"name": "t", "reference": False})
    rows = {r.name: r.cells["samples_kid"] for r in table.rows}
    assert rows["best"].bold and not rows["best"].near
    assert rows["noisy"].near and not rows["noisy"].bold  # Welch p > 0.05 at 3 seeds
    assert not rows["far"].near and not rows["far"].bold
    md = render_markdown(table)
    assert "≈0.0183" in md and r"$\approx$" in render_latex(table)


def test_a_sigma_runs_likelihood_is_on_one_footing(tmp_path):
    for seed in (0, 1):
        _fake(tmp_path, "sigma", seed, variant="sigma", metrics={
            "neg_elbo": 50.0, "iw_elbo": -30.0 - seed, "iw_nll": -35.0 - seed, "iw_bpd": 3.9, "iw_k": 50,
            "iw_images": 100, "bpd_levels": 17, "likelihood_gamma": 0.1, "likelihood_gamma_source": "training MSE"})
        _fake(tmp_path, "balanced", seed, variant="balanced", metrics={
            "neg_elbo": 40.0, "iw_elbo": -20.0, "iw_nll": -25.0 - seed, "iw_bpd": 4.1, "iw_k": 50,
            "iw_images": 100, "bpd_levels": 17, "likelihood_gamma": 0.1,
            "likelihood_gamma_source": "running training MSE"})
    table = build_table(read_runs(tmp_path).frame, {"name": "t", "reference": False})
    keys = [c.key for c in table.columns]
    assert "iw_elbo" in keys and "neg_elbo" not in keys  # the -ELBO column is NLL_K's images and std
    sigma = next(r for r in table.rows if r.name == "sigma")
    assert sigma.cells["iw_elbo"].mean == pytest.approx(-30.5)
    notes = " ".join(t for _, t in table.notes)
    assert "sigma: training MSE" in notes and "balanced: running training MSE" in notes
    assert "17 levels a pixel" in notes and "same first 100 held-out images" in notes


def test_old_records_say_their_likelihood_is_not_on_one_footing(tmp_path):
    _fake(tmp_path, "sigma", 0, variant="sigma", metrics={"neg_elbo": 50.0, "iw_nll": -35.0, "iw_k": 50,
                                                          "iw_images": 100})
    table = build_table(read_runs(tmp_path).frame, {"name": "t", "reference": False})
    assert "neg_elbo" in [c.key for c in table.columns]
    assert "not on one footing" in " ".join(t for _, t in table.notes)


def test_ledger_rows_with_their_tables_std_and_likelihood():
    entries = {(e.dataset, e.name): e for e in load_ledger()}
    xent = entries[("mnist", "Dai & Wipf 2019: VAE (cross-entr.)")]
    assert (xent.value, xent.std, xent.likelihood, xent.table) == (16.6, 0.4, "bernoulli", "Table 1")
    assert xent.protocol["reference_split"] == "test"
    assert entries[("mnist", "Rybkin et al. 2021: Gaussian VAE (MNIST ablation)")].table == "Table 3"
    shared = entries[("cifar10", "Rybkin et al. 2021: Shared σ-VAE (HVAE)")]
    assert (shared.variant, shared.value, shared.std, shared.table) == ("learned_gamma", 116.1, None, "Table 2")
    assert entries[("mnist", "Rybkin et al. 2021: Bernoulli VAE (MNIST ablation)")].likelihood == "bernoulli"


def test_cross_entropy_row_matches_a_bernoulli_run_and_names_table_3(tmp_path):
    fid = {"value": 40.0, "engine": "torch-fidelity", "n_images": 10000, "reference": {"n": 10000, "split": "x"}}
    _fake(tmp_path, "beta", 0, dataset="mnist", metrics={"fid_samples": fid},
          config={"options": {"likelihood": "gaussian"}})
    _fake(tmp_path, "beta_bce", 0, dataset="mnist", metrics={"fid_samples": fid},
          config={"options": {"likelihood": "bernoulli"}})
    table = build_table(read_runs(tmp_path).frame, {"name": "m", "dataset": "mnist", "reference": True})
    notes = dict(table.notes)
    xent = next(r for r in table.rows if r.name.endswith("VAE (cross-entr.)"))
    assert "vs beta_bce:" in notes[xent.notes[0]] and "likelihood" not in notes[xent.notes[0]].split("vs beta_bce:")[1]
    fixed = next(r for r in table.rows if r.name.endswith("VAE, fixed γ"))
    assert "vs beta:" in notes[fixed.notes[0]]
    rybkin = next(r for r in table.rows if r.name.startswith("Rybkin et al. 2021: Gaussian VAE"))
    assert "(Table 3," in notes[rybkin.notes[0]]
    assert xent.cells["samples_fid"].half == pytest.approx(0.4)  # the published std kept
