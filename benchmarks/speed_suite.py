"""The suite part of the speed benchmark (``python -m benchmarks.speed --parts suite``): a whole
suite through ``benchmarks.run --jobs J`` against its slowest run alone, each a fresh command
timed from outside. A command that fails, or leaves a run unfinished, gives no figure."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks.timed import TimedCommandFailed, run_timed
from vaes.store import read_index, runs_dir


def suite_args(args, device: str) -> list[str]:
    """The arguments of python -m benchmarks.run that part suite times (checked by parse_args)."""
    return ["--suite", args.suite, "--device", device, "--epochs-scale", str(args.suite_epochs_scale),
            "--set", *args.suite_set]


def part_suite(args, device: torch.device, work: Path, noise: tuple | None = None) -> dict:
    """``benchmarks.run --jobs J`` on the suite against its slowest single run, each a fresh
    command; :class:`TimedCommandFailed` when either fails or leaves a run unfinished. ``noise``:
    (train, test) uint8 images that replace the suite's data (--synthetic)."""
    base = [sys.executable, "-m", "benchmarks.run", *suite_args(args, device.type)]
    if noise is not None:  # the suite's own protocol on noise of its shape (benchmarks.suite.expand)
        train, test = noise
        np.savez(work / "noise.npz", train=train.numpy(), test=test.numpy())
        base += ["dataset=npz", f"data_root={work / 'noise.npz'}"]
    res = {"suite": args.suite, "seeds": args.suite_seeds, "jobs": args.jobs, "slowest": args.suite_slowest}
    for name, extra in (("single", ["--only", args.suite_slowest, "--seeds", "1", "--jobs", "1"]),
                        ("concurrent", ["--seeds", str(args.suite_seeds), "--jobs", str(args.jobs)])):
        cmd = base + extra + ["--out", str(work / name)]
        p, dt = run_timed(cmd)
        records = read_index(runs_dir(work / name), missing_ok=True).records
        res[name] = {"wall_seconds": dt, "exit": p.returncode, "runs": len(records),
                     "finished": sum(r.status == "finished" for r in records), "tail": p.stdout[-400:] + p.stderr[-400:]}
        if p.returncode != 0 or not records or res[name]["finished"] < len(records):  # then the time means nothing
            raise TimedCommandFailed(f"the timed command {' '.join(cmd[1:])} ended with exit status {p.returncode} "
                                     f"and {res[name]['finished']} of {len(records)} runs finished, so no speed figure is "
                                     f"saved; its output ends:\n{res[name]['tail']}", 2 if p.returncode == 2 else 1)
    res["concurrent_over_single"] = res["concurrent"]["wall_seconds"] / res["single"]["wall_seconds"]
    return res
