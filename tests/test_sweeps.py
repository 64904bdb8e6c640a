"""Sweeps against real components: Optuna studies through submitit on the local SLURM cluster
with PostgreSQL (tests/services.py starts them or skips with the reason), and on submitit's
local and debug executors with the journal file.

Faults are produced for real: a worker killed with SIGKILL (its trial is retried from the last
epoch checkpoint), the time-limit signal SIGUSR2 (the worker checkpoints, is requeued and
resumes the same run), a diverging run (recorded failed with its reason, the study goes on),
a relaunch after everything died. Every wait is bounded.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest

from vaes.data import list_datasets
from benchmarks.suite import list_suites
from sweeps.run import main
from sweeps.storage import StorageError, make_storage, redact
from sweeps.studies import get_study, list_studies, register_study
from tests.conftest import REPO, log_tail, wait_until

PG_SECRET = "vaebench:vaebench@"  # user:password@ of the test database: must never be written


# ---- helpers ----------------------------------------------------------------------------------

def _env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("VAEBENCH_STORAGE", None)
    return env


def _start(args: list[str], log: Path, module: str = "sweeps.run") -> subprocess.Popen:
    """The CLI in a subprocess (own session, so a timeout can kill everything it started)."""
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, env=_env(),
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)


def _cancel_jobs(out: Path) -> None:
    launch = out / "launch.json"
    if launch.is_file():
        ids = json.loads(launch.read_text())["job_ids"]
        if json.loads(launch.read_text())["cluster"] == "slurm":
            subprocess.run(["scancel", *ids], check=False, timeout=20, capture_output=True)


def _finish(proc: subprocess.Popen, log: Path, out: Path, timeout_s: float) -> int:
    """Wait for the CLI; on timeout kill it and its jobs and fail with the log's tail."""
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _cancel_jobs(out)
        pytest.fail(f"no result within {timeout_s} s; log tail:\n{log_tail(log)}", pytrace=False)


def _running_with_checkpoint(study: optuna.Study, out: Path):
    """A RUNNING trial whose run has written its first epoch checkpoint, or None."""
    for t in study.get_trials(deepcopy=True, states=(optuna.trial.TrialState.RUNNING,)):
        rd = t.user_attrs.get("run_dir")
        if rd and (out / rd / "checkpoint.pt").is_file() and t.user_attrs.get("owner"):
            return t
    return None


def _finished(study: optuna.Study) -> list:
    return [t for t in study.get_trials() if t.state in (optuna.trial.TrialState.COMPLETE,
                                                         optuna.trial.TrialState.PRUNED)]


def _check_finished_records(study: optuna.Study, out: Path, n: int) -> list:
    """Exactly n finished trials, each with its own finished record naming that trial."""
    done = _finished(study)
    assert len(done) == n, [(t.number, t.state.name) for t in study.get_trials()]
    dirs = [t.user_attrs["run_dir"] for t in done]
    assert len(set(dirs)) == n, f"two finished trials share a run folder: {dirs}"
    for t in done:
        rec = json.loads((out / t.user_attrs["run_dir"] / "record.json").read_text())
        assert rec["status"] == "finished" and rec["trial"] == t.number, (t.number, rec["status"])
        assert rec["label"] == f"{study.study_name} trial {t.user_attrs['origin_trial']}"
        assert rec["params"] == t.params
    return done


def _no_secret_under(out: Path, *texts: str) -> None:
    for text in texts:
        assert PG_SECRET not in text
    for p in out.rglob("*"):
        if p.is_file() and p.stat().st_size < 5_000_000:
            assert PG_SECRET.encode() not in p.read_bytes(), f"the storage password is in {p}"


def _journal_study(out: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=make_storage(str(out / "study.journal")))


# ---- no cluster needed ----------------------------------------------------------------------

