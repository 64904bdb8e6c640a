"""The speed benchmark's machinery (no timing assertions: timing belongs in the benchmark) and
the trainer's speed options: torch.compile and bf16 autocast must not change the losses."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from benchmarks import speed
from vaes.data import load_dataset
from vaes.train import fit
from tests.conftest import REPO

TINY = 200  # digits images: two batches of 100


@pytest.fixture(scope="module")
def digits_train():
    """vaes.data's digits training split (not conftest's digits(): all 1,797 in scikit-learn's order)."""
    return load_dataset("digits").train


def _network_tensors(model) -> list[torch.Tensor]:
    return [p.detach().cpu() for p in [*model.encoder.parameters(), *model.decoder.parameters()]]


def test_three_trainers_train_the_same_network(digits_train, tmp_path):
    names = ["vaebench", "tutorial"] + (["pythae"] if speed.pythae_available() else [])
    x = digits_train[:TINY]
    cfg = speed.bench_config("digits", tuple(x.shape[1:]))
    trainers = speed.make_trainers(cfg, tuple(x.shape[1:]), x, torch.device("cpu"), tmp_path, names)
    assert [t.name for t in trainers] == names
    counts = {t.name: speed.network_parameters(t.model) for t in trainers}
    assert len(set(counts.values())) == 1 and counts["vaebench"] > 0, counts
    reference = _network_tensors(trainers[0].model)
    for t in trainers[1:]:  # the same initial weights, tensor by tensor
        assert all(torch.equal(a, b) for a, b in zip(reference, _network_tensors(t.model), strict=True)), t.name
    for t in trainers:
        images, loss = t.run(1)
        assert images == TINY and math.isfinite(loss), (t.name, images, loss)
    if speed.pythae_available():  # the wrapped encoder is ours, not pythae's default MLP
        config = trainers[-1].model.model_config
        assert not config.uses_default_encoder and not config.uses_default_decoder


def test_benchmark_writes_json_and_markdown(tmp_path):
    skip = "projection" + ("" if speed.pythae_available() else ",pythae")
    out = tmp_path / "speed"
    (res,) = speed.main(["--dataset", "digits", "--device", "cpu", "--epochs", "1", "--rounds", "1",
                         "--n-train", str(TINY), "--stage2-rounds", "1", "--eval-images", "2",
                         "--eval-batch-sizes", "2", "--profile", "--skip", skip, "--out", str(out)])
    on_disk = json.loads((out / "cpu-digits.json").read_text())
    assert on_disk["trainers"].keys() == res["trainers"].keys()
    for key in ("device", "torch", "batch_size", "rounds", "epochs_per_round", "dataset", "network", "trainers",
                "ratios", "targets", "flops", "stage2", "eval", "notes", "load_average", "threads"):
        assert key in on_disk, key
    assert on_disk["device"]["type"] == "cpu" and on_disk["device"]["name"]
    assert on_disk["batch_size"] == 100 and on_disk["rounds"] == 1 and on_disk["dataset"]["n_train"] == TINY
    names = ["vaebench", "tutorial"] + (["pythae"] if speed.pythae_available() else [])
    assert list(on_disk["trainers"]) == names
    for name in names:
        rec = on_disk["trainers"][name]
        assert rec["images_per_second"] > 0 and len(rec["images_per_second_rounds"]) == 1
        assert rec["n_params_network"] == on_disk["network"]["n_params"]
        assert math.isfinite(rec["loss_rounds"][0]) and rec["peak_memory_bytes"] > 0
    for name in names[1:]:
        assert on_disk["ratios"][f"vaebench_over_{name}"] > 0
        assert on_disk["targets"][f"vaebench_over_{name}"]["target"] == 1.5
    assert on_disk["flops"]["per_image"] > 0
    assert on_disk["stage2"]["codes_per_second"] > 0 and on_disk["stage2"]["n_params"] > 0
    assert on_disk["eval"]["inception"]["feature_dim"] == 2048
    assert "images_per_second" in on_disk["eval"]["classifier"] or "skipped" in on_disk["eval"]["classifier"]
    assert on_disk["profile"]["step_ms"] > 0 and "aten::" in (out / "cpu-digits-profile.txt").read_text()
    md = (out / "cpu-digits.md").read_text()
    assert md.startswith("# Speed: digits on ") and "| vaebench |" in md and "| tutorial |" in md


