"""Where a study lives: a journal file (one machine or a shared file system) or an SQLAlchemy
URL (PostgreSQL, with heartbeats), and URLs with their passwords kept out of every message.

The storage URL reaches the jobs in ``$VAEBENCH_STORAGE`` (:data:`STORAGE_ENV`) only, never in
a pickled job, and every error that names it goes through :func:`redact` or :func:`_scrub`.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from urllib.parse import unquote

import optuna
import sqlalchemy.exc
from optuna.storages.journal import JournalFileBackend, JournalStorage

from sweeps.faults import RetryInSameFolder

STORAGE_ENV = "VAEBENCH_STORAGE"   # the storage URL travels to the jobs in the environment only
JOURNAL_NAME = "study.journal"

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


def check_journal(path: str | Path) -> None:
    """StorageError naming the file and the line when the journal at ``path`` is not one Optuna
    can replay and append to: every line a JSON object with an op_code, the last one ended (Optuna
    skips a last line cut short, but its next entry would be glued to it), and then Optuna's own
    replay. An absent file is a new study. For the command that launches a study, before any
    worker writes (a worker that starts while others append could see a write half-done)."""
    path = Path(path)
    if not path.is_file():
        if path.exists():
            raise StorageError(f"the study journal {path} is a folder, not a file; give --storage a file path "
                               "(or leave it out: OUT/study.journal)")
        return
    lines = path.read_bytes().split(b"\n")
    if lines[-1]:
        raise StorageError(f"the study journal {path} is cut short: its line {len(lines)} ({lines[-1][:40]!r}) has no "
                           f"end (a write interrupted): delete that last line to resume the study, or {_FIX}")
    for no, line in enumerate(lines[:-1], 1):  # first the line to name
        try:
            entry = json.loads(line)
            ok = isinstance(entry, dict) and isinstance(entry.get("op_code"), int)
        except (json.JSONDecodeError, UnicodeDecodeError):
            ok = False
        if not ok:
            raise StorageError(f"the study journal {path} is damaged at line {no} ({line[:40]!r} is no journal "
                               f"entry) or is another file: {_FIX}")
    try:  # then Optuna's own replay, which also finds entries of the wrong shape
        storage = JournalStorage(JournalFileBackend(str(path)))
        for study in storage.get_all_studies():
            storage.get_all_trials(study._study_id, deepcopy=False)
    except Exception as e:  # noqa: BLE001 - the file is the only input: any failure to replay it is its damage
        raise StorageError(f"the study journal {path} cannot be replayed ({type(e).__name__}: {str(e)[:200]}): it "
                           f"is damaged or another file: {_FIX}") from None


_FIX = ("restore it from a copy, or start the study anew with another --storage or --out (the trials' run "
        "folders stay where they are)")


def make_storage(url: str, *, heartbeat: int | None = None, grace: int | None = None,
                 max_retry: int | None = 3) -> optuna.storages.BaseStorage:
    """Optuna storage for ``url``: a JournalFileBackend for a path, else an RDBStorage with
    heartbeats (a dead worker's trial is failed after ``grace`` s and retried in its folder)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        if is_journal(url):
            Path(url).parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(url)))
        try:
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=heartbeat, grace_period=grace,
                heartbeat_stale_trial_callback=RetryInSameFolder(max_retry) if heartbeat else None,
                # a worker idle for hours between trials must not find its connection dead
                engine_kwargs={"pool_pre_ping": True})
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as e:
            raise StorageError(f"cannot open the study storage {redact(url)}: {type(e).__name__}: "
                               f"{_scrub(str(e), url)[:400]}") from None
