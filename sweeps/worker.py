"""One array task of a study: trials of the shared study, one at a time, until it holds
``spec.trials`` finished (COMPLETE or PRUNED) trials; the faults are described in
:mod:`sweeps.launcher`.

What Optuna does here: the launcher makes the study with ``load_if_exists`` (a relaunch goes
on with it) and every worker loads it from the shared storage; TPE with ``constant_liar``
proposes the points and a percentile pruner prunes; with an RDB storage, heartbeats and
``fail_stale_trials`` find a killed worker and :class:`sweeps.faults.RetryInSameFolder` (a
``RetryHeartbeatStaleTrialCallback``) retries its trial; trials are counted with
``study.get_trials(states=...)``, which the storage filters (in SQL for an RDB storage).

What is written here, and why: the loop around ``study.optimize(n_trials=1)``. Between two
trials a worker fails dead trials, stops on a signal or after ``--max-failed`` broken runs, and
WAITS, neither stopping nor asking for a trial, while the study's last trials run on other
workers, to take one over if its worker dies. ``optuna.study.MaxTrialsCallback`` does not fit:
it stops a study only after a trial has ended and only counts finished ones, so it cannot keep
two workers from both starting the last trial, nor make a worker wait. Hence the surplus check
(:meth:`TrialContext._check_surplus`: when two workers start the last trial at once, the lower
number keeps it). For the journal file a dead worker is found by its pid, the one exception,
documented in :mod:`sweeps.faults`, to leaving dead workers to Optuna: its heartbeats exist for
RDBStorage only. Failing another worker's trial calls the storage with ``FrozenTrial._trial_id``,
since the storage API addresses trials by id, not number.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from pathlib import Path

import optuna
import submitit
from optuna.trial import TrialState

from launch.executors import PreemptionGuard, set_threads
from sweeps.faults import fail_dead_trials, owner_info, retry_trial
from sweeps.storage import STORAGE_ENV, StorageError, make_storage
from sweeps.studies import FALLBACK_METRIC, QUALITY_METRICS, Study, get_study
from vaes.build import resolve
from vaes.config import TrainConfig, run_id
from vaes.evaluation.catalog import value
from vaes.records import Record
from vaes.run import DataCache, run
from vaes.store import RunFolder, run_folder

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)   # what counts towards --trials


def count(study: optuna.Study, *states: TrialState) -> int:
    """How many of the study's trials are in ``states`` (the storage filters them)."""
    return len(study.get_trials(deepcopy=False, states=states))


def count_errors(study: optuna.Study) -> int:
    """FAILs of broken runs (``fail_kind`` 'error'): not retries, dead workers or surplus trials."""
    return sum(t.user_attrs.get("fail_kind") == "error"
               for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))


class TrialFailed(Exception):
    """The run failed (NaN, bad hyper-parameters, an exception): FAIL, not retried."""


class TrialInterrupted(Exception):
    """The run stopped on a signal with a checkpoint: FAIL, retried in the same folder."""


class SurplusTrial(Exception):
    """Another worker already holds the study's last trial: this one is given back."""


class OverrideConflict(Exception):
    """--set fixes a field the study searches: the user's mistake, so the workers stop."""


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """What a worker needs; pickled into the job, so it holds no password (see STORAGE_ENV)."""
    study: str                       # registered study (sweeps/studies.py)
    study_name: str                  # its name in the storage
    trials: int                      # finished (COMPLETE + PRUNED) trials to reach
    out: str                         # absolute output folder
    storage: str                     # journal path or redacted URL (for messages)
    storage_in_env: bool = False     # the real URL is in $VAEBENCH_STORAGE
    heartbeat: int | None = None
    grace: int | None = None
    max_failed: int = 10
    max_retry: int | None = 3
    poll_s: float = 5.0
    device: str = "auto"
    overrides: dict = dataclasses.field(default_factory=dict)
    threads: int | None = None

    def storage_url(self) -> str:
        """The full storage URL (from the environment when it holds a secret)."""
        if not self.storage_in_env:
            return self.storage
        url = os.environ.get(STORAGE_ENV)
        if not url:
            raise StorageError(f"this job does not see ${STORAGE_ENV} (the study storage "
                               f"{self.storage}); the launcher exports it to its jobs, so the cluster "
                               "must pass the environment on (sbatch --export=ALL, SLURM's default)")
        return url



