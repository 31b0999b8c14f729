"""P5: the wall time of the named experiment ``experiments/attacks_and_defense`` on 2 cores, cold.

The experiment (four attacks x the Vaccine defense on organism sizes s-xl, two build seeds each) runs as
``rr experiment run experiments/attacks_and_defense/config.yaml --jobs 2 --force`` with ``RR_CACHE_DIR`` a
fresh temporary folder (every organism, defended or not, is built, as on a fresh clone) and
``RR_RESULTS_DIR`` a temporary folder (nothing in the checkout is written). The goal is the issue's budget:
at most 25 minutes. ``--quick`` runs a one-member, two-attack version as a smoke check.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from pathlib import Path
from typing import Any, Callable

from bench.breakdown import largest_jobs, parse_jobs
from bench.measure import run_measured
from bench.p3_study import KEEP_LINES, PROJECT, rr_command, write_quick_config

EXPERIMENT = PROJECT / "experiments" / "attacks_and_defense" / "config.yaml"
QUICK_EXPERIMENT = {
    "description": "bench --quick: one organism, LoRA and orthogonalization, 16 prompts",
    "requires": {"gpu": False, "hub": False},
    "runs": [{"models": ["organism-s"], "days": "3-5", "params": {"limit": 16, "grid_steps": [0, 10],
                                                                   "analyses": False}},
             {"models": ["organism-s"], "days": "4-5", "params": {"limit": 16, "attack": "orthogonalize",
                                                                   "grid_steps": [0, 4], "analyses": False}}],
}


def run(quick: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the experiment once, cold, and return its record with a ``headline``.

    Parameters
    ----------
    quick : bool
        A two-job smoke version instead of the experiment.
    log : callable
        Progress lines (the runner's lines are echoed live).
    """
    with tempfile.TemporaryDirectory(prefix="rr-bench-p5-") as tmp:
        tmp_path = Path(tmp)
        config = write_quick_config(tmp_path, "bench-quick-p5", QUICK_EXPERIMENT) if quick else EXPERIMENT
        command = [*rr_command(), "experiment", "run", str(config), "--jobs", "2", "--force"]
        env = {**os.environ, "RR_CACHE_DIR": str(tmp_path / "cache"), "RR_RESULTS_DIR": str(tmp_path / "results"),
               "RR_PROGRESS": "0", "RR_ROOT": str(PROJECT)}
        log(f"P5: {shlex.join(command)} (cold cache)")
        measured = run_measured("P5 attacks_and_defense", command, env, PROJECT, lambda line: log(f"  [P5] {line}"))
        config_text = config.read_text()
    jobs = parse_jobs(measured.output)
    ok = measured.ok and bool(jobs) and all(j["status"] == "ran" for j in jobs)
    row = measured.row()
    row["output"] = row["output"][-KEEP_LINES:]
    log(f"P5: {measured.seconds:.1f} s{'' if ok else ' (FAILED)'}")
    return {"command": shlex.join(command), "config_text": config_text, "experiment": row, "jobs": jobs,
            "largest_jobs": largest_jobs(jobs), "ok": ok,
            "what_is_timed": "the experiment command with a fresh RR_CACHE_DIR and RR_RESULTS_DIR, start to exit",
            "headline": {"p5_attacks_and_defense_seconds": measured.seconds if ok else None,
                         "p5_largest_jobs": [f"{j['job']} ({j['seconds']:.1f} s)" for j in largest_jobs(jobs, 3)]}}
