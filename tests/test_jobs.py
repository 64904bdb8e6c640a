"""python -m benchmarks.run --jobs N: a suite's runs at once, each in its own process on the same
device. What a run records must not depend on N; a failing run stops no other; a signal stops
all of them and the same command resumes. Nothing here is timed."""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from benchmarks import run as bench_run
from benchmarks.run import run_suite
from benchmarks.suite import expand, load_suite
from tests.conftest import REPO, wait_until

SUITE = """
name = "tiny-jobs"
description = "three tiny runs on digits, one of them bound to fail"
dataset = "digits"
seeds = 1

[config]
epochs = {epochs}
eval_images = 100
fid = false
n_train = 200

[[runs]]
label = "beta"
variant = "beta"

[[runs]]
label = "balanced"
variant = "balanced"
{broken}
"""
BROKEN = '[[runs]]\nlabel = "broken"\nvariant = "beta"\nlr = 1e30\n'


def _suite(tmp_path, epochs=2, broken=True):
    path = tmp_path / "tiny-jobs.toml"
    path.write_text(SUITE.format(epochs=epochs, broken=BROKEN if broken else ""))
    return path


def _records(out) -> dict[str, dict]:
    return {json.loads(p.read_text())["label"]: json.loads(p.read_text()) for p in (out / "runs").glob("*/record.json")}


def test_two_at_once_records_what_one_at_a_time_records(tmp_path):
    suite = load_suite(_suite(tmp_path))
    jobs = expand(suite)
    one = run_suite(suite, jobs, tmp_path / "one", progress=False, report=False)
    two = run_suite(suite, jobs, tmp_path / "two", progress=False, report=False, parallel=2)
    assert sorted(r.status for r in one) == sorted(r.status for r in two) == ["failed", "finished", "finished"]
    a, b = _records(tmp_path / "one"), _records(tmp_path / "two")
    assert set(a) == set(b) == {"beta", "balanced", "broken"}
    for label in ("beta", "balanced"):  # bit for bit: the same floats, not approximately
        assert a[label]["metrics"] and a[label]["metrics"] == b[label]["metrics"], label
        assert [h["loss"] for h in a[label]["history"]] == [h["loss"] for h in b[label]["history"]]
        assert a[label]["run_id"] == b[label]["run_id"]
    # the failing run failed in its own process, for its own reason, and the others finished
    assert b["broken"]["status"] == "failed" and "non-finite" in b["broken"]["reason"]
    # run again: nothing is left to do
    assert run_suite(suite, jobs, tmp_path / "two", progress=False, report=False, parallel=2) == []


def test_jobs_is_checked_and_refused_with_a_cluster(tmp_path, capsys):
    path = str(_suite(tmp_path))
    assert bench_run.main(["--suite", path, "--jobs", "2", "--out", str(tmp_path / "o")], validate_only=True) == 0
    for bad in ("0", "-1", "two", "1.5"):
        try:
            bench_run.main(["--suite", path, "--jobs", bad], validate_only=True)
        except SystemExit as e:
            assert e.code == 2
        else:
            raise AssertionError(f"--jobs {bad} was accepted")
        assert "--jobs" in capsys.readouterr().err
    assert bench_run.main(["--suite", path, "--jobs", "2", "--cluster", "debug"], validate_only=True) == 2
    assert "--workers" in capsys.readouterr().err


@pytest.mark.slow  # about a minute on a busy 2-core machine: three processes start torch
def test_sigterm_stops_every_run_at_a_checkpoint(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "benchmarks.run", "--suite", str(_suite(tmp_path, epochs=300, broken=False)),
           "--out", str(out), "--jobs", "2"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # both runs are training (each has written a checkpoint) before the signal
    wait_until(lambda: len(list((out / "runs").glob("*/checkpoint.pt"))) == 2, 240, "both runs' first checkpoints")
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 3, stdout
    assert "the same command resumes it" in stdout
    assert {r["status"] for r in _records(out).values()} == {"interrupted"}
    epochs = {label: len(r["history"] or []) for label, r in _records(out).items()}
    assert all(n < 300 for n in epochs.values()), epochs
