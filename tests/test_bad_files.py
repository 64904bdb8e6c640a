"""Every file vaebench reads, when it is cut short, not what its name says, or holds pickled
objects: a one-paragraph error naming the file and the fix, never a traceback; a damaged cache
is computed again."""
from __future__ import annotations

import gzip
import json
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from benchmarks import report, speed, timed
from benchmarks.run import main
from benchmarks.suite import load_suite
from tests.conftest import REPO, digit_images, digits, exit_outcome
from tests.test_fid import KEY, StandIn
from sweeps import run as sweeps_run
from vaes import balance, evaluate, export, sample
from vaes import train as vaes_train
from vaes.cli import entry_point
from vaes.config import TrainConfig, from_dict
from vaes.evaluation.classifier import load_or_train_classifier
from vaes.data import DataMissing, _read_idx, load_dataset
from vaes.evaluation.fid import full_reference_key, reference_path, reference_statistics
from vaes.records import CorruptCheckpoint, CorruptRecord, load_torch, read_json
from vaes.run import run
from vaes.store import status as run_status


def npz_of(path, **arrays):
    np.savez(path, **arrays)
    return path


def good_npz(tmp_path):
    rng = np.random.default_rng(0)
    return npz_of(tmp_path / "good.npz", train=rng.integers(0, 256, (200, 8, 8), dtype=np.uint8),
                  test=rng.integers(0, 256, (50, 8, 8), dtype=np.uint8))


def test_npz_cut_short(tmp_path):
    path = tmp_path / "cut.npz"
    path.write_bytes(good_npz(tmp_path).read_bytes()[:300])
    with pytest.raises(DataMissing, match=r"cut\.npz cannot be read as a \.npz archive.*numpy\.savez"):
        load_dataset("npz", str(path))


def test_npz_that_is_another_kind_of_file(tmp_path):
    path = tmp_path / "really_a_png.npz"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(DataMissing, match=r"really_a_png.npz is not a .npz archive \(it starts with b'\\x89PNG'"):
        load_dataset("npz", str(path))
    np.save(tmp_path / "array.npy", np.zeros((4, 8, 8), np.uint8))
    (tmp_path / "array.npy").rename(tmp_path / "array.npz")
    with pytest.raises(DataMissing, match="array.npz is not a .npz archive.*a single .npy array"):
        load_dataset("npz", str(tmp_path / "array.npz"))


