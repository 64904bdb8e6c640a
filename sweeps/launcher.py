"""Send Optuna studies and benchmark suites to a cluster through submitit (SLURM, local, debug).

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
  signal into ``vaes.trainer.request_stop()``: the trainer writes a step-level checkpoint at the
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
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import signal
import socket
import time
import warnings
from pathlib import Path
from urllib.parse import unquote

import optuna
import submitit
from optuna.trial import TrialState

from benchmarks.report import report_or_say
from launch.executors import (CLUSTERS, ClusterOptions, PreemptionGuard, make_executor,  # noqa: F401  (CLUSTERS, ClusterOptions: API)
                              maybe_snapshot, set_threads, wait_jobs, write_launch)
from sweeps.studies import FALLBACK_METRIC, QUALITY_METRICS, Study, get_study
from vaes.build import resolve
from vaes.config import TrainConfig, run_id
from vaes.data import load_dataset
from vaes.records import CorruptCheckpoint, load_torch, read_json, write_json
from vaes.run import run
from vaes.trainer import request_stop

STORAGE_ENV = "VAEBENCH_STORAGE"   # the storage URL travels to the jobs in the environment only
JOURNAL_NAME = "study.journal"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


# ---- storage ------------------------------------------------------------------------------

# scheme://user:password@rest; the password runs to the LAST '@' (raw '@' or '/' in it is common)
_CREDENTIALS = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@?#]*):(?P<pw>.*)@(?P<tail>[^@]*)$")
_QUERY_PASSWORD = re.compile(r"(?i)([?&](?:password|passwd|pwd)=)[^&]*")


def redact(url: str | None) -> str | None:
    """``url`` with its password replaced by ``***`` (user, host and database stay readable)."""
    if url is None:
        return None
    m = _CREDENTIALS.match(url)
    if m:
        url = f"{m['head']}:***@{m['tail']}"
    return _QUERY_PASSWORD.sub(r"\1***", url)


def _scrub(text: str, url: str) -> str:
    """An error message with every form of ``url``'s password removed."""
    secrets = []
    m = _CREDENTIALS.match(url)
    if m and m["pw"]:
        secrets += [m["pw"], unquote(m["pw"])]
    secrets += [v for v in re.findall(r"(?i)[?&](?:password|passwd|pwd)=([^&]*)", url) if v]
    for s in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(s, "***")
    return text


class StorageError(RuntimeError):
    """The study storage cannot be opened (the message never holds a password)."""


def is_journal(url: str) -> bool:
    """A plain path (no scheme) is a journal file; anything with '://' is an SQLAlchemy URL."""
    return "://" not in url


def make_storage(url: str, *, heartbeat: int | None = None, grace: int | None = None,
                 max_retry: int | None = 3) -> optuna.storages.BaseStorage:
    """Optuna storage for ``url``: a JournalFileBackend for a path, else an RDBStorage with
    heartbeats (a dead worker's trial is failed after ``grace`` s and retried in its folder)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        if is_journal(url):
            from optuna.storages.journal import JournalFileBackend, JournalStorage
            Path(url).parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(url)))
        import sqlalchemy.exc
        try:
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=heartbeat, grace_period=grace,
                heartbeat_stale_trial_callback=RetryInSameFolder(max_retry) if heartbeat else None,
                # a worker idle for hours between trials must not find its connection dead
                engine_kwargs={"pool_pre_ping": True})
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as e:
            raise StorageError(f"cannot open the study storage {redact(url)}: {type(e).__name__}: "
                               f"{_scrub(str(e), url)[:400]}") from None


# ---- trials: owners, retries, counts ---------------------------------------------------------

class TrialFailed(Exception):
    """The run failed (NaN, bad hyper-parameters, an exception): FAIL, not retried."""


class TrialInterrupted(Exception):
    """The run stopped on a signal with a checkpoint: FAIL, retried in the same folder."""


class SurplusTrial(Exception):
    """Another worker already holds the study's last trial: this one is given back."""


class OverrideConflict(Exception):
    """--set fixes a field the study searches: the user's mistake, so the workers stop."""


def _proc_start(pid: int) -> str | None:
    """Start time of process ``pid`` (clock ticks since boot; tells a reused pid apart)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _slurm_task() -> str | None:
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID', '0')}"
    return env.get("SLURM_JOB_ID")


def owner_info() -> dict:
    """Who runs a trial: host, pid (and its start time), SLURM task and restart count."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": _proc_start(os.getpid()),
            "slurm_job": _slurm_task(), "restart": int(os.environ.get("SLURM_RESTART_COUNT", "0"))}


