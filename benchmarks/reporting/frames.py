"""Run records (a :class:`vaes.records.Record` each) as pandas frames.

:func:`read_runs` reads every record under a folder once (the run store's index,
vaes.store.read_index) and returns them with both frames, one row per run
(:func:`records_frame`) and the per-epoch histories (:func:`histories_frame`), as a
:class:`Runs`: what benchmarks.report.write_report and the HTML page use. Tables and figures
are pure functions of these frames (benchmarks/reporting/table.py, render.py, figures.py). A folder is
searched recursively for run records, so a suite's output folder, its runs folder or a single
run folder all work. The records are
flattened by ``pandas.json_normalize``; what is written here is only which path of the JSON
each run column comes from, and the few columns derived from several fields.

Records evolve: every field that is not needed to name a run (label, config) may be absent
(a run still 'running' has no metrics; quality metrics such as ``fid_samples`` or
``cfd_recon`` exist only where the evaluation computed them), and is then NaN / None here.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from vaes.evaluation.catalog import declaration
from vaes.evaluation.metrics import gamma_ratio
from vaes.records import Record
from vaes.store import RunFolder, RunIndex, read_index

# Run columns: column -> its path in the record's JSON (json_normalize joins keys with '.').
RUN_PATHS = {
    "suite": "suite", "variant": "config.variant", "dataset": "config.dataset", "seed": "seed",
    "status": "status", "reason": "reason", "run_id": "run_id", "two_stage": "config.two_stage",
    "n_params": "n_params", "n_params_stage2": "stage2.n_params", "epochs": "config.epochs",
    "stage2_epochs": "config.stage2_epochs", "lr": "config.lr", "lr_halve_every": "config.lr_halve_every",
    "batch_size": "config.batch_size", "stage2_variant": "config.stage2_variant",
    # the evaluation protocol (older records have none: None)
    # (renorm_stats comes from the renormalisation's evaluation, renorm.stats)
    "jpeg_quality": "config.jpeg_quality", "fid_reference": "config.fid_reference", "n_heldout": "data.n_heldout", "data_note": "data.note",
    "device": "device", "git_commit": "git_commit",
    "train_seconds": "timings.train_seconds", "train_images_per_second": "timings.train_images_per_second",
    "eval_seconds": "timings.eval_seconds", "stage2_train_seconds": "stage2.train_seconds",
    # training cost (records before the cost field have none: NaN)
    "train_flops": "cost.train_flops", "train_flops_stage2": "cost.train_flops_stage2",
    "flops_per_train_image": "cost.flops_per_train_image",
}
NUMERIC = ("n_params", "n_params_stage2", "train_seconds", "train_images_per_second", "eval_seconds",
           "stage2_train_seconds", "train_flops", "train_flops_stage2", "flops_per_train_image",
           "gamma_ratio", "gamma_ratio_stage2")
# Columns describing a run (not metrics). A metric of the same name would silently shadow one
# of them, so records_frame refuses it.
RUN_COLUMNS = (
    "suite", "label", "variant", "dataset", "seed", "status", "reason", "run_id", "two_stage",
    "n_params", "n_params_stage2", "epochs", "stage2_epochs", "lr", "lr_halve_every",
    "batch_size", "stage2_variant", "jpeg_quality", "fid_reference", "options", "n_train", "n_heldout", "data_note", "device", "git_commit",
    "train_seconds", "train_images_per_second", "eval_seconds", "stage2_train_seconds",
    "gamma_ratio", "gamma_ratio_stage2", "train_flops", "train_flops_stage2", "flops_per_train_image", "run_dir",
)
HISTORY_TERMS = ("loss", "recon", "kl", "mse", "gamma", "lr")


def _check(rec: Record, where: str | Path) -> None:
    """A record the frames can name a run by (its config has a variant and a data set)."""
    for key in ("variant", "dataset"):
        if key not in rec.config:
            raise ValueError(f"{where}: config has no {key!r}")


def record_label(rec: Record) -> str:
    """The row name of a run: its ``label`` (a suite's), else its variant's name."""
    label = rec.meta.get("label")
    return str(label) if label else str(rec.config["variant"])


def _is_number(v: Any) -> bool:
    return v is None or isinstance(v, (int, float))  # bool is an int


def _flat_metrics(rec: Record, where: str) -> dict:
    """One run's metrics and evaluations as flat columns (vaes.evaluation.catalog's form).

    A metric entry gives ``KEY`` (its value; ``KEY_precision``, ``KEY_recall`` for
    precision/recall) and ``KEY_std``, ``KEY_subset_size``, ``KEY_n_images``, ``KEY_missing``
    where it has them; an evaluation's setup gives ``NAME_FIELD`` once per run
    (inception_engine, inception_reference_n, likelihood_k, renorm_stats, classifier_accuracy).
    A list of numbers becomes one number (one element) or ``_0``, ``_1``...; a nested list (a
    shape) is JSON text; any other value that is no number is kept as text, so a kind of metric
    this version does not know never stops a report."""
    out: dict = {}
    for name, entry in (rec.metrics or {}).items():
        if not isinstance(entry, dict):  # a metric no declaration knows, kept as recorded
            out.update(_scalar(name, entry))
            continue
        for field, v in entry.items():
            if field == "evaluation":
                continue
            if field == "value" and not _is_number(v) and declaration(name) is not None:
                raise ValueError(f"{where}: metric {name!r}: expected a number or None, got {v!r}")
            out.update(_scalar(name if field == "value" else f"{name}_{field}", v))
    for name, setup in (rec.evaluations or {}).items():
        out.update(_flat_setup(name, setup))
    return out


def _flat_setup(prefix: str, setup: dict, depth: int = 0) -> dict:
    """An evaluation's setup as ``PREFIX_FIELD`` columns, objects joined with '_'
    (inception_reference_n); lists inside its objects (a shape) as JSON text."""
    out: dict = {}
    for field, v in setup.items():
        name = f"{prefix}_{field}"
        if isinstance(v, dict):
            out.update(_flat_setup(name, v, depth + 1))
        elif isinstance(v, (list, tuple)) and depth > 0:
            out[name] = json.dumps(v)
        else:
            out.update(_scalar(name, v))
    return out


def _scalar(name: str, v: Any) -> dict:
    """``{name: v}`` as a frame cell: numbers as they are, a list of numbers as one number or one
    column per element, anything else as text."""
    if _is_number(v):
        return {name: v}
    if isinstance(v, (list, tuple)) and all(_is_number(x) for x in v):
        return {name: v[0]} if len(v) == 1 else {f"{name}_{i}": x for i, x in enumerate(v)}
    return {name: v if isinstance(v, str) else json.dumps(v)}


def _metric_frame(records: list[Record], where: list[str]) -> pd.DataFrame:
    """Every metric and evaluation field as a column (:func:`_flat_metrics`): a metric's value as
    a float (None -> NaN), the other fields as pandas infers them (counts stay integers)."""
    flat = [_flat_metrics(r, w) for r, w in zip(records, where)]
    frame = pd.DataFrame.from_records(flat) if any(flat) else pd.DataFrame(index=range(len(records)))
    values = {name for r in records for name in (r.metrics or {})}
    for col in frame.columns:
        if col in values and all(_is_number(v) for v in frame[col].dropna()):  # text stays as it is
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    frame = frame.infer_objects()
    return frame.reset_index(drop=True)


def _stage_ratio(stored: float | None, history: list | None) -> float:
    """A stage's stored gamma / sqrt(MSE), or the one its history gives (older records)."""
    value = stored if stored is not None else gamma_ratio(history)
    return math.nan if value is None else float(value)


