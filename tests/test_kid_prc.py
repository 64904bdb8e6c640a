"""KID and precision/recall (torch-fidelity's own functions) on the features FID extracts and on
the classifier's, the real features in the reference cache, and Inception Score refused by name."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch_fidelity.metric_kid import kid_features_to_metric

from tests.conftest import REPO, compute_fids, digit_images, noisy
from tests.test_fid import StandIn
from vaes.evaluation import feature_metrics, fid, fid_weights
from vaes.config import TrainConfig
from vaes.data import load_dataset
from vaes.evaluation.quality import classifier_metrics, fid_metrics

KEY = {"dataset": "digits", "split": "test", "n": 60}


def gaussian(n: int, shift: float = 0.0, seed: int = 0, d: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


# ----------------------------------------------------------------------------- KID


def test_kid_subset_size_is_below_the_count_and_gives_a_spread():
    fake, real = gaussian(60, 0.3, seed=1), gaussian(60, seed=2)
    # torch-fidelity at subset size = image count: every subset is the whole set, a spread of 0
    same = kid_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real), kid_subsets=20,
                                  kid_subset_size=60, verbose=False)
    assert same["kernel_inception_distance_std"] < 1e-12 * abs(same["kernel_inception_distance_mean"])
    ours = feature_metrics.kid(fake, real)
    assert ours["subset_size"] == 30 < 60 and ours["subsets"] == 100 and ours["n_images"] == 60
    assert ours["std"] > 0.01 * abs(ours["value"])
    assert all(feature_metrics.kid_subset_size(n) < n for n in range(2, 5000))
    assert feature_metrics.kid_subset_size(50_000) == 1000


def test_kid_is_near_zero_for_one_distribution_and_grows_with_the_shift():
    real = gaussian(200, seed=0)
    values = [feature_metrics.kid(gaussian(200, shift, seed=1), real)["value"] for shift in (0.0, 0.2, 0.5)]
    near, small, large = values
    assert abs(near) < 3 * feature_metrics.kid(gaussian(200, seed=1), real)["std"]  # unbiased: 0 within spread
    assert near < small < large


def test_too_few_images_are_missing_with_the_reason():
    k, p = feature_metrics.kid(gaussian(3), gaussian(50)), feature_metrics.precision_recall(gaussian(3), gaussian(50))
    assert k["value"] is None and "at least 4" in k["missing"] and "got 3 generated" in k["missing"]
    assert p["precision"] is None and p["recall"] is None and "at least 4" in p["missing"]


# ----------------------------------------------------------------------------- precision / recall


def test_precision_falls_for_blur_and_recall_for_collapse():
    real = gaussian(200, seed=0)
    collapsed = real[:5].repeat(40, axis=0) + 0.01 * gaussian(200, seed=3)  # five real modes only
    off = gaussian(200, 3.0, seed=4)  # off the data, as blurred images are
    good = feature_metrics.precision_recall(gaussian(200, seed=5), real)
    c, o = feature_metrics.precision_recall(collapsed, real), feature_metrics.precision_recall(off, real)
    assert good["k"] == 3 and good["n_images"] == 200
    assert good["precision"] > 0.6 and good["recall"] > 0.6
    assert c["precision"] > 0.9 and c["recall"] < 0.2
    assert o["precision"] < 0.1


# ----------------------------------------------------------------------------- on FID's features


def test_fid_unchanged_and_kid_prc_on_the_same_cached_features(tmp_path):
    extractor, real = StandIn(dim=32), digit_images(60)
    fakes = {"noisy": noisy(digit_images(60, seed=1), 40), "same": digit_images(60, seed=2)}
    fids = compute_fids(fakes, KEY, lambda: real, extractor=extractor, cache_dir=tmp_path / "a")
    first = fid.compute_inception_metrics(fakes, KEY, lambda: real, extractor=extractor, cache_dir=tmp_path / "b")
    again = fid.compute_inception_metrics(fakes, KEY, lambda: pytest.fail("real images loaded on a cache hit"),
                                          extractor=extractor, cache_dir=tmp_path / "b")
    for name in fakes:
        assert first[name]["fid"] == fids[name]  # FID as before, every field
        assert first[name]["kid"] == again[name]["kid"] and first[name]["prc"] == again[name]["prc"]
        assert first[name]["kid"]["subset_size"] == 30 and first[name]["prc"]["n_images"] == 60
    assert first["same"]["kid"]["value"] < first["noisy"]["kid"]["value"]
    (path,) = (tmp_path / "b").glob("*.npz")
    with np.load(path) as stored:
        assert stored["features"].shape == (60, 32)


def test_a_cache_file_without_features_is_made_again(tmp_path):
    extractor, real = StandIn(dim=16), digit_images(60)
    first = fid.compute_inception_metrics({"x": real}, KEY, lambda: real, extractor=extractor, cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.npz")
    with np.load(path) as stored:  # what the cache held before KID: mu, sigma and the key
        old = {k: stored[k] for k in ("mu", "sigma", "key")}
    with open(path, "wb") as handle:
        np.savez(handle, **old)
    with pytest.warns(UserWarning, match="cannot be read.*computing them again"):
        again = fid.compute_inception_metrics({"x": real}, KEY, lambda: real, extractor=extractor, cache_dir=tmp_path)
    assert again == first
    with np.load(path) as stored:
        assert "features" in stored


def test_without_weights_kid_and_prc_are_missing_with_fids_reason(tmp_path):
    cfg = TrainConfig(dataset="digits", eval_images=20, fid_weights=str(tmp_path / "absent.pth"))
    real = load_dataset("digits").test[:20]
    m = fid_metrics(cfg, {"samples": real, "recon": real}, real, device="cpu")
    for k in ("samples", "recon"):
        reason = m[f"fid_{k}"]["missing"]
        assert "absent.pth" in reason
        assert m[f"kid_{k}"] == {"value": None, "std": None, "missing": reason}
        assert m[f"prc_{k}"] == {"precision": None, "recall": None, "missing": reason}


# ----------------------------------------------------------------------------- on the classifier's features


def test_classifier_metrics_give_cfd_ckid_cprc_for_every_set(tmp_path):
    data = load_dataset("digits")
    real = data.test[:100]
    images = {"samples": noisy(data.test[100:200], 80), "recon": data.test[150:250]}
    m = classifier_metrics(TrainConfig(dataset="digits", cache_dir=str(tmp_path)), data, images, real)
    for k in images:
        assert m[f"cfd_{k}"] > 0
        assert m[f"ckid_{k}"]["subset_size"] == 50 and m[f"ckid_{k}"]["std"] > 0
        assert 0 <= m[f"cprc_{k}"]["precision"] <= 1 and m[f"cprc_{k}"]["k"] == 3
    assert m["ckid_recon"]["value"] < m["ckid_samples"]["value"]
    assert m["cprc_recon"]["precision"] > m["cprc_samples"]["precision"]


# ----------------------------------------------------------------------------- Inception Score


@pytest.mark.inception
def test_inception_score_is_refused_by_name_with_the_package_weights():
    with pytest.raises(fid_weights.InceptionScoreUnavailable, match=r"inception_score.*classifier layer is zero.*"
                       r"weights-inception-2015-12-05-6726825d\.pth"):
        fid.inception_score(digit_images(10))


def test_evaluate_cli_refuses_inception_score_by_name(tmp_path):
    # refused while the arguments are checked, before the run folder is read
    done = subprocess.run([sys.executable, "-m", "vaes.evaluate", str(tmp_path / "run"), "inception_score=true"],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "inception_score" in done.stderr and "classifier layer is zero" in done.stderr
    assert "weights-inception-2015-12-05-6726825d.pth" in done.stderr and "Traceback" not in done.stderr
