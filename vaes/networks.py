"""Encoders and decoders shared by every variant, chosen by image size.

- ``resnet``: the residual network of Dai & Wipf (2019) as used by Asperti & Trentin
  (2020), from the originals' layer list: 3 scales for 32x32 (5,190,467 parameters), 4 for
  64x64 (19,321,667), counted as the originals count them (trainable parameters only).
  Counted by hand: a residual block of c channels is 27c^2 + 7c (two BN, two 3x3 convs, a 3x3
  shortcut); at 32x32 the encoder is 896 (first conv) + blocks of 32, 64, 128 + strided convs
  32->64, 64->128 + a residual dense block 128->512 (394,752) + two 512->64 heads (65,664) =
  1,135,840, and the decoder a dense 64->2x2x512 (133,120), then per scale a transposed conv
  and a block at 256, 128, 64 and 32 channels (2x2 -> 32x32) and a last conv (867) =
  4,054,627.
- ``conv``: a small conv net for 28x28 and 8x8 grey images (MNIST, Fashion-MNIST, digits).
- ``mlp``: the second stage of the two-stage VAE, on latent vectors.

Every encoder maps x (B, C, H, W) in [0, 1] to (mu, logvar), each (B, d); every decoder
maps z (B, d) to logits of the shape of x (the VAE applies the sigmoid).
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
from torch import nn


# The originals are TensorFlow. Two conventions carried over, each stated where it is used:
# - BatchNorm: their batch_norm uses decay 0.999 and eps 1e-5 (the eps argument of the
#   originals' own batch_norm helper). TF's moving average is m <- decay*m + (1-decay)*x, so
#   TF decay 0.999 == PyTorch momentum 0.001; eps is the same number in both.
# - Initialisation: tf.layers.conv2d / dense and tf.keras Conv2D / Conv2DTranspose default to
#   glorot-uniform kernels (== torch xavier_uniform_) and zero biases.
BN_MOMENTUM = 0.001   # TF decay 0.999 == PyTorch momentum 0.001
BN_EPS = 1e-5         # the originals' batch_norm(eps=1e-5)


BN_EVAL = ("debiased", "running")


@contextlib.contextmanager
def eval_mode(model: nn.Module, bn_eval: str = "debiased") -> Iterator[nn.Module]:
    """``model`` in eval mode within the block, its BatchNorm statistics chosen by ``bn_eval``;
    on leaving, its train/eval flag and every buffer are as they were (the checkpointed
    running statistics are never changed).

    'debiased' is TensorFlow's zero-debiased moving average, which the originals evaluate with
    (their batch_norm's assign_moving_average, zero_debias on by default): PyTorch's running
    statistics start at mean 0, var 1 and after t steps at decay 0.999 still hold 0.999^t of
    that start (61% after one CIFAR-10 epoch of 500 steps), so a short run would sample from
    mostly made-up statistics. Removing the start's share, (running - decay^t * start) /
    (1 - decay^t), leaves exactly TF's debiased average of the batch statistics. For the full
    protocol it changes nothing: 700 CIFAR-10 epochs are 350,000 steps and 0.999^350000 is
    about e^-350, far below float precision. 'running' keeps PyTorch's values as they are.
    Nested blocks debias once. Networks without BatchNorm (conv, mlp) are untouched.
    """
    if bn_eval not in BN_EVAL:
        raise ValueError(f"bn_eval={bn_eval!r} is not valid; choose one of: {', '.join(BN_EVAL)}")
    was_training = model.training
    saved = []
    for m in model.modules():
        if (bn_eval == "debiased" and isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d))
                and m.track_running_stats and m.momentum is not None and not getattr(m, "_debiased", False)):
            saved.append((m, m.running_mean.clone(), m.running_var.clone()))
            t = int(m.num_batches_tracked)
            if t > 0:  # t = 0: nothing was tracked, the start values are all there is
                w = (1.0 - m.momentum) ** t  # the start's share of the running value
                m.running_mean.div_(1.0 - w)                      # start 0
                m.running_var.sub_(w).div_(1.0 - w).clamp_(min=0)  # start 1
            m._debiased = True
    model.eval()
    try:
        yield model
    finally:
        for m, mean, var in saved:
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m._debiased = False
        model.train(was_training)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)  # TF decay 0.999, eps 1e-5


def _tf_init(module: nn.Module) -> None:
    """Glorot-uniform kernels and zero biases, TF's defaults for conv and dense layers."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)   # TF default kernel_initializer: glorot_uniform
            if m.bias is not None:
                nn.init.zeros_(m.bias)          # TF default bias_initializer: zeros


class ResBlock(nn.Module):
    """Two (BN, ReLU, 3x3 conv) steps plus a 3x3 conv shortcut on the block's input."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.body = nn.Sequential(
            _bn(c_in), nn.ReLU(), nn.Conv2d(c_in, c_out, 3, padding=1),
            _bn(c_out), nn.ReLU(), nn.Conv2d(c_out, c_out, 3, padding=1),
        )
        self.shortcut = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


class ResFC(nn.Module):
    """Residual dense block: two (ReLU, dense) steps plus a dense shortcut on the input."""

    def __init__(self, d_in: int, width: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Linear(d_in, width), nn.ReLU(), nn.Linear(width, width))
        self.shortcut = nn.Linear(d_in, width)

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


class ResNetEncoder(nn.Module):
    """Encoder of the originals' ``Resnet``: a 3x3 conv to ``base`` channels, per scale one
    ResBlock with a strided 3x3 conv (channels doubling) between scales, global average
    pooling, one ResFC of width ``fc``, and dense heads for the mean and log-sd of q(z|x).

    The originals' spread head outputs log sd; we return log-variance = 2 * log sd (the same
    layer, the same parameters), as every encoder here does."""

    def __init__(self, channels: int, latent_dim: int, scales: int, base: int = 32, fc: int = 512):
        super().__init__()
        dim = base
        layers: list[nn.Module] = [nn.Conv2d(channels, dim, 3, padding=1)]
        for s in range(scales):
            layers.append(ResBlock(dim, dim))
            if s + 1 < scales:  # stride-2 3x3 conv between scales ('same' padding)
                layers.append(nn.Conv2d(dim, 2 * dim, 3, stride=2, padding=1))
                dim *= 2
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), ResFC(dim, fc)]
        self.body = nn.Sequential(*layers)
        self.mu = nn.Linear(fc, latent_dim)
        self.logsd = nn.Linear(fc, latent_dim)
        _tf_init(self)

    def forward(self, x):
        h = self.body(x)                                      # (B, fc)
        return self.mu(h), 2.0 * self.logsd(h)                # mean, log-variance


def decoder_widths(image_size: int, base: int = 32) -> list[int]:
    """Channel widths at resolutions 2, 4, ..., image_size: min(base * 2^k, 1024) with k
    counted back from the output (k = 0 at full resolution)."""
    ups = int(math.log2(image_size // 2))
    if 2 * 2**ups != image_size:
        raise ValueError(f"image size must be a power of two, got {image_size}")
    return [min(base * 2**k, 1024) for k in range(ups, -1, -1)]


class ResNetDecoder(nn.Module):
    """Decoder of the originals' ``Resnet``: dense to a 2x2 map, then per doubling a 3x3
    stride-2 transposed conv and one ResBlock, a last 3x3 conv to the image channels.
    Returns logits; the VAE applies the sigmoid (the originals' last op)."""

    def __init__(self, channels: int, latent_dim: int, image_size: int, scales: int | None = None,
                 base: int = 32):
        super().__init__()
        dims = decoder_widths(image_size, base)               # 512,256,128,64,32 for 32x32
        self.dim0 = dims[0]
        self.fc = nn.Linear(latent_dim, dims[0] * 4)
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            # 3x3, stride 2, TF 'same': padding 1 and output_padding 1 exactly double H, W
            layers += [nn.ConvTranspose2d(a, b, 3, stride=2, padding=1, output_padding=1),
                       ResBlock(b, b)]
        layers.append(nn.Conv2d(dims[-1], channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        _tf_init(self)

    def forward(self, z):
        h = self.fc(z).view(-1, self.dim0, 2, 2)              # (B, dim0, 2, 2)
        return self.body(h)                                   # (B, C, H, W) logits


class ConvEncoder(nn.Module):
    """Small conv encoder for 8x8 and 28x28 grey images: two strided convs and a dense layer."""

    def __init__(self, channels: int, latent_dim: int, image_size: int, width: int = 32, fc: int = 256):
        super().__init__()
        s = (image_size + 3) // 4                             # spatial size after two stride-2 convs
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(2 * width * s * s, fc), nn.ReLU(),
        )
        self.mu = nn.Linear(fc, latent_dim)
        self.logvar = nn.Linear(fc, latent_dim)

    def forward(self, x):
        h = self.body(x)
        return self.mu(h), self.logvar(h)


class ConvDecoder(nn.Module):
    """Mirror of ConvEncoder with transposed convs; crops to the image size (28 = 32 - 4)."""

    def __init__(self, channels: int, latent_dim: int, image_size: int, width: int = 32, fc: int = 256):
        super().__init__()
        self.s = (image_size + 3) // 4
        self.width = width
        self.image_size = image_size
        self.fc = nn.Sequential(nn.Linear(latent_dim, fc), nn.ReLU(),
                                nn.Linear(fc, 2 * width * self.s * self.s), nn.ReLU())
        self.body = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1),
        )

    def forward(self, z):
        h = self.fc(z).view(-1, 2 * self.width, self.s, self.s)
        out = self.body(h)                                    # (B, C, 4s, 4s)
        return out[..., : self.image_size, : self.image_size]