def _n_train(rec: Record) -> int | None:
    """Training images the run used: the data set's count, cut to config n_train when set
    (the record's data.n_train is the size of the whole training split)."""
    n = (rec.data or {}).get("n_train")
    cut = rec.config.get("n_train") or 0
    return min(n, cut) if n is not None and cut > 0 else n


def records_frame(records: list[Record], run_dirs: list[str | Path]) -> pd.DataFrame:
    """One row per record, in the order given.

    Columns: suite (its name, when the suite runner wrote it), label, variant, dataset, seed,
    status, reason, run_id, two_stage (the stage-2 flag), n_params, n_params_stage2, the
    protocol (epochs, stage2_epochs, lr, lr_halve_every, batch_size, options as JSON), n_train
    (images used), n_heldout, data_note, device, git_commit, timings, cost, run_dir (absolute),
    then every metric as a float (NaN when absent) -- recon_mse, psnr, kl, neg_elbo,
    active_units, gamma, fid_* / cfd_* where computed, with their spreads and image counts
    (``kid_samples_std``, ``fid_samples_n_images``, ``fid_samples_missing``) -- and each
    evaluation's setup once: ``inception_engine``, ``inception_engine_version``,
    ``inception_resize``, ``inception_reference_n``, ``inception_reference_split``,
    ``inception_weights_source``, ``likelihood_k``...
    """
    lean = []
    for r in records:  # the per-epoch histories are histories_frame's; they would only be flattened away
        obj = r.to_json()
        obj.pop("history", None)
        obj.pop("metrics", None)
        if obj.get("stage2"):
            obj["stage2"] = {k: v for k, v in obj["stage2"].items() if k != "history"}
        lean.append(obj)
    flat = pd.json_normalize(lean, sep=".", max_level=1)
    df = flat.reindex(columns=list(RUN_PATHS.values())).set_axis(list(RUN_PATHS), axis=1)
    df = df.astype(object).where(df.notna(), None)
    df.insert(1, "label", [record_label(r) for r in records])
    df["two_stage"] = [bool(r.config.get("two_stage", False)) for r in records]
    df["stage2_epochs"] = [r.config.get("stage2_epochs") if r.config.get("two_stage") else None for r in records]
    df["status"] = [r.status for r in records]
    df["seed"] = [r.seed for r in records]
    df["options"] = [json.dumps(r.config.get("options") or {}, sort_keys=True) for r in records]
    df["n_train"] = [_n_train(r) for r in records]
    # gamma / sqrt(MSE) at the end of each stage; derived from the history for older records
    df["gamma_ratio"] = [_stage_ratio(r.gamma_ratio, r.history) for r in records]
    df["gamma_ratio_stage2"] = [_stage_ratio((r.stage2 or {}).get("gamma_ratio"), (r.stage2 or {}).get("history"))
                                for r in records]
    df["run_dir"] = [str(Path(d).resolve()) for d in run_dirs]
    for col in NUMERIC:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df = df[list(RUN_COLUMNS)].infer_objects()
    metrics = _metric_frame(records, [str(d) for d in run_dirs])
    clash = sorted(set(metrics.columns) & set(df.columns))
    if clash:
        raise ValueError(f"{run_dirs[0] if len(run_dirs) == 1 else 'a record'}: metric name(s) {clash} clash "
                         "with run columns of benchmarks.reporting.frames; rename the metric in vaes")
    return pd.concat([df.reset_index(drop=True), metrics], axis=1)


