"""Execute the Day notebooks per model with papermill.

Each (model, Day) runs ``notebooks/DayN_*.ipynb`` into
``results/runs/<model>/DayN.ipynb``. A finished run with the same parameters
and the same source notebook is skipped unless forced. Jobs run after the
jobs whose results they read (:func:`dependencies`); a failure skips only those
that read it, the others go on, and the failures are reported at the end. The executed
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
from rrlib.envvars import temporary_env
from rrlib.errors import ConfigError
from rrlib.store import write_json

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
    started: float = 0.0  # wall-clock start (epoch seconds), to show which jobs overlapped
    worker: str = ""

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


def done_marker(output: Path) -> Path:
    """The local (git-ignored) record that ``output`` was executed on this machine."""
    return output.parent / ".state" / f"{output.stem}.done.json"


def is_done(output: Path, parameters: Mapping[str, Any], source: Path) -> bool:
    """Whether ``output`` is a finished run, on this machine, of ``source`` with these parameters.

    A committed golden notebook alone does not count: a fresh clone has no
    local marker, so ``make all`` really executes the study there.
    """
    import json

    marker = done_marker(output)
    if not output.exists() or not marker.exists():
        return False
    try:
        record = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return record.get("source_sha") == _sha(source) and record.get("parameters") == dict(parameters)


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

    cross = day in CROSS_MODEL_DAYS
    name = Job(model, day, {}).name
    params = dict(parameters or {}) if cross else {"model": model, **dict(parameters or {})}
    source = source_notebook(day)
    output = output_notebook(name, day, root)
    if not force and is_done(output, params, source):
        return Outcome(name, day, "skipped", output)
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
        failed = output.with_name(f"Day{day}.failed.ipynb")
        if exc.ename in _user_error_names():  # the one-line message says it all: write nothing
            tmp.unlink(missing_ok=True)
            failed = output
        elif tmp.exists():  # a bug: keep the executed notebook and its traceback for diagnosis
            tmp.replace(failed)
        return Outcome(name, day, "failed", failed, time.perf_counter() - started,
                       f"{exc.ename}: {' '.join(str(exc.evalue).split())}", wall, _worker())
    except Exception as exc:  # the kernel died or never started: report it, keep the other jobs going
        tmp.unlink(missing_ok=True)
        return Outcome(name, day, "failed", output, time.perf_counter() - started,
                       f"{type(exc).__name__}: {' '.join(str(exc).split())}", wall, _worker())
    seconds = time.perf_counter() - started
    nb = nbformat.read(tmp, as_version=4)
    _finish_metadata(nb, name, day, params, source, seconds)
    nbformat.write(nb, str(tmp))
    os.replace(tmp, output)
    write_json(done_marker(output), {"source_sha": _sha(source), "parameters": dict(params)})
    output.with_name(f"Day{day}.failed.ipynb").unlink(missing_ok=True)
    return Outcome(name, day, "ran", output, seconds, "", wall, _worker())


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
             force: bool = False, log: Callable[[str], None] = print, executor: str = "local",
             address: str | None = None, cpus_per_job: float = 1.0, gpus_per_job: float = 0.0,
             jobs: int = 1) -> list[Outcome]:
    """Run Days for several models; a failing model does not stop the others.

    Parameters
    ----------
    models : sequence of str
        Models to run (per-model Days run for each; Day 6 runs once, after their Days 3-5).
    days : sequence of int
        Days to run.
    parameters : mapping, optional
        Extra papermill parameters for every run.
    force : bool
        Re-run finished runs.
    log : callable
        Receives one line per finished job.
    executor : str
        ``local`` (this machine) or ``ray`` (each job a Ray task).
    address : str, optional
        Ray cluster address (``auto`` for a running cluster; a local one is started when omitted).
    cpus_per_job, gpus_per_job : float
        Ray resources reserved per job.
    jobs : int
        Local executor only: how many jobs run at the same time (each waits for the Days it reads).

    Returns
    -------
    list of Outcome
        One per job, in plan order.
    """
    return run_jobs(plan_jobs(models, days, parameters), force, log, executor, address, cpus_per_job, gpus_per_job,
                    jobs)


def run_jobs(planned: Sequence[Job], force: bool = False, log: Callable[[str], None] = print,
             executor: str = "local", address: str | None = None, cpus_per_job: float = 1.0,
             gpus_per_job: float = 0.0, jobs: int = 1) -> list[Outcome]:
    """Run planned jobs, each after the jobs it depends on (see :func:`dependencies`).

    Parameters
    ----------
    planned : sequence of Job
        From :func:`plan_jobs` (an experiment concatenates the plans of its runs).
    force, log, executor, address, cpus_per_job, gpus_per_job, jobs
        As in :func:`run_many`.

    Returns
    -------
    list of Outcome
        One per job, in plan order.
    """
    if executor == "ray":
        from rrlib.distributed import run_jobs_ray

        return run_jobs_ray(planned, force, log, address, cpus_per_job, gpus_per_job)
    if executor != "local":
        raise ConfigError(f"unknown executor {executor!r}; use 'local' or 'ray'")
    if jobs > 1:
        from rrlib.schedule import run_parallel

        return run_parallel(planned, force, log, jobs)
    needs = dependencies(planned)
    outcomes: list[Outcome] = []
    for job, deps in zip(planned, needs):
        outcome = blocked(job, [outcomes[i] for i in deps]) or run_day(job.model, job.day, job.params, force)
        outcomes.append(outcome)
        log(outcome.line())
    return outcomes


@dataclass(frozen=True)
class Job:
    """One (model, Day) to execute, with its papermill parameters.

    ``model`` is kept as the user gave it (registry name, hub id or local
    path); :func:`run_day` resolves it to the name its results are filed under.
    """

    model: str
    day: int
    params: Mapping[str, Any]

    @property
    def name(self) -> str:
        """The name the job's results are filed under (``scaling`` for cross-model Days)."""
        return CROSS_MODEL_NAME if self.day in CROSS_MODEL_DAYS else resolve_model(self.model).name


