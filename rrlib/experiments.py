"""Named experiments: ``experiments/<name>/config.yaml`` runs, checked before anything starts.

A config lists runs (models, Days, extra papermill parameters) and what the
experiment requires (a GPU, the Hugging Face hub). Requirements are checked
first, so an experiment that cannot run here fails in a second with a message
that says what is missing, instead of minutes into a download. The runs are
then planned as one plan (:mod:`rrlib.jobs`) and run by an executor
(:mod:`rrlib.executors`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml

from rrlib import days as rdays
from rrlib.config import from_mapping, resolve_model
from rrlib.errors import ConfigError

if TYPE_CHECKING:
    from rrlib.jobs import Outcome


@dataclass(frozen=True)
class RunSpec:
    """One ``rr run`` inside an experiment."""

    models: tuple[str, ...]
    days: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Requirements:
    """What the machine must offer."""

    gpu: bool = False
    hub: bool = False


@dataclass(frozen=True)
class Experiment:
    """A named experiment: its runs and requirements."""

    name: str
    description: str
    runs: tuple[RunSpec, ...]
    requires: Requirements = Requirements()


def load(path: str | Path) -> Experiment:
    """Read and validate an experiment config.

    Parameters
    ----------
    path : str or Path
        ``experiments/<name>/config.yaml``.

    Returns
    -------
    Experiment
        The parsed experiment.

    Raises
    ------
    ConfigError
        For a missing file, unknown keys or a malformed run.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: experiment config not found; see experiments/*/config.yaml for examples")
    raw = yaml.safe_load(path.read_text()) or {}
    known = {"description", "runs", "requires"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; valid keys are: {', '.join(sorted(known))}")
    runs = []
    for i, run in enumerate(raw.get("runs") or []):
        spec = from_mapping(RunSpec, run, where=f"{path} runs[{i}]")
        models = (spec.models,) if isinstance(spec.models, str) else tuple(spec.models)
        runs.append(RunSpec(models, str(spec.days), dict(spec.params or {})))
        rdays.check_plan_parameters(rdays.parse_days(runs[-1].days), runs[-1].params, f"{path} runs[{i}] params:")
    if not runs:
        raise ConfigError(f"{path}: no runs; add a 'runs:' list with models and days")
    requires = from_mapping(Requirements, raw.get("requires"), where=f"{path} requires")
    return Experiment(path.parent.name, str(raw.get("description", "")), tuple(runs), requires)


def check_requirements(experiment: Experiment, cuda: Callable[[], bool] | None = None,
                       hub: Callable[[], bool] | None = None) -> None:
    """Fail fast, with one line, when the machine lacks what the experiment needs.

    Parameters
    ----------
    experiment : Experiment
        The experiment.
    cuda, hub : callable, optional
        Probes (for tests); default to torch.cuda and a connection to the hub.

    Raises
    ------
    ConfigError
        Naming everything that is missing and what to do.
    """
    from rrlib.models import hub_reachable

    missing = []
    if experiment.requires.gpu:
        if cuda is None:
            import torch

            cuda = torch.cuda.is_available
        if not cuda():
            missing.append("a CUDA GPU (none is visible)")
    if experiment.requires.hub:
        specs = [resolve_model(m) for run in experiment.runs for m in run.models]
        remote = [s.name for s in specs if not s.is_organism and not Path(s.source).is_dir()]
        if remote and not (hub or hub_reachable)():
            missing.append(f"the Hugging Face hub for {', '.join(sorted(set(remote)))} (unreachable)")
    if missing:
        raise ConfigError(f"experiment {experiment.name!r} needs {' and '.join(missing)}; run it on a GPU machine "
                          "with hub access, or download the weights there and pass a local folder as the model")


def run(path: str | Path, force: bool = False, log: Callable[[str], None] = print,
        **executor: Any) -> list[Outcome]:
    """Check requirements, then run the experiment's runs as one plan.

    The runs' jobs are planned in the order the config lists them, and each job
    waits only for the jobs it reads (:func:`rrlib.jobs.dependencies`), so with
    ``jobs=2`` a later run's job can start while an earlier run is still going.

    Parameters
    ----------
    path : str or Path
        ``experiments/<name>/config.yaml``.
    force : bool
        Re-run finished runs.
    log : callable
        Receives one line per finished job.
    **executor
        ``executor``, ``address``, ``cpus_per_job``, ``gpus_per_job``, ``jobs``
        as in :func:`rrlib.executors.run_jobs`.

    Returns
    -------
    list of rrlib.jobs.Outcome
        All outcomes, in plan order.
    """
    from rrlib import executors, jobs
    from rrlib.days import parse_days

    experiment = load(path)
    check_requirements(experiment)
    planned = [job for spec in experiment.runs
               for job in jobs.plan_jobs(spec.models, parse_days(spec.days), spec.params)]
    return executors.run_jobs(planned, force=force, log=log, **executor)
