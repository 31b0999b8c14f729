"""Every peer format runs through the Day 3 notebook by parameter (papermill, the organism, a few prompts)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / "tests" / "fixtures" / "peer"
pytestmark = pytest.mark.integration

CASES = [
    ("advbench", {"eval_path": PEER / "advbench_harmful_behaviors.csv"}),
    ("harmbench", {"eval_path": PEER / "harmbench_behaviors_text_all.csv"}),
    ("jbb", {"eval_path": PEER / "jbb_harmful-behaviors.csv", "benign_path": PEER / "jbb_benign-behaviors.csv"}),
    ("strongreject", {"eval_path": PEER / "strongreject_dataset.csv"}),
    ("xstest", {"eval_path": PEER / "xstest_prompts.csv", "benign_path": PEER / "xstest_prompts.csv"}),
    ("sorry-bench", {"eval_path": PEER / "sorry_bench_question.jsonl", "attack_path": PEER / "attack_chat.jsonl"}),
]


@pytest.mark.parametrize("name, params", CASES, ids=[c[0] for c in CASES])
def test_day3_runs_on_each_peer_format(tmp_path, name, params):
    env = {**os.environ, "RR_RESULTS_DIR": str(tmp_path / "results")}
    env.pop("RR_CACHE_DIR", None)
    args = [arg for key, value in params.items() for arg in ("--param", f"{key}={value}")]
    proc = subprocess.run([sys.executable, "-m", "rrlib.cli", "run", "--models", "organism-xs", "--days", "3",
                           "--param", "limit=4", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Another eval file (and limit=4) is another input than the study's: the run is filed as organism-xs@<hash>.
    assert len(list((tmp_path / "results" / "runs").glob("organism-xs@*/Day3.ipynb"))) == 1
    assert not (tmp_path / "results" / "runs" / "organism-xs").exists()
