"""vaes.run.run never raises for a run's own failure, even when its record cannot be written."""
from __future__ import annotations

import json
import types

import pytest

import vaes.run
from vaes.config import TrainConfig
from vaes.run import run


def test_a_run_whose_folder_cannot_be_made_returns_a_failed_record(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    rec = run(TrainConfig(dataset="digits", epochs=1, out=str(blocker / "run")), progress=False)
    assert rec.status == "failed"
    assert "could not be written" in rec.reason and str(blocker / "run" / "record.json") in rec.reason
    assert blocker.read_text() == "not a folder"


def test_a_failed_run_keeps_a_damaged_record_json_for_the_user(tmp_path):
    damaged = b'{"run_id": "abc", "status": "runn'  # cut short
    (tmp_path / "record.json").write_bytes(damaged)
    rec = run(TrainConfig(dataset="digits", epochs=1, out=str(tmp_path)), progress=False)
    assert rec.status == "failed" and "record.json" in rec.reason
    assert (tmp_path / "record.json").read_bytes() == damaged  # never overwritten


def test_a_failure_after_training_began_is_written_into_the_running_record(tmp_path):
    # a data root that does not exist: the record says why, with the run's identity
    cfg = TrainConfig(dataset="cifar10", data_root=str(tmp_path / "nothing"), epochs=1, out=str(tmp_path / "r"))
    rec = run(cfg, progress=False, meta={"label": "no data"})
    stored = json.loads((tmp_path / "r" / "record.json").read_text())
    assert rec.status == stored["status"] == "failed" and stored["label"] == "no data"
    assert "DataMissing" in stored["reason"] and stored["run_id"] == rec.run_id


def test_a_damaged_record_json_keeps_the_callers_meta_in_the_returned_record(tmp_path):
    (tmp_path / "record.json").write_bytes(b'{"run_id": "abc", "st')  # cut short
    rec = run(TrainConfig(dataset="digits", epochs=1, out=str(tmp_path)), meta={"label": "L"})
    assert rec.status == "failed" and rec.meta == {"label": "L"} and "record.json" in rec.reason


class Prune(Exception):
    """What a caller's hook raises (as optuna.TrialPruned): the caller's, not the run's failure."""


def test_what_the_callers_hook_raises_passes_through_with_the_record_as_it_stood(tmp_path):
    def prune_at_epoch_2(row):
        if row["epoch"] == 2:
            raise Prune("epoch 2")

    cfg = TrainConfig(dataset="digits", epochs=4, fid=False, eval_images=100, out=str(tmp_path))
    with pytest.raises(Prune, match="epoch 2"):
        run(cfg, progress=False, meta={"label": "L"}, on_epoch=prune_at_epoch_2)
    stored = json.loads((tmp_path / "record.json").read_text())
    assert stored["status"] == "running" and stored["label"] == "L" and "traceback" not in stored


def test_a_bug_in_the_runs_own_hook_is_a_failed_record_with_its_traceback(tmp_path, monkeypatch):
    def broken(*args, **kwargs):  # a bug in the run's own code (here: TensorBoard's logger)
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(vaes.run, "EpochLogger", lambda *a, **k: broken)
    monkeypatch.setattr(vaes.run, "summary_writer", lambda out: types.SimpleNamespace(close=lambda: None))
    cfg = TrainConfig(dataset="digits", epochs=2, tensorboard=True, fid=False, eval_images=100, out=str(tmp_path))
    rec = run(cfg, progress=False, on_epoch=lambda row: None)
    stored = json.loads((tmp_path / "record.json").read_text())
    assert rec.status == stored["status"] == "failed" and stored["reason"] == "ZeroDivisionError: bug"
    assert "ZeroDivisionError" in stored["traceback"]
