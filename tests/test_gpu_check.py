"""benchmarks/gpu_check.sh at its tiny CPU setting: every step runs and writes sane files (no timings asserted)."""
from __future__ import annotations

import csv
import json
import subprocess

import pytest
from tests.conftest import REPO



@pytest.mark.slow  # about 110 s on 2 CPU cores (Inception on the CPU and torch.compile dominate)
def test_gpu_check_tiny(tmp_path):
    out = tmp_path / "gc"
    subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(out), "--tiny"], cwd=REPO,
                   check=True, timeout=600)
    steps = {r["step"]: r for r in csv.DictReader(open(out / "steps.tsv"), delimiter="\t")}
    assert set(steps) == {"speed", "suite_throughput", "fid_timing", "speed_bf16", "speed_compile"}
    assert all(r["rc"] == "0" for r in steps.values()), steps
    env = json.loads((out / "env.json").read_text())
    assert env["torch"] and env["git_commit"]
    assert (out / "nvidia-smi.txt").is_file()
    for folder in ("speed", "speed-bf16", "speed-compile"):
        res = json.loads((out / folder / "cpu-digits.json").read_text())
        assert res["trainers"]["vaebench"]["images_per_second"] > 0
        assert all(v > 0 for v in res["ratios"].values()), res["ratios"]
        assert (out / folder / "cpu-digits.md").read_text().startswith("# Speed")
    st = json.loads((out / "suite" / "suite-throughput.json").read_text())
    assert all(m["all_finished"] for m in st["modes"].values()), st["modes"]
    assert st["sequential_over_single"] > 0 and st["concurrent_over_single"] > 0 and st["concurrent_speedup"] > 0
    fid = json.loads((out / "fid" / "fid-timing.json").read_text())
    assert set(fid["batches"]) == {"2", "4"} and all(b["total_seconds"] > 0 for b in fid["batches"].values())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["suite_throughput"]["concurrent_over_single"] == st["concurrent_over_single"]
    assert (out / "summary.md").read_text().startswith("# GPU check")
