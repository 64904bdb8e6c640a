"""The run store (vaes/store.py): a folder's status, the claim between real processes, the
index the reports read; the stop requests (vaes/stop.py) and the one list of evaluation settings."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from benchmarks.run import run_suite
from benchmarks.suite import expand, load_suite
from tests.conftest import REPO, wait_until
from tests.test_suites import write_suite
from vaes.config import EVAL_FIELDS, EVAL_SETTINGS, IDENTITY_FIELDS, TrainConfig, run_id, to_dict
from vaes.evaluate import check_overrides
from vaes.records import Record
from vaes.run import run
from vaes.stop import StopRequests, request_stop, requested
from vaes.store import FolderHeld, FolderTaken, RunFolder, read_index, run_folder, runs_dir

TINY = dict(dataset="digits", epochs=3, fid=False, eval_images=100)


def holder(path, then: str = "time.sleep(600)") -> subprocess.Popen:
    """Another process that claims the run folder ``path``, says so, then does ``then``."""
    code = textwrap.dedent(f"""
        import sys, time
        from vaes.store import RunFolder
        with RunFolder({str(path)!r}).claim():
            print("claimed", flush=True)
            {then}
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "claimed"
    return proc


def test_status_new_running_interrupted_finished(tmp_path):
    cfg = TrainConfig(**TINY, out=str(tmp_path / "r"))
    folder = RunFolder(cfg.out)
    assert folder.state(cfg).status == "new" and folder.state().record is None
    folder.write(folder.start(cfg))  # a record that says running
    proc = holder(folder.path)
    try:
        assert folder.held() and folder.state(cfg).status == "running"
    finally:
        proc.send_signal(signal.SIGKILL)  # no chance to release: the OS does
        proc.wait(timeout=30)
    assert not folder.held() and folder.state(cfg).status == "interrupted"
    rec = folder.end(folder.read(), "finished")
    assert folder.state(cfg).status == "finished" and rec.ended


def test_a_damaged_record_is_failed_and_another_identity_refused(tmp_path):
    cfg = TrainConfig(**TINY, out=str(tmp_path))
    folder = RunFolder(tmp_path)
    folder.record_path.write_text('{"config": {"se')
    st = folder.state(cfg)
    assert st.status == "failed" and st.record is None and str(folder.record_path) in st.damage
    Record.start(run_id=run_id(cfg), seed=0, config=to_dict(cfg)).interrupt("SIGTERM").write(folder.record_path)
    with pytest.raises(FolderTaken, match="seed"):
        folder.state(cfg.replace(seed=1))
    assert folder.state(cfg).status == "interrupted"


def test_a_second_process_waits_for_the_run_another_trains_and_does_not_train_it_again(tmp_path):
    out = tmp_path / "r"
    code = textwrap.dedent(f"""
        import time
        from vaes.config import TrainConfig
        from vaes.run import run
        # a second an epoch: the first process still trains when the second reaches the run
        rec = run(TrainConfig(dataset="digits", epochs=12, fid=False, eval_images=100, out={str(out)!r}), progress=False,
                  on_epoch=lambda row: time.sleep(1.0))
        print(rec.status, rec.started, flush=True)
    """)
    first = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    # the first process has claimed the run once its record says running
    wait_until(lambda: (out / "record.json").is_file()
               and json.loads((out / "record.json").read_text())["status"] == "running", 240, "the first run started")
    second = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    first_out, first_err = first.communicate(timeout=600)
    assert first.returncode == 0 and second.returncode == 0, first_err + second.stderr
    assert "being trained by pid" in second.stderr and "waiting for it" in second.stderr
    assert first_out.split()[0] == second.stdout.split()[0] == "finished"
    assert first_out.split()[1] == second.stdout.split()[1]  # the same run, started once: not trained twice
    assert not (out / ".claim").exists()  # released


def test_a_caller_that_does_not_wait_is_told_who_holds_the_run(tmp_path):
    cfg = TrainConfig(**TINY, out=str(tmp_path / "r"))
    proc = holder(cfg.out)
    try:
        with pytest.raises(FolderHeld, match=f"being trained by pid {proc.pid}"):
            run(cfg, progress=False, wait=False)
        assert RunFolder(cfg.out).state().status == "new"  # nothing written
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_a_suite_skips_a_run_another_process_holds_then_waits_for_it(tmp_path):
    suite = load_suite(write_suite(tmp_path, epochs=2))
    jobs = expand(suite, seeds=1)
    out = tmp_path / "out"
    first = jobs[0].run_folder(out)
    # the other process holds the first run for a few seconds, then gives it up unfinished
    proc = holder(first.path, "time.sleep(15)")
    records = run_suite(suite, jobs, out, progress=False, report=False)
    proc.wait(timeout=60)
    assert [r.meta["label"] for r in records] == [j.label for j in jobs[1:]] + [jobs[0].label]
    assert all(r.status == "finished" for r in records)


def test_the_index_of_a_suites_runs(tmp_path):
    out = tmp_path / "OUT"
    for i, name in enumerate(("b", "a")):
        cfg = TrainConfig(**TINY, seed=i, out=str(run_folder(out, name).path))
        run_folder(out, name).write(Record.start(run_id=run_id(cfg), seed=i, config=to_dict(cfg)))
    index = read_index(runs_dir(out))
    assert [d.name for d in index.dirs] == ["a", "b"] and [r.seed for r in index.records] == [1, 0]
    assert index.record(runs_dir(out) / "b").seed == 0
    assert read_index(tmp_path / "none", missing_ok=True).records == []
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no record.json"):
        read_index(tmp_path / "empty")


def test_a_stop_request_lasts_until_the_outermost_block_ends():
    with StopRequests((signal.SIGUSR2,)):  # a cluster task's guard
        os.kill(os.getpid(), signal.SIGUSR2)  # before the run's own block starts
        with StopRequests((signal.SIGTERM,)):
            assert requested() == signal.SIGUSR2  # not erased by the inner block
        assert requested() == signal.SIGUSR2
    assert requested() is None
    with StopRequests(()):
        request_stop(signal.SIGTERM)
        request_stop(signal.SIGUSR1)
        assert requested() == signal.SIGTERM  # the first names the stop
    assert requested() is None


def test_one_list_of_evaluation_settings():
    assert set(EVAL_FIELDS) <= set(EVAL_SETTINGS) and not set(EVAL_SETTINGS) & set(IDENTITY_FIELDS)
    check_overrides([f"{k}=1" for k in ("eval_images", "fid_images")])
    with pytest.raises(ValueError, match="bn_eval: only evaluation settings"):
        check_overrides(["bn_eval=running"])  # identity: refused when checked, as when evaluated
