"""P3 and P4: the wall time and peak memory of ``make all`` after setup.

``make all`` runs the study (``rr experiment run
experiments/organism_scaling/config.yaml --jobs 2`` at the time of writing; the
command is read from ``make -n study`` so it follows the Makefile) and then
``rr book``. Both run here as subprocesses of the benchmark, twice:

* **cold**: ``RR_CACHE_DIR`` is a fresh temporary folder, so every organism is
  built and the sbert-lr judge is fitted, as on a fresh clone;
* **warm**: ``RR_CACHE_DIR`` is the project's cache (``.rr_cache``), so only
  what is missing there is built.

Nothing in the checkout is written. Each pass gets a *staged root*, a
temporary folder holding copies of ``book/`` (without ``_build``), ``data/``,
``notebooks/``, ``_config.yml`` and ``_toc.yml``. The experiment runs from the
project with ``--force`` and ``RR_RESULTS_DIR=<stage>/results``; the book is
then built with ``RR_ROOT=<stage>``, so it renders exactly the results that
pass produced (as ``make all`` does) and writes its pages, ``_toc.yml``,
``results/metrics/judges`` and ``book/_build`` into the stage, not into the
project. P3 is experiment seconds plus book seconds; setup is excluded.

P4 is the peak resident memory of the same commands: the largest single
process (``ru_maxrss`` from ``os.wait4``, which covers every descendant that
was waited for: the papermill kernels, the Jupyter Book build), and, as
context, the largest summed memory of the whole tree sampled from ``/proc``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import yaml

from bench.breakdown import largest_jobs, parse_jobs, slowest_cells
from bench.measure import CommandRun, run_measured
from rrlib.envvars import temporary_env

PROJECT = Path(__file__).resolve().parents[1]
EXPERIMENT = PROJECT / "experiments" / "organism_scaling" / "config.yaml"
QUICK_EXPERIMENT = {
    "description": "bench --quick: one tiny organism, Day 3, 16 prompts",
    "requires": {"gpu": False, "hub": False},
    "runs": [{"models": ["organism-xs"], "days": "3", "params": {"limit": 16}}],
}
STAGED = ("book", "data", "notebooks", "_config.yml", "_toc.yml")
KEEP_LINES = 200  # output lines stored per command


def study_command(config: Path | None = None) -> tuple[list[str], str]:
    """The study command of ``make all`` (read from ``make -n study``), with ``--force`` added.

    Parameters
    ----------
    config : Path, optional
        An experiment config to run instead of the Makefile's (``--quick``).

    Returns
    -------
    tuple of (list of str, str)
        The argument vector (run from the project root) and where it came from.
    """
    try:
        dry = subprocess.run(["make", "-n", "study"], cwd=PROJECT, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        dry = ""
    found = [line for line in dry.splitlines() if " experiment run " in f" {line} "]
    argv, source = (shlex.split(found[-1]), "make -n study") if found else (
        [*rr_command(), "experiment", "run", str(EXPERIMENT.relative_to(PROJECT))], "default (make -n study failed)")
    if config is not None:
        argv = [str(config) if arg.endswith((".yaml", ".yml")) else arg for arg in argv]
    return argv + ["--force"], source


def write_quick_config(folder: Path, name: str, experiment: dict[str, Any]) -> Path:
    """Write a ``--quick`` experiment config to ``<folder>/experiments/<name>/config.yaml`` and return its path."""
    path = folder / "experiments" / name / "config.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    return path


def config_of(study: list[str]) -> Path:
    """The experiment config named in a study command."""
    return PROJECT / next(arg for arg in study if arg.endswith((".yaml", ".yml")))


def rr_command() -> list[str]:
    """The ``rr`` entry point of this environment (``python -m rrlib.cli`` if the script is missing)."""
    script = Path(sys.executable).with_name("rr")
    return [str(script)] if script.exists() else [sys.executable, "-m", "rrlib.cli"]


def stage_root(folder: Path) -> Path:
    """Copy what ``rr book`` reads into ``folder`` (a stand-in project root) and return it."""
    folder.mkdir(parents=True)
    for name in STAGED:
        source = PROJECT / name
        if source.is_dir():
            shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("_build", ".ipynb_checkpoints"))
        elif source.exists():
            shutil.copy2(source, folder / name)
    return folder


def organisms_built(config: Path, cache: Path) -> dict[str, bool]:
    """For each organism in an experiment, whether ``cache`` already holds its current build."""
    from rrlib import experiments, organism
    from rrlib.config import resolve_model

    names = {m for run in experiments.load(config).runs for m in run.models if resolve_model(m).is_organism}
    with temporary_env(RR_CACHE_DIR=str(cache)):
        return {name: (organism.build_dir(name) / "build.json").exists() for name in sorted(names)}


def one_pass(label: str, study: list[str], cache: Path, stage: Path, quick: bool,
             log: Callable[[str], None]) -> dict[str, Any]:
    """Run the experiment, then the book, against one cache; return both measurements.

    Parameters
    ----------
    label : str
        ``cold`` or ``warm``.
    study : list of str
        The study command (:func:`study_command`).
    cache : Path
        ``RR_CACHE_DIR`` for both commands.
    stage : Path
        A fresh folder for the staged root (see the module docstring).
    quick : bool
        Build only the book's pages (``rr book --pages-only``), not the HTML.
    log : callable
        Progress lines.

    Returns
    -------
    dict
        ``experiment`` and ``book`` command records, ``jobs``, ``seconds`` and ``ok``.
    """
    root = stage_root(stage)
    base = {**os.environ, "RR_CACHE_DIR": str(cache), "RR_PROGRESS": "0"}
    base.pop("RR_RESULTS_DIR", None)
    cached = organisms_built(config_of(study), cache)

    def echo(line: str) -> None:
        log(f"  [{label}] {line}")

    experiment = run_measured(f"{label} experiment", study,
                              {**base, "RR_ROOT": str(PROJECT), "RR_RESULTS_DIR": str(root / "results")},
                              PROJECT, echo)
    book_cmd = [*rr_command(), "book", *(["--pages-only"] if quick else [])]
    book = run_measured(f"{label} book", book_cmd, {**base, "RR_ROOT": str(root)}, root, echo)
    jobs = parse_jobs(experiment.output)
    ok = experiment.ok and book.ok and bool(jobs) and all(j["status"] == "ran" for j in jobs)
    log(f"P3 {label}: experiment {experiment.seconds:.1f} s + book {book.seconds:.1f} s"
        f"{'' if ok else ' (FAILED)'}")
    return {"label": label, "cache": str(cache), "organisms_cached_before": cached,
            "experiment": _trim(experiment), "book": _trim(book), "jobs": jobs,
            "slowest_cells": slowest_cells(root / "results"),
            "kernel_and_runner_overhead_seconds": round(experiment.seconds - sum(j["seconds"] or 0 for j in jobs), 3),
            "seconds": round(experiment.seconds + book.seconds, 3), "ok": ok}


def _trim(command: CommandRun) -> dict[str, Any]:
    """A command record with only the last :data:`KEEP_LINES` output lines."""
    row = command.row()
    row["output_lines"] = len(row["output"])
    row["output"] = row["output"][-KEEP_LINES:]
    return row


def run(quick: bool = False, log: Callable[[str], None] = print) -> tuple[dict[str, Any], dict[str, Any]]:
    """Measure P3 (wall time) and P4 (peak memory) in the same runs.

    Parameters
    ----------
    quick : bool
        A one-job experiment (organism-xs, Day 3, 16 prompts) and ``rr book --pages-only``.
    log : callable
        Progress lines (the runner's lines are echoed live).

    Returns
    -------
    tuple of (dict, dict)
        The P3 record and the P4 record, each with a ``headline``.
    """
    from rrlib.config import cache_dir

    with tempfile.TemporaryDirectory(prefix="rr-bench-p3-") as tmp:
        tmp_path = Path(tmp)
        quick_config = write_quick_config(tmp_path, "bench-quick", QUICK_EXPERIMENT) if quick else None
        study, source = study_command(quick_config)
        log(f"P3: {shlex.join(study)} (from {source}), then rr book; cold, then warm")
        passes = [one_pass("cold", study, tmp_path / "cold-cache", tmp_path / "cold-root", quick, log),
                  one_pass("warm", study, cache_dir(), tmp_path / "warm-root", quick, log)]
        config_text = config_of(study).read_text()
    return p3_record(passes, study, source, config_text, quick), p4_record(passes)


def p3_record(passes: list[dict[str, Any]], study: list[str], source: str, config_text: str,
              quick: bool) -> dict[str, Any]:
    """The P3 result: both passes, the largest costs and the headline (the cold pass)."""
    cold, warm = passes
    ok = all(p["ok"] for p in passes)
    return {
        "study_command": shlex.join(study), "study_command_source": source, "config_text": config_text,
        "book_command": shlex.join([*rr_command(), "book", *(["--pages-only"] if quick else [])]),
        "what_is_timed": ("per pass: the study command of `make all` plus --force (RR_RESULTS_DIR=<stage>/results), "
                          "then `rr book` (RR_ROOT=<stage>), each a subprocess timed from start to exit; "
                          "make setup is excluded"),
        "passes": passes, "largest_jobs_cold": largest_jobs(cold["jobs"]),
        "largest_jobs_warm": largest_jobs(warm["jobs"]), "ok": ok,
        "headline": {"p3_make_all_seconds": cold["seconds"] if ok else None,
                     "p3_cold_seconds": cold["seconds"], "p3_warm_seconds": warm["seconds"],
                     "p3_cold_book_seconds": cold["book"]["seconds"], "p3_warm_book_seconds": warm["book"]["seconds"],
                     "p3_largest_jobs": [f"{j['job']} ({j['seconds']:.1f} s)" for j in largest_jobs(cold["jobs"], 3)],
                     "p3_slowest_cells": [f"{c['job']}: {c['cell'][:60]} ({c['seconds']:.1f} s)"
                                          for c in cold["slowest_cells"][:3]],
                     "p3_ok": ok},
    }


def p4_record(passes: list[dict[str, Any]]) -> dict[str, Any]:
    """The P4 result: the memory of every P3 command and the headline peak."""
    commands = [p[kind] for p in passes for kind in ("experiment", "book")]
    ok = all(p["ok"] for p in passes)
    return {
        "what_is_measured": ("ru_maxrss from os.wait4 of each P3 command: the largest single process in its tree "
                             "(kernels and the Jupyter Book build included); tree_peak_mb sums the live tree, "
                             "sampled from /proc every 0.25 s"),
        "commands": [{k: c[k] for k in ("label", "maxrss_mb", "tree_peak_mb", "process_peak_mb", "samples",
                                        "returncode")} for c in commands],
        "ok": ok,
        "headline": {"p4_peak_rss_mb": max(c["maxrss_mb"] for c in commands) if ok else None,
                     "p4_tree_peak_mb": max(c["tree_peak_mb"] for c in commands)},
    }
