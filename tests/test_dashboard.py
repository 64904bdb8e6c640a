"""The study dashboard: optuna-dashboard (PyPI) started over a sweep's storage, a journal file
and PostgreSQL, on a free loopback port; its REST API must show the study this test made.
Every wait is bounded; the server is stopped whatever happens. docs/dashboard.md has the command."""
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import optuna
import pytest

from sweeps.storage import make_storage
from tests.conftest import log_tail

START_S = 60  # it answers in about 2 s here; a loaded 2-core machine can take much longer
pytestmark = pytest.mark.skipif(shutil.which("optuna-dashboard") is None,
                                reason="optuna-dashboard is not installed (pip install -e '.[test]')")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def small_study(storage_url: str, name: str, n: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=make_storage(storage_url))
    study.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.3) ** 2, n_trials=n)


def dashboard_sees(storage_url: str, name: str, n: int, log_path) -> None:
    """Start the dashboard over ``storage_url``, find the study ``name`` and its ``n`` trials, stop it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([shutil.which("optuna-dashboard"), "--host", "127.0.0.1", "--port", str(port),
                                 "--server", "wsgiref", storage_url], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline, studies = time.monotonic() + START_S, None
        while studies is None:
            if proc.poll() is not None:
                pytest.fail(f"optuna-dashboard exited with {proc.returncode}:\n{log_tail(log_path)}")
            if time.monotonic() > deadline:
                pytest.fail(f"optuna-dashboard did not answer on {base} within {START_S} s:\n{log_tail(log_path)}")
            try:
                studies = get_json(f"{base}/api/studies", timeout=2)["study_summaries"]
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.3)
        (summary,) = [s for s in studies if s["study_name"] == name]
        study = get_json(f"{base}/api/studies/{summary['study_id']}?after=0")
        assert study["name"] == name and len(study["trials"]) == n
        assert {t["state"] for t in study["trials"]} == {"Complete"}
        assert study["best_trials"] and "x" in study["best_trials"][0]["params"][0]["name"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_dashboard_over_a_journal_file(tmp_path):
    journal = str(tmp_path / "sweep" / "study.journal")  # where sweeps.run puts a study by default
    small_study(journal, "dash-journal", 3)
    dashboard_sees(journal, "dash-journal", 3, tmp_path / "dashboard.log")


def test_dashboard_over_postgresql(postgres_url, tmp_path):  # postgres_url: tests/services.py, via conftest
    name = f"dash-{uuid.uuid4().hex[:8]}"
    small_study(postgres_url, name, 2)
    try:
        dashboard_sees(postgres_url, name, 2, tmp_path / "dashboard.log")
    finally:
        optuna.delete_study(study_name=name, storage=optuna.storages.RDBStorage(postgres_url))
