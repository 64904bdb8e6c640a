"""A command timed from outside, in a fresh process, for the benchmarks that time whole commands
(the speed benchmark's suite part, the README's first minutes); a command that fails gives no figure."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class TimedCommandFailed(RuntimeError):
    """A timed command failed, so no figure comes from it; ``status``: the exit status to give."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


def run_timed(cmd: list[str], *, env: dict | None = None, log: Path | None = None
              ) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``cmd`` in the repository: (the finished process, its wall seconds). Its output goes to
    ``log`` (stdout and stderr together) when given, else is captured as text on the process."""
    t0 = time.perf_counter()  # a fresh process: its exit drains the device
    if log is None:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    else:
        with open(log, "w") as handle:
            proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT)
    return proc, time.perf_counter() - t0
