"""Evaluation defaults that fit the data: image counts come from the data set's
protocol, suites that set them keep theirs, and a record with a removed key is refused by name."""
from __future__ import annotations

import tomllib

import pytest
import torch

import vaes.run as one_run  # the module, to watch its evaluate_run
from benchmarks.suite import SUITES_DIR, expand, load_suite
from vaes.build import resolve
from vaes.config import TrainConfig, from_dict, to_dict
from vaes.data import get_dataset, list_datasets
from vaes.load import RunNotLoadable, load_run
from vaes.records import Record
from vaes.evaluation.quality import _inception_estimate

SHAPE = (1, 28, 28)  # for npz, whose shape is known only after loading


@pytest.mark.parametrize("dataset", list_datasets())
def test_unset_counts_are_the_data_sets_protocol(dataset):
    proto = get_dataset(dataset).protocol
    cfg = resolve(TrainConfig(dataset=dataset), SHAPE if dataset == "npz" else None)
    assert (cfg.eval_images, cfg.fid_images) == (proto.eval_images, min(proto.fid_images, proto.eval_images))


def test_small_sets_evaluate_on_hundreds_the_data_set_suites_on_the_literatures_10000():
    counts = {d: get_dataset(d).protocol for d in list_datasets()}
    for d in ("digits", "shapes"):
        assert 100 <= counts[d].eval_images < 1000 and counts[d].fid_images < 1000
    for d in ("mnist", "fashion_mnist", "cifar10", "celeba"):
        assert counts[d].eval_images == counts[d].fid_images == 10_000


def test_fid_follows_an_eval_images_that_was_set_and_never_exceeds_it():
    assert resolve(TrainConfig(dataset="digits", eval_images=2000)).fid_images == 2000
    assert resolve(TrainConfig(dataset="digits", eval_images=2000, fid_images=50)).fid_images == 50
    assert resolve(TrainConfig(dataset="digits", eval_images=40, fid_images=50)).fid_images == 40
    assert resolve(TrainConfig(dataset="mnist", fid_images=300)).eval_images == 10_000


@pytest.mark.parametrize("path", sorted(SUITES_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_suites_that_set_the_counts_keep_them(path):
    config = tomllib.loads(path.read_text())["config"]
    jobs = expand(load_suite(path), seeds=1)
    assert jobs
    for job in jobs:
        if "eval_images" in config:
            assert job.cfg.eval_images == config["eval_images"]
            assert job.cfg.fid_images == config.get("fid_images", config["eval_images"])


def test_the_quick_suite_keeps_2000_and_50():
    jobs = expand(load_suite("quick"), seeds=1)
    assert {(j.cfg.eval_images, j.cfg.fid_images) for j in jobs} == {(2000, 50)}


def test_counts_refused_below_one():
    for name in ("eval_images", "fid_images"):
        with pytest.raises(ValueError, match=name):
            TrainConfig(**{name: 0})


def test_a_record_with_a_removed_key_is_refused_by_name(tmp_path):
    # stage2_noise chose nothing and was removed: records written before carry it, and are
    # refused with the key and the version named, never loaded under a guess
    cfg = resolve(TrainConfig(dataset="digits"))
    with pytest.raises(ValueError, match="stage2_noise: not a config field"):
        from_dict({**to_dict(cfg), "stage2_noise": True})
    Record(run_id="old", seed=0, config={**to_dict(cfg), "stage2_noise": True}, status="finished").write(
        tmp_path / "record.json")
    with pytest.raises(RunNotLoadable, match="stage2_noise"):
        load_run(tmp_path)


def test_the_line_before_inception_counts_the_images():
    fakes = {"samples": torch.zeros(50, 1, 8, 8), "recon": torch.zeros(50, 1, 8, 8)}
    line = _inception_estimate(fakes, 40, torch.device("cpu"))
    assert line.startswith("evaluating: Inception features of 2 image sets of 50 images and 40 held-out")
    assert "(140 in all)" in line and "min on 2 CPU cores" in line
    assert "min" not in _inception_estimate(fakes, 40, torch.device("meta"))
    cached = _inception_estimate(fakes, 0, torch.device("cpu"))  # the held-out features come from the cache
    assert "the held-out images' cached features (100 in all)" in cached


def test_the_same_command_again_does_not_evaluate_again_and_a_new_count_does(tmp_path, monkeypatch):
    cfg = TrainConfig(dataset="digits", epochs=1, fid=False, out=str(tmp_path / "run"))
    first = one_run.run(cfg, progress=False)
    assert first.status == "finished" and first.config["eval_images"] == get_dataset("digits").protocol.eval_images
    calls = []
    monkeypatch.setattr(one_run, "evaluate_run", lambda out, changed: calls.append(changed) or first)
    one_run.run(cfg, progress=False)  # unset counts: the record's resolved ones stand
    assert calls == []
    one_run.run(cfg.replace(eval_images=100), progress=False)
    assert calls == [["eval_images=100", "fid_images=100"]]
