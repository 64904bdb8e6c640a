"""benchmarks/gpu_check.sh at its tiny CPU setting, in the default test set: every step runs and
the two files it leaves say so (no timings asserted)."""
from __future__ import annotations

import json
import subprocess
import tarfile

from tests.conftest import REPO


def test_gpu_check_tiny(tmp_path):
    out = tmp_path / "gc"
    res = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(out), "--tiny"], cwd=REPO,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.tar.gz", "summary.md"]
    summary = (out / "summary.md").read_text()
    steps = [line.split("|")[1:3] for line in summary.splitlines() if line.startswith("| speed") or
             line.startswith("| suite") or line.startswith("| cuda_tests")]
    assert {s.strip() for s, _ in steps} == {"speed", "speed_bf16", "suite", "cuda_tests"}
    assert all(rc.strip() == "0" for _, rc in steps), summary
    with tarfile.open(out / "gpu_check.tar.gz") as tar:
        main = json.load(tar.extractfile("files/speed/cpu-digits.json"))
        suite = json.load(tar.extractfile("files/suite/cpu-digits.json"))
        tests = tar.extractfile("files/cuda_tests.log").read().decode()
    assert main["train"]["vaebench"]["images_per_second"] > 0 and main["train"]["ratios"]["vaebench_over_tutorial"] > 0
    assert main["eval"]["inception"].startswith("torchvision inception_v3, random weights")
    assert main["eval"]["kid"] is not None and main["eval"]["fid"] > 0 and main["stage2"]["codes_per_second"] > 0
    assert suite["suite"]["concurrent"]["finished"] == 2 and suite["suite"]["single"]["finished"] == 1
    assert "skipped" in tests and "needs CUDA" in tests  # the CUDA tests were collected and skipped here
    assert "## Speed: digits" in summary and "--jobs 2" in summary


def test_gpu_check_refuses_bad_arguments(tmp_path):
    for argv, word in ((["--tiny"], "option"), ([str(tmp_path), "--wheels", str(tmp_path / "no")], "not a folder"),
                       ([str(tmp_path), "--fast"], "unknown argument")):
        res = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), *argv], capture_output=True, text=True)
        assert res.returncode == 2 and word in res.stderr, (argv, res.stderr)
