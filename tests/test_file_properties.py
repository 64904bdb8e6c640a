"""Property-based tests over files: suite TOMLs built from the real keys with values of every
type, records and study journals cut short or mutated at random, and output paths under files,
each through a real entry point's validate-only or reading path. Every input is accepted (0) or
refused with exit status 2 and a message naming the file, never a traceback, and never exit 0
on a value of the wrong type."""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import optuna
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks import report, speed
from benchmarks import run as bench_run
from benchmarks.reporting.frames import read_runs
from sweeps import run as sweeps_run
from sweeps.storage import make_storage
from tests.conftest import REPO, exit_outcome
from vaes import balance, sample
from vaes import train as vaes_train
from vaes.config import TrainConfig, _hints, typed
from vaes.registry import list_variants, variant_options

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]
OPTIONS = sorted({f.name for v in list_variants() for f in dataclasses.fields(variant_options(v))})
RECORD = next((REPO / "results" / "quick" / "runs").glob("balanced-s0-*/record.json"))


def refused_naming(code: int, err: str, *names) -> bool:
    assert code in (0, 2), (code, err)
    if code == 2:
        assert "error" in err and "Traceback" not in err, err
        assert any(str(n) in err for n in names), (names, err)
    return code == 2


# ---- suite files ------------------------------------------------------------------------------
SCALARS = st.one_of(st.booleans(), st.integers(-3, 3), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
                    st.sampled_from(["beta", "balanced", "digits", "npz", "cpu", "auto", "none", "true", "1"]))
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=2), st.dictionaries(st.sampled_from(OPTIONS + ["x"]), SCALARS,
                                                                          max_size=2))


def toml_value(v) -> str:
    """A value written as TOML (tomllib has no writer)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, (int, str)):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(map(toml_value, v)) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


def table(rows: dict) -> str:
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in rows.items())


@st.composite
def suites(draw) -> tuple[str, list[tuple[str, object]]]:
    """(TOML text, the config values it sets): a mostly well-formed suite whose [config] and
    [[runs]] hold real keys (config fields and variant options) with values of every type."""
    top = {"name": draw(st.sampled_from(["t", "t", "../t", ""])), "dataset": draw(st.sampled_from(["digits"] * 4 + ["nope"]))}
    top.update(draw(st.dictionaries(st.sampled_from(["seeds", "description", "reference", "quality_sets", "junk"]),
                                    st.one_of(st.integers(-1, 3), SCALARS), max_size=2)))
    keys = st.sampled_from(FIELDS + OPTIONS + ["junk"])
    config = draw(st.dictionaries(keys, VALUES, max_size=3))
    runs = [{"label": draw(st.sampled_from(["a", "b", "a", ""])), "variant": draw(st.sampled_from(list_variants() + ["x"])),
             **draw(st.dictionaries(keys, VALUES, max_size=2))} for _ in range(draw(st.integers(1, 2)))]
    text = table(top) + "[config]\n" + table(config) + "".join("[[runs]]\n" + table(r) for r in runs)
    return text, [*config.items(), *((k, v) for r in runs for k, v in r.items() if k not in ("label", "variant"))]


def mistyped(key: str, value) -> bool:
    """A config field's value of a type TrainConfig refuses (the oracle for 'never exit 0')."""
    if key not in FIELDS:
        return False
    try:
        typed(value, _hints(TrainConfig)[key], key)
        return False
    except ValueError:
        return True


@SETTINGS
@given(suites())
def test_suite_files_are_run_or_refused_by_name(tmp_path, drawn):
    text, values = drawn
    path = tmp_path / "suite.toml"
    path.write_text(text)
    code, err = exit_outcome(lambda: bench_run.main(["--suite", str(path), "--out", str(tmp_path / "out")], validate_only=True))
    if not refused_naming(code, err, path, "data_root"):
        assert not any(mistyped(k, v) for k, v in values), (text, err)  # nonsense never exits 0
    assert not (tmp_path / "out").exists()  # validation writes nothing


# ---- records ----------------------------------------------------------------------------------
JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4)),
                    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=4), kids, max_size=3)),
                    max_leaves=6)


def small_record() -> dict:
    """The committed record with its history and metrics cut to a few entries (fast to read)."""
    obj = json.loads(RECORD.read_text())
    obj["history"], obj["stage2"]["history"] = obj["history"][:3], obj["stage2"]["history"][:2]
    obj["metrics"] = {k: obj["metrics"][k] for k in ("recon_mse", "kl", "gamma", "fid_samples", "prc_samples")}
    return obj


PARTS_OF_A_RECORD = ("top", "metrics", "history", "config", "stage2", "data")


@st.composite
def damages(draw) -> tuple:
    """How the record is damaged: ('cut', fraction), or (part, key index, 'delete' or a JSON value):
    a top-level field, a metric, an epoch of the history, a config field replaced or removed."""
    if draw(st.booleans()):
        return "cut", draw(st.floats(0, 1, exclude_max=True))
    return draw(st.sampled_from(PARTS_OF_A_RECORD)), draw(st.integers(0, 40)), draw(st.one_of(st.just("delete"), JSON))


