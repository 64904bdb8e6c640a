"""Evaluate a finished run again, with other evaluation settings, and update its record.

    python -m vaes.evaluate RUN_DIR [eval_images=N fid_images=N fid_engine=pytorch-fid fid_weights=PATH ...]

The metrics are vaes.evaluation.quality's, as a run computes them; only the settings of
vaes.config.EVAL_SETTINGS may change.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from vaes.build import build_model, build_stage2, pick_device, use_threads
from vaes.cli import EXIT_STATUSES, entry_point, refuse
from vaes.config import EVAL_FIELDS, EVAL_SETTINGS, from_dict, parse_overrides
from vaes.data import load_dataset
from vaes.evaluation.fid import inception_score_refusal
from vaes.evaluation.fid_weights import PACKAGE_WEIGHTS, InceptionScoreUnavailable
from vaes.evaluation.metrics import heldout_metrics
from vaes.evaluation.quality import evaluate_models
from vaes.records import Record
from vaes.store import RunFolder


def evaluate_run(run_dir: str | Path, overrides: list[str] | None = None) -> Record:
    """(Re-)evaluate a finished run from its weights and update its record: ``overrides``
    (key=value) may change the evaluation settings (vaes.config.EVAL_SETTINGS) only."""
    folder = RunFolder(run_dir)
    rec = folder.read()
    if rec is None or not folder.model_path.is_file():
        raise FileNotFoundError(f"{folder.path} has no record and weights of a finished run ({folder.record_path}, "
                                f"{folder.model_path}); train it first with python -m vaes.train ... out={folder.path}")
    cfg = from_dict(rec.config)
    if overrides:
        check_overrides(overrides)
        changed = parse_overrides(overrides, base=cfg)
        cfg = dataclasses.replace(cfg, **{a.split("=", 1)[0]: getattr(changed, a.split("=", 1)[0]) for a in overrides})
    data = load_dataset(cfg.dataset, cfg.data_root, download=cfg.download, data_split=cfg.data_split,
                        image_size=cfg.image_size, jpeg_quality=cfg.jpeg_quality)
    device = pick_device(cfg.device)
    threads = use_threads(cfg)
    weights = folder.load_model()
    model = build_model(cfg, data.shape)
    model.load_state_dict(weights["model"])
    model.to(device)
    stage2 = None
    if weights.get("stage2") is not None:
        stage2 = build_stage2(cfg)
        stage2.load_state_dict(weights["stage2"])
        stage2.to(device)
    t0 = time.perf_counter()
    timings = {}
    metrics = heldout_metrics(model, data.test.to(device), bn_eval=cfg.bn_eval,
                              train_images=data.train[: cfg.n_train or None].to(device), levels=data.levels)
    timings["eval_heldout_seconds"] = time.perf_counter() - t0
    metrics.update(evaluate_models(cfg, model, stage2, data, folder.path, timings=timings))
    rec.timings = {**(rec.timings or {}), **timings, "eval_seconds": time.perf_counter() - t0,
                   "eval_threads": threads}
    rec.config.update({k: getattr(cfg, k) for k in EVAL_FIELDS})
    rec.set_metrics(metrics)
    with folder.claim():  # not while another process trains or evaluates the same run
        return folder.write(rec)


def check_overrides(overrides: list[str]) -> None:
    """ValueError naming the argument, the value and what is allowed, for any key=value that is
    not an evaluation setting of TrainConfig or whose value TrainConfig refuses."""
    allowed = list(EVAL_SETTINGS)
    for a in overrides:
        if "=" not in a:
            raise ValueError(f"expected key=value after RUN_DIR, got {a!r}; keys: {', '.join(allowed)}")
    if any(a.split("=", 1)[0].strip() == "inception_score" for a in overrides):
        # asked for by name, refused by name: the default (packaged) Inception has no classifier
        raise InceptionScoreUnavailable(inception_score_refusal(f"vaebench uses by default ({PACKAGE_WEIGHTS})"))
    bad = [a.split("=", 1)[0].strip() for a in overrides if a.split("=", 1)[0].strip() not in allowed]
    if bad:
        raise ValueError(f"{', '.join(bad)}: only evaluation settings can change here: {', '.join(allowed)}")
    parse_overrides(overrides)  # the values, checked as TrainConfig checks them


@entry_point
def main(argv: list[str] | None = None, *, validate_only: bool = False) -> int:
    """Command line; ``validate_only`` stops after checking the arguments (no run folder read)."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip() + "\n\n" + EXIT_STATUSES, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    try:
        if "=" in argv[0]:
            raise ValueError(f"the first argument must be the run folder (RUN_DIR), got {argv[0]!r}; see --help")
        check_overrides(argv[1:])
        if validate_only:
            return 0
        rec = evaluate_run(argv[0], argv[1:])
    except (FileNotFoundError, ValueError, TypeError) as e:
        return refuse(e)
    for k, entry in rec.metrics.items():
        for field in ("value", "precision", "recall"):
            if field in entry:
                name = k if field == "value" else f"{k} {field}"
                print(f"{name:<28} {entry[field] if entry[field] is not None else '-- (missing)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
