"""The Frechet distance between Gaussians fitted to features: FID's and the classifier distance's.

d^2 = |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)) (Dowson & Landau 1982;
Heusel et al., NeurIPS 2017, for Inception features). Written here rather than taken from
pytorch-fid, whose ``calculate_frechet_distance`` (0.3.0) is the same formula but calls
``scipy.linalg.sqrtm(..., disp=False)``, deprecated and to be removed in SciPy 1.18 (it warns
with SciPy 1.17.1, installed here), and prints to stdout when it retries. This module
adds the exact n x n path for fewer samples than dimensions (:func:`frechet_distance_to_features`).

Below both feature distances (FID in vaes/evaluation/fid.py, the classifier distance in
vaes/evaluation/classifier.py) it also holds what they share: the check of the images they consume
(:func:`check_images`), the name of a cache file for a key (:func:`cache_file`) and the
load-or-make of a cached value (:func:`cached`: FID's real statistics, the trained
classifier), written through the one atomic writer, :func:`vaes.records.atomic_path`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
import zipfile
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import torch
from scipy import linalg

from vaes.records import CorruptCheckpoint

T = TypeVar("T")
# What a cache file cut short or damaged raises when read: a miss, made again. A file that reads
# but was made for another key raises RuntimeError in the loader and stops the run (the message
# says which file to delete), because it means two keys share a name.
DAMAGED = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, CorruptCheckpoint)


def frechet_distance(mu1, sigma1, mu2, sigma2, *, eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    d^2 = |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)). If the matrix square
    root fails (nearly singular covariances, e.g. fewer samples than dimensions), ``eps`` is
    added to both diagonals and it is retried; tiny imaginary parts from round-off are dropped,
    large ones raise.
    """
    mu1, mu2 = (np.atleast_1d(np.asarray(m, dtype=np.float64)) for m in (mu1, mu2))
    sigma1, sigma2 = (np.atleast_2d(np.asarray(s, dtype=np.float64)) for s in (sigma1, sigma2))
    if mu1.shape != mu2.shape or mu1.ndim != 1:
        raise ValueError(f"means must be vectors of one length, got shapes {mu1.shape} and {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"covariances must both be {mu1.size}x{mu1.size} to match the means, "
            f"got {sigma1.shape} and {sigma2.shape}")
    # scipy warns on singular products; they are handled here (offset retry, imaginary check).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(mu1.size) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = _drop_round_off_imaginary(covmean)
    diff = mu1 - mu2
    # FID is "squared" already (Heusel et al.): no square root of the total.
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def frechet_distance_to_features(features: np.ndarray, mu2, sigma2) -> float:
    """:func:`frechet_distance` between the Gaussian of ``features`` (N, D) and N(mu2, sigma2).

    The same value, computed without a D x D matrix square root when N <= D: with A the
    centred features, sigma1 = A^T A / (N - 1), and the non-zero eigenvalues of sigma1 sigma2
    are those of the N x N symmetric matrix A sigma2 A^T / (N - 1), so
    tr (sigma1 sigma2)^(1/2) is the sum of their square roots. At D = 2048, scipy's sqrtm
    takes about 8 s on 2 CPU cores; for a few hundred images this takes well under one.
    """
    features = np.asarray(features, dtype=np.float64)
    n = features.shape[0]
    mu2, sigma2 = np.asarray(mu2, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    if n > features.shape[1]:
        return frechet_distance(*feature_statistics(features), mu2, sigma2)
    mu1 = features.mean(axis=0)
    centred = features - mu1
    small = centred @ sigma2 @ centred.T / (n - 1)
    eigenvalues = np.clip(np.linalg.eigvalsh((small + small.T) / 2), 0, None)  # PSD up to round-off
    diff = mu1 - mu2
    trace1 = float((centred * centred).sum() / (n - 1))
    return float(diff @ diff + trace1 + np.trace(sigma2) - 2.0 * np.sqrt(eigenvalues).sum())


def _drop_round_off_imaginary(covmean: np.ndarray) -> np.ndarray:
    """Real part of sqrtm's result; raise if its diagonal is far from real."""
    if not np.iscomplexobj(covmean):
        return covmean
    # Relative to the diagonal's scale: features of large magnitude carry larger round-off.
    scale = max(1.0, float(np.abs(np.diagonal(covmean).real).max()))
    worst = float(np.abs(np.diagonal(covmean).imag).max())
    if worst > 1e-3 * scale:
        raise ValueError(
            f"sqrt(sigma1 sigma2) has an imaginary diagonal part of {worst:.3g} (scale {scale:.3g}): "
            "the covariances are not valid (NaN, not positive semi-definite, or far too few samples)")
    return covmean.real


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of a (N, D) feature matrix, N >= 2."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need a (N, D) feature matrix with N >= 2, got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


# ----------------------------------------------------------------------------- shared by both distances


def describe(value) -> str:
    """'a float32 tensor of shape (4, 3, 8, 8)' or 'a list': for error messages."""
    if torch.is_tensor(value):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def check_images(images, who: str, shape: tuple[int, ...] | None = None) -> None:
    """Raise unless ``images`` is uint8 N x C x H x W (values 0..255), of ``shape`` C x H x W when
    given; ``who`` ("FID", "the classifier") starts the message."""
    if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.ndim != 4:
        raise TypeError(f"{who} needs uint8 images N x C x H x W (values 0..255), got {describe(images)}; "
                        "convert with (x.clamp(0, 1) * 255).round().to(torch.uint8)")
    if shape is not None and tuple(images.shape[1:]) != tuple(shape):
        raise ValueError(f"{who} was made for {'x'.join(map(str, shape))} images, got "
                         f"{'x'.join(map(str, images.shape[1:]))}; train one for this data set")


def cache_file(cache_dir: str | os.PathLike, key: dict, readable: str, suffix: str) -> Path:
    """The cache file of ``key`` in ``cache_dir``: ``readable`` (made file-name safe), then the
    first 16 hex digits of the sha256 of the whole key, then ``suffix``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    prefix = re.sub(r"[^A-Za-z0-9.]+", "-", readable)
    return Path(cache_dir).expanduser() / f"{prefix}-{digest}{suffix}"


def cached(path: Path, load: Callable[[Path], T], make: Callable[[], T], save: Callable[[Path, T], None],
           what: str, redo: str = "making it again") -> T:
    """``load(path)`` if the file is there and readable, else ``make()`` then ``save(path, value)``.
    A damaged file (:data:`DAMAGED`) is a miss, with a warning that names it, ``what`` it held
    and ``redo``, what happens instead."""
    if path.exists():
        try:
            return load(path)
        except DAMAGED as e:
            warnings.warn(f"cached {what} {path} cannot be read ({type(e).__name__}: {e}); {redo}",
                          stacklevel=3)
    value = make()
    save(path, value)
    return value
