"""Send an Optuna study to a cluster through submitit (SLURM, local, debug); its summary and plots.

Study: ``W`` workers are submitted as ONE array job (``executor.map_array``). Each worker loads
the shared study and runs one trial at a time (``study.optimize(n_trials=1)``) until the study
holds ``T`` finished trials, COMPLETE or PRUNED (a pruned trial was decided by the pruner and
spent its budget). FAILED trials do not count: a new trial takes their place, or, when the
trial was cut short rather than broken, a retry with the same parameters in the same run folder.
Every trial is one :func:`vaes.run.run` and leaves ``OUT/runs/trial-NNNN-<run_id>/
record.json`` like a suite run.

Faults, and what resumes them (the trial's run folder is a user attribute ``run_dir`` of the
trial; a retry is a WAITING trial with the same parameters and the same ``run_dir``, created
like Optuna's RetryHeartbeatStaleTrialCallback, so whichever worker asks next resumes the run
from ``checkpoint.pt``):

* time limit / preemption: SLURM sends SIGUSR2 ``signal_delay_s`` before the end (submitit sets
  ``--signal=USR2@90``). While a worker runs, its own handler (``PreemptionGuard``) turns the
  signal into a stop request (vaes/stop.py): the trainer writes a step-level checkpoint at the
  next step boundary and returns 'interrupted'; the trial is marked FAIL (``fail_kind`` =
  'interrupted') and its retry enqueued; then submitit's own handler runs: ``checkpoint()``
  (a fresh worker) and ``scontrol requeue``. The requeued worker (or another one) continues
  the same run folder. Nothing of the trainer's state lives only in memory when the process
  exits, which is why submitit's handler is not left to fire in the middle of a training step.
* SIGKILL / node failure: the trial stays RUNNING. With an RDB storage (PostgreSQL) the
  heartbeat stops, another worker fails the stale trial (``fail_stale_trials``) and Optuna
  calls ``RetryInSameFolder``: the retry resumes from the last epoch checkpoint
  (``checkpoint_every=1``). With the journal file (one machine) a worker finds RUNNING trials
  whose owning process is gone (host and pid are trial attributes) and does the same.
* a failing run (NaN loss, bad hyper-parameters, an exception): FAIL with ``fail_kind`` =
  'error' and ``fail_reason``; the study goes on; ``--max-failed`` of them stop it.
* everything died: the same command again loads the same study (``load_if_exists``) and
  finishes it.

Where: :mod:`sweeps.storage` opens the storage, :mod:`sweeps.faults` finds dead workers and
enqueues retries, :mod:`sweeps.worker` is one array task (what Optuna does there and what is
written by hand is said at its top); this module submits the workers, then writes
``study.json``, ``trials.csv`` and the plots.
"""
from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from benchmarks.report import report_or_say
from launch.executors import (
    ClusterOptions,
    make_executor,
    maybe_snapshot,
    wait_jobs,
    write_launch,
)
from sweeps.storage import JOURNAL_NAME, STORAGE_ENV, is_journal, make_storage, redact
from sweeps.studies import Study, get_study
from sweeps.worker import StudyWorker, SweepSpec, count, count_errors
from vaes.records import read_json, write_json


def trial_counts(study: optuna.Study) -> dict:
    """The study's trials by state (as study.json writes them); ``errors`` are broken runs."""
    n = {key: count(study, state) for key, state in (
        ("complete", TrialState.COMPLETE), ("pruned", TrialState.PRUNED), ("running", TrialState.RUNNING),
        ("waiting", TrialState.WAITING), ("failed", TrialState.FAIL))}
    return {**n, "errors": count_errors(study), "finished": n["complete"] + n["pruned"]}


DEFAULT_OPTIONS = ClusterOptions()  # frozen, so one instance is a safe default


