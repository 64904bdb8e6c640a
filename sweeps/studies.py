"""Optuna studies as code: each study is one ``objective(trial, ctx)`` function.

A study names the suite whose data set and protocol it borrows (``load_suite``: data set,
``[config]`` fields), the config fields it changes for every trial, and its search space,
written with ``trial.suggest_*`` inside the objective (as optuna-examples do). Training goes
through ``ctx.train(trial, ...)``, which runs :func:`vaes.run.run` into
``OUT/runs/<trial folder>``, reports each epoch to Optuna and prunes; ``ctx.quality(trial, rec)``
is the sample-quality objective:

* FID of samples (``fid_samples``) where the Inception weights exist,
* else the classifier Frechet distance (``cfd_samples``),
* else ``neg_elbo`` (held-out negative ELBO, nats per image), with a printed note.

The first finished trial fixes that choice for the whole study (a study user attribute), so
trials are never ranked by two different metrics.

    python -m sweeps.run --list
    python -m sweeps.run --study balanced_digits --trials 20 --workers 2 --cluster slurm
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import optuna

from benchmarks.suite import list_suites, load_suite
from vaes.data import get_dataset, list_datasets
from vaes.registry import Registry
from vaes.variants.balanced import paper_kl_weight

Objective = Callable[[optuna.Trial, Any], Any]

# Sample-quality metrics of a record, best first: FID needs the Inception weights; the classifier
# Frechet distance is the offline signal (docs/evaluation.md). A record holds each as an entry with
# its number under 'value' (vaes.evaluation.catalog).
QUALITY_METRICS = ("fid_samples", "cfd_samples")
FALLBACK_METRIC = "neg_elbo"   # always in a finished record (vaes.evaluation.metrics.heldout_metrics)


@dataclasses.dataclass(frozen=True)
class Study:
    """A registered study: where its data and protocol come from and what it optimises."""
    name: str
    objective: Objective                       # objective(trial, ctx) -> value or (values...)
    suite: str                                 # suite whose data set and [config] it starts from
    description: str
    directions: tuple[str, ...] = ("minimize",)
    metric_names: tuple[str, ...] = ("quality",)  # axis names of the plots
    config: dict = dataclasses.field(default_factory=dict)  # TrainConfig fields for every trial
    prune: bool = True                         # report every epoch and let the pruner stop trials
    # history term reported each epoch: the training MSE per pixel, the one term comparable
    # across KL weights (loss and KL scale with beta / k); a proxy of quality that favours weak
    # KL weights, hence a lenient pruner
    prune_on: str = "mse"
    keep_percentile: float = 75.0              # PercentilePruner keeps this top share of trials
    seed: int = 0                              # the run seed of every trial (weights, batches)

    @property
    def multi_objective(self) -> bool:
        return len(self.directions) > 1

    def suite_dict(self) -> dict:
        """The suite this study borrows its data set and protocol from."""
        return load_suite(self.suite)


STUDIES: Registry[Study] = Registry("study", hint=" (python -m sweeps.run --list)")


def register_study(name: str, *, suite: str, description: str, **kw) -> Callable[[Objective], Objective]:
    """Decorator: register ``objective(trial, ctx)`` as study ``name`` (duplicates raise)."""
    def deco(fn: Objective) -> Objective:
        STUDIES.register(name, Study(name=name, objective=fn, suite=suite, description=description, **kw))
        return fn
    return deco


def list_studies(pattern: str = "*") -> list[str]:
    """Sorted names of the registered studies, optionally filtered by a glob pattern."""
    return STUDIES.list(pattern)


def get_study(name: str) -> Study:
    """The study called ``name``; an unknown name lists the valid ones."""
    return STUDIES.get(name)


# ---- search spaces shared by every variant ----------------------------------------------------

def common_space(trial: optuna.Trial) -> dict:
    """lr and latent_dim, searched for every variant."""
    return {
        # digits' protocol uses 1e-3; a decade either side covers what Adam tolerates here
        "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
        # 16 is the default for 8x8 images; 8 and 32 bracket it
        "latent_dim": trial.suggest_categorical("latent_dim", [8, 16, 32]),
    }


def balanced_space(trial: optuna.Trial) -> dict:
    """The balanced variant's options (Asperti & Trentin 2020): a, k and the gamma floor."""
    return {
        # a of m <- min(m, a m + (1-a) mse); the paper uses 0.99
        "momentum": trial.suggest_float("momentum", 0.9, 0.999),
        # k; the paper's (2H/d)^2 is 1 for 8x8 images at d=16: search a decade either side
        "kl_weight": trial.suggest_float("kl_weight", 0.1, 10.0, log=True),
        # a floor on gamma keeps NLL finite when the MSE collapses; 0 (off) is the paper's choice
        "gamma_floor": trial.suggest_categorical("gamma_floor", [0.0, 0.01, 0.05]),
    }


