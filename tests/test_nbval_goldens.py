"""nbval: re-execute the committed golden runs and compare every output.

The goldens are results/runs/<organism>/DayN.ipynb. They re-run in order
(Day 3, 4, 5) into a temporary results folder, so Day 5 finds the adapters Day 4
just trained, and nothing under results/ changes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDENS = [ROOT / "results" / "runs" / "organism-m" / f"Day{d}.ipynb" for d in (3, 4, 5)]
pytestmark = pytest.mark.integration


def test_golden_runs_reproduce(tmp_path):
    missing = [str(p) for p in GOLDENS if not p.exists()]
    assert not missing, f"golden runs missing: {missing}; run `make all` and commit results/runs"
    env = {**os.environ, "RR_RESULTS_DIR": str(tmp_path / "results"), "PYTHONPATH": str(ROOT / "tests"),
           "RR_PROGRESS": "0", "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env.pop("RR_CACHE_DIR", None)
    cmd = [sys.executable, "-m", "pytest", "--nbval", "-p", "nbval_plugin", "-p", "no:cacheprovider",
           "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg"), "--nbval-cell-timeout", "900",
           "-q", "--rootdir", str(tmp_path), "-c", os.devnull, *map(str, GOLDENS)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
