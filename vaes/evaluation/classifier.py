"""The offline quality signal: classifier Frechet distance.

Without Inception weights there is no FID. A small conv classifier trained on the data set's
own labels gives a feature space where real images cluster by class; the Frechet distance
between Gaussians fitted to its penultimate-layer features of generated and real images is
the "classifier Frechet distance" (common for MNIST-like data). It is not FID and must never
be labelled so: its values are not comparable to published FIDs.

The classifier is trained once per data set (a few epochs, seconds on a CPU), cached on disk
and loaded with ``torch.load(weights_only=True)``. Its held-out accuracy is kept with it, so
users can check that the feature space means something before trusting the distance.

Images are uint8 tensors N x C x H x W (C = 1 or 3, values 0..255). Labels are a LongTensor N,
or N x F for data with several discrete factors (e.g. shape, scale, position): one head each.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vaes.evaluation.frechet import cache_file, cached, check_images, describe
from vaes.records import cache_root, load_torch, save_torch

log = logging.getLogger(__name__)

# Bump when the architecture or the training recipe changes: old cache files stop matching.
CLASSIFIER_VERSION = 1


class DataClassifier(nn.Module):
    """Conv net for 8x8 to 64x64 grey or colour images; one linear head per label factor.

    Stride-2 convs halve the image until it is about 4x4, so 8x8 digits and 64x64 faces get
    the same 4x4 map before the penultimate layer (``features``, 128-d by default).
    """

    def __init__(self, *, input_shape: tuple[int, int, int], head_sizes: list[int], width: int = 16,
                 feature_dim: int = 128):
        super().__init__()
        channels, height, width_px = input_shape
        self.input_shape = tuple(int(v) for v in input_shape)
        self.head_sizes = [int(k) for k in head_sizes]
        n_down = max(0, math.ceil(math.log2(min(height, width_px) / 4)))
        layers, c = [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()], width
        for _ in range(n_down):
            c_out = min(4 * width, 2 * c)  # cap the width: speed matters more than capacity here
            layers += [nn.Conv2d(c, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
            c = c_out
        layers.append(nn.AdaptiveAvgPool2d(4))  # exact 4x4 for 8/28/32/64; odd sizes pool to it
        # The features are the penultimate layer before its ReLU: dead units would make the
        # covariance singular and drop information the Frechet distance could use.
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(16 * c, feature_dim))
        self.heads = nn.ModuleList(
            nn.Sequential(nn.ReLU(), nn.Linear(feature_dim, k)) for k in self.head_sizes)
        self.holdout_accuracy: list[float] = []  # one per head, set by training or loading

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features (B, feature_dim) of uint8 images (B, C, H, W)."""
        _check_images(images, self.input_shape)
        return self.body(images.float() / 255.0)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every head, each (B, classes of that factor)."""
        h = self.features(images)
        return [head(h) for head in self.heads]


def _check_images(images: torch.Tensor, shape: tuple[int, int, int] | None = None) -> None:
    """Raise unless ``images`` is uint8 N x C x H x W (of ``shape`` C x H x W when given)."""
    check_images(images, "the classifier", shape)


def _as_factor_labels(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Labels as a LongTensor (N, F) of non-negative classes; (N,) becomes (N, 1)."""
    if not torch.is_tensor(labels) or labels.dtype != torch.long or labels.ndim not in (1, 2):
        raise TypeError(f"labels must be a LongTensor N or N x F (discrete factors), got {describe(labels)}")
    labels = labels.reshape(labels.shape[0], -1)
    if labels.shape[0] != n:
        raise ValueError(f"{labels.shape[0]} labels for {n} images; they must match one to one")
    if labels.numel() and labels.min() < 0:
        raise ValueError("labels must be class indices >= 0; remap negative values first")
    return labels


# ----------------------------------------------------------------------------- training


def train_classifier(images: torch.Tensor, labels: torch.Tensor, *, seed: int = 0, epochs: int | None = None,
                     holdout: float = 0.2, batch_size: int = 64, lr: float = 2e-3,
                     device="cpu") -> DataClassifier:
    """Train a DataClassifier on ``(images, labels)``; deterministic given ``seed``.

    A random ``holdout`` fraction is kept out of training; accuracy on it (one number per label
    factor) is stored in ``holdout_accuracy``. ``epochs=None`` picks about 400 optimiser steps
    (at least 3 epochs), enough for digits and MNIST in seconds on a CPU.
    """
    _check_images(images)
    labels = _as_factor_labels(labels, images.shape[0])
    n_holdout = max(1, round(holdout * images.shape[0]))
    if images.shape[0] - n_holdout < batch_size:
        raise ValueError(f"{images.shape[0]} images are too few to train a classifier; "
                         f"need at least {batch_size + n_holdout}")
    # One generator for the split and the batch order, so a seed fixes both (given thread count).
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(images.shape[0], generator=generator)
    test_idx, train_idx = order[:n_holdout], order[n_holdout:]
    if epochs is None:
        epochs = max(3, math.ceil(400 / math.ceil(len(train_idx) / batch_size)))
    head_sizes = (labels.max(dim=0).values + 1).tolist()  # classes per factor, from the data
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the weight init; the caller's global RNG is left untouched
        model = DataClassifier(input_shape=tuple(images.shape[1:]), head_sizes=head_sizes).to(device)
    images, labels = images.to(device), labels.to(device)
    _fit(model, images[train_idx.to(device)], labels[train_idx.to(device)], epochs, batch_size, lr, generator)
    model.holdout_accuracy = _accuracy(model, images[test_idx.to(device)], labels[test_idx.to(device)])
    log.info("classifier trained: held-out accuracy per factor %s", model.holdout_accuracy)
    return model.eval()


