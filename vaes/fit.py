"""The training loop and its checkpoints: :func:`fit`, a plain PyTorch loop.

A model, a function giving each epoch's data, the optimiser's settings and a checkpoint path
in; the per-epoch history and the status (finished, interrupted, failed) out. Checkpoints are
written atomically every ``checkpoint_every`` epochs and on a stop request (vaes/stop.py: the
signals a caller turns into one); :func:`fit` resumes from one bit-exactly (:func:`_resume`),
and :func:`saved_progress` tells others how far a checkpoint got without handing out its keys. The whole run around it (data, models, both stages, evaluation, the
record) is vaes/run.py.
"""
from __future__ import annotations

import dataclasses
import math
import signal
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from vaes.evaluation.metrics import to_float
from vaes.model import VAE
from vaes.records import CorruptCheckpoint, load_torch, save_torch
from vaes.stop import requested

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
    start_epoch, start_step, seconds, images, history = _resume(checkpoint, model, opt, sched, acc)
    last_save = None  # training seconds at the last periodic checkpoint of this call

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
                if requested() is not None:  # a signal (vaes.stop): checkpoint here and stop
                    seconds += time.perf_counter() - t0
                    save(epoch, step + 1)
                    return FitResult("interrupted", f"signal {signal.Signals(requested()).name} "
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


def _resume(checkpoint: Path, model: VAE, opt: torch.optim.Optimizer, sched, acc: torch.Tensor
            ) -> tuple[int, int, float, int, list[dict]]:
    """Load ``checkpoint`` (when it exists) into the model, optimiser, scheduler, running sums and
    random state; (epoch, step, seconds, images, history) to go on from: zeros for a fresh fit.
    A file of another version or network is a :class:`CorruptCheckpoint` that says to delete it."""
    if not checkpoint.is_file():
        return 0, 0, 0.0, 0, []
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
    # the random state as it was at the checkpoint: the rest of the run draws what it would have
    torch.set_rng_state(ck["rng"])
    device = acc.device
    if device.type == "cuda" and "cuda_rng" in ck:
        torch.cuda.set_rng_state(ck["cuda_rng"], device)
    return ck["epoch"], ck["step"], ck["seconds"], ck["images"], ck["history"]


@dataclasses.dataclass(frozen=True)
class Progress:
    """How far a checkpoint got: where the fit goes on, and the history of the epochs behind it."""
    epoch: int
    step: int
    history: list[dict]


def saved_progress(checkpoint: Path) -> Progress | None:
    """The progress saved in ``checkpoint``; None when there is none, or when it is damaged or of
    another version (the fit that resumes it says so and fails the run with the reason)."""
    if not Path(checkpoint).is_file():
        return None
    try:
        ck = load_torch(checkpoint)
        return Progress(int(ck["epoch"]), int(ck["step"]), list(ck["history"]))
    except (CorruptCheckpoint, KeyError, TypeError, ValueError):
        return None


def _failed(acc, epoch, step, steps, history, seconds, images) -> FitResult:
    vals = dict(zip(TERMS, (acc / steps).tolist()))
    return FitResult("failed", f"non-finite loss at epoch {epoch + 1}, by step {step + 1} "
                     f"(epoch sums / steps: {vals}); lower lr or check the data",
                     history, seconds, images)