@dataclasses.dataclass(frozen=True)
class Runs(RunIndex):
    """The records under a folder, each read once (vaes.store.read_index: ``records``, ``dirs``
    their run folders, ``by_dir`` and ``record(run_dir)`` to look one up), with the frame of
    :func:`records_frame` and the history of :func:`histories_frame`. A test may pass
    ``dataclasses.replace(runs, frame=...)``: the records are looked up by run_dir."""

    frame: pd.DataFrame
    history: pd.DataFrame


def read_runs(folder: str | Path | RunIndex) -> Runs:
    """Every record under ``folder`` (recursively), read once, with both frames; or those of an
    index already read (a command that checked its records first)."""
    index = folder if isinstance(folder, RunIndex) else read_index(folder)
    for rec, d in zip(index.records, index.dirs):
        _check(rec, RunFolder(d).record_path)
    records, dirs = index.records, index.dirs
    return Runs(records, dirs, _sorted_frame(records, dirs), histories_frame(records))


def _sorted_frame(records: list[Record], dirs: list[Path]) -> pd.DataFrame:
    """:func:`records_frame` with nullable integer seeds, sorted by label and seed."""
    df = records_frame(records, dirs)
    df["seed"] = df["seed"].astype("Int64")
    return df.sort_values(["label", "seed"], kind="stable").reset_index(drop=True)


HISTORY_COLUMNS = ("label", "seed", "run_id", "status", "stage", "epoch") + HISTORY_TERMS
def histories_frame(records: list[Record]) -> pd.DataFrame:
    """Per-epoch training curves of ``records``, long format.

    Columns: label, seed, run_id, status, stage (1 = the VAE, 2 = the second-stage VAE of a
    two-stage run), epoch, loss, recon, kl, mse, gamma, lr. Absent terms are NaN (gamma of a
    Bernoulli decoder, for instance); runs without a history contribute no rows.
    """
    parts = []
    for rec in records:
        base = {"label": record_label(rec), "seed": rec.seed, "run_id": rec.run_id, "status": rec.status}
        for stage, history in ((1, rec.history), (2, (rec.stage2 or {}).get("history"))):
            if history:
                parts.append(pd.json_normalize(history).assign(**base, stage=stage))
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    df = df.reindex(columns=list(HISTORY_COLUMNS))
    df["epoch"] = df["epoch"].astype(int) if len(df) else df["epoch"]
    for k in HISTORY_TERMS:
        df[k] = pd.to_numeric(df[k], errors="coerce").astype(float)
    return df.sort_values(["label", "seed", "stage", "epoch"], kind="stable").reset_index(drop=True)