class MLP(nn.Module):
    """``depth`` dense ReLU layers of ``width``, then a linear output on [last hidden, input].

    Both originals concatenate the MLP's input to its last hidden layer before the output
    layers, in the second stage's encoder and decoder (Dai & Wipf 2019, ``daib13/TwoStageVAE``;
    Asperti & Trentin 2020, ``asperti/BalancingVAE``). (B, d_in) -> (B, d_out).
    """

    def __init__(self, d_in: int, d_out: int, width: int, depth: int):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(d_in if i == 0 else width, width), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear((width if depth else 0) + d_in, d_out)

    def forward(self, x):
        h = self.body(x)
        return self.out(torch.cat([h, x], dim=1) if len(self.body) else x)


class MLPEncoder(nn.Module):
    """Second-stage encoder: z (B, d) -> (mu, logvar) of u, each (B, d_u)."""

    def __init__(self, d_in: int, latent_dim: int, width: int, depth: int):
        super().__init__()
        self.body = MLP(d_in, 2 * latent_dim, width, depth)

    def forward(self, z):
        return self.body(z).chunk(2, dim=1)


def build_networks(kind: str, shape: tuple[int, ...], latent_dim: int, **kw) -> tuple[nn.Module, nn.Module]:
    """Encoder and decoder of ``kind`` ('resnet', 'conv', 'mlp') for data of ``shape``."""
    if kind == "mlp":
        (d,) = shape
        return (MLPEncoder(d, latent_dim, kw["width"], kw["depth"]),
                MLP(latent_dim, d, kw["width"], kw["depth"]))
    c, h, w = shape
    if h != w:
        raise ValueError(f"networks need square images, got {h}x{w}")
    if kind == "resnet":
        if h not in (32, 64):
            raise ValueError(f"network=resnet is defined for 32x32 and 64x64 images, got {h}x{h}; "
                             "use network=conv for small grey images")
        scales = {32: 3, 64: 4}[h]
        return ResNetEncoder(c, latent_dim, scales), ResNetDecoder(c, latent_dim, h, scales)
    if kind == "conv":
        return ConvEncoder(c, latent_dim, h), ConvDecoder(c, latent_dim, h)
    raise ValueError(f"unknown network {kind!r}; choose one of: auto, resnet, conv")


def default_network(shape: tuple[int, ...]) -> str:
    """The network a data set of this shape gets by default: resnet for 32 and 64 pixels."""
    return "resnet" if shape[-1] in (32, 64) else "conv"


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
