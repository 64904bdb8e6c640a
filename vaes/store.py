"""The run store: what a run folder holds, what state its run is in, and the runs of a suite.

A run folder (a run's ``out=``; a suite's or a study's ``OUT/runs/FOLDER``) holds

    record.json            the run's record (vaes.records.Record), written atomically
    model.pt               the finished run's weights: {"model": state dict, "stage2": state dict or None}
    checkpoint.pt          the first stage's checkpoint while it trains (vaes.fit writes and reads it)
    checkpoint_stage2.pt   the second stage's
    samples.png ...        the evaluation's grids (GRIDS)
    .claim                 the lock of the process that trains the run (see RunFolder.claim)

and no other module names these files or builds ``OUT/runs/FOLDER``. :class:`RunFolder` is one
folder: its status (:meth:`RunFolder.state`, the one place it is worked out), the claim of a
process that trains it, the record's start, writes and ends, the weights, and how far its
checkpoint got. :func:`read_index` reads the runs under a folder for the reports.

Status of a run folder: ``new`` (no record), ``running`` (a record says so and a live process
holds the claim), ``interrupted`` (stopped by a signal, or left ``running`` by a process that
died: its checkpoint resumes it), ``finished``, ``failed`` (also a record that cannot be read),
``pruned`` (a sweep's pruner stopped it). A folder that holds another run (another identity,
vaes.config) is refused with :class:`FolderTaken`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import os
import socket
import sys
from pathlib import Path
from typing import Any, Iterator

from vaes.build import dataset_shape, resolve
from vaes.config import IDENTITY_FIELDS, TrainConfig, run_id, to_dict
from vaes.fit import Progress, saved_progress
from vaes.records import CorruptRecord, Record, load_torch, save_torch

RECORD, MODEL, CLAIM = "record.json", "model.pt", ".claim"
CHECKPOINTS = ("checkpoint.pt", "checkpoint_stage2.pt")  # first stage, second stage
GRIDS = ("samples", "samples_stage2", "samples_renorm", "samples_stage2_renorm", "reconstructions")
RUNS = "runs"  # a suite's or a study's runs are OUT/runs/FOLDER


class FolderTaken(ValueError):
    """The folder holds another run (another identity): refused input, exit status 2 on a
    command line; nothing was written."""


class FolderHeld(RuntimeError):
    """Another live process holds the run's claim (it is training it), and the caller asked
    not to wait."""


def runs_dir(out: str | Path) -> Path:
    """OUT/runs: the folder of a suite's or a study's runs."""
    return Path(out) / RUNS


def run_folder(out: str | Path, folder: str) -> "RunFolder":
    """The run folder OUT/runs/FOLDER of a suite or a study."""
    return RunFolder(runs_dir(out) / folder)


@dataclasses.dataclass(frozen=True)
class State:
    """A run folder's status, with the record it was read from (None for none or a damaged
    one; ``damage`` then says why the record cannot be read)."""
    status: str
    record: Record | None
    damage: str | None = None


_held: dict[str, list] = {}  # claims this process holds: path -> [fd, depth] (a claim is re-entrant)


class RunFolder:
    """One run's folder; nothing is written until a method says so."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # -- the layout
    @property
    def suite_out(self) -> Path | None:
        """OUT when this is a suite's or a study's run folder OUT/runs/FOLDER, else None."""
        return self.path.parent.parent if self.path.parent.name == RUNS else None

    @property
    def record_path(self) -> Path:
        return self.path / RECORD

    @property
    def model_path(self) -> Path:
        return self.path / MODEL

    def checkpoint(self, stage: int = 1) -> Path:
        """The checkpoint file of stage 1 or 2 (vaes.fit writes it, and resumes from it)."""
        return self.path / CHECKPOINTS[stage - 1]

    def grid(self, name: str) -> Path:
        """The PNG of the evaluation's grid ``name`` (one of GRIDS)."""
        if name not in GRIDS:
            raise ValueError(f"no grid {name!r}; grids: {', '.join(GRIDS)}")
        return self.path / f"{name}.png"

    # -- the status
    def read(self) -> Record | None:
        """The record; None when there is none; :class:`CorruptRecord` when it cannot be read."""
        return Record.read(self.record_path)

    def state(self, cfg: TrainConfig | None = None) -> State:
        """The run's status (see the module's docstring). With ``cfg``, a folder that holds
        another run is refused (:class:`FolderTaken`, nothing written): a finished, running or
        interrupted run of another identity, or any with a checkpoint left; a failed or pruned
        run without a checkpoint leaves nothing to reuse and may be run over."""
        try:
            rec = self.read()
        except CorruptRecord as e:  # left for the user to look at; the message says what to do
            return State("failed", None, str(e))
        except OSError as e:
            return State("failed", None, f"{self.record_path} cannot be read: {e}")
        if rec is None:
            return State("new", None)
        status = rec.status
        if status == "running" and not self.held():
            status = "interrupted"  # its process died (killed, out of memory): the checkpoint resumes it
        if cfg is not None and not (status in ("failed", "pruned") and not self.resumable()):
            diff = identity_diff(cfg, rec)
            if diff:
                raise FolderTaken(_taken(cfg, rec, diff))
        return State(status, rec)

    def resumable(self) -> bool:
        """Whether a checkpoint is left to resume from."""
        return any((self.path / f).is_file() for f in CHECKPOINTS)

    def progress(self) -> Progress | None:
        """How far the first stage's checkpoint got (epoch, step, history), None without one."""
        return saved_progress(self.checkpoint(1))

    # -- the claim
    def held(self) -> bool:
        """Whether a live process (this one included) holds the claim on the run."""
        if str(self.path.absolute()) in _held:
            return True
        try:
            fd = os.open(self.path / CLAIM, os.O_RDONLY)
        except OSError:  # no claim file: nobody has claimed it since it was last released
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing releases a lock taken just to look
        return False

    @contextlib.contextmanager
    def claim(self, *, wait: bool = True) -> Iterator[None]:
        """Hold the run for this process within the block: another process that claims it waits
        (saying so on stderr) or, with ``wait=False``, gets :class:`FolderHeld`. The claim is an
        flock on the folder's .claim file, which the OS releases when the process dies, so a
        killed run never leaves its folder held. Makes the folder (OSError when it cannot)."""
        key = str(self.path.absolute())  # one key however the folder was named
        if key in _held:  # this process holds it already (an evaluation inside its run)
            _held[key][1] += 1
            try:
                yield
            finally:
                _held[key][1] -= 1
            return
        self.path.mkdir(parents=True, exist_ok=True)
        fd = _lock(self.path / CLAIM, wait)
        _held[key] = [fd, 1]
        try:
            yield
        finally:
            del _held[key]
            (self.path / CLAIM).unlink(missing_ok=True)  # while still locked: a waiter then locks a fresh file
            os.close(fd)

    # -- the record's writes
    def start(self, cfg: TrainConfig, meta: dict | None = None) -> Record:
        """A record of ``cfg`` that begins now (not written yet: :meth:`write`)."""
        return Record.start(run_id=run_id(cfg), seed=cfg.seed, config=to_dict(cfg), meta=meta)

    @staticmethod
    def _bare(cfg: TrainConfig, meta: dict | None) -> Record:
        """A record of ``cfg`` that no run process wrote (no versions, no start time)."""
        return Record(run_id=run_id(cfg), seed=cfg.seed, config=to_dict(cfg), meta=dict(meta or {}))

    def write(self, record: Record) -> Record:
        """Write ``record`` atomically (a reader sees the old record or the new one)."""
        return record.write(self.record_path)

    def end(self, record: Record, status: str, reason: str | None = None, traceback: str | None = None) -> Record:
        """``record`` ended as ``status`` (finished, interrupted, failed or pruned), written. A
        failed record that cannot be written is returned with why in its reason, so that the
        caller still learns it; a finished run's checkpoints go, a pruned run's too (never resumed)."""
        if status == "finished":
            record.finish()
        elif status == "interrupted":
            record.interrupt(reason)
        elif status == "pruned":
            record.prune(reason)
        else:
            record.fail(reason, traceback)
        try:
            self.write(record)
        except OSError as err:
            if status != "failed":
                raise
            record.reason += f" (and the record could not be written to {self.record_path}: {err})"
            return record
        if status in ("finished", "pruned"):
            for name in CHECKPOINTS:
                (self.path / name).unlink(missing_ok=True)
        return record

    def unwritten(self, cfg: TrainConfig, meta: dict | None, reason: str) -> Record:
        """A failed record of ``cfg`` that is not written (beside a damaged record, which is kept)."""
        return self._bare(cfg, meta).fail(reason)

    def after_process(self, cfg: TrainConfig, meta: dict, exitcode: int, stopped: bool) -> Record:
        """The record a run's own process left once it ended. One left ``running`` (killed, out
        of memory) is interrupted when its caller was stopped (not written: the checkpoint
        resumes it), else failed with the exit code (written); a damaged one is failed, unwritten."""
        st = self.state()
        if st.damage is not None:
            return self.unwritten(cfg, meta, st.damage)
        if st.record is not None and st.record.status != "running":
            return st.record
        rec = st.record or self._bare(cfg, meta)
        if stopped:
            return rec.interrupt(f"stopped by a signal (its process ended with exit code {exitcode})")
        return self.end(rec, "failed", f"the run's process ended with exit code {exitcode} before its record did")

    # -- the weights
    def save_model(self, model: dict, stage2: dict | None) -> None:
        """Write the finished run's weights (state dicts) atomically."""
        save_torch(self.model_path, {"model": model, "stage2": stage2})

    def load_model(self) -> Any:
        """The weights as :meth:`save_model` wrote them (CorruptCheckpoint when damaged)."""
        return load_torch(self.model_path)