def run_study(name: str, *, trials: int, workers: int = 1, opts: ClusterOptions = DEFAULT_OPTIONS,
              out: str | Path | None = None, storage: str | None = None, study_name: str | None = None,
              overrides: dict | None = None, device: str = "auto", heartbeat: int = 60,
              grace: int | None = None, max_failed: int | None = None, max_retry: int | None = 3,
              poll_s: float = 5.0, snapshot: bool = False, report: bool = True) -> int:
    """Run study ``name`` to ``trials`` finished trials with ``workers`` array tasks; 0 when it
    got there. Writes OUT/study.json, OUT/trials.csv, the plots and OUT/runs/*/record.json."""
    definition = get_study(name)
    if trials < 1 or workers < 1:
        raise ValueError(f"--trials and --workers must be >= 1 (got {trials}, {workers})")
    study_name = study_name or definition.name
    out = Path(out or Path("runs") / "sweeps" / study_name).resolve()
    claim_folder(out, definition.name, study_name)
    url = storage or os.environ.get(STORAGE_ENV) or str(out / JOURNAL_NAME)
    if is_journal(url):
        url = str(Path(url).resolve())  # jobs may start elsewhere (--snapshot changes the directory)
    secret = redact(url) != url
    if secret:
        os.environ[STORAGE_ENV] = url  # sbatch / local / debug jobs inherit it; it is never pickled
    if is_journal(url) and opts.cluster == "slurm":
        print("note: journal-file storage; on several nodes use PostgreSQL (--storage "
              "postgresql+psycopg2://...) for heartbeats", flush=True)
    grace = grace or 2 * heartbeat
    st = make_storage(url, heartbeat=heartbeat, grace=grace, max_retry=max_retry)
    study = optuna.create_study(study_name=study_name, storage=st, directions=list(definition.directions),
                                load_if_exists=True)
    got = [d.name.lower() for d in study.directions]
    if got != list(definition.directions):
        raise ValueError(f"study {study_name!r} in {redact(url)} has directions {got}, but {name} "
                         f"defines {list(definition.directions)}; use another --study-name")
    study.set_user_attr("definition", {"study": definition.name, "suite": definition.suite,
                                       "config": definition.config, "overrides": overrides or {},
                                       "metric_names": list(definition.metric_names)})
    c = trial_counts(study)
    print(f"study {study_name} ({definition.name}): {c['finished']}/{trials} finished, {c['running']} running, "
          f"{c['failed']} failed; storage {redact(url)}; out {out}", flush=True)
    results: list[dict] = []
    if c['finished'] < trials:
        spec = SweepSpec(study=definition.name, study_name=study_name, trials=trials, out=str(out),
                         storage=redact(url) if secret else url, storage_in_env=secret,
                         heartbeat=None if is_journal(url) else heartbeat, grace=grace,
                         max_failed=max_failed or max(10, trials), max_retry=max_retry, poll_s=poll_s,
                         device=device, overrides=dict(overrides or {}),
                         threads=opts.cpus_per_worker)
        executor = make_executor(opts, out / "submitit", name=f"sweep-{study_name}", parallelism=workers)
        t0 = time.perf_counter()
        with maybe_snapshot(snapshot, out):
            jobs = executor.map_array(StudyWorker(spec), list(range(workers)))  # ONE array job
        write_launch(out, "study", jobs, opts.cluster)
        print(f"submitted {workers} worker(s) to {opts.cluster}: "
              f"{', '.join(j.job_id for j in jobs)} (logs: {out / 'submitit'})", flush=True)
        results = wait_jobs(jobs, "worker")
        print(f"workers done in {time.perf_counter() - t0:.1f} s", flush=True)
    summary = summarize(study, definition, out, url, trials, results)
    plots = export_plots(study, definition, out)
    if plots:
        print("plots: " + ", ".join(p.name for p in plots), flush=True)
    if report:
        report_or_say({"name": study_name, "dataset": definition.suite_dict()["dataset"], "seeds": 1,
                 "description": definition.description}, out)
    return 0 if summary["counts"]["finished"] >= trials else 1


OWNER_FILE = "sweep.json"  # which study an output folder holds, written before anything else


def claim_folder(out: Path, study: str, study_name: str) -> None:
    """Make ``out`` the folder of (study, study_name), or refuse (ValueError, nothing written)
    when it holds another study's output: its trials' run folders and study.json would mix."""
    held = None
    for name in (OWNER_FILE, "study.json"):
        obj = read_json(out / name) if (out / name).is_file() else None
        if obj is not None:
            held = (obj.get("study"), obj.get("study_name"))
            break
    if held is not None and held != (study, study_name):
        raise ValueError(
            f"--out {out} already holds study {held[0]!r} (study name {held[1]!r}), not --study {study} "
            f"(study name {study_name!r}); one output folder holds one study, so nothing was written. "
            f"Give another --out, or delete that folder to start this study there")
    out.mkdir(parents=True, exist_ok=True)
    if held is None:
        write_json(out / OWNER_FILE, {"study": study, "study_name": study_name})


