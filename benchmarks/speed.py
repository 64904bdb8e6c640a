"""Training and evaluation speed: vaebench's trainer against a tutorial loop and pythae.

    python -m benchmarks.speed [--dataset digits|shapes|mnist|cifar10|celeba ...]
        [--device auto|cpu|cuda] [--epochs N] [--rounds R] [--batch-size B] [--synthetic]
        [--threads N] [--profile] [--out results/speed]

The same network (``build_model(resolve(cfg, shape), shape)`` with identical initial weights),
the same images, batch size and optimizer (Adam at the data set's learning rate) are trained
three ways, in alternation (A B C A B C ..., one warm-up round then ``--rounds`` timed ones),
so that a noisy neighbour or a clock change hits all three alike:

1. ``vaebench``: :func:`vaes.train.fit` as :func:`vaes.train.train` calls it (uint8 data on the
   device, a checkpoint every epoch); the wall clock of the whole call;
2. ``tutorial``: the loop of the PyTorch tutorials (a DataLoader over a TensorDataset of float
   CPU tensors, shuffle=True, ``.to(device)`` per batch, ``loss.item()`` per step) calling the
   same ``model.loss`` and ``model.after_step``, so the arithmetic is the same;
3. ``pythae``: pythae 0.1.2's ``BaseTrainer`` on its ``VAE`` with our encoder and decoder
   plugged in. Its loss is its own (1/2 SSE + KL, gamma fixed at 1): a few elementwise ops
   differ, the network and the data do not. Only its epochs are timed (``train_step``), not
   its set-up, its per-epoch copy of the best model or its final save, and its progress bar
   and console printer are removed: all of that favours pythae.

Each trainer's images/second is the median over rounds; the ratios are of those medians, and
the median of the per-round ratios is kept too (steadier on a busy machine). Beside them: the
second stage of the two-stage VAE (:func:`vaes.train.train_stage2`), evaluation speed through
a real Inception-v3 with random weights (nothing is downloaded; speed does not depend on the
weights) and through the classifier distance, peak memory, FLOPs per image and, on CUDA, the
fraction of the device's peak, and a projection of the paper's CIFAR-10 protocol. Results go
to ``OUT/<device>-<dataset>.json`` and ``.md``. Timings never appear in tests.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable
from unittest import mock

import torch
from torch import nn

from vaes.config import TrainConfig
from vaes.data import DataMissing, get_dataset, list_datasets, load_dataset
from vaes.metrics import to_float
from vaes.networks import count_parameters
from vaes.records import write_json
from vaes.build import build_model, dataset_shape, pick_device, resolve
from vaes.classifier import DataClassifier, classifier_frechet_distance
from vaes.fid import extract_features
from vaes.trainer import fit, train_stage2

TRAINERS = ("vaebench", "tutorial", "pythae")
SECTIONS = ("pythae", "tutorial", "stage2", "eval", "projection")  # what --skip may leave out
# H100 / H200 SXM: 989 TFLOP/s dense bf16 (NVIDIA's data sheets; 1,979 is with 2:4 sparsity)
DEFAULT_PEAK_TFLOPS = 989.0
DEFAULT_PEAK_NAME = "NVIDIA H100/H200 SXM, dense bf16"
# Images per trainer and round when --epochs is not given: enough to amortise a call's set-up,
# few enough that the default CPU run (digits) takes about a minute on an idle machine.
TARGET_IMAGES = {("cpu", "conv"): 6_000, ("cpu", "resnet"): 300,
                 ("cuda", "conv"): 60_000, ("cuda", "resnet"): 50_000}
# On the CPU only a slice of a large data set is used (an epoch of CIFAR-10 takes 25 minutes).
CPU_TRAIN_CAP = {"conv": 6_000, "resnet": 300}
# The paper's CIFAR-10 protocol (Asperti & Trentin's code; DESIGN.md)
PAPER_CIFAR10 = {"epochs": get_dataset("cifar10").protocol.epochs,  # from the data-set registry
                 "stage2_epochs": get_dataset("cifar10").protocol.stage2_epochs,
                 "images": get_dataset("cifar10").train_size,
                 "batch_size": TrainConfig.batch_size, "fid_images": TrainConfig.eval_images}


# ---- the machine -------------------------------------------------------------------------

def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model from /proc/cpuinfo."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def sync(device: torch.device) -> None:
    """Wait for the device, so that a clock read after it covers the work queued before."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _proc_status_kb(field: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


