"""Property-based tests of every entry point's parsing: argument lists built from the
real keys and flags, with values of every type and junk, go through the REAL parser's
validate-only path (nothing trained, nothing written); each is accepted (0) or refused with
exit status 2 and an 'error' message, never a traceback."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks import report, speed
from benchmarks import run as bench_run
from sweeps import run as sweeps_run
from vaes import evaluate, sample
from vaes import train as vaes_train
from vaes.config import TrainConfig
from vaes.registry import list_variants, variant_options
from tests.conftest import exit_outcome

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
JUNK = st.sampled_from(["", "0", "-1", "1", "2", "3.5", "-0.0", "1e309", "nan", "inf", "true", "none", "x",
                        "a,b", "1,2", "0,1", ",", "=", "--", "\u00e9", "10000000000000000000000"])
VALUES = st.one_of(JUNK, st.integers(-5, 10**6).map(str), st.floats(allow_nan=True).map(repr),
                   st.text(max_size=6))


def _check(call) -> None:
    code, err = exit_outcome(call)  # any other exception escapes and fails the test with its traceback
    assert code in (0, 2), (code, err)
    if code == 2:
        assert "error" in err and "Traceback" not in err, err


def _flag_lists(flags: list[str], choices: dict[str, list[str]] | None = None):
    """Lists of --flag VALUE pairs (and bare flags, and junk words)."""
    choices = choices or {}
    pair = st.sampled_from(flags).flatmap(
        lambda f: st.tuples(st.just(f), st.one_of(VALUES, st.sampled_from(choices.get(f, ["1"])))))
    item = st.one_of(pair.map(list), st.sampled_from(flags).map(lambda f: [f]), JUNK.map(lambda j: [j]))
    return st.lists(item, max_size=5).map(lambda xs: [a for x in xs for a in x])


def _key_value_lists():
    keys = [f.name for f in dataclasses.fields(TrainConfig)] + sorted(
        {f.name for v in list_variants() for f in dataclasses.fields(variant_options(v))}) + ["junk"]
    pair = st.tuples(st.sampled_from(keys), st.one_of(VALUES, st.sampled_from(list_variants()))).map(
        lambda kv: f"{kv[0]}={kv[1]}")
    return st.lists(st.one_of(pair, JUNK), max_size=5)


@SETTINGS
@given(_key_value_lists())
def test_vaes_train(argv):
    _check(lambda: vaes_train.main(argv, validate_only=True))


@SETTINGS
@given(_key_value_lists())
def test_vaes_evaluate(argv):
    _check(lambda: evaluate.main(["runs/none", *argv], validate_only=True))


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["n", "out", "stage", "seed", "sampler", "device", "junk"]),
                          st.one_of(VALUES, st.sampled_from(["mean", "ancestral", "x.png"]))).map("=".join),
                max_size=5))
def test_vaes_sample(argv):
    _check(lambda: sample.main(["runs/none", *argv], validate_only=True))


RUN_FLAGS = ["--suite", "--list", "--seeds", "--only", "--out", "--device", "--epochs-scale", "--jobs", "--retry-failed",
             "--allow-dirty", "--set", "--tensorboard", "--cluster", "--workers", "--partition", "--gpus-per-worker",
             "--cpus-per-worker", "--time-min", "--mem-gb", "--snapshot", "--junk"]


@SETTINGS
@given(_flag_lists(RUN_FLAGS, {"--suite": ["quick", "mnist", "nope"], "--device": ["cpu", "gpu"],
                               "--cluster": ["none", "slurm", "x"], "--set": ["epochs=2", "seed=1", "lr=-1"],
                               "--out": ["runs/t", "results/t"], "--jobs": ["1", "3", "0", "-2", "x"]}))
def test_benchmarks_run(argv):
    _check(lambda: bench_run.main(argv, validate_only=True))


@SETTINGS
@given(_flag_lists(["--suite", "--runs", "--out", "--allow-dirty", "--junk"],
                   {"--suite": ["quick", "nope"], "--runs": ["results/quick/runs", "nowhere"]}))
def test_benchmarks_report(argv):
    _check(lambda: report.main(argv, validate_only=True))


SPEED_FLAGS = ["--dataset", "--device", "--parts", "--synthetic", "--n-train", "--epochs", "--rounds", "--batch-size",
               "--bf16", "--compile", "--stage2-epochs", "--eval-images", "--eval-batch", "--random-inception",
               "--peak-tflops", "--suite", "--suite-seeds", "--suite-epochs-scale", "--jobs", "--threads", "--out",
               "--junk"]


@SETTINGS
@given(_flag_lists(SPEED_FLAGS, {"--dataset": ["digits", "cifar10", "npz"], "--out": ["runs/s"],
                                 "--parts": ["train,suite", "x", "eval"], "--jobs": ["0", "2"]}))
def test_benchmarks_speed(argv):
    _check(lambda: speed.parse_args(argv) and 0)


SWEEP_FLAGS = ["--list", "--study", "--trials", "--workers", "--cluster", "--storage", "--study-name", "--out", "--set",
               "--device", "--gpus-per-worker", "--cpus-per-worker", "--time-min", "--mem-gb", "--heartbeat",
               "--grace", "--max-failed", "--max-retry", "--poll-s", "--no-report", "--junk"]


@SETTINGS
@given(_flag_lists(SWEEP_FLAGS, {"--study": ["smoke", "nope"], "--set": ["epochs=2", "seed=1", "variant=beta"],
                                 "--cluster": ["debug", "x"]}))
def test_sweeps_run(argv):
    _check(lambda: sweeps_run.main(argv, validate_only=True))


@pytest.mark.parametrize("argv, needle", [
    (["--suite", "quick", "--seeds", "0"], "--seeds"), (["--suite", "quick", "--seeds", "-1"], "--seeds"),
    (["--suite", "quick", "--epochs-scale", "-1"], "--epochs-scale"),
    (["--suite", "quick", "--cluster", "slurm", "--workers", "0"], "--workers")])
def test_the_issue_cases_of_benchmarks_run_are_refused(argv, needle):
    code, err = exit_outcome(lambda: bench_run.main(argv, validate_only=True))
    assert code == 2 and needle in err


def test_zero_trials_is_refused_by_name():
    code, err = exit_outcome(lambda: sweeps_run.main(["--study", "smoke", "--trials", "0"], validate_only=True))
    assert code == 2 and "--trials" in err and "'0'" in err
