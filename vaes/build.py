"""From a config to models: the data set's protocol filled in, the networks and variants built.

Shared by the trainer, evaluation, loading a finished run and the speed benchmark, so that
each builds a run's models the same way and none imports another for it.
"""
from __future__ import annotations

import dataclasses

import torch
from threadpoolctl import threadpool_limits

from vaes.config import TrainConfig, variant_opts
from vaes.data import get_dataset
from vaes.model import VAE
from vaes.networks import build_networks, default_network
from vaes.registry import get_variant


def dataset_shape(cfg: TrainConfig) -> tuple[int, ...] | None:
    """Image shape of cfg's data set when it is known without loading it (None for npz)."""
    shape = get_dataset(cfg.dataset).shape
    return None if shape is None else shape(cfg.image_size)


def resolve(cfg: TrainConfig, shape: tuple[int, ...] | None = None) -> TrainConfig:
    """Fill the fields left unset from the data set's protocol and image shape."""
    shape = shape or dataset_shape(cfg)
    if shape is None:
        raise ValueError(f"the image shape of dataset={cfg.dataset} is known only after loading it")
    proto = get_dataset(cfg.dataset).protocol
    size = shape[-1]
    latent = cfg.latent_dim or (16 if size <= 8 else 64)  # 64 as in Dai & Wipf; 8x8 digits are tiny
    epochs = cfg.epochs or proto.epochs
    halve = proto.lr_halve_every if cfg.lr_halve_every is None else cfg.lr_halve_every
    eval_images = cfg.eval_images or proto.eval_images
    return cfg.replace(
        epochs=epochs,
        lr=cfg.lr or proto.lr,
        lr_halve_every=halve,
        stage2_lr_halve_every=(cfg.stage2_lr_halve_every if cfg.stage2_lr_halve_every is not None
                               else proto.stage2_lr_halve_every if cfg.lr_halve_every is None
                               and proto.stage2_lr_halve_every is not None else 2 * halve),
        network=default_network(shape) if cfg.network == "auto" else cfg.network,
        latent_dim=latent,
        image_size=size if get_dataset(cfg.dataset).sized else cfg.image_size,
        # the paper trains the second stage for twice the first stage's epochs
        stage2_epochs=cfg.stage2_epochs or (proto.stage2_epochs if cfg.epochs is None else 2 * epochs),
        stage2_width=cfg.stage2_width or proto.stage2_width or {32: 2048, 64: 4096}.get(size, 1024),
        stage2_latent_dim=cfg.stage2_latent_dim or latent,
        eval_images=eval_images,
        # FID follows an eval_images that was set, as stage2_epochs follows epochs; never above it
        fid_images=min(cfg.fid_images or (proto.fid_images if cfg.eval_images is None else eval_images), eval_images),
        options=dataclasses.asdict(variant_opts(cfg)),
    )


def build_model(cfg: TrainConfig, shape: tuple[int, ...]) -> VAE:
    """The first-stage VAE of a resolved config."""
    enc, dec = build_networks(cfg.network, shape, cfg.latent_dim)
    balance = get_variant(cfg.variant)(variant_opts(cfg), shape=shape, latent_dim=cfg.latent_dim)
    return VAE(enc, dec, balance, latent_dim=cfg.latent_dim)


def build_stage2(cfg: TrainConfig) -> VAE:
    """The second-stage VAE (an MLP on latent codes) with its own balancing, default options."""
    shape = (cfg.latent_dim,)
    enc, dec = build_networks("mlp", shape, cfg.stage2_latent_dim, width=cfg.stage2_width, depth=cfg.stage2_depth)
    cls = get_variant(cfg.stage2_variant)
    return VAE(enc, dec, cls(cls.Options(), shape=shape, latent_dim=cfg.stage2_latent_dim),
               latent_dim=cfg.stage2_latent_dim, output="identity")


_DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice (cores, or OMP_NUM_THREADS), before any run's


def use_threads(cfg: TrainConfig) -> int:
    """Set torch's CPU threads for this run (``threads``; 0: torch's default) and return the count,
    which the record states: a reduction's rounding, and so every digit, depends on it."""
    torch.set_num_threads(cfg.threads or _DEFAULT_THREADS)
    threadpool_limits(limits=torch.get_num_threads(), user_api="blas")  # numpy's and scipy's BLAS alike
    return torch.get_num_threads()


def pick_device(name: str) -> torch.device:
    """'auto' is CUDA where available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda but torch sees no CUDA device; use device=cpu or device=auto")
    return torch.device(name)