class PeakMemory:
    """Peak memory of a block: CUDA's allocator peak, or the process's peak RSS (VmHWM).

    On Linux, writing 5 to /proc/self/clear_refs resets VmHWM to the current RSS, so each
    block gets its own peak. torch allocates outside Python's heap: tracemalloc misses it.
    """

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before = torch.cuda.memory_allocated(self.device)
        else:
            with contextlib.suppress(OSError):
                Path("/proc/self/clear_refs").write_text("5")
            self.before = (_proc_status_kb("VmRSS") or 0) * 1024
        self.peak = None
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            sync(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            hwm = _proc_status_kb("VmHWM")
            self.peak = None if hwm is None else hwm * 1024

    @property
    def delta(self) -> int | None:
        """Growth of the peak over what was in use when the block began."""
        return None if self.peak is None else max(0, self.peak - self.before)


# ---- data and models -----------------------------------------------------------------------

def synthetic_images(shape: tuple[int, ...], n: int, seed: int = 0) -> torch.Tensor:
    """uint8 noise (n, C, H, W): the speed of these dense networks does not depend on pixels."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)


def load_images(name: str, root: str, *, synthetic: bool, n_synthetic: int | None = None,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, str, bool]:
    """(train, held-out, note, synthetic) uint8 images of data set ``name``.

    With ``synthetic``, or when the data set is absent (the benchmark never downloads),
    uint8 noise of the data set's shape and training-set size stands in, and the note says so.
    """
    reason = "--synthetic"
    if not synthetic:
        try:
            d = load_dataset(name, root)
            return d.train, d.test, d.note, False
        except DataMissing as e:
            reason = f"{name} is not under {root!r}: {str(e)[:120]}..."
            print(f"note: {reason}; timing on synthetic uint8 data of its shape instead", file=sys.stderr)
    shape = dataset_shape(TrainConfig(dataset=name))
    if shape is None:
        raise ValueError(f"dataset={name!r} has no fixed shape; it cannot be generated")
    n = n_synthetic or get_dataset(name).train_size
    return (synthetic_images(shape, n, seed), synthetic_images(shape, max(100, n // 10), seed + 1),
            f"synthetic uint8 noise of shape {'x'.join(map(str, shape))} ({reason})", True)


def bench_config(dataset: str, shape: tuple[int, ...], *, variant: str = "balanced", batch_size: int = 100,
                 seed: int = 0, bf16: bool = False, compile: bool = False) -> TrainConfig:
    """The resolved config every trainer of the benchmark shares."""
    return resolve(TrainConfig(dataset=dataset, variant=variant, batch_size=batch_size, seed=seed,
                               bf16=bf16, compile=compile), shape)


def fresh_model(cfg: TrainConfig, shape: tuple[int, ...], device: torch.device):
    """The benchmark's model, with the same initial weights every time it is built."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return build_model(cfg, shape).to(device)


def network_parameters(model: nn.Module) -> int:
    """Parameters of the encoder and the decoder: what the three trainers share."""
    return count_parameters(model.encoder) + count_parameters(model.decoder)


# ---- the three trainers ----------------------------------------------------------------------
# Each has .name, .model (with .encoder and .decoder) and .run(epochs) -> (images, last epoch's loss).

class VaebenchTrainer:
    """vaebench's ``fit``, called as ``train`` calls it; one call per round."""

    name = "vaebench"

    def __init__(self, cfg: TrainConfig, shape, images_u8: torch.Tensor, device: torch.device,
                 workdir: Path, checkpoint_every: int = 1):
        self.cfg, self.device, self.workdir = cfg, device, Path(workdir)
        self.model = fresh_model(cfg, shape, device)
        self.data = images_u8.to(device)  # the whole set lives on the device, as in train()
        self.checkpoint_every = checkpoint_every
        self.calls = 0
        self.fit_seconds: list[float] = []  # fit's own clock: its epochs, without set-up and checkpoints

    def run(self, epochs: int) -> tuple[int, float]:
        # fit resumes from an existing checkpoint: every call gets a new path
        (self.workdir / f"vaebench-{self.calls - 1}.pt").unlink(missing_ok=True)
        res = fit(self.model, lambda e: self.data, epochs=epochs, lr=self.cfg.lr, halve_every=0,
                  batch_size=self.cfg.batch_size, seed=self.cfg.seed + self.calls,
                  checkpoint=self.workdir / f"vaebench-{self.calls}.pt", checkpoint_every=self.checkpoint_every,
                  bf16=self.cfg.bf16, compile=self.cfg.compile, progress=False)
        self.calls += 1
        if res.status != "finished":
            raise RuntimeError(f"vaebench's fit ended {res.status}: {res.reason}")
        self.fit_seconds.append(res.seconds)
        return res.images, res.history[-1]["loss"]


class TutorialTrainer:
    """The loop of the PyTorch tutorials, with the same model, loss and optimizer."""

    name = "tutorial"

    def __init__(self, cfg: TrainConfig, shape, images_u8: torch.Tensor, device: torch.device):
        from torch.utils.data import DataLoader, TensorDataset
        self.device = device
        self.model = fresh_model(cfg, shape, device)
        dataset = TensorDataset(images_u8.float() / 255)  # float CPU tensors, as tutorials keep them
        self.loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)

    def run(self, epochs: int) -> tuple[int, float]:
        images, loss = 0, float("nan")
        self.model.train()
        for _ in range(epochs):
            total, steps = 0.0, 0
            for (x,) in self.loader:
                x = x.to(self.device)
                terms = self.model.loss(x)
                self.optimizer.zero_grad()
                terms["loss"].backward()
                self.optimizer.step()
                self.model.after_step(terms)
                total += terms["loss"].item()
                steps += 1
                images += len(x)
            loss = total / max(steps, 1)
        return images, loss