def damaged(damage: tuple) -> bytes:
    obj = small_record()
    if damage[0] == "cut":
        raw = json.dumps(obj).encode()
        return raw[: int(damage[1] * len(raw))]
    where, i, value = damage
    parent = obj if where == "top" else obj["history"][0] if where == "history" else obj[where]
    key = sorted(parent)[i % len(parent)]
    if value == "delete":
        del parent[key]
    else:
        parent[key] = value
    return json.dumps(obj).encode()


@SETTINGS
@given(damages())
def test_damaged_records_are_reported_or_refused_by_name(tmp_path, damage):
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "record.json").write_bytes(damaged(damage))
    code, err = exit_outcome(lambda: report.main(["--suite", "quick", "--runs", str(tmp_path / "runs"),
                                             "--out", str(tmp_path / "rep")], validate_only=True))
    if not refused_naming(code, err, run_dir / "record.json"):
        read_runs(tmp_path / "runs")  # what the report accepts, its frames read
    code, err = exit_outcome(lambda: balance.main(["--run", str(run_dir)]))
    refused_naming(code, err, run_dir / "record.json")


# ---- study journals ---------------------------------------------------------------------------
def _journal(folder: Path) -> bytes:
    """A real journal: a study with three finished trials."""
    path = folder / "study.journal"
    study = optuna.create_study(study_name="smoke", storage=make_storage(str(path)))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    return path.read_bytes()


@st.composite
def damaged_journals(draw, good: bytes) -> bytes:
    lines = good.split(b"\n")
    how = draw(st.sampled_from(["cut", "junk_line", "edit_line", "bytes"]))
    if how == "cut":
        return good[: draw(st.integers(0, len(good)))]
    i = draw(st.integers(0, len(lines) - 1))
    if how == "junk_line":
        lines[i] = draw(st.binary(max_size=20))
    elif how == "edit_line" and lines[i]:
        entry = json.loads(lines[i])
        entry[draw(st.sampled_from(sorted(entry)))] = draw(JSON)
        lines[i] = json.dumps(entry).encode()
    else:
        lines.insert(i, draw(st.binary(min_size=1, max_size=8)))
    return b"\n".join(lines)


GOOD_JOURNAL: list[bytes] = []


@settings(SETTINGS, max_examples=100)
@given(st.data())
def test_damaged_journals_are_resumed_or_refused_by_name(tmp_path_factory, data):
    if not GOOD_JOURNAL:
        GOOD_JOURNAL.append(_journal(tmp_path_factory.mktemp("journal")))
    out = tmp_path_factory.mktemp("sweep")
    (out / "study.journal").write_bytes(data.draw(damaged_journals(GOOD_JOURNAL[0])))
    code, err = exit_outcome(lambda: sweeps_run.main(["--study", "smoke", "--trials", "1", "--out", str(out)],
                                                validate_only=True))
    assert sorted(p.name for p in out.iterdir()) == ["study.journal"]  # nothing else written
    if not refused_naming(code, err, out / "study.journal"):  # then the study resumes from it, as run_study does
        study = optuna.create_study(study_name="smoke", storage=make_storage(str(out / "study.journal")),
                                    load_if_exists=True)
        study.get_trials()


# ---- output paths -----------------------------------------------------------------------------
PARTS = st.lists(st.sampled_from(["file", "dir", "new", "new2", "x.png"]), min_size=1, max_size=3)


def _commands(out: str) -> list:
    return [lambda: vaes_train.main([f"out={out}"], validate_only=True),
            lambda: sample.main([str(REPO / "runs" / "none"), f"out={out}"], validate_only=True),
            lambda: bench_run.main(["--suite", "quick", "--out", out], validate_only=True),
            lambda: report.main(["--suite", "quick", "--runs", str(RECORD.parents[1]), "--out", out], validate_only=True),
            lambda: sweeps_run.main(["--study", "smoke", "--trials", "1", "--out", out], validate_only=True),
            lambda: sweeps_run.main(["--study", "smoke", "--trials", "1", "--storage", out], validate_only=True),
            lambda: speed.parse_args(["--out", out, "--parts", "train"]) and 0]


@SETTINGS
@given(PARTS, st.integers(0, 6))
def test_output_paths_under_files_are_refused_before_anything_is_written(tmp_path, parts, which):
    root = tmp_path / "tree"
    shutil.rmtree(root, ignore_errors=True)
    (root / "dir").mkdir(parents=True)
    (root / "file").write_text("a file")
    out = root.joinpath(*parts)
    code, err = exit_outcome(_commands(str(out))[which])
    under_a_file = any(p.is_file() for p in out.parents)
    if under_a_file:  # refused, naming the path (sample names a non-PNG before it looks at the folder)
        assert code == 2 and str(out) in err and "Traceback" not in err, (out, code, err)
    else:
        refused_naming(code, err, out)
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == ["dir", "file"]  # nothing written
