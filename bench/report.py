"""Result files, the summary with goals, and the closing table."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from bench import BUSY_CORES, GOALS


def write_result(out_dir: Path, name: str, record: Mapping[str, Any], context: Mapping[str, Any]) -> Path:
    """Write ``<out_dir>/<name>.json``: the run context (machine, run id, quick) and the raw record."""
    from rrlib.store import write_json

    return write_json(out_dir / f"{name}.json", {"benchmark": name, **context, **record})


def passed(key: str, value: Any, ran: bool = True) -> bool | None:
    """Whether a headline meets its goal: ``None`` if its benchmark did not run, False if it ran but claims nothing."""
    if not ran:
        return None
    if value is None:
        return False
    op, target, _ = GOALS[key]
    return value >= target if op == ">=" else value <= target


def summarise(headlines: Mapping[str, Any], context: Mapping[str, Any], ran: Sequence[str],
              errors: Mapping[str, str]) -> dict[str, Any]:
    """The ``summary.json`` content.

    Parameters
    ----------
    headlines : mapping
        Every benchmark's ``headline`` entries, merged.
    context : mapping
        Run id, quick flag and machine information.
    ran : sequence of str
        Benchmarks run in this invocation (``p1`` ... ``p4``).
    errors : mapping
        Benchmark -> error message, for those that crashed.

    Returns
    -------
    dict
        The four goal keys (``None`` where not measured or not claimed), the extra
        context keys, ``goals`` and ``pass``.
    """
    values = {key: headlines.get(key) for key in GOALS}
    goals = {key: f"{op} {target:g} {unit}" for key, (op, target, unit) in GOALS.items()}
    return {**values, **{k: v for k, v in headlines.items() if k not in GOALS},
            "goals": goals, "pass": {key: passed(key, value, key.split("_")[0] in ran) for key, value in values.items()},
            "benchmarks_run": list(ran), "errors": dict(errors), **context}


def table(summary: Mapping[str, Any]) -> str:
    """A short plain-text table of the headline numbers against their goals."""
    rows = [("benchmark", "measured", "goal", "pass")]
    for key, (_, _, unit) in GOALS.items():
        value, ok = summary.get(key), summary["pass"].get(key)
        shown = f"{value:.4g} {unit}" if value is not None else ("not claimed" if ok is False else "not run")
        rows.append((key, shown, summary["goals"][key], {True: "yes", False: "NO", None: "-"}[ok]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    for key, title in (("p3_largest_jobs", "P3 largest jobs (cold)"), ("p3_slowest_cells", "P3 slowest cells (cold)")):
        if summary.get(key):
            lines += [f"{title}:", *(f"  {item}" for item in summary[key])]
    busy = {k: v for k, v in (summary.get("other_processes_cpu_cores") or {}).items() if v and v > BUSY_CORES}
    if busy:
        lines.append("warning: the machine was busy (other processes' average CPU use, cores: "
                     + ", ".join(f"{k} {v:.2f}" for k, v in busy.items()) + "); these timings are unreliable")
    return "\n".join(lines)
