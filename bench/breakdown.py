"""Where the study's time goes: the runner's per-job lines and papermill's per-cell durations."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

JOB_LINE = re.compile(r"^\s*(ran|skipped|failed)\s+(\S+) Day(\d+)(?: \(([\d.]+) s\))?(?::\s*(.*))?$")


def parse_jobs(lines: Sequence[str]) -> list[dict[str, Any]]:
    """The runner's per-job lines (``ran  organism-m Day3 (12.3 s)``) as records.

    Parameters
    ----------
    lines : sequence of str
        Output of ``rr run`` or ``rr experiment run``.

    Returns
    -------
    list of dict
        ``model, day, status, seconds`` (``None`` unless ran) and ``error``.
    """
    jobs = []
    for line in lines:
        match = JOB_LINE.match(line)
        if match:
            status, model, day, seconds, error = match.groups()
            jobs.append({"model": model, "day": int(day), "status": status,
                         "seconds": float(seconds) if seconds else None, "error": error or ""})
    return jobs


def largest_jobs(jobs: Sequence[dict[str, Any]], n: int = 5) -> list[dict[str, Any]]:
    """The ``n`` slowest jobs with their share of the summed job time."""
    timed = [j for j in jobs if j["seconds"] is not None]
    total = sum(j["seconds"] for j in timed) or 1.0
    top = sorted(timed, key=lambda j: j["seconds"], reverse=True)[:n]
    return [{"job": f"{j['model']} Day{j['day']}", "seconds": j["seconds"], "share": round(j["seconds"] / total, 3)}
            for j in top]


def slowest_cells(results_root: Path, n: int = 10) -> list[dict[str, Any]]:
    """The ``n`` slowest cells over every executed run (papermill timings from each run's provenance record).

    Parameters
    ----------
    results_root : Path
        A results folder (``RR_RESULTS_DIR``) after a run.
    n : int
        How many cells to keep.

    Returns
    -------
    list of dict
        ``job`` (``organism-m Day5``), ``cell`` (its first source line), ``seconds``
        (papermill's duration) and ``kernel_seconds`` (the whole notebook's).
    """
    import nbformat

    from rrlib import results

    cells = []
    for name, days in results.executed_runs(results_root).items():
        for day in days:
            provenance = results.read_provenance(name, day, results_root)  # timings live outside the notebook
            notebook = nbformat.read(results.run_file(name, day, root=results_root), as_version=4)
            sources = {cell.get("id"): cell.source for cell in notebook.cells}
            kernel = provenance.get("seconds")
            for cell in provenance.get("cells", []):
                first = next((line for line in sources.get(cell.get("id"), "").splitlines() if line.strip()), "")
                cells.append({"job": f"{name} Day{day}", "cell": first[:100], "seconds": round(float(cell["seconds"]), 2),
                              "kernel_seconds": round(float(kernel), 2) if kernel is not None else None})
    return sorted(cells, key=lambda c: c["seconds"], reverse=True)[:n]
