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

import dataclasses
import hashlib
import json
import sys
import traceback
from pathlib import Path
from typing import Callable

from vaes.build import dataset_shape, resolve
from vaes.config import IDENTITY_FIELDS, NOT_IDENTITY_FIELDS, TrainConfig, run_id, to_dict
from vaes.data import ImageData, load_dataset
from vaes.evaluate import evaluate_run
from vaes.records import CorruptRecord, Record
from vaes.trainer import train

# evaluation settings a finished run is evaluated again for when they change (not identity)
EVAL_FIELDS = tuple(f for f in NOT_IDENTITY_FIELDS[:NOT_IDENTITY_FIELDS.index("stage2_noise")]
                    if f in {f.name for f in dataclasses.fields(TrainConfig)})


class FolderTaken(ValueError):
    """``cfg.out`` holds another run (another identity): refused input, exit status 2 on a
    command line; nothing was written."""


class _HookRaised(Exception):
    """Carries what the caller's on_epoch hook raised through the trainer, untouched."""


def run(cfg: TrainConfig, *, data: ImageData | None = None, progress: bool | None = None,
        meta: dict | None = None, on_epoch: Callable[[dict], None] | None = None,
        evaluate: bool = True) -> Record:
    """Train and evaluate ``cfg`` into ``cfg.out``; its record (finished, interrupted or failed).

    A finished record of the same run (:func:`earlier_run`) is returned as it is, evaluated
    again where the evaluation settings changed; a checkpoint there is resumed; another
    run's folder is refused with :class:`FolderTaken` (raised, nothing written). ``meta``
    (a suite's label, a trial's number) is stored in the record. ``evaluate=False`` trains
    only (benchmarks/suite_throughput.py times training alone).
    """
    old = earlier_run(cfg)  # raises FolderTaken before anything is written
    if old is not None and old.ok and evaluate:
        return _evaluated_again(cfg, old)
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


def earlier_run(cfg: TrainConfig) -> Record | None:
    """The record in ``cfg.out`` when it is of this run (same identity, vaes.config), None when
    there is none (or a damaged one, which :func:`run` records); :class:`FolderTaken` when a
    finished, running or interrupted run there (or any with a checkpoint left) is another one.
    A failed or pruned run without a checkpoint leaves nothing to reuse and is run again."""
    out = Path(cfg.out)
    try:
        rec = Record.read(out / "record.json")
    except (CorruptRecord, OSError):
        return None
    if rec is None:
        return None
    resumable = any((out / f).is_file() for f in ("checkpoint.pt", "checkpoint_stage2.pt"))
    if rec.status in ("failed", "pruned") and not resumable:
        return rec
    diff = identity_diff(cfg, rec)
    if not diff:
        return rec
    c = rec.config
    raise FolderTaken(
        f"out={cfg.out} already holds another run ({rec.status}: variant={c.get('variant')}, "
        f"dataset={c.get('dataset')}, seed={rec.seed}, run id {rec.run_id}); this one (run id {run_id(cfg)}) "
        f"differs in {', '.join(diff)}. A run folder answers for one run only, so nothing was "
        f"written. Give this run another out= (e.g. out={cfg.out.rstrip('/')}-{run_id(cfg)}), or delete "
        f"that folder to train this run there.")


def identity_diff(cfg: TrainConfig, rec: Record) -> list[str]:
    """The identity fields in which ``cfg`` differs from the run of ``rec`` ([] = the same run).
    ``cfg`` is compared resolved and unresolved (a record is resolved once its data loaded); a
    record from before the identity rule (its run_id the old hash) is compared field by field."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    candidates = {run_id(cfg): cfg}
    shape = (rec.data or {}).get("shape")
    try:
        shape = tuple(shape) if shape else dataset_shape(cfg)
        if shape:
            resolved = resolve(cfg, shape)
            candidates[run_id(resolved)] = resolved
    except (ValueError, KeyError, TypeError):  # no shape known without loading: compare unresolved
        pass
    if rec.run_id in candidates:
        return []
    # a record holds the resolved config once its data loaded (rec.data), else the one it was given
    mine = to_dict(list(candidates.values())[-1 if rec.data else 0])

    def stored(k: str):
        f = fields[k]
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        return rec.config.get(k, default)
    diff = [k for k in IDENTITY_FIELDS if k in mine and stored(k) != mine[k]]
    if rec.run_id != _legacy_run_id(rec.config):
        diff = diff or ["the content of data_root"]  # only the data file's hash is left to differ
    return diff


def _legacy_run_id(config: dict) -> str:
    """run_id as vaebench computed it before the identity rule (all fields but where and how
    a run is watched), so that such records are compared field by field, not refused."""
    d = {k: v for k, v in config.items()
         if k not in ("out", "device", "cache_dir", "data_root", "download", "tensorboard")}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def _evaluated_again(cfg: TrainConfig, rec: Record) -> Record:
    """A finished run, evaluated again where cfg's evaluation settings differ from its record's
    (other image counts update its metrics); as it is otherwise. A failed evaluation keeps the
    record as it was and says so on stderr: the trained run is still finished."""
    def text(v) -> str:
        return "none" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
    changed = [f"{k}={text(getattr(cfg, k))}" for k in EVAL_FIELDS
               if k in rec.config and rec.config[k] != getattr(cfg, k)]
    if not changed:
        return rec
    try:
        return evaluate_run(cfg.out, changed)
    except Exception as e:  # noqa: BLE001 -- the weights are finished and kept; the metrics stay as they were
        print(f"warning: {cfg.out}: evaluating again with {' '.join(changed)} failed ({type(e).__name__}: {e}); "
              "the record keeps its earlier metrics", file=sys.stderr)
        return rec


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
    dataset, data_root, data_split, image_size, jpeg_quality. A set that cannot be loaded gives None, and
    :func:`run` loads it again and records why in that run's record."""

    def __init__(self) -> None:
        self._data: dict[tuple, ImageData | None] = {}

    def __call__(self, cfg: TrainConfig) -> ImageData | None:
        key = (cfg.dataset, cfg.data_root, cfg.data_split, cfg.image_size, cfg.jpeg_quality)
        if key not in self._data:
            try:
                self._data[key] = load_dataset(cfg.dataset, cfg.data_root, download=cfg.download,
                                               data_split=cfg.data_split, image_size=cfg.image_size,
                                               jpeg_quality=cfg.jpeg_quality)
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
