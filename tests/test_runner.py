"""The runner's plan: models reach the notebook exactly as the user named them."""

from __future__ import annotations

from rrlib import runner


def test_hub_ids_and_local_paths_reach_the_notebook_unchanged(tmp_path, monkeypatch):
    local = tmp_path / "My-Model"
    local.mkdir()
    seen = []

    def fake_run_day(model, day, parameters=None, force=False, root=None):
        seen.append((model, day, dict(parameters or {})))
        name = runner.CROSS_MODEL_NAME if day in runner.CROSS_MODEL_DAYS else runner.resolve_model(model).name
        status = "failed" if model == "Qwen/Qwen2-7B-Instruct" and day == 3 else "ran"
        return runner.Outcome(name, day, status, runner.output_notebook(name, day), error="boom" * (status == "failed"))

    monkeypatch.setattr(runner, "run_day", fake_run_day)
    outcomes = runner.run_many(["Qwen/Qwen2-7B-Instruct", str(local)], [3, 4, 6], log=lambda line: None)
    assert [(m, d) for m, d, _ in seen] == [("Qwen/Qwen2-7B-Instruct", 3), (str(local), 3), (str(local), 4)]
    by_job = {(o.model, o.day): o for o in outcomes}
    assert by_job[("qwen-qwen2-7b-instruct", 4)].error == "skipped: qwen-qwen2-7b-instruct Day3 failed first"
    assert by_job[(runner.CROSS_MODEL_NAME, 6)].status == "failed"  # Day 6 needs every model
