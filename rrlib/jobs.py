"""The job plan: which (model, Day) jobs to run, in what order, and what each waits for.

A :class:`Job` is one Day notebook for one model (or, for a cross-model Day,
once for every model). :func:`plan_jobs` lists them; :func:`dependencies` says,
from the Day records in :mod:`rrlib.days` (what each Day ``reads``, whether it
is ``cross_model``), which earlier jobs each one must wait for;
:func:`critical_path` ranks ready jobs by the work still behind them (each
Day's ``cost``); :func:`blocked` reports a job whose dependency failed. Every
job is filed under :func:`rrlib.results.run_name`, so a run on other inputs
than its notebook's defaults gets its own name and never overwrites the study.

This module only plans: running one Day is :mod:`rrlib.runner`, running a plan
is :mod:`rrlib.executors`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from rrlib import days as rdays
from rrlib import results
from rrlib.config import resolve_model


@dataclass
class Outcome:
    """What happened to one job.

    Parameters
    ----------
    model : str
        The name the run is filed under (:attr:`Job.name`).
    day : int
        The Day.
    status : str
        ``ran``, ``skipped`` or ``failed``.
    path : Path
        The executed notebook (or the kept ``DayN.failed.ipynb``).
    seconds : float
        Wall time of the notebook, for runs that ran.
    error : str
        The one-line error of a failed job.
    started : float
        Wall-clock start (epoch seconds), to show which jobs overlapped.
    worker : str
        Host and process id that ran the job.
    """

    model: str
    day: int
    status: str
    path: Path
    seconds: float = 0.0
    error: str = ""
    started: float = 0.0
    worker: str = ""

    def line(self) -> str:
        """One line for the terminal (``ran  organism-m Day3 (12.3 s)``)."""
        detail = f" ({self.seconds:.1f} s)" if self.status == "ran" else ""
        error = f": {self.error}" if self.error else ""
        return f"{self.status:>7}  {self.model} Day{self.day}{detail}{error}"


@dataclass(frozen=True)
class Job:
    """One (model, Day) to execute, with its papermill parameters.

    ``model`` is kept as the user gave it (registry name, hub id or local
    path), and reaches the notebook unchanged; :attr:`name` is where its
    results are filed.
    """

    model: str
    day: int
    params: Mapping[str, Any]

    @property
    def name(self) -> str:
        """The name the job's results are filed under (:func:`rrlib.results.run_name`)."""
        return results.run_name(self.model, self.day, self.params)


def plan_jobs(models: Sequence[str], days: Sequence[int], parameters: Mapping[str, Any] | None = None) -> list[Job]:
    """Jobs in plan order: per-model Days model by model, then cross-model Days once.

    With one job at a time they run in this order; with more, each starts as
    soon as the jobs it depends on (:func:`dependencies`) are done.

    Parameters
    ----------
    models : sequence of str
        Models as the user named them.
    days : sequence of int
        Days to run (see :func:`rrlib.days.parse_days`).
    parameters : mapping, optional
        Papermill parameters for every job; cross-model Days also get ``models``.

    Returns
    -------
    list of Job
        The plan.
    """
    cross = [d for d in days if rdays.get(d).cross_model]
    pairs = [(m, d) for m in models for d in days if d not in cross]
    pairs += [(rdays.CROSS_MODEL_NAME, d) for d in cross]
    return [Job(m, d, job_parameters(d, models, parameters)) for m, d in pairs]


def job_parameters(day: int, models: Sequence[str], parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """Papermill parameters for a job of Day ``day``: those it declares (cross-model Days get the model list).

    Parameters
    ----------
    day : int
        The job's Day.
    models : sequence of str
        Every model of the plan.
    parameters : mapping, optional
        The parameters given for every job.

    Returns
    -------
    dict
        The job's parameters.
    """
    params = rdays.declared_parameters(day, dict(parameters or {}))
    if rdays.get(day).cross_model:
        params["models"] = [resolve_model(m).name for m in models]
    return params


def _reads(job: Job, name: str) -> set[tuple[str, int]]:
    """The (run name, Day) results a job reads.

    A per-model Day reads its own run's Days listed in its record's ``reads``;
    a run on other inputs (``<model>@<hash>``) may fall back to the study's
    runs of its model as well. A cross-model Day reads those Days of every
    model it covers.
    """
    record = rdays.get(job.day)
    if record.cross_model:
        return {(str(m), d) for m in job.params.get("models", []) for d in record.reads}
    return {(run, d) for run in {name, results.model_base(name)} for d in record.reads}


def dependencies(planned: Sequence[Job]) -> list[list[int]]:
    """For each job, the indices of the earlier jobs it must wait for.

    A job writes its own notebook and results, ``(name, Day)``, and reads
    those of the Days its record lists in ``reads`` (:data:`rrlib.days.DAYS`):
    of its model, or of every model it covers for a cross-model Day (a run on
    other inputs may also read the study's runs of its model). A job waits for
    an earlier job that writes what it reads, reads what it writes, or writes
    the same thing.

    Parameters
    ----------
    planned : sequence of Job
        The plan.

    Returns
    -------
    list of list of int
        Dependencies per job, as indices into ``planned``.
    """
    names = [job.name for job in planned]
    writes = [(name, job.day) for name, job in zip(names, planned)]
    reads = [_reads(job, name) for job, name in zip(planned, names)]
    return [[j for j in range(i) if writes[j] == writes[i] or writes[j] in reads[i] or writes[i] in reads[j]]
            for i in range(len(planned))]


def critical_path(planned: Sequence[Job], needs: Sequence[Sequence[int]]) -> list[float]:
    """Cost of each job plus the costliest chain of jobs that wait for it.

    Each Day's cost is its record's ``cost`` (:data:`rrlib.days.DAYS`).

    Parameters
    ----------
    planned : sequence of Job
        The plan.
    needs : sequence of sequence of int
        From :func:`dependencies`.

    Returns
    -------
    list of float
        One priority per job; larger starts first.
    """
    waiting: list[list[int]] = [[] for _ in planned]
    for i, deps in enumerate(needs):
        for j in deps:
            waiting[j].append(i)
    path = [0.0] * len(planned)
    for i in reversed(range(len(planned))):  # dependencies always point backwards in the plan
        path[i] = rdays.get(planned[i].day).cost + max((path[k] for k in waiting[i]), default=0.0)
    return path


def blocked(job: Job, dependency_outcomes: Sequence[Outcome]) -> Outcome | None:
    """A failed Outcome for ``job`` if a job it depends on failed, else ``None``.

    Parameters
    ----------
    job : Job
        The job about to run.
    dependency_outcomes : sequence of Outcome
        Outcomes of the jobs it depends on.

    Returns
    -------
    Outcome or None
        ``failed`` with ``skipped: <model> DayN failed first``, or ``None`` when it may run.
    """
    failed = [o for o in dependency_outcomes if o.status == "failed"]
    if not failed:
        return None
    return Outcome(job.name, job.day, "failed", results.run_file(job.name, job.day),
                   error=f"skipped: {failed[0].model} Day{failed[0].day} failed first")


def failure(job: Job, exc: BaseException) -> Outcome:
    """A failed Outcome for a job whose process died or could not be started (one-line error)."""
    return Outcome(job.name, job.day, "failed", results.run_file(job.name, job.day),
                   error=f"{type(exc).__name__}: {' '.join(str(exc).split())}")
