"""A new user's first minutes, timed: the README's commands as written, from this checkout.

    python -m benchmarks.first_minutes [--parts quick,jobs,single,tests] [--out results/speed]

Parts (each a real command in a subprocess, timed by the wall clock):
- ``quick``: ``python -m benchmarks.run --suite quick`` (the README's main command; its default
  ``--jobs``), into a scratch folder, then the per-phase split from its records;
- ``jobs``: the same suite as one job of two threads (``--jobs 1 --set threads=2``), the thread
  policy the default is compared against;
- ``single``: ``python -m vaes.train variant=balanced dataset=digits seed=0``, once with an empty
  cache (the Inception weights converted, the reference features and the classifier made) and
  once again with the cache it left;
- ``tests``: ``python -m pytest`` (the default set, as ``.ci/run`` runs it without the install).

Every command gets a fresh cache folder (``VAEBENCH_CACHE_DIR``) unless said otherwise, so a
figure never rides on an earlier command's work. A command that fails saves nothing: the
figure of a failed command is not a measurement. Results: ``OUT/cpu-quick.json`` and ``.md``
with the commit, the machine's load before and after each command, and each figure; and the
quick suite's ``runs.csv`` as ``OUT/cpu-quick-runs.csv``, to compare with results/quick.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.timed import TimedCommandFailed, run_timed
from vaes.cli import choice_list, dirty_refusal, refuse
from vaes.records import git_commit
from vaes.store import RunFolder, read_index, runs_dir

PARTS = ("quick", "jobs", "single", "tests")
PHASES = ("train_seconds", "stage2_seconds", "eval_heldout_seconds", "eval_images_seconds",
          "eval_classifier_seconds", "eval_inception_seconds", "eval_seconds")


def timed(cmd: list[str], *, cache: Path, log: Path) -> dict:
    """Run ``cmd`` in the repository with ``cache`` as vaebench's cache; its wall seconds and the
    1-minute load average before and after. :class:`TimedCommandFailed` (with the log's tail) when it
    fails: nothing is saved."""
    env = {**os.environ, "VAEBENCH_CACHE_DIR": str(cache)}
    env.pop("OMP_NUM_THREADS", None)  # the README's command as a user types it: the suite sets the threads
    load_before = os.getloadavg()[0]
    proc, seconds = run_timed(cmd, env=env, log=log)
    if proc.returncode != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise TimedCommandFailed(f"{' '.join(cmd)} exited {proc.returncode} after {seconds:.0f} s; nothing saved. "
                                 f"Its log ({log}) ends:\n{tail}")
    shown = " ".join(["python", *cmd[1:]]).replace(str(cache.parent), "$TMP")  # no path of this machine
    return {"command": shown, "seconds": round(seconds, 1), "load_before": load_before,
            "load_after": os.getloadavg()[0]}


def phases(runs: Path) -> dict:
    """Mean seconds of each phase over the finished records under ``runs`` (stage2_seconds: the
    second stage's training, from the record's stage2 entry), and the threads they state."""
    timings = []
    for rec in read_index(runs, missing_ok=True).records:
        if rec.status == "finished":
            t = dict(rec.timings or {})
            t["stage2_seconds"] = (rec.stage2 or {}).get("train_seconds", 0.0)
            timings.append(t)
    out = {k: round(statistics.fmean(t.get(k, 0.0) for t in timings), 2) for k in PHASES} if timings else {}
    out["runs"] = len(timings)
    out["threads"] = sorted({t.get("threads") for t in timings} - {None})
    return out


def measure(parts: list[str], scratch: Path) -> dict:
    """Each part's figures (see the module's docstring)."""
    py = sys.executable
    res: dict = {}
    if "quick" in parts:
        out = scratch / "quick"
        res["quick"] = timed([py, "-m", "benchmarks.run", "--suite", "quick", "--out", str(out)],
                             cache=scratch / "cache-quick", log=scratch / "quick.log")
        res["quick"]["phases"] = phases(runs_dir(out))
    if "jobs" in parts:
        out = scratch / "jobs"
        res["jobs"] = timed([py, "-m", "benchmarks.run", "--suite", "quick", "--jobs", "1", "--set", "threads=2",
                             "--out", str(out)], cache=scratch / "cache-jobs", log=scratch / "jobs.log")
        res["jobs"]["phases"] = phases(runs_dir(out))
    if "single" in parts:
        cache = scratch / "cache-single"
        for name in ("single_cold", "single_warm"):
            out = scratch / name
            res[name] = timed([py, "-m", "vaes.train", "variant=balanced", "dataset=digits", "seed=0", f"out={out}"],
                              cache=cache, log=scratch / f"{name}.log")
            res[name]["phases"] = _one(out)
    if "tests" in parts:
        res["tests"] = timed([py, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cache=scratch / "cache-tests",
                             log=scratch / "tests.log")
        res["tests"]["summary"] = scratch.joinpath("tests.log").read_text().strip().splitlines()[-1]
    return res


def _one(run_dir: Path) -> dict:
    """The phases of one run folder's record."""
    t = dict(RunFolder(run_dir).read().timings or {})
    return {k: round(t[k], 2) for k in PHASES if k in t} | {"threads": t.get("threads")}


