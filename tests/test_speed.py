"""The speed benchmark's machinery (no timing assertions: timing belongs in the benchmark) and
the trainer's speed options: torch.compile and bf16 autocast must not change the losses."""
from __future__ import annotations

import importlib.util
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
from vaes.build import resolve
from vaes.config import TrainConfig
from vaes.data import load_dataset
from vaes.fit import fit
from tests.conftest import REPO

TINY = 200  # digits images: two batches of 100
PYTHAE = importlib.util.find_spec("pythae") is not None  # the bench extra


@pytest.fixture(scope="module")
def digits_train():
    """vaes.data's digits training split (not conftest's digits(): all 1,797 in scikit-learn's order)."""
    return load_dataset("digits").train


def _network_tensors(model) -> list[torch.Tensor]:
    return [p.detach().cpu() for p in [*model.encoder.parameters(), *model.decoder.parameters()]]


def _cfg(x):
    return resolve(TrainConfig(dataset="digits"), tuple(x.shape[1:]))


def test_three_trainers_train_the_same_network(digits_train, tmp_path):
    classes = [speed.Vaebench, speed.Tutorial] + ([speed.Pythae] if PYTHAE else [])
    x = digits_train[:TINY]
    trainers = [cls(_cfg(x), x, torch.device("cpu"), tmp_path) for cls in classes]
    reference = _network_tensors(trainers[0].model)
    for t in trainers[1:]:  # the same initial weights, tensor by tensor
        assert all(torch.equal(a, b) for a, b in zip(reference, _network_tensors(t.model), strict=True)), t
    for t in trainers:
        images, loss = t.run(1)
        assert images == TINY and math.isfinite(loss), (t, images, loss)
    if PYTHAE:  # the wrapped encoder is ours, not pythae's default MLP, and pythae trains it
        config = trainers[-1].model.model_config
        assert not config.uses_default_encoder and not config.uses_default_decoder
        assert not all(torch.equal(a, b) for a, b in zip(reference, _network_tensors(trainers[-1].model)))


def test_evaluation_without_weights_is_skipped_unless_random_weights_are_asked_for(digits_train, tmp_path):
    """No silent fallback: without FID weights (conftest points them at a missing file) the part
    says why; --random-inception SEED times the same network under seeded random weights."""
    out = tmp_path / "s"
    common = ["--device", "cpu", "--n-train", str(TINY), "--rounds", "1", "--eval-images", "4", "--eval-batch", "4",
              "--stage2-epochs", "1", "--out", str(out)]
    res = speed.main([*common, "--parts", "eval"])
    assert "--random-inception" in res["eval"]["skipped"] and res["projection"] is None
    res = speed.main([*common, "--parts", "train,stage2,eval", "--random-inception", "3"])
    ev = res["eval"]
    assert ev["inception"].startswith("torchvision inception_v3, random weights (seed 3)")
    assert ev["fid"] > 0 and ev["kid"] is not None and 0 <= ev["precision"] <= 1 and ev["n_images"] == 4
    on_disk = json.loads((out / "cpu-digits.json").read_text())
    assert on_disk["train"]["ratios"]["vaebench_over_tutorial"] > 0 and on_disk["train"]["flops_per_image"] > 0
    assert on_disk["machine"]["tf32"] == {"cudnn_conv": torch.backends.cudnn.allow_tf32,
                                          "matmul": torch.backends.cuda.matmul.allow_tf32}
    assert (out / "cpu-digits.md").read_text().startswith("# Speed: digits on ")
    # seeded: the same weights, the same features
    fn_a, fn_b = speed.random_inception(3, torch.device("cpu")), speed.random_inception(3, torch.device("cpu"))
    with torch.inference_mode():
        imgs = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
        assert torch.equal(fn_a(imgs), fn_b(imgs)) and fn_a(imgs).shape == (2, 2048)


def test_projection_is_the_paper_protocol_at_the_measured_rates():
    res = {"dataset": "cifar10", "train": {"vaebench": {"images_per_second": 1000.0}}, "stage2": {"codes_per_second": 10_000.0},
           "eval": {"total_seconds": 30.0, "generate_seconds": 10.0, "n_images": 1000}}
    p = speed.projection(res)
    assert p["first_stage_seconds"] == pytest.approx(700 * 50_000 / 1000)
    assert p["stage2_seconds"] == pytest.approx(1400 * 50_000 / 10_000)
    assert p["eval_seconds"] == pytest.approx(40.0 * 10)
    assert p["total_minutes"] == pytest.approx((35_000 + 7_000 + 400) / 60)
    assert speed.projection({**res, "dataset": "digits"}) is None  # another network: no projection


# ---- speed options keep the numbers ------------------------------------------------------------

def _fit_history(x, tmp_path: Path, **options) -> list[float]:
    cfg = _cfg(x)
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


@pytest.mark.slow  # a minute of inductor compilation on 2 cores; tests/test_cuda.py checks compile against eager on CUDA
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