class TrialContext:
    """What an objective gets as ``ctx``: train one trial's run, read its objective values."""

    def __init__(self, study: optuna.Study, definition: Study, spec: SweepSpec, guard: PreemptionGuard):
        self.study, self.definition, self.spec, self.guard = study, definition, spec, guard
        self.suite = definition.suite_dict()
        self.current: int | None = None
        self.data = DataCache()  # each data set loaded once per worker
        self._warned = False

    # -- config and data
    def config(self, *, variant: str, options: dict | None = None, **fields):
        """The resolved TrainConfig of a trial: suite [config], study config, --set, trial."""
        clash = sorted(set(self.spec.overrides) & set(fields))
        if clash:
            raise OverrideConflict(f"--set {', '.join(clash)}: study {self.definition.name} searches "
                                   f"{'it' if len(clash) == 1 else 'them'}; drop it from --set")
        merged = {**self.suite["config"], **self.definition.config, **self.spec.overrides, **fields,
                  "dataset": self.suite["dataset"], "variant": variant, "options": dict(options or {})}
        return resolve(TrainConfig(**merged, seed=self.definition.seed, device=self.spec.device))

    # -- one trial
    def objective(self, trial: optuna.Trial):
        """Optuna's objective: give back surplus trials, then the study's own objective."""
        self.current = trial.number
        trial.set_user_attr("owner", owner_info())  # first: a RUNNING trial must always name its worker
        self._check_surplus(trial)
        return self.definition.objective(trial, self)

    def _check_surplus(self, trial: optuna.Trial) -> None:
        # Two workers may ask for the last trial at the same moment: the lower number keeps it.
        # One read for both counts, so that they describe the same moment.
        trials = self.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
        finished = sum(t.state in FINISHED for t in trials)
        before = sum(t.state == TrialState.RUNNING and t.number < trial.number for t in trials)
        if finished + before >= self.spec.trials:
            self._fail(trial, "surplus", f"the study already has {finished} finished and {before} "
                       f"running trials of {self.spec.trials}")
            raise SurplusTrial(f"trial {trial.number} is not needed")

    @staticmethod
    def _fail(trial: optuna.Trial, kind: str, reason: str) -> None:
        trial.set_user_attr("fail_kind", kind)
        trial.set_user_attr("fail_reason", str(reason)[:2000])

    def train(self, trial: optuna.Trial, *, variant: str, options: dict | None = None, **fields) -> Record:
        """Run the trial through :func:`vaes.run.run` in its folder; its finished record.

        Reports ``prune_on`` of every epoch (replaying a resumed run's history first) and raises
        optuna.TrialPruned when the pruner says so; a failed run raises TrialFailed, a run
        stopped by a signal TrialInterrupted (its checkpoint is on disk)."""
        d, spec = self.definition, self.spec
        origin = int(trial.user_attrs.get("origin_trial", trial.number))
        trial.set_user_attr("origin_trial", origin)
        try:
            cfg = self.config(variant=variant, options=options, **fields)
        except (ValueError, KeyError, TypeError) as e:
            self._fail(trial, "error", f"bad config: {e}")
            raise TrialFailed(f"bad config: {e}") from None
        # the run folder relative to OUT, kept by the trial: a retry trains in the same one
        run_dir = trial.user_attrs.get("run_dir") or str(run_folder(spec.out, f"trial-{origin:04d}-{run_id(cfg)}")
                                                         .path.relative_to(spec.out))
        if not run_dir.endswith(run_id(cfg)):  # a retry must train what its checkpoint trained
            reason = (f"the config of {run_dir} changed since it started (now {run_id(cfg)}): "
                      "relaunch with the same --set and --device, or use a new --study-name")
            self._fail(trial, "error", reason)
            raise TrialFailed(reason)
        trial.set_user_attr("run_dir", run_dir)
        folder = RunFolder(Path(spec.out) / run_dir)
        history: list[dict] = []
        saved = folder.progress()  # None for none, or a damaged one: the trainer fails the run with the reason
        if saved is not None:
            history = saved.history
            trial.set_user_attr("resumed_from", {"trial": origin, "epoch": saved.epoch, "step": saved.step})
            print(f"trial {trial.number}: resuming {run_dir} at epoch {saved.epoch} step {saved.step}", flush=True)
        prune = d.prune and not d.multi_objective
        if prune:
            for row in history:  # a resumed run's earlier epochs count for the pruner too
                trial.report(float(row[d.prune_on]), int(row["epoch"]))
        rows = list(history)

        def on_epoch(row: dict) -> None:
            rows.append(row)
            if prune:
                trial.report(float(row[d.prune_on]), int(row["epoch"]))
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {row['epoch']} ({d.prune_on}="
                                             f"{row[d.prune_on]:.4g}) by {type(self.study.pruner).__name__}")

        meta = {"label": f"{spec.study_name} trial {origin}", "suite": spec.study_name, "study": d.name,
                "trial": trial.number, "origin_trial": origin, "params": dict(trial.params)}
        if self.guard.signalled:
            self._fail(trial, "interrupted", "signal received before the run started")
            raise TrialInterrupted("signal received before the run started")
        try:
            rec = run(cfg.replace(out=str(folder.path)), data=self.data(cfg), progress=False, meta=meta,
                      on_epoch=on_epoch)
        except optuna.TrialPruned as e:  # the pruner's decision, raised by on_epoch through run()
            with folder.claim():
                rec = folder.read() or folder.start(cfg.replace(out=str(folder.path)))
                rec.meta.update(meta)
                rec.history = rows
                folder.end(rec, "pruned", str(e))  # its checkpoints go: a pruned trial is never resumed
            raise
        if rec.status == "interrupted":
            self._fail(trial, "interrupted", rec.reason)
            raise TrialInterrupted(rec.reason)
        if not rec.ok:
            self._fail(trial, "error", rec.reason or rec.status)
            raise TrialFailed(rec.reason or rec.status)
        if rec.meta.get("trial") != trial.number:  # finished by an earlier attempt that died before telling
            rec.meta.update(meta)
            folder.write(rec)
        timings = rec.timings or {}
        trial.set_user_attr("train_seconds", timings.get("train_seconds"))
        trial.set_user_attr("eval_seconds", timings.get("eval_seconds"))
        return rec

    # -- objective values
    def metric(self, trial: optuna.Trial, rec: Record, name: str) -> float:
        """Metric ``name`` of a finished record; the trial fails when it is absent or not finite."""
        v = value(rec.metrics or {}, name)
        if v is None or not math.isfinite(v):
            reason = f"the record has no finite {name!r} (metrics: {sorted(rec.metrics or {})})"
            self._fail(trial, "error", reason)
            raise TrialFailed(reason)
        return v

    def quality(self, trial: optuna.Trial, rec: Record) -> float:
        """Sample quality: FID where it was computed, else the classifier Frechet distance,
        else the negative ELBO (said once). The first finished trial fixes the choice."""
        name = self.study.user_attrs.get("objective_metric")
        if name is None:
            metrics = rec.metrics or {}
            name = next((m for m in QUALITY_METRICS if value(metrics, m) is not None), FALLBACK_METRIC)
            self.study.set_user_attr("objective_metric", name)
        if name == FALLBACK_METRIC and not self._warned:
            self._warned = True
            print(f"objective: {FALLBACK_METRIC} (held-out negative ELBO): the records have neither "
                  f"{' nor '.join(QUALITY_METRICS)}", flush=True)
        trial.set_user_attr("objective_metric", name)
        return self.metric(trial, rec, name)


