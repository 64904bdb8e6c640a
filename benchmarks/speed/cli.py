"""Training and evaluation speed: vaebench's trainer against a tutorial loop and pythae.

    python -m benchmarks.speed [--dataset digits|shapes|mnist|cifar10|celeba ...]
        [--device auto|cpu|cuda] [--epochs N] [--rounds R] [--batch-size B] [--synthetic]
        [--threads N] [--profile] [--out results/speed]

The same network (``build_model(resolve(cfg, shape), shape)`` with identical initial weights),
the same images, batch size and optimizer (Adam at the data set's learning rate) are trained
three ways, in alternation (A B C A B C ..., one warm-up round then ``--rounds`` timed ones),
so that a noisy neighbour or a clock change hits all three alike:

1. ``vaebench``: :func:`vaes.trainer.fit` as :func:`vaes.trainer.train` calls it (uint8 data on the
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
second stage of the two-stage VAE (:func:`vaes.trainer.train_stage2`), evaluation speed through
the Inception-v3 of vaebench's FID (its real weights where they can be had, else torchvision's
with random weights: speed does not depend on the weights; nothing is downloaded) and through
the classifier distance, peak memory, FLOPs per image and, on CUDA, the fraction of the device's
peak, and a projection of the paper's CIFAR-10 protocol. Results go
to ``OUT/<device>-<dataset>.json`` and ``.md``. Timings never appear in tests.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

from vaes.cli import choice_list, dirty_refusal, int_list, number, parser
from vaes.build import pick_device
from vaes.config import TrainConfig
from vaes.data import get_dataset, list_datasets
from benchmarks.speed.machine import cores
from benchmarks.speed.runner import run_one

SECTIONS = ("pythae", "tutorial", "stage2", "eval", "projection")  # what --skip may leave out
# H100 / H200 SXM: 989 TFLOP/s dense bf16 (NVIDIA's data sheets; 1,979 is with 2:4 sparsity)
DEFAULT_PEAK_TFLOPS = 989.0
DEFAULT_PEAK_NAME = "NVIDIA H100/H200 SXM, dense bf16"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser("python -m benchmarks.speed", __doc__.split("\n\n")[0])
    p.add_argument("--dataset", nargs="+", default=["digits"], choices=[d for d in list_datasets() if get_dataset(d).shape is not None],
                   help="data sets to time (default: digits)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--epochs", type=number(int, low=1), default=None,
                   help="epochs per trainer and round (default: ~6k images on the CPU, an epoch on CUDA)")
    p.add_argument("--rounds", type=number(int, low=1), default=7, help="timed rounds after a warm-up round (median reported)")
    p.add_argument("--batch-size", type=number(int, low=1), default=100, help="the paper's batch size")
    p.add_argument("--n-train", type=number(int, low=0, what="0: all"), default=0,
                   help="training images (0: all on CUDA; on the CPU at most 6000 for the conv net, 300 for "
                        "the ResNet)")
    p.add_argument("--variant", default=TrainConfig.variant, help="balancing variant of vaebench's trainer")
    p.add_argument("--synthetic", action="store_true", help="time on uint8 noise of the data set's shape")
    p.add_argument("--data-root", default="data")
    p.add_argument("--checkpoint-every", type=number(int, low=1), default=1, help="vaebench's checkpoint interval in epochs")
    p.add_argument("--bf16", action="store_true", help="vaebench's trainer in bf16 autocast (the others: fp32)")
    p.add_argument("--compile", action="store_true", help="vaebench's trainer with torch.compile")
    p.add_argument("--stage2-epochs", type=number(int, low=1), default=1, help="second-stage epochs per round")
    p.add_argument("--stage2-rounds", type=number(int, low=1), default=2)
    p.add_argument("--eval-images", type=number(int, low=0, what="0: the device's default"), default=0,
                   help="images through Inception (0: 50 on the CPU, 2000 on CUDA)")
    p.add_argument("--eval-batch-sizes", type=int_list(low=1), default=None,
                   help="comma-separated Inception batch sizes (default: 50 on the CPU, 50,500 on CUDA)")
    p.add_argument("--peak-tflops", type=number(float, above=0), default=DEFAULT_PEAK_TFLOPS,
                   help=f"the device's peak for the achieved fraction (default {DEFAULT_PEAK_TFLOPS:g}: "
                        f"{DEFAULT_PEAK_NAME})")
    p.add_argument("--peak-name", default=DEFAULT_PEAK_NAME)
    p.add_argument("--skip", type=choice_list(SECTIONS), default=[],
                   help=f"comma-separated parts to leave out: {', '.join(SECTIONS)}")
    p.add_argument("--threads", type=number(int, low=0, what="0: torch's default"), default=0,
                   help="torch CPU threads (0: torch's default). On a shared machine 1 is much steadier: an "
                        "OpenMP team waiting for a descheduled thread stalls every op")
    p.add_argument("--profile", action="store_true",
                   help="also profile vaebench's step: phases in the JSON, operators in OUT/<stem>-profile.txt")
    p.add_argument("--seed", type=number(int, low=0), default=0)
    p.add_argument("--out", default="results/speed")
    p.add_argument("--allow-dirty", action="store_true",
                   help="write into results/ from a tree with uncommitted changes")
    args = p.parse_args(argv)
    dirty = dirty_refusal(args.out, args.allow_dirty)
    if dirty:
        p.error(dirty)
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


