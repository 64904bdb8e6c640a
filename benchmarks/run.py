"""Run a benchmark suite: every (variant, seed) through the one trainer and evaluator.

    python -m benchmarks.run --suite quick
    python -m benchmarks.run --suite cifar10 --seeds 1 --only balanced --epochs-scale 0.01
    python -m benchmarks.run --suite cifar10 --jobs 4 --device cuda
    python -m benchmarks.run --list

Each run gets its own folder under ``OUT/runs`` named by label, seed and the hash of its
resolved config. Running the command again skips finished runs, resumes interrupted ones
from their checkpoint and retries failed ones only with ``--retry-failed``; a run another
process is training (a second command on the same OUT) is left to the end, then waited for,
and never trained twice. A run that fails
(NaN, missing data, out of memory, a bug) is recorded with its reason and the suite goes on.
With ``--jobs N`` up to N runs go at once, each in its own process on the same device (a
run's process loads its own data); what a run records does not depend on N. The report
(tables and figures) is written at the end. An --out under results/ (the
committed results) is refused from a tree with uncommitted changes unless --allow-dirty.
"""
from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from pathlib import Path

import torch

from benchmarks.cluster import run_suite_on_cluster
from benchmarks.report import report_or_say
from benchmarks.suite import Job, expand, job_meta, job_status, list_suites, load_suite, run_job
from vaes.cli import dirty_refusal, entry_point, number, output_refusal, parser, refuse
from vaes.config import field_overrides
from vaes.records import Record
from vaes.run import DataCache
from vaes.stop import StopRequests
from vaes.store import FolderHeld, FolderTaken


def run_suite(suite: dict, jobs: list[Job], out: Path, *, retry_failed: bool = False,
              progress: bool | None = None, report: bool = True, parallel: int = 1) -> list[Record]:
    """Run the pending jobs, one after another or up to ``parallel`` at once (each in its own
    process), with a progress line and an ETA; the report at the end unless stopped by a signal."""
    # each record read once here (another run's folder refused before anything starts), once by its run
    status = {j.folder: job_status(out, j) for j in jobs}
    todo = [j for j in jobs if status[j.folder] != "finished" and (retry_failed or status[j.folder] != "failed")]
    done = len(jobs) - len(todo)
    print(f"suite {suite['name']}: {len(jobs)} runs, {done} already done, {len(todo)} to run -> {out}"
          + (f", {parallel} at once" if parallel > 1 and len(todo) > 1 else ""), flush=True)
    t_start = time.perf_counter()
    if parallel > 1 and len(todo) > 1:
        records = _in_processes(suite["name"], todo, out, parallel, done, len(jobs))
    else:
        records = _one_by_one(suite["name"], todo, out, progress, done, len(jobs))
    if any(r.status == "interrupted" for r in records):  # SIGTERM/SIGUSR1 was meant for the whole suite
        print(f"suite {suite['name']}: stopped by a signal; the same command resumes it", flush=True)
        return records
    print(f"suite {suite['name']}: {time.perf_counter() - t_start:.0f} s", flush=True)
    if report:
        report_or_say(suite, out)
    return records


def _eta(t_start: float, finished: int, left: int) -> str:
    elapsed = time.perf_counter() - t_start
    return f", ~{elapsed / finished * left / 60:.1f} min left" if finished else ""


def _one_by_one(name: str, todo: list[Job], out: Path, progress, done: int, total: int) -> list[Record]:
    """The jobs in order; one that another process is training is left to the end, then waited for."""
    data = DataCache()  # each data set loaded once per suite
    records, held, t_start = [], [], time.perf_counter()
    for i, job in enumerate(todo):
        print(f"[{done + i + 1}/{total}] {job.label} seed {job.seed} ({job.folder}){_eta(t_start, i, len(todo) - i)}",
              flush=True)
        try:
            rec = run_job(job, out, name, data=data(job.cfg), progress=progress, wait=False)
        except FolderHeld as e:
            print(f"    skipped for now: {e}; the suite waits for it at the end", flush=True)
            held.append(job)
            continue
        print(f"    {rec.status}" + (f": {rec.reason}" if rec.reason else ""), flush=True)
        records.append(rec)
        if rec.status == "interrupted":
            return records
    for job in held:  # the other process may well finish it meanwhile: then it is only read
        print(f"{job.label} seed {job.seed} ({job.folder}): back to it", flush=True)
        rec = run_job(job, out, name, data=data(job.cfg), progress=progress)  # waits, saying so
        print(f"    {job.label} seed {job.seed}: {rec.status}" + (f": {rec.reason}" if rec.reason else ""), flush=True)
        records.append(rec)
        if rec.status == "interrupted":
            break
    return records


