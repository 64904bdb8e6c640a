"""The one trainer: a plain PyTorch loop (:func:`fit`) and a whole run (:func:`train`).

:func:`train` resumes from the checkpoint in the run folder (written every
``checkpoint_every`` epochs and on SIGTERM / SIGUSR1, which SLURM sends before a time limit
or preemption), or returns a finished record untouched. Callers use :func:`vaes.run.run`,
which also turns a run's own failures into failed records.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

import vaes.variants  # noqa: F401  (registers the variants)
from vaes.build import build_model, build_stage2, dataset_shape, pick_device, resolve  # noqa: F401  (also vaes.train's API)
from vaes.config import TrainConfig, run_id, to_dict
from vaes.data import DataMissing, ImageData, load_dataset
from vaes.evaluate import evaluate_models
from vaes.metrics import gamma_ratio, heldout_metrics, to_float, train_step_flops
from vaes.model import VAE
from vaes.networks import count_parameters, eval_mode
from vaes.records import CorruptCheckpoint, Record, load_torch, save_torch
from vaes.tensorboard import EpochLogger, summary_writer

# ---- stopping on a signal ----------------------------------------------------------------

_stop: dict[str, int | None] = {"signum": None}


def request_stop(signum: int = signal.SIGTERM) -> None:
    """Ask the running loop to checkpoint at the next step boundary and return 'interrupted'."""
    _stop["signum"] = signum


class _StopOnSignals:
    """Within the block, SIGTERM and SIGUSR1 request a checkpoint-and-stop (main thread only)."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __enter__(self):
        _stop["signum"] = None
        self.old = {}
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self.old[s] = signal.signal(s, lambda signum, frame: request_stop(signum))
        return self

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h)


# ---- the loop ------------------------------------------------------------------------------

@dataclasses.dataclass
class FitResult:
    status: str                    # finished | interrupted | failed
    reason: str | None
    history: list[dict]
    seconds: float                 # training time, summed over resumed segments
    images: int                    # training images processed, summed likewise


TERMS = ("loss", "recon", "kl", "mse")
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "acc", "epoch", "step", "seconds", "images", "history", "rng")


