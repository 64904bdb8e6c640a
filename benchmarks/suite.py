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

from benchmarks.reporting.columns import QUALITY_SETS
from vaes.build import dataset_shape, resolve
from vaes.data import get_dataset, load_dataset
from vaes.config import TrainConfig, from_dict, run_id
from vaes import run as one_run
from vaes.records import Record
from vaes.store import RunFolder, run_folder

CONFIG_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}

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
    """The suite called ``name`` (in benchmarks/suites) or at a .toml path, checked whole by
    :func:`check_suite` before any run starts (a ValueError naming the file, line and key)."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = SUITES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(p.stem for p in sorted(SUITES_DIR.glob("*.toml")))
        raise FileNotFoundError(f"no suite {str(name_or_path)!r}; known suites: {known} (or a path to a .toml)")
    try:
        text = path.read_bytes().decode("utf-8")
        suite = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"suite {path} is not valid TOML ({e}); fix the line it names "
                         "(the shipped suites in benchmarks/suites/ show the format)") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"suite {path} is not a text file ({e}); a suite is a UTF-8 TOML file") from None
    except OSError as e:
        raise ValueError(f"suite {path} cannot be read ({e.strerror or e}); check its permissions") from None
    check_suite(suite, path, text)
    suite.setdefault("description", "")
    suite.setdefault("seeds", 1)
    suite.setdefault("config", {})
    suite["path"] = str(path)
    return suite


# ---- the suite file's schema: its own keys, then every run's config through TrainConfig ---------
SUITE_KEYS = {"name": str, "description": str, "dataset": str, "seeds": int, "quality_sets": str,
              "reference": bool, "config": dict, "runs": list}
KINDS = {str: "a string", int: "a whole number", bool: "true or false", dict: "a table", list: "an array of tables"}
# fields the suite runner sets itself: a suite file that sets them would be silently overridden
OWNED = {"seed": "the suite's 'seeds' (seeds 0..N-1)", "device": "benchmarks.run --device",
         "dataset": "the suite's top-level 'dataset' (or --set dataset=...)", "out": "benchmarks.run --out"}


def check_suite(suite: dict, path: Path, text: str = "") -> None:
    """Refuse a suite with any error, naming the file, the line (found in ``text``), the table
    and the key: unknown or mistyped top-level keys, seeds < 1, a run that is not a table or
    lacks a unique label or a variant, and every run's config (its row over [config]) checked by
    TrainConfig (known keys, types, ranges, finiteness) as --set and vaes.train check theirs."""
    def fail(msg: str, table: str | None = None, index: int | None = None, key: str | None = None):
        line = _line_of(text, table, index, key) if key else None
        where = {None: "", "config": " [config]"}.get(table, f" [[runs]] #{(index or 0) + 1}")
        label = suite["runs"][index].get("label") if table == "runs" and isinstance(suite["runs"][index], dict) else None
        raise ValueError(f"suite {path}{f':{line}' if line else ''}{where}{f' (label {label!r})' if label else ''}: "
                         f"{msg}. A suite with an error runs nothing: fix the file (python -m vaes.train --help "
                         "lists every config field, its type and range)") from None
    for key, value in suite.items():
        if key not in SUITE_KEYS:
            fail(f"unknown key {key!r}; a suite's keys are: {', '.join(SUITE_KEYS)}", key=key)
        if type(value) is not SUITE_KEYS[key]:
            fail(f"{key}={value!r:.60}: expected {KINDS[SUITE_KEYS[key]]}, got {type(value).__name__}", key=key)
    for key in ("name", "dataset", "runs"):
        if key not in suite:
            fail(f"no {key!r} (name, dataset and [[runs]] are required)")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", suite["name"]):
        fail(f"name={suite['name']!r}: expected a plain folder name (letters, digits, '.', '_', '-')", key="name")
    if suite.get("seeds", 1) < 1:
        fail(f"seeds={suite['seeds']}: expected a whole number >= 1 (runs seeds 0..N-1)", key="seeds")
    if suite.get("quality_sets", "vaebench") not in QUALITY_SETS:
        fail(f"quality_sets={suite['quality_sets']!r}: choose {' or '.join(QUALITY_SETS)}", key="quality_sets")
    if not suite["runs"]:
        fail("runs is empty: give at least one [[runs]] table with a label and a variant", key="runs")
    base = {"dataset": suite["dataset"]}
    try:
        get_dataset(suite["dataset"])
        from_dict({**base, **{k: v for k, v in suite.get("config", {}).items() if k not in ("options", *OWNED)}})
    except ValueError as e:  # an unknown data set is also a KeyError, whose str() adds quotes
        fail(e.args[0], *_table_of(e.args[0], suite, None))
    for key in set(suite.get("config", {})) & set(OWNED):
        fail(f"{key} is set by {OWNED[key]}, not here", "config", None, key)
    labels = []
    for i, run in enumerate(suite["runs"]):
        if not isinstance(run, dict):
            fail(f"runs[{i}]={run!r:.60}: expected a table ([[runs]] with label, variant, ...)", key="runs")
        for key in ("label", "variant"):
            if not isinstance(run.get(key), str) or not run[key]:
                fail(f"{key}={run.get(key)!r}: every run needs a {key} (a non-empty string)", "runs", i, key)
        if run["label"] in labels:
            fail(f"label {run['label']!r} is used twice; labels name the runs' folders and rows", "runs", i, "label")
        labels.append(run["label"])
        for key in set(run) & set(OWNED):
            fail(f"{key} is set by {OWNED[key]}, not here", "runs", i, key)
        try:
            from_dict({**base, **suite.get("config", {}), **{k: v for k, v in run.items() if k != "label"}})
        except ValueError as e:
            fail(str(e), *_table_of(str(e), suite, i))


def _table_of(msg: str, suite: dict, index: int | None) -> tuple[str | None, int | None, str | None]:
    """(table, run index, key) of the key an error message begins with: the run's own row when
    it sets the key, else [config]."""
    key = re.match(r"\w+", msg)
    key = key[0] if key else None
    if key in SUITE_KEYS:
        return None, None, key
    if index is not None and (key in suite["runs"][index] or key in suite["runs"][index].get("options", {})):
        return "runs", index, key
    if key in suite.get("config", {}):
        return "config", None, key
    return ("runs", index, key) if index is not None else ("config", None, key)


def _line_of(text: str, table: str | None, index: int | None, key: str) -> int | None:
    """The line of ``key`` in ``table`` ('config', 'runs' number ``index``, or None: the top
    level) of a TOML text, or None where it is not written one key a line (tomllib keeps no lines)."""
    section: tuple = (None, None)
    runs = -1
    pattern = re.compile(rf'(^|[{{,\s])["\']?{re.escape(key)}["\']?\s*=')
    for no, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0]
        head = re.match(r"\s*(\[\[?)\s*([^\]]+?)\s*\]", code)
        if head:
            name = head[2]
            if name == "runs" and head[1] == "[[":
                runs += 1
                section = ("runs", runs)
            elif not name.startswith(("runs.", "config.")):  # a run's or [config]'s subtable stays in it
                section = (name, None)
            continue
        if section == (table, index) and pattern.search(code):
            return no
    return None


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
        protocol = {} if dataset == suite["dataset"] else {  # the protocol's training fields, not its evaluation policy
            k: v for k, v in dataclasses.asdict(get_dataset(suite["dataset"]).protocol).items() if k in CONFIG_FIELDS}
        fields = {**protocol, **suite["config"], **(base or {}),
                  **{k: v for k, v in run.items() if k != "label"}, "dataset": dataset}
        for seed in range(seeds or suite["seeds"]):
            # the rows were checked by load_suite; what fails here comes of --set and the protocol
            cfg = from_dict({**fields, "seed": seed, "device": device},
                            f"suite {suite.get('path', suite['name'])}, run {run['label']!r} with --set")
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