def _lock(path: Path, wait: bool) -> int:
    """An open descriptor of ``path`` holding its exclusive flock (after waiting, or
    :class:`FolderHeld`); the file on disk is the one locked (a holder removes it on release)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            if not wait:
                os.close(fd)
                raise FolderHeld(f"{path.parent} is being trained by {holder}") from None
            print(f"{path.parent}: being trained by {holder}; waiting for it", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
            return fd
        os.close(fd)  # its holder removed the file we waited on: lock the one there now


def status(run_dir: str | Path) -> str:
    """The status of the run in ``run_dir`` (:meth:`RunFolder.state`)."""
    return RunFolder(run_dir).state().status


# ---- identity: whether a folder's record is of this run -------------------------------------

def identity_diff(cfg: TrainConfig, rec: Record) -> list[str]:
    """The identity fields in which ``cfg`` differs from the run of ``rec`` ([] = the same run).
    ``cfg`` is compared as given, then resolved (a record is resolved once its data loaded), then
    field by field."""
    if rec.run_id == run_id(cfg):  # the usual case: nothing to resolve
        return []
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    candidates = [cfg]
    shape = (rec.data or {}).get("shape")
    try:
        shape = tuple(shape) if shape else dataset_shape(cfg)
        if shape:
            candidates.append(resolve(cfg, shape))
    except (ValueError, KeyError, TypeError):  # no shape known without loading: compare unresolved
        pass
    if rec.run_id == run_id(candidates[-1]):
        return []
    # a record holds the resolved config once its data loaded (rec.data), else the one it was given
    mine = to_dict(candidates[-1 if rec.data else 0])

    def stored(k: str):
        f = fields[k]
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        return rec.config.get(k, default)
    diff = [k for k in IDENTITY_FIELDS if k in mine and stored(k) != mine[k]]
    # every field agrees and the ids do not: the data file's content differs (its hash is part of
    # the id), or the record's id was hashed by an older vaebench from other fields
    return diff or ["the content of data_root (or the record's run id is from an older vaebench)"]


def _taken(cfg: TrainConfig, rec: Record, diff: list[str]) -> str:
    c = rec.config
    return (f"out={cfg.out} already holds another run ({rec.status}: variant={c.get('variant')}, "
            f"dataset={c.get('dataset')}, seed={rec.seed}, run id {rec.run_id}); this one (run id {run_id(cfg)}) "
            f"differs in {', '.join(diff)}. A run folder answers for one run only, so nothing was "
            f"written. Give this run another out= (e.g. out={cfg.out.rstrip('/')}-{run_id(cfg)}), or delete "
            f"that folder to train this run there.")


# ---- the index of a suite's or a study's runs -----------------------------------------------

def record_paths(folder: str | Path, missing_ok: bool = False) -> list[Path]:
    """Every record under ``folder`` (recursively: OUT/runs, OUT or one run folder), sorted;
    FileNotFoundError when there is none, unless ``missing_ok``."""
    folder = Path(folder)
    if missing_ok and not folder.is_dir():
        return []
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder} to read run records from")
    paths = sorted(folder.rglob(RECORD))
    if not paths and not missing_ok:
        raise FileNotFoundError(f"no {RECORD} under {folder}; run the suite first "
                                "(python -m benchmarks.run --suite NAME)")
    return paths


@dataclasses.dataclass(frozen=True)
class RunIndex:
    """The records under a folder, each read once, in path order; ``dirs`` their run folders."""

    records: list[Record]
    dirs: list[Path]

    @functools.cached_property
    def by_dir(self) -> dict[str, Record]:
        """Run folder (absolute, resolved) -> its record."""
        return {str(Path(d).resolve()): r for d, r in zip(self.dirs, self.records)}

    def record(self, run_dir: str | Path) -> Record:
        """The record of the run in ``run_dir``, without reading it again."""
        try:
            return self.by_dir[str(Path(run_dir).resolve())]
        except KeyError:
            raise KeyError(f"no record of {run_dir} among the runs read") from None


def read_index(folder: str | Path, missing_ok: bool = False) -> RunIndex:
    """Every record under ``folder`` (:func:`record_paths`), read once; a damaged one raises
    :class:`CorruptRecord` (a ValueError) naming the file and the fix."""
    paths = record_paths(folder, missing_ok)
    return RunIndex([Record.read(p) for p in paths], [p.parent for p in paths])
