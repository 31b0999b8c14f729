"""What machine and software a benchmark ran on, recorded with every result."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import BENCH_DIR


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (``None`` where the OS has none)."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


@dataclass(frozen=True)
class CpuSample:
    """Machine-wide busy CPU seconds and this process's own (children included), at one moment."""

    wall: float
    busy: float
    own: float


def cpu_sample() -> CpuSample | None:
    """Read ``/proc/stat`` and ``os.times()`` now (``None`` where ``/proc/stat`` is missing)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    times = os.times()
    own = times.user + times.system + times.children_user + times.children_system
    return CpuSample(time.monotonic(), (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK"), own)


def other_cpu_cores(start: CpuSample | None, end: CpuSample | None) -> float | None:
    """How many cores other processes kept busy on average between two samples.

    On a shared machine this is the contention a benchmark ran under: a few
    tenths of a core are noise, a whole core on a two-core machine slows
    multi-threaded torch several times. Descendants count as this process's own
    only once they have been waited for.
    """
    if start is None or end is None or end.wall <= start.wall:
        return None
    return round(max(0.0, (end.busy - start.busy) - (end.own - start.own)) / (end.wall - start.wall), 2)


def git_commit(root: Path = BENCH_DIR.parent) -> dict[str, Any]:
    """The checked-out commit and whether the working tree has uncommitted changes.

    Parameters
    ----------
    root : Path
        The repository.

    Returns
    -------
    dict
        ``commit`` (``None`` outside git) and ``dirty``.
    """
    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip() if commit else None, "dirty": bool(status.strip()) if status is not None else None}


def machine_info() -> dict[str, Any]:
    """CPU, thread counts, library versions, commit and date of this run.

    Returns
    -------
    dict
        JSON-serialisable; stored under ``machine`` in every result file.
    """
    import peft
    import torch
    import transformers

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "load_average": load_average(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "cuda": torch.cuda.is_available(),
        "git": git_commit(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
