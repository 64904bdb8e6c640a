"""Run records and torch files, written atomically (temporary file, then rename).

:class:`Record` is the type of what one run leaves in its folder: its fields and their JSON,
a start and one method per end (finished, interrupted, failed, pruned). The run store
(vaes/store.py) is the one that starts, ends, writes and reads records in run folders; the
suite runner, the sweep worker, the CLI and the frames of ``benchmarks.reporting.frames`` read the
same type through it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import pickle
import platform
from importlib.metadata import PackageNotFoundError, version
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy
import torch
import torchvision

from vaes.evaluation.catalog import FORMAT, record_form


CACHE_ENV = "VAEBENCH_CACHE_DIR"


def cache_root(sub: str) -> Path:
    """vaebench's cache folder ``sub`` (fid, classifier, inception): $VAEBENCH_CACHE_DIR/sub,
    else ~/.cache/vaebench/sub."""
    return Path(os.environ.get(CACHE_ENV, "~/.cache/vaebench")).expanduser() / sub


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A fresh staging file beside ``path`` to write; on success it replaces ``path`` in one
    step (a reader, or a process killed half-way, sees the old file or the new one, never a
    torn one); on an error it is removed. The one atomic writer of the project. The staging
    file may be replaced by a symlink (seeding the torch.hub cache), which is renamed as it is."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        yield Path(staging)
        if not os.path.islink(staging):  # chmod would follow a link to the file it names
            os.chmod(staging, 0o666 & ~_umask())  # mkstemp makes 0600; a shared cache or results need the usual mode
        os.replace(staging, path)
    finally:
        Path(staging).unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically: a reader sees the old file or the new one, never half of one."""
    with atomic_path(path) as staging, open(staging, "w") as f:
        json.dump(obj, f, indent=1, allow_nan=True)
        f.flush()
        os.fsync(f.fileno())


class CorruptRecord(ValueError):
    """A record.json exists but is not a readable JSON object (cut short, or another file)."""


class NotARecord(CorruptRecord):
    """A readable JSON object that is not a run record (no ``config`` object, an unknown status)."""


def read_json(path: str | Path) -> dict | None:
    """The JSON object at ``path``, or None when there is none; :class:`CorruptRecord` (a
    message naming the file and the fix) when the file is cut short or is not a JSON object."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)  # Python's json reads NaN / Infinity, which vaebench writes
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptRecord(
            f"{path} cannot be read as JSON ({type(e).__name__}: {e}): it was cut short (a full disk, a "
            "copy interrupted) or is another file. vaebench writes records atomically, so this file did "
            "not come from a run here: restore it from a copy, or delete it (and the run folder's "
            "checkpoint*.pt) to run that run again") from None
    if not isinstance(obj, dict):
        raise CorruptRecord(f"{path} holds JSON {type(obj).__name__}, not a record object; restore it "
                            "from a copy, or delete it to run that run again")
    return obj


def save_torch(path: str | Path, obj: Any) -> None:
    """torch.save atomically (a killed process never leaves a torn checkpoint)."""
    # through a handle: given a path, torch.save names the zip's folder after the file, and the
    # staging name is random; a handle gives the same bytes for the same object every time
    with atomic_path(path) as staging, open(staging, "wb") as f:
        torch.save(obj, f)


class CorruptCheckpoint(RuntimeError):
    """A checkpoint file exists but cannot be read."""


def load_torch(path: str | Path) -> Any:
    """torch.load(weights_only=True), turning a damaged file into a clear error."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as e:  # a bad file
        raise CorruptCheckpoint(
            f"{path} cannot be read as a torch file ({type(e).__name__}: {str(e)[:200]}): it was cut "
            f"short or is another file (vaebench never loads pickled code). If it is a checkpoint, "
            f"delete it to restart that run from scratch; if it is a finished run's model.pt, delete "
            f"model.pt and record.json and run it again") from None


