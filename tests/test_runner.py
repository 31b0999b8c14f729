"""Running one Day: models reach the notebook as named, and a rerun leaves the executed notebook byte for byte."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from rrlib import days, executors, jobs, results, runner
from rrlib.store import write_json


def test_hub_ids_and_local_paths_reach_the_notebook_unchanged(tmp_path, monkeypatch):
    local = tmp_path / "My-Model"
    local.mkdir()
    seen = []

    def fake_run_day(model, day, parameters=None, force=False, root=None):
        seen.append((model, day, dict(parameters or {})))
        name = results.run_name(model, day, parameters)
        status = "failed" if model == "Qwen/Qwen2-7B-Instruct" and day == 3 else "ran"
        return jobs.Outcome(name, day, status, results.run_file(name, day), error="boom" * (status == "failed"))

    monkeypatch.setattr(runner, "run_day", fake_run_day)
    outcomes = executors.run_many(["Qwen/Qwen2-7B-Instruct", str(local)], [3, 4, 6], log=lambda line: None)
    assert [(m, d) for m, d, _ in seen] == [("Qwen/Qwen2-7B-Instruct", 3), (str(local), 3), (str(local), 4)]
    by_job = {(o.model, o.day): o for o in outcomes}
    assert by_job[("qwen-qwen2-7b-instruct", 4)].error == "skipped: qwen-qwen2-7b-instruct Day3 failed first"
    (day6,) = [o for o in outcomes if o.day == 6]
    assert day6.model == results.run_name("scaling", 6, {"models": ["qwen-qwen2-7b-instruct", "my-model"]})
    assert day6.model.startswith(f"{days.CROSS_MODEL_NAME}@")  # not the study's model list: filed apart
    assert day6.status == "failed"  # Day 6 needs every model


# ---------------------------------------------------------------------------
# A rerun leaves the executed notebook byte for byte as it was
# ---------------------------------------------------------------------------

TINY_NOTEBOOK = {
    "cells": [
        {"cell_type": "markdown", "id": "cell-00", "metadata": {}, "source": "# A tiny Day"},
        {"cell_type": "code", "id": "cell-01", "metadata": {"tags": ["parameters"]}, "execution_count": None,
         "outputs": [], "source": 'model: str = "organism-m"\nlimit: "Optional[int]" = None  # rows'},
        {"cell_type": "code", "id": "cell-02", "metadata": {}, "execution_count": None, "outputs": [],
         "source": "import ipywidgets as widgets\n"
                   "tabs = widgets.Tab(children=[widgets.HTML(f'<b>{model}</b>'), widgets.HTML('two')])\n"
                   "tabs"},
        {"cell_type": "code", "id": "cell-03", "metadata": {}, "execution_count": None, "outputs": [],
         "source": "print(model, limit)"},
    ],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                 "jupytext": {"formats": "ipynb,md:myst"}},
    "nbformat": 4, "nbformat_minor": 5,
}


@dataclass(frozen=True)
class TinyDay(days.Day):
    """A Day record whose source notebook lives outside ``notebooks/``."""

    path: str = ""

    @property
    def source(self) -> Path:
        return Path(self.path)


@pytest.fixture
def tiny_day(tmp_path, monkeypatch):
    source = tmp_path / "Tiny.ipynb"
    nbformat.write(nbformat.from_dict(TINY_NOTEBOOK), str(source))
    monkeypatch.setitem(days.DAYS, 3, TinyDay(3, "Tiny.ipynb", "Day 3 · Tiny", "Does it run?", reads=(), owns=(),
                                              cost=1.0, path=str(source)))
    return source


def test_a_rerun_is_byte_identical_and_timings_go_to_provenance(tiny_day, isolated_results):
    first = runner.run_day("organism-m", 3)
    assert first.status == "ran", first.error
    assert first.path == results.run_file("organism-m", 3) and first.path.parent.parent == isolated_results / "runs"
    saved = first.path.read_bytes()
    provenance = results.provenance_path("organism-m", 3)
    write_json(provenance, {**json.loads(provenance.read_text()), "environment": {"git_commit": "abc"}})

    assert runner.run_day("organism-m", 3).status == "skipped"  # done, same source and parameters
    again = runner.run_day("organism-m", 3, force=True)
    assert again.status == "ran", again.error
    assert again.path.read_bytes() == saved

    executed = nbformat.read(again.path, as_version=4)
    assert "jupytext" not in executed.metadata  # an executed run has no text twin
    assert set(executed.metadata["papermill"]) >= {"parameters"}
    assert not set(executed.metadata["papermill"]) & set(runner.VOLATILE_PAPERMILL)
    assert executed.metadata["papermill"]["parameters"] == {"model": "organism-m"}
    assert executed.metadata["rr"] == {"model": "organism-m", "day": 3, "parameters": {"model": "organism-m"},
                                       "source_sha": runner._sha(tiny_day), "source": "notebooks/Tiny.ipynb"}
    for cell in executed.cells:
        assert "papermill" not in cell.metadata and "execution" not in cell.metadata
    hidden = [c for c in executed.cells if {"parameters", "injected-parameters"} & set(c.metadata.get("tags", []))]
    assert len(hidden) == 2 and all("remove-cell" in c.metadata["tags"] for c in hidden)
    assert [c.id for c in hidden] == ["cell-01", runner.INJECTED_CELL_ID]
    widgets = executed.metadata["widgets"][runner.WIDGET_STATE]["state"]
    assert len(widgets) >= 3  # the Tab, its two HTML children (and their layouts and styles)

    record = json.loads(provenance.read_text())
    assert record["environment"] == {"git_commit": "abc"}  # the notebook's own provenance is kept
    assert record["seconds"] > 0 and record["started"].endswith("+00:00")
    assert [c["index"] for c in record["cells"]] == [0, 1, 2, 3, 4]  # every cell, the injected one included
    marker = results.state_file("organism-m", 3, ".done.json")
    assert runner.done_marker("organism-m", 3) == marker
    assert json.loads(marker.read_text())["parameters"] == {"model": "organism-m"}


def test_strip_volatile_makes_two_executions_equal():
    def executed(stamp: str, ids: tuple[str, str]) -> nbformat.NotebookNode:
        tab, html = ids
        return nbformat.from_dict({
            "cells": [{"cell_type": "code", "id": f"x{stamp[-4:]}", "execution_count": 1, "source": "",
                       "metadata": {"tags": ["injected-parameters"],
                                    "papermill": {"duration": float(stamp[-2:]), "start_time": stamp,
                                                  "end_time": stamp, "status": "completed", "exception": False},
                                    "execution": {"iopub.execute_input": stamp}},
                       "outputs": [{"output_type": "display_data", "metadata": {},
                                    "data": {runner.WIDGET_VIEW: {"model_id": tab, "version_major": 2},
                                             "text/plain": "Tab()"}}]}],
            "metadata": {"papermill": {"start_time": stamp, "end_time": stamp, "duration": 1.0,
                                       "input_path": f"/home/{stamp}/in.ipynb", "output_path": f"/{stamp}.ipynb",
                                       "parameters": {"model": "organism-m"}, "version": "2.7.0"},
                         "widgets": {runner.WIDGET_STATE: {"state": {
                             tab: {"model_name": "TabModel", "state": {"children": [f"IPY_MODEL_{html}"]}},
                             html: {"model_name": "HTMLModel", "state": {"value": "a"}}},
                             "version_major": 2, "version_minor": 0}}},
            "nbformat": 4, "nbformat_minor": 5})

    one = executed("2026-01-01T00:00:01", ("a" * 32, "b" * 32))
    two = executed("2026-02-02T00:00:09", ("f" * 32, "0" * 32))
    timings = runner.strip_volatile(one, "organism-m/Day3")
    runner.strip_volatile(two, "organism-m/Day3")
    assert nbformat.writes(one) == nbformat.writes(two)
    assert timings == [{"index": 0, "id": runner.INJECTED_CELL_ID, "seconds": 1.0}]
    assert one.metadata.papermill == {"parameters": {"model": "organism-m"}, "version": "2.7.0"}
    state = one.metadata.widgets[runner.WIDGET_STATE]["state"]
    view = one.cells[0].outputs[0].data[runner.WIDGET_VIEW]["model_id"]
    assert state[view]["model_name"] == "TabModel"  # the view still names its model
    child = state[view]["state"]["children"][0].removeprefix("IPY_MODEL_")
    assert state[child]["model_name"] == "HTMLModel"  # and references still resolve
