"""Correctness on CUDA, run by benchmarks/gpu_check.sh on a GPU machine; skipped without one.

TF32: every comparison runs at torch's defaults, which benchmarks.speed records: cuDNN
convolutions in TF32 (torch.backends.cudnn.allow_tf32 = True), matrix products in fp32
(torch.backends.cuda.matmul.allow_tf32 = False); the FID/KID comparison turns TF32 off, since it
compares against the CPU's fp32.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from benchmarks.speed import fresh_model, random_inception
from vaes.evaluation import feature_metrics
from vaes.build import resolve
from vaes.config import TrainConfig
from vaes.evaluation.fid import extract_features
from vaes.evaluation.frechet import feature_statistics, frechet_distance_to_features
from vaes.fit import fit
from vaes.stop import StopRequests, request_stop
from tests.conftest import REPO

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="needs CUDA; benchmarks/gpu_check.sh runs it on a GPU")]
CUDA = torch.device("cuda")
SHAPE = (3, 32, 32)


def _noise(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, *SHAPE), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _fit(tmp_path, variant: str, epochs: int = 10, tag: str = "", **options):
    """The CIFAR-10 ResNet at batch 100 on 1,000 noise images: 10 steps an epoch."""
    cfg = resolve(TrainConfig(dataset="cifar10", variant=variant), SHAPE)
    model = fresh_model(cfg, SHAPE, CUDA)
    x = _noise(1000).to(CUDA)
    res = fit(model, lambda e: x, epochs=epochs, lr=cfg.lr, halve_every=0, batch_size=100, seed=0,
              checkpoint=tmp_path / f"{variant}{tag}{sorted(options)}.pt", progress=False, **options)
    return model, res


@pytest.mark.parametrize("variant", ["balanced", "learned_gamma"])
def test_fp32_bf16_and_compile_agree_over_the_first_hundred_steps(tmp_path, variant):
    """Per-epoch mean losses of 100 steps within 2% (bf16 keeps 8 mantissa bits), gamma within 5%
    and moving the same way."""
    runs = {name: _fit(tmp_path, variant, **opts)[1] for name, opts in
            (("fp32", {}), ("bf16", {"bf16": True}), ("compile", {"compile": True}))}
    ref = runs["fp32"]
    for name, res in runs.items():
        assert res.status == "finished", (name, res.reason)
        losses = [h["loss"] for h in res.history]
        assert all(math.isfinite(v) for v in losses) and losses == pytest.approx([h["loss"] for h in ref.history], rel=2e-2), name
        g0, g1 = res.history[0].get("gamma"), res.history[-1].get("gamma")
        r0, r1 = ref.history[0].get("gamma"), ref.history[-1].get("gamma")
        if r0 is not None:
            assert g1 == pytest.approx(r1, rel=5e-2) and (g1 - g0) * (r1 - r0) > 0, (name, g0, g1, r0, r1)


def test_sigterm_mid_epoch_then_resume_ends_where_an_uninterrupted_run_ends(tmp_path):
    """A stop requested at step 37 (mid-epoch 4), then the same call: the same weights as a run
    never stopped, within 1e-4 (cuDNN's convolution backward is not bit-deterministic by default)."""
    whole, res = _fit(tmp_path, "balanced", epochs=6, tag="whole")
    cfg = resolve(TrainConfig(dataset="cifar10", variant="balanced"), SHAPE)
    model = fresh_model(cfg, SHAPE, CUDA)
    steps = {"n": 0}
    after = model.after_step

    def counting(terms):
        steps["n"] += 1
        if steps["n"] == 37:
            request_stop()
        return after(terms)
    model.after_step = counting
    x = _noise(1000).to(CUDA)
    kw = dict(epochs=6, lr=cfg.lr, halve_every=0, batch_size=100, seed=0, checkpoint=tmp_path / "stopped.pt",
              progress=False)
    with StopRequests(()):  # a request lasts until its block ends, as around a run
        assert fit(model, lambda e: x, **kw).status == "interrupted"
    model.after_step = after
    again = fresh_model(cfg, SHAPE, CUDA)
    resumed = fit(again, lambda e: x, **kw)
    assert resumed.status == "finished" and len(resumed.history) == 6
    for a, b in zip(whole.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-5)
    print("bit-identical:", all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), again.state_dict().values())))


def test_fid_and_kid_on_cuda_equal_the_cpu(monkeypatch):
    """The same images through the same seeded random Inception on both devices, TF32 off."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    fake, real = _noise(64, 1), _noise(64, 2)
    scores = {}
    for device in (torch.device("cpu"), CUDA):
        fn = random_inception(0, device)
        f, r = (extract_features(v, fn, device=device, batch_size=32) for v in (fake, real))
        scores[device.type] = (frechet_distance_to_features(f, *feature_statistics(r)),
                               feature_metrics.kid(f.astype(np.float32), r.astype(np.float32))["value"])
    assert scores["cuda"] == pytest.approx(scores["cpu"], rel=1e-3), scores


def test_a_shortened_real_protocol_run_writes_its_record_and_tables(tmp_path):
    """The cifar10 suite's balanced two-stage row, ResNet, batch 100, 300 + 100 steps on noise."""
    noise = _noise(5500).numpy()
    np.savez(tmp_path / "noise.npz", train=noise[:5000], test=noise[5000:])
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "benchmarks.run", "--suite", "cifar10", "--only", "balanced", "--seeds", "1",
           "--device", "cuda", "--out", str(out), "--set", "dataset=npz", f"data_root={tmp_path / 'noise.npz'}",
           "epochs=6", "stage2_epochs=2", "lr_halve_every=0", "fid=false", "eval_images=500"]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    (rec,) = [json.loads(p.read_text()) for p in (out / "runs").glob("*/record.json")]
    assert rec["status"] == "finished" and rec["device"].startswith("cuda") and rec["stage2"]
    assert len(rec["history"]) == 6 and math.isfinite(rec["metrics"]["neg_elbo"]["value"])
    assert (out / "table.md").is_file()