def owner_dead(owner: dict, *, check_pid: bool) -> bool:
    """True when the process that owns a RUNNING trial is certainly gone: an earlier run of
    this very SLURM task (requeued since), or, with ``check_pid``, a process on this host that
    no longer exists. Owners on other hosts are left to the storage's heartbeats."""
    me = owner_info()
    if owner.get("slurm_job") and owner["slurm_job"] == me["slurm_job"] \
            and int(owner.get("restart", 0)) < me["restart"]:
        return True
    if check_pid and owner.get("host") == me["host"] and owner.get("pid") is not None:
        if owner["pid"] == me["pid"] and owner.get("pid_start") == me["pid_start"]:
            return False
        start = _proc_start(int(owner["pid"]))
        return start is None or (owner.get("pid_start") is not None and start != owner["pid_start"])
    return False


def retry_trial(study: optuna.Study, frozen: optuna.trial.FrozenTrial, max_retry: int | None) -> bool:
    """Enqueue a WAITING copy of a failed trial: same parameters and distributions, same run
    folder (user attr ``run_dir``), Optuna's retry history in its system attrs. False when the
    trial has been retried ``max_retry`` times already."""
    history = list(frozen.system_attrs.get("retry_history", [])) + [frozen.number]
    if max_retry is not None and len(history) > max_retry:
        print(f"trial {frozen.number}: not retried again ({len(history) - 1} retries already)", flush=True)
        return False
    # only the folder and the trial it started as: owner, failure and timing attrs belong to the old one
    keep = {k: frozen.user_attrs[k] for k in ("run_dir", "origin_trial") if k in frozen.user_attrs}
    keep.setdefault("origin_trial", frozen.number)
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=frozen.params, distributions=frozen.distributions,
        user_attrs=keep, system_attrs={"failed_trial": history[0], "retry_history": history}))
    print(f"trial {frozen.number}: retry enqueued (same parameters, folder "
          f"{keep.get('run_dir', '(not created yet)')})", flush=True)
    return True


