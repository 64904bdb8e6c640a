"""submitit executors and array jobs, and SIGUSR2 handled as a checkpoint-then-requeue.

A task that gets SLURM's time-limit or preemption signal (submitit sets ``--signal=USR2@90``)
first lets the trainer checkpoint at a step boundary (:class:`PreemptionGuard`), then hands
over to submitit, which calls the task's ``checkpoint()`` and requeues it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import submitit
import torch

from vaes.records import write_json
from vaes.stop import StopRequests

CLUSTERS = ("slurm", "local", "debug")


class PreemptionGuard:
    """While active, SIGUSR2 (SLURM's time-limit / preemption signal, through submitit) asks
    the trainer to checkpoint at the next step boundary (a stop request, vaes/stop.py) instead of
    letting submitit's handler requeue in the middle of a step. On a clean exit after such a
    signal, submitit's handler is called: it calls the task's ``checkpoint()`` and requeues the
    job (then exits)."""

    def __init__(self):
        self.signalled = False
        self._prev = None
        self._stops = StopRequests((signal.SIGUSR2,), on_request=self._on_signal)

    def _on_signal(self, signum: int) -> None:
        self.signalled = True
        print(f"{signal.Signals(signum).name} received: checkpointing the current run", flush=True)

    def __enter__(self) -> "PreemptionGuard":
        self._prev = signal.getsignal(signal.SIGUSR2)  # submitit's handler, called on the way out
        self._stops.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._stops.__exit__(exc_type, exc, tb)
        if self.signalled and exc_type is None and callable(self._prev):
            print("handing over to submitit: checkpoint() and requeue", flush=True)
            self._prev(signal.SIGUSR2, None)  # submitit: checkpoint + scontrol requeue + exit
        return False


def set_threads(n: int | None) -> None:
    """One torch thread per CPU SLURM gave the task (torch would otherwise use every core)."""
    if n:
        torch.set_num_threads(n)


@dataclasses.dataclass(frozen=True)
class ClusterOptions:
    """Resources of each array task."""
    cluster: str = "local"
    partition: str | None = None
    account: str | None = None
    gpus_per_worker: int = 0
    cpus_per_worker: int = 1
    time_min: int = 60
    mem_gb: float = 4.0

    @classmethod
    def from_args(cls, args) -> "ClusterOptions":
        """From argparse args of benchmarks.run or sweeps.run (missing fields keep defaults)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{n: getattr(args, n) for n in names if getattr(args, n, None) is not None})


def make_executor(opts: ClusterOptions, folder: Path, *, name: str, parallelism: int) -> submitit.Executor:
    """submitit executor writing job folders under ``folder/%j`` (one array per submission)."""
    if opts.cluster not in CLUSTERS:
        raise ValueError(f"cluster={opts.cluster!r}: choose one of {', '.join(CLUSTERS)}")
    if opts.cluster == "slurm" and shutil.which("sbatch") is None:
        raise RuntimeError("--cluster slurm but sbatch is not on PATH: run on a SLURM login node, "
                           "or use --cluster local (subprocesses here) or debug (in this process)")
    ex = submitit.AutoExecutor(folder=Path(folder) / "%j", cluster=opts.cluster)
    params: dict[str, Any] = dict(name=name, timeout_min=opts.time_min, cpus_per_task=opts.cpus_per_worker,
                                  mem_gb=opts.mem_gb, slurm_array_parallelism=parallelism)
    if opts.gpus_per_worker:
        params["gpus_per_node"] = opts.gpus_per_worker
    if opts.partition:
        params["slurm_partition"] = opts.partition
    if opts.account:
        params["slurm_account"] = opts.account
    ex.update_parameters(**params)
    return ex


def wait_jobs(jobs: list, what: str = "task") -> list[dict]:
    """Wait for every job; a job that died is reported, not raised (the others still count)."""
    out = []
    for i, job in enumerate(jobs):
        try:
            out.append({"task": i, "job_id": job.job_id, "ok": True, "result": job.result()})
        # slurm/local wrap a worker's exception in FailedJobError, debug re-raises it as it is
        except Exception as e:  # noqa: BLE001 -- one dead worker must not hide what the others did
            last = [line for line in str(e).strip().splitlines() if line.strip()][-1:]
            error = " ".join(last)[:500] if isinstance(e, submitit.core.utils.UncompletedJobError) \
                else f"{type(e).__name__}: {' '.join(last)[:500]}"
            out.append({"task": i, "job_id": job.job_id, "ok": False, "error": error})
            print(f"{what} {i} (job {job.job_id}) did not finish: {out[-1]['error']}", flush=True)
    return out


@contextlib.contextmanager
def maybe_snapshot(enabled: bool, out: Path):
    """Optionally run jobs from a copy of the repository (submitit's RsyncSnapshot)."""
    if not enabled:
        yield
        return
    repo = Path(__file__).resolve().parents[1]  # the repository root (launch/ sits in it)
    with submitit.helpers.RsyncSnapshot(snapshot_dir=out / "code", root_dir=repo):
        yield


def write_launch(out: Path, kind: str, jobs: list, cluster: str) -> None:
    """OUT/launch.json: what was submitted where, so a later look can find the jobs."""
    write_json(out / "launch.json", {"kind": kind, "cluster": cluster, "job_ids": [j.job_id for j in jobs],
                                     "submitted": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
