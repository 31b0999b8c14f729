"""nbval: re-execute the committed golden runs and compare every output.

The goldens are results/runs/<organism>/DayN.ipynb. They re-run in order
(Day 3, 4, 5) into a temporary results folder, so Day 5 finds the adapters Day 4
just trained, and nothing under results/ changes. The nbval settings (what is
not compared, the sanitize rules that mask volatile text and cut floats to 3
decimals) live in tests/nbval_plugin.py and tests/nbval_sanitize.cfg.
"""

from __future__ import annotations

import os
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
