"""vaes.run.run never raises for a run's own failure, even when its record cannot be written."""
from __future__ import annotations

import json

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


def test_a_failure_beside_a_damaged_record_keeps_the_callers_meta(tmp_path, monkeypatch):
    (tmp_path / "record.json").write_bytes(b'{"run_id": "abc", "st')  # cut short

    def broken_train(cfg, **kw):  # a failure that comes before the trainer reads the record
        raise RuntimeError("boom")

    monkeypatch.setattr(vaes.run, "train", broken_train)
    rec = run(TrainConfig(dataset="digits", epochs=1, out=str(tmp_path)), meta={"label": "L"})
    assert rec.status == "failed" and rec.reason.startswith("RuntimeError: boom")
    assert rec.meta == {"label": "L"} and "record.json" in rec.reason