@pytest.mark.parametrize("url, expected", [
    ("postgresql+psycopg2://alice:s3cret@db.example:5432/optuna",
     "postgresql+psycopg2://alice:***@db.example:5432/optuna"),
    ("postgresql://alice:p@ss/w:rd@db:5432/x", "postgresql://alice:***@db:5432/x"),
    ("mysql://bob:pw@host/db?password=again&charset=utf8", "mysql://bob:***@host/db?password=***&charset=utf8"),
    ("postgresql://alice@db/optuna", "postgresql://alice@db/optuna"),
    ("postgresql://db:5432/optuna", "postgresql://db:5432/optuna"),
    ("sqlite:////tmp/study.db", "sqlite:////tmp/study.db"),
    ("/scratch/me/study.journal", "/scratch/me/study.journal"),
])
def test_redact_hides_passwords(url, expected):
    assert redact(url) == expected


def test_storage_error_does_not_leak_password(tmp_path):
    with pytest.raises(StorageError) as e:  # no such driver: the message must still be clean
        make_storage("nosuchdb+nodriver://user:TopSecret42@localhost/db")
    assert "TopSecret42" not in str(e.value) and "user:***@localhost" in str(e.value)


def test_list_shows_the_studies(capsys):
    assert main(["--list"]) == 0
    text = capsys.readouterr().out
    for name in ("beta_digits", "balanced_digits", "balanced_digits_pareto", "smoke"):
        assert name in text


def _diverges_first(trial: optuna.Trial, ctx):
    lr = trial.suggest_float("lr", 1e-3, 2e-3, log=True)
    # trial 0 diverges (NaN loss -> a failed record), the others train normally
    rec = ctx.train(trial, variant="balanced", lr=100.0 if trial.number == 0 else lr, latent_dim=8)
    return ctx.quality(trial, rec)


if "test_diverges_first" not in list_studies():
    register_study("test_diverges_first", suite="quick", config={"two_stage": False, "epochs": 2, "eval_images": 200},
                   description="tests: trial 0 diverges")(_diverges_first)


def test_debug_failed_trial_recorded_study_goes_on_and_relaunch_continues(tmp_path):
    """--cluster debug (in this process): a NaN run is a FAIL with its reason; the same
    command with more trials continues the same study without rerunning anything."""
    out = tmp_path / "sweep"
    args = ["--study", "test_diverges_first", "--cluster", "debug", "--workers", "2", "--out", str(out),
            "--poll-s", "0.2", "--no-report", "--device", "cpu"]
    assert main([*args, "--trials", "1"]) == 0
    study = _journal_study(out, "test_diverges_first")
    t0 = study.trials[0]
    assert t0.state == optuna.trial.TrialState.FAIL and t0.user_attrs["fail_kind"] == "error"
    assert "non-finite loss" in t0.user_attrs["fail_reason"]
    rec0 = json.loads((out / t0.user_attrs["run_dir"] / "record.json").read_text())
    assert rec0["status"] == "failed" and "non-finite loss" in rec0["reason"]
    done = _check_finished_records(study, out, 1)
    mtimes = {t.number: (out / t.user_attrs["run_dir"] / "record.json").stat().st_mtime for t in done}
    assert (out / "optimization_history.png").is_file() and (out / "study.json").is_file()

    assert main([*args, "--trials", "2"]) == 0  # relaunch: same study, one more trial
    study = _journal_study(out, "test_diverges_first")
    done = _check_finished_records(study, out, 2)
    assert {t.number for t in done} == {1, 2}
    for n, m in mtimes.items():
        assert (out / study.trials[n].user_attrs["run_dir"] / "record.json").stat().st_mtime == m


def test_every_data_set_suite_has_a_study_of_its_own():
    studies = {name: get_study(name) for name in list_studies()}
    data_set_suites = set(list_suites()) & set(list_datasets())  # a data-set suite bears its data set's name
    assert data_set_suites
    for suite in sorted(data_set_suites):
        assert any(s.suite == suite for s in studies.values()), suite