def pythae_available() -> bool:
    """Whether pythae (the ``bench`` extra) is installed."""
    try:
        import pythae  # noqa: F401
    except ImportError:
        return False
    return True


class PythaeTrainer:
    """pythae's BaseTrainer on its VAE with our encoder and decoder; a round is ``train_step`` per epoch."""

    name = "pythae"

    def __init__(self, cfg: TrainConfig, shape, images_u8: torch.Tensor, device: torch.device, workdir: Path):
        import logging

        from pythae.data.datasets import BaseDataset
        from pythae.models import VAE, VAEConfig
        from pythae.models.base.base_utils import ModelOutput
        from pythae.models.nn import BaseDecoder, BaseEncoder
        from pythae.trainers import BaseTrainer, BaseTrainerConfig
        from pythae.trainers.training_callbacks import TrainingCallback

        for name in list(logging.root.manager.loggerDict):  # pythae logs at INFO to the console
            if name.startswith("pythae"):
                logging.getLogger(name).setLevel(logging.WARNING)

        class Encoder(BaseEncoder):
            def __init__(self, net):
                BaseEncoder.__init__(self)
                self.net = net

            def forward(self, x):
                mu, logvar = self.net(x)                     # each (B, d)
                return ModelOutput(embedding=mu, log_covariance=logvar)

        class Decoder(BaseDecoder):
            def __init__(self, net):
                BaseDecoder.__init__(self)
                self.net = net

            def forward(self, z):  # our decoders give logits; pythae's MSE loss wants the mean in [0, 1]
                return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

        ours = fresh_model(cfg, shape, device)
        model_cfg = VAEConfig(input_dim=tuple(shape), latent_dim=cfg.latent_dim, reconstruction_loss="mse")
        self.model = VAE(model_cfg, encoder=Encoder(ours.encoder), decoder=Decoder(ours.decoder))
        train_cfg = BaseTrainerConfig(
            output_dir=str(workdir), num_epochs=10**6, per_device_train_batch_size=cfg.batch_size,
            per_device_eval_batch_size=cfg.batch_size, learning_rate=cfg.lr, optimizer_cls="Adam",
            steps_saving=None, steps_predict=None, seed=cfg.seed, no_cuda=device.type != "cuda")
        x = images_u8.float() / 255
        self.trainer = BaseTrainer(self.model, BaseDataset(x, torch.zeros(len(x))), None, train_cfg,
                                   callbacks=[TrainingCallback()])
        self.trainer.prepare_training()  # optimizer, output folder, callbacks
        handler = self.trainer.callback_handler  # keep only the silent base callback
        handler.callbacks = [c for c in handler.callbacks if type(c) is TrainingCallback]
        self.epoch = 0

    def run(self, epochs: int) -> tuple[int, float]:
        loss = float("nan")
        for _ in range(epochs):
            self.epoch += 1
            loss = self.trainer.train_step(self.epoch)
        return epochs * len(self.trainer.train_loader.dataset), loss


def make_trainers(cfg: TrainConfig, shape, images_u8: torch.Tensor, device: torch.device, workdir: Path,
                  names=TRAINERS, checkpoint_every: int = 1) -> list:
    """The trainers named in ``names``, each on its own copy of the same initial model."""
    made = []
    for name in names:
        if name == "vaebench":
            made.append(VaebenchTrainer(cfg, shape, images_u8, device, workdir, checkpoint_every))
        elif name == "tutorial":
            made.append(TutorialTrainer(cfg, shape, images_u8, device))
        elif name == "pythae":
            made.append(PythaeTrainer(cfg, shape, images_u8, device, Path(workdir) / "pythae"))
        else:
            raise ValueError(f"unknown trainer {name!r}; choose from {', '.join(TRAINERS)}")
    return made


