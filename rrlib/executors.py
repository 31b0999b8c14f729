"""Run a plan of (model, Day) jobs: one at a time, on local worker processes, or as Ray tasks.

Every executor starts a job only when the jobs it depends on
(:func:`rrlib.jobs.dependencies`) have finished; a failure skips only the jobs
that read it, the others go on, and the failures are reported at the end.

- ``executor="local", jobs=1``: the plan in order, in this process.
- ``executor="local", jobs=N``: N worker processes. Among the ready jobs the
  one with the longest chain of work behind it (:func:`rrlib.jobs.critical_path`)
  starts first, so a long chain (the largest model's Day 7 grid) is not left to
  run alone at the end. Each job's kernel gets ``cores // N`` threads, or every
  core when nothing runs or is ready beside it.
- ``executor="ray"``: each job a Ray task, on as many workers as the cluster
  has; ``address=None`` starts a local cluster, ``"auto"`` joins a running one.

Each job runs :func:`rrlib.runner.run_day`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from rrlib import runner
from rrlib.errors import ConfigError
from rrlib.jobs import Job, Outcome, blocked, critical_path, dependencies, failure, plan_jobs

if TYPE_CHECKING:
    from concurrent.futures import Future

FORWARDED_ENV = ("RR_RESULTS_DIR", "RR_CACHE_DIR", "RR_ROOT", "HF_HOME", "HF_HUB_OFFLINE", "HF_TOKEN")


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
    """Run planned jobs, each after the jobs it depends on.

    Parameters
    ----------
    planned : sequence of Job
        From :func:`rrlib.jobs.plan_jobs` (an experiment concatenates the plans of its runs).
    force, log, executor, address, cpus_per_job, gpus_per_job, jobs
        As in :func:`run_many`.

    Returns
    -------
    list of Outcome
        One per job, in plan order.

    Raises
    ------
    ConfigError
        For an unknown executor, or ``ray`` without Ray installed.
    """
    if executor == "ray":
        return run_ray(planned, force, log, address, cpus_per_job, gpus_per_job)
    if executor != "local":
        raise ConfigError(f"unknown executor {executor!r}; use 'local' or 'ray'")
    if jobs > 1:
        return run_parallel(planned, force, log, jobs)
    needs = dependencies(planned)
    outcomes: list[Outcome] = []
    for job, deps in zip(planned, needs):
        outcome = blocked(job, [outcomes[i] for i in deps]) or runner.run_day(job.model, job.day, job.params, force)
        outcomes.append(outcome)
        log(outcome.line())
    return outcomes


# ---------------------------------------------------------------------------
# Local worker processes
# ---------------------------------------------------------------------------


def _run_in_worker(run: Callable[..., Outcome], job: Job, force: bool, threads: int) -> Outcome:
    """Worker-process body: one notebook with ``threads`` threads for its kernel."""
    os.environ["OMP_NUM_THREADS"] = str(threads)  # inherited by the papermill kernel
    return run(job.model, job.day, job.params, force)


def run_parallel(planned: Sequence[Job], force: bool, log: Callable[[str], None], workers: int,
                 cores: int | None = None, run: Callable[..., Outcome] | None = None) -> list[Outcome]:
    """Run the plan on ``workers`` worker processes, each job after its dependencies.

    Parameters
    ----------
    planned : sequence of Job
        The plan (:func:`rrlib.jobs.plan_jobs`, or an experiment's runs one after another).
    force : bool
        Re-run finished runs.
    log : callable
        Receives one line per finished job.
    workers : int
        Jobs at the same time.
    cores : int, optional
        Cores to share among the running jobs (default: all of this machine's).
    run : callable, optional
        Runs one job in a worker: ``run(model, day, params, force) -> Outcome``
        (default :func:`rrlib.runner.run_day`; it must be importable by name).

    Returns
    -------
    list of Outcome
        One per job, in plan order.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    run = run or runner.run_day
    cores = cores or os.cpu_count() or 1
    needs = dependencies(planned)
    priority = critical_path(planned, needs)
    outcomes: list[Outcome | None] = [None] * len(planned)
    pending = set(range(len(planned)))
    running: dict[Future[Outcome], int] = {}

    def finish(i: int, outcome: Outcome) -> None:
        outcomes[i] = outcome
        log(outcome.line())

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        while pending or running:
            _skip_blocked(planned, needs, pending, outcomes, finish)
            ready = sorted(_ready(pending, needs, outcomes), key=lambda i: (-priority[i], i))
            share = min(workers, len(running) + len(ready))  # all cores only for a job with nothing beside it
            for i in ready[:max(0, workers - len(running))]:
                pending.discard(i)
                try:
                    running[pool.submit(_run_in_worker, run, planned[i], force, max(1, cores // share))] = i
                except BrokenProcessPool as exc:  # a worker died earlier: report the job, keep reporting the rest
                    finish(i, failure(planned[i], exc))
            if not running:
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                i = running.pop(future)
                try:
                    finish(i, future.result())
                except Exception as exc:  # the worker process died: report it, keep the other jobs going
                    finish(i, failure(planned[i], exc))
    return [o for o in outcomes if o is not None]


def _skip_blocked(planned: Sequence[Job], needs: Sequence[Sequence[int]], pending: set[int],
                  outcomes: list[Outcome | None], finish: Callable[[int, Outcome], None]) -> None:
    """Report, without running them, the pending jobs whose dependencies failed, down the whole chain."""
    changed = True
    while changed:
        changed = False
        for i in sorted(_ready(pending, needs, outcomes)):
            skipped = blocked(planned[i], [o for o in (outcomes[j] for j in needs[i]) if o is not None])
            if skipped:
                pending.discard(i)
                finish(i, skipped)
                changed = True


def _ready(pending: set[int], needs: Sequence[Sequence[int]], outcomes: Sequence[Outcome | None]) -> list[int]:
    """Pending jobs whose dependencies have all finished (ran, skipped or failed)."""
    return [i for i in pending if all(outcomes[j] is not None for j in needs[i])]


# ---------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------


def _ray_job(job: Job, force: bool, *dependency_outcomes: Outcome) -> Outcome:
    """Ray task body: run one (model, Day) unless a job it depends on failed."""
    return blocked(job, dependency_outcomes) or runner.run_day(job.model, job.day, job.params, force)


def run_ray(planned: Sequence[Job], force: bool, log: Callable[[str], None], address: str | None = None,
            cpus_per_job: float = 1.0, gpus_per_job: float = 0.0) -> list[Outcome]:
    """Submit every job to Ray with its dependencies and collect the outcomes in plan order.

    Parameters
    ----------
    planned : sequence of Job
        From :func:`rrlib.jobs.plan_jobs`.
    force, log
        As in :func:`run_many`.
    address : str, optional
        Ray address; ``None`` starts a local cluster.
    cpus_per_job, gpus_per_job : float
        Resources each job reserves.

    Returns
    -------
    list of Outcome
        One per job, in plan order.

    Raises
    ------
    ConfigError
        When Ray is not installed.
    """
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray executor needs Ray: pip install 'ray==2.60.0' (or rrlib[ray])") from None
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": env})
    try:
        task = ray.remote(num_cpus=cpus_per_job, num_gpus=gpus_per_job, max_retries=0)(_ray_job)
        refs: list[Any] = []
        for job, deps in zip(planned, dependencies(planned)):
            refs.append(task.remote(job, force, *[refs[i] for i in deps]))
        outcomes = []
        for ref in refs:
            outcome = ray.get(ref)
            outcomes.append(outcome)
            log(outcome.line())
        return outcomes
    finally:
        if started_here:
            ray.shutdown()
