"""Execute the Day notebooks per model with papermill.

Each (model, Day) runs ``notebooks/DayN_*.ipynb`` into
``results/runs/<model>/DayN.ipynb``. A finished run with the same parameters
and the same source notebook is skipped unless forced; a failing model does
not stop the others, and the failures are reported at the end. The executed
notebook is written atomically, so a killed run never leaves a half-written
notebook in the book.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from rrlib.config import project_root, resolve_model, results_dir, slug
from rrlib.errors import ConfigError

DAY_NOTEBOOKS = {
    3: "Day3_baseline.ipynb",
    4: "Day4_attack.ipynb",
    5: "Day5_after_attack.ipynb",
    6: "Day6_scaling.ipynb",
    7: "Day7_lora_grid.ipynb",
}
KERNEL_ENV = {
    "RR_PROGRESS": "0",  # no progress bars stored in executed notebooks
    "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0"),
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
}


@dataclass
class Outcome:
    """What happened to one (model, Day)."""

    model: str
    day: int
    status: str  # "ran", "skipped" or "failed"
    path: Path
    seconds: float = 0.0
    error: str = ""

    def line(self) -> str:
        """One line for the terminal."""
        detail = f" ({self.seconds:.1f} s)" if self.status == "ran" else ""
        error = f": {self.error}" if self.error else ""
        return f"{self.status:>7}  {self.model} Day{self.day}{detail}{error}"


def parse_days(spec: str | Sequence[int]) -> list[int]:
    """Parse ``3-5``, ``3,5`` or ``[3, 4]`` into a sorted list of Days.

    Raises
    ------
    ConfigError
        For a Day without a notebook or an unreadable spec.
    """
    if isinstance(spec, str):
        days: list[int] = []
        for part in spec.replace(" ", "").split(","):
            if not part:
                continue
            try:
                if "-" in part:
                    lo, hi = (int(x) for x in part.split("-", 1))
                    days += list(range(lo, hi + 1))
                else:
                    days.append(int(part))
            except ValueError:
                raise ConfigError(f"cannot read days {spec!r}; use e.g. 3-5 or 3,5") from None
    else:
        days = [int(d) for d in spec]
    unknown = sorted(set(days) - set(DAY_NOTEBOOKS))
    if unknown:
        raise ConfigError(f"no notebook for day(s) {unknown}; available days: {sorted(DAY_NOTEBOOKS)}")
    return sorted(set(days))


def source_notebook(day: int) -> Path:
    """``notebooks/DayN_*.ipynb`` for a Day."""
    return project_root() / "notebooks" / DAY_NOTEBOOKS[day]


def output_notebook(model: str, day: int, root: Path | None = None) -> Path:
    """``results/runs/<model>/DayN.ipynb``."""
    return (root or results_dir()) / "runs" / slug(model) / f"Day{day}.ipynb"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def is_done(output: Path, parameters: Mapping[str, Any], source: Path) -> bool:
    """Whether ``output`` is a finished run of ``source`` with these parameters."""
    import nbformat

    if not output.exists():
        return False
    try:
        nb = nbformat.read(output, as_version=4)
    except Exception:
        return False
    meta = nb.metadata.get("rr", {})
    failed = nb.metadata.get("papermill", {}).get("exception")
    return (not failed and meta.get("source_sha") == _sha(source)
            and meta.get("parameters") == dict(parameters))


def run_day(model: str, day: int, parameters: Mapping[str, Any] | None = None, force: bool = False,
            root: Path | None = None) -> Outcome:
    """Execute one Day notebook for one model.

    Parameters
    ----------
    model : str
        Model name, hub id or path (injected as the ``model`` parameter).
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

    name = resolve_model(model).name
    params = {"model": model, **dict(parameters or {})}
    source = source_notebook(day)
    output = output_notebook(name, day, root)
    if not force and is_done(output, params, source):
        return Outcome(name, day, "skipped", output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.running.ipynb")
    started = time.perf_counter()
    saved_env = {k: os.environ.get(k) for k in KERNEL_ENV}
    os.environ.update(KERNEL_ENV)
    try:
        papermill.execute_notebook(str(source), str(tmp), parameters=params, kernel_name="python3",
                                   cwd=str(project_root()), progress_bar=False, log_output=False)
    except papermill.PapermillExecutionError as exc:
        failed = output.with_name(f"Day{day}.failed.ipynb")
        if tmp.exists():
            tmp.replace(failed)
        return Outcome(name, day, "failed", failed, time.perf_counter() - started,
                       f"{exc.ename}: {' '.join(str(exc.evalue).split())}")
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    seconds = time.perf_counter() - started
    nb = nbformat.read(tmp, as_version=4)
    _finish_metadata(nb, name, day, params, source, seconds)
    nbformat.write(nb, str(tmp))
    os.replace(tmp, output)
    output.with_name(f"Day{day}.failed.ipynb").unlink(missing_ok=True)
    return Outcome(name, day, "ran", output, seconds)


def _finish_metadata(nb: Any, model: str, day: int, params: Mapping[str, Any], source: Path, seconds: float) -> None:
    """Hide the parameter cells in the book and record provenance in the notebook."""
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
        if "parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    nb.metadata["rr"] = {"model": model, "day": day, "parameters": dict(params), "source_sha": _sha(source),
                         "source": f"notebooks/{source.name}", "seconds": round(seconds, 2)}


def run_many(models: Sequence[str], days: Sequence[int], parameters: Mapping[str, Any] | None = None,
             force: bool = False, log: Callable[[str], None] = print) -> list[Outcome]:
    """Run Days for several models locally, in order; a failure does not stop the rest.

    Parameters
    ----------
    models : sequence of str
        Models to run (per-model Days run for each; Day 6 runs once).
    days : sequence of int
        Days to run.
    parameters : mapping, optional
        Extra papermill parameters for every run.
    force : bool
        Re-run finished runs.
    log : callable
        Receives one line per finished job.

    Returns
    -------
    list of Outcome
        One per job, in order.
    """
    outcomes = []
    for job in plan(models, days):
        failed_before = any(o.status == "failed" and o.model == job[0] for o in outcomes)
        if failed_before:
            outcome = Outcome(resolve_model(job[0]).name, job[1], "failed", output_notebook(job[0], job[1]),
                              error="skipped: an earlier Day of this model failed")
        else:
            outcome = run_day(job[0], job[1], job_parameters(job, models, parameters), force)
        outcomes.append(outcome)
        log(outcome.line())
    return outcomes


CROSS_MODEL_DAYS = {6}  # Days that read every model's results and run once
CROSS_MODEL_NAME = "all-models"


def plan(models: Sequence[str], days: Sequence[int]) -> list[tuple[str, int]]:
    """Jobs in execution order: per-model Days model by model, then cross-model Days once."""
    jobs = [(m, d) for m in models for d in days if d not in CROSS_MODEL_DAYS]
    jobs += [(CROSS_MODEL_NAME, d) for d in days if d in CROSS_MODEL_DAYS]
    return jobs


def job_parameters(job: tuple[str, int], models: Sequence[str],
                   parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """Papermill parameters for a job (cross-model Days get the model list)."""
    params = dict(parameters or {})
    if job[1] in CROSS_MODEL_DAYS:
        params["models"] = [resolve_model(m).name for m in models]
    return params
