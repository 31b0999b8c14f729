"""Run (model, Day) jobs as Ray tasks, for sweeps that outgrow one machine.

Each job is one Ray task that executes one notebook with papermill. A task
waits for the jobs it depends on (:func:`rrlib.runner.dependencies`: a model's
Days in order, Day 7 after Day 4, Day 6 after every model's Days 3-5). Other
jobs run at the same time, on as many workers as the cluster has.
``address=None`` starts a local cluster on this machine; ``address="auto"``
joins a running one.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Sequence

from rrlib.errors import ConfigError
from rrlib.runner import Job, Outcome, blocked, dependencies, run_day

FORWARDED_ENV = ("RR_RESULTS_DIR", "RR_CACHE_DIR", "RR_ROOT", "HF_HOME", "HF_HUB_OFFLINE", "HF_TOKEN")


def _job(job: Job, force: bool, *dependency_outcomes: Outcome) -> Outcome:
    """Ray task body: run one (model, Day) unless a job it depends on failed."""
    return blocked(job, dependency_outcomes) or run_day(job.model, job.day, job.params, force)


def run_jobs_ray(planned: Sequence[Job], force: bool, log: Callable[[str], None], address: str | None = None,
                 cpus_per_job: float = 1.0, gpus_per_job: float = 0.0) -> list[Outcome]:
    """Submit every job to Ray with its dependencies and collect the outcomes in plan order.

    Parameters
    ----------
    planned : sequence of Job
        From :func:`rrlib.runner.plan_jobs`.
    force, log
        As in :func:`rrlib.runner.run_many`.
    address : str, optional
        Ray address; ``None`` starts a local cluster.
    cpus_per_job, gpus_per_job : float
        Resources each job reserves.

    Returns
    -------
    list of Outcome
        One per job, in plan order.
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
        task = ray.remote(num_cpus=cpus_per_job, num_gpus=gpus_per_job, max_retries=0)(_job)
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
