"""Evaluation of a trained run (grids now; FID and classifier distances come with fid.py)."""
from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import save_image

from vaes.metrics import to_float


@torch.no_grad()
def save_grids(model, stage2, data, out: Path, n: int = 64, seed: int = 0) -> None:
    """samples.png, samples_stage2.png and reconstructions.png (originals above reconstructions)."""
    model.eval()
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    save_image(model.sample(n, g).float().cpu(), out / "samples.png", nrow=8)
    if stage2 is not None:
        stage2.eval()
        z = stage2.sample(n, g)
        save_image(model.decode(z).float().cpu(), out / "samples_stage2.png", nrow=8)
    x = to_float(data.test[:32].to(device))
    x_hat = model.decode(model.encode(x)[0])
    save_image(torch.cat([x, x_hat]).float().cpu(), out / "reconstructions.png", nrow=8)


def evaluate_models(cfg, model, stage2, data, out: Path) -> dict:
    save_grids(model, stage2, data, Path(out))
    return {}