class RetryInSameFolder(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a heartbeat-stale trial (a killed worker), keeping its run folder so
    the retry resumes from the checkpoint; see :func:`retry_trial`."""

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        print(f"trial {trial.number}: its worker stopped sending heartbeats; marked FAIL", flush=True)
        retry_trial(study, trial, self._max_retry)


@dataclasses.dataclass
class Counts:
    """Trials of a study by state; ``errors`` are FAILs of broken runs (not retries, not surplus)."""
    complete: int = 0
    pruned: int = 0
    running: int = 0
    waiting: int = 0
    failed: int = 0
    errors: int = 0

    @property
    def finished(self) -> int:
        return self.complete + self.pruned


def count_trials(study: optuna.Study) -> Counts:
    """The study's trials counted by state."""
    c = Counts()
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.COMPLETE:
            c.complete += 1
        elif t.state == TrialState.PRUNED:
            c.pruned += 1
        elif t.state == TrialState.RUNNING:
            c.running += 1
        elif t.state == TrialState.WAITING:
            c.waiting += 1
        elif t.state == TrialState.FAIL:
            c.failed += 1
            c.errors += t.user_attrs.get("fail_kind") == "error"
    return c


def fail_dead_trials(study: optuna.Study, max_retry: int | None) -> None:
    """Fail and retry the RUNNING trials whose worker is gone (heartbeats, then owners)."""
    storage = study._storage
    heartbeat = isinstance(storage, optuna.storages.RDBStorage) and storage.heartbeat_interval
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # no-op without heartbeats
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get("owner")
        # with heartbeats, only the sure case (our own earlier incarnation); without, the pid too
        if not owner or not owner_dead(owner, check_pid=not heartbeat):
            continue
        try:
            # FrozenTrial._trial_id: the storage API addresses trials by id, not number
            storage.set_trial_user_attr(t._trial_id, "fail_kind", "worker_died")
            storage.set_trial_user_attr(t._trial_id, "fail_reason", f"worker {owner} is gone")
            if storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                print(f"trial {t.number}: its worker ({owner['host']} pid {owner['pid']}) is gone; "
                      "marked FAIL", flush=True)
                retry_trial(study, storage.get_trial(t._trial_id), max_retry)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker got there first


# ---- signals ----------------------------------------------------------------------------------

# ---- the study worker -------------------------------------------------------------------------

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


def metric_value(metrics: dict, name: str) -> float | None:
    """A record metric as a float ({'value': v} dicts unwrapped); None when absent or None."""
    v = (metrics or {}).get(name)
    if isinstance(v, dict):
        v = v.get("value")
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


class TrialContext:
    """What an objective gets as ``ctx``: train one trial's run, read its objective values."""

    def __init__(self, study: optuna.Study, definition: Study, spec: SweepSpec, guard: PreemptionGuard):
        self.study, self.definition, self.spec, self.guard = study, definition, spec, guard
        self.suite = definition.suite_dict()
        self.current: int | None = None
        self._data: dict = {}
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

    def data(self, cfg):
        """The data set, loaded once per worker (None when missing: the trainer records why)."""
        key = (cfg.dataset, cfg.data_root, cfg.data_split, cfg.image_size)
        if key not in self._data:
            try:
                self._data[key] = load_dataset(cfg.dataset, cfg.data_root, download=cfg.download,
                                               data_split=cfg.data_split, image_size=cfg.image_size)
            except Exception:  # noqa: BLE001 -- missing or bad data: run() loads it again and records why
                self._data[key] = None
        return self._data[key]

    # -- one trial
    def objective(self, trial: optuna.Trial):
        """Optuna's objective: give back surplus trials, then the study's own objective."""
        self.current = trial.number
        trial.set_user_attr("owner", owner_info())  # first: a RUNNING trial must always name its worker
        self._check_surplus(trial)
        return self.definition.objective(trial, self)

    def _check_surplus(self, trial: optuna.Trial) -> None:
        # Two workers may ask for the last trial at the same moment: the lower number keeps it.
        trials = self.study.get_trials(deepcopy=False)
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

    def train(self, trial: optuna.Trial, *, variant: str, options: dict | None = None, **fields) -> dict:
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
        run_dir = trial.user_attrs.get("run_dir") or f"runs/trial-{origin:04d}-{run_id(cfg)}"
        if not run_dir.endswith(run_id(cfg)):  # a retry must train what its checkpoint trained
            reason = (f"the config of {run_dir} changed since it started (now {run_id(cfg)}): "
                      "relaunch with the same --set and --device, or use a new --study-name")
            self._fail(trial, "error", reason)
            raise TrialFailed(reason)
        trial.set_user_attr("run_dir", run_dir)
        out = Path(spec.out) / run_dir
        history: list[dict] = []
        if (out / "checkpoint.pt").is_file():
            try:
                ck = load_torch(out / "checkpoint.pt")
                history = list(ck["history"])
                trial.set_user_attr("resumed_from", {"trial": origin, "epoch": int(ck["epoch"]),
                                                     "step": int(ck["step"])})
                print(f"trial {trial.number}: resuming {run_dir} at epoch {ck['epoch']} step {ck['step']}",
                      flush=True)
            except (CorruptCheckpoint, KeyError, TypeError):  # cut short or another version's layout
                pass  # the trainer fails the run with the reason
        prune = d.prune and not d.multi_objective
        if prune:
            for row in history:  # a resumed run's earlier epochs count for the pruner too
                trial.report(float(row[d.prune_on]), int(row["epoch"]))
        rows = list(history)

        def on_epoch(row: dict) -> None:
            rows.append(row)
            if self.guard.signalled:
                request_stop(signal.SIGUSR2)  # the signal came before train() armed its stop flag
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
            rec = run(cfg.replace(out=str(out)), data=self.data(cfg), progress=False, meta=meta,
                      on_epoch=on_epoch)
        except optuna.TrialPruned as e:  # the pruner's decision, raised by on_epoch through run()
            old = read_json(out / "record.json") or {}
            write_json(out / "record.json", {**old, **meta, "status": "pruned", "reason": str(e),
                                             "history": rows, "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            (out / "checkpoint.pt").unlink(missing_ok=True)  # a pruned trial is never resumed
            raise
        if rec["status"] == "interrupted":
            self._fail(trial, "interrupted", rec["reason"])
            raise TrialInterrupted(rec["reason"])
        if rec["status"] != "finished":
            self._fail(trial, "error", rec.get("reason") or rec["status"])
            raise TrialFailed(rec.get("reason") or rec["status"])
        if rec.get("trial") != trial.number:  # finished by an earlier attempt that died before telling
            rec.update(meta)
            write_json(out / "record.json", rec)
        timings = rec.get("timings") or {}
        trial.set_user_attr("train_seconds", timings.get("train_seconds"))
        trial.set_user_attr("eval_seconds", timings.get("eval_seconds"))
        return rec

    # -- objective values
    def metric(self, trial: optuna.Trial, rec: dict, name: str) -> float:
        """Metric ``name`` of a finished record; the trial fails when it is absent or not finite."""
        v = metric_value(rec.get("metrics") or {}, name)
        if v is None or not math.isfinite(v):
            reason = f"the record has no finite {name!r} (metrics: {sorted(rec.get('metrics') or {})})"
            self._fail(trial, "error", reason)
            raise TrialFailed(reason)
        return v

    def quality(self, trial: optuna.Trial, rec: dict) -> float:
        """Sample quality: FID where it was computed, else the classifier Frechet distance,
        else the negative ELBO (said once). The first finished trial fixes the choice."""
        name = self.study.user_attrs.get("objective_metric")
        if name is None:
            metrics = rec.get("metrics") or {}
            name = next((m for m in QUALITY_METRICS if metric_value(metrics, m) is not None), FALLBACK_METRIC)
            self.study.set_user_attr("objective_metric", name)
        if name == FALLBACK_METRIC and not self._warned:
            self._warned = True
            print(f"objective: {FALLBACK_METRIC} (held-out negative ELBO): the records have neither "
                  f"{' nor '.join(QUALITY_METRICS)}", flush=True)
        trial.set_user_attr("objective_metric", name)
        return self.metric(trial, rec, name)


def make_sampler(definition: Study) -> optuna.samplers.BaseSampler:
    """TPE; constant_liar keeps parallel workers from proposing the same point."""
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
        epochs = ctx.config(variant="balanced").epochs
        study = optuna.load_study(study_name=spec.study_name, storage=storage,
                                  sampler=make_sampler(definition), pruner=make_pruner(definition, epochs))
        ctx.study = study
        me = owner_info()
        print(f"worker {index} ({me['host']} pid {me['pid']}, SLURM {me['slurm_job']} restart {me['restart']}): "
              f"study {spec.study_name} in {spec.storage}", flush=True)
        ran, stop = [], "done"
        while True:
            if guard.signalled:
                stop = "signal"
                break
            fail_dead_trials(study, spec.max_retry)
            c = count_trials(study)
            if c.finished >= spec.trials:
                break
            if c.errors >= spec.max_failed:
                stop = f"{c.errors} trials failed (--max-failed {spec.max_failed})"
                break
            if c.finished + c.running >= spec.trials:
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


# ---- executors ----------------------------------------------------------------------------

# ---- a study ------------------------------------------------------------------------------

def run_study(name: str, *, trials: int, workers: int = 1, opts: ClusterOptions = ClusterOptions(),
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
    out.mkdir(parents=True, exist_ok=True)
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
    c = count_trials(study)
    print(f"study {study_name} ({definition.name}): {c.finished}/{trials} finished, {c.running} running, "
          f"{c.failed} failed; storage {redact(url)}; out {out}", flush=True)
    results: list[dict] = []
    if c.finished < trials:
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


def summarize(study: optuna.Study, definition: Study, out: Path, url: str, trials: int,
              workers: list[dict]) -> dict:
    """Write OUT/study.json and OUT/trials.csv; print the counts and the best trial(s)."""
    c = count_trials(study)
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
               "counts": {**dataclasses.asdict(c), "finished": c.finished},
               "best": [{"number": t.number, "values": t.values, "params": t.params,
                         "run_dir": t.user_attrs.get("run_dir")} for t in best],
               "workers": workers, "trials": rows}
    write_json(out / "study.json", summary)
    try:
        study.trials_dataframe().to_csv(out / "trials.csv", index=False)
    except (ValueError, KeyError) as e:  # an empty study has no columns to write
        print(f"trials.csv not written: {e}", flush=True)
    print(f"study {study.study_name}: {c.finished}/{trials} finished ({c.complete} complete, {c.pruned} pruned), "
          f"{c.failed} failed ({c.errors} errors), {c.running} running, {c.waiting} waiting; "
          f"objective {summary['objective_metric']}", flush=True)
    for b in summary["best"]:
        print(f"  best: trial {b['number']} values {b['values']} params {b['params']} -> {b['run_dir']}", flush=True)
    return summary


def export_plots(study: optuna.Study, definition: Study, out: Path) -> list[Path]:
    """Optuna's matplotlib plots as PNG in OUT: optimisation history (each objective),
    intermediate values, parameter importances (with >= 2 completed trials), Pareto front."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm
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