def markdown(res: dict, meta: dict) -> str:
    """The result as the committed Markdown page."""
    lines = ["# A new user's first minutes (`python -m benchmarks.first_minutes`)", "",
             f"Commit {meta['commit']}, {meta['machine']}, {meta['cores']} cores; load: the 1-minute "
             f"average before and after each command. Each command starts with an empty cache "
             f"(single_warm: the cache single_cold left).", "",
             "| command | wall s | load before | load after |", "|:--|--:|--:|--:|"]
    for name, r in res.items():
        lines.append(f"| {name}: `{r['command'].split(' -m ', 1)[-1]}` | {r['seconds']:.0f} | "
                     f"{r['load_before']:.2f} | {r['load_after']:.2f} |")
    rows = {k: r["phases"] for k, r in res.items() if "phases" in r}
    if rows:
        lines += ["", "Per-phase seconds (means over the finished runs of a suite; one record for a single run):",
                  "", "| part | " + " | ".join(p.replace("_seconds", "") for p in PHASES) + " | threads |",
                  "|:--|" + "--:|" * (len(PHASES) + 1)]
        for name, ph in rows.items():
            lines.append(f"| {name} | " + " | ".join(f"{ph.get(p, 0):.1f}" for p in PHASES) + f" | {ph.get('threads')} |")
    if "quick" in res and "jobs" in res:
        lines += ["", f"Default (`--jobs` auto, the suite's threads = 1) against one job of two threads: "
                      f"{res['jobs']['seconds'] / res['quick']['seconds']:.2f}x faster, measured side by side in this run."]
    if "tests" in res:
        lines += ["", f"Tests: {res['tests']['summary']}"]
    return "\n".join(lines) + "\n"


def _with_earlier_parts(path: Path, meta: dict, res: dict) -> dict:
    """``res`` with the parts an earlier call measured at the same commit (``--parts`` run one at
    a time, each on an idle machine), its own parts replacing theirs."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        return res
    if earlier.get("meta", {}).get("commit") != meta["commit"]:
        return res
    return {k: v for k, v in earlier.items() if k != "meta"} | res


def main(argv: list[str] | None = None) -> int:
    """Command line: measure, then save only if every command succeeded."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.first_minutes", description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", type=choice_list(PARTS), default=list(PARTS), help=f"comma-separated, from {', '.join(PARTS)}")
    p.add_argument("--out", type=Path, default=Path("results/speed"))
    p.add_argument("--allow-dirty", action="store_true", help="write into results/ from a tree with uncommitted changes")
    args = p.parse_args(argv)
    dirty = dirty_refusal(args.out, args.allow_dirty)
    if dirty:
        return refuse(dirty)
    meta = {"commit": git_commit(), "machine": platform.processor() or platform.machine(),
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="vaebench-first-") as tmp:
        try:
            res = measure(args.parts, Path(tmp))
        except TimedCommandFailed as e:
            return refuse(str(e))
        try:
            args.out.mkdir(parents=True, exist_ok=True)
            res = _with_earlier_parts(args.out / "cpu-quick.json", meta, res)
            (args.out / "cpu-quick.json").write_text(json.dumps({"meta": meta, **res}, indent=1) + "\n")
            (args.out / "cpu-quick.md").write_text(markdown(res, meta))
            if "quick" in res:  # the metrics the README's command gave, to compare with results/quick bit for bit
                shutil.copyfile(Path(tmp) / "quick" / "runs.csv", args.out / "cpu-quick-runs.csv")
        except OSError as e:
            return refuse(f"cannot write the results under {args.out}: {e}")
    print(markdown(res, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
