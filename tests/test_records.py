"""The record type: one start, one method per end, JSON in and out without loss."""
from __future__ import annotations

import json

import pytest

from vaes.records import STATUSES, CorruptRecord, NotARecord, Record


def started(**meta) -> Record:
    return Record.start(run_id="balanced-digits-s0-abc", seed=0, config={"variant": "balanced", "seed": 0},
                        meta=meta)


def test_each_end_sets_its_status_reason_and_time():
    ends = {"finished": lambda r: r.finish(), "interrupted": lambda r: r.interrupt("signal SIGTERM"),
            "failed": lambda r: r.fail("non-finite loss", "Traceback ..."), "pruned": lambda r: r.prune("epoch 3")}
    assert set(ends) | {"running"} == set(STATUSES)
    for status, end in ends.items():
        rec = started()
        assert rec.status == "running" and rec.ended is None and rec.versions["torch"]
        end(rec)
        assert rec.status == status and rec.ended and rec.ok == (status == "finished")
        assert (rec.reason is None) == (status == "finished")
    assert started().fail("x", "tb").traceback == "tb"


def test_json_round_trip_keeps_fields_and_meta_at_the_top(tmp_path):
    rec = started(suite="quick", label="beta").finish()
    rec.set_metrics({"recon_mse": 0.01, "fid_samples": {"value": None, "missing": "no weights", "engine": "pytorch-fid"}})
    rec.history = [{"epoch": 1}]
    rec.write(tmp_path / "record.json")
    on_disk = json.loads((tmp_path / "record.json").read_text())
    assert on_disk["suite"] == "quick" and on_disk["label"] == "beta" and "meta" not in on_disk
    assert "stage2" not in on_disk and on_disk["reason"] is None  # optional parts absent until set
    back = Record.read(tmp_path / "record.json")
    assert back == rec and back.to_json() == on_disk
    assert on_disk["evaluations"]["inception"] == {"engine": "pytorch-fid"} and on_disk["format"] == 2


def test_unknown_fields_of_another_version_are_kept():
    obj = {**started().to_json(), "future_field": [1, 2]}
    rec = Record.from_json(obj)
    assert rec.meta["future_field"] == [1, 2] and rec.to_json() == obj


def test_bad_records_are_refused_with_their_file_named(tmp_path):
    with pytest.raises(NotARecord, match="x.json is not a vaebench run record"):
        Record.from_json({"status": "finished"}, "x.json")
    with pytest.raises(NotARecord, match="'done' is none of running"):
        Record.from_json({"config": {}, "status": "done"}, "x.json")
    with pytest.raises(ValueError, match=r"meta key\(s\) \['status'\]"):
        started(status="finished")
    (tmp_path / "record.json").write_text('{"config": {"seed"')
    with pytest.raises(CorruptRecord, match="cut short"):
        Record.read(tmp_path / "record.json")
    assert Record.read(tmp_path / "none.json") is None
