"""The machine a speed benchmark runs on: its name, its cores, waiting for the device, peak memory."""
from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

import torch

def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model from /proc/cpuinfo."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def sync(device: torch.device) -> None:
    """Wait for the device, so that a clock read after it covers the work queued before."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _proc_status_kb(field: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


class PeakMemory:
    """Peak memory of a block: CUDA's allocator peak, or the process's peak RSS (VmHWM).

    On Linux, writing 5 to /proc/self/clear_refs resets VmHWM to the current RSS, so each
    block gets its own peak. torch allocates outside Python's heap: tracemalloc misses it.
    """

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before = torch.cuda.memory_allocated(self.device)
        else:
            with contextlib.suppress(OSError):
                Path("/proc/self/clear_refs").write_text("5")
            self.before = (_proc_status_kb("VmRSS") or 0) * 1024
        self.peak = None
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            sync(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            hwm = _proc_status_kb("VmHWM")
            self.peak = None if hwm is None else hwm * 1024

    @property
    def delta(self) -> int | None:
        """Growth of the peak over what was in use when the block began."""
        return None if self.peak is None else max(0, self.peak - self.before)

