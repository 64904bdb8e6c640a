"""Session fixtures for the real services started by ``.ci/services.sh``.

* ``slurm_cluster``: a single-node SLURM cluster (with accounting, so ``sacct`` works).
* ``postgres_url``: an SQLAlchemy URL of the PostgreSQL database ``vaebench``.
* ``pdflatex``: the path of ``pdflatex`` (with booktabs available).
* ``chromium``: Debian's Chromium and chromedriver (for Selenium, headless).

Each fixture first checks whether its service already answers (well under a second when it
does). If not and we are root, it runs ``bash .ci/services.sh <component>`` (which installs the
missing Debian packages and starts the daemons), then checks again. Otherwise the test is
skipped with the precise reason (missing binary, daemon that failed and the tail of its log).

Set ``VAEBENCH_REQUIRE_SERVICES=1`` (CI) to turn those skips into failures, and
``VAEBENCH_NO_SERVICES_START=1`` to never run ``.ci/services.sh`` from the tests.

Register them in ``tests/conftest.py`` with::

    from tests.services import pdflatex, postgres_url, slurm_cluster  # noqa: F401
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path
from typing import Optional

import pytest

REPO = Path(__file__).resolve().parents[1]  # the repository root (tests/conftest.py re-exports it)
SERVICES_SH = REPO / ".ci" / "services.sh"
POSTGRES_URL = "postgresql+psycopg2://vaebench:vaebench@localhost:5432/vaebench"
_PG = dict(host="localhost", port=5432, user="vaebench", password="vaebench", dbname="vaebench")
# first run installs packages (apt-get update + about 150 MB): allow for a slow mirror
_SERVICES_TIMEOUT_S = int(os.environ.get("VAEBENCH_SERVICES_TIMEOUT", "1200"))


@dataclasses.dataclass(frozen=True)
class SlurmCluster:
    """What the tests need to know about the local cluster."""

    partition: str
    node: str
    cpus: int
    real_memory_mb: int


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("VAEBENCH_REQUIRE_SERVICES", "") not in ("", "0"):
        pytest.fail(f"required service unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def _run(cmd: list[str], timeout: float = 10) -> tuple[int, str]:
    """Run a command; return (returncode, stdout+stderr). 127 if the binary is missing."""
    try:
        proc = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
        )
    except FileNotFoundError:
        return 127, f"{cmd[0]}: command not found"
    except subprocess.TimeoutExpired:
        return 124, f"{' '.join(cmd)}: no answer within {timeout} s"
    return proc.returncode, proc.stdout


def _tail(text: str, n: int = 25) -> str:
    """The last ``n`` lines of ``text`` (a command's output, a log file's text)."""
    return "\n".join(text.strip().splitlines()[-n:])


def _start(component: str) -> Optional[str]:
    """Run `.ci/services.sh component` if allowed; return None on success, else why not."""
    if os.environ.get("VAEBENCH_NO_SERVICES_START", "") not in ("", "0"):
        return "VAEBENCH_NO_SERVICES_START is set"
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return f"not root, so cannot start it (run: sudo bash {SERVICES_SH} {component})"
    if not SERVICES_SH.is_file():
        return f"{SERVICES_SH} is missing"
    if shutil.which("bash") is None:
        return "bash not found"
    rc, out = _run(["bash", str(SERVICES_SH), component], timeout=_SERVICES_TIMEOUT_S)
    if rc != 0:
        return f"`bash .ci/services.sh {component}` failed (exit {rc}):\n{_tail(out)}"
    return None


def _ensure(component: str, check) -> None:
    """Make `check()` (None when fine, else a reason) succeed, starting the service once."""
    problem = check()
    if problem is None:
        return
    why_not = _start(component)
    if why_not is not None:
        _skip_or_fail(f"{component}: {problem}; {why_not}")
    problem = check()
    if problem is not None:
        _skip_or_fail(f"{component}: still unavailable after .ci/services.sh: {problem}")


# --------------------------------------------------------------------------------------------
# SLURM
# --------------------------------------------------------------------------------------------
_SLURM_INFO: dict[str, str] = {}


def _pid_alive(pidfile: Path) -> bool:
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, 0)
    except PermissionError:  # alive, owned by another user
        return True
    except (OSError, ValueError, IndexError):
        return False
    return True


def _check_slurm() -> Optional[str]:
    for binary in ("sinfo", "sbatch", "scontrol", "sacct", "scancel"):
        if shutil.which(binary) is None:
            return f"`{binary}` not found on PATH"
    # fast path for our own local cluster (sinfo needs ~9 s to give up on a dead controller)
    conf = Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf"))
    if conf.is_file() and "vaebench/.ci/services.sh" in conf.read_text(errors="replace"):
        for daemon in ("slurmctld", "slurmd"):
            if not _pid_alive(Path(f"/run/{daemon}.pid")):
                return f"{daemon} is not running (no live pid in /run/{daemon}.pid)"
    rc, out = _run(["sinfo", "-h", "-N", "-o", "%N|%t|%c|%m|%P"], timeout=10)
    if rc != 0:
        return f"`sinfo` does not answer (exit {rc}): {_tail(out, 5)}"
    rows = [line.split("|") for line in out.split() if line.count("|") == 4]
    ready = [r for r in rows if r[1].rstrip("*~#$@+^-!%") in ("idle", "mix", "alloc", "comp")]
    if not ready:
        return f"no node is idle/mixed/allocated (sinfo: {out.strip() or 'empty'})"
    # without accounting submitit cannot see a job that died without a result (waits forever)
    rc, out = _run(["sacct", "-n", "-X", "-S", "now-1minute", "-o", "JobID"], timeout=10)
    if rc != 0:
        return f"`sacct` fails, accounting (slurmdbd) is not working: {_tail(out, 5)}"
    node, _, cpus, mem, partition = ready[0]
    _SLURM_INFO.update(node=node, cpus=cpus, mem=mem, partition=partition.rstrip("*"))
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """A running SLURM cluster (node idle, sacct working); skips with the reason otherwise."""
    _ensure("slurm", _check_slurm)
    return SlurmCluster(
        partition=_SLURM_INFO["partition"],
        node=_SLURM_INFO["node"],
        cpus=int(_SLURM_INFO["cpus"]),
        real_memory_mb=int(_SLURM_INFO["mem"].rstrip("+")),
    )


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------
def _check_postgres() -> Optional[str]:
    try:
        import psycopg2  # noqa: PLC0415  # inside: optional (the postgres extra); missing, the fixture skips
    except ImportError:
        return "psycopg2 is not installed (pip install psycopg2-binary)"
    try:
        conn = psycopg2.connect(connect_timeout=3, **_PG)
    except psycopg2.OperationalError as err:
        rc, out = _run(["pg_isready", "-h", "localhost", "-p", "5432"], timeout=5)
        return f"cannot connect as vaebench@localhost:5432/vaebench ({str(err).strip()}; pg_isready: {out.strip()})"
    conn.close()
    return None


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """SQLAlchemy URL of the database vaebench (user/password vaebench) on localhost:5432."""
    _ensure("postgres", _check_postgres)
    return POSTGRES_URL


# --------------------------------------------------------------------------------------------
# LaTeX
# --------------------------------------------------------------------------------------------
def _check_latex() -> Optional[str]:
    if shutil.which("pdflatex") is None:
        return "`pdflatex` not found on PATH (Debian: texlive-latex-base)"
    rc, out = _run(["kpsewhich", "booktabs.sty"], timeout=10)
    if rc != 0 or not out.strip():
        return "booktabs.sty not found (Debian: texlive-latex-recommended)"
    return None


@pytest.fixture(scope="session")
def pdflatex() -> str:
    """Path of pdflatex (booktabs available); skips with the reason otherwise."""
    _ensure("latex", _check_latex)
    return shutil.which("pdflatex")  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Chromium (headless, driven by Selenium through Debian's chromedriver)
# --------------------------------------------------------------------------------------------
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromedriver")  # Debian's chromium, chromium-driver
# Headless on a machine without network: without the last five, Chromium keeps trying to reach
# Google's services (component updates, sync, QUIC probes) and floods the log with refused
# connections. A fresh --user-data-dir is added per session (no profile shared between runs).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                  "--no-first-run", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--hide-scrollbars")


@dataclasses.dataclass(frozen=True)
class Chromium:
    """Where the browser and its WebDriver are."""

    binary: str
    driver: str


def _check_chromium() -> Optional[str]:
    try:
        import selenium  # noqa: F401, PLC0415  # inside: the test extra; missing, the fixture skips
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path, package in zip(CHROMIUM, ("chromium", "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} not found (Debian: apt-get install {package})"
        rc, out = _run([path, "--version"], timeout=30)
        if rc != 0:
            return f"`{path} --version` fails (exit {rc}): {_tail(out, 5)}"
    return None


@pytest.fixture(scope="session")
def chromium() -> Chromium:
    """Debian's Chromium and chromedriver, installed by ``.ci/services.sh chromium`` when root.
    In CI (CI=true, or VAEBENCH_REQUIRE_SERVICES=1) a missing browser fails instead of skipping."""
    try:
        _ensure("chromium", _check_chromium)
    except pytest.skip.Exception as skip:
        if os.environ.get("CI", "").lower() in ("true", "1"):  # CI must run the browser test
            pytest.fail(f"CI=true and the browser is unavailable: {skip.msg}", pytrace=False)
        raise
    return Chromium(*CHROMIUM)
