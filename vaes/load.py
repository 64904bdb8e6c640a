"""Trained models from Python: a finished run folder loaded back as a ready-to-use object.

    import vaes
    run = vaes.load_run("runs/demo")                   # or OUT/runs/FOLDER of a suite
    x = run.sample(64)                                 # uint8 (64, C, H, W): two-stage if there is one
    x = run.sample(64, stage=2, sampler="ancestral")   # z = decoder2(u) + gamma_z eps
    mu, logvar = run.encode(images)                    # images uint8 0..255 or float in [0, 1]
    x_hat = run.reconstruct(images)                    # uint8 decode(mu(x))

A folder that cannot be loaded (no record, an unfinished run, missing or damaged weights, a
record another vaebench wrote) raises :class:`RunNotLoadable` saying which file and what to do.
The networks are built by vaes.build's ``build_model`` / ``build_stage2``, as
vaes.evaluate.evaluate_run does, so a loaded run is the model that was trained and evaluated.
"""
from __future__ import annotations

import dataclasses
import shlex
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors

from vaes.build import build_model, build_stage2, dataset_shape, pick_device
from vaes.config import TrainConfig, from_dict
from vaes.data import DataMissing, load_dataset
from vaes.evaluation.quality import generate, reconstruct
from vaes.model import VAE
from vaes.networks import eval_mode
from vaes.records import CorruptCheckpoint, CorruptRecord, NotARecord, Record
from vaes.registry import variant_options
from vaes.store import MODEL, RECORD, RunFolder

SAMPLERS = ("mean", "ancestral")


class RunNotLoadable(ValueError):
    """A run folder that cannot be loaded as a trained model; the message says why and the fix."""


# ---- the loaded run ---------------------------------------------------------------------