def race(trainers: list, epochs: int, rounds: int, device: torch.device) -> dict[str, dict]:
    """Run the trainers in alternation, one warm-up round then ``rounds`` timed ones."""
    out = {t.name: {"images_per_second_rounds": [], "seconds_rounds": [], "loss_rounds": [],
                    "peak_memory_bytes": 0, "peak_memory_delta_bytes": 0} for t in trainers}
    for r in range(rounds + 1):
        for t in trainers:
            with PeakMemory(device) as mem:
                sync(device)
                t0 = time.perf_counter()
                images, loss = t.run(epochs)
                sync(device)
                dt = time.perf_counter() - t0
            rec = out[t.name]
            if r == 0:
                rec["warmup_seconds"] = dt
                continue
            rec["images_per_second_rounds"].append(images / dt)
            rec["seconds_rounds"].append(dt)
            rec["loss_rounds"].append(loss)
            rec["images_per_round"] = images
            rec["peak_memory_bytes"] = max(rec["peak_memory_bytes"], mem.peak or 0)
            rec["peak_memory_delta_bytes"] = max(rec["peak_memory_delta_bytes"], mem.delta or 0)
    for t in trainers:
        rec = out[t.name]
        rec["images_per_second"] = statistics.median(rec["images_per_second_rounds"])
        # the fastest round: the uncontended speed when other processes interfere in bursts
        rec["images_per_second_best"] = max(rec["images_per_second_rounds"])
        rec["n_params_network"] = network_parameters(t.model)
        if t.name == "vaebench":  # fit's own clock, for the cost of its set-up and checkpoints
            fit_rounds = t.fit_seconds[1:]  # the first call was the warm-up
            rec["fit_images_per_second"] = statistics.median(rec["images_per_round"] / s for s in fit_rounds)
    return out


def ratios(trainers: dict[str, dict]) -> dict[str, float]:
    """vaebench's images/second over each other trainer's (of the medians, and median per round)."""
    vb = trainers.get("vaebench")
    out = {}
    for name, rec in trainers.items():
        if name == "vaebench" or vb is None:
            continue
        out[f"vaebench_over_{name}"] = vb["images_per_second"] / rec["images_per_second"]
        out[f"vaebench_over_{name}_per_round_median"] = statistics.median(
            a / b for a, b in zip(vb["images_per_second_rounds"], rec["images_per_second_rounds"]))
        out[f"vaebench_over_{name}_best"] = vb["images_per_second_best"] / rec["images_per_second_best"]
    return out


def target_ratio(device: torch.device, cfg: TrainConfig) -> float | None:
    """The project's targets: 1.5x both on the CPU for the small conv net, 3x both on a GPU for the
    CIFAR-10 network at batch 100; None where no target was set."""
    if device.type == "cpu" and cfg.network == "conv":
        return 1.5
    if device.type == "cuda" and cfg.dataset == "cifar10" and cfg.batch_size == 100:
        return 3.0
    return None


# ---- profile, FLOPs, second stage, evaluation, projection ------------------------------------

def profile_vaebench(trainer: VaebenchTrainer, epochs: int, device: torch.device) -> tuple[dict, str]:
    """Where a step of vaebench's fit spends its time: torch.profiler over one call of ``epochs``.

    Returns milliseconds per step by phase, and the profiler's table of the top operators.
    Backward is the sum of autograd's node evaluations, Adam and zero_grad the optimizer's own
    ranges, 'forward, loss and loop' the rest of fit's epoch time; 'per call' is what fit spends
    outside its epochs (optimizer set-up, checkpoint writes), spread over the steps.
    """
    from torch.profiler import ProfilerActivity, profile
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
    from torch.utils.flop_counter import FlopCounterMode
    m = copy.deepcopy(model).train()
    with FlopCounterMode(display=False) as counter:
        m.loss(to_float(x_u8))["loss"].backward()
    return counter.get_total_flops() / len(x_u8)


def measure_stage2(cfg: TrainConfig, model, train_u8: torch.Tensor, device: torch.device, *,
                   epochs: int, rounds: int, workdir: Path) -> dict:
    """Speed of :func:`vaes.train.train_stage2` (latents re-sampled every epoch), in codes/second."""
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


def _torch_fidelity_inception(device: torch.device) -> tuple[Callable, str]:
    """torch-fidelity's extractor (vaebench's default FID engine: uint8 in, TF-style resize to 299),
    built with its weight loading stubbed out."""
    from torch_fidelity import feature_extractor_inceptionv3 as tfi
    cls = tfi.FeatureExtractorInceptionV3
    with mock.patch.object(tfi, "load_state_dict_from_url", lambda *a, **k: None), \
            mock.patch.object(cls, "load_state_dict", lambda self, state, *a, **k: None):
        net = cls("inception-v3-compat", ["2048"])
    net.to(device).eval()
    return (lambda images: net(images)[0]), "torch-fidelity FeatureExtractorInceptionV3, random weights"


