"""A whole suite on one device: its runs one after another vs several processes at once.

    python -m benchmarks.suite_throughput [--suite cifar10] [--seeds 2] [--device auto|cpu|cuda]
        [--n-train N] [--epochs E] [--stage2-epochs E2] [--processes P] [--out DIR]

The suite's jobs (every row, ``--seeds`` seeds: ``benchmarks.suite.expand``) are trained by
vaebench's own trainer (:func:`vaes.run.run` with ``evaluate=False``: first and second
stage, no evaluation; FID is timed apart) on synthetic uint8 data of the suite's shape, at reduced epochs, three ways:

1. ``single``: the first job alone in a fresh process (start-up and CUDA set-up included);
2. ``sequential``: every job one after another in one process, as ``benchmarks.run`` does;
3. ``concurrent``: the jobs dealt round-robin to ``--processes`` processes started together on
   the same device (several processes on one GPU).

Printed and written to ``OUT/suite-throughput.json`` and ``.md``: each mode's wall time, and the
suite's wall time over one run's (the issue's target for ``cifar10``, 2 seeds, on one GPU: at most
2.5x). Wall times include each process's start-up, which reduced epochs inflate; the summed
``train_seconds`` of the records are reported beside them.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.speed import synthetic_images
from benchmarks.suite import expand, load_suite
from vaes.cli import choice_list, dirty_refusal, number, parser
from vaes.build import dataset_shape
from vaes.config import TrainConfig
from vaes.data import ImageData
from vaes.run import run

REPO = Path(__file__).resolve().parents[1]


def suite_jobs(suite: str, seeds: int, device: str, overrides: dict):
    return expand(load_suite(suite), seeds=seeds, device=device, base=overrides)


def synthetic_data(cfg, n_train: int, seed: int = 0):
    """An ImageData of uint8 noise in the shape of ``cfg``'s data set."""
    shape = dataset_shape(TrainConfig(dataset=cfg.dataset))
    return ImageData(cfg.dataset, synthetic_images(shape, n_train, seed),
                     synthetic_images(shape, max(100, n_train // 10), seed + 1),
                     note=f"synthetic uint8 noise of shape {'x'.join(map(str, shape))}")


def worker(spec: dict) -> None:
    """Train the jobs ``spec['indices']`` one after another; one JSON line per job on stdout."""
    jobs = suite_jobs(spec["suite"], spec["seeds"], spec["device"], spec["overrides"])
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    data = synthetic_data(jobs[0].cfg, spec["n_train"])
    for i in spec["indices"]:
        job = jobs[i]
        cfg = job.cfg.replace(out=str(Path(spec["out"]) / f"{i:02d}-{job.folder}"))
        t0 = time.perf_counter()
        rec = run(cfg, data=data, progress=False, evaluate=False, meta={"label": job.label})
        row = {"index": i, "label": job.label, "seed": job.seed, "status": rec.status,
               "reason": rec.reason, "seconds": time.perf_counter() - t0,
               "train_seconds": (rec.timings or {}).get("train_seconds"),
               "stage2_seconds": (rec.stage2 or {}).get("train_seconds"), "device": rec.device}
        print("JOB " + json.dumps(row), flush=True)


def start(spec: dict, indices: list[int], out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    s = json.dumps({**spec, "indices": indices, "out": str(out)})
    return subprocess.Popen([sys.executable, "-m", "benchmarks.suite_throughput", "--worker", s], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_mode(spec: dict, groups: list[list[int]], out: Path) -> dict:
    """Start one process per group at once; wall time until the last one ends."""
    t0 = time.perf_counter()
    procs = [start(spec, g, out) for g in groups]
    results = [p.communicate() for p in procs]
    wall = time.perf_counter() - t0
    rows, errors = [], []
    for p, (stdout, stderr) in zip(procs, results, strict=True):
        rows += [json.loads(line[4:]) for line in stdout.splitlines() if line.startswith("JOB ")]
        if p.returncode:
            errors.append(f"exit {p.returncode}: {stderr[-1500:]}")
    bad = [r for r in rows if r["status"] != "finished"]
    return {"processes": len(groups), "runs": len(rows), "wall_seconds": wall,
            "train_seconds_sum": sum((r["train_seconds"] or 0) + (r["stage2_seconds"] or 0) for r in rows),
            "all_finished": not errors and not bad and len(rows) == sum(map(len, groups)),
            "errors": errors + [f"{r['label']} seed {r['seed']}: {r['status']}: {r['reason']}" for r in bad],
            "jobs": sorted(rows, key=lambda r: r["index"])}


def measure(args) -> dict:
    overrides = {"n_train": args.n_train, "checkpoint_every": 10**6, "fid": False}
    if args.epochs:
        overrides["epochs"] = args.epochs
        overrides["lr_halve_every"] = 0
    if args.stage2_epochs:
        overrides["stage2_epochs"] = args.stage2_epochs
    jobs = suite_jobs(args.suite, args.seeds, args.device, overrides)
    n = len(jobs)
    procs = max(1, min(args.processes or n, n))
    spec = {"suite": args.suite, "seeds": args.seeds, "device": args.device, "overrides": overrides,
            "n_train": args.n_train, "threads": args.threads}
    res = {"benchmark": "suite_throughput", "suite": args.suite, "seeds": args.seeds, "runs": n,
           "labels": sorted({j.label for j in jobs}), "two_stage": jobs[0].cfg.two_stage,
           "epochs": jobs[0].cfg.epochs, "stage2_epochs": jobs[0].cfg.stage2_epochs if jobs[0].cfg.two_stage else 0,
           "n_train": args.n_train, "batch_size": jobs[0].cfg.batch_size, "network": jobs[0].cfg.network,
           "requested_device": args.device, "data": "synthetic uint8 noise", "evaluation": "none (FID timed apart)",
           "modes": {}}
    with tempfile.TemporaryDirectory(prefix="suite-throughput-") as tmp:
        tmp = Path(tmp)
        # untimed: the first process to import torch pays for cold files (15 s here vs 2 s warm)
        warm = "import torch, vaes.train, benchmarks.speed; torch.cuda.is_available() and torch.zeros(1, device='cuda')"
        subprocess.run([sys.executable, "-c", warm], cwd=REPO, check=False,
                       env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
        for mode in args.modes:
            groups = {"single": [[0]], "sequential": [list(range(n))],
                      "concurrent": [list(range(k, n, procs)) for k in range(procs)]}[mode]
            print(f"{mode}: {sum(map(len, groups))} run(s) in {len(groups)} process(es)...", flush=True)
            res["modes"][mode] = r = run_mode(spec, groups, tmp / mode)
            print(f"  {r['wall_seconds']:.1f} s wall, {r['train_seconds_sum']:.1f} s training summed"
                  + ("" if r["all_finished"] else f"; NOT ALL FINISHED: {r['errors'][:2]}"), flush=True)
    m = res["modes"]
    one = m.get("single", {}).get("wall_seconds")
    res["device"] = next((j["device"] for mo in m.values() for j in mo["jobs"] if j.get("device")), None)
    if one:
        for mode in ("sequential", "concurrent"):
            if mode in m:
                res[f"{mode}_over_single"] = m[mode]["wall_seconds"] / one
    if "sequential" in m and "concurrent" in m:
        res["concurrent_speedup"] = m["sequential"]["wall_seconds"] / m["concurrent"]["wall_seconds"]
    res["target"] = {"suite_over_single": 2.5, "met": (res.get("concurrent_over_single") or float("inf")) <= 2.5}
    return res


def markdown(res: dict) -> str:
    lines = [f"# Suite throughput: {res['suite']} on {res['device']}", "",
             f"{res['runs']} runs ({', '.join(res['labels'])}; {res['seeds']} seeds; two-stage: {res['two_stage']}), "
             f"{res['network']} network, batch {res['batch_size']}, {res['n_train']} {res['data']} images, "
             f"{res['epochs']} + {res['stage2_epochs']} epochs, evaluation: {res['evaluation']}.", "",
             "| mode | processes | runs | wall, s | training summed, s | all finished |", "|---|---:|---:|---:|---:|---|"]
    for name, m in res["modes"].items():
        lines.append(f"| {name} | {m['processes']} | {m['runs']} | {m['wall_seconds']:.1f} | "
                     f"{m['train_seconds_sum']:.1f} | {m['all_finished']} |")
    lines.append("")
    for k in ("sequential_over_single", "concurrent_over_single", "concurrent_speedup"):
        if k in res:
            lines.append(f"- {k.replace('_', ' ')}: {res[k]:.2f}x")
    if "concurrent_over_single" in res:
        lines.append(f"- target: the suite in at most 2.5x one run's wall time: "
                     f"{'met' if res['target']['met'] else 'not met'}")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = parser("python -m benchmarks.suite_throughput", __doc__.split("\n\n")[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--suite", default="cifar10")
    p.add_argument("--seeds", type=number(int, low=1), default=2)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--n-train", type=number(int, low=1), default=50_000, help="synthetic training images per run")
    p.add_argument("--epochs", type=number(int, low=0, what="0: the suite's"), default=2, help="first-stage epochs per run (0: the suite's)")
    p.add_argument("--stage2-epochs", type=number(int, low=0, what="0: the suite's"), default=4, help="second-stage epochs per run (0: the suite's)")
    p.add_argument("--processes", type=number(int, low=0, what="0: one per run"), default=0, help="processes at once in the concurrent mode (0: one per run)")
    p.add_argument("--modes", type=choice_list(("single", "sequential", "concurrent")), default=["single", "sequential", "concurrent"])
    p.add_argument("--threads", type=number(int, low=0, what="0: torch's default"), default=0, help="torch CPU threads per process (0: torch's default)")
    p.add_argument("--out", default="results/speed")
    p.add_argument("--allow-dirty", action="store_true",
                   help="write into results/ from a tree with uncommitted changes")
    args = p.parse_args(argv)
    dirty = None if args.worker else dirty_refusal(args.out, args.allow_dirty)
    if dirty:
        p.error(dirty)
    try:
        load_suite(args.suite)
    except (FileNotFoundError, ValueError) as e:
        p.error(f"--suite {args.suite}: {e}")
    bad = set(args.modes) - {"single", "sequential", "concurrent"}
    if bad:
        p.error(f"--modes: unknown {', '.join(sorted(bad))}")
    return args


def main(argv=None) -> dict | None:
    args = parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return None
    res = measure(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "suite-throughput.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / "suite-throughput.md").write_text(markdown(res))
    print(markdown(res))
    return res


if __name__ == "__main__":
    main()