# ---- the studies ------------------------------------------------------------------------------
# First-stage VAEs only (two_stage=false): the balance decides first-stage samples, and a second
# stage would double the cost of every trial.

@register_study("beta_digits", suite="quick", config={"two_stage": False},
                description="beta-VAE on digits: beta, lr, latent_dim -> sample quality; pruned")
def beta_digits(trial: optuna.Trial, ctx) -> float:
    beta = trial.suggest_float("beta", 0.05, 10.0, log=True)  # 1 = Dai & Wipf's fixed gamma
    rec = ctx.train(trial, variant="beta", options={"beta": beta}, **common_space(trial))
    return ctx.quality(trial, rec)


@register_study("balanced_digits", suite="quick", config={"two_stage": False},
                description="balanced VAE on digits: momentum, kl_weight, gamma_floor, lr, latent_dim "
                            "-> sample quality; pruned")
def balanced_digits(trial: optuna.Trial, ctx) -> float:
    rec = ctx.train(trial, variant="balanced", options=balanced_space(trial), **common_space(trial))
    return ctx.quality(trial, rec)


@register_study("balanced_digits_pareto", suite="quick", config={"two_stage": False},
                directions=("minimize", "minimize"), metric_names=("quality", "recon_mse"), prune=False,
                description="balanced VAE on digits: Pareto front of sample quality vs reconstruction "
                            "MSE (multi-objective, no pruning)")
def balanced_digits_pareto(trial: optuna.Trial, ctx) -> tuple[float, float]:
    rec = ctx.train(trial, variant="balanced", options=balanced_space(trial), **common_space(trial))
    return ctx.quality(trial, rec), ctx.metric(trial, rec, "recon_mse")


@register_study("smoke", suite="quick",
                config={"two_stage": False, "epochs": 2, "eval_images": 200},
                description="tiny balanced study for tests and trying the launcher: digits, 2 epochs")
def smoke(trial: optuna.Trial, ctx) -> float:
    options = {"momentum": trial.suggest_float("momentum", 0.9, 0.999)}
    rec = ctx.train(trial, variant="balanced", options=options, **common_space(trial))
    return ctx.quality(trial, rec)


# ---- one study per data-set suite ---------------------------------------------------------------
# The balanced VAE around each suite's protocol: lr a factor 3 either side of the protocol's, the
# KL weight k a factor 4 either side of the paper's (2H/d)^2, the momentum a. The objective is
# sample FID (real now, with the packaged Inception), the suite's image count; first stage only.

def _dataset_study(suite: str) -> None:
    spec = get_dataset(load_suite(suite)["dataset"])
    lr0 = spec.protocol.lr
    k0 = paper_kl_weight(spec.shape(None), 64)  # latent 64, the data-set suites' size

    @register_study(f"balanced_{suite}", suite=suite, config={"two_stage": False},
                    description=f"balanced VAE on {spec.display_name}: momentum, kl_weight around the "
                                f"paper's {k0:.3g}, lr around {lr0:g} -> sample FID; pruned")
    def objective(trial: optuna.Trial, ctx) -> float:
        options = {"momentum": trial.suggest_float("momentum", 0.9, 0.999),
                   "kl_weight": trial.suggest_float("kl_weight", k0 / 4, k0 * 4, log=True)}
        rec = ctx.train(trial, variant="balanced", options=options,
                        lr=trial.suggest_float("lr", lr0 / 3, lr0 * 3, log=True))
        return ctx.quality(trial, rec)


# a data-set suite bears its data set's name; one written by hand above (balanced_digits) stays,
# and a data set whose shape is known only after loading (npz) has no paper k to search around
_SUITES = list_suites()
for _suite in list_datasets():
    if _suite in _SUITES and f"balanced_{_suite}" not in STUDIES and get_dataset(_suite).shape is not None:
        _dataset_study(_suite)
