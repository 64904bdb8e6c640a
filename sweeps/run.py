"""Run an Optuna study of sweeps/studies.py on a cluster through submitit.

    python -m sweeps.run --list
    python -m sweeps.run --study smoke --trials 4 --workers 2 --cluster local
    python -m sweeps.run --study balanced_digits --trials 40 --workers 4 --cluster slurm \\
        --storage postgresql+psycopg2://USER:PASSWORD@HOST:5432/DB --partition gpu --gpus-per-worker 1

The W workers are one SLURM array job; each pulls trials from the shared study until it holds
T finished (COMPLETE or PRUNED) trials. Without --storage (or $VAEBENCH_STORAGE) the study lives
in OUT/study.journal (one machine, or a shared file system); with a PostgreSQL URL workers send
heartbeats, so the trial of a killed worker is failed and retried by another one. The same
command again continues the same study. Every trial leaves OUT/runs/trial-NNNN-<id>/record.json;
OUT gets study.json, trials.csv and Optuna's plots (PNG); an OUT that holds another study is
refused (OUT/sweep.json says whose it is). An --out under results/ needs a clean tree or
--allow-dirty.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from launch.executors import ClusterOptions
from sweeps.launcher import run_study
from sweeps.storage import JOURNAL_NAME, STORAGE_ENV, StorageError, check_journal, is_journal, redact
from sweeps.studies import get_study, list_studies
from vaes.cli import dirty_refusal, entry_point, number, output_refusal, parser, refuse
from vaes.config import field_overrides, from_dict


def _overrides(pairs: list[str]) -> dict:
    """--set key=value pairs typed by TrainConfig; the study owns variant, options and seed."""
    return field_overrides(pairs, exclude={"variant", "seed", "out", "dataset", "device"}, owner="study")


def build_parser() -> argparse.ArgumentParser:
    """The command line of python -m sweeps.run."""
    p = parser("python -m sweeps.run", __doc__)
    p.add_argument("--list", action="store_true", help="list the studies and exit")
    p.add_argument("--study", help="study name (see --list)")
    p.add_argument("--trials", type=number(int, low=1), help="finished (COMPLETE or PRUNED) trials to reach")
    p.add_argument("--workers", type=number(int, low=1), default=1, help="array tasks, each running trials one at a time")
    p.add_argument("--cluster", choices=("slurm", "local", "debug"), default="local",
                   help="slurm: sbatch array; local: subprocesses here; debug: in this process")
    p.add_argument("--storage", help="Optuna storage: a PostgreSQL URL (postgresql+psycopg2://user:pw@host/db) "
                                     "or a journal file path; default $VAEBENCH_STORAGE, else OUT/study.journal")
    p.add_argument("--study-name", help="name of the study in the storage (default: --study)")
    p.add_argument("--out", help="output folder (default runs/sweeps/STUDY_NAME, git-ignored)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config fields of every trial, e.g. epochs=5 eval_images=500")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--tensorboard", action="store_true",
                   help="per-epoch curves and sample grids of every trial to TensorBoard: tensorboard --logdir OUT/runs")
    g = p.add_argument_group("workers")
    g.add_argument("--partition", help="SLURM partition")
    g.add_argument("--account", help="SLURM account")
    g.add_argument("--gpus-per-worker", type=number(int, low=0), default=0)
    g.add_argument("--cpus-per-worker", type=number(int, low=1), default=1)
    g.add_argument("--time-min", type=number(int, low=1), default=60, help="time limit per worker; SLURM signals 90 s "
                                                            "before it and the worker is requeued")
    g.add_argument("--mem-gb", type=number(float, above=0), default=4)
    g.add_argument("--snapshot", action="store_true",
                   help="jobs run a copy of the repository's tracked files in OUT/code (submitit "
                        "RsyncSnapshot), so editing the code does not change queued jobs")
    f = p.add_argument_group("faults")
    f.add_argument("--heartbeat", type=number(int, low=1), default=60, help="seconds between heartbeats (RDB storage)")
    f.add_argument("--grace", type=number(int, low=1), help="seconds without heartbeat before a trial is failed and "
                                             "retried (default 2 x heartbeat)")
    f.add_argument("--max-failed", type=number(int, low=1), help="stop after this many failed runs (default max(10, T))")
    f.add_argument("--max-retry", type=number(int, low=0), default=3, help="retries of one interrupted or killed trial")
    f.add_argument("--poll-s", type=number(float, above=0), default=5.0,
                   help="how often an idle worker checks the study while others run the last trials")
    p.add_argument("--no-report", action="store_true", help="skip the benchmarks report of the runs")
    p.add_argument("--allow-dirty", action="store_true",
                   help="write into results/ from a tree with uncommitted changes (the records say +dirty)")
    return p


def _path_refusal(a: argparse.Namespace) -> str | None:
    """Why the output folder or the journal file cannot be used, checked before anything is
    written (a damaged journal raises StorageError naming its line)."""
    out = Path(a.out or Path("runs") / "sweeps" / (a.study_name or a.study))
    url = a.storage or os.environ.get(STORAGE_ENV) or str(out / JOURNAL_NAME)
    why = output_refusal(out, "--out")
    if not why and is_journal(url):
        why = output_refusal(url, "--storage", folder=False)
        check_journal(url) if not why else None
    return why


@entry_point
def main(argv: list[str] | None = None, *, validate_only: bool = False) -> int:
    """Command line; exit 0 when the study holds --trials finished trials, 1 otherwise, 2 on
    refused input. ``validate_only`` stops after the checks (tests/test_cli_properties.py)."""
    p = build_parser()
    a = p.parse_args(argv)
    if a.list:
        for name in list_studies():
            s = get_study(name)
            print(f"{name:<24} [{s.suite}] {s.description}")
        return 0
    if not a.study or a.trials is None:
        missing = " and ".join(n for n, v in (("--study NAME", a.study), ("--trials T", a.trials)) if v is None or v == "")
        return refuse(f"{missing} missing: give --study NAME (one of: {', '.join(list_studies())}) and "
                      "--trials T (finished trials to reach, >= 1), or --list")
    try:
        study = get_study(a.study)
        overrides = _overrides(a.set)
        suite = study.suite_dict()  # every trial's fixed fields pass TrainConfig's check before any trial
        from_dict({**suite["config"], **study.config, **overrides, "dataset": suite["dataset"]},
                  f"study {study.name} (its config over suite {study.suite}'s [config], then --set)")
        if why := dirty_refusal(a.out or "runs", a.allow_dirty) or _path_refusal(a):
            return refuse(why)
        if validate_only:
            return 0
        return run_study(a.study, trials=a.trials, workers=a.workers, opts=ClusterOptions.from_args(a),
                         out=a.out, storage=a.storage, study_name=a.study_name, overrides=overrides | ({"tensorboard": True} if a.tensorboard else {}),
                         device=a.device, heartbeat=a.heartbeat, grace=a.grace, max_failed=a.max_failed,
                         max_retry=a.max_retry, poll_s=a.poll_s, snapshot=a.snapshot, report=not a.no_report)
    except (KeyError, ValueError, StorageError, RuntimeError, FileNotFoundError) as e:
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        if a.storage:
            msg = msg.replace(a.storage, redact(a.storage))
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
