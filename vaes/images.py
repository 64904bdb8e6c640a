"""Operations on uint8 images (N, C, H, W) that the data sets are made with: the procedural
shapes' renderer and the JPEG round trip both originals put CIFAR-10 through (vaes/data.py
registers the data sets that use them)."""
from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image

# factor -> number of values: 3 shapes (square, ellipse, heart), 6 scales, 10 rotations, 8 x 8 positions
SHAPE_FACTORS = {"shape": 3, "scale": 6, "rotation": 10, "pos_x": 8, "pos_y": 8}


def render_shapes(factors: torch.Tensor, size: int, supersample: int = 2) -> torch.Tensor:
    """Render (N, 5) integer factors (shape, scale, rotation, pos_x, pos_y) to uint8 (N, 1, S, S)."""
    n = len(factors)
    f = factors.float()
    scale = 0.10 + 0.04 * f[:, 1]                           # half-size as a fraction of the image
    theta = f[:, 2] * (2 * math.pi / SHAPE_FACTORS["rotation"])
    px = 0.3 + 0.4 * f[:, 3] / (SHAPE_FACTORS["pos_x"] - 1)  # centre stays inside the frame
    py = 0.3 + 0.4 * f[:, 4] / (SHAPE_FACTORS["pos_y"] - 1)
    s = size * supersample
    g = (torch.arange(s, dtype=torch.float32) + 0.5) / s
    v, u = torch.meshgrid(g, g, indexing="ij")             # (s, s): rows are y
    dx = (u[None] - px[:, None, None]) / scale[:, None, None]
    dy = (v[None] - py[:, None, None]) / scale[:, None, None]
    c, si = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    x, y = c * dx + si * dy, -si * dx + c * dy               # rotate into the shape's frame
    square = torch.maximum(x.abs(), y.abs()) <= 0.8
    ellipse = x.pow(2) + (y / 0.55).pow(2) <= 1
    hx, hy = 1.1 * x, -1.1 * y + 0.15                         # heart curve (x^2+y^2-1)^3 = x^2 y^3
    heart = (hx.pow(2) + hy.pow(2) - 1).pow(3) - hx.pow(2) * hy.pow(3) <= 0
    kind = factors[:, 0][:, None, None]
    mask = torch.where(kind == 0, square, torch.where(kind == 1, ellipse, heart)).float()
    img = torch.nn.functional.avg_pool2d(mask[:, None], supersample)  # anti-alias
    return (img * 255).round().to(torch.uint8).view(n, 1, size, size)


def jpeg_round_trip(images: torch.Tensor, quality: int) -> torch.Tensor:
    """uint8 (N, C, H, W) images saved as JPEG by PIL at ``quality`` and read back.

    Both originals store CIFAR-10 this way before training and testing (daib13/TwoStageVAE
    preprocess.py writes each image with scipy's imsave to .jpg, which is PIL at its default
    quality 75, and reads it back; asperti/BalancingVAE's loader does the same through imageio),
    and Dai confirms that it changes FID (https://github.com/daib13/TwoStageVAE/issues/9). Chroma subsampling 4:2:0 is
    named, as PIL's default at quality 75 is; grey images (C = 1) have no chroma to subsample.
    """
    c = images.shape[1]
    mode = {1: "L", 3: "RGB"}[c]
    out = torch.empty_like(images)
    for i, img in enumerate(images.permute(0, 2, 3, 1).numpy()):  # (H, W, C) each
        buf = io.BytesIO()
        Image.fromarray(img[..., 0] if c == 1 else img, mode).save(
            buf, format="JPEG", quality=quality, subsampling="4:2:0")
        buf.seek(0)
        back = np.array(Image.open(buf).convert(mode))  # a writable copy
        out[i] = torch.from_numpy(back.reshape(img.shape)).permute(2, 0, 1)
    return out
