"""A run folder answers for one run only: a run's identity is what changes its
trained weights (vaes.config.identity); another run in the same out= is refused with exit
status 2 and nothing written; other evaluation settings re-evaluate the same run."""
from __future__ import annotations

import dataclasses
import numpy as np
import pytest

from vaes.config import IDENTITY_FIELDS, NOT_IDENTITY_FIELDS, TrainConfig, identity, run_id, to_dict
from vaes.records import Record
from vaes.run import run
from vaes.store import FolderTaken, identity_diff
from vaes.train import main as train_main

QUICK = ["dataset=digits", "epochs=1", "eval_images=200", "fid=false"]


def test_every_config_field_is_classified_once():
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert not set(IDENTITY_FIELDS) & set(NOT_IDENTITY_FIELDS)
    unclassified = names - set(IDENTITY_FIELDS) - set(NOT_IDENTITY_FIELDS)
    assert not unclassified, f"add {sorted(unclassified)} to IDENTITY_FIELDS or NOT_IDENTITY_FIELDS in vaes/config.py"


def test_evaluation_and_bookkeeping_do_not_change_the_run_id_and_training_does():
    base = TrainConfig()
    for change in ({"eval_images": 500}, {"fid": False}, {"fid_images": 7}, {"checkpoint_every": 3},
                   {"tensorboard": True}, {"device": "cpu"}, {"out": "elsewhere"}, {"cache_dir": "/tmp/c"}):
        assert run_id(base.replace(**change)) == run_id(base), change
    for change in ({"variant": "beta"}, {"seed": 1}, {"epochs": 3}, {"bf16": True}, {"compile": True},
                   {"lr": 1e-3}, {"network": "conv"}, {"n_train": 10}, {"options": {"momentum": 0.9}}):
        assert run_id(base.replace(**change)) != run_id(base), change


def _npz(path, seed):
    rng = np.random.default_rng(seed)
    np.savez(path, train=rng.integers(0, 256, (60, 8, 8), dtype=np.uint8),
             test=rng.integers(0, 256, (20, 8, 8), dtype=np.uint8))
    return path


def test_a_data_file_is_identified_by_its_content(tmp_path):
    a, b, a2 = _npz(tmp_path / "a.npz", 0), _npz(tmp_path / "b.npz", 1), tmp_path / "copy.npz"
    a2.write_bytes(a.read_bytes())
    ids = {p.name: run_id(TrainConfig(dataset="npz", data_root=str(p))) for p in (a, b, a2)}
    assert ids["a.npz"] == ids["copy.npz"] != ids["b.npz"]
    assert identity(TrainConfig(dataset="npz", data_root=str(a)))["data_hash"]


def test_another_variant_in_the_same_folder_is_refused_and_nothing_written(tmp_path, capsys):
    out = tmp_path / "X"
    assert train_main(["variant=balanced", *QUICK, f"out={out}"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert train_main(["variant=beta", *QUICK, f"out={out}"]) == 2
    err = capsys.readouterr().err
    for part in (str(out), "variant=balanced", "dataset=digits", "seed=0", "another out=", "delete"):
        assert part in err, part
    assert "\n" not in err.strip()  # one paragraph
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    rec = Record.read(out / "record.json")
    assert rec.config["variant"] == "balanced"
    # the same run again is its finished record, exit 0
    assert train_main(["variant=balanced", *QUICK, f"out={out}"]) == 0


def test_another_npz_file_in_the_same_folder_is_refused(tmp_path):
    a, b = _npz(tmp_path / "a.npz", 0), _npz(tmp_path / "b.npz", 1)
    out = tmp_path / "X"
    assert train_main(["dataset=npz", f"data_root={a}", "epochs=1", "eval_images=20", "fid=false",
                       f"out={out}"]) == 0
    with pytest.raises(FolderTaken, match="data_root"):
        run(TrainConfig(dataset="npz", data_root=str(b), epochs=1, eval_images=20, fid=False, out=str(out)))
    # the same content under another name is the same run
    c = tmp_path / "c.npz"
    c.write_bytes(a.read_bytes())
    assert run(TrainConfig(dataset="npz", data_root=str(c), epochs=1, eval_images=20, fid=False, out=str(out))).ok


def test_an_interrupted_run_of_another_config_is_refused_too(tmp_path):
    out = tmp_path / "X"
    cfg = TrainConfig(dataset="digits", epochs=1, seed=3, out=str(out))
    Record.start(run_id=run_id(cfg), seed=3, config=to_dict(cfg)).interrupt("SIGTERM").write(out / "record.json")
    with pytest.raises(FolderTaken, match="seed=3"):
        run(cfg.replace(seed=4))
    assert identity_diff(cfg.replace(seed=4), Record.read(out / "record.json")) == ["seed"]


def test_other_image_counts_evaluate_the_same_run_again(tmp_path):
    out = tmp_path / "X"
    assert train_main(["variant=balanced", *QUICK, f"out={out}"]) == 0
    first = Record.read(out / "record.json")
    assert train_main(["variant=balanced", *QUICK[:-2], "eval_images=100", "fid=false", f"out={out}"]) == 0
    again = Record.read(out / "record.json")
    assert again.config["eval_images"] == 100 and first.config["eval_images"] == 200
    assert again.history == first.history  # not trained again
    assert again.timings["eval_seconds"] != first.timings["eval_seconds"]