def fit(model: VAE, epoch_data: Callable[[int], torch.Tensor], *, epochs: int, lr: float,
        halve_every: int, batch_size: int, seed: int, checkpoint: Path, checkpoint_every: int = 1,
        bf16: bool = False, compile: bool = False, desc: str = "train", progress: bool | None = None,
        to_input: Callable[[torch.Tensor], torch.Tensor] = to_float,
        on_epoch: Callable[[dict], None] | None = None, min_checkpoint_seconds: float = 30.0) -> FitResult:
    """Train ``model`` with Adam, halving the learning rate every ``halve_every`` epochs.

    ``epoch_data(e)`` gives the (device) tensor of epoch e: the uint8 images for a first
    stage, freshly sampled latent codes for a second. Batches are sliced on the device and
    the loss terms summed there, so nothing syncs with the host within an epoch except a
    finiteness check every 100 steps. Resumes from ``checkpoint`` when it exists. After the
    first one, periodic checkpoints wait ``min_checkpoint_seconds`` of training since the last
    (a signal, the first and the last epoch always write one).
    ``on_epoch(row)`` is called after each epoch (e.g. to report to Optuna; an
    exception it raises, such as optuna.TrialPruned, ends the fit and propagates).
    """
    device = next(model.parameters()).device
    # fused Adam: one kernel for all tensors instead of ~10 ops per tensor; on the CPU it took
    # Adam from 1.10 to 0.49 ms of a 6.9 ms digits step (python -m benchmarks.speed --profile, same losses)
    opt = torch.optim.Adam(model.parameters(), lr=lr, fused=device.type in ("cuda", "cpu"))
    sched = torch.optim.lr_scheduler.StepLR(opt, halve_every or 10**9, gamma=0.5)
    acc = torch.zeros(len(TERMS), device=device)
    start_epoch, start_step, history, seconds, images = 0, 0, [], 0.0, 0
    last_save = None  # training seconds at the last periodic checkpoint of this call
    if checkpoint.is_file():
        ck = load_torch(checkpoint)
        missing = [k for k in CHECKPOINT_KEYS if k not in (ck if isinstance(ck, dict) else {})]
        if missing:
            raise CorruptCheckpoint(f"{checkpoint} is not a checkpoint of this vaebench version (it lacks "
                                    f"{', '.join(missing)}); delete it to restart the run from scratch")
        try:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CorruptCheckpoint(f"{checkpoint} does not fit this run's network (another vaebench version "
                                    f"or config: {str(e).splitlines()[0][:200]}); delete it to restart the "
                                    "run from scratch") from None
        sched.load_state_dict(ck["scheduler"])
        acc.copy_(ck["acc"])
        start_epoch, start_step, seconds, images = ck["epoch"], ck["step"], ck["seconds"], ck["images"]
        history = ck["history"]
        torch.set_rng_state(ck["rng"])
        if device.type == "cuda" and "cuda_rng" in ck:
            torch.cuda.set_rng_state(ck["cuda_rng"], device)

    def save(epoch: int, step: int) -> None:
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict(), "acc": acc.cpu(), "epoch": epoch, "step": step,
                 "seconds": seconds, "images": images, "history": history, "rng": torch.get_rng_state()}
        if device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(device)
        save_torch(checkpoint, state)

    loss_fn = torch.compile(model.loss) if compile else model.loss
    model.train()
    n = len(epoch_data(start_epoch)) if start_epoch < epochs else 0
    steps = max(1, n // batch_size)  # drop the last partial batch: static shapes, BN-safe
    bar = tqdm(total=epochs * steps, initial=start_epoch * steps + start_step, desc=desc,
               disable=(not sys.stderr.isatty()) if progress is None else not progress,
               unit="step", dynamic_ncols=True)
    try:
        for epoch in range(start_epoch, epochs):
            data = epoch_data(epoch)
            t0 = time.perf_counter()
            # the batch order of epoch e depends on (seed, e) only: a resumed run replays it
            perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
            perm = perm.to(device)
            for step in range(start_step, steps):
                x = to_input(data[perm[step * batch_size:(step + 1) * batch_size]])
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    terms = loss_fn(x)
                opt.zero_grad(set_to_none=True)
                terms["loss"].backward()
                opt.step()
                model.after_step(terms)
                acc += torch.stack([terms[k].detach().float() for k in TERMS])
                images += len(x)
                bar.update(1)
                if (step + 1) % 100 == 0 and not torch.isfinite(acc).all():
                    return _failed(acc, epoch, step, steps, history, seconds, images)
                if _stop["signum"] is not None:
                    seconds += time.perf_counter() - t0
                    save(epoch, step + 1)
                    return FitResult("interrupted", f"signal {signal.Signals(_stop['signum']).name} "
                                     f"at epoch {epoch} step {step + 1}; checkpoint saved",
                                     history, seconds, images)
            sched.step()
            vals = (acc / steps).tolist()
            if not all(math.isfinite(v) for v in vals):
                return _failed(acc, epoch, steps - 1, steps, history, seconds, images)
            seconds += time.perf_counter() - t0
            gamma = model.gamma()
            row = {"epoch": epoch + 1, **dict(zip(TERMS, vals)),
                   "gamma": None if gamma is None else float(gamma), "lr": opt.param_groups[0]["lr"]}
            history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4g}", gamma=f"{row['gamma']:.4g}" if gamma is not None else "-")
            acc.zero_()
            start_step = 0
            # a checkpoint costs ~8 ms on digits (8% of an epoch), ~150 ms for the CIFAR-10 net
            periodic = (epoch + 1) % checkpoint_every == 0 and (
                last_save is None or seconds - last_save >= min_checkpoint_seconds)
            if periodic or epoch + 1 == epochs:
                save(epoch + 1, 0)
                last_save = seconds
            if on_epoch is not None:
                on_epoch(row)
    finally:
        bar.close()
    return FitResult("finished", None, history, seconds, images)


