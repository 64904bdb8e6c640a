"""Suites are data: one TOML file each in benchmarks/suites/ (or any path a user gives).

A suite names a data set, a number of seeds, the TrainConfig fields its runs share
(``[config]``) and its runs (``[[runs]]``: a label, a variant, its options and any other
config field). :func:`expand` turns it into one resolved TrainConfig per (run, seed).
"""
from __future__ import annotations

import dataclasses
import functools
import re
import tomllib  # Python 3.11+ (requires-python in pyproject.toml)
from pathlib import Path

from vaes.build import dataset_shape, resolve
from vaes.data import get_dataset, load_dataset
from vaes.config import TrainConfig, run_id
from vaes import run as one_run
from vaes.records import Record
from vaes.store import RunFolder, run_folder

SUITES_DIR = Path(__file__).parent / "suites"


@dataclasses.dataclass(frozen=True)
class Job:
    """One run of a suite: its label, seed, resolved config and folder name."""
    label: str
    seed: int
    cfg: TrainConfig

    @property
    def run_id(self) -> str:
        return run_id(self.cfg)

    @property
    def folder(self) -> str:
        return f"{slug(self.label)}-s{self.seed}-{self.run_id}"

    def run_folder(self, out: Path) -> RunFolder:
        """The job's run folder in the suite's output folder ``out`` (OUT/runs/FOLDER)."""
        return run_folder(out, self.folder)

    def config(self, out: Path) -> TrainConfig:
        """The job's config, written into its run folder in ``out``."""
        return self.cfg.replace(out=str(self.run_folder(out).path))


def slug(label: str) -> str:
    """A label as a folder name: 'balanced momentum=0.9' -> 'balanced_momentum-0.9'."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", label.replace("=", "-")).strip("_")


def list_suites() -> dict[str, str]:
    """Name -> description of the suites shipped in benchmarks/suites."""
    return {p.stem: load_suite(p)["description"] for p in sorted(SUITES_DIR.glob("*.toml"))}


def load_suite(name_or_path: str | Path) -> dict:
    """The suite called ``name`` (in benchmarks/suites) or at a .toml path, checked."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = SUITES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(p.stem for p in sorted(SUITES_DIR.glob("*.toml")))
        raise FileNotFoundError(f"no suite {str(name_or_path)!r}; known suites: {known} (or a path to a .toml)")
    try:
        with open(path, "rb") as f:
            suite = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"suite {path} is not valid TOML ({e}); fix the line it names "
                         "(the shipped suites in benchmarks/suites/ show the format)") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"suite {path} is not a text file ({e}); a suite is a UTF-8 TOML file") from None
    for key in ("name", "dataset", "runs"):
        if key not in suite:
            raise ValueError(f"suite {path} has no {key!r}")
    suite.setdefault("description", "")
    suite.setdefault("seeds", 1)
    suite.setdefault("config", {})
    labels = [r.get("label") for r in suite["runs"]]
    if None in labels or len(set(labels)) != len(labels):
        raise ValueError(f"suite {path}: every run needs a unique 'label', got {labels}")
    suite["path"] = str(path)
    return suite


@functools.lru_cache(maxsize=8)
def _loaded_shape(dataset: str, data_root: str, data_split: str) -> tuple[int, ...]:
    return load_dataset(dataset, data_root, data_split=data_split).shape


def _shape(cfg: TrainConfig) -> tuple[int, ...]:
    """The image shape of cfg's data set; a data set without a fixed one (npz) is loaded to see it."""
    return dataset_shape(cfg) or _loaded_shape(cfg.dataset, cfg.data_root, cfg.data_split)


def expand(suite: dict, *, seeds: int | None = None, only: list[str] | None = None,
           epochs_scale: float = 1.0, device: str = "auto", base: dict | None = None) -> list[Job]:
    """The suite's jobs, (run, seed) in order; ``only`` filters by variant name or label."""
    jobs = []
    for run in suite["runs"]:
        if only and run["variant"] not in only and run["label"] not in only:
            continue
        # --set dataset=npz data_root=FILE points a suite at other images of the same shape; the
        # runs keep the suite's own protocol (its data set's epochs, lr and halving), not theirs
        dataset = (base or {}).get("dataset", suite["dataset"])
        protocol = {} if dataset == suite["dataset"] else dataclasses.asdict(get_dataset(suite["dataset"]).protocol)
        fields = {**protocol, **suite["config"], **(base or {}),
                  **{k: v for k, v in run.items() if k != "label"}, "dataset": dataset}
        for seed in range(seeds or suite["seeds"]):
            cfg = TrainConfig(**fields, seed=seed, device=device)
            cfg = resolve(cfg, _shape(cfg))
            if epochs_scale != 1.0:  # e.g. 0.01 to try a paper protocol quickly
                scale = (lambda n: max(1, round(n * epochs_scale)))
                cfg = cfg.replace(epochs=scale(cfg.epochs), stage2_epochs=scale(cfg.stage2_epochs),
                                  lr_halve_every=scale(cfg.lr_halve_every) if cfg.lr_halve_every else 0,
                                  stage2_lr_halve_every=scale(cfg.stage2_lr_halve_every)
                                  if cfg.stage2_lr_halve_every else 0)
            jobs.append(Job(run["label"], seed, cfg))
    if only and not jobs:
        raise ValueError(f"--only {' '.join(only)} matches no run; runs: "
                         + ", ".join(f"{r['label']} ({r['variant']})" for r in suite["runs"]))
    return jobs


def job_status(out: Path, job: Job) -> str:
    """The status of the job's run (:meth:`vaes.store.RunFolder.state`: its record decides, and
    whether a live process holds it); :class:`vaes.store.FolderTaken` when its folder holds
    another run."""
    return job.run_folder(out).state(job.config(out)).status


def job_meta(job: Job, suite_name: str) -> dict:
    """What a suite stores in each run's record beside the run's own fields."""
    return {"label": job.label, "suite": suite_name}


def run_job(job: Job, out: Path, suite_name: str, data=None, progress: bool | None = None,
            wait: bool = True) -> Record:
    """:func:`vaes.run.run` of one job into its run folder, labelled with the suite; never raises
    for the run's own failure (it becomes a failed record). A run another process trains is
    waited for, or with ``wait=False`` raises :class:`vaes.store.FolderHeld`."""
    return one_run.run(job.config(out), data=data, progress=progress, meta=job_meta(job, suite_name), wait=wait)
