"""One run, start to end: data, models, both stages, evaluation, the record. The one entry point.

    record = run(cfg)   # cfg: a vaes.config.TrainConfig; its out= is the run's folder

The command line (``python -m vaes.train``), the suite runner (``benchmarks``) and the sweep
worker (``sweeps``) all call :func:`run`; the loop itself is vaes/fit.py, the run folder is
vaes/store.py. Steps, in order: the folder's status (another run's folder refused, a finished
one returned), the run claimed from other processes, the data loaded, the config resolved
once from the data set's protocol, the first stage and the second (two_stage) fitted, the
weights saved, the run evaluated, the record written.

:func:`run` never raises for a run's own failure: missing data, a NaN loss, running out of
memory or a bug in a variant end in a record with status ``failed``, its reason (and, for a
bug, its traceback), caught in one place. What a caller's own ``on_epoch`` hook raises (an
Optuna pruning decision, say) is the caller's: it passes through, with the record as it
stood on disk.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

from vaes.build import build_model, build_stage2, pick_device, resolve, use_threads
from vaes.config import EVAL_FIELDS, TrainConfig, run_id, to_dict
from vaes.data import DataMissing, ImageData, load_dataset
from vaes.evaluate import evaluate_run
from vaes.evaluation.quality import evaluate_models
from vaes.fit import FitResult, fit
from vaes.evaluation.metrics import gamma_ratio, heldout_metrics, to_float, train_step_flops
from vaes.model import VAE
from vaes.networks import count_parameters, eval_mode
from vaes.records import CorruptCheckpoint, Record
from vaes.stop import StopRequests
from vaes.store import FolderHeld, RunFolder
from vaes.tensorboard import EpochLogger, summary_writer

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)  # a plain kill, and SLURM's warning before a time limit


class _CallerHook:
    """The caller's ``on_epoch`` hook, remembering what it raised: that is the caller's decision
    (an Optuna pruning), not the run's failure, so :func:`run` lets it through unrecorded."""

    def __init__(self, hook: Callable[[dict], None]) -> None:
        self.hook, self.raised = hook, None

    def __call__(self, row: dict) -> None:
        try:
            self.hook(row)
        except Exception as e:
            self.raised = e
            raise


# ---- the run -------------------------------------------------------------------------------

def run(cfg: TrainConfig, *, data: ImageData | None = None, progress: bool | None = None,
        meta: dict | None = None, on_epoch: Callable[[dict], None] | None = None,
        evaluate: bool = True, wait: bool = True) -> Record:
    """Train and evaluate ``cfg`` into ``cfg.out``; its record (finished, interrupted or failed).

    A finished record of the same run is returned as it is, evaluated again where the
    evaluation settings changed; a checkpoint there is resumed; another run's folder is
    refused with :class:`vaes.store.FolderTaken` (raised, nothing written). The run is claimed
    first (vaes.store): a run another live process trains is waited for, saying so on stderr,
    or with ``wait=False`` raises :class:`vaes.store.FolderHeld`. ``data``: the data set, when
    the caller has it loaded (a suite, a sweep worker). ``meta`` (a suite's label, a trial's
    number) is stored in the record. ``on_epoch`` is called after each first-stage epoch.
    ``evaluate=False`` trains only (held-out ELBO and reconstructions, no sample quality).
    """
    folder = RunFolder(cfg.out)
    st = folder.state(cfg)  # FolderTaken before anything is written
    if st.damage is not None:  # left as it is for the user to look at; the message says what to do
        return folder.unwritten(cfg, meta, st.damage)
    if st.status == "finished" and not (evaluate and _changed_settings(cfg, st.record)):
        return st.record
    hook = None if on_epoch is None else _CallerHook(on_epoch)
    record = None
    try:
        with folder.claim(wait=wait):
            st = folder.state(cfg)  # again, as it is now: the process we waited for may have ended it
            if st.damage is not None:
                return folder.unwritten(cfg, meta, st.damage)
            if st.status == "finished":
                return _evaluated_again(cfg, st.record) if evaluate else st.record
            record = folder.start(cfg, meta)
            return _train_and_evaluate(cfg, folder, record, data, progress, hook, evaluate)
    except FolderHeld:
        raise
    except Exception as e:  # noqa: BLE001 -- one broken run must not stop a suite or a study
        if hook is not None and e is hook.raised:
            raise
        return _failed(folder, record or folder.start(cfg, meta), e)


