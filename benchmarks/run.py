"""Run a benchmark suite: every (variant, seed) through the one trainer and evaluator.

    python -m benchmarks.run --suite quick
    python -m benchmarks.run --suite cifar10 --seeds 1 --only balanced --epochs-scale 0.01
    python -m benchmarks.run --list

Each run gets its own folder under ``OUT/runs`` named by label, seed and the hash of its
resolved config. Running the command again skips finished runs, resumes interrupted ones
from their checkpoint and retries failed ones only with ``--retry-failed``. A run that fails
(NaN, missing data, out of memory, a bug) is recorded with its reason and the suite goes on.
The report (tables and figures) is written at the end. An --out under results/ (the
committed results) is refused from a tree with uncommitted changes unless --allow-dirty.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmarks.cluster import run_suite_on_cluster
from benchmarks.report import report_or_say
from benchmarks.suite import Job, expand, job_status, list_suites, load_suite, run_job
from vaes.cli import dirty_refusal, number, parser, refuse
from vaes.config import field_overrides
from vaes.records import Record
from vaes.run import DataCache, FolderTaken


def run_suite(suite: dict, jobs: list[Job], out: Path, *, retry_failed: bool = False,
              progress: bool | None = None, report: bool = True) -> list[Record]:
    """Run the pending jobs one after another, with a progress line and an ETA."""
    todo = [j for j in jobs if job_status(out, j) != "finished"
            and (retry_failed or job_status(out, j) != "failed")]
    done = len(jobs) - len(todo)
    print(f"suite {suite['name']}: {len(jobs)} runs, {done} already done, {len(todo)} to run -> {out}",
          flush=True)
    data = DataCache()  # each data set loaded once per suite
    records, t_start = [], time.perf_counter()
    for i, job in enumerate(todo):
        elapsed = time.perf_counter() - t_start
        eta = f", ~{elapsed / i * (len(todo) - i) / 60:.1f} min left" if i else ""
        print(f"[{done + i + 1}/{len(jobs)}] {job.label} seed {job.seed} ({job.folder}){eta}", flush=True)
        rec = run_job(job, out, suite["name"], data=data(job.cfg), progress=progress)
        print(f"    {rec.status}" + (f": {rec.reason}" if rec.reason else ""), flush=True)
        records.append(rec)
        if rec.status == "interrupted":  # SIGTERM/SIGUSR1 was meant for the whole suite
            print(f"suite {suite['name']}: stopped by a signal; the same command resumes it", flush=True)
            return records
    print(f"suite {suite['name']}: {time.perf_counter() - t_start:.0f} s", flush=True)
    if report:
        report_or_say(suite, out)
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
    dirty = dirty_refusal(out, args.allow_dirty)
    if dirty:
        return refuse(dirty)
    if validate_only:
        return 0
    if args.cluster != "none":
        return run_suite_on_cluster(suite, jobs, out, args)
    try:
        records = run_suite(suite, jobs, out, retry_failed=args.retry_failed)
    except FolderTaken as e:
        return refuse(e)
    if any(r.status == "interrupted" for r in records):
        return 3
    return 1 if any(not r.ok for r in records) else 0


def _overrides(pairs: list[str]) -> dict:
    """--set key=value pairs, typed by TrainConfig (the same parser as vaes.train)."""
    return field_overrides(pairs, exclude={"variant", "seed"}, owner="suite")


if __name__ == "__main__":
    sys.exit(main())