@pytest.mark.inception
def test_shapes_study_runs_a_trial_with_real_fid_as_its_objective(tmp_path):
    """A data-set study end to end (debug cluster, one tiny trial): its objective is sample FID."""
    out = tmp_path / "shapes"
    assert main(["--study", "balanced_shapes", "--trials", "1", "--cluster", "debug", "--out", str(out),
                 "--set", "epochs=1", "n_train=300", "eval_images=200", "fid_images=20",
                 "--no-report", "--device", "cpu"]) == 0
    study = _journal_study(out, "balanced_shapes")
    (trial,) = _check_finished_records(study, out, 1)
    assert trial.user_attrs["objective_metric"] == "fid_samples"
    rec = json.loads((out / trial.user_attrs["run_dir"] / "record.json").read_text())
    assert trial.values[0] == pytest.approx(rec["metrics"]["fid_samples"]["value"])
    assert set(trial.params) == {"momentum", "kl_weight", "lr"}


def test_debug_multi_objective_study_writes_pareto_front(tmp_path):
    out = tmp_path / "pareto"
    assert main(["--study", "balanced_digits_pareto", "--trials", "2", "--cluster", "debug", "--out", str(out),
                 "--set", "epochs=1", "eval_images=200", "--no-report", "--device", "cpu"]) == 0
    study = _journal_study(out, "balanced_digits_pareto")
    done = _check_finished_records(study, out, 2)
    assert all(len(t.values) == 2 for t in done)
    rec = json.loads((out / done[0].user_attrs["run_dir"] / "record.json").read_text())
    assert done[0].values[1] == pytest.approx(rec["metrics"]["recon_mse"]["value"])
    assert (out / "pareto_front.png").is_file()


