"""What every command line of vaebench shares: the exit statuses, one way to refuse
input, argparse value checks in TrainConfig's message style (the argument, the value, what is
allowed), and the refusal to write committed results from uncommitted code.
"""
from __future__ import annotations

import argparse
import errno
import functools
import os
import sys
from pathlib import Path
from typing import Any, Callable

from vaes.records import RESULT_DIRS, CorruptCheckpoint, CorruptRecord, uncommitted_changes

EXIT_STATUSES = ("exit status: 0 done (also --help, --list, a finished run or suite run again); "
                 "1 a run failed (recorded with its reason); 2 refused input: an argument, a file or a path "
                 "(the message names it, the value and what is allowed, or the file and the way out); 3 interrupted (SIGTERM/SIGUSR1; the same "
                 "command resumes)")


def refuse(error: BaseException | str) -> int:
    """Print ``error: ...`` on stderr and return 2, the status of refused input."""
    print(f"error: {error}", file=sys.stderr)
    return 2


# ---- the one error boundary of every command ---------------------------------------------------
# errors a user causes with a file or a path: the paragraph names the file and the way out
_WHY = {errno.ENOENT: "it does not exist", errno.ENOTDIR: "a part of that path is a file, not a folder",
        errno.EISDIR: "it is a folder where a file belongs", errno.EACCES: "permission denied",
        errno.EPERM: "permission denied", errno.EEXIST: "something is in the way there",
        errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
        errno.EROFS: "the file system is read-only", errno.ENAMETOOLONG: "the name is too long",
        errno.ELOOP: "it is a loop of symbolic links"}


def user_error(e: BaseException) -> str | None:
    """The one-paragraph message of an error a user can cause through a file or a path (a damaged
    record or checkpoint, a missing, unreadable or unwritable path, a full disk), naming the file
    and the way out; None for any other error, which stays a traceback."""
    if isinstance(e, (CorruptRecord, CorruptCheckpoint)):
        return str(e)  # these name the file and the fix already
    if not isinstance(e, OSError) or (e.errno not in _WHY and type(e) is not FileNotFoundError):
        return None  # a network error, a broken device: not a user's file
    if e.filename is None:  # raised by vaebench with its own message (e.g. a missing data set)
        return str(e)
    names = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
    return (f"{names}: {_WHY.get(e.errno, e.strerror)} ({e.strerror}); check the path, or give another "
            "one (a folder where a folder belongs, a file where a file belongs, one you may write)")


def entry_point(main: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator of a command's ``main``: the errors of :func:`user_error` become its paragraph
    on stderr and exit status 2; anything else stays a traceback (exit 1)."""
    @functools.wraps(main)
    def guarded(*args, **kw):
        try:
            return main(*args, **kw)
        except (OSError, CorruptRecord, CorruptCheckpoint) as e:
            message = user_error(e)
            if message is None:
                raise
            return refuse(message)
    return guarded


def output_refusal(path: str | Path, what: str, *, folder: bool = True) -> str | None:
    """Why ``path`` (a folder, or a file with ``folder=False``) cannot be created or written,
    or None: checked before anything is written, so a refused command leaves nothing half-done."""
    path = Path(path).expanduser()
    kind = "folder" if folder else "file"
    if path.exists() and path.is_dir() != folder:
        return (f"{what} {str(path)!r} is a {'file' if folder else 'folder'}, where a {kind} belongs; "
                f"give another path, or move it away")
    if path.exists():
        return None if os.access(path, os.W_OK | (os.X_OK if folder else 0)) else (
            f"{what} {str(path)!r} cannot be written: no permission; give a path you may write")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return (f"{what} {str(path)!r} cannot be created: {str(parent)!r} is a file, not a folder; "
                "give a path under a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{what} {str(path)!r} cannot be written: no permission in {str(parent)!r}; give a path you may write"
    return None


def parser(prog: str, doc: str, **kw) -> argparse.ArgumentParser:
    """An ArgumentParser whose --help ends with the exit statuses (argparse itself exits 2
    with 'usage ... error: argument --x: ...' on a value it cannot take)."""
    return argparse.ArgumentParser(prog=prog, description=doc, epilog=EXIT_STATUSES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter, **kw)


def number(kind: type = int, *, low: float | None = None, high: float | None = None,
           above: float | None = None, what: str = "") -> Callable[[str], int | float]:
    """An argparse ``type=`` that reads ``kind`` within [low, high] (either end open when
    None; ``above``: strictly greater than), refusing any other value with what is allowed;
    ``what`` says what the number means."""
    name = "a whole number" if kind is int else "a number"
    bounds = (f" >= {low}" if low is not None else f" > {above}" if above is not None else "") + (
        f"{' and' if low is not None else ''} <= {high}" if high is not None else "")
    allowed = f"{name}{bounds}" + (f" ({what})" if what else "")

    def read(text: str):
        try:
            value = kind(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"{text!r} is not {name}; expected {allowed}") from None
        if kind is float and (value != value or value in (float("inf"), float("-inf"))):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {allowed}")
        if ((low is not None and value < low) or (high is not None and value > high)
                or (above is not None and value <= above)):
            raise argparse.ArgumentTypeError(f"{text!r} is out of range; expected {allowed}")
        return value
    read.__name__ = kind.__name__  # argparse names the type in its own messages
    return read


def choice_list(allowed: tuple[str, ...] | list[str]) -> Callable[[str], list[str]]:
    """An argparse ``type=`` for comma-separated names, each one of ``allowed``."""
    def read(text: str) -> list[str]:
        names = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in names if v not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"{', '.join(bad)} not known; choose from: {', '.join(allowed)}")
        return names
    read.__name__ = "list"
    return read


def dirty_refusal(out: str | Path, allow_dirty: bool, repo: str | Path | None = None) -> str | None:
    """Why writing into ``out`` is refused, or None: committed results (a folder under the
    checkout's results/) come from committed code, so a tree with uncommitted changes outside
    results/ and runs/ may write there only with --allow-dirty. ``repo``: the checkout (default:
    the one vaebench runs from)."""
    if allow_dirty:
        return None
    found = uncommitted_changes(repo)
    if found is None or not found[1]:  # outside a checkout, or nothing uncommitted
        return None
    top, paths = found
    try:
        inside = Path(out).resolve().relative_to(top.resolve()).parts[:1] == (RESULT_DIRS[0],)
    except ValueError:
        return None
    if not inside:
        return None
    shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    return (f"--out {out} is under {RESULT_DIRS[0]}/, whose results must come from committed code, but the "
            f"tree has uncommitted changes ({shown}); commit them first, write elsewhere (the default "
            f"runs/ folder), or pass --allow-dirty (the records then say +dirty)")
