"""Run one config: train (both stages), evaluate, write the record. The one entry point.

The command line (``python -m vaes.train``), the suite runner (``benchmarks``) and the sweep
worker (``sweeps``) all call :func:`run` and nothing else trains. It never raises for a run's
own failure: missing data, a NaN loss, running out of memory or a bug in a variant end in a
record with status ``failed``, its reason and its traceback, and the caller goes on. (The
speed benchmark, benchmarks/speed/, races the trainer's ``fit`` itself: it times it.) What a
caller's own ``on_epoch`` hook raises (an Optuna pruning decision, say) is the caller's and
is raised again, after the record has been written as it stood.
"""
from __future__ import annotations

import traceback
from pathlib import Path
from typing import Callable

from vaes.config import TrainConfig, run_id, to_dict
from vaes.data import ImageData, load_dataset
from vaes.records import CorruptRecord, Record
from vaes.trainer import train


class _HookRaised(Exception):
    """Carries what the caller's on_epoch hook raised through the trainer, untouched."""


def run(cfg: TrainConfig, *, data: ImageData | None = None, progress: bool | None = None,
        meta: dict | None = None, on_epoch: Callable[[dict], None] | None = None,
        evaluate: bool = True) -> Record:
    """Train and evaluate ``cfg`` into ``cfg.out``; its record (finished, interrupted or failed).

    A finished record there is returned as it is; a checkpoint there is resumed. ``meta``
    (a suite's label, a trial's number) is stored in the record. ``evaluate=False`` trains
    only (benchmarks/suite_throughput.py times training alone).
    """
    hook = None
    if on_epoch is not None:
        def hook(row: dict) -> None:
            try:
                on_epoch(row)
            except Exception as e:  # the caller's decision, not the run's failure
                raise _HookRaised() from e
    try:
        return train(cfg, data=data, progress=progress, meta=meta, on_epoch=hook, evaluate=evaluate)
    except _HookRaised as e:
        raise e.__cause__ from None
    except CorruptRecord as e:  # left as it is for the user to look at; the message says what to do
        return _new_record(cfg, meta).fail(str(e))
    except Exception as e:  # noqa: BLE001 -- one broken run must not stop a suite or a study
        return _failed(cfg, meta, f"{type(e).__name__}: {e}", traceback.format_exc())


def _new_record(cfg: TrainConfig, meta: dict | None) -> Record:
    """A record of ``cfg`` that is not on disk (for a run that failed before or beside its own)."""
    return Record(run_id=run_id(cfg), seed=cfg.seed, config=to_dict(cfg), meta=dict(meta or {}))


def _failed(cfg: TrainConfig, meta: dict | None, reason: str, trace: str) -> Record:
    """The run's record as it stood (or a new one), failed with ``reason``, written if it can be;
    if not (a full disk, a folder that cannot be made, a damaged record.json that is kept), it
    is returned unwritten with why in its reason, so that the caller still learns what happened."""
    path = Path(cfg.out) / "record.json"
    fresh = _new_record(cfg, meta)
    try:
        rec = Record.read(path) or fresh
    except CorruptRecord as e:  # a damaged record.json is left for the user to look at, never overwritten
        return fresh.fail(f"{reason} (and {e})", trace)
    except OSError as e:  # unreadable (permissions, a folder under that name): nothing to keep, nothing to write
        return fresh.fail(f"{reason} (and {path} cannot be read: {e})", trace)
    rec.run_id, rec.seed = run_id(cfg), cfg.seed
    rec.meta = {**rec.meta, **(meta or {})}
    rec.fail(reason, trace)
    try:
        return rec.write(path)
    except OSError as e:
        rec.reason = f"{reason} (and the record could not be written to {path}: {e})"
        return rec


class DataCache:
    """Data sets loaded once for many runs (a suite, a sweep worker), by what decides the images:
    dataset, data_root, data_split, image_size. A set that cannot be loaded gives None, and
    :func:`run` loads it again and records why in that run's record."""

    def __init__(self) -> None:
        self._data: dict[tuple, ImageData | None] = {}

    def __call__(self, cfg: TrainConfig) -> ImageData | None:
        key = (cfg.dataset, cfg.data_root, cfg.data_split, cfg.image_size)
        if key not in self._data:
            try:
                self._data[key] = load_dataset(cfg.dataset, cfg.data_root, download=cfg.download,
                                               data_split=cfg.data_split, image_size=cfg.image_size)
            except Exception:  # noqa: BLE001 -- missing or bad data: run() loads it again and records why
                self._data[key] = None
        return self._data[key]


def run_status(run_dir: str | Path) -> str:
    """'new' (no record), 'finished', 'failed' (also: an unreadable record), 'pruned', or
    'interrupted' (anything else: a run that was stopped or killed, resumable from its checkpoint)."""
    try:
        rec = Record.read(Path(run_dir) / "record.json")
    except CorruptRecord:
        return "failed"  # run() says why, and --retry-failed tries it again
    if rec is None:
        return "new"
    return rec.status if rec.status in ("finished", "failed", "pruned") else "interrupted"