class TrainedRun:
    """A finished run's models on one device, in eval mode, with the record they came from.

    Attributes: ``record`` (record.json, a :class:`vaes.records.Record`), ``config`` (its TrainConfig), ``model``
    (the first-stage VAE), ``stage2`` (the second-stage VAE or None), ``shape`` (C, H, W),
    ``device`` and ``run_dir``.
    """

    def __init__(self, run_dir: Path, record: Record, config: TrainConfig, model: VAE,
                 stage2: VAE | None, shape: tuple[int, int, int], device: torch.device):
        self.run_dir, self.record, self.config = run_dir, record, config
        self.model, self.stage2, self.shape, self.device = model, stage2, shape, device

    def __repr__(self) -> str:
        stages = "two-stage" if self.stage2 is not None else "one stage"
        return (f"TrainedRun({str(self.run_dir)!r}, variant={self.config.variant!r}, "
                f"dataset={self.config.dataset!r}, shape={self.shape}, {stages}, device={self.device})")

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    # ---- sampling ----

    def sample(self, n: int, stage: int | None = None, seed: int = 0, sampler: str = "mean") -> torch.Tensor:
        """n uint8 images (n, C, H, W) on the CPU, the same for the same arguments.

        stage 1 decodes z ~ N(0, I); stage 2 (the default where there is a second stage) draws
        u ~ N(0, I) and z = decoder2(u) (``sampler="mean"``, Asperti & Trentin's code, the
        record's ``*_stage2``) or z = decoder2(u) + gamma_z eps (``"ancestral"``, Dai & Wipf's,
        ``*_stage2_ancestral``). The sampler only matters for stage 2.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int (number of images), got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        if stage is None:
            stage = 2 if self.stage2 is not None else 1
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 (the prior), 2 (the second stage) or None, got {stage!r}")
        if stage == 2 and self.stage2 is None:
            raise ValueError(f"stage=2 but the run in {self.run_dir} has no second stage "
                             f"(it was trained with two_stage={self.config.two_stage}); use stage=1")
        return generate(self.model, self.stage2 if stage == 2 else None, n, seed=seed,
                        stage2_noise=sampler == "ancestral", bn_eval=self.config.bn_eval)

    # ---- encoder and decoder ----

    @torch.no_grad()
    def encode(self, x: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(z|x), each (N, latent_dim), on the run's device."""
        x = self._as_uint8_scale(x)
        with eval_mode(self.model, self.config.bn_eval):  # the BatchNorm statistics evaluation used
            return self.model.encode(x.to(self.device).float().div_(255.0))  # .float() copies uint8

    @torch.no_grad()
    def decode(self, z: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Float images (N, C, H, W) in [0, 1] on the run's device: the mean of p(x|z)."""
        if isinstance(z, np.ndarray):
            z = torch.from_numpy(z)
        if not isinstance(z, torch.Tensor):
            raise ValueError(f"z must be a torch tensor (N, {self.latent_dim}), got {type(z).__name__}")
        if not z.is_floating_point():
            raise ValueError(f"z must be a float tensor (N, {self.latent_dim}), got dtype {z.dtype}")
        if z.dim() != 2 or z.shape[1] != self.latent_dim or len(z) == 0:
            raise ValueError(f"z must have shape (N, {self.latent_dim}) with N >= 1 for this run, "
                             f"got {tuple(z.shape)}")
        with eval_mode(self.model, self.config.bn_eval):
            return self.model.decode(z.to(self.device, torch.float32))

    def reconstruct(self, x: torch.Tensor | np.ndarray, sample: bool = False, seed: int = 0) -> torch.Tensor:
        """uint8 reconstructions (N, C, H, W) on the CPU: decode(mu(x)), or with ``sample``
        decode(z) of one z ~ q(z|x) drawn with ``seed`` (as both originals' reconstruct)."""
        # evaluate.reconstruct divides by 255; a float image times 255 goes back to itself
        # exactly for every u / 255, so uint8 and float inputs give the same reconstructions
        return reconstruct(self.model, self._as_uint8_scale(x), seed=seed if sample else None,
                           bn_eval=self.config.bn_eval)

    def _as_uint8_scale(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Checked images on the 0..255 scale: uint8 as they are, floats times 255 as a new
        float32 tensor (still on their own device; the caller's tensor is never changed)."""
        want = f"images of shape (N, {', '.join(map(str, self.shape))}), uint8 0..255 or float in [0, 1]"
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"expected {want}; got {type(x).__name__}")
        if x.dim() != 4 or tuple(x.shape[1:]) != self.shape or len(x) == 0:
            raise ValueError(f"expected {want} with N >= 1; got shape {tuple(x.shape)}")
        if x.dtype == torch.uint8:
            return x
        if not x.is_floating_point():
            raise ValueError(f"expected {want}; got dtype {x.dtype}")
        x = x.float()
        if not bool(((x >= 0) & (x <= 1)).all()):  # NaN fails too
            raise ValueError(f"expected {want}; got float values in [{float(x.min()):.4g}, "
                             f"{float(x.max()):.4g}] (NaN or out of range); divide uint8 images by 255")
        return x * 255


# ---- loading --------------------------------------------------------------------------------

def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> TrainedRun:
    """Load the finished run in ``run_dir`` (record.json and model.pt, or a folder written by
    python -m vaes.export: record.json and *.safetensors) onto ``device``
    ('cpu', 'cuda', 'auto' or a torch.device); raises :class:`RunNotLoadable` otherwise."""
    try:  # a bad device fails before any file is read
        device = pick_device(device) if isinstance(device, str) else torch.device(device)
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"device={device!r}: {e}") from None
    run_dir = Path(run_dir)
    folder = RunFolder(run_dir)
    record = _read_record(folder)
    status = record.status
    if status != "finished":
        raise RunNotLoadable(_not_finished(run_dir, record))
    cfg = _config(run_dir, record)
    # a folder written by python -m vaes.export holds safetensors instead of model.pt
    exported = not folder.model_path.exists() and (run_dir / "model.safetensors").is_file()
    weights_path = run_dir / "model.safetensors" if exported else folder.model_path
    if not weights_path.is_file():
        raise RunNotLoadable(
            f"{run_dir}: {RECORD} says the run finished but {weights_path} is missing (results/ commits "
            f"records without weights; was the folder copied without it?). Copy {MODEL} from where the run "
            f"was trained, or train it again: delete {folder.record_path} and run: "
            f"{_rerun_command(record, run_dir)}")
    retrain = (f"The weights are lost; to train the run again, delete {weights_path} and "
               f"{folder.record_path} and run: {_rerun_command(record, run_dir)}")
    try:
        weights = _exported_weights(run_dir, cfg.two_stage) if exported else folder.load_model()
    except CorruptCheckpoint as e:
        cause = e.__context__  # load_torch's message says 'delete it to restart', wrong for a finished run
        why = f"{type(cause).__name__}: {str(cause)[:200]}" if cause is not None else str(e)
        raise RunNotLoadable(f"{weights_path} is damaged (truncated or not a torch file: {why}). {retrain}") from None
    if not isinstance(weights, dict) or "model" not in weights:
        raise RunNotLoadable(f"{weights_path} is a torch file but not vaebench's model.pt (a dict with "
                             f"'model' and 'stage2' state dicts; got {type(weights).__name__}"
                             f"{' with keys ' + ', '.join(map(str, weights)) if isinstance(weights, dict) else ''}). "
                             f"{retrain}")
    shape = tuple((record.data or {}).get("shape") or ()) or dataset_shape(cfg)
    if shape is None:  # npz records written before the data section: the images decide
        try:
            shape = load_dataset(cfg.dataset, cfg.data_root, data_split=cfg.data_split, image_size=cfg.image_size).shape
        except DataMissing as e:
            raise RunNotLoadable(f"{run_dir}: its record names no image shape and the data it was trained on "
                                 f"cannot be read to learn it ({e})") from None
    shape = tuple(int(s) for s in shape)
    model = _with_weights(build_model(cfg, shape), weights["model"], "first stage", weights_path, record)
    stage2 = None
    if weights.get("stage2") is not None:
        stage2 = _with_weights(build_stage2(cfg), weights["stage2"], "second stage", weights_path, record)
        stage2 = stage2.to(device).eval()
    return TrainedRun(run_dir, record, cfg, model.to(device).eval(), stage2, shape, device)


def _exported_weights(run_dir: Path, two_stage: bool) -> dict:
    """{'model': state dict, 'stage2': state dict or None} from an exported folder's safetensors."""
    if two_stage and not (run_dir / "stage2.safetensors").is_file():
        raise RunNotLoadable(f"{run_dir}: the run is two-stage but stage2.safetensors is missing; "
                             f"copy the whole exported folder, or export the run again")
    found = {}
    for key, name in (("model", "model.safetensors"), ("stage2", "stage2.safetensors")):
        path = run_dir / name
        try:
            found[key] = load_safetensors(path) if path.is_file() else None
        except (SafetensorError, OSError) as e:
            raise RunNotLoadable(f"{path} cannot be read as safetensors ({type(e).__name__}: {str(e)[:200]}): it "
                                 f"was cut short or is another file; export the run again") from None
    return found


def _read_record(folder: RunFolder) -> Record:
    run_dir, path = folder.path, folder.record_path
    if not run_dir.is_dir():
        raise RunNotLoadable(f"{run_dir} is not a folder; pass a run folder (the out= of python -m vaes.train, "
                             f"or OUT/runs/FOLDER of a suite)")
    try:
        record = folder.read()
    except NotARecord as e:
        raise RunNotLoadable(f"{e}; pass the folder of a run trained with python -m vaes.train") from None
    except CorruptRecord as e:
        raise RunNotLoadable(f"{path} cannot be read as JSON ({e}); it is damaged: "
                             f"train the run again into a fresh folder") from None
    except OSError as e:
        raise RunNotLoadable(f"{path} cannot be read ({type(e).__name__}: {e})") from None
    if record is None:
        raise RunNotLoadable(f"{run_dir} has no {RECORD}, so it is not a vaebench run folder; pass the "
                             f"out= of python -m vaes.train ... (or OUT/runs/FOLDER of a suite), or train "
                             f"one there first")
    return record


def _not_finished(run_dir: Path, record: Record) -> str:
    status, reason = record.status, record.reason
    head = f"{run_dir} holds a run that is not finished ({RECORD} status {status!r}" + \
           (f", reason: {reason})" if reason else ")") + "; only finished runs have final weights. "
    if record.meta.get("suite"):
        suite_cmd = _rerun_command(record, run_dir)
        if status == "failed":
            return head + f"Fix the reason, then run its suite again with --retry-failed: {suite_cmd} --retry-failed"
        return head + (f"If its process is still running, wait for it; otherwise run its suite again, which "
                       f"resumes it from its checkpoint: {suite_cmd}")
    cmd = _train_command(record, run_dir)
    if status == "failed":
        return head + f"Fix the reason, then run it again (it resumes from its last checkpoint): {cmd}"
    return head + (f"If its process is still running, wait for it; otherwise the same command resumes it "
                   f"from its checkpoint: {cmd}")


def _rerun_command(record: Record, run_dir: Path) -> str:
    """The command that trains (or resumes) the run: its suite's, or vaes.train's."""
    if record.meta.get("suite"):  # suite folders are OUT/runs/FOLDER; the suite keeps its labels
        suite_out = RunFolder(run_dir).suite_out
        out = shlex.quote(str(suite_out)) if suite_out is not None else "OUT"
        return f"python -m benchmarks.run --suite {shlex.quote(str(record.meta['suite']))} --out {out}"
    return _train_command(record, run_dir)


def _train_command(record: Record, run_dir: Path) -> str:
    """A python -m vaes.train command for the record's config: the fields that differ from the
    defaults (a resolved config resolves to itself, so it trains or resumes the same run)."""
    config = record.config
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.name != "options"}
    pairs = [(k, v) for k, v in config.items() if k in defaults and k != "out" and v != defaults[k]]
    try:
        opt_defaults = {f.name: f.default for f in dataclasses.fields(variant_options(config.get("variant", TrainConfig.variant)))}
    except (KeyError, ValueError, TypeError):
        opt_defaults = {}
    pairs += [(k, v) for k, v in (config.get("options") or {}).items() if opt_defaults.get(k, object()) != v]
    fmt = {True: "true", False: "false", None: "none"}
    args = [f"{k}={fmt[v] if v is None or isinstance(v, bool) else v}" for k, v in pairs] + [f"out={run_dir}"]
    return "python -m vaes.train " + " ".join(shlex.quote(a) for a in args)