def _child(job: Job, out: Path, suite_name: str) -> None:
    """One run in a process of its own (spawned: a fresh interpreter, its own data and CUDA context)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    run_job(job, out, suite_name, data=DataCache()(job.cfg), progress=False)


def _in_processes(name: str, todo: list[Job], out: Path, parallel: int, done: int, total: int) -> list[Record]:
    """Up to ``parallel`` runs at once, each through :func:`run_job` in its own process; a run's
    failure is its own record. SIGTERM, SIGINT or SIGUSR1 here is passed on to every running run as
    SIGTERM (each checkpoints and records 'interrupted') and nothing new starts."""
    ctx = multiprocessing.get_context("spawn")  # fork would copy a parent's threads and CUDA state
    pending, running, records = list(enumerate(todo)), {}, []
    t_start = time.perf_counter()

    def pass_on(signum: int) -> None:
        for proc in list(running):
            if proc.pid is not None and proc.exitcode is None:
                os.kill(proc.pid, signal.SIGTERM)
    with StopRequests((signal.SIGTERM, signal.SIGINT, signal.SIGUSR1), on_request=pass_on) as stops:
        while running or (pending and stops.signum is None):
            while pending and stops.signum is None and len(running) < parallel:
                i, job = pending.pop(0)
                print(f"[{done + i + 1}/{total}] {job.label} seed {job.seed} ({job.folder}) started", flush=True)
                proc = ctx.Process(target=_child, args=(job, out, name), name=job.folder)
                proc.start()
                running[proc] = job
            multiprocessing.connection.wait([p.sentinel for p in running], timeout=5)
            for proc in [p for p in running if p.exitcode is not None]:
                job = running.pop(proc)
                # a process that died without ending its record: failed, or interrupted when stopped
                rec = job.run_folder(out).after_process(job.config(out), job_meta(job, name), proc.exitcode,
                                                        stops.signum is not None)
                records.append(rec)
                print(f"    {job.label} seed {job.seed}: {rec.status}" + (f": {rec.reason}" if rec.reason else "")
                      + _eta(t_start, len(records), len(todo) - len(records)), flush=True)
    return records


def build_parser() -> argparse.ArgumentParser:
    """The command line of python -m benchmarks.run (every number checked where it is read)."""
    p = parser("python -m benchmarks.run", __doc__)
    p.add_argument("--suite", help="suite name (see --list) or path to a suite .toml")
    p.add_argument("--list", action="store_true", help="list the suites and exit")
    p.add_argument("--seeds", type=number(int, low=1, what="seeds 0..N-1"), help="number of seeds (default: the suite's)")
    p.add_argument("--only", nargs="+", metavar="VARIANT", help="run only these variants or labels")
    p.add_argument("--out", type=Path, help="output folder (default: runs/SUITE, git-ignored; the project's "
                   "committed reference results are in results/SUITE, written with --out results/SUITE)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--epochs-scale", type=number(float, above=0, what="multiplies every epoch count"), default=1.0,
                   help="multiply every epoch count (and the lr schedule) by F, e.g. 0.01 for a dry run")
    p.add_argument("--jobs", type=number(int, low=1, what="runs at once"), default=None, metavar="N",
                   help="run up to N of the suite's runs at once, each in its own process on the same device. "
                        "Default: on a CPU, the cores this process may use divided by the suite's threads per "
                        "run (the quick suite: 1 thread, so 2 jobs on 2 cores, faster than one job of 2 "
                        "threads: docs/speed.md); on a GPU or a cluster, 1. What each run records does not "
                        "depend on N (its threads are the suite's, not the job count's)")
    p.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    p.add_argument("--allow-dirty", action="store_true",
                   help="write into results/ from a tree with uncommitted changes (the records say +dirty)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config fields of every run, e.g. data_root=/data data_split=test_only")
    p.add_argument("--tensorboard", action="store_true",
                   help="per-epoch curves and sample grids of every run to TensorBoard: tensorboard --logdir OUT/runs")
    p.add_argument("--cluster", choices=("none", "slurm", "local", "debug"), default="none",
                   help="send the runs to SLURM as one array job through submitit (see README, Sweeps)")
    g = p.add_argument_group("cluster options (with --cluster)")
    g.add_argument("--workers", type=number(int, low=1), default=None, help="array tasks running at once (default: all)")
    g.add_argument("--partition", help="SLURM partition")
    g.add_argument("--account", help="SLURM account")
    g.add_argument("--gpus-per-worker", type=number(int, low=0), default=0, help="GPUs per array task")
    g.add_argument("--cpus-per-worker", type=number(int, low=1), default=1, help="CPUs per array task")
    g.add_argument("--time-min", type=number(int, low=1), default=60, help="time limit per task in minutes")
    g.add_argument("--mem-gb", type=number(float, above=0), default=4, help="memory per task in GB")
    g.add_argument("--snapshot", action="store_true",
                   help="tasks run a copy of the repository's tracked files in OUT/code (submitit RsyncSnapshot)")
    return p


@entry_point
def main(argv: list[str] | None = None, *, validate_only: bool = False) -> int:
    """Command line (exit statuses in --help); ``validate_only`` stops after every check of the
    arguments, the suite and its configs (tests/test_cli_properties.py)."""
    p = build_parser()
    args = p.parse_args(argv)
    if args.list:
        for name, desc in list_suites().items():
            print(f"{name:<20} {desc}")
        return 0
    if not args.suite:
        p.error("give --suite NAME (or --list)")
    try:
        suite = load_suite(args.suite)
        base = _overrides(args.set) | ({"tensorboard": True} if args.tensorboard else {})
        jobs = expand(suite, seeds=args.seeds, only=args.only, epochs_scale=args.epochs_scale,
                      device=args.device, base=base)
    except (FileNotFoundError, ValueError, KeyError, TypeError) as e:
        return refuse(e)
    out = args.out or Path("runs") / suite["name"]
    if why := dirty_refusal(out, args.allow_dirty) or output_refusal(out, "--out"):
        return refuse(why)
    if args.cluster != "none" and args.jobs not in (None, 1):
        return refuse(f"--jobs {args.jobs} with --cluster {args.cluster}: --jobs runs processes on this "
                      "machine; with a cluster, --workers says how many array tasks run at once")
    if validate_only:
        return 0
    try:
        if args.cluster != "none":
            return run_suite_on_cluster(suite, jobs, out, args)
        records = run_suite(suite, jobs, out, retry_failed=args.retry_failed,
                            parallel=args.jobs or default_jobs(jobs))
    except FolderTaken as e:
        return refuse(e)
    if any(r.status == "interrupted" for r in records):
        return 3
    return 1 if any(not r.ok for r in records) else 0


def default_jobs(jobs: list[Job]) -> int:
    """Runs at once when --jobs is not given: on a CPU, the usable cores over each run's threads
    (threads=0, torch's default of one per core: 1 job), so that no two runs' OpenMP threads spin
    on one core; on CUDA, 1."""
    device = jobs[0].cfg.device if jobs else "cpu"
    if not jobs or device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = jobs[0].cfg.threads or cores
    return max(1, min(len(jobs), cores // threads))


def _overrides(pairs: list[str]) -> dict:
    """--set key=value pairs, typed by TrainConfig (the same parser as vaes.train)."""
    return field_overrides(pairs, exclude={"variant", "seed"}, owner="suite")


if __name__ == "__main__":
    sys.exit(main())
