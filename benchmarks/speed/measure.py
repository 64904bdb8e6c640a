"""What the speed benchmark measures beside the race: a profile of vaebench's step, FLOPs per
image, the second stage, evaluation (sampling, Inception features, classifier distance) and a
projection of the paper's CIFAR-10 protocol."""
from __future__ import annotations

import copy
import math
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from vaes.classifier import DataClassifier, classifier_frechet_distance
from vaes.config import TrainConfig
from vaes.data import get_dataset
from vaes.fid import extract_features
from vaes.metrics import to_float
from vaes.networks import count_parameters
from vaes.trainer import train_stage2
from benchmarks.speed.inception import inception_extractor
from benchmarks.speed.machine import PeakMemory, sync
from benchmarks.speed.trainers import PAPER_DATASET, VaebenchTrainer, bench_config, make_trainers, synthetic_images

# The paper's CIFAR-10 protocol (Asperti & Trentin's code; DESIGN.md)
PAPER_CIFAR10 = {"epochs": get_dataset(PAPER_DATASET).protocol.epochs,  # from the data-set registry
                 "stage2_epochs": get_dataset(PAPER_DATASET).protocol.stage2_epochs,
                 "images": get_dataset(PAPER_DATASET).train_size,
                 "batch_size": TrainConfig.batch_size, "fid_images": TrainConfig.eval_images}


def profile_vaebench(trainer: VaebenchTrainer, epochs: int, device: torch.device) -> tuple[dict, str]:
    """Where a step of vaebench's fit spends its time: torch.profiler over one call of ``epochs``.

    Returns milliseconds per step by phase, and the profiler's table of the top operators.
    Backward is the sum of autograd's node evaluations, Adam and zero_grad the optimizer's own
    ranges, 'forward, loss and loop' the rest of fit's epoch time; 'per call' is what fit spends
    outside its epochs (optimizer set-up, checkpoint writes), spread over the steps.
    """
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        t0 = time.perf_counter()
        images, _ = trainer.run(epochs)
        sync(device)
        wall = time.perf_counter() - t0
    steps = images // trainer.cfg.batch_size
    ev = prof.key_averages()

    def ms_per_step(prefix: str) -> float:
        return sum(e.cpu_time_total for e in ev if e.key.startswith(prefix)) / 1e3 / steps

    step = trainer.fit_seconds[-1] * 1e3 / steps
    phases = {"step_ms": step, "backward_ms": ms_per_step("autograd::engine::evaluate_function"),
              "adam_ms": ms_per_step("Optimizer.step#"), "zero_grad_ms": ms_per_step("Optimizer.zero_grad#")}
    phases["forward_loss_and_loop_ms"] = step - phases["backward_ms"] - phases["adam_ms"] - phases["zero_grad_ms"]
    phases["per_call_ms_per_step"] = (wall - trainer.fit_seconds[-1]) * 1e3 / steps
    phases["note"] = "under the profiler (its overhead inflates the many small ops of Adam)"
    return phases, ev.table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=60)


def flops_per_image(model: nn.Module, x_u8: torch.Tensor) -> float:
    """FLOPs of one forward and backward of the loss on batch ``x_u8``, per image (on a copy)."""
    m = copy.deepcopy(model).train()
    with FlopCounterMode(display=False) as counter:
        m.loss(to_float(x_u8))["loss"].backward()
    return counter.get_total_flops() / len(x_u8)


def measure_stage2(cfg: TrainConfig, model, train_u8: torch.Tensor, device: torch.device, *,
                   epochs: int, rounds: int, workdir: Path) -> dict:
    """Speed of :func:`vaes.trainer.train_stage2` (latents re-sampled every epoch), in codes/second."""
    cfg = cfg.replace(stage2_epochs=epochs)
    x = train_u8.to(device)
    speeds, fit_speeds, n_params = [], [], None
    for r in range(rounds + 1):  # round 0 warms up
        sync(device)
        t0 = time.perf_counter()
        stage2, res = train_stage2(cfg, model, x, Path(workdir) / f"stage2-{r}", progress=False)
        sync(device)
        dt = time.perf_counter() - t0
        if res.status != "finished":
            raise RuntimeError(f"stage 2 ended {res.status}: {res.reason}")
        n_params = count_parameters(stage2)
        if r:
            speeds.append(res.images / dt)
            fit_speeds.append(res.images / res.seconds)
    return {"codes_per_second": statistics.median(speeds), "fit_codes_per_second": statistics.median(fit_speeds),
            "codes_per_second_rounds": speeds, "epochs_per_round": epochs, "n_codes": len(x),
            "width": cfg.stage2_width, "depth": cfg.stage2_depth, "n_params": n_params,
            "note": "wall clock of train_stage2, encoding the first stage's posteriors included"}