def summarize(study: optuna.Study, definition: Study, out: Path, url: str, trials: int,
              workers: list[dict]) -> dict:
    """Write OUT/study.json and OUT/trials.csv; print the counts and the best trial(s)."""
    c = trial_counts(study)
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"number": t.number, "state": t.state.name, "values": t.values, "params": t.params,
                     **{k: t.user_attrs.get(k) for k in ("run_dir", "origin_trial", "fail_kind", "fail_reason",
                                                         "resumed_from", "train_seconds", "eval_seconds",
                                                         "objective_metric")},
                     "retry_of": t.system_attrs.get("failed_trial"),
                     "seconds": (t.datetime_complete - t.datetime_start).total_seconds()
                     if t.datetime_complete and t.datetime_start else None})
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    best = [] if not complete else (study.best_trials if definition.multi_objective else [study.best_trial])
    summary = {"study_name": study.study_name, "study": definition.name, "storage": redact(url),
               "directions": list(definition.directions), "metric_names": list(definition.metric_names),
               "objective_metric": study.user_attrs.get("objective_metric"), "target_trials": trials,
               "counts": c,
               "best": [{"number": t.number, "values": t.values, "params": t.params,
                         "run_dir": t.user_attrs.get("run_dir")} for t in best],
               "workers": workers, "trials": rows}
    write_json(out / "study.json", summary)
    try:
        study.trials_dataframe().to_csv(out / "trials.csv", index=False)
    except (ValueError, KeyError) as e:  # an empty study has no columns to write
        print(f"trials.csv not written: {e}", flush=True)
    print(f"study {study.study_name}: {c['finished']}/{trials} finished ({c['complete']} complete, "
          f"{c['pruned']} pruned), {c['failed']} failed ({c['errors']} errors), {c['running']} running, "
          f"{c['waiting']} waiting; "
          f"objective {summary['objective_metric']}", flush=True)
    for b in summary["best"]:
        print(f"  best: trial {b['number']} values {b['values']} params {b['params']} -> {b['run_dir']}", flush=True)
    return summary


def export_plots(study: optuna.Study, definition: Study, out: Path) -> list[Path]:
    """Optuna's matplotlib plots as PNG in OUT: optimisation history (each objective),
    intermediate values, parameter importances (with >= 2 completed trials), Pareto front."""
    import matplotlib  # heavy, and only the study's plots need it (its Agg backend set before pyplot)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg")
    from optuna.visualization import matplotlib as ovm  # imports pyplot: after use("Agg")
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not complete:
        print("plots: no completed trial yet", flush=True)
        return []
    written = []
    names = definition.metric_names
    metric = study.user_attrs.get("objective_metric") or "quality"
    names = tuple(metric if n == "quality" else n for n in names)

    def save(ax, fname: str) -> None:
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.savefig(out / fname, bbox_inches="tight", dpi=120)
        plt.close(fig)
        written.append(out / fname)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)  # e.g. "too few trials" from the evaluators
        if definition.multi_objective:
            save(ovm.plot_pareto_front(study, target_names=list(names)), "pareto_front.png")
            for i, n in enumerate(names):
                save(ovm.plot_optimization_history(study, target=lambda t, i=i: t.values[i], target_name=n),
                     f"optimization_history_{n}.png")
        else:
            save(ovm.plot_optimization_history(study, target_name=names[0]), "optimization_history.png")
            if any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
                save(ovm.plot_intermediate_values(study), "intermediate_values.png")
        varying = {k for t in complete for k in t.params if len({str(u.params.get(k)) for u in complete}) > 1}
        if len(complete) < 2 or not varying:
            print(f"parameter importances skipped: they need >= 2 completed trials with different "
                  f"parameters ({len(complete)} completed)", flush=True)
            return written
        for i, n in enumerate(names):
            target = (lambda t, i=i: t.values[i]) if definition.multi_objective else None
            fname = f"param_importances_{n}.png" if definition.multi_objective else "param_importances.png"
            try:
                save(ovm.plot_param_importances(study, target=target, target_name=n), fname)
            except (ValueError, RuntimeError, ZeroDivisionError) as e:
                plt.close("all")
                print(f"parameter importances for {n} skipped: {type(e).__name__}: {e}", flush=True)
    return written