CROSS_MODEL_DAYS = {6}  # Days that read every model's results and run once
CROSS_MODEL_NAME = "scaling"  # results/runs/scaling/Day6.ipynb
# The earlier Days of its model that a Day reads; a Day not listed waits for all of its model's earlier Days.
# Day 7 needs only the model (Day 3 builds an organism) and Day 4's attack, so it can run beside Day 5.
DAY_READS = {7: {3, 4}}


def plan_jobs(models: Sequence[str], days: Sequence[int], parameters: Mapping[str, Any] | None = None) -> list[Job]:
    """Jobs in plan order: per-model Days model by model, then cross-model Days once.

    With one job at a time they run in this order; with more, each starts as
    soon as the jobs it depends on (:func:`dependencies`) are done.

    Parameters
    ----------
    models : sequence of str
        Models as the user named them.
    days : sequence of int
        Days to run.
    parameters : mapping, optional
        Papermill parameters for every job; cross-model Days also get ``models``.

    Returns
    -------
    list of Job
        The plan.
    """
    pairs = [(m, d) for m in models for d in days if d not in CROSS_MODEL_DAYS]
    pairs += [(CROSS_MODEL_NAME, d) for d in days if d in CROSS_MODEL_DAYS]
    return [Job(m, d, job_parameters((m, d), models, parameters)) for m, d in pairs]


def dependencies(planned: Sequence[Job]) -> list[list[int]]:
    """For each job, the indices of the earlier jobs it must wait for.

    A job writes its own notebook and results, ``(name, Day)``, and reads those
    of the Days it needs: a per-model Day reads its model's earlier Days (only
    Days 3 and 4 for Day 7, see :data:`DAY_READS`); a cross-model Day reads every
    earlier Day of the models it covers. A job waits for an earlier job that
    writes what it reads, reads what it writes, or writes the same thing.

    Parameters
    ----------
    planned : sequence of Job
        The plan.

    Returns
    -------
    list of list of int
        Dependencies per job, as indices into ``planned``.
    """
    writes = [{(job.name, job.day)} for job in planned]
    reads = [_reads(job) for job in planned]
    return [[j for j in range(i) if writes[j] & (reads[i] | writes[i]) or writes[i] & reads[j]]
            for i in range(len(planned))]


def _reads(job: Job) -> set[tuple[str, int]]:
    """The (name, Day) results a job reads."""
    if job.day in CROSS_MODEL_DAYS:
        return {(name, day) for name in job.params.get("models", []) for day in DAY_NOTEBOOKS if day < job.day}
    return {(job.name, day) for day in DAY_READS.get(job.day, set(range(job.day))) if day in DAY_NOTEBOOKS}


def blocked(job: Job, dependency_outcomes: Sequence[Outcome]) -> Outcome | None:
    """A failed Outcome for ``job`` if a job it depends on failed, else ``None``."""
    failed = [o for o in dependency_outcomes if o.status == "failed"]
    if not failed:
        return None
    return Outcome(job.name, job.day, "failed", output_notebook(job.name, job.day),
                   error=f"skipped: {failed[0].model} Day{failed[0].day} failed first")


def job_parameters(job: tuple[str, int], models: Sequence[str],
                   parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """Papermill parameters for a job (cross-model Days get the model list)."""
    params = dict(parameters or {})
    if job[1] in CROSS_MODEL_DAYS:
        params["models"] = [resolve_model(m).name for m in models]
    return params
