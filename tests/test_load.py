"""Trained models from Python: vaes.load_run and python -m vaes.sample on a real finished run,
and the refusals of folders that are not one (unfinished, damaged weights, another version)."""
import json
import math
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import vaes
from vaes.config import TrainConfig, from_dict, parse_overrides, to_dict
from vaes.data import load_dataset
from vaes.evaluation.quality import to_uint8
from vaes.load import RunNotLoadable, load_run
from vaes.evaluation.metrics import heldout_metrics
from vaes.records import save_torch
from vaes.sample import main as sample_main
from vaes.run import run as train_run
from tests.conftest import REPO



@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These 8x8 nets run faster on one thread, and several times faster when other jobs
    share the cores (two threads each then wait for the other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, _one_thread) -> Path:
    """One small finished two-stage digits run (about 5 s on one CPU thread). 40 epochs, not 5:
    after 5 the balanced VAE has not left its posterior collapse (gamma still 0.72, 0 active
    units, every reconstruction the same blur), so a reconstruction test could not fail.
    evaluate=False skips the classifier distances (10 s more), not the held-out MSE."""
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(dataset="digits", variant="balanced", epochs=40, two_stage=True, stage2_epochs=5,
                      stage2_width=64, eval_images=100, fid=False, device="cpu", out=str(out),
                      cache_dir=str(tmp_path_factory.mktemp("cache")))
    rec = train_run(cfg, progress=False, evaluate=False)
    assert rec.status == "finished", rec.reason
    return out


@pytest.fixture(scope="module")
def run(run_dir):
    return load_run(run_dir)


@pytest.fixture(scope="module")
def heldout() -> torch.Tensor:
    return load_dataset("digits").test[:100]


def copy_run(src: Path, dst: Path, edit=None) -> Path:
    """record.json and model.pt of ``src`` in ``dst``, with ``edit(record)`` applied."""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "model.pt", dst / "model.pt")
    rec = json.loads((src / "record.json").read_text())
    if edit is not None:
        edit(rec)
    (dst / "record.json").write_text(json.dumps(rec))
    return dst


# ---- the loaded run -------------------------------------------------------------------------

def test_load_run_gives_the_trained_models_in_eval_mode(run, run_dir, heldout):
    assert vaes.load_run is load_run
    assert run.shape == (1, 8, 8) and run.config == from_dict(run.record.config)
    assert run.config.two_stage and run.stage2 is not None and run.record.status == "finished"
    assert not run.model.training and not run.stage2.training
    assert next(run.model.parameters()).device.type == "cpu"
    # the weights are the trained ones: the held-out MSE of the record is reproduced exactly
    rec = json.loads((run_dir / "record.json").read_text())
    assert heldout_metrics(run.model, load_dataset("digits").test)["recon_mse"] == pytest.approx(
        rec["metrics"]["recon_mse"]["value"], rel=1e-6)


@pytest.mark.parametrize("stage,sampler", [(None, "mean"), (1, "mean"), (2, "mean"), (2, "ancestral")])
def test_sample_shape_dtype_and_determinism(run, stage, sampler):
    x = run.sample(16, stage=stage, seed=3, sampler=sampler)
    assert x.shape == (16, 1, 8, 8) and x.dtype == torch.uint8 and x.device.type == "cpu"
    assert torch.equal(x, run.sample(16, stage=stage, seed=3, sampler=sampler))
    assert not torch.equal(x, run.sample(16, stage=stage, seed=4, sampler=sampler))


def test_samplers_and_stages_differ_and_default_is_stage_2(run):
    assert torch.equal(run.sample(16, seed=1), run.sample(16, stage=2, seed=1, sampler="mean"))
    assert not torch.equal(run.sample(16, stage=2, seed=1), run.sample(16, stage=2, seed=1, sampler="ancestral"))
    assert not torch.equal(run.sample(16, stage=1, seed=1), run.sample(16, stage=2, seed=1, sampler="ancestral"))


