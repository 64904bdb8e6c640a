"""The data, the model and the three trainers the speed benchmark races, and how the race is run.

Each trainer has ``.name``, ``.model`` (with ``.encoder`` and ``.decoder``) and
``.run(epochs) -> (images, last epoch's loss)``; :func:`race` runs them in alternation.
"""
from __future__ import annotations

import logging
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from vaes.build import build_model, dataset_shape, resolve
from vaes.config import TrainConfig
from vaes.data import DataMissing, get_dataset, load_dataset
from vaes.networks import count_parameters
from vaes.trainer import fit
from benchmarks.speed.machine import PeakMemory, sync

TRAINERS = ("vaebench", "tutorial", "pythae")
PAPER_DATASET = "cifar10"  # the paper's headline protocol: the GPU target's network and the projection


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


def bench_config(dataset: str, shape: tuple[int, ...], *, variant: str = TrainConfig.variant, batch_size: int = 100,
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
        import pythae  # noqa: F401  (optional: the bench extra; only asked whether it is there)
    except ImportError:
        return False
    return True


class PythaeTrainer:
    """pythae's BaseTrainer on its VAE with our encoder and decoder; a round is ``train_step`` per epoch."""

    name = "pythae"

    def __init__(self, cfg: TrainConfig, shape, images_u8: torch.Tensor, device: torch.device, workdir: Path):
        # pythae is optional (pip install -e ".[bench]"): imported only when its trainer is raced
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
    if device.type == "cuda" and cfg.dataset == PAPER_DATASET and cfg.batch_size == 100:
        return 3.0
    return None

