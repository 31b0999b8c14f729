"""Atomic writes, torn JSONL tails, concurrent table updates and tables in key order."""

from __future__ import annotations

import json
import multiprocessing as mp

import pandas as pd

from rrlib import store
from rrlib.results import TABLES

METRICS = TABLES["metrics"]


def upsert_metrics(rows, path):
    return store.upsert_table(path, rows, METRICS.key, METRICS.columns)


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
    upsert_metrics([row], path)
    upsert_metrics([{**row, "value": 0.7}, {**row, "metric": "CE", "value": 0.3}], path)
    table = pd.read_csv(path)
    assert len(table) == 2
    assert table.set_index("metric").loc["RRR", "value"] == 0.7


def _writer(args):
    path, model = args
    for step in range(20):
        upsert_metrics([{"model": model, "day": 5, "step": step, "metric": "RRR", "value": step / 20,
                               "ci_low": 0, "ci_high": 1, "n": 1, "judge": "j", "run_id": model,
                               "recipe": "r", "seed": 0, "reason": ""}], path)


def test_concurrent_writers_lose_no_rows(tmp_path):
    path = str(tmp_path / "metrics.csv")
    with mp.get_context("spawn").Pool(2) as pool:
        pool.map(_writer, [(path, "model-a"), (path, "model-b")])
    table = pd.read_csv(path)
    assert len(table) == 40
    assert sorted(table["model"].unique()) == ["model-a", "model-b"]


def test_scope_values_match_numbers_read_back_as_floats(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"day": [5.0, None], "v": [1, 2]}).to_csv(path, index=False)  # an empty cell makes day a float
    store.upsert_table(path, [{"day": 3, "v": 3}], ["day", "v"], ["day", "v"], replace=[{"day": 5}])
    assert sorted(pd.read_csv(path)["v"]) == [2, 3]


def test_tables_are_written_in_key_order_whatever_the_write_order(tmp_path):
    """Two write orders give byte-identical files; numbers sort by value (10 after 9), not as text."""
    rows = [{"model": m, "day": 5, "step": step, "metric": "RRR", "value": 0.1, "ci_low": 0, "ci_high": 1, "n": 1,
             "judge": "j", "run_id": "r", "recipe": "r", "seed": 0, "reason": ""}
            for m in ("b", "a") for step in (10, 9, 100)]
    first, second = tmp_path / "one.csv", tmp_path / "two.csv"
    for row in rows:
        upsert_metrics([row], first)
    for row in reversed(rows):
        upsert_metrics([row], second)
    assert first.read_bytes() == second.read_bytes()
    table = pd.read_csv(first)
    assert list(zip(table["model"], table["step"])) == [("a", 9), ("a", 10), ("a", 100), ("b", 9), ("b", 10),
                                                        ("b", 100)]