def test_reconstructions_are_closer_to_heldout_digits_than_samples(run, heldout):
    def mse(a, b):
        return float(((a.float() - b.float()) / 255).pow(2).mean())

    recon = run.reconstruct(heldout)
    assert recon.shape == heldout.shape and recon.dtype == torch.uint8
    samples = run.sample(len(heldout), stage=1, seed=0)
    # measured: 0.024 against 0.114 for samples and 0.120 for the next held-out digit; a
    # collapsed or wrongly loaded model reconstructs every digit alike and fails both
    assert mse(recon, heldout) < 0.5 * mse(samples, heldout)
    assert mse(recon, heldout) < 0.5 * mse(recon, heldout.roll(1, 0))  # each is its own digit's
    drawn = run.reconstruct(heldout, sample=True, seed=5)
    assert torch.equal(drawn, run.reconstruct(heldout, sample=True, seed=5))
    assert not torch.equal(drawn, recon)
    assert mse(drawn, heldout) < 0.5 * mse(samples, heldout)


def test_encode_decode_round_trip(run, heldout):
    mu, logvar = run.encode(heldout[:10])
    assert mu.shape == logvar.shape == (10, run.latent_dim) == (10, 16)
    x = run.decode(mu)
    assert x.shape == (10, 1, 8, 8) and x.is_floating_point() and 0 <= float(x.min()) <= float(x.max()) <= 1
    assert torch.equal(to_uint8(x).cpu(), run.reconstruct(heldout[:10]))  # decode(mu(x)) is the reconstruction


def test_uint8_and_float_inputs_agree(run, heldout):
    x = heldout[:50]
    for f in (x.float() / 255, x.double() / 255, x.numpy() / 255.0, x.numpy()):
        before = torch.as_tensor(f).clone()
        assert torch.equal(run.reconstruct(f), run.reconstruct(x))
        assert torch.equal(run.reconstruct(f, sample=True, seed=2), run.reconstruct(x, sample=True, seed=2))
        assert torch.equal(run.encode(f)[0], run.encode(x)[0])
        assert torch.equal(torch.as_tensor(f), before)  # the caller's images are left as they were
    assert torch.equal(x, heldout[:50])


@pytest.mark.parametrize("bad,match", [
    (torch.zeros(4, 1, 8, 8, dtype=torch.int64), "uint8 0..255 or float"),
    (torch.zeros(4, 1, 28, 28, dtype=torch.uint8), r"shape \(N, 1, 8, 8\)"),
    (torch.zeros(1, 8, 8, dtype=torch.uint8), r"shape \(N, 1, 8, 8\)"),
    (torch.zeros(0, 1, 8, 8), "N >= 1"),
    (torch.full((4, 1, 8, 8), 1.5), "out of range"),
    (torch.full((4, 1, 8, 8), -0.1), "out of range"),
    (torch.full((4, 1, 8, 8), float("nan")), "NaN"),
    ([[0.5]], "got list"),
])
def test_bad_images_are_value_errors(run, bad, match):
    for fn in (run.reconstruct, run.encode):
        with pytest.raises(ValueError, match=match):
            fn(bad)


