"""Run records and checkpoints on disk, written atomically (temporary file, then rename)."""
from __future__ import annotations

import contextlib
import json
import os
import pickle
import platform
from importlib.metadata import PackageNotFoundError, version
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy
import torch
import torchvision


CACHE_ENV = "VAEBENCH_CACHE_DIR"


def cache_root(sub: str) -> Path:
    """vaebench's cache folder ``sub`` (fid, classifier, inception): $VAEBENCH_CACHE_DIR/sub,
    else ~/.cache/vaebench/sub."""
    return Path(os.environ.get(CACHE_ENV, "~/.cache/vaebench")).expanduser() / sub


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A fresh staging file beside ``path`` to write; on success it replaces ``path`` in one
    step (a reader, or a process killed half-way, sees the old file or the new one, never a
    torn one); on an error it is removed. The one atomic writer of the project."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        yield Path(staging)
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


def git_commit() -> str | None:
    """The commit of the code that ran (with '+dirty' for uncommitted changes), if in a checkout."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (sha + ("+dirty" if dirty else "")) if sha else None
