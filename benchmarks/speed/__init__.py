"""The speed benchmark (``python -m benchmarks.speed``; what it measures and how: :mod:`benchmarks.speed.cli`).

The package: ``trainers`` (data, models, the three trainers and the race), ``measure`` (profile,
FLOPs, second stage, evaluation, projection), ``inception`` (which Inception evaluation times),
``machine`` (device name, cores, peak memory), ``summary`` (Markdown and console), ``runner``
(one data set end to end) and ``cli`` (the command line).
This module re-exports their API.
"""
from __future__ import annotations

from benchmarks.speed.inception import inception_extractor, torchvision_inception
from benchmarks.speed.machine import PeakMemory, cores, device_name, sync
from benchmarks.speed.measure import (PAPER_CIFAR10, flops_per_image, generate_u8, measure_eval, measure_stage2,
                                      probe_cifar10, profile_vaebench, project_paper_cifar10)
from benchmarks.speed.summary import markdown, print_summary
from benchmarks.speed.trainers import (TRAINERS, PythaeTrainer, TutorialTrainer, VaebenchTrainer, bench_config,
                                       fresh_model, load_images, make_trainers, network_parameters,
                                       pythae_available, race, ratios, synthetic_images, target_ratio)
from benchmarks.speed.runner import CPU_TRAIN_CAP, TARGET_IMAGES, measure_vaebench_extras, run_one
from benchmarks.speed.cli import DEFAULT_PEAK_NAME, DEFAULT_PEAK_TFLOPS, SECTIONS, main, parse_args

__all__ = ["CPU_TRAIN_CAP", "DEFAULT_PEAK_NAME", "DEFAULT_PEAK_TFLOPS", "PAPER_CIFAR10", "PeakMemory",
           "PythaeTrainer", "SECTIONS", "TARGET_IMAGES", "TRAINERS", "TutorialTrainer", "VaebenchTrainer",
           "bench_config", "cores", "device_name", "flops_per_image", "fresh_model", "generate_u8",
           "inception_extractor", "load_images", "main", "make_trainers", "markdown", "measure_eval",
           "measure_stage2", "measure_vaebench_extras", "network_parameters", "parse_args", "print_summary",
           "probe_cifar10", "profile_vaebench", "project_paper_cifar10", "pythae_available", "race", "ratios",
           "run_one", "sync", "synthetic_images", "target_ratio", "torchvision_inception"]
