"""Run records (``record.json``, written by ``vaes.train``) read into pandas frames.

Tables and figures are pure functions of these frames (benchmarks/table.py, render.py, figures.py). A folder is
searched recursively for files named exactly ``record.json``, so a suite's layout
(``OUT/SUITE/<label>/<run_id>/record.json``) or a single run folder both work.

Records evolve: every field that is not needed to name a run (label, config) may be absent
(a run still 'running' has no metrics; quality metrics such as ``fid_samples`` or
``cfd_recon`` exist only where the evaluation computed them), and is then NaN / None here.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from vaes.metrics import gamma_ratio
from vaes.records import read_json

# Columns describing a run (not metrics). A metric of the same name would silently shadow one
# of them, so load_records refuses it.
RUN_COLUMNS = (
    "suite", "label", "variant", "dataset", "seed", "status", "reason", "run_id", "two_stage",
    "n_params", "n_params_stage2", "epochs", "stage2_epochs", "lr", "lr_halve_every",
    "batch_size", "options", "n_train", "n_heldout", "data_note", "device", "git_commit",
    "train_seconds", "train_images_per_second", "eval_seconds", "stage2_train_seconds", "run_dir",
    "gamma_ratio", "gamma_ratio_stage2", "train_flops", "train_flops_stage2", "flops_per_train_image",
)
HISTORY_TERMS = ("loss", "recon", "kl", "mse", "gamma", "lr")


def find_records(folder: str | Path) -> list[Path]:
    """Every ``record.json`` under ``folder`` (recursively), sorted; an error when none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder} to read run records from")
    paths = sorted(folder.rglob("record.json"))
    if not paths:
        raise FileNotFoundError(f"no record.json under {folder}; run the suite first "
                                "(python -m benchmarks.run --suite NAME)")
    return paths


def read_record(path: str | Path) -> dict:
    """One record, with a message naming the file when it is not a usable record."""
    path = Path(path)
    rec = read_json(path)  # CorruptRecord (a ValueError) names the file and the fix
    if not isinstance(rec.get("config"), dict):
        raise ValueError(f"{path} is not a vaebench run record (no 'config' object)")
    for key in ("variant", "dataset"):
        if key not in rec["config"]:
            raise ValueError(f"{path}: config has no {key!r}")
    return rec


def record_label(rec: dict) -> str:
    """The row name of a run: its top-level ``label``, else its variant's name."""
    label = rec.get("label")
    return str(label) if label else str(rec["config"]["variant"])


