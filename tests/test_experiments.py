"""Named experiments: config validation and fail-fast requirements."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rrlib import executors, experiments, jobs
from rrlib.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_experiments_parse():
    scaling = experiments.load(ROOT / "experiments/organism_scaling/config.yaml")
    from rrlib.config import family_members

    assert scaling.runs[0].models == tuple(family_members())  # Days 3-4: every member of the family
    day5 = [m for run in scaling.runs if run.days == "5" for m in run.models]
    assert sorted(day5) == sorted(family_members())  # Day 5 too, extra build seeds without the analyses
    assert all(run.params.get("analyses") is False for run in scaling.runs
               if run.days == "5" and any("-seed" in m for m in run.models))
    assert not scaling.requires.gpu
    grid = experiments.load(ROOT / "experiments/qwen2_7b_lora_grid/config.yaml")
    assert grid.requires.gpu and grid.requires.hub and grid.runs[-1].days == "7"


def test_unknown_keys_are_rejected(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("runs:\n  - models: [organism-m]\n    dayz: 3-5\n")
    with pytest.raises(ConfigError, match="unknown key\\(s\\) dayz"):
        experiments.load(path)


def test_gpu_experiment_fails_fast_without_gpu_or_hub():
    grid = experiments.load(ROOT / "experiments/qwen2_7b_lora_grid/config.yaml")
    with pytest.raises(ConfigError, match="needs a CUDA GPU .* and the Hugging Face hub for qwen2-7b-instruct"):
        experiments.check_requirements(grid, cuda=lambda: False, hub=lambda: False)
    experiments.check_requirements(grid, cuda=lambda: True, hub=lambda: True)


def test_original_command_fails_fast_offline():
    proc = subprocess.run(["./experiments/qwen2_7b_lora_grid/run.sh"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HOME": "/tmp"})
    assert proc.returncode == 2
    assert "needs a CUDA GPU" in proc.stderr and "Traceback" not in proc.stderr


def test_runs_are_planned_as_one_plan(tmp_path, monkeypatch):
    path = tmp_path / "mine" / "config.yaml"
    path.parent.mkdir()
    path.write_text("runs:\n  - models: [organism-s, organism-m]\n    days: 3-4\n"
                    "  - models: organism-l\n    days: '7'\n    params: {seeds: [0]}\n")
    seen = {}

    def fake_run_jobs(planned, force=False, log=print, **executor):
        seen.update(planned=list(planned), force=force, executor=executor)
        return []

    monkeypatch.setattr(executors, "run_jobs", fake_run_jobs)
    assert experiments.run(path, force=True, log=lambda line: None, jobs=2) == []
    assert [(j.model, j.day) for j in seen["planned"]] == [("organism-s", 3), ("organism-s", 4), ("organism-m", 3),
                                                           ("organism-m", 4), ("organism-l", 7)]
    assert all(isinstance(j, jobs.Job) for j in seen["planned"]) and seen["planned"][-1].params == {"seeds": [0]}
    assert seen["force"] is True and seen["executor"] == {"jobs": 2}


def test_a_parameter_no_day_of_a_run_declares_is_rejected_with_the_file_and_run(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("runs:\n  - models: [organism-m]\n    days: '3-4'\n    params:\n      grid_step: [0, 10]\n")
    with pytest.raises(ConfigError, match=r"config.yaml runs\[0\] params: grid_step: not a parameter of Day3 .* "
                                          r"or Day4 .*valid names: .*grid_steps"):
        experiments.load(path)