def _pytorch_fid_inception(device: torch.device) -> tuple[Callable, str]:
    """pytorch-fid's FID InceptionV3 (float in, bilinear resize to 299), built without its download."""
    from pytorch_fid import inception as pfi

    def offline_fid_inception():  # pytorch-fid's fid_inception_v3 less load_state_dict_from_url
        net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
        net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
        for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            setattr(net, name, pfi.FIDInceptionC(768, channels_7x7=c7))
        net.Mixed_7b, net.Mixed_7c = pfi.FIDInceptionE_1(1280), pfi.FIDInceptionE_2(2048)
        return net

    with mock.patch.object(pfi, "fid_inception_v3", offline_fid_inception):
        net = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    net.to(device).eval()
    return (lambda images: net(images.float() / 255.0)[0].flatten(1)), "pytorch-fid InceptionV3, random weights"


def inception_extractor(device: torch.device) -> tuple[Callable, str]:
    """The real Inception-v3 feature path with random weights: torch-fidelity's, else pytorch-fid's.
    Speed does not depend on the weights; the features mean nothing."""
    try:
        return _torch_fidelity_inception(device)
    except ImportError:
        return _pytorch_fid_inception(device)


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
    try:
        fn, what = inception_extractor(device)
    except ImportError as e:
        out["inception"] = {"skipped": f"neither torch-fidelity nor pytorch-fid is importable: {e}"}
    else:
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
    shape = (3, 32, 32)
    cfg = bench_config("cifar10", shape, batch_size=100, seed=args.seed, bf16=args.bf16, compile=args.compile)
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


# ---- reporting ---------------------------------------------------------------------------------

def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.{digits}g}"
    return str(v)


def _ratio_cells(res: dict, name: str) -> tuple[str, str, str]:
    """vaebench's ratio over ``name``: of the medians, median per round, of the best rounds."""
    keys = (f"vaebench_over_{name}", f"vaebench_over_{name}_per_round_median", f"vaebench_over_{name}_best")
    return tuple("-" if res["ratios"].get(k) is None else f"{res['ratios'][k]:.2f}x" for k in keys)


def _projection_line(p: dict) -> str:
    fid = f" + {p['fid_hours']:.2f} h FIDs" if p["fid_hours"] else ""
    return (f"Paper's CIFAR-10 protocol ({p['source']}): {p['first_stage_hours']:.1f} h first stage + "
            f"{p['stage2_hours']:.1f} h second stage{fid} = {p['total_hours']:.1f} h")