def versions() -> dict[str, str]:
    """Versions of Python and the libraries that decide the numbers."""
    out = {"python": platform.python_version(), "torch": torch.__version__,
           "torchvision": torchvision.__version__, "numpy": numpy.__version__}
    for pkg in ("vaebench", "torch-fidelity", "pytorch-fid", "optuna"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


RESULT_DIRS = ("results", "runs")  # what commands write: never counted as uncommitted code


def _git(args: list[str], cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10).stdout


def uncommitted_changes(repo: str | Path | None = None) -> tuple[Path, list[str]] | None:
    """(the checkout's top folder, its tracked files with uncommitted changes outside results/
    and runs/), or None outside a git checkout. ``repo``: any folder in the checkout (default:
    the one this file is in). Writing a suite into results/ must not make the next one dirty."""
    here = Path(repo) if repo is not None else Path(__file__).resolve().parent
    try:
        top = _git(["rev-parse", "--show-toplevel"], here).strip()
        if not top:
            return None
        status = _git(["status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                       *(f":(top,exclude){d}" for d in RESULT_DIRS)], here)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Path(top), [line[3:] for line in status.splitlines() if line.strip()]


def git_commit(repo: str | Path | None = None) -> str | None:
    """The commit of the code that ran (with '+dirty' for uncommitted changes outside results/
    and runs/), if in a checkout. Without ``repo``, the checkout this file is in, asked once per
    process: its code is what this process runs, so every run of a suite or a sweep shares it."""
    return _commit(Path(repo)) if repo is not None else _own_commit()


@functools.lru_cache(maxsize=1)
def _own_commit() -> str | None:
    return _commit(Path(__file__).resolve().parent)


def _commit(here: Path) -> str | None:
    try:
        sha = _git(["rev-parse", "HEAD"], here).strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = uncommitted_changes(here)
    dirty = bool(found and found[1])
    return (sha + ("+dirty" if dirty else "")) if sha else None


# ---- the record of one run ------------------------------------------------------------------

STATUSES = ("running", "finished", "interrupted", "failed", "pruned")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclasses.dataclass
class Record:
    """One run's ``record.json``.

    ``running`` while it trains (a killed run stays visible as that), then exactly one of
    :meth:`finish`, :meth:`interrupt` (a signal or a time limit: resumable from its checkpoint),
    :meth:`fail` (missing data, a NaN loss, out of memory, a bug) or :meth:`prune` (an Optuna
    pruner's decision). ``meta`` holds the caller's fields (a suite's ``suite`` and ``label``,
    a trial's number); they sit at the top level of the JSON, beside the fields below, which
    is also where fields this version does not know (from an older or newer vaebench) go.
    Optional parts are absent from the JSON until the run reaches them; ``format`` (the form of
    metrics and evaluations, vaes.evaluation.catalog) is always written.
    """
    run_id: str | None
    seed: int | None
    config: dict
    status: str = "running"
    reason: str | None = None
    versions: dict | None = None
    git_commit: str | None = None
    started: str | None = None
    data: dict | None = None           # name, shape, n_train, n_heldout, note
    n_params: int | None = None
    device: str | None = None
    history: list | None = None        # one dict per epoch: loss, recon, kl, mse, gamma, lr
    gamma_ratio: float | None = None   # gamma / sqrt(MSE) at the end (1 once the balance holds)
    timings: dict | None = None        # train_seconds, train_images_per_second, eval_seconds
    cost: dict | None = None           # FLOPs per image and in all (vaes.evaluation.metrics.train_step_flops)
    stage2: dict | None = None         # n_params, history, train_seconds, gamma_ratio
    metrics: dict | None = None        # one entry per metric (vaes.evaluation.catalog): value, spread, evaluation
    evaluations: dict | None = None    # each evaluation's setup, once (engine, weights, reference set...)
    format: int = FORMAT               # the form of metrics and evaluations (older records: 1, migrated on reading)
    traceback: str | None = None
    ended: str | None = None
    meta: dict = dataclasses.field(default_factory=dict)

    ALWAYS: ClassVar[tuple[str, ...]] = ("run_id", "seed", "status", "reason", "config", "format")

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"record status {self.status!r} is none of {', '.join(STATUSES)}")
        clash = sorted(set(self.meta) & {f.name for f in dataclasses.fields(self)})
        if clash:
            raise ValueError(f"meta key(s) {clash} would overwrite record fields; name them otherwise")

    # -- the one start and the ends
    @classmethod
    def start(cls, *, run_id: str, seed: int, config: dict, meta: dict | None = None) -> "Record":
        """A run that begins now, with the versions and the commit that run it."""
        return cls(run_id=run_id, seed=seed, config=config, versions=versions(), git_commit=git_commit(),
                   started=_now(), meta=dict(meta or {}))

    def _end(self, status: str, reason: str | None) -> "Record":
        self.status, self.reason, self.ended = status, reason, _now()
        return self

    def finish(self) -> "Record":
        return self._end("finished", None)

    def interrupt(self, reason: str) -> "Record":
        return self._end("interrupted", reason)

    def fail(self, reason: str, traceback: str | None = None) -> "Record":
        self.traceback = traceback
        return self._end("failed", reason)

    def prune(self, reason: str) -> "Record":
        return self._end("pruned", reason)

    def set_metrics(self, raw: dict) -> "Record":
        """An evaluation's output ``raw`` (each number with its setup) as the record's ``metrics``
        and ``evaluations`` (vaes.evaluation.catalog.record_form); an undeclared metric raises."""
        self.metrics, self.evaluations = record_form(raw, context={
            "jpeg_quality": self.config.get("jpeg_quality"), "n_heldout": (self.data or {}).get("n_heldout")})
        self.format = FORMAT
        return self

    @property
    def ok(self) -> bool:
        return self.status == "finished"

    # -- JSON
    def to_json(self) -> dict:
        """The JSON object: the fields (optional ones once set), ``meta`` beside them."""
        out: dict = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "meta":
                out.update(value)
            elif f.name in self.ALWAYS or value is not None:
                out[f.name] = value
        return out

    @classmethod
    def from_json(cls, obj: dict, where: str = "record") -> "Record":
        """A record from its JSON object; :class:`CorruptRecord` when it is not one."""
        if not isinstance(obj.get("config"), dict):
            raise NotARecord(f"{where} is not a vaebench run record (no 'config' object); "
                                "restore it from a copy, or delete it to run that run again")
        names = {f.name for f in dataclasses.fields(cls)} - {"meta"}
        known = {k: v for k, v in obj.items() if k in names}
        known.setdefault("run_id", None)
        known.setdefault("seed", obj["config"].get("seed"))
        known.setdefault("status", "running")
        form = obj.get("format", 1)
        if not isinstance(form, int) or isinstance(form, bool) or not 1 <= form <= FORMAT:
            raise NotARecord(f"{where}: its format {form!r:.20} is none this vaebench reads (1 to {FORMAT}): "
                             "a newer vaebench wrote it, or it was edited; read it with that version")
        known["format"] = FORMAT
        # an older form: each metric with its setup beside it, as the evaluation returns it; the same
        # split as a run's (a metrics field that is no object is left for vaes.schema to name)
        if form < FORMAT and isinstance(known.get("metrics"), dict):
            data = obj.get("data") if isinstance(obj.get("data"), dict) else {}
            try:
                known["metrics"], known["evaluations"] = record_form(
                    known["metrics"], strict=False,
                    context={"jpeg_quality": obj["config"].get("jpeg_quality"), "n_heldout": data.get("n_heldout")})
            except (ValueError, AttributeError, TypeError) as e:
                raise NotARecord(f"{where}: its metrics cannot be read in the current form ({e}); restore it "
                                 "from a copy, or delete it to run that run again") from None
        try:
            return cls(**known, meta={k: v for k, v in obj.items() if k not in names})
        except ValueError as e:
            raise NotARecord(f"{where}: {e}") from None

    def write(self, path: str | Path) -> "Record":
        write_json(path, self.to_json())
        return self

    @classmethod
    def read(cls, path: str | Path) -> "Record | None":
        """The record at ``path``; None when there is none; :class:`CorruptRecord` when unreadable."""
        obj = read_json(path)
        return None if obj is None else cls.from_json(obj, str(path))
