"""Committed results come from committed code: '+dirty' ignores results/ and runs/,
and writing into results/ from a tree with other uncommitted changes is refused unless
--allow-dirty. Checked on a real temporary git repository (no mock of git)."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from vaes.cli import dirty_refusal
from vaes.records import git_commit, uncommitted_changes

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(repo, *args):
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=repo, check=True,
                   capture_output=True)


@pytest.fixture
def repo(tmp_path):
    for d in ("vaes", "results/quick", "runs/quick"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "vaes/code.py").write_text("x = 1\n")
    (tmp_path / "results/quick/record.json").write_text("{}\n")
    (tmp_path / "runs/quick/record.json").write_text("{}\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "start")
    return tmp_path


def test_results_and_runs_never_make_the_tree_dirty(repo):
    (repo / "results/quick/record.json").write_text('{"changed": 1}\n')
    (repo / "runs/quick/record.json").write_text('{"changed": 1}\n')
    assert uncommitted_changes(repo)[1] == []
    assert not git_commit(repo).endswith("+dirty")
    assert dirty_refusal(repo / "results/quick", allow_dirty=False, repo=repo) is None


def test_code_changes_make_it_dirty_and_refuse_results(repo):
    (repo / "vaes/code.py").write_text("x = 2\n")
    assert uncommitted_changes(repo)[1] == ["vaes/code.py"]
    assert git_commit(repo).endswith("+dirty")
    why = dirty_refusal(repo / "results/quick", allow_dirty=False, repo=repo)
    assert why and "vaes/code.py" in why and "--allow-dirty" in why
    assert dirty_refusal(repo / "results/quick", allow_dirty=True, repo=repo) is None
    assert dirty_refusal(repo / "runs/quick", allow_dirty=False, repo=repo) is None  # runs/ is scratch


def test_outside_a_checkout_nothing_is_refused(tmp_path):
    assert uncommitted_changes(tmp_path) is None
    assert dirty_refusal(tmp_path / "results", allow_dirty=False, repo=tmp_path) is None


@pytest.fixture(scope="module")
def dirty_clone(tmp_path_factory):
    """A clone of this checkout with one uncommitted code change; its commands run from it."""
    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                          cwd=__file__.rsplit("/", 2)[0])
    if root.returncode:
        pytest.skip("the tests do not run from a git checkout")
    clone = tmp_path_factory.mktemp("dirty") / "vaebench"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{root.stdout.strip()}", str(clone)], check=True)
    with open(clone / "vaes" / "__init__.py", "a") as f:
        f.write("# an uncommitted change\n")
    return clone


@pytest.mark.parametrize("argv", [
    ["benchmarks.report", "--suite", "quick", "--runs", "results/quick/runs", "--out", "results/quick"],
    ["benchmarks.run", "--suite", "quick", "--out", "results/quick"],
    ["benchmarks.speed", "--out", "results/speed"],
])
def test_every_command_writing_results_refuses_a_dirty_tree(dirty_clone, argv):
    before = {p: p.read_bytes() for p in (dirty_clone / "results").rglob("*") if p.is_file()}
    p = subprocess.run([sys.executable, "-m", *argv], cwd=dirty_clone, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr
    assert "vaes/__init__.py" in p.stderr and "--allow-dirty" in p.stderr
    assert {q: q.read_bytes() for q in (dirty_clone / "results").rglob("*") if q.is_file()} == before
