"""Run (model, Day) jobs as Ray tasks, for sweeps that outgrow one machine.

Each job is one Ray task that executes one notebook with papermill. A model's
Days run in order (each task waits for the previous one); Day 6 waits for
every model. Jobs of different models run at the same time, on as many
workers as the cluster has. ``address=None`` starts a local cluster on this
machine; ``address="auto"`` joins a running one.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Sequence

from rrlib.errors import ConfigError
from rrlib.runner import CROSS_MODEL_DAYS, Outcome, blocking_failure, job_parameters, plan, run_day

FORWARDED_ENV = ("RR_RESULTS_DIR", "RR_CACHE_DIR", "RR_ROOT", "HF_HOME", "HF_HUB_OFFLINE", "HF_TOKEN")


def _job(job: tuple[str, int], params: Mapping[str, Any], force: bool, *dependencies: Outcome) -> Outcome:
    """Ray task body: run one (model, Day) unless a job it depends on failed."""
    blocked = blocking_failure(job, dependencies)
    return blocked or run_day(job[0], job[1], params, force)


def run_many_ray(models: Sequence[str], days: Sequence[int], parameters: Mapping[str, Any] | None, force: bool,
                 log: Callable[[str], None], address: str | None = None, cpus_per_job: float = 1.0,
                 gpus_per_job: float = 0.0) -> list[Outcome]:
    """Submit every job to Ray with its dependencies and collect the outcomes in plan order.

    Parameters
    ----------
    models, days, parameters, force, log
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
        refs: dict[tuple[str, int], Any] = {}
        last_of_model: dict[str, Any] = {}
        jobs = plan(models, days)
        for job in jobs:
            params = job_parameters(job, models, parameters)
            cross = job[1] in CROSS_MODEL_DAYS
            if cross:
                deps = list(last_of_model.values())
            else:
                deps = [last_of_model[job[0]]] if job[0] in last_of_model else []
            refs[job] = task.remote(job, params, force, *deps)
            if not cross:
                last_of_model[job[0]] = refs[job]
        outcomes = []
        for job in jobs:
            outcome = ray.get(refs[job])
            outcomes.append(outcome)
            log(outcome.line())
        return outcomes
    finally:
        if started_here:
            ray.shutdown()
