"""What every command line of vaebench shares (issue 19): the exit statuses, one way to refuse
input, argparse value checks in TrainConfig's message style (the argument, the value, what is
allowed), and the refusal to write committed results from uncommitted code.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from vaes.records import RESULT_DIRS, uncommitted_changes

EXIT_STATUSES = ("exit status: 0 done (also --help, --list, a finished run or suite run again); "
                 "1 a run failed (recorded with its reason); 2 refused input (the message names the "
                 "argument, the value and what is allowed); 3 interrupted (SIGTERM/SIGUSR1; the same "
                 "command resumes)")


def refuse(error: BaseException | str) -> int:
    """Print ``error: ...`` on stderr and return 2, the status of refused input."""
    print(f"error: {error}", file=sys.stderr)
    return 2


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


def int_list(*, low: int = 1, what: str = "") -> Callable[[str], list[int]]:
    """An argparse ``type=`` for comma-separated whole numbers, each >= ``low``."""
    one = number(int, low=low, what=what)

    def read(text: str) -> list[int]:
        parts = [p for p in text.split(",") if p.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated whole numbers >= {low}")
        return [one(p.strip()) for p in parts]
    read.__name__ = "list"
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