def _train_and_evaluate(cfg: TrainConfig, folder: RunFolder, record: Record, data: ImageData | None,
                        progress: bool | None, on_epoch: Callable[[dict], None] | None, evaluate: bool) -> Record:
    """The run's steps, in order; ends the record finished or interrupted and writes it."""
    out = folder.path
    if data is None:
        data = load_dataset(cfg.dataset, cfg.data_root, download=cfg.download, data_split=cfg.data_split,
                            image_size=cfg.image_size, jpeg_quality=cfg.jpeg_quality)
    cfg = resolve(cfg, data.shape)  # the data set's protocol fills the fields left unset: the one resolution
    train_x = data.train[: cfg.n_train or None]
    record.config, record.run_id = to_dict(cfg), run_id(cfg)
    record.data = {"name": data.name, "shape": list(data.shape), "n_train": len(train_x),
                   "n_heldout": len(data.test), "note": data.note}
    device = pick_device(cfg.device)
    record.timings = {"threads": use_threads(cfg)}  # a new record: the first of its timings
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, data.shape).to(device)
    record.n_params = count_parameters(model)
    record.device = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    train_x = train_x.to(device)  # the whole set lives on the device
    flops = train_step_flops(model, to_float(train_x[: cfg.batch_size])) / min(cfg.batch_size, len(train_x))
    folder.write(record)  # status "running": a killed run is visible
    writer = summary_writer(out) if cfg.tensorboard else None
    with StopRequests(STOP_SIGNALS), contextlib.closing(writer) if writer is not None else contextlib.nullcontext():
        res = _stage1(cfg, folder, model, train_x, record, flops, writer, progress, on_epoch)
        if res.status != "finished":
            return folder.end(record, res.status, res.reason)
        stage2 = None
        if cfg.two_stage:
            stage2, res = _stage2(cfg, folder, model, train_x, record, writer, progress)
            if res.status != "finished":
                return folder.end(record, res.status, "stage 2: " + res.reason)
    folder.save_model(model.state_dict(), None if stage2 is None else stage2.state_dict())
    t0 = time.perf_counter()
    metrics = heldout_metrics(model, data.test.to(device), bn_eval=cfg.bn_eval, train_images=train_x,
                              levels=data.levels)
    record.timings["eval_heldout_seconds"] = time.perf_counter() - t0
    if evaluate:
        metrics.update(evaluate_models(cfg, model, stage2, data, out, timings=record.timings))
    record.set_metrics(metrics)
    record.timings["eval_seconds"] = time.perf_counter() - t0
    return folder.end(record, "finished")


