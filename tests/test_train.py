"""The trainer end to end: records, resume after SIGTERM, NaN and missing-data failures."""
import json
import os
import signal
import subprocess
import sys

import torch

from vaes.config import TrainConfig
from vaes.records import load_torch
from vaes.run import run
from vaes.build import build_stage2, resolve
from vaes.variants.beta import Beta
from tests.conftest import REPO



def run_cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "vaes.train", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, **kw)


def test_cli_writes_the_promised_record(tmp_path):
    out = tmp_path / "run"
    res = run_cli("variant=balanced", "dataset=digits", "epochs=3", "seed=0", f"out={out}")
    assert res.returncode == 0, res.stderr
    rec = json.loads((out / "record.json").read_text())
    assert rec["status"] == "finished" and rec["seed"] == 0 and rec["reason"] is None
    assert rec["config"]["variant"] == "balanced" and rec["config"]["options"]["momentum"] == 0.99
    assert rec["n_params"] > 0 and len(rec["history"]) == 3
    assert {"loss", "recon", "kl", "gamma"} <= set(rec["history"][0])
    for k in ("recon_mse", "kl", "gamma", "active_units", "psnr", "neg_elbo"):
        assert k in rec["metrics"]
    # the line it ends with: the table's single numbers and the headline sets, as recorded
    line = res.stdout.strip().splitlines()[-1]
    assert line.startswith(f"finished: {out / 'record.json'}")
    assert f"  recon_mse={rec['metrics']['recon_mse']['value']:.4g}" in line and "  cfd_samples=" in line
    assert "gamma=" not in line and "cfd_recon_renorm" not in line  # in record.json only
    assert rec["timings"]["train_images_per_second"] > 0
    assert rec["versions"]["torch"] == torch.__version__ and "git_commit" in rec
    assert not (out / "checkpoint.pt").exists() and (out / "model.pt").is_file()
    load_torch(out / "model.pt")  # weights_only=True
    # gamma of the balanced variant only goes down (monotone running MSE)
    gammas = [h["gamma"] for h in rec["history"]]
    assert gammas == sorted(gammas, reverse=True) and gammas[0] < 1


def test_rerun_of_a_finished_run_changes_nothing(tmp_path):
    cfg = TrainConfig(variant="beta", dataset="digits", epochs=1, out=str(tmp_path))
    first = run(cfg)
    mtime = (tmp_path / "record.json").stat().st_mtime_ns
    assert run(cfg) == first and (tmp_path / "record.json").stat().st_mtime_ns == mtime


def test_sigterm_checkpoints_and_the_rerun_ends_where_an_uninterrupted_run_ends(tmp_path):
    cfg = TrainConfig(variant="balanced", dataset="digits", epochs=40, seed=1, checkpoint_every=1000,
                      eval_images=300, out=str(tmp_path / "ref"))
    ref = run(cfg)
    assert ref.status == "finished", ref.reason

    def sigterm_at_epoch_5(row):  # a real SIGTERM to this process, at a known point, no sleep
        if row["epoch"] == 5:
            os.kill(os.getpid(), signal.SIGTERM)

    killed = cfg.replace(out=str(tmp_path / "killed"))
    rec = run(killed, on_epoch=sigterm_at_epoch_5)
    assert rec.status == "interrupted" and "SIGTERM" in rec.reason, rec
    assert "epoch 5 step 1" in rec.reason  # stopped at the next step boundary
    assert (tmp_path / "killed" / "checkpoint.pt").is_file()
    rb = run(killed)
    assert rb.status == "finished", rb.reason
    out = tmp_path / "killed"
    a, b = load_torch(tmp_path / "ref" / "model.pt")["model"], load_torch(out / "model.pt")["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert ref.metrics["recon_mse"] == rb.metrics["recon_mse"]
    assert [h["loss"] for h in ref.history] == [h["loss"] for h in rb.history]


def test_nan_loss_fails_with_a_reason_and_a_record(tmp_path, monkeypatch):
    original = Beta.loss
    calls = {"n": 0}

    def poisoned(self, x, out):
        terms = original(self, x, out)
        calls["n"] += 1
        if calls["n"] > 20:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(Beta, "loss", poisoned)
    rec = run(TrainConfig(variant="beta", dataset="digits", epochs=3, out=str(tmp_path)))
    assert rec.status == "failed" and "non-finite loss at epoch 2" in rec.reason
    assert json.loads((tmp_path / "record.json").read_text())["status"] == "failed"


def test_missing_data_fails_with_a_record_and_exit_1(tmp_path):
    res = run_cli("dataset=cifar10", f"data_root={tmp_path / 'nothing'}", f"out={tmp_path / 'run'}")
    assert res.returncode == 1 and "cifar-10-batches-py" in res.stdout
    rec = json.loads((tmp_path / "run" / "record.json").read_text())
    assert rec["status"] == "failed" and "DataMissing" in rec["reason"]


def test_corrupt_checkpoint_is_reported_not_crashed(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    rec = run(TrainConfig(dataset="digits", epochs=1, out=str(tmp_path)))
    assert rec.status == "failed" and "delete it to restart" in rec.reason


def test_two_stage_trains_the_second_stage(tmp_path):
    rec = run(TrainConfig(dataset="digits", epochs=2, two_stage=True, stage2_epochs=2,
                          stage2_width=64, out=str(tmp_path)))
    assert rec.status == "finished" and len(rec.stage2["history"]) == 2
    assert load_torch(tmp_path / "model.pt")["stage2"] is not None


def test_real_mnist_test_files_train_one_epoch(mnist_root, tmp_path):
    rec = run(TrainConfig(dataset="mnist", data_root=str(mnist_root), data_split="test_only",
                          epochs=1, out=str(tmp_path)))
    assert rec.status == "finished", rec.reason
    assert rec.data["n_train"] == 8000 and rec.metrics["recon_mse"]["value"] < 0.2


def test_cost_is_in_the_record_and_counted_by_torch(tmp_path):
    cfg = TrainConfig(dataset="digits", epochs=2, two_stage=True, stage2_epochs=1, stage2_width=64,
                      stage2_depth=2, fid=False, eval_images=100, out=str(tmp_path))
    rec = run(cfg)
    cost = rec.cost
    assert cost["device"] == "cpu" and cost["train_images"] == 2 * 15 * 100  # 1,500 images, batch 100
    assert cost["train_flops"] == cost["flops_per_train_image"] * cost["train_images"] > 0
    assert cost["train_codes_stage2"] == 15 * 100 and cost["train_seconds_stage2"] > 0
    # the second stage is an MLP: 2 FLOPs per weight forward, twice that backward (gradients of the
    # weights and of the layer input), less the first layer's input gradient, which nothing needs
    linear = [m for m in build_stage2(resolve(cfg, (1, 8, 8))).modules() if isinstance(m, torch.nn.Linear)]
    weights = sum(m.in_features * m.out_features for m in linear)
    assert 4 * weights <= cost["flops_per_train_code_stage2"] <= 6 * weights
