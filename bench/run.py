"""Run the benchmarks: ``python -m bench.run [--only p1,p2] [--quick] [--out DIR]``.

Each benchmark writes ``<out>/<name>.json`` (machine information and raw
measurements); ``<out>/summary.json`` gets the headline numbers of this
invocation. ``--quick`` runs tiny versions as a smoke check and writes to
``bench/results/quick/`` so the real results stay as they are.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from bench import BUSY_CORES, QUICK_RESULTS_DIR, RESULTS_DIR

Runner = Callable[[bool, Callable[[str], None]], dict[str, dict[str, Any]]]
QUIET_ENV = {"TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "RR_PROGRESS": "0",
             "TOKENIZERS_PARALLELISM": "false"}


def _p1(quick: bool, log: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    from bench import p1_generation

    return {"p1_generation": p1_generation.run(quick, log)}


def _p2(quick: bool, log: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    from bench import p2_grid

    return {"p2_grid": p2_grid.run(quick, log)}


def _p3_p4(quick: bool, log: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    from bench import p3_study

    p3, p4 = p3_study.run(quick, log)
    return {"p3_study": p3, "p4_memory": p4}


def _p5(quick: bool, log: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    from bench import p5_attacks

    return {"p5_attacks": p5_attacks.run(quick, log)}


# P3 and P4 are one measurement: asking for either runs both.
BENCHMARKS: dict[str, tuple[Runner, tuple[str, ...]]] = {
    "p1": (_p1, ("p1",)), "p2": (_p2, ("p2",)), "p3": (_p3_p4, ("p3", "p4")), "p4": (_p3_p4, ("p3", "p4")),
    "p5": (_p5, ("p5",)),
}


def parse_only(text: str | None) -> list[str]:
    """``p1,p3`` -> ``["p1", "p3"]`` in canonical order; all benchmarks when empty."""
    if not text:
        return list(BENCHMARKS)
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        raise SystemExit(f"bench: unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    return [n for n in BENCHMARKS if n in names]


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m bench.run``."""
    parser = argparse.ArgumentParser(prog="python -m bench.run",
                                     description="Run the benchmarks (P1-P5; see bench/README.md).")
    parser.add_argument("--only", default=None, help="comma-separated subset of p1,p2,p3,p4,p5 (p3 and p4 run together)")
    parser.add_argument("--quick", action="store_true", help="tiny versions, a smoke check (results in bench/results/quick)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default bench/results, or "
                                                                "bench/results/quick with --quick)")
    return parser


def run_selected(selected: Sequence[str], quick: bool, out_dir: Path, context: dict[str, Any],
                 log: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """Run the selected benchmarks once each and write their result files.

    Returns
    -------
    tuple of (dict, dict, list)
        The merged headlines (plus ``other_processes_cpu_cores`` per benchmark), errors per
        benchmark that crashed, and the benchmarks run.
    """
    from bench.environment import cpu_sample, load_average, other_cpu_cores
    from bench.report import write_result

    headlines: dict[str, Any] = {}
    errors: dict[str, str] = {}
    contention: dict[str, float | None] = {}
    ran: list[str] = []
    done: set[Runner] = set()
    for name in selected:
        runner, covers = BENCHMARKS[name]
        if runner in done:
            continue
        done.add(runner)
        ran += covers
        load_before, cpu_before = load_average(), cpu_sample()
        try:
            records = runner(quick, log)
        except Exception as exc:  # one crashing benchmark must not hide the others' numbers
            traceback.print_exc()
            errors[name] = f"{type(exc).__name__}: {exc}"
            continue
        other = other_cpu_cores(cpu_before, cpu_sample())
        contention[name] = other
        if other is not None and other > BUSY_CORES:
            log(f"warning: other processes kept {other:.2f} cores busy during {name}; its timings are unreliable")
        load = {"other_processes_cpu_cores": other, "load_average": {"before": load_before, "after": load_average()}}
        for file_name, record in records.items():
            path = write_result(out_dir, file_name, {**record, **load}, context)
            headlines.update(record.get("headline", {}))
            log(f"wrote {path}")
    headlines["other_processes_cpu_cores"] = contention
    return headlines, errors, ran


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmarks, write their files and the summary, print the table."""
    args = build_parser().parse_args(argv)
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", category=FutureWarning)
    from bench.environment import machine_info
    from bench.report import summarise, table
    from rrlib.store import write_json

    selected = parse_only(args.only)
    out_dir = args.out or (QUICK_RESULTS_DIR if args.quick else RESULTS_DIR)
    now = dt.datetime.now(dt.timezone.utc)
    context = {"run_id": now.strftime("%Y%m%dT%H%M%SZ"), "quick": args.quick, "machine": machine_info()}
    headlines, errors, ran = run_selected(selected, args.quick, out_dir, context, lambda line: print(line, flush=True))
    summary = summarise(headlines, context, ran, errors)
    path = write_json(out_dir / "summary.json", summary)
    print(f"\nwrote {path}{' (quick: smoke check, not the real numbers)' if args.quick else ''}")
    print(table(summary))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
