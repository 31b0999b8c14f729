"""Measuring tools: wall time, environment overrides, and subprocesses with their memory.

A command's peak memory is measured two ways: ``os.wait4`` returns the
resource usage of that one child, whose ``ru_maxrss`` is the largest resident
set of any single process in its tree (the kernel folds in every descendant
that was waited for); a sampler thread also polls ``/proc`` for the whole
tree and keeps the largest sum of resident sets seen at one moment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

T = TypeVar("T")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MB = 1024 * 1024


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """Call ``fn`` and return its wall time in seconds and its value."""
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process visible in ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # fields after "(comm)": state, ppid, ...
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def tree_rss(root: int) -> list[int]:
    """Resident set size in bytes of ``root`` and each of its live descendants."""
    children = _children_map()
    pending, sizes = [root], []
    while pending:
        pid = pending.pop()
        pending += children.get(pid, [])
        try:
            sizes.append(int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_BYTES)
        except (OSError, IndexError, ValueError):
            continue
    return sizes


class TreeSampler(threading.Thread):
    """Poll the resident memory of a process tree until stopped.

    Attributes
    ----------
    peak_tree_bytes : int
        The largest sum over the tree seen in one sample.
    peak_process_bytes : int
        The largest single process seen.
    samples : int
        Samples taken.
    """

    def __init__(self, root: int, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.peak_tree_bytes = self.peak_process_bytes = self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        """Sample until :meth:`stop` (no-op where ``/proc`` is missing)."""
        if not Path("/proc").is_dir():
            return
        while not self._stop_event.is_set():
            sizes = tree_rss(self.root)
            if sizes:
                self.peak_tree_bytes = max(self.peak_tree_bytes, sum(sizes))
                self.peak_process_bytes = max(self.peak_process_bytes, max(sizes))
                self.samples += 1
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self._stop_event.set()
        self.join()


@dataclass
class CommandRun:
    """One measured subprocess.

    Attributes
    ----------
    label : str
        What was run (``cold experiment``).
    command : list of str
        The argument vector.
    returncode : int
        Exit status.
    seconds : float
        Wall time from start to exit.
    maxrss_mb : float
        ``ru_maxrss`` of the child from ``os.wait4``: the largest single process of its tree.
    tree_peak_mb : float
        The largest summed resident memory of the tree seen by the ``/proc`` sampler.
    process_peak_mb : float
        The largest single process seen by the sampler.
    samples : int
        Sampler polls.
    env : dict
        The ``RR_*`` variables the command ran with.
    output : list of str
        Its stdout and stderr lines.
    """

    label: str
    command: list[str]
    returncode: int
    seconds: float
    maxrss_mb: float
    tree_peak_mb: float
    process_peak_mb: float
    samples: int
    env: dict[str, str] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the command exited 0."""
        return self.returncode == 0

    def row(self) -> dict[str, Any]:
        """A JSON-serialisable record."""
        return asdict(self)


def run_measured(label: str, command: Sequence[str], env: Mapping[str, str], cwd: Path,
                 echo: Callable[[str], None] | None = None, interval: float = 0.25) -> CommandRun:
    """Run a command to completion, timing it and measuring its tree's memory.

    Parameters
    ----------
    label : str
        A short name for reports.
    command : sequence of str
        The argument vector.
    env : mapping
        The full environment of the command.
    cwd : Path
        Working directory.
    echo : callable, optional
        Receives each output line as it arrives (live progress).
    interval : float
        Seconds between ``/proc`` samples.

    Returns
    -------
    CommandRun
        Exit status, wall time, memory and output.
    """
    lines: list[str] = []
    started = time.perf_counter()
    proc = subprocess.Popen(list(command), cwd=cwd, env=dict(env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)
    sampler = TreeSampler(proc.pid, interval)
    sampler.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if echo:
                echo(lines[-1])
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:  # interrupted: end the command's whole process group, then re-raise
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        raise
    finally:
        sampler.stop()
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    rr_env = {k: v for k, v in env.items() if k.startswith("RR_")}
    return CommandRun(label, list(command), proc.returncode, round(seconds, 3),
                      round(usage.ru_maxrss * 1024 / MB, 1),  # ru_maxrss is in KiB on Linux
                      round(sampler.peak_tree_bytes / MB, 1), round(sampler.peak_process_bytes / MB, 1),
                      sampler.samples, rr_env, lines)