def test_bad_latents_and_sampling_arguments_are_value_errors(run):
    with pytest.raises(ValueError, match=r"\(N, 16\)"):
        run.decode(torch.zeros(3, 8))
    with pytest.raises(ValueError, match="float"):
        run.decode(torch.zeros(3, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="stage must be"):
        run.sample(4, stage=3)
    with pytest.raises(ValueError, match="sampler must be"):
        run.sample(4, sampler="posterior")
    with pytest.raises(ValueError, match="positive int"):
        run.sample(0)


def test_one_stage_run_samples_stage_1_and_refuses_stage_2(run_dir, tmp_path):
    def one_stage(rec):
        rec["config"]["two_stage"] = False
    d = copy_run(run_dir, tmp_path / "one", one_stage)
    w = torch.load(d / "model.pt", weights_only=True)
    save_torch(d / "model.pt", {"model": w["model"], "stage2": None})
    one = load_run(d)
    assert one.stage2 is None
    assert torch.equal(one.sample(8, seed=1), one.sample(8, stage=1, seed=1))
    with pytest.raises(ValueError, match="no second stage"):
        one.sample(8, stage=2)


# ---- the command line -----------------------------------------------------------------------

def test_cli_writes_a_grid_png(run_dir, tmp_path):
    out = tmp_path / "sub" / "grid.png"
    p = subprocess.run([sys.executable, "-m", "vaes.sample", str(run_dir), "n=10", f"out={out}",
                        "stage=2", "sampler=ancestral", "seed=1", "device=cpu"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == str(out)
    side = math.ceil(math.sqrt(10))  # 4 a row, 3 rows, 8 px images with 1 px padding
    assert Image.open(out).size == (side * 9 + 1, 3 * 9 + 1)


def test_cli_usage_and_errors(run_dir, tmp_path, capsys):
    assert sample_main(["--help"]) == 0 and "python -m vaes.sample RUN_DIR" in capsys.readouterr().out
    for argv, match in [([str(tmp_path)], "no record.json"),
                        ([str(run_dir), "stage=9", f"out={tmp_path / 'g.png'}"], "stage=9: choose 1"),
                        ([str(run_dir), "n=ten"], "n='ten': expected int"),
                        ([str(run_dir), "colour=red"], "unknown key 'colour'"),
                        ([str(run_dir), "out=grid.jpg"], "ending in .png")]:
        assert sample_main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and match in err and "Traceback" not in err


# ---- refusals -------------------------------------------------------------------------------

def test_folder_without_record_is_refused(tmp_path):
    with pytest.raises(RunNotLoadable, match="no record.json") as e:
        load_run(tmp_path)
    assert str(tmp_path) in str(e.value) and isinstance(e.value, ValueError)
    with pytest.raises(RunNotLoadable, match="not a folder"):
        load_run(tmp_path / "nowhere")


def test_unfinished_run_is_refused_with_the_command_that_resumes_it(run_dir, tmp_path):
    def interrupted(rec):
        rec["status"], rec["reason"] = "interrupted", "signal SIGTERM at epoch 3 step 7; checkpoint saved"
    d = copy_run(run_dir, tmp_path / "int", interrupted)
    with pytest.raises(RunNotLoadable, match="not finished") as e:
        load_run(d)
    msg = str(e.value)
    assert "'interrupted'" in msg and "SIGTERM" in msg and str(d) in msg
    # the command in the message parses back to the run's own config (so it resumes this run)
    cmd = shlex.split(msg[msg.index("python -m vaes.train"):])
    assert cmd[:3] == ["python", "-m", "vaes.train"] and cmd[-1] == f"out={d}"
    rec = json.loads((run_dir / "record.json").read_text())
    assert to_dict(parse_overrides(cmd[3:])) == {**rec["config"], "out": str(d)}

    def failed_in_suite(rec):
        rec["status"], rec["reason"], rec["suite"] = "failed", "non-finite loss at epoch 2", "quick"
    d = copy_run(run_dir, tmp_path / "OUT" / "runs" / "fail", failed_in_suite)
    with pytest.raises(RunNotLoadable, match="--retry-failed") as e:
        load_run(d)
    assert f"python -m benchmarks.run --suite quick --out {tmp_path / 'OUT'}" in str(e.value)


def test_missing_or_damaged_weights_are_refused(run_dir, tmp_path):
    d = copy_run(run_dir, tmp_path / "cut")
    data = (d / "model.pt").read_bytes()
    (d / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(RunNotLoadable, match="damaged") as e:
        load_run(d)
    assert str(d / "model.pt") in str(e.value) and "python -m vaes.train" in str(e.value)
    (d / "model.pt").write_bytes(b"not a torch file")
    with pytest.raises(RunNotLoadable, match="damaged"):
        load_run(d)
    save_torch(d / "model.pt", {"weights": torch.zeros(3)})
    with pytest.raises(RunNotLoadable, match="not vaebench's model.pt"):
        load_run(d)
    (d / "model.pt").unlink()
    with pytest.raises(RunNotLoadable, match="missing"):
        load_run(d)


def test_record_of_another_version_is_refused(run_dir, tmp_path):
    def newer(rec):
        rec["config"]["decoder_dropout"] = 0.1
        rec["versions"]["vaebench"] = "9.0.0"
    with pytest.raises(RunNotLoadable, match="incompatible vaebench version") as e:
        load_run(copy_run(run_dir, tmp_path / "new", newer))
    assert "decoder_dropout" in str(e.value) and "vaebench 9.0.0" in str(e.value)

    def other_net(rec):  # known keys, but weights that do not fit what this version builds
        rec["config"]["latent_dim"] = 8
    with pytest.raises(RunNotLoadable, match="do not fit"):
        load_run(copy_run(run_dir, tmp_path / "net", other_net))

    def unknown_variant(rec):
        rec["config"]["variant"] = "plugin_variant"
    with pytest.raises(RunNotLoadable, match="plugin_variant"):
        load_run(copy_run(run_dir, tmp_path / "var", unknown_variant))
