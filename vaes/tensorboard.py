"""Live curves: per-epoch scalars and sample grids to TensorBoard (``tensorboard=true``).

Event files go into the run folder itself, so ``tensorboard --logdir OUT/runs`` shows one
TensorBoard run per vaebench run, named by its folder (label, seed, run id). Tags, per stage
(``stage1/``, ``stage2/``): every loss term, gamma, gamma / sqrt(MSE) (1 is the optimum),
the learning rate and images (or codes) per second; ``stage1/samples``, a grid of prior
samples every few epochs. Writing never touches the run's random stream or BatchNorm
statistics (a private generator, eval mode for the grid), so a run trains the same with it.

The ``tensorboard`` package is an optional extra (``pip install -e ".[tensorboard]"``).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torchvision.utils import make_grid

from vaes.networks import eval_mode

TERMS = ("loss", "recon", "kl", "mse")


def summary_writer(log_dir: Path):
    """torch's SummaryWriter into ``log_dir``; a clear error when tensorboard is absent."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # needs the optional tensorboard package
    except ImportError as e:
        raise RuntimeError(f"tensorboard=true needs the tensorboard package ({e}); "
                           "pip install -e \".[tensorboard]\", or set tensorboard=false") from None
    return SummaryWriter(log_dir=str(log_dir))


class EpochLogger:
    """An ``on_epoch`` hook for :func:`vaes.fit.fit` writing one stage's curves."""

    def __init__(self, writer, stage: int, images_per_epoch: int, model=None, grid_every: int = 0,
                 n_grid: int = 64, seed: int = 0):
        self.writer, self.stage, self.images_per_epoch = writer, stage, images_per_epoch
        self.model, self.grid_every, self.n_grid, self.seed = model, grid_every, n_grid, seed
        self.last = time.perf_counter()

    def __call__(self, row: dict) -> None:
        now = time.perf_counter()
        prefix, epoch = f"stage{self.stage}", int(row["epoch"])
        for k in TERMS:
            self.writer.add_scalar(f"{prefix}/{k}", row[k], epoch)
        if row.get("gamma") is not None:
            self.writer.add_scalar(f"{prefix}/gamma", row["gamma"], epoch)
            if row["mse"] > 0:
                self.writer.add_scalar(f"{prefix}/gamma_ratio", row["gamma"] / math.sqrt(row["mse"]), epoch)
        self.writer.add_scalar(f"{prefix}/lr", row["lr"], epoch)
        # wall time between two epoch ends: the first includes the set-up, the rest are clean
        self.writer.add_scalar(f"{prefix}/images_per_second", self.images_per_epoch / max(now - self.last, 1e-9), epoch)
        if self.model is not None and self.grid_every and (epoch == 1 or epoch % self.grid_every == 0):
            self.writer.add_image(f"{prefix}/samples", self._grid(), epoch)
        self.writer.flush()
        self.last = time.perf_counter()

    @torch.no_grad()
    def _grid(self) -> torch.Tensor:
        model = self.model
        device = next(model.parameters()).device
        g = torch.Generator(device=device).manual_seed(self.seed)  # the same z every time: a film of training
        z = torch.randn(self.n_grid, model.latent_dim, generator=g, device=device)
        with eval_mode(model):  # debiased BatchNorm statistics: mid-training they are far from the start's
            x = model.decode(z).float().clamp(0, 1).cpu()
        return make_grid(x, nrow=int(math.sqrt(self.n_grid)), padding=1)
