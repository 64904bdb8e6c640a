"""A suite on a cluster: its pending runs as ONE submitit array job (SLURM, local, debug).

    python -m benchmarks.run --suite quick --cluster slurm --partition debug --workers 4

Each array task is one job of the suite through :func:`benchmarks.suite.run_job`; SIGUSR2
(time limit, preemption) checkpoints it and requeues the task, which resumes the run.
"""
from __future__ import annotations

import time
from pathlib import Path

import submitit

from benchmarks.report import report_or_say
from benchmarks.suite import job_status, run_job
from launch.executors import ClusterOptions, PreemptionGuard, make_executor, maybe_snapshot, set_threads, wait_jobs, write_launch


class SuiteTask(submitit.helpers.Checkpointable):
    """One array task of a suite: ``benchmarks.suite.run_job`` of one job (resumes its checkpoint)."""

    def __init__(self, out: str, suite_name: str, threads: int | None = None):
        self.out, self.suite_name, self.threads = out, suite_name, threads

    def __call__(self, job) -> dict:
        set_threads(self.threads)
        with PreemptionGuard():  # SIGUSR2: checkpoint at a step boundary, then submitit requeues
            rec = run_job(job, Path(self.out), self.suite_name, progress=False)
            print(f"{job.folder}: {rec.status}" + (f" ({rec.reason})" if rec.reason else ""), flush=True)
        return {"folder": job.folder, "status": rec.status, "reason": rec.reason}

    def checkpoint(self, job) -> submitit.helpers.DelayedSubmission:
        """Requeue the same job; run_job resumes it from its run folder's checkpoint."""
        return submitit.helpers.DelayedSubmission(SuiteTask(self.out, self.suite_name, self.threads), job)


def run_suite_on_cluster(suite: dict, jobs: list, out: Path, args) -> int:
    """Run a suite's pending jobs as ONE array job (finished ones skipped, interrupted ones
    resumed, failed ones only with --retry-failed), wait for them, then build the report."""
    opts = ClusterOptions.from_args(args)
    out = Path(out).resolve()
    retry_failed = bool(getattr(args, "retry_failed", False))
    status = {j.folder: job_status(out, j) for j in jobs}  # each record read once here, once by its run
    todo = [j for j in jobs if status[j.folder] != "finished" and (retry_failed or status[j.folder] != "failed")]
    print(f"suite {suite['name']}: {len(jobs)} runs, {len(jobs) - len(todo)} already done, "
          f"{len(todo)} to run on {opts.cluster} -> {out}", flush=True)
    if todo:
        try:
            executor = make_executor(opts, out / "submitit", name=f"suite-{suite['name']}",
                                     parallelism=getattr(args, "workers", None) or len(todo))
        except (RuntimeError, ValueError) as e:
            print(f"error: {e}", flush=True)
            return 2
        t0 = time.perf_counter()
        with maybe_snapshot(bool(getattr(args, "snapshot", False)), out):
            sjobs = executor.map_array(SuiteTask(str(out), suite["name"],
                                                 None if opts.cluster == "debug" else opts.cpus_per_worker), todo)
        write_launch(out, "suite", sjobs, opts.cluster)
        print(f"submitted {len(sjobs)} task(s): {', '.join(j.job_id for j in sjobs)} "
              f"(logs: {out / 'submitit'})", flush=True)
        for r in wait_jobs(sjobs):
            if r["ok"]:
                res = r["result"]
                print(f"  {res['folder']}: {res['status']}" + (f": {res['reason']}" if res.get("reason") else ""),
                      flush=True)
        print(f"suite {suite['name']}: {time.perf_counter() - t0:.0f} s on {opts.cluster}", flush=True)
    report_or_say(suite, out)
    statuses = [job_status(out, j) for j in jobs]
    return 0 if all(s == "finished" for s in statuses) else 1
