"""One data set through the speed benchmark: the race, then the extras, then the files."""
from __future__ import annotations

import math
from importlib.metadata import PackageNotFoundError, version
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from vaes.config import TrainConfig
from vaes.records import write_json
from benchmarks.speed.machine import cores, device_name
from benchmarks.speed.measure import (PAPER_DATASET, flops_per_image, measure_eval, measure_stage2, probe_cifar10,
                                      profile_vaebench, project_paper_cifar10)
from benchmarks.speed.summary import markdown, print_summary
from benchmarks.speed.trainers import (TRAINERS, VaebenchTrainer, bench_config, load_images, make_trainers,
                                       network_parameters, pythae_available, race, ratios, target_ratio)

# Images per trainer and round when --epochs is not given: enough to amortise a call's set-up,
# few enough that the default CPU run (digits) takes about a minute on an idle machine.
TARGET_IMAGES = {("cpu", "conv"): 6_000, ("cpu", "resnet"): 300,
                 ("cuda", "conv"): 60_000, ("cuda", "resnet"): 50_000}
# On the CPU only a slice of a large data set is used (an epoch of CIFAR-10 takes 25 minutes).
CPU_TRAIN_CAP = {"conv": 6_000, "resnet": 300}


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
        if cfg.dataset == PAPER_DATASET and res.get("stage2"):
            res["projection"] = project_paper_cifar10(res["trainers"]["vaebench"]["images_per_second"],
                                                      res["stage2"]["codes_per_second"], eval_ips,
                                                      "measured in this run")
        else:
            first, second = probe_cifar10(device, args, tmp / "probe")
            res["projection"] = project_paper_cifar10(first, second, eval_ips,
                                                      "vaebench on a short synthetic CIFAR-10-shaped probe")
        sections["projection"] = time.perf_counter() - t0


def _version(pkg: str) -> str | None:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return None
