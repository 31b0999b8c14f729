"""Run one Day notebook for one model with papermill.

:func:`run_day` executes the Day's source notebook (its record in
:mod:`rrlib.days`) into ``results/runs/<name>/DayN.ipynb``
(:func:`rrlib.results.run_file`), where ``<name>`` is the run's name
(:func:`rrlib.results.run_name`). A finished run with the same parameters and
the same source notebook is skipped unless forced; the local, git-ignored done
marker records that. The executed notebook is written atomically, so a killed
run never leaves a half-written notebook in the book, and deterministically:
timestamps, durations, absolute paths and random widget ids are stripped or
made stable, so a rerun leaves the file byte for byte as it was. Timings go to
the run's git-ignored provenance file (:func:`rrlib.results.provenance_path`)
instead.

Planning jobs is :mod:`rrlib.jobs`; running many is :mod:`rrlib.executors`.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from rrlib import days as rdays
from rrlib import results
from rrlib.config import project_root
from rrlib.envvars import temporary_env
from rrlib.jobs import Outcome
from rrlib.store import atomic_write_text, read_json, write_json

if TYPE_CHECKING:
    from nbformat import NotebookNode

KERNEL_ENV = {
    "RR_PROGRESS": "0",  # no progress bars stored in executed notebooks
    "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0"),
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
}
# papermill's notebook-level fields that change at every run (or name this machine's paths)
VOLATILE_PAPERMILL = ("start_time", "end_time", "duration", "input_path", "output_path")
INJECTED_CELL_ID = "injected-parameters"  # papermill gives the injected cell a random id
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def done_marker(name: str, day: int, root: Path | None = None) -> Path:
    """The local (git-ignored) record that run ``name`` of Day ``day`` was executed on this machine."""
    return results.state_file(name, day, ".done.json", root)


def is_done(name: str, day: int, parameters: Mapping[str, Any], root: Path | None = None) -> bool:
    """Whether run ``name`` of Day ``day`` finished, on this machine, from today's source with these parameters.

    A committed golden notebook alone does not count: a fresh clone has no
    local marker, so ``make all`` really executes the study there.

    Parameters
    ----------
    name : str
        The run name (:func:`rrlib.results.run_name`).
    day : int
        The Day.
    parameters : mapping
        The papermill parameters of the run.
    root : Path, optional
        Results root.

    Returns
    -------
    bool
        ``True`` when the notebook and a matching done marker exist.
    """
    marker = done_marker(name, day, root)
    if not results.run_file(name, day, root=root).exists() or not marker.exists():
        return False
    try:
        record = read_json(marker)
    except (OSError, ValueError):
        return False
    return record.get("source_sha") == _sha(rdays.get(day).source) and record.get("parameters") == dict(parameters)


def run_day(model: str, day: int, parameters: Mapping[str, Any] | None = None, force: bool = False,
            root: Path | None = None) -> Outcome:
    """Execute one Day notebook for one model.

    Parameters
    ----------
    model : str
        Model name, hub id or path (injected as the ``model`` parameter; ignored for cross-model Days).
    day : int
        Which Day.
    parameters : mapping, optional
        Further papermill parameters.
    force : bool
        Re-run even if a finished run with these parameters exists.
    root : Path, optional
        Results root.

    Returns
    -------
    Outcome
        ``ran``, ``skipped`` or ``failed`` (with the one-line error).
    """
    import nbformat
    import papermill

    record = rdays.get(day)
    name = results.run_name(model, day, parameters)
    params = dict(parameters or {}) if record.cross_model else {"model": model, **dict(parameters or {})}
    source = record.source
    output = results.run_file(name, day, root=root)
    failed_copy = results.run_file(name, day, ".failed.ipynb", root)
    if not force and is_done(name, day, params, root):
        return Outcome(name, day, "skipped", output)
    made_folders = _missing_folders(output.parent)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.running.ipynb")
    started = time.perf_counter()
    wall = time.time()
    try:
        with temporary_env(**KERNEL_ENV):
            papermill.execute_notebook(str(source), str(tmp), parameters=params, kernel_name="python3",
                                       cwd=str(project_root()), progress_bar=False, log_output=False,
                                       kernel_manager_class=_ipc_kernel_manager())
    except papermill.PapermillExecutionError as exc:
        failed = failed_copy
        if exc.ename in _user_error_names():  # the one-line message says it all: write nothing
            tmp.unlink(missing_ok=True)
            _remove_if_empty(made_folders)
            failed = output
        elif tmp.exists():  # a bug: keep the executed notebook and its traceback for diagnosis
            tmp.replace(failed)
        return Outcome(name, day, "failed", failed, time.perf_counter() - started,
                       f"{exc.ename}: {' '.join(str(exc.evalue).split())}", wall, _worker())
    except Exception as exc:  # the kernel died or never started: report it, keep the other jobs going
        tmp.unlink(missing_ok=True)
        _remove_if_empty(made_folders)
        return Outcome(name, day, "failed", output, time.perf_counter() - started,
                       f"{type(exc).__name__}: {' '.join(str(exc).split())}", wall, _worker())
    seconds = time.perf_counter() - started
    executed = nbformat.read(tmp, as_version=4)
    cells = strip_volatile(executed, f"{name}/Day{day}")
    _finish_metadata(executed, name, day, params, source)
    text = nbformat.writes(executed)
    atomic_write_text(output, text if text.endswith("\n") else text + "\n")
    tmp.unlink(missing_ok=True)
    _record_timings(name, day, root, seconds, wall, cells)
    write_json(done_marker(name, day, root), {"source_sha": _sha(source), "parameters": dict(params)})
    failed_copy.unlink(missing_ok=True)
    return Outcome(name, day, "ran", output, seconds, "", wall, _worker())


def _missing_folders(folder: Path) -> list[Path]:
    """The folders ``folder.mkdir(parents=True)`` would create, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove the folders a failed run made (deepest first) while they are empty: a user error writes nothing."""
    for folder in folders:
        try:
            folder.rmdir()  # only succeeds while it is empty
        except OSError:
            return


def strip_volatile(notebook: NotebookNode, seed: str) -> list[dict[str, Any]]:
    """Make an executed notebook deterministic, in place; return the per-cell timings it held.

    Removes papermill's notebook-level times and paths (keeping its
    ``parameters`` and other deterministic fields), every cell's
    ``metadata.papermill`` and ``metadata.execution`` timestamps; gives the
    injected-parameters cell a fixed id and the widgets stable ids derived
    from ``seed`` and their order in the notebook.

    Parameters
    ----------
    notebook : nbformat.NotebookNode
        The executed notebook.
    seed : str
        Identifies the run (``organism-m/Day3``), so widget ids differ between pages.

    Returns
    -------
    list of dict
        ``index``, ``id`` and papermill's ``seconds`` of every cell that recorded a duration.
    """
    cells = []
    for index, cell in enumerate(notebook.cells):
        metadata = cell.get("metadata", {})
        timing = metadata.pop("papermill", None) or {}
        metadata.pop("execution", None)
        if "injected-parameters" in metadata.get("tags", []):
            cell["id"] = INJECTED_CELL_ID
        if timing.get("duration") is not None:
            cells.append({"index": index, "id": cell.get("id", ""), "seconds": round(float(timing["duration"]), 3)})
    papermill_meta = notebook.metadata.get("papermill", {})
    for key in VOLATILE_PAPERMILL:
        papermill_meta.pop(key, None)
    _stable_widget_ids(notebook, seed)
    return cells


def _stable_widget_ids(notebook: NotebookNode, seed: str) -> None:
    """Replace the widgets' random model ids by ids derived from ``seed`` and the order they are reached.

    Models are numbered as they are reached from the cells' widget views (in
    cell order), following each model's ``IPY_MODEL_`` references (in sorted
    key order); models nothing reaches come last, in the order of their content.
    """
    state = notebook.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state")
    if not state:
        return
    reference = re.compile(r"IPY_MODEL_([0-9A-Za-z_-]+)")
    order: list[str] = []

    def visit(model_id: str) -> None:
        stack = [model_id]
        while stack:
            current = stack.pop()
            if current in order or current not in state:
                continue
            order.append(current)
            found = reference.findall(json.dumps(state[current], sort_keys=True))
            stack.extend(reversed(found))

    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view and view.get("model_id"):
                visit(str(view["model_id"]))
    masked = {k: reference.sub("IPY_MODEL_", json.dumps(v, sort_keys=True)) for k, v in state.items()}
    for model_id in sorted((k for k in state if k not in order), key=lambda k: masked[k]):
        visit(model_id)
    stable = {old: hashlib.sha256(f"{seed}/widget/{n}".encode()).hexdigest()[:32] for n, old in enumerate(order)}
    pattern = re.compile("|".join(re.escape(old) for old in sorted(stable, key=len, reverse=True)))
    text = pattern.sub(lambda match: stable[match.group(0)], json.dumps(notebook))
    notebook.update(_node(json.loads(text)))


def _node(value: Any) -> NotebookNode:
    """A JSON value as nbformat nodes (attribute access like the rest of the notebook)."""
    from nbformat import from_dict

    return from_dict(value)


def _record_timings(name: str, day: int, root: Path | None, seconds: float, wall: float,
                    cells: list[dict[str, Any]]) -> None:
    """Merge this execution's timings into the run's provenance file (beside the notebook's ``environment``)."""
    started = datetime.datetime.fromtimestamp(wall, datetime.timezone.utc).isoformat(timespec="seconds")
    results.update_provenance(name, day, {"seconds": round(seconds, 2), "started": started, "worker": _worker(),
                                          "cells": cells}, root)


def _user_error_names() -> set[str]:
    """Class names of every error a user can fix (``RRError`` and its subclasses)."""
    from rrlib.errors import RRError

    names, stack = set(), [RRError]
    while stack:
        cls = stack.pop()
        names.add(cls.__name__)
        stack.extend(cls.__subclasses__())
    return names


def _worker() -> str:
    """Which process ran a job (host and pid), for the executor report."""
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def _ipc_kernel_manager() -> type:
    """A kernel manager on local IPC sockets (no TCP ports, no "unencrypted TCP" warning)."""
    import tempfile
    import uuid

    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        transport = "ipc"

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            # A private socket prefix per kernel: kernels started at once must not race for the same files.
            self.ip = os.path.join(tempfile.gettempdir(), f"rr-kernel-{uuid.uuid4().hex[:12]}")

        async def _async_interrupt_kernel(self) -> None:
            # papermill shuts a kernel down only after its last cell; the SIGINT that jupyter_client sends
            # first would only print "KeyboardInterrupt caught in kernel" into the user's terminal.
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

    return IPCKernelManager


def _finish_metadata(notebook: NotebookNode, name: str, day: int, params: Mapping[str, Any],
                     source: Path) -> None:
    """Hide the parameter cells in the book and record what was run (deterministic fields only).

    The source notebook's jupytext pairing is dropped: an executed run has no text twin, and a Jupyter session
    with jupytext would otherwise write a stray ``DayN.md`` beside it.
    """
    notebook.metadata.pop("jupytext", None)
    for cell in notebook.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if ("injected-parameters" in tags or "parameters" in tags) and "remove-cell" not in tags:
            tags.append("remove-cell")
    notebook.metadata["rr"] = {"model": name, "day": day, "parameters": dict(params), "source_sha": _sha(source),
                               "source": f"notebooks/{source.name}"}
