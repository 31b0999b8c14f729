"""The Ray executor: a local cluster on CPU runs two organism jobs at once, matching the local executor."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from rrlib import executors, results

pytestmark = pytest.mark.integration
MODELS = ["organism-xs", "organism-s"]
PARAMS = {"limit": 20}


def _metrics(root, outcomes) -> pd.DataFrame:
    """The metrics the runs wrote (a run on other inputs, here limit=20, has its own table)."""
    paths = sorted({results.table_path("metrics", o.model, root, tagged="@" in o.model) for o in outcomes})
    table = pd.concat([pd.read_csv(path) for path in paths], ignore_index=True)
    assert set(table["model"]) == {o.model for o in outcomes}
    return table.sort_values(["model", "metric", "judge"]).reset_index(drop=True)[
        ["model", "metric", "judge", "value", "ci_low", "ci_high", "n"]]


def test_ray_matches_local_and_runs_jobs_at_once(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.delenv("RR_CACHE_DIR", raising=False)  # share the real organism cache
    local_dir, ray_dir = tmp_path / "local", tmp_path / "ray"
    monkeypatch.setenv("RR_RESULTS_DIR", str(local_dir))
    local = executors.run_many(MODELS, [3], PARAMS, log=lambda line: None)
    monkeypatch.setenv("RR_RESULTS_DIR", str(ray_dir))
    distributed = executors.run_many(MODELS, [3], PARAMS, log=lambda line: None, executor="ray", cpus_per_job=1.0)
    assert [o.status for o in local] == ["ran", "ran"]
    assert [o.status for o in distributed] == ["ran", "ran"], [o.error for o in distributed]
    # Two worker processes, and their jobs overlapped in time.
    assert len({o.worker for o in distributed}) == 2
    (a, b) = sorted(distributed, key=lambda o: o.started)
    assert b.started < a.started + a.seconds, "the two Ray jobs did not run at the same time"
    assert all(str(o.path).startswith(str(ray_dir)) for o in distributed)
    pd.testing.assert_frame_equal(_metrics(local_dir, local), _metrics(ray_dir, distributed))


def test_ray_respects_day_order_and_failures(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("RR_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.delenv("RR_CACHE_DIR", raising=False)
    outcomes = executors.run_many(["organism-xs"], [3, 4], {"eval_path": "no/such/file.csv"}, log=lambda line: None,
                               executor="ray")
    assert [(o.day, o.status) for o in outcomes] == [(3, "failed"), (4, "failed")]
    assert "file not found" in outcomes[0].error and "skipped" in outcomes[1].error
    assert os.environ.get("RR_RESULTS_DIR") == str(tmp_path / "results")