@torch.no_grad()
def generate_u8(model, n: int, device: torch.device, batch_size: int = 500) -> torch.Tensor:
    """n samples of the model as uint8 images (what FID and the classifier distance consume)."""
    model.eval()
    g = torch.Generator(device=device).manual_seed(0)
    parts = [model.sample(min(batch_size, n - i), g) for i in range(0, n, batch_size)]
    model.train()
    return (torch.cat(parts).float().clamp(0, 1) * 255).round().to(torch.uint8)


def measure_eval(model, real_u8: torch.Tensor, device: torch.device, *, n_images: int,
                 batch_sizes: list[int]) -> dict:
    """Images/second of sampling, of Inception features (per batch size) and of the classifier distance."""
    out: dict = {}
    sync(device)
    t0 = time.perf_counter()
    fake = generate_u8(model, max(n_images, 1000), device)
    sync(device)
    out["sampling_images_per_second"] = len(fake) / (time.perf_counter() - t0)
    fn, what = inception_extractor(device)
    per_bs = {}
    for bs in batch_sizes:
        warm = fake[:min(bs, 2)] if device.type == "cpu" else fake[:bs]  # allocator, cuDNN's choice
        extract_features(warm, fn, device=device, batch_size=bs)
        with PeakMemory(device) as mem:
            sync(device)
            t0 = time.perf_counter()
            feats = extract_features(fake[:n_images], fn, device=device, batch_size=bs)
            sync(device)
            dt = time.perf_counter() - t0
        per_bs[str(bs)] = {"images_per_second": n_images / dt, "peak_memory_bytes": mem.peak}
    best = max(v["images_per_second"] for v in per_bs.values())
    out["inception"] = {"extractor": what, "feature_dim": int(feats.shape[1]), "n_images": n_images,
                        "by_batch_size": per_bs, "images_per_second": best,
                        "fid_10k_seconds": 2 * PAPER_CIFAR10["fid_images"] / best,
                        "note": "fid_10k_seconds: one FID from scratch, 10k generated + 10k real images"}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        clf = DataClassifier(input_shape=tuple(real_u8.shape[1:]), head_sizes=[10]).to(device).eval()
    n = min(len(fake), len(real_u8))
    sync(device)
    t0 = time.perf_counter()
    dist = classifier_frechet_distance(fake[:n], real_u8[:n], clf)
    dt = time.perf_counter() - t0
    out["classifier"] = {"images_per_second": 2 * n / dt, "n_images": 2 * n, "finite": math.isfinite(dist),
                         "note": "features of n generated and n real images, then the Frechet distance "
                                 "(an untrained classifier: the same cost)"}
    return out


def project_paper_cifar10(first_ips: float, stage2_ips: float, eval_ips: float | None, source: str) -> dict:
    """Hours of the paper's CIFAR-10 protocol at the measured speeds."""
    p = PAPER_CIFAR10
    first = p["epochs"] * p["images"] / first_ips
    second = p["stage2_epochs"] * p["images"] / stage2_ips
    # FIDs of first-stage samples, second-stage samples and reconstructions, plus the real
    # images once (their statistics are cached)
    fid = None if eval_ips is None else 4 * p["fid_images"] / eval_ips
    return {"protocol": p, "source": source, "first_stage_images_per_second": first_ips,
            "stage2_codes_per_second": stage2_ips, "first_stage_hours": first / 3600,
            "stage2_hours": second / 3600, "fid_hours": None if fid is None else fid / 3600,
            "total_hours": (first + second + (fid or 0)) / 3600}


def probe_cifar10(device: torch.device, args, workdir: Path) -> tuple[float, float]:
    """vaebench's images/second on the CIFAR-10 network and codes/second of its second stage,
    on a few synthetic batches (when the run's own data set is another one)."""
    shape = get_dataset(PAPER_DATASET).shape(None)
    cfg = bench_config(PAPER_DATASET, shape, batch_size=100, seed=args.seed, bf16=args.bf16, compile=args.compile)
    cpu = device.type == "cpu"
    x = synthetic_images(shape, 200 if cpu else 10_000, args.seed)
    (vb,) = make_trainers(cfg, shape, x, device, workdir, ["vaebench"], checkpoint_every=args.checkpoint_every)
    vb.run(1)  # warm-up
    speeds = []
    for _ in range(1 if cpu else 3):
        sync(device)
        t0 = time.perf_counter()
        images, _ = vb.run(1)
        sync(device)
        speeds.append(images / (time.perf_counter() - t0))
    s2 = measure_stage2(cfg, vb.model, synthetic_images(shape, 500, 1) if cpu else x, device,
                        epochs=1, rounds=1, workdir=workdir)
    return statistics.median(speeds), s2["codes_per_second"]

