"""Real-service tests: submitit on the local SLURM cluster, Optuna on PostgreSQL, pdflatex.

The services come from ``.ci/services.sh`` (see tests/services.py); without them these tests
are skipped with the reason. About 40 s when the services are up.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid

import optuna
import pytest
import submitit

from tests.conftest import wait_until

pytestmark = pytest.mark.slurm


def _call_with_timeout(fn, timeout_s: float):
    """Run fn() in a daemon thread; return its result or re-raise its exception.

    Fails the test (instead of hanging) when fn has not returned after timeout_s.
    """
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        pytest.fail(f"no answer within {timeout_s} s", pytrace=False)
    if "error" in box:
        raise box["error"]
    return box["value"]


def _squeue_state(job_id: str) -> str:
    out = subprocess.run(
        ["squeue", "-h", "-j", job_id, "-o", "%T|%r"], capture_output=True, text=True, timeout=10
    ).stdout.strip()
    return out.splitlines()[0] if out else ""


def _wait_state(job_id: str, prefix: str, timeout_s: float) -> str:
    def reached() -> str:
        state = _squeue_state(job_id)
        return state if state.startswith(prefix) else ""
    return wait_until(reached, timeout_s, f"job {job_id} {prefix}", lambda: f"squeue: {_squeue_state(job_id)!r}",
                      poll_s=0.3)


def _wait_or_cancel(job, predicate, timeout_s: float, what: str, detail, poll_s: float) -> None:
    """wait_until, and cancel the job if the wait fails (a test's job must not outlive it)."""
    try:
        wait_until(predicate, timeout_s, what, detail, poll_s=poll_s)
    except pytest.fail.Exception:
        subprocess.run(["scancel", job.job_id], timeout=10)
        raise


def _executor(folder, cluster, **params):
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(
        timeout_min=5, slurm_partition=cluster.partition, cpus_per_task=1, **params
    )
    return executor


def test_submitit_map_array_runs_tasks_concurrently(slurm_cluster, tmp_path):
    # Functions are defined locally so that cloudpickle ships them by value: the job does not
    # need to import this test module.
    def square(x):
        start = time.time()
        time.sleep(2)
        return x * x, os.environ.get("SLURM_ARRAY_TASK_ID"), start, time.time()

    executor = _executor(tmp_path / "submitit", slurm_cluster, slurm_array_parallelism=3)
    jobs = executor.map_array(square, [1, 2, 3])
    assert len(jobs) == 3
    results = _call_with_timeout(lambda: [job.result() for job in jobs], 60)

    assert [r[0] for r in results] == [1, 4, 9]
    assert sorted(r[1] for r in results) == ["0", "1", "2"]
    # CR_Core: 1-cpu tasks share the node, so at least two of them overlapped in time
    spans = sorted((r[2], r[3]) for r in results)
    overlaps = any(a_end > b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
    if slurm_cluster.cpus >= 2:
        assert overlaps, f"array tasks ran one at a time: {spans}"


def test_submitit_killed_job_raises_uncompleted(slurm_cluster, tmp_path):
    def sleeper():
        time.sleep(300)
        return "not reached"

    executor = _executor(tmp_path / "submitit", slurm_cluster)
    job = executor.submit(sleeper)
    _wait_state(job.job_id, "RUNNING", 30)
    subprocess.run(["scancel", "--signal=KILL", job.job_id], check=True, timeout=10)

    # submitit learns the death through sacct (FAILED), then waits 15 s for a result file
    _wait_or_cancel(job, lambda: job.done(force_check=True), 45, f"submitit sees job {job.job_id} done after KILL",
                    lambda: f"it still sees it as {job.state}", poll_s=1)
    with pytest.raises(submitit.core.utils.UncompletedJobError):
        _call_with_timeout(job.result, 40)
    assert job.state in ("FAILED", "CANCELLED", "NODE_FAIL") or job.state.startswith("CANCELLED")


def test_submitit_checkpoint_requeue(slurm_cluster, tmp_path):
    """USR2 (what SLURM sends before the time limit) -> submitit checkpoints, requeues, reruns."""
    class Resumable(submitit.helpers.Checkpointable):
        def __call__(self, started_marker):
            restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
            if restarts == 0:
                open(started_marker, "w").close()  # submitit's USR2 handler is installed now
                time.sleep(300)
            return restarts

    executor = _executor(tmp_path / "submitit", slurm_cluster)
    marker = tmp_path / "started"
    job = executor.submit(Resumable(), str(marker))
    _wait_or_cancel(job, marker.exists, 30, f"job {job.job_id} started",
                    lambda: f"squeue: {_squeue_state(job.job_id)!r}", poll_s=0.3)
    job._interrupt(timeout=True)  # scancel --signal USR2, as on a real pre-timeout signal
    # SLURM holds a requeued job for about 2 minutes (Reason=BeginTime) because slurmd revokes
    # the credential of the killed run: a restart within the same second is refused ("Job
    # credential revoked", the job ends FAILED). Let 2 s pass, then start it at once.
    state = _wait_state(job.job_id, "PENDING", 30)
    time.sleep(2)
    subprocess.run(
        ["scontrol", "update", f"JobId={job.job_id}", "StartTime=now"], check=True, timeout=10
    )
    assert _call_with_timeout(job.result, 60) == 1, state


def test_optuna_rdb_storage_on_postgres(postgres_url):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = f"test-services-{uuid.uuid4().hex[:8]}"
    storage = optuna.storages.RDBStorage(postgres_url)
    try:
        study = optuna.create_study(study_name=name, storage=storage, direction="minimize")
        study.optimize(lambda t: (t.suggest_float("x", -3, 3) - 1) ** 2, n_trials=3)

        other = optuna.storages.RDBStorage(postgres_url)
        loaded = optuna.load_study(study_name=name, storage=other)
        assert len(loaded.trials) == 3
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in loaded.trials)
        assert loaded.best_value == pytest.approx(study.best_value)
        assert loaded.best_params == study.best_params
    finally:
        optuna.delete_study(study_name=name, storage=storage)


def test_pdflatex_compiles_booktabs_table(pdflatex, tmp_path):
    (tmp_path / "table.tex").write_text(
        r"""\documentclass{article}
\usepackage{booktabs}
\begin{document}
\begin{tabular}{lrr}
\toprule
Model & ELBO & FID \\
\midrule
VAE & -91.2 & 54.3 \\
$\beta$-VAE & -95.0 & 60.1 \\
\bottomrule
\end{tabular}
\end{document}
"""
    )
    proc = subprocess.run(
        [pdflatex, "-interaction=nonstopmode", "-halt-on-error", "table.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "table.pdf").read_bytes()[:5] == b"%PDF-"
