"""KID and precision/recall between two feature sets, through torch-fidelity's own functions.

Both take the features FID already extracts (Inception pool features, vaes/evaluation/fid.py) or the
domain classifier's (vaes/evaluation/classifier.py), so no image is run through a network twice.

- KID (Binkowski et al., ICLR 2018, https://arxiv.org/abs/1801.01401): the unbiased squared
  MMD under the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets
  of ``subset_size`` images of each set. Unlike FID it has no bias at small image counts, and
  the subsets give a spread. The subset size must be below the image count: at equal sizes every
  subset is the whole set, every subset's value is the same, and the spread is a silent 0.
- Precision and recall (Kynkaanniemi et al., NeurIPS 2019, https://arxiv.org/abs/1904.06991):
  the fraction of generated images inside the k-nearest-neighbour balls of the real ones
  (precision: low for blur or artefacts), and of real images inside the generated ones' balls
  (recall: low for collapse). The balls' radii shrink as the image count grows, so both
  numbers depend on the count: compare them only between rows with the same number of images
  (within one table), never with a paper's figures at 50,000 images.
"""
from __future__ import annotations

import torch
from threadpoolctl import threadpool_limits

KID_SUBSETS = 100            # torch-fidelity's default and Binkowski et al.'s
KID_MAX_SUBSET_SIZE = 1000   # torch-fidelity's default subset size, the cap at large counts
PRC_NEIGHBOURHOOD = 3        # k of Kynkaanniemi et al. (their default, and torch-fidelity's)
MIN_IMAGES = PRC_NEIGHBOURHOOD + 1  # the k-th neighbour other than itself; also 2 per KID subset
SEED = 2020                  # torch-fidelity's default rng_seed: subsets are the same on every call


def kid_subset_size(n: int) -> int:
    """min(1000, n // 2): always strictly below ``n``, so subsets differ and the spread means something."""
    return min(KID_MAX_SUBSET_SIZE, n // 2)


def _as_tensor(features) -> torch.Tensor:
    """float64 (N, D) tensor of numpy or torch features (float64: the kernel sums lose digits in float32)."""
    return torch.as_tensor(features).double().cpu()


def _too_few(fake: torch.Tensor, real: torch.Tensor) -> str | None:
    """Why the sets are too small, or None."""
    n = min(len(fake), len(real))
    if n >= MIN_IMAGES:
        return None
    return (f"needs at least {MIN_IMAGES} images in each set (k = {PRC_NEIGHBOURHOOD} neighbours, "
            f"KID subsets of n // 2 >= 2), got {len(fake)} generated and {len(real)} real")


def kid(fake, real, *, subsets: int = KID_SUBSETS, seed: int = SEED) -> dict:
    """KID of feature sets ``fake`` and ``real`` (each (N, D)): {value (the mean over subsets),
    std (their spread), subset_size, subsets, n_images (of ``fake``)}; value None and a
    ``missing`` reason when a set has fewer than :data:`MIN_IMAGES` features."""
    from torch_fidelity.metric_kid import (KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD,  # heavy (torchvision.models,
                                           kid_features_to_metric)  # about 1.5 s); only where KID runs
    fake, real = _as_tensor(fake), _as_tensor(real)
    size = kid_subset_size(min(len(fake), len(real)))
    result = {"subset_size": size, "subsets": subsets, "n_images": len(fake)}
    reason = _too_few(fake, real)
    if reason is not None:
        return {"value": None, "std": None, "missing": f"KID {reason}", **result}
    # one BLAS thread: the kernels are small (at most 1000 x 1000), and a BLAS pool spinning beside
    # torch's threads made each call 10x slower on 2 cores (1.2 s against 0.11 s for 300 images);
    # it also makes the value independent of the machine's core count
    with threadpool_limits(limits=1, user_api="blas"):
        out = kid_features_to_metric(fake, real, kid_subsets=subsets, kid_subset_size=size, rng_seed=seed,
                                     verbose=False)
    return {"value": out[KEY_METRIC_KID_MEAN], "std": out[KEY_METRIC_KID_STD], **result}


def precision_recall(fake, real, *, k: int = PRC_NEIGHBOURHOOD) -> dict:
    """Precision and recall of generated features ``fake`` against ``real`` with ``k`` nearest
    neighbours: {precision, recall, k, n_images (of ``fake``)}. Both depend on the image count
    (see the module's docstring): compare them only at equal counts."""
    from torch_fidelity.metric_prc import (KEY_METRIC_PRECISION, KEY_METRIC_RECALL,  # heavy (torchvision.models,
                                           prc_features_to_metric)  # about 1.5 s); only where it runs
    fake, real = _as_tensor(fake), _as_tensor(real)
    result = {"k": k, "n_images": len(fake)}
    reason = _too_few(fake, real)
    if reason is not None:
        return {"precision": None, "recall": None, "missing": f"precision/recall {reason}", **result}
    # torch-fidelity's convention: the first set is the generated one, the second the real one.
    out = prc_features_to_metric(fake, real, prc_neighborhood=k, verbose=False)
    return {"precision": out[KEY_METRIC_PRECISION], "recall": out[KEY_METRIC_RECALL], **result}


def missing(reason: str) -> tuple[dict, dict]:
    """The KID and precision/recall records of a set whose features could not be had (no weights)."""
    return ({"value": None, "std": None, "missing": reason},
            {"precision": None, "recall": None, "missing": reason})