def test_local_worker_killed_then_relaunch_resumes_its_trial(tmp_path):
    """--cluster local (a subprocess): SIGKILL the worker mid-trial; the relaunched command
    fails the orphaned trial (its process is gone) and resumes it from its checkpoint."""
    out = tmp_path / "sweep"
    log = tmp_path / "run1.log"
    args = ["--study", "smoke", "--trials", "1", "--workers", "1", "--cluster", "local", "--out", str(out),
            "--set", "epochs=50", "--poll-s", "0.5", "--no-report", "--device", "cpu"]
    proc = _start(args, log)
    journal = out / "study.journal"
    wait_until(journal.is_file, 60, "study created", lambda: log_tail(log), poll_s=0.3)
    victim = wait_until(lambda: _running_with_checkpoint(_journal_study(out, "smoke"), out), 120,
                        "a trial with a checkpoint", lambda: log_tail(log), poll_s=0.3)
    os.kill(victim.user_attrs["owner"]["pid"], signal.SIGKILL)
    assert _finish(proc, log, out, 90) == 1, log_tail(log)  # study incomplete: exit 1

    log2 = tmp_path / "run2.log"
    assert _finish(_start(args, log2), log2, out, 150) == 0, log_tail(log2)
    study = _journal_study(out, "smoke")
    done = _check_finished_records(study, out, 1)
    dead = study.trials[victim.number]
    assert dead.state == optuna.trial.TrialState.FAIL and dead.user_attrs["fail_kind"] == "worker_died"
    retry = [t for t in done if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1, log_tail(log2)
    assert retry[0].user_attrs["run_dir"] == victim.user_attrs["run_dir"]
    assert retry[0].params == victim.params
    assert retry[0].user_attrs["resumed_from"]["epoch"] >= 1
    rec = json.loads((out / victim.user_attrs["run_dir"] / "record.json").read_text())
    assert [r["epoch"] for r in rec["history"]] == list(range(1, 51))


# ---- the SLURM cluster and PostgreSQL -----------------------------------------------------------

def _pg_study(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=optuna.storages.RDBStorage(url))


@pytest.fixture
def pg_study_name(postgres_url):
    name = f"test-sweeps-{uuid.uuid4().hex[:8]}"
    yield name
    try:
        optuna.delete_study(study_name=name, storage=optuna.storages.RDBStorage(postgres_url))
    except KeyError:
        pass  # the test failed before creating it


def _slurm_args(cluster, out: Path, url: str, name: str, trials: int, workers: int, *extra) -> list[str]:
    return ["--study", "smoke", "--study-name", name, "--trials", str(trials), "--workers", str(workers),
            "--cluster", "slurm", "--partition", cluster.partition, "--time-min", "10", "--cpus-per-worker", "1",
            "--mem-gb", "2", "--out", str(out), "--storage", url, "--heartbeat", "1", "--grace", "5",
            "--poll-s", "0.5", "--no-report", "--device", "cpu", *extra]


def _array_ids(out: Path) -> list[str]:
    ids = json.loads((out / "launch.json").read_text())["job_ids"]
    assert len({i.split("_")[0] for i in ids}) == 1, f"not one array job: {ids}"
    return ids


@pytest.mark.slurm
def test_slurm_array_of_two_workers_completes_study_on_postgres(slurm_cluster, postgres_url, pg_study_name, tmp_path):
    out, log = tmp_path / "sweep", tmp_path / "run.log"
    proc = _start(_slurm_args(slurm_cluster, out, postgres_url, pg_study_name, 4, 2), log)
    assert _finish(proc, log, out, 150) == 0, log_tail(log)
    assert len(_array_ids(out)) == 2
    study = _pg_study(postgres_url, pg_study_name)
    done = _check_finished_records(study, out, 4)
    workers = {t.user_attrs["owner"]["slurm_job"] for t in done}
    assert workers <= set(_array_ids(out)), workers
    summary = json.loads((out / "study.json").read_text())
    assert summary["counts"]["finished"] == 4 and summary["storage"].endswith("vaebench:***@localhost:5432/vaebench")
    assert (out / "optimization_history.png").is_file()
    _no_secret_under(out, log.read_text())


@pytest.mark.slurm
def test_slurm_sigkilled_worker_trial_is_retried_from_checkpoint(slurm_cluster, postgres_url, pg_study_name,
                                                                 tmp_path):
    """SIGKILL one worker's python process mid-trial (no chance to checkpoint; note that
    `scancel --signal=KILL` is a graceful cancel: SIGTERM first): its heartbeats stop, the other
    worker fails the stale trial and resumes it in the same folder; the study ends with exactly T."""
    out, log = tmp_path / "sweep", tmp_path / "run.log"
    proc = _start(_slurm_args(slurm_cluster, out, postgres_url, pg_study_name, 2, 2, "--set", "epochs=50"), log)
    wait_until(lambda: (out / "launch.json").is_file(), 60, "jobs submitted", lambda: log_tail(log), poll_s=0.3)
    try:
        victim = wait_until(lambda: _running_with_checkpoint(_pg_study(postgres_url, pg_study_name), out), 120,
                            "a trial with a checkpoint", lambda: log_tail(log), poll_s=0.3)
        task = victim.user_attrs["owner"]["slurm_job"]
        os.kill(victim.user_attrs["owner"]["pid"], signal.SIGKILL)  # single node: the job's pid is ours
        assert _finish(proc, log, out, 240) == 0, log_tail(log)
    finally:
        _cancel_jobs(out)
    study = _pg_study(postgres_url, pg_study_name)
    done = _check_finished_records(study, out, 2)
    dead = study.trials[victim.number]
    assert dead.state == optuna.trial.TrialState.FAIL
    retry = [t for t in done if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1, [(t.number, t.state.name, t.system_attrs) for t in study.trials]
    assert retry[0].user_attrs["run_dir"] == victim.user_attrs["run_dir"] and retry[0].params == victim.params
    assert retry[0].user_attrs["resumed_from"]["epoch"] >= 1
    assert retry[0].user_attrs["owner"]["slurm_job"] != task  # the surviving worker took it over
    assert f"(job {task}) did not finish" in log.read_text()  # the launcher says so
    _no_secret_under(out, log.read_text())


@pytest.mark.slurm
def test_slurm_time_limit_signal_requeues_and_resumes_same_run(slurm_cluster, postgres_url, pg_study_name,
                                                               tmp_path):
    """scancel --signal=USR2 (what SLURM sends before the time limit): the worker checkpoints
    at a step boundary, submitit requeues it, and the requeued worker resumes that checkpoint."""
    out, log = tmp_path / "sweep", tmp_path / "run.log"
    proc = _start(_slurm_args(slurm_cluster, out, postgres_url, pg_study_name, 1, 1, "--set", "epochs=50"), log)
    wait_until(lambda: (out / "launch.json").is_file(), 60, "jobs submitted", lambda: log_tail(log), poll_s=0.3)
    try:
        victim = wait_until(lambda: _running_with_checkpoint(_pg_study(postgres_url, pg_study_name), out), 120,
                            "a trial with a checkpoint", lambda: log_tail(log), poll_s=0.3)
        task = victim.user_attrs["owner"]["slurm_job"]
        subprocess.run(["scancel", "--signal=USR2", task], check=True, timeout=20)

        def pending():
            state = subprocess.run(["squeue", "-h", "-j", task, "-o", "%T"], check=False, capture_output=True,
                                   text=True, timeout=10).stdout.strip()
            return state.startswith("PENDING")
        wait_until(pending, 60, f"job {task} requeued (PENDING)", lambda: log_tail(log), poll_s=0.3)
        pid = victim.user_attrs["owner"]["pid"]
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), 30, "the signalled worker has exited",
                   lambda: log_tail(log), poll_s=0.3)
        # SLURM holds a requeued job for a while (Reason=BeginTime): start it now, but not within
        # the second of the requeue (slurmd rejects a credential as old as its revocation)
        time.sleep(2)
        subprocess.run(["scontrol", "update", f"JobId={task}", "StartTime=now"], check=True, timeout=10)
        assert _finish(proc, log, out, 200) == 0, log_tail(log)
    finally:
        _cancel_jobs(out)
    study = _pg_study(postgres_url, pg_study_name)
    (done,) = _check_finished_records(study, out, 1)
    first = study.trials[victim.number]
    assert first.state == optuna.trial.TrialState.FAIL and first.user_attrs["fail_kind"] == "interrupted"
    assert "SIGUSR2" in first.user_attrs["fail_reason"]
    assert done.system_attrs.get("failed_trial") == victim.number
    assert done.user_attrs["run_dir"] == first.user_attrs["run_dir"]
    assert done.user_attrs["owner"]["slurm_job"] == task and done.user_attrs["owner"]["restart"] == 1
    # resumed where the signal stopped it: "signal SIGUSR2 at epoch E step S; checkpoint saved"
    words = first.user_attrs["fail_reason"].replace(";", " ").split()
    epoch, step = int(words[words.index("epoch") + 1]), int(words[words.index("step") + 1])
    assert done.user_attrs["resumed_from"] == {"trial": victim.number, "epoch": epoch, "step": step}
    assert epoch >= 1
    rec = json.loads((out / done.user_attrs["run_dir"] / "record.json").read_text())
    assert [r["epoch"] for r in rec["history"]] == list(range(1, 51))