def test_synthetic_data_and_projection():
    train, test, note, synthetic = speed.load_images("cifar10", "/nonexistent", synthetic=True, n_synthetic=10)
    assert synthetic and "synthetic" in note
    assert train.dtype == test.dtype == torch.uint8 and tuple(train.shape) == (10, 3, 32, 32)
    p = speed.project_paper_cifar10(1000.0, 10_000.0, 100.0, "test")
    assert p["first_stage_hours"] == pytest.approx(700 * 50_000 / 1000 / 3600)
    assert p["stage2_hours"] == pytest.approx(1400 * 50_000 / 10_000 / 3600)
    assert p["total_hours"] == pytest.approx(p["first_stage_hours"] + p["stage2_hours"] + p["fid_hours"])


# ---- speed options keep the numbers ------------------------------------------------------------

def _fit_history(x, tmp_path: Path, **options) -> list[float]:
    cfg = speed.bench_config("digits", tuple(x.shape[1:]))
    torch.manual_seed(0)
    model = speed.fresh_model(cfg, tuple(x.shape[1:]), torch.device("cpu"))
    res = fit(model, lambda e: x, epochs=2, lr=cfg.lr, halve_every=0, batch_size=100, seed=0,
              checkpoint=tmp_path / f"{sorted(options.items())}.pt", progress=False, **options)
    assert res.status == "finished", res.reason
    return [h["loss"] for h in res.history]


def test_bf16_autocast_keeps_the_losses(digits_train, tmp_path):
    x = digits_train[:500]
    fp32, bf16 = _fit_history(x, tmp_path), _fit_history(x, tmp_path, bf16=True)
    assert all(math.isfinite(v) for v in bf16)
    # bf16 keeps 8 bits of mantissa: a few per mille per op; measured 1e-4 here after ten steps
    assert bf16 == pytest.approx(fp32, rel=1e-2)


COMPILE_SCRIPT = textwrap.dedent("""
    import json, sys, tempfile
    from pathlib import Path
    import torch
    if not torch._dynamo.is_dynamo_supported():
        sys.exit(3)
    import torch._inductor.config
    torch._inductor.config.fallback_random = True  # the reparameterisation noise as in eager mode
    from tests.test_speed import _fit_history
    from vaes.data import load_dataset
    x = load_dataset("digits").train[:500]
    tmp = Path(tempfile.mkdtemp())
    print(json.dumps({"eager": _fit_history(x, tmp), "compiled": _fit_history(x, tmp, compile=True)}))
""")


def test_compile_keeps_the_losses():
    """compile=True gives the eager losses; run in a child process so that its time is bounded."""
    if not hasattr(torch, "compile"):
        pytest.skip("this torch has no torch.compile")
    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("inductor needs a C++ compiler on the CPU; none on PATH")
    try:
        res = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT], cwd=REPO, capture_output=True,
                             text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.skip("torch.compile of the digits model took over 5 minutes on this machine")
    if res.returncode == 3:
        pytest.skip("torch.compile (dynamo) is not supported on this Python/platform")
    assert res.returncode == 0, res.stderr[-3000:]
    losses = json.loads(res.stdout.strip().splitlines()[-1])
    # same noise (fallback_random), fused kernels: measured 1e-7 apart after ten steps
    assert losses["compiled"] == pytest.approx(losses["eager"], rel=1e-4)


def test_fallback_inception_builds_offline():
    """Without FID weights (the autouse fixture points them at a missing file) evaluation is timed
    through torchvision's Inception-v3 with random weights, built without a download, and says so."""
    fn, what = speed.inception_extractor(torch.device("cpu"))
    with torch.inference_mode():
        feats = fn(torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8))
    assert what.startswith("torchvision inception_v3, random weights") and "does not exist" in what
    assert tuple(feats.shape) == (2, 2048) and torch.isfinite(feats).all()


@pytest.mark.inception
def test_speed_times_the_real_fid_inception():
    """Where vaebench's FID weights can be had, evaluation is timed through the FID network itself."""
    fn, what = speed.inception_extractor(torch.device("cpu"))
    assert "vaebench's FID weights" in what
    with torch.inference_mode():
        assert tuple(fn(torch.randint(0, 256, (1, 3, 8, 8), dtype=torch.uint8)).shape) == (1, 2048)