def _stage1(cfg: TrainConfig, folder: RunFolder, model: VAE, train_x: torch.Tensor, record: Record, flops: float, writer,
            progress: bool | None, on_epoch: Callable[[dict], None] | None) -> FitResult:
    """Fit the first stage on the training images (``flops`` per image and step); its history,
    timings and cost into the record. TensorBoard's curves, when on, come before the caller's hook."""
    per_epoch = (len(train_x) // cfg.batch_size) * cfg.batch_size
    hooks = [] if on_epoch is None else [on_epoch]
    if writer is not None:  # curves and a sample grid about ten times a run
        hooks.insert(0, EpochLogger(writer, 1, per_epoch, model, grid_every=max(1, cfg.epochs // 10), seed=cfg.seed))

    def each_epoch(row: dict) -> None:
        for hook in hooks:
            hook(row)
    res = fit(model, lambda e: train_x, epochs=cfg.epochs, lr=cfg.lr, halve_every=cfg.lr_halve_every,
              batch_size=cfg.batch_size, seed=cfg.seed, checkpoint=folder.checkpoint(1),
              checkpoint_every=cfg.checkpoint_every, bf16=cfg.bf16, compile=cfg.compile,
              desc=f"{cfg.variant} {cfg.dataset}", progress=progress, on_epoch=each_epoch if hooks else None)
    record.history = res.history
    record.gamma_ratio = gamma_ratio(res.history)  # 1 once gamma reaches sqrt(MSE)
    record.timings = {**(record.timings or {}), "train_seconds": res.seconds,
                      "train_images_per_second": res.images / max(res.seconds, 1e-9)}
    record.cost = {"device": record.device, "flops_per_train_image": flops, "train_images": res.images,
                   "train_seconds": res.seconds, "train_flops": flops * res.images,
                   "flop_counter": "torch.utils.flop_counter.FlopCounterMode, loss forward + backward"}
    return res


def _stage2(cfg: TrainConfig, folder: RunFolder, model: VAE, train_x: torch.Tensor, record: Record, writer,
            progress: bool | None) -> tuple[VAE, FitResult]:
    """Fit the second stage (:func:`train_stage2`); its history, timings and cost into the record."""
    per_epoch = (len(train_x) // cfg.batch_size) * cfg.batch_size
    log = None if writer is None else EpochLogger(writer, 2, per_epoch)
    stage2, res = train_stage2(cfg, model, train_x, folder.checkpoint(2), progress, on_epoch=log)
    record.stage2 = {"n_params": count_parameters(stage2), "history": res.history,
                     "train_seconds": res.seconds, "gamma_ratio": gamma_ratio(res.history)}
    codes = torch.zeros(cfg.batch_size, cfg.latent_dim, device=train_x.device)  # FLOPs do not depend on values
    flops = train_step_flops(stage2, codes) / cfg.batch_size
    record.cost.update(flops_per_train_code_stage2=flops, train_codes_stage2=res.images,
                       train_seconds_stage2=res.seconds, train_flops_stage2=flops * res.images)
    return stage2, res


def train_stage2(cfg: TrainConfig, model: VAE, train_x: torch.Tensor, checkpoint: Path,
                 progress: bool | None = None, on_epoch: Callable[[dict], None] | None = None) -> tuple[VAE, FitResult]:
    """Fit the second-stage VAE on z ~ q(z|x) of the trained first stage, re-sampled every epoch
    (Dai & Wipf 2019, as Asperti & Trentin); ``checkpoint``: its checkpoint file."""
    mu, logvar = encode_all(model, train_x, bn_eval=cfg.bn_eval)
    std = torch.exp(0.5 * logvar)
    torch.manual_seed(cfg.seed + 1)
    stage2 = build_stage2(cfg).to(mu.device)

    def latents(epoch: int) -> torch.Tensor:
        g = torch.Generator(device=mu.device).manual_seed(cfg.seed * 7919 + epoch)
        return mu + std * torch.randn(mu.shape, generator=g, device=mu.device)

    res = fit(stage2, latents, epochs=cfg.stage2_epochs, lr=cfg.lr, halve_every=cfg.stage2_lr_halve_every,
              batch_size=cfg.batch_size, seed=cfg.seed + 1, checkpoint=checkpoint,
              checkpoint_every=cfg.checkpoint_every, bf16=cfg.bf16, compile=cfg.compile,
              desc=f"stage 2 {cfg.stage2_variant}", progress=progress, to_input=lambda z: z, on_epoch=on_epoch)
    return stage2, res


@torch.no_grad()
def encode_all(model: VAE, images: torch.Tensor, batch_size: int = 1000, *,
               bn_eval: str = "debiased") -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and log-variances of uint8 images, in eval mode with ``bn_eval``
    BatchNorm statistics (the second stage learns the codes evaluation will decode)."""
    with eval_mode(model, bn_eval):
        parts = [model.encode(to_float(images[i:i + batch_size])) for i in range(0, len(images), batch_size)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


# ---- a failure ------------------------------------------------------------------------------

def _failed(folder: RunFolder, record: Record, e: Exception) -> Record:
    """The run's record as it stood, failed with what ``e`` says (a traceback for what is no
    known failure: a bug), written if it can be (:meth:`RunFolder.end`)."""
    if isinstance(e, (DataMissing, CorruptCheckpoint)):
        return folder.end(record, "failed", f"{type(e).__name__}: {e}")
    if isinstance(e, torch.OutOfMemoryError):
        return folder.end(record, "failed", f"out of memory: {str(e)[:300]}; lower batch_size or use a larger device")
    return folder.end(record, "failed", f"{type(e).__name__}: {e}", traceback.format_exc())


# ---- what a finished run is asked again ----------------------------------------------------

def _changed_settings(cfg: TrainConfig, rec: Record) -> list[str]:
    """The evaluation settings (vaes.config.EVAL_FIELDS) in which ``cfg`` differs from the
    finished run of ``rec``, as key=value ([] = nothing to evaluate again)."""
    def text(v) -> str:
        return "none" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
    wanted = {k: getattr(cfg, k) for k in EVAL_FIELDS}
    # unset image counts are the data set's protocol, which the record holds resolved; a set
    # eval_images takes FID's count along, as vaes.build.resolve does
    if wanted["fid_images"] is None and wanted["eval_images"] is not None:
        wanted["fid_images"] = wanted["eval_images"]
    return [f"{k}={text(v)}" for k, v in wanted.items()
            if not (v is None and k in ("eval_images", "fid_images")) and k in rec.config and rec.config[k] != v]


def _evaluated_again(cfg: TrainConfig, rec: Record) -> Record:
    """A finished run, evaluated again where cfg's evaluation settings differ from its record's
    (other image counts update its metrics); as it is otherwise. A failed evaluation keeps the
    record as it was and says so on stderr: the trained run is still finished."""
    changed = _changed_settings(cfg, rec)
    if not changed:
        return rec
    try:
        return evaluate_run(cfg.out, changed)
    except Exception as e:  # noqa: BLE001 -- the weights are finished and kept; the metrics stay as they were
        print(f"warning: {cfg.out}: evaluating again with {' '.join(changed)} failed ({type(e).__name__}: {e}); "
              "the record keeps its earlier metrics", file=sys.stderr)
        return rec


# ---- for callers of many runs ---------------------------------------------------------------

class DataCache:
    """Data sets loaded once for many runs (a suite, a sweep worker), by what decides the images:
    dataset, data_root, data_split, image_size, jpeg_quality. A set that cannot be loaded gives None, and
    :func:`run` loads it again and records why in that run's record."""

    def __init__(self) -> None:
        self._data: dict[tuple, ImageData | None] = {}

    def __call__(self, cfg: TrainConfig) -> ImageData | None:
        key = (cfg.dataset, cfg.data_root, cfg.data_split, cfg.image_size, cfg.jpeg_quality)
        if key not in self._data:
            try:
                self._data[key] = load_dataset(cfg.dataset, cfg.data_root, download=cfg.download,
                                               data_split=cfg.data_split, image_size=cfg.image_size,
                                               jpeg_quality=cfg.jpeg_quality)
            # missing or bad data (DataMissing is an OSError) or a refused split: run() loads it again
            # and records why; any other exception is a bug and surfaces here
            except (OSError, EOFError, ValueError, RuntimeError):
                self._data[key] = None
        return self._data[key]