def markdown(res: dict) -> str:
    """A short Markdown report of one result."""
    d = res["dataset"]
    options = "".join([", bf16" if res["bf16"] else "", ", compiled" if res["compile"] else ""])
    lines = [f"# Speed: {d['name']} on {res['device']['name']}", "",
             f"{res['device']['type']}, torch {res['torch']}, {res['threads']} threads, load average "
             f"{res['load_average']['before'][0]:.1f} on {res['cores']} cores; network {res['network']['name']} "
             f"({res['network']['n_params']:,} parameters), variant {res['variant']}{options}, Adam, batch "
             f"{res['batch_size']}, {d['n_train']} {'synthetic' if d['synthetic'] else 'real'} images, "
             f"{res['epochs_per_round']} epochs per round, median of {res['rounds']} rounds.", "",
             "| trainer | images/s (median) | vaebench is | median of per-round ratios | best round | "
             "vaebench is (best) | peak memory, MiB (growth in the round) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, rec in res["trainers"].items():
        r, rr, rb = _ratio_cells(res, name)
        lines.append(f"| {name} | {_fmt(rec['images_per_second'])} | {r} | {rr} | "
                     f"{_fmt(rec['images_per_second_best'])} | {rb} | {rec['peak_memory_bytes'] / 2**20:,.0f} "
                     f"(+{rec['peak_memory_delta_bytes'] / 2**20:,.0f}) |")
    for k, v in res["targets"].items():
        lines.append(f"\nTarget {k} >= {v['target']}x: {v['ratio']:.2f}x, {'met' if v['met'] else 'not met'}.")
    if res.get("flops"):
        f = res["flops"]
        peak = (f", {100 * f['fraction_of_peak']:.2f}% of {f['peak_name']} ({f['peak_tflops']:g} TFLOP/s)"
                if f.get("fraction_of_peak") is not None else "")
        lines += ["", f"Model FLOPs per image (forward + backward, {f['precision']}): {f['per_image']:.3g}; "
                      f"vaebench achieves {f['vaebench_tflops']:.3g} TFLOP/s{peak}."]
    if res.get("profile"):
        p = res["profile"]
        lines += ["", f"Profile of vaebench's step ({p['note']}): " + ", ".join(
            f"{k[:-3].replace('_', ' ')} {v:.2f} ms" for k, v in p.items() if k.endswith("_ms")) + "."]
    if res.get("stage2"):
        s = res["stage2"]
        lines += ["", f"Second stage (MLP {s['depth']} x {s['width']}, {s['n_params']:,} parameters): "
                      f"{_fmt(s['codes_per_second'])} codes/s."]
    ev = res.get("eval") or {}
    if ev.get("inception", {}).get("images_per_second"):
        i = ev["inception"]
        per_bs = ", ".join(f"batch {bs}: {_fmt(v['images_per_second'])} images/s"
                           for bs, v in i["by_batch_size"].items())
        lines += ["", f"Inception features ({i['extractor']}): {per_bs}; one FID on 10k + 10k images: "
                      f"{i['fid_10k_seconds'] / 60:.1f} min."]
    if ev.get("classifier", {}).get("images_per_second"):
        lines += ["", f"Classifier distance: {_fmt(ev['classifier']['images_per_second'])} images/s."]
    if res.get("projection"):
        lines += ["", _projection_line(res["projection"]) + "."]
    lines += ["", *(f"- {n}" for n in res["notes"])]
    return "\n".join(lines) + "\n"


def print_summary(res: dict) -> None:
    print(f"\n{res['dataset']['name']} on {res['device']['name']} ({res['device']['type']}, {res['threads']} "
          f"threads), batch {res['batch_size']}, {res['rounds']} rounds x {res['epochs_per_round']} epochs, "
          f"load average {res['load_average']['before'][0]:.1f} on {res['cores']} cores")
    for name, rec in res["trainers"].items():
        r, rr, rb = _ratio_cells(res, name)
        tail = "" if name == "vaebench" else f"   vaebench is {r} (per round {rr}, best rounds {rb})"
        best = rec["images_per_second_best"]
        print(f"  {name:<9} {rec['images_per_second']:>10,.0f} images/s (best {best:,.0f}){tail}")
    for k, v in res["targets"].items():
        print(f"  target {k} >= {v['target']}x: {v['ratio']:.2f}x, {'met' if v['met'] else 'NOT met'}")
    if res.get("stage2"):
        print(f"  stage 2   {res['stage2']['codes_per_second']:>10,.0f} codes/s")
    ev = res.get("eval") or {}
    for k in ("inception", "classifier"):
        if ev.get(k, {}).get("images_per_second"):
            print(f"  eval {k:<10} {ev[k]['images_per_second']:>8,.1f} images/s")
    if res.get("projection"):
        print("  " + _projection_line(res["projection"]))


# ---- the benchmark -------------------------------------------------------------------------------

def run_one(dataset: str, args, device: torch.device) -> dict:
    """Benchmark one data set; writes OUT/<device>-<dataset>.json and .md and returns the result."""
    train_u8, test_u8, note, synthetic = load_images(dataset, args.data_root, synthetic=args.synthetic,
                                                     seed=args.seed)
    shape = tuple(train_u8.shape[1:])
    cfg = bench_config(dataset, shape, variant=args.variant, batch_size=args.batch_size, seed=args.seed,
                       bf16=args.bf16, compile=args.compile)
    n_train = args.n_train or len(train_u8)
    if device.type == "cpu" and not args.n_train:
        n_train = min(n_train, CPU_TRAIN_CAP[cfg.network])
    n_train = n_train // cfg.batch_size * cfg.batch_size  # whole batches: fit drops a partial one, DataLoaders not
    if n_train == 0:
        raise ValueError(f"fewer training images than one batch of {cfg.batch_size}")
    train_u8 = train_u8[:n_train]
    epochs = args.epochs or max(1, math.ceil(TARGET_IMAGES[(device.type, cfg.network)] / n_train))
    names = [n for n in TRAINERS if n not in args.skip]
    notes = [f"vaebench: fit() as train() calls it (uint8 data on the device, a checkpoint every "
             f"{args.checkpoint_every} epoch(s)); wall clock of the whole call",
             "tutorial: DataLoader(TensorDataset(float CPU tensors), shuffle=True), .to(device) and loss.item() "
             "per step, the same model.loss and after_step"]
    if "pythae" in names and not pythae_available():
        names.remove("pythae")
        notes.append("pythae: skipped, not installed (pip install -e '.[bench]')")
    elif "pythae" in names:
        notes.append("pythae 0.1.2: BaseTrainer.train_step per epoch on its VAE with our encoder and decoder; its "
                     "loss is 1/2 SSE + KL (gamma = 1), not the variant's; its set-up, best-model copies, saving, "
                     "progress bar and console logs are left out (favours pythae)")
    if synthetic:
        notes.append(f"data: {note}")
    with tempfile.TemporaryDirectory(prefix="vaebench-speed-") as tmp:
        tmp = Path(tmp)
        t_section = time.perf_counter()
        trainers = make_trainers(cfg, shape, train_u8, device, tmp, names, args.checkpoint_every)
        sections = {"setup": time.perf_counter() - t_section}
        counts = {t.name: network_parameters(t.model) for t in trainers}
        if len(set(counts.values())) != 1:
            raise AssertionError(f"the trainers do not share one network: parameter counts {counts}")
        load_before = os.getloadavg()
        t_section = time.perf_counter()
        timed = race(trainers, epochs, args.rounds, device)
        sections["race"] = time.perf_counter() - t_section
        load_after = os.getloadavg()
        if max(load_before[0], load_after[0]) > cores() - 0.5:
            notes.append(f"busy machine: load average {load_before[0]:.1f} -> {load_after[0]:.1f} on {cores()} "
                         "cores; the per-round ratios are the steadier numbers (--threads 1 helps)")
        res = {
            "benchmark": "speed", "version": 1,
            "device": {"type": device.type, "name": device_name(device)},
            "torch": torch.__version__, "python": platform.python_version(), "pythae": _version("pythae"),
            "threads": torch.get_num_threads(), "cores": cores(),
            "cudnn_benchmark": torch.backends.cudnn.benchmark if device.type == "cuda" else None,
            "load_average": {"before": load_before, "after": load_after},
            "dataset": {"name": dataset, "shape": list(shape), "n_train": n_train, "synthetic": synthetic,
                        "note": note},
            "network": {"name": cfg.network, "n_params": counts[names[0]], "latent_dim": cfg.latent_dim},
            "variant": cfg.variant, "batch_size": cfg.batch_size, "lr": cfg.lr, "optimizer": "Adam",
            "bf16": cfg.bf16, "compile": cfg.compile, "epochs_per_round": epochs, "rounds": args.rounds,
            "section_seconds": sections, "trainers": timed, "ratios": ratios(timed), "notes": notes,
        }
        target = target_ratio(device, cfg)
        res["targets"] = {} if target is None or "vaebench" not in timed else {
            f"vaebench_over_{n}": {"target": target, "ratio": res["ratios"][f"vaebench_over_{n}"],
                                   "met": res["ratios"][f"vaebench_over_{n}"] >= target}
            for n in timed if n != "vaebench"}
        if "vaebench" in timed:
            measure_vaebench_extras(res, trainers[0], cfg, train_u8, test_u8, epochs, device, args, tmp)
    out = Path(args.out)
    stem = f"{device.type}-{dataset}"
    table = res.pop("profile_table", None)
    write_json(out / f"{stem}.json", res)
    (out / f"{stem}.md").write_text(markdown(res))
    if table:
        (out / f"{stem}-profile.txt").write_text(table)
    print_summary(res)
    print(f"  wrote {out / stem}.json and .md")
    return res


def measure_vaebench_extras(res: dict, vb: VaebenchTrainer, cfg: TrainConfig, train_u8, test_u8, epochs: int,
                            device: torch.device, args, tmp: Path) -> None:
    """FLOPs, profile, second stage, evaluation and the CIFAR-10 projection, into ``res``."""
    sections = res["section_seconds"]
    fpi = flops_per_image(vb.model, train_u8[:cfg.batch_size].to(device))
    for rec in res["trainers"].values():
        rec["tflops"] = fpi * rec["images_per_second"] / 1e12
    precision = ("bf16 autocast" if cfg.bf16 else
                 "fp32 (cuDNN convolutions in TF32 by default)" if device.type == "cuda" else "fp32")
    res["flops"] = {"per_image": fpi, "vaebench_tflops": res["trainers"]["vaebench"]["tflops"],
                    "precision": precision,
                    "counted": "torch.utils.flop_counter.FlopCounterMode (matmuls and convolutions), one "
                               "forward + backward of the loss"}
    if device.type == "cuda":
        res["flops"].update(peak_tflops=args.peak_tflops, peak_name=args.peak_name,
                            fraction_of_peak=res["flops"]["vaebench_tflops"] / args.peak_tflops)
    if args.profile:
        res["profile"], res["profile_table"] = profile_vaebench(vb, epochs, device)
    if "stage2" not in args.skip:
        t0 = time.perf_counter()
        res["stage2"] = measure_stage2(cfg, vb.model, train_u8, device, epochs=args.stage2_epochs,
                                       rounds=args.stage2_rounds, workdir=tmp)
        sections["stage2"] = time.perf_counter() - t0
    if "eval" not in args.skip:
        t0 = time.perf_counter()
        cpu = device.type == "cpu"
        res["eval"] = measure_eval(vb.model, test_u8, device, n_images=args.eval_images or (50 if cpu else 2000),
                                   batch_sizes=args.eval_batch_sizes or ([50] if cpu else [50, 500]))
        sections["eval"] = time.perf_counter() - t0
    if "projection" not in args.skip:
        t0 = time.perf_counter()
        eval_ips = (res.get("eval") or {}).get("inception", {}).get("images_per_second")
        if cfg.dataset == "cifar10" and res.get("stage2"):
            res["projection"] = project_paper_cifar10(res["trainers"]["vaebench"]["images_per_second"],
                                                      res["stage2"]["codes_per_second"], eval_ips,
                                                      "measured in this run")
        else:
            first, second = probe_cifar10(device, args, tmp / "probe")
            res["projection"] = project_paper_cifar10(first, second, eval_ips,
                                                      "vaebench on a short synthetic CIFAR-10-shaped probe")
        sections["projection"] = time.perf_counter() - t0


def _version(pkg: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", nargs="+", default=["digits"], choices=[d for d in list_datasets() if get_dataset(d).shape is not None],
                   help="data sets to time (default: digits)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per trainer and round (default: ~6k images on the CPU, an epoch on CUDA)")
    p.add_argument("--rounds", type=int, default=7, help="timed rounds after a warm-up round (median reported)")
    p.add_argument("--batch-size", type=int, default=100, help="the paper's batch size")
    p.add_argument("--n-train", type=int, default=0,
                   help="training images (0: all on CUDA; on the CPU at most 6000 for the conv net, 300 for "
                        "the ResNet)")
    p.add_argument("--variant", default="balanced", help="balancing variant of vaebench's trainer")
    p.add_argument("--synthetic", action="store_true", help="time on uint8 noise of the data set's shape")
    p.add_argument("--data-root", default="data")
    p.add_argument("--checkpoint-every", type=int, default=1, help="vaebench's checkpoint interval in epochs")
    p.add_argument("--bf16", action="store_true", help="vaebench's trainer in bf16 autocast (the others: fp32)")
    p.add_argument("--compile", action="store_true", help="vaebench's trainer with torch.compile")
    p.add_argument("--stage2-epochs", type=int, default=1, help="second-stage epochs per round")
    p.add_argument("--stage2-rounds", type=int, default=2)
    p.add_argument("--eval-images", type=int, default=0,
                   help="images through Inception (0: 50 on the CPU, 2000 on CUDA)")
    p.add_argument("--eval-batch-sizes", type=lambda s: [int(v) for v in s.split(",")], default=None,
                   help="comma-separated Inception batch sizes (default: 50 on the CPU, 50,500 on CUDA)")
    p.add_argument("--peak-tflops", type=float, default=DEFAULT_PEAK_TFLOPS,
                   help=f"the device's peak for the achieved fraction (default {DEFAULT_PEAK_TFLOPS:g}: "
                        f"{DEFAULT_PEAK_NAME})")
    p.add_argument("--peak-name", default=DEFAULT_PEAK_NAME)
    p.add_argument("--skip", type=lambda s: [v for v in s.split(",") if v], default=[],
                   help=f"comma-separated parts to leave out: {', '.join(SECTIONS)}")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: torch's default). On a shared machine 1 is much steadier: an "
                        "OpenMP team waiting for a descheduled thread stalls every op")
    p.add_argument("--profile", action="store_true",
                   help="also profile vaebench's step: phases in the JSON, operators in OUT/<stem>-profile.txt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/speed")
    args = p.parse_args(argv)
    bad = set(args.skip) - set(SECTIONS)
    if bad:
        p.error(f"--skip {','.join(sorted(bad))}: choose from {', '.join(SECTIONS)}")
    for name in ("rounds", "batch_size", "checkpoint_every", "stage2_epochs", "stage2_rounds"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    """Command line; returns the results, one per data set."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    if load > cores() - 0.5:
        print(f"warning: load average {load:.1f} on {cores()} cores: other processes compete for the CPU and "
              "CPU timings will be noisy (--threads 1 is steadier)", file=sys.stderr)
    device = pick_device(args.device)
    return [run_one(d, args, device) for d in args.dataset]


if __name__ == "__main__":
    main()
