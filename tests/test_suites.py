"""The suite runner: end to end, skip on rerun, resume after a kill, failures recorded."""
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vaes
from vaes.data import list_datasets

from benchmarks.reporting import ledger
from benchmarks.run import job_status, run_suite
from benchmarks.suite import expand, list_suites, load_suite
from tests.conftest import REPO, wait_until


TINY = """
name = "tiny"
description = "two tiny variants on digits"
dataset = "digits"
seeds = 2

[config]
epochs = {epochs}
eval_images = 300
two_stage = true
stage2_epochs = 2
stage2_width = 64

[[runs]]
label = "beta"
variant = "beta"

[[runs]]
label = "balanced k=2"
variant = "balanced"
options = {{ kl_weight = 2.0 }}
"""


def write_suite(tmp_path, epochs=2, extra=""):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(epochs=epochs) + extra)
    return path


def records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*/record.json"))]


def test_shipped_suites_load_and_expand():
    names = list_suites()
    assert all(names.values()), names  # every shipped suite loads and says what it is
    suites = {name: load_suite(name) for name in names}
    # a data-set suite bears its data set's name and trains on it
    data_set_suites = set(names) & set(list_datasets())
    assert all(suites[name]["dataset"] == name for name in data_set_suites)
    # every data set with a published FID in the ledger has a suite of its own
    assert set(ledger.datasets()) <= data_set_suites
    cifar = expand(suites["cifar10"])
    assert {j.cfg.epochs for j in cifar} == {700} and {j.cfg.stage2_epochs for j in cifar} == {1400}
    assert {j.cfg.lr for j in cifar} == {1e-4} and {j.cfg.network for j in cifar} == {"resnet"}
    celeba = expand(suites["celeba"])
    assert {j.cfg.lr for j in celeba} == {5e-5} and {j.cfg.lr_halve_every for j in celeba} == {60}
    suite = suites["quick"]
    quick = expand(suite)
    # every run of every seed is a distinct run, and every registered variant is in quick
    assert len({j.run_id for j in quick}) == len(quick) == len(suite["runs"]) * suite["seeds"]
    assert {r["variant"] for r in suite["runs"]} == set(vaes.list_variants())


def test_epochs_scale_and_only():
    jobs = expand(load_suite("cifar10"), only=["balanced"], seeds=1, epochs_scale=0.01)
    assert len(jobs) == 1 and jobs[0].cfg.epochs == 7 and jobs[0].cfg.stage2_epochs == 14
    with pytest.raises(ValueError, match="matches no run"):
        expand(load_suite("quick"), only=["nope"])


def test_tiny_suite_end_to_end_then_rerun_skips_everything(tmp_path):
    suite = load_suite(write_suite(tmp_path))
    jobs = expand(suite)
    out = tmp_path / "out"
    recs = run_suite(suite, jobs, out, progress=False)
    assert [r.status for r in recs] == ["finished"] * 4
    assert {r.meta["label"] for r in recs} == {"beta", "balanced k=2"}
    assert (out / "table.tex").is_file() and (out / "table.md").is_file()
    assert all((out / f).is_file() for f in ("curves.png", "metrics.png", "tradeoff.png", "samples.png"))
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/record.json")}
    again = run_suite(suite, jobs, out, progress=False, report=False)
    assert again == [] and {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_a_failing_run_is_recorded_and_the_others_go_on(tmp_path):
    extra = '\n[[runs]]\nlabel = "broken"\nvariant = "beta"\nlr = 1e30\n'
    suite = load_suite(write_suite(tmp_path, extra=extra))
    out = tmp_path / "out"
    recs = run_suite(suite, expand(suite, seeds=1), out, progress=False)
    status = {r.meta["label"]: r.status for r in recs}
    assert status == {"beta": "finished", "balanced k=2": "finished", "broken": "failed"}
    assert "non-finite" in next(r.reason for r in recs if r.meta["label"] == "broken")
    assert "failed" in (out / "table.md").read_text()
    # a rerun leaves failed runs alone unless asked
    assert run_suite(suite, expand(suite, seeds=1), out, progress=False, report=False) == []
    again = run_suite(suite, expand(suite, seeds=1), out, progress=False, report=False, retry_failed=True)
    assert [r.meta["label"] for r in again] == ["broken"]


def start_runner(tmp_path, epochs):
    """The suite runner on the tiny suite in a subprocess: (command, process, output folder)."""
    path = write_suite(tmp_path, epochs=epochs)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "benchmarks.run", "--suite", str(path), "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return cmd, proc, out


def wait_for(out, predicate, what: str, timeout=240):
    """Until ``predicate(records)`` holds for the run records under ``out``."""
    wait_until(lambda: predicate(records(out) if (out / "runs").is_dir() else []), timeout, what)


def test_killed_runner_restarts_and_finishes_the_rest(tmp_path):
    cmd, proc, out = start_runner(tmp_path, epochs=30)
    # let the first run finish and the second start
    wait_for(out, lambda recs: any(r["status"] == "finished" for r in recs) and len(recs) >= 2,
             "the first run finished and the second started")
    proc.send_signal(signal.SIGKILL)  # the worst case: no chance to checkpoint the current run
    proc.wait(timeout=60)
    before = {r["run_id"]: r["status"] for r in records(out)}
    assert "finished" in before.values() and len(before) < 4
    finished_files = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/record.json")
                      if json.loads(p.read_text())["status"] == "finished"}
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    after = records(out)
    assert len(after) == 4 and all(r["status"] == "finished" for r in after)
    assert len({r["run_id"] for r in after}) == 4  # nothing duplicated
    # what had finished before the kill was not run again
    assert {p: p.stat().st_mtime_ns for p in finished_files} == finished_files
    suite = load_suite(tmp_path / "tiny.toml")
    assert all(job_status(out, j) == "finished" for j in expand(suite))


def test_sigterm_stops_the_suite_after_checkpointing_the_current_run(tmp_path):
    _, proc, out = start_runner(tmp_path, epochs=200)
    wait_for(out, lambda recs: any(r["status"] == "running" for r in recs), "a run started")
    # the first epoch's checkpoint is written inside fit, where SIGTERM is already handled
    wait_until(lambda: any((out / "runs").glob("*/checkpoint.pt")), 240, "the first checkpoint")
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 3, stdout
    recs = records(out)
    assert [r["status"] for r in recs] == ["interrupted"] and "the same command resumes it" in stdout
    assert list((out / "runs").glob("*/checkpoint.pt"))


def test_a_suite_pointed_at_npz_images_keeps_its_own_protocol(tmp_path):
    path = tmp_path / "cifar_like.npz"
    rng = np.random.default_rng(0)
    np.savez(path, train=rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
             test=rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8))
    native = {j.label: j.cfg for j in expand(load_suite("cifar10"), seeds=1)}
    pointed = expand(load_suite("cifar10"), seeds=1, base={"dataset": "npz", "data_root": str(path)})
    for job in pointed:
        assert job.cfg.dataset == "npz" and job.cfg.network == "resnet"
        for field in ("epochs", "lr", "lr_halve_every", "stage2_epochs", "stage2_lr_halve_every", "latent_dim"):
            assert getattr(job.cfg, field) == getattr(native[job.label], field), (job.label, field)