def _written_by(record: Record) -> str:
    """Which vaebench wrote the record and which is loading it."""
    try:
        here = version("vaebench")
    except PackageNotFoundError:
        here = "unknown (not installed)"
    theirs = (record.versions or {}).get("vaebench") or "unknown"
    commit = record.git_commit
    return (f"written by vaebench {theirs}" + (f" at commit {commit}" if commit else "")
            + f"; this is vaebench {here}" + ("; the version number is not bumped for every change"
                                              if theirs == here else ""))


def _use_the_old_version(record: Record) -> str:
    commit = (record.git_commit or "").split("+")[0]
    where = f"check out commit {commit} and pip install -e ." if commit else "install the vaebench it names"
    return f"Load it with the vaebench that trained it ({where}), or retrain the run with this version."


def _config(run_dir: Path, record: Record) -> TrainConfig:
    """The record's TrainConfig. Records store no format number, so the config's keys are the
    compatibility check: a key TrainConfig lacks was written by a newer or other vaebench
    (a missing key is an older record and takes its default)."""
    path = RunFolder(run_dir).record_path
    config = record.config
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise RunNotLoadable(
            f"{path} comes from an incompatible vaebench version: its config has key(s) "
            f"{', '.join(unknown)} that this version's TrainConfig does not know ({_written_by(record)}). "
            + _use_the_old_version(record))
    try:
        return from_dict(config)
    except (TypeError, ValueError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        raise RunNotLoadable(
            f"{path}: its config is not valid for this vaebench ({msg}; {_written_by(record)}). A variant "
            f"or data set from a plugin must be imported (registered) before loading. "
            + _use_the_old_version(record)) from None


def _with_weights(net: VAE, state: Any, what: str, path: Path, record: Record) -> VAE:
    """``net`` with ``state`` loaded; a mismatch means the run's networks are not the ones this
    vaebench builds for its config."""
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise RunNotLoadable(
            f"{path}: the {what}'s weights do not fit the network this vaebench builds for the run's config "
            f"({' '.join(str(e).split())[:300]}; {_written_by(record)}). " + _use_the_old_version(record)) from None
    return net


__all__ = ["RunNotLoadable", "TrainedRun", "load_run", "SAMPLERS"]
