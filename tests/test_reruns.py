"""A rerun leaves the tree as it found it, and a run on your own data never touches the study's files.

Both run Day 3 of the default organism for real, through papermill, on a few prompts.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import subprocess_env

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.integration


def _env(results: Path) -> dict[str, str]:
    return subprocess_env(results)


def _snapshot(results: Path) -> dict[str, bytes]:
    """Every file under ``results`` (dotfiles too), except the git-ignored local state and lock files."""
    return {str(p.relative_to(results)): p.read_bytes() for p in sorted(results.rglob("*"))
            if p.is_file() and ".state" not in p.parts and not p.name.endswith(".lock")}


def _rr(results: Path, *args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "rrlib.cli", "run", *args], cwd=ROOT, env=_env(results),
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_running_a_day_twice_gives_byte_identical_files(tmp_path):
    results = tmp_path / "results"
    _rr(results, "--models", "organism-m", "--days", "3", "--param", "limit=8")
    first = _snapshot(results)
    assert any(name.endswith("Day3.ipynb") for name in first) and any(name.endswith("metrics.csv") for name in first)
    _rr(results, "--models", "organism-m", "--days", "3", "--param", "limit=8", "--force")
    second = _snapshot(results)
    assert sorted(second) == sorted(first)
    changed = [name for name in first if first[name] != second[name]]
    assert changed == [], f"a rerun changed {changed}"


def test_your_own_eval_file_leaves_every_file_of_the_study_unchanged(tmp_path):
    """The README's example: papermill Day 3 with -p eval_path my.csv, on a copy of the committed study."""
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results" / "metrics", results / "metrics")
    shutil.copytree(ROOT / "results" / "runs", results / "runs",
                    ignore=shutil.ignore_patterns("responses", ".state", "*.lock"))
    before = _snapshot(results)
    mine = tmp_path / "my.csv"
    pd.read_csv(ROOT / "data" / "raw" / "redteam_eval.csv").head(8).to_csv(mine, index=False)
    out = tmp_path / "out.ipynb"
    proc = subprocess.run([sys.executable, "-m", "papermill", "notebooks/Day3_baseline.ipynb", str(out),
                           "-p", "eval_path", str(mine), "--log-level", "ERROR"],
                          cwd=ROOT, env=_env(results), capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = _snapshot(results)
    changed = sorted(name for name in before if after.get(name) != before[name])
    assert changed == [], f"a run on another eval file changed the study's {changed}"
    added = sorted(set(after) - set(before))
    own = ("runs/organism-m@", "figures/organism-m@", "cache/")  # its own run, its figures, the shared caches
    assert added and all(name.startswith(own) for name in added), added
    assert any(name.startswith("runs/organism-m@") for name in added)
    tables = [name for name in added if name.endswith("metrics/metrics.csv")]
    assert len(tables) == 1 and tables[0].startswith("runs/organism-m@")
    table = pd.read_csv(results / tables[0])
    rrr = table[(table["metric"] == "RRR") & (table["judge"] == "arditi12")]
    assert list(rrr["n"]) == [8]
    config = next(name for name in added if name.endswith("Day3.config.json"))
    assert str(tmp_path) in (results / config).read_text()  # outside the project: kept absolute
    assert str(ROOT) not in (results / config).read_text()  # inside the project: relative