def _float(value: Any) -> float:
    """A metric value as float; None (not computed) becomes NaN."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    raise TypeError(f"expected a number or None, got {value!r}")


def _flatten_extra(prefix: str, d: dict, out: dict) -> None:
    """Provenance fields of a dict-valued metric (engine, n_images, missing, reference...)
    as ``<metric>_<field>`` columns, nested dicts joined by underscores."""
    for k, v in d.items():
        if k == "value":
            continue
        name = f"{prefix}_{k}"
        if isinstance(v, dict):
            _flatten_extra(name, v, out)
        elif isinstance(v, (list, tuple)):
            out[name] = json.dumps(v)
        else:
            out[name] = v


def _is_number(v: Any) -> bool:
    return v is None or isinstance(v, (int, float))


def flatten_metrics(metrics: dict | None, where: str = "record") -> dict[str, Any]:
    """Every metric as a float column (None -> NaN).

    A dict-valued metric (an FID with its provenance, {'value': ...} or {'value': None,
    'missing': reason}) gives its 'value' as the metric and its other fields as
    ``<metric>_<field>`` columns (``fid_samples_engine``, ``fid_samples_missing``...). A list
    of numbers (``classifier_accuracy``, one per label factor) is one float when it has one
    element, else ``<metric>_0``, ``<metric>_1``...; anything else (a string) is kept as it is,
    so a new kind of metric never stops a report.
    """
    out: dict[str, Any] = {}
    for name, value in (metrics or {}).items():
        if isinstance(value, dict):
            if "value" not in value:
                raise ValueError(f"{where}: metric {name!r} is a dict without 'value': {value!r}")
            try:
                out[name] = _float(value["value"])
            except TypeError as e:
                raise ValueError(f"{where}: metric {name!r}: {e}") from None
            _flatten_extra(name, value, out)
        elif _is_number(value):
            out[name] = _float(value)
        elif isinstance(value, (list, tuple)) and all(_is_number(v) for v in value):
            if len(value) == 1:
                out[name] = _float(value[0])
            else:
                out.update({f"{name}_{i}": _float(v) for i, v in enumerate(value)})
        else:
            out[name] = value if isinstance(value, str) else json.dumps(value)
    return out


def _n_train(rec: dict) -> int | None:
    """Training images the run used: the data set's count, cut to config n_train when set
    (the record's data.n_train is the size of the whole training split)."""
    n = (rec.get("data") or {}).get("n_train")
    cut = rec["config"].get("n_train") or 0
    return min(n, cut) if n is not None and cut > 0 else n


def _stage_ratio(stage: dict) -> float:
    """A stage's stored gamma / sqrt(MSE), or the one its history gives (older records)."""
    return _float(stage["gamma_ratio"] if "gamma_ratio" in stage else gamma_ratio(stage.get("history")))


def record_row(rec: dict, run_dir: str | Path) -> dict[str, Any]:
    """The flat row of one record (see :func:`load_records`)."""
    cfg = rec["config"]
    stage2 = rec.get("stage2") or {}
    timings = rec.get("timings") or {}
    row: dict[str, Any] = {
        "suite": rec.get("suite"),
        "label": record_label(rec),
        "variant": cfg["variant"],
        "dataset": cfg["dataset"],
        "seed": rec.get("seed", cfg.get("seed")),
        "status": rec.get("status", "unknown"),
        "reason": rec.get("reason"),
        "run_id": rec.get("run_id"),
        "two_stage": bool(cfg.get("two_stage", False)),
        "n_params": _float(rec.get("n_params")),
        "n_params_stage2": _float(stage2.get("n_params")),
        "epochs": cfg.get("epochs"),
        "stage2_epochs": cfg.get("stage2_epochs") if cfg.get("two_stage") else None,
        "lr": cfg.get("lr"),
        "lr_halve_every": cfg.get("lr_halve_every"),
        "batch_size": cfg.get("batch_size"),
        "options": json.dumps(cfg.get("options") or {}, sort_keys=True),
        "n_train": _n_train(rec),
        "n_heldout": (rec.get("data") or {}).get("n_heldout"),
        "data_note": (rec.get("data") or {}).get("note"),
        "device": rec.get("device"),
        "git_commit": rec.get("git_commit"),
        "train_seconds": _float(timings.get("train_seconds")),
        "train_images_per_second": _float(timings.get("train_images_per_second")),
        "eval_seconds": _float(timings.get("eval_seconds")),
        "stage2_train_seconds": _float(stage2.get("train_seconds")),
        # gamma / sqrt(MSE) at the end of each stage; derived from the history for older records
        "gamma_ratio": _stage_ratio(rec),
        "gamma_ratio_stage2": _stage_ratio(stage2),
        # training cost (records before the cost field have none: NaN)
        "train_flops": _float((rec.get("cost") or {}).get("train_flops")),
        "train_flops_stage2": _float((rec.get("cost") or {}).get("train_flops_stage2")),
        "flops_per_train_image": _float((rec.get("cost") or {}).get("flops_per_train_image")),
        "run_dir": str(Path(run_dir).resolve()),
    }
    metrics = flatten_metrics(rec.get("metrics"), where=str(run_dir))
    clash = sorted(set(metrics) & set(row))
    if clash:
        raise ValueError(f"{run_dir}: metric name(s) {clash} clash with run columns of "
                         "benchmarks.records; rename the metric in vaes")
    row.update(metrics)
    return row


def load_records(folder: str | Path) -> pd.DataFrame:
    """One row per run under ``folder`` (every ``record.json``, recursively).

    Columns: suite (its name, when the suite runner wrote it), label, variant, dataset, seed, status, reason, run_id, two_stage (the stage-2
    flag), n_params, n_params_stage2, the protocol (epochs, stage2_epochs, lr,
    lr_halve_every, batch_size, options as JSON), n_train (images used), n_heldout, data_note,
    device, git_commit, timings, run_dir (absolute), then every metric as a float (NaN when
    absent) -- recon_mse, psnr, kl, neg_elbo, active_units, gamma, fid_* / cfd_* where
    computed -- and, for dict-valued FID metrics, their setup in columns of their own:
    ``fid_samples_engine``, ``fid_samples_engine_version``, ``fid_samples_n_images``,
    ``fid_samples_resize``, ``fid_samples_reference_n``, ``fid_samples_missing``...
    """
    rows = [record_row(read_record(p), p.parent) for p in find_records(folder)]
    df = pd.DataFrame(rows)
    df["seed"] = df["seed"].astype("Int64")
    return df.sort_values(["label", "seed"], kind="stable").reset_index(drop=True)


HISTORY_COLUMNS = ("label", "seed", "run_id", "status", "stage", "epoch") + HISTORY_TERMS


def load_histories(folder: str | Path) -> pd.DataFrame:
    """Per-epoch training curves of every run under ``folder``, long format.

    Columns: label, seed, run_id, status, stage (1 = the VAE, 2 = the second-stage VAE of a
    two-stage run), epoch, loss, recon, kl, mse, gamma, lr. Absent terms are NaN (gamma of a
    Bernoulli decoder, for instance); runs without a history contribute no rows.
    """
    rows = []
    for path in find_records(folder):
        rec = read_record(path)
        base = {"label": record_label(rec), "seed": rec.get("seed", rec["config"].get("seed")),
                "run_id": rec.get("run_id"), "status": rec.get("status", "unknown")}
        stages = [(1, rec.get("history") or []), (2, (rec.get("stage2") or {}).get("history") or [])]
        for stage, history in stages:
            for h in history:
                rows.append({**base, "stage": stage, "epoch": int(h["epoch"]),
                             **{k: _float(h.get(k)) for k in HISTORY_TERMS}})
    df = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    return df.sort_values(["label", "seed", "stage", "epoch"], kind="stable").reset_index(drop=True)
