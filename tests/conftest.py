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
def _seed_and_threads():
    torch.manual_seed(0)
    yield
