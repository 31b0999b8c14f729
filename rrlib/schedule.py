"""Run planned (model, Day) jobs on local worker processes, as soon as what they read is done.

``rr run --jobs N`` and ``rr experiment run --jobs N`` use this. A job starts
when every job it depends on (:func:`rrlib.runner.dependencies`) has finished;
if one of them failed, the job is reported as skipped and does not run. Among
the jobs that are ready, the one with the longest chain of work still behind
it starts first, so a long chain (the largest model's Day 7 grid) starts early
instead of being left to run alone at the end.

Each job's kernel gets ``cores // N`` threads, or every core when no other job
is running or ready to run beside it, so the cores are shared instead of
oversubscribed.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from rrlib.runner import Job, Outcome, blocked, dependencies, output_notebook, run_day

# Relative cost of each Day, to order ready jobs by the work still behind them (measured on the organism
# family: Day 7's grid costs about four Day 3 runs, Day 6 almost nothing).
DAY_COST = {3: 1.0, 4: 0.5, 5: 1.5, 6: 0.1, 7: 4.0}


def critical_path(planned: Sequence[Job], needs: Sequence[Sequence[int]]) -> list[float]:
    """Cost of each job plus the costliest chain of jobs that wait for it.

    Parameters
    ----------
    planned : sequence of Job
        The plan.
    needs : sequence of sequence of int
        From :func:`rrlib.runner.dependencies`.

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
        path[i] = DAY_COST.get(planned[i].day, 1.0) + max((path[k] for k in waiting[i]), default=0.0)
    return path


def _run_in_worker(run: Callable[..., Outcome], job: Job, force: bool, threads: int) -> Outcome:
    """Worker-process body: one notebook with ``threads`` threads for its kernel."""
    os.environ["OMP_NUM_THREADS"] = str(threads)  # inherited by the papermill kernel
    return run(job.model, job.day, job.params, force)


def run_parallel(planned: Sequence[Job], force: bool, log: Callable[[str], None], workers: int,
                 cores: int | None = None, run: Callable[..., Outcome] = run_day) -> list[Outcome]:
    """Run the plan on ``workers`` worker processes, each job after its dependencies.

    Parameters
    ----------
    planned : sequence of Job
        The plan (:func:`rrlib.runner.plan_jobs`, or an experiment's runs one after another).
    force : bool
        Re-run finished runs.
    log : callable
        Receives one line per finished job.
    workers : int
        Jobs at the same time.
    cores : int, optional
        Cores to share among the running jobs (default: all of this machine's).
    run : callable
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

    cores = cores or os.cpu_count() or 1
    needs = dependencies(planned)
    priority = critical_path(planned, needs)
    outcomes: list[Outcome | None] = [None] * len(planned)
    pending = set(range(len(planned)))
    running: dict[Any, int] = {}

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
                    finish(i, _worker_failure(planned[i], exc))
            if not running:
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                i = running.pop(future)
                try:
                    finish(i, future.result())
                except Exception as exc:  # the worker process died: report it, keep the other jobs going
                    finish(i, _worker_failure(planned[i], exc))
    return [o for o in outcomes if o is not None]


def _skip_blocked(planned: Sequence[Job], needs: Sequence[Sequence[int]], pending: set[int],
                  outcomes: list[Outcome | None], finish: Callable[[int, Outcome], None]) -> None:
    """Report, without running them, the pending jobs whose dependencies failed, down the whole chain."""
    changed = True
    while changed:
        changed = False
        for i in sorted(_ready(pending, needs, outcomes)):
            skipped = blocked(planned[i], [outcomes[j] for j in needs[i]])
            if skipped:
                pending.discard(i)
                finish(i, skipped)
                changed = True


def _worker_failure(job: Job, exc: BaseException) -> Outcome:
    """A failed Outcome for a job whose worker process died or could not be started."""
    return Outcome(job.name, job.day, "failed", output_notebook(job.name, job.day),
                   error=f"{type(exc).__name__}: {' '.join(str(exc).split())}")


def _ready(pending: set[int], needs: Sequence[Sequence[int]], outcomes: Sequence[Outcome | None]) -> list[int]:
    """Pending jobs whose dependencies have all finished (ran, skipped or failed)."""
    return [i for i in pending if all(outcomes[j] is not None for j in needs[i])]