def test_npz_with_pickled_objects_is_never_unpickled(tmp_path):
    path = npz_of(tmp_path / "objects.npz", train=np.array([{"x": 1}, None], dtype=object),
                  test=np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(DataMissing, match="objects.npz holds pickled Python objects.*can run code"):
        load_dataset("npz", str(path))


def test_a_bad_data_file_through_the_command_line_is_a_message_not_a_traceback(tmp_path):
    path = tmp_path / "cut.npz"
    path.write_bytes(good_npz(tmp_path).read_bytes()[:300])
    res = subprocess.run([sys.executable, "-m", "vaes.train", "dataset=npz", f"data_root={path}",
                          "epochs=1", "fid=false", f"out={tmp_path / 'run'}"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1
    assert "Traceback" not in res.stdout + res.stderr
    assert "cut.npz cannot be read" in res.stdout  # the status line carries the reason
    assert read_json(tmp_path / "run" / "record.json")["status"] == "failed"


@pytest.mark.parametrize("damage", ["cut", "not_gzip", "bad_header"])
def test_mnist_idx_file_damaged(mnist_root, tmp_path, damage):
    root = tmp_path / "data"
    shutil.copytree(mnist_root / "mnist", root / "mnist")
    images = root / "mnist" / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(images.read_bytes())
    images.write_bytes({"cut": gzip.compress(raw[: len(raw) // 2]), "not_gzip": b"plain text, not gzip",
                        "bad_header": gzip.compress(b"\x00\x00\x0d\x03" + raw[4:])}[damage])
    # torchvision's MD5 of each file catches every damage first
    with pytest.raises(DataMissing, match="t10k-images-idx3-ubyte.gz is corrupt.*delete it"):
        load_dataset("mnist", str(root), data_split="test_only")


@pytest.mark.parametrize("content, match", [
    (b"\x00\x00\x08\x03" + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(100), "cut short or padded"),
    (b"\x00\x00\x0d\x01" + (4).to_bytes(4, "big") + bytes(16), "not an IDX file of unsigned bytes"),
])
def test_idx_reader_checks_the_header_against_the_size(tmp_path, content, match):
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataMissing, match=f"images-idx3-ubyte.*{match}"):
        _read_idx(path)
    path = tmp_path / "images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(content)[:20])
    with pytest.raises(DataMissing, match="cut short or not a gzip file"):
        _read_idx(path)


def test_record_cut_short(tmp_path):
    cfg = TrainConfig(dataset="digits", epochs=1, fid=False, eval_images=100, out=str(tmp_path / "run"))
    assert run(cfg).status == "finished"
    record = tmp_path / "run" / "record.json"
    text = record.read_text()
    record.write_text(text[: len(text) // 2])
    with pytest.raises(CorruptRecord, match="record.json cannot be read as JSON.*delete it"):
        read_json(record)
    rec = run(cfg)  # the runner says why and goes on; the damaged file is left for the user
    assert rec.status == "failed" and "cut short" in rec.reason
    assert record.read_text() == text[: len(text) // 2]
    assert run_status(tmp_path / "run") == "failed"
    record.write_text("[1, 2]")
    with pytest.raises(CorruptRecord, match="holds JSON list, not a record"):
        read_json(record)


def test_checkpoint_cut_short_and_from_another_version(tmp_path):
    cfg = TrainConfig(dataset="digits", epochs=2, fid=False, eval_images=100, out=str(tmp_path / "run"))
    ck = tmp_path / "run" / "checkpoint.pt"
    ck.parent.mkdir()
    torch.save({"model": {}, "epoch": 1}, ck)  # another version's layout
    rec = run(cfg)
    assert rec.status == "failed" and "not a checkpoint of this vaebench version" in rec.reason
    assert "lacks optimizer" in rec.reason and "delete it" in rec.reason
    ck.write_bytes(b"PK\x03\x04 cut short")
    rec = run(cfg)
    assert rec.status == "failed" and "cannot be read as a torch file" in rec.reason


def test_torch_file_with_pickled_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this would run",))

    path = tmp_path / "model.pt"
    with open(path, "wb") as f:
        pickle.dump(Payload(), f)
    with pytest.raises(CorruptCheckpoint, match="model.pt cannot be read as a torch file.*never loads pickled code"):
        load_torch(path)


def test_suite_that_is_not_toml(tmp_path, capsys):
    path = tmp_path / "broken.toml"
    path.write_text('name = "broken"\ndataset = "digits"\n[[runs]\nlabel = "x"\n')
    with pytest.raises(ValueError, match="broken.toml is not valid TOML"):
        load_suite(path)
    assert main(["--suite", str(path)]) == 2
    err = capsys.readouterr().err
    assert "broken.toml is not valid TOML" in err and "Traceback" not in err


def test_damaged_fid_statistics_cache_is_computed_again(tmp_path):
    extractor, real = StandIn(dim=8), digit_images(40)
    first = reference_statistics(lambda: real, key={**KEY, "n": 40}, cache_dir=tmp_path, extractor=extractor)
    path = reference_path(full_reference_key({**KEY, "n": 40}, "torch-fidelity", extractor), tmp_path)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.warns(UserWarning, match="cannot be read.*computing them again"):
        again = reference_statistics(lambda: real, key={**KEY, "n": 40}, cache_dir=tmp_path, extractor=extractor)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    json.loads(json.dumps(KEY))  # the key stays plain JSON


def test_damaged_classifier_cache_is_trained_again(tmp_path):
    images, labels = digits()
    first = load_or_train_classifier(images[:300], labels[:300], dataset="digits", cache_dir=tmp_path, epochs=1)
    (path,) = tmp_path.glob("*.pt")
    path.write_bytes(path.read_bytes()[:60])  # cut short
    with pytest.warns(UserWarning, match="cached classifier .* cannot be read.*training it again"):
        again = load_or_train_classifier(images[:300], labels[:300], dataset="digits", cache_dir=tmp_path, epochs=1)
    for a, b in zip(first.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)  # the same seed trains the same classifier
    assert load_torch(path)["key"]["n"] == 300  # and the file is whole again


# ---- every input a clear answer: the examples of the files a user damages or mistypes ----------


SUITE_HEAD = 'name = "t"\ndataset = "digits"\n'
ROW = '[[runs]]\nlabel = "a"\nvariant = "beta"\n'


@pytest.mark.parametrize("body, needle", [
    ('[config]\ntwo_stage = "maybe"\n' + ROW, ':4 [config]: two_stage=\'maybe\': expected true or false'),
    ('[config]\nepochs = 1.5\n' + ROW, ":4 [config]: epochs=1.5: expected a whole number"),
    ('[config]\nlr = nan\n' + ROW, "lr=nan: expected a finite number"),
    ('seeds = 0\n' + ROW, ":3: seeds=0: expected a whole number >= 1"),
    ('runs = [1, 2]\n', "runs[0]=1: expected a table"),
    ('runs = []\n', "runs is empty"),
    ('[config]\nseed = 3\n' + ROW, "seed is set by the suite's 'seeds'"),
    (ROW + 'options = { beta = nan }\n', ":6 [[runs]] #1 (label 'a'): beta=nan"),
    (ROW + 'epochs = 0\n', ":6 [[runs]] #1 (label 'a'): epochs must be >= 1"),
    (ROW + 'wat = 1\n', ":6 [[runs]] #1 (label 'a'): wat: not a config field"),
    (ROW + ROW, "[[runs]] #2 (label 'a'): label 'a' is used twice"),
    ('[[runs]]\nvariant = "beta"\n', "[[runs]] #1: label=None: every run needs a label"),
    ('junk = 1\n' + ROW, ":3: unknown key 'junk'"),
])
def test_a_suite_file_with_an_error_runs_nothing(tmp_path, body, needle):
    path = tmp_path / "t.toml"
    path.write_text(SUITE_HEAD + body)
    code, err = exit_outcome(lambda: main(["--suite", str(path), "--out", str(tmp_path / "out")]))
    assert code == 2 and f"suite {path}" in err and needle in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, needle", [
    (["two_stage=maybe"], "two_stage='maybe': expected a boolean"), (["lr=nan"], "lr=nan: expected a finite"),
    (["variant=beta", "beta=nan"], "beta=nan: expected a finite"), (["lr=inf"], "lr=inf"), (["seed=-1"], "seed must be >= 0")])
def test_key_value_and_set_refuse_what_a_suite_refuses(argv, needle):
    code, err = exit_outcome(lambda: vaes_train.main(argv, validate_only=True))
    assert code == 2 and needle in err, err
    if argv[0] != "variant=beta":
        code, err = exit_outcome(lambda: main(["--suite", "quick", "--set", *argv], validate_only=True))
        assert code == 2 and needle.split(":")[0].split(" ")[0] in err, err


def test_a_record_config_read_back_is_checked_like_any_other():
    with pytest.raises(ValueError, match=r"rec.json: two_stage='maybe': expected true or false"):
        from_dict({"two_stage": "maybe"}, "rec.json")
    with pytest.raises(ValueError, match=r"rec.json: newer_field: not a config field"):
        from_dict({"newer_field": 1}, "rec.json")
    assert from_dict({"lr": 1}).lr == 1.0  # a whole number is a float where a float belongs


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    rec = run(TrainConfig(dataset="digits", epochs=1, n_train=200, eval_images=50, fid=False, out=str(out)))
    assert rec.status == "finished"
    return out


def test_a_truncated_model_is_refused_by_name(finished_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    model = run_dir / "model.pt"
    model.write_bytes(model.read_bytes()[:3000])
    code, err = exit_outcome(lambda: sample.main([str(run_dir), f"out={tmp_path / 'g.png'}"]))
    assert code == 2 and f"{model} is damaged" in err and not (tmp_path / "g.png").exists()
    code, err = exit_outcome(lambda: export.main([str(run_dir), str(tmp_path / "exp")]))
    assert code == 2 and f"{model} is damaged" in err and not (tmp_path / "exp").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no staging folder left either


def test_a_truncated_model_given_to_evaluate_is_refused_by_name(finished_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    (run_dir / "model.pt").write_bytes((run_dir / "model.pt").read_bytes()[:3000])
    code, err = exit_outcome(lambda: evaluate.main([str(run_dir), "fid=false"]))
    assert code == 2 and "model.pt" in err


def test_a_record_whose_metrics_are_not_a_mapping_is_refused_by_name(tmp_path):
    path = tmp_path / "runs" / "r" / "record.json"
    path.parent.mkdir(parents=True)
    rec = json.loads(next((REPO / "results" / "quick" / "runs").glob("beta-s0-*/record.json")).read_text())
    path.write_text(json.dumps({**rec, "metrics": [1, 2]}))
    code, err = exit_outcome(lambda: report.main(["--suite", "quick", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]))
    assert code == 2 and f"{path}: its 'metrics' is [1, 2], not an object" in err
    assert not (tmp_path / "rep").exists()
    path.write_text(json.dumps({**rec, "history": [{"epoch": "one"}]}))
    code, err = exit_outcome(lambda: balance.main(["--run", str(path.parent)]))
    assert code == 2 and f"{path}: its history epoch 1" in err


@pytest.mark.parametrize("content, needle", [
    (b"garbage\nmore garbage\n", "is damaged at line 1 (b'garbage'"),
    (b'{"op_code": 0, "worker_id": "w"', "is cut short: its line 1"),
    (b'{"op_code": 0}\n', "cannot be replayed (KeyError")])
def test_a_damaged_study_journal_is_refused_by_name(tmp_path, content, needle):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "study.journal").write_bytes(content)
    code, err = exit_outcome(lambda: sweeps_run.main(["--study", "smoke", "--trials", "1", "--cluster", "debug",
                                                 "--out", str(out)]))
    assert code == 2 and f"the study journal {out / 'study.journal'}" in err and needle in err, err
    assert [p.name for p in out.iterdir()] == ["study.journal"]  # nothing written beside it


def test_output_paths_that_cannot_be_made_are_refused_before_anything_is_written(tmp_path):
    (tmp_path / "file").write_text("x")
    code, err = exit_outcome(lambda: main(["--suite", "quick", "--out", str(tmp_path / "file" / "out")]))
    assert code == 2 and "is a file, not a folder" in err
    code, err = exit_outcome(lambda: sweeps_run.main(["--study", "smoke", "--trials", "1", "--cluster", "debug", "--out",
                                                 str(tmp_path / "sw"), "--storage", str(tmp_path)]))
    assert code == 2 and f"--storage {str(tmp_path)!r} is a folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.parametrize("argv", [["--gamma", "1e300"], ["--beta", "1e308"], ["--gamma", "1e200", "--kl-weight", "1e300"]])
def test_balance_refuses_a_weight_beyond_a_float(argv):
    code, err = exit_outcome(lambda: balance.main(argv))
    assert code == 2 and "beyond a float's range" in err


def test_no_speed_figure_from_a_failed_command(tmp_path, monkeypatch):
    suite = tmp_path / "tiny.toml"
    suite.write_text(SUITE_HEAD + "[config]\nepochs = 1\nfid = false\n" + ROW)
    common = ["--dataset", "digits", "--device", "cpu", "--n-train", "100", "--parts", "suite", "--suite", str(suite),
              "--suite-seeds", "1", "--jobs", "1", "--out", str(tmp_path / "speed")]
    code, err = exit_outcome(lambda: speed.main([*common, "--suite-set", "two_stage=maybe"]))  # refused by benchmarks.run
    assert code == 2 and "two_stage='maybe'" in err
    failed = subprocess.CompletedProcess([], 1, "", "a run failed")
    monkeypatch.setattr(timed.subprocess, "run", lambda *a, **k: failed)
    code, err = exit_outcome(lambda: speed.main(common))
    assert code == 1 and "exit status 1" in err and "no speed figure is saved" in err
    assert not (tmp_path / "speed").exists()


def test_an_unanticipated_error_stays_a_traceback():
    for error in (RuntimeError("a bug"), ConnectionError("network down"), KeyError("x")):
        def failing():
            raise error
        with pytest.raises(type(error)):
            entry_point(failing)()
    code, err = exit_outcome(lambda: entry_point(lambda: open("/nonexistent/folder/file"))())
    assert code == 2 and "/nonexistent/folder/file: it does not exist" in err
