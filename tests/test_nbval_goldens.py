"""nbval: re-execute the committed golden runs and compare every output.

Which goldens, and why (47 executed notebooks are committed; re-running all of
them would retrain 15 organisms):

- organism-m Days 3, 4 and 5: every code path of the per-model Days (baseline,
  attack, Day 5 with its representation analysis). They re-run in order into a
  temporary results folder, so Day 5 finds the adapters Day 4 just trained, and
  nothing under results/ changes.
- Day 6 (scaling): re-run on a copy of the committed results tables, so it
  checks that the committed scaling analysis, gate and sentences follow from the
  committed per-member tables.
- Day 7 and Day 5 with ``analyses`` off are executed by tests/test_integration.py
  on a small configuration (one rank, two seeds, a short grid), whose outputs are
  checked against Day 3's (the grid's step 0 is the baseline); a full Day 7
  golden would retrain nine LoRA runs. The nbval settings (what is
not compared, the sanitize rules that mask volatile text and cut floats to 3
decimals) live in tests/nbval_plugin.py and tests/nbval_sanitize.cfg.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from nbval_plugin import command

ROOT = Path(__file__).resolve().parents[1]
GOLDENS = [ROOT / "results" / "runs" / "organism-m" / f"Day{d}.ipynb" for d in (3, 4, 5)]
pytestmark = pytest.mark.integration


def test_golden_runs_reproduce(tmp_path):
    missing = [str(p) for p in GOLDENS if not p.exists()]
    assert not missing, f"golden runs missing: {missing}; run `make all` and commit results/runs"
    env = {**os.environ, "RR_RESULTS_DIR": str(tmp_path / "results"), "PYTHONPATH": str(ROOT / "tests"),
           "RR_PROGRESS": "0", "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env.pop("RR_CACHE_DIR", None)
    proc = subprocess.run(command(GOLDENS, rootdir=tmp_path), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=3000)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]


def test_day6_golden_reproduces_from_the_committed_tables(tmp_path):
    golden = ROOT / "results" / "runs" / "scaling" / "Day6.ipynb"
    assert golden.exists(), f"{golden} missing; run `make all` and commit results/runs"
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results" / "metrics", results / "metrics")
    shutil.copytree(ROOT / "results" / "runs", results / "runs")
    env = {**os.environ, "RR_RESULTS_DIR": str(results), "PYTHONPATH": str(ROOT / "tests"), "RR_PROGRESS": "0",
           "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    proc = subprocess.run(command([golden], rootdir=tmp_path), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