def make_sampler() -> optuna.samplers.BaseSampler:
    """TPE, the same for every study (it handles one objective and several alike; unseeded, so
    that workers draw different points); constant_liar keeps parallel workers from proposing
    the same point."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(constant_liar=True)


def make_pruner(definition: Study, epochs: int) -> optuna.pruners.BasePruner:
    """Percentile pruning after half the epochs and 4 trials, where the study prunes.

    The reported value (the training MSE) is only a proxy of the objective (sample quality),
    and it favours weak KL weights: so prune late and only the worst trials."""
    if not definition.prune or definition.multi_objective:
        return optuna.pruners.NopPruner()
    return optuna.pruners.PercentilePruner(definition.keep_percentile, n_startup_trials=4,
                                           n_warmup_steps=max(1, epochs // 2))


class StudyWorker(submitit.helpers.Checkpointable):
    """One array task: trials of the shared study until it holds ``spec.trials`` finished ones."""

    def __init__(self, spec: SweepSpec):
        self.spec = spec

    def checkpoint(self, index: int) -> submitit.helpers.DelayedSubmission:
        """submitit's requeue hook (SIGUSR2). The trainer state is already on disk (the run's
        checkpoint.pt) and mapped to a WAITING retry in the storage: a fresh worker suffices."""
        return submitit.helpers.DelayedSubmission(StudyWorker(self.spec), index)

    def __call__(self, index: int) -> dict:
        set_threads(self.spec.threads)
        optuna.logging.set_verbosity(optuna.logging.INFO)
        with PreemptionGuard() as guard:
            return self._loop(index, guard)

    def _loop(self, index: int, guard: PreemptionGuard) -> dict:
        spec = self.spec
        definition = get_study(spec.study)
        storage = make_storage(spec.storage_url(), heartbeat=spec.heartbeat, grace=spec.grace,
                               max_retry=spec.max_retry)
        ctx = TrialContext(None, definition, spec, guard)  # type: ignore[arg-type]
        epochs = ctx.config(variant=TrainConfig.variant).epochs  # the pruner's horizon; no variant changes it
        study = optuna.load_study(study_name=spec.study_name, storage=storage,
                                  sampler=make_sampler(), pruner=make_pruner(definition, epochs))
        ctx.study = study
        me = owner_info()
        print(f"worker {index} ({me['host']} pid {me['pid']}, SLURM {me['slurm_job']} restart {me['restart']}): "
              f"study {spec.study_name} in {spec.storage}", flush=True)
        ran, stop = [], "done"
        while True:
            if guard.signalled:
                stop = "signal"
                break
            fail_dead_trials(study, spec.max_retry, heartbeats=bool(spec.heartbeat))
            # RUNNING is read before FINISHED: a trial that ends in between is counted twice (this
            # worker waits one poll more), never missed (which would start a surplus trial)
            running = count(study, TrialState.RUNNING)
            finished = count(study, *FINISHED)
            if finished >= spec.trials:
                break
            errors = count_errors(study)
            if errors >= spec.max_failed:
                stop = f"{errors} trials failed (--max-failed {spec.max_failed})"
                break
            if finished + running >= spec.trials:
                time.sleep(spec.poll_s)  # the last trials run elsewhere; take over if their worker dies
                continue
            try:
                study.optimize(ctx.objective, n_trials=1, catch=(TrialFailed, SurplusTrial))
            except (TrialInterrupted, KeyboardInterrupt) as e:
                frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == ctx.current)
                retry_trial(study, frozen, spec.max_retry)
                if isinstance(e, KeyboardInterrupt):
                    raise
                ran.append(ctx.current)
                stop = f"interrupted: {e}"
                break
            frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == ctx.current)
            if frozen.user_attrs.get("fail_kind") == "surplus" and "run_dir" in frozen.user_attrs:
                retry_trial(study, frozen, None)  # a given-back retry must stay queued
            elif frozen.user_attrs.get("fail_kind") != "surplus":
                ran.append(ctx.current)
        print(f"worker {index}: stop ({stop}); ran trials {ran}", flush=True)
        return {"worker": index, "stop": stop, "trials": ran, "owner": me}
