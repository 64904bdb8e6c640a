"""Trials whose worker died, and retries that resume a trial in its own run folder.

A retry is a WAITING trial with the failed trial's parameters, distributions and user attr
``run_dir``, built the way Optuna's ``RetryHeartbeatStaleTrialCallback`` builds one (same
``failed_trial`` / ``retry_history`` system attrs), so whichever worker asks next resumes the
run from its ``checkpoint.pt``.

Finding a dead worker: with an RDB storage Optuna's heartbeats do it (``fail_stale_trials``,
then :class:`RetryInSameFolder`). Optuna's heartbeats exist for RDBStorage only (Optuna 5.1:
``BaseHeartbeat`` is implemented by ``RDBStorage`` and its cache, not by ``JournalStorage``),
so for the journal file, the one-machine storage, this module keeps the one hand-written
exception: every RUNNING trial names its owner (host, pid and the pid's start time, SLURM task
and restart count, see :func:`owner_info`), and a worker fails the trials whose owning process
is gone (:func:`owner_dead`). Failing such a trial goes through the storage API, which
addresses trials by their id (``FrozenTrial._trial_id``), not their number: Optuna has no
public call that fails another process's trial.
"""
from __future__ import annotations

import os
import socket
import warnings

import optuna
from optuna.trial import TrialState


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


def fail_dead_trials(study: optuna.Study, max_retry: int | None, *, heartbeats: bool) -> None:
    """Fail and retry the RUNNING trials whose worker is gone: Optuna's stale-heartbeat check
    first (a no-op without heartbeats), then the owners. With ``heartbeats`` (an RDB storage
    made with a heartbeat interval) only the sure case is taken from the owners, an earlier
    incarnation of this very SLURM task; without, also a process gone from this host."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    storage = study._storage  # the storage API: the only way to fail a trial this process does not run
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get("owner")
        if not owner or not owner_dead(owner, check_pid=not heartbeats):
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, "fail_kind", "worker_died")
            storage.set_trial_user_attr(t._trial_id, "fail_reason", f"worker {owner} is gone")
            if storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                print(f"trial {t.number}: its worker ({owner['host']} pid {owner['pid']}) is gone; "
                      "marked FAIL", flush=True)
                retry_trial(study, storage.get_trial(t._trial_id), max_retry)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker got there first