def _failed(acc, epoch, step, steps, history, seconds, images) -> FitResult:
    vals = dict(zip(TERMS, (acc / steps).tolist()))
    return FitResult("failed", f"non-finite loss at epoch {epoch + 1}, by step {step + 1} "
                     f"(epoch sums / steps: {vals}); lower lr or check the data",
                     history, seconds, images)


# ---- a whole run ---------------------------------------------------------------------------

def train(cfg: TrainConfig, *, data: ImageData | None = None, progress: bool | None = None,
          evaluate: bool = True, meta: dict | None = None,
          on_epoch: Callable[[dict], None] | None = None) -> Record:
    """Train (and evaluate) the run of ``cfg`` in ``cfg.out``; returns its record.

    A finished record in ``cfg.out`` is returned as it is; a checkpoint there is resumed.
    Missing data, a NaN loss or running out of memory end in a record with status
    'failed' and the reason, not in an exception. ``meta`` (e.g. a suite's label) is
    stored in the record as it is; ``on_epoch`` is passed to the first stage's :func:`fit`.
    """
    out = Path(cfg.out)
    old = Record.read(out / "record.json")
    if old is not None and old.ok:
        return old
    out.mkdir(parents=True, exist_ok=True)
    record = Record.start(run_id=run_id(cfg), seed=cfg.seed, config=to_dict(cfg), meta=meta)

    def finish(status: str, reason: str | None = None) -> Record:
        if status == "finished":
            record.finish()
        elif status == "interrupted":
            record.interrupt(reason)
        else:
            record.fail(reason)
        return record.write(out / "record.json")

    try:
        if data is None:
            data = load_dataset(cfg.dataset, cfg.data_root, download=cfg.download,
                                data_split=cfg.data_split, image_size=cfg.image_size,
                                jpeg_quality=cfg.jpeg_quality)
        cfg = resolve(cfg, data.shape)
        record.config = to_dict(cfg)
        record.run_id = run_id(cfg)
        record.data = {"name": data.name, "shape": list(data.shape), "n_train": len(data.train[: cfg.n_train or None]),
                          "n_heldout": len(data.test), "note": data.note}
        device = pick_device(cfg.device)
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, data.shape).to(device)
        record.n_params = count_parameters(model)
        record.device = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        train_x = data.train[: cfg.n_train or None].to(device)  # the whole set lives on the device
        flops1 = train_step_flops(model, to_float(train_x[: cfg.batch_size])) / min(cfg.batch_size, len(train_x))
        record.write(out / "record.json")  # status "running": a killed run is visible
        writer = summary_writer(out) if cfg.tensorboard else None
        per_epoch = (len(train_x) // cfg.batch_size) * cfg.batch_size
        hooks = [on_epoch] if on_epoch is not None else []
        if writer is not None:  # curves and a sample grid about ten times a run
            hooks.insert(0, EpochLogger(writer, 1, per_epoch, model, grid_every=max(1, cfg.epochs // 10), seed=cfg.seed))
        with _StopOnSignals(), contextlib.closing(writer) if writer is not None else contextlib.nullcontext():
            res = fit(model, lambda e: train_x, epochs=cfg.epochs, lr=cfg.lr, halve_every=cfg.lr_halve_every,
                      batch_size=cfg.batch_size, seed=cfg.seed, checkpoint=out / "checkpoint.pt",
                      checkpoint_every=cfg.checkpoint_every, bf16=cfg.bf16, compile=cfg.compile,
                      desc=f"{cfg.variant} {cfg.dataset}", progress=progress, on_epoch=_chain(hooks))
            record.history = res.history
            record.gamma_ratio = gamma_ratio(res.history)  # 1 once gamma reaches sqrt(MSE)
            record.timings = {"train_seconds": res.seconds,
                                 "train_images_per_second": res.images / max(res.seconds, 1e-9)}
            record.cost = cost = {"device": record.device, "flops_per_train_image": flops1,
                                     "train_images": res.images, "train_seconds": res.seconds,
                                     "train_flops": flops1 * res.images,
                                     "flop_counter": "torch.utils.flop_counter.FlopCounterMode, loss forward + backward"}
            if res.status != "finished":
                return finish(res.status, res.reason)
            stage2 = None
            if cfg.two_stage:
                log2 = None if writer is None else EpochLogger(writer, 2, per_epoch)
                stage2, res2 = train_stage2(cfg, model, train_x, out, progress, on_epoch=log2)
                record.stage2 = {"n_params": count_parameters(stage2), "history": res2.history,
                                    "train_seconds": res2.seconds, "gamma_ratio": gamma_ratio(res2.history)}
                codes = torch.zeros(cfg.batch_size, cfg.latent_dim, device=device)  # FLOPs do not depend on values
                flops2 = train_step_flops(stage2, codes) / cfg.batch_size
                cost.update(flops_per_train_code_stage2=flops2, train_codes_stage2=res2.images,
                            train_seconds_stage2=res2.seconds, train_flops_stage2=flops2 * res2.images)
                if res2.status != "finished":
                    return finish(res2.status, "stage 2: " + res2.reason)
        save_torch(out / "model.pt", {"model": model.state_dict(),
                                      "stage2": None if stage2 is None else stage2.state_dict()})
        t0 = time.perf_counter()
        record.metrics = heldout_metrics(model, data.test.to(device), bn_eval=cfg.bn_eval)
        if evaluate:
            record.metrics.update(evaluate_models(cfg, model, stage2, data, out))
        record.timings["eval_seconds"] = time.perf_counter() - t0
    except (DataMissing, CorruptCheckpoint) as e:
        return finish("failed", f"{type(e).__name__}: {e}")
    except torch.OutOfMemoryError as e:
        return finish("failed", f"out of memory: {str(e)[:300]}; lower batch_size or use a larger device")
    for ck in ("checkpoint.pt", "checkpoint_stage2.pt"):
        (out / ck).unlink(missing_ok=True)
    return finish("finished")


@torch.no_grad()
def encode_all(model: VAE, images: torch.Tensor, batch_size: int = 1000, *,
               bn_eval: str = "debiased") -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and log-variances of uint8 images, in eval mode with ``bn_eval``
    BatchNorm statistics (the second stage learns the codes evaluation will decode)."""
    with eval_mode(model, bn_eval):
        parts = [model.encode(to_float(images[i:i + batch_size])) for i in range(0, len(images), batch_size)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _chain(hooks: list) -> Callable[[dict], None] | None:
    """One on_epoch hook calling ``hooks`` in order (None for none)."""
    if not hooks:
        return None

    def chained(row: dict) -> None:
        for hook in hooks:
            hook(row)
    return chained


def train_stage2(cfg: TrainConfig, model: VAE, train_x: torch.Tensor, out: Path,
                 progress: bool | None = None, on_epoch: Callable[[dict], None] | None = None) -> tuple[VAE, FitResult]:
    """Fit the second-stage VAE on z ~ q(z|x) of the trained first stage, re-sampled every epoch
    (Dai & Wipf 2019, as Asperti & Trentin)."""
    mu, logvar = encode_all(model, train_x, bn_eval=cfg.bn_eval)
    std = torch.exp(0.5 * logvar)
    torch.manual_seed(cfg.seed + 1)
    stage2 = build_stage2(cfg).to(mu.device)

    def latents(epoch: int) -> torch.Tensor:
        g = torch.Generator(device=mu.device).manual_seed(cfg.seed * 7919 + epoch)
        return mu + std * torch.randn(mu.shape, generator=g, device=mu.device)

    res = fit(stage2, latents, epochs=cfg.stage2_epochs, lr=cfg.lr, halve_every=cfg.stage2_lr_halve_every,
              batch_size=cfg.batch_size, seed=cfg.seed + 1, checkpoint=out / "checkpoint_stage2.pt",
              checkpoint_every=cfg.checkpoint_every, bf16=cfg.bf16, compile=cfg.compile,
              desc=f"stage 2 {cfg.stage2_variant}", progress=progress, to_input=lambda z: z, on_epoch=on_epoch)
    return stage2, res