@pytest.mark.slurm
def test_slurm_suite_runs_as_one_array(slurm_cluster, tmp_path):
    suite = tmp_path / "tiny.toml"
    suite.write_text('name = "tiny"\ndataset = "digits"\nseeds = 1\n'
                     '[config]\nepochs = 2\neval_images = 200\n'
                     '[[runs]]\nlabel = "beta"\nvariant = "beta"\n'
                     '[[runs]]\nlabel = "balanced"\nvariant = "balanced"\n')
    out, log = tmp_path / "suite", tmp_path / "suite.log"
    args = ["--suite", str(suite), "--cluster", "slurm", "--out", str(out), "--device", "cpu",
            "--partition", slurm_cluster.partition, "--time-min", "10", "--mem-gb", "2"]
    assert _finish(_start(args, log, "benchmarks.run"), log, out, 150) == 0, log_tail(log)
    assert len(_array_ids(out)) == 2
    recs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*/record.json"))]
    assert sorted(r["label"] for r in recs) == ["balanced", "beta"]
    assert all(r["status"] == "finished" and r["suite"] == "tiny" for r in recs)
    log2 = tmp_path / "suite2.log"
    assert _finish(_start(args, log2, "benchmarks.run"), log2, out, 60) == 0, log_tail(log2)
    assert "2 already done, 0 to run" in log2.read_text()
