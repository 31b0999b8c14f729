"""Atomic writes, torn JSONL tails and concurrent metric updates."""

from __future__ import annotations

import json
import multiprocessing as mp

import pandas as pd

from rrlib import store


def test_atomic_write_leaves_no_temp_files(tmp_path):
    path = store.atomic_write_text(tmp_path / "a" / "b.txt", "hello")
    assert path.read_text() == "hello"
    assert [p.name for p in path.parent.iterdir()] == ["b.txt"]


def test_torn_jsonl_tail_is_discarded_and_repaired(tmp_path):
    path = tmp_path / "cache.jsonl"
    store.append_jsonl(path, [{"key": 1}, {"key": 2}])
    with open(path, "a") as handle:
        handle.write('{"key": 3, "resp')  # a writer killed mid-line
    assert [r["key"] for r in store.read_jsonl(path)] == [1, 2]
    store.append_jsonl(path, [{"key": 4}])
    lines = path.read_text().splitlines()
    assert [json.loads(x)["key"] for x in lines] == [1, 2, 4]


def test_upsert_replaces_rows_with_the_same_key(tmp_path):
    path = tmp_path / "m.csv"
    row = {"model": "m", "day": 3, "step": 0, "metric": "RRR", "value": 0.5, "ci_low": 0.4, "ci_high": 0.6,
           "n": 10, "judge": "j", "run_id": "r", "recipe": "baseline", "seed": 0, "reason": ""}
    store.upsert_metrics([row], path)
    store.upsert_metrics([{**row, "value": 0.7}, {**row, "metric": "CE", "value": 0.3}], path)
    table = store.read_metrics(path)
    assert len(table) == 2
    assert table.set_index("metric").loc["RRR", "value"] == 0.7


def _writer(args):
    path, model = args
    for step in range(20):
        store.upsert_metrics([{"model": model, "day": 5, "step": step, "metric": "RRR", "value": step / 20,
                               "ci_low": 0, "ci_high": 1, "n": 1, "judge": "j", "run_id": model,
                               "recipe": "r", "seed": 0, "reason": ""}], path)


def test_concurrent_writers_lose_no_rows(tmp_path):
    path = str(tmp_path / "metrics.csv")
    with mp.get_context("spawn").Pool(2) as pool:
        pool.map(_writer, [(path, "model-a"), (path, "model-b")])
    table = pd.read_csv(path)
    assert len(table) == 40
    assert sorted(table["model"].unique()) == ["model-a", "model-b"]


def test_a_rerun_replaces_its_scope_and_leaves_other_scopes(tmp_path, monkeypatch):
    """Rows an earlier run of the same (model, Day, recipe) wrote, and the rerun no longer writes, are dropped."""
    from rrlib.metrics import Estimate
    from rrlib.study import Run

    monkeypatch.setenv("RR_RESULTS_DIR", str(tmp_path))
    est = Estimate("RRR", 0.5, 0.4, 0.6, 10, "wilson95")
    old = Run("organism-m", 5, {"limit": 1})
    old.record([est], judge="gcg29", step=10, recipe="lora-a")  # a row the rerun will not write
    old.record([est], judge="arditi12", step=100, recipe="lora-a")
    old.record([est], judge="arditi12", step=100, recipe="lora-b")  # another recipe: kept
    Run("organism-m", 3).record([est], judge="arditi12")  # another Day: kept
    new = Run("organism-m", 5, {"limit": 2})
    new.record([Estimate("RRR", 0.1, 0.0, 0.2, 10, "wilson95")], judge="arditi12", step=100, recipe="lora-a")
    new.record([est], judge="arditi12", step=200, recipe="lora-a")  # a second write keeps the first
    table = store.read_metrics(tmp_path / "metrics" / "metrics.csv")
    scoped = table[(table["day"] == 5) & (table["recipe"] == "lora-a")]
    assert sorted(scoped["step"]) == [100, 200] and set(scoped["run_id"]) == {new.run_id}
    assert scoped.set_index("step").loc[100, "value"] == 0.1
    assert len(table[table["recipe"] == "lora-b"]) == 1 and len(table[table["day"] == 3]) == 1


def test_day7_reruns_own_every_recipe_and_side_tables_follow_the_same_rule(tmp_path, monkeypatch):
    """A Day 7 rerun with fewer seeds drops the missing seeds' rows; a Day 5 rerun with fewer steps drops old verdicts."""
    from rrlib.metrics import Estimate
    from rrlib.study import Run

    monkeypatch.setenv("RR_RESULTS_DIR", str(tmp_path))
    est = Estimate("RRR", 0.5, 0.4, 0.6, 10, "wilson95")
    first = Run("organism-l", 7, {"seeds": [0, 1, 2]})
    for seed in (0, 1, 2):
        first.record([est], judge="arditi12", step=200, recipe=f"lora-r8-s{seed}", seed=seed)
    second = Run("organism-l", 7, {"seeds": [0]})
    second.record([est], judge="arditi12", step=200, recipe="lora-r8-s0", seed=0)
    table = store.read_metrics(tmp_path / "metrics" / "metrics.csv")
    assert list(table["recipe"]) == ["lora-r8-s0"]

    verdicts = tmp_path / "runs" / "organism-l" / "Day5.verdicts.csv"
    columns, key = ["id", "step", "refused", "judge", "recipe"], ["id", "step", "judge", "recipe"]
    old = Run("organism-l", 5, {"grid_steps": [0, 100]})
    old.upsert(verdicts, [{"id": "a", "step": s, "refused": True, "judge": "j", "recipe": "r"} for s in (0, 100)],
               key, columns, {"recipe": "r"})
    old.upsert(verdicts, [{"id": "a", "step": 0, "refused": True, "judge": "j", "recipe": "other"}], key, columns,
               {"recipe": "other"})
    new = Run("organism-l", 5, {"grid_steps": [0]})
    new.upsert(verdicts, [{"id": "a", "step": 0, "refused": False, "judge": "j", "recipe": "r"}], key, columns,
               {"recipe": "r"})
    kept = pd.read_csv(verdicts)
    assert sorted(zip(kept["recipe"], kept["step"])) == [("other", 0), ("r", 0)]


def test_scope_values_match_numbers_read_back_as_floats(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"day": [5.0, None], "v": [1, 2]}).to_csv(path, index=False)  # an empty cell makes day a float
    store.upsert_table(path, [{"day": 3, "v": 3}], ["day", "v"], ["day", "v"], replace=[{"day": 5}])
    assert sorted(pd.read_csv(path)["v"]) == [2, 3]