def _fit(model: DataClassifier, images, labels, epochs: int, batch_size: int, lr: float,
         generator: torch.Generator) -> None:
    """Adam with a cosine learning rate; loss = sum of the heads' cross-entropies."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(images.shape[0] / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(images.shape[0], generator=generator).to(images.device)
        for start in range(0, images.shape[0], batch_size):
            idx = order[start:start + batch_size]
            if idx.numel() < 2:  # BatchNorm cannot train on a single image
                continue
            logits = model(images[idx])
            loss = sum(F.cross_entropy(out, labels[idx, f]) for f, out in enumerate(logits))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()


@torch.no_grad()
def _accuracy(model: DataClassifier, images, labels, batch_size: int = 1000) -> list[float]:
    """Fraction of correct predictions per head."""
    correct = torch.zeros(len(model.heads), dtype=torch.long)
    for start in range(0, images.shape[0], batch_size):
        logits = model(images[start:start + batch_size])
        for f, out in enumerate(logits):
            correct[f] += (out.argmax(1) == labels[start:start + batch_size, f]).sum().cpu()
    return (correct.double() / images.shape[0]).tolist()


# ----------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """Where trained classifiers live: $VAEBENCH_CACHE_DIR/classifier, else ~/.cache/vaebench/classifier."""
    return cache_root("classifier")


def classifier_cache_path(key: dict, cache_dir) -> Path:
    """The .pt file of a classifier key: a readable prefix, then a hash of the whole key."""
    shape = "x".join(map(str, key["shape"]))
    return cache_file(cache_dir, key, f"{key['dataset']}-{shape}-n{key['n']}", ".pt")


def load_or_train_classifier(images: torch.Tensor, labels: torch.Tensor, *, dataset: str, cache_dir=None,
                             seed: int = 0, epochs: int | None = None, device="cpu") -> DataClassifier:
    """The classifier of ``dataset``: loaded from ``cache_dir`` if trained before, else trained and saved.

    The cache key is the data set's name, image shape, number of images, seed, epochs, torch's
    threads (its weights differ in their last bits at another count, and so would every CFD) and
    CLASSIFIER_VERSION; the file is written atomically.
    """
    _check_images(images)
    key = {"dataset": dataset, "shape": list(images.shape[1:]), "n": int(images.shape[0]),
           "seed": seed, "epochs": epochs, "threads": torch.get_num_threads(), "version": CLASSIFIER_VERSION}
    path = classifier_cache_path(key, default_cache_dir() if cache_dir is None else cache_dir)

    def save(path: Path, model: DataClassifier) -> None:
        save_torch(path, {"key": key, "input_shape": list(model.input_shape), "head_sizes": model.head_sizes,
                          "holdout_accuracy": model.holdout_accuracy,
                          "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}})

    return cached(path, lambda p: _load(p, key, device),
                  lambda: train_classifier(images, labels, seed=seed, epochs=epochs, device=device),
                  save, "classifier", "training it again")


def _load(path: Path, key: dict, device) -> DataClassifier:
    """Rebuild a cached classifier, checking that the file was saved for ``key``."""
    saved = load_torch(path)
    if saved["key"] != key:
        raise RuntimeError(f"cached classifier {path} was saved for {saved['key']}, not {key}; "
                           "delete the file to retrain")
    model = DataClassifier(input_shape=tuple(saved["input_shape"]), head_sizes=saved["head_sizes"])
    model.load_state_dict(saved["state_dict"])
    model.holdout_accuracy = list(saved["holdout_accuracy"])
    log.info("classifier loaded from %s: held-out accuracy per factor %s", path, model.holdout_accuracy)
    return model.to(device).eval()


# ----------------------------------------------------------------------------- distance


@torch.no_grad()
def classifier_features(images: torch.Tensor, classifier: DataClassifier, *,
                        batch_size: int = 1000) -> np.ndarray:
    """Penultimate-layer features (N, D) in float64 of uint8 images, in eval mode."""
    _check_images(images, classifier.input_shape)
    classifier.eval()
    device = next(classifier.parameters()).device
    chunks = [classifier.features(images[s:s + batch_size].to(device)).double().cpu().numpy()
              for s in range(0, images.shape[0], batch_size)]
    return np.concatenate(chunks)
