"""The ``rr`` command: run the study, build organisms, check data, build the book.

User errors print one line (``rr: error: ...``) and exit with status 2; no
traceback. Run ``rr <command> --help`` for each command's options.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Sequence

from rrlib.errors import RRError

DEFAULT_MODELS = "organism-m"
DEFAULT_DAYS = "3-5"


def _parse_value(text: str) -> Any:
    """Read a ``--param`` value as JSON when possible (numbers, lists, null), else as a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _params(pairs: Sequence[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise RRError(f"--param {pair!r} must look like name=value (e.g. --param limit=20)")
        key, value = pair.split("=", 1)
        out[key.strip()] = _parse_value(value)
    return out


def cmd_run(args: argparse.Namespace) -> int:
    """Run Day notebooks per model with papermill, then regenerate the book's TOC."""
    from rrlib import executors
    from rrlib.config import resolve_model
    from rrlib.days import check_plan_parameters, parse_days

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        raise RRError("--models is empty; name at least one model, e.g. --models organism-m")
    for model in models:
        resolve_model(model)
    days = parse_days(args.days)
    params = _params(args.param)
    check_plan_parameters(days, params)
    started = time.perf_counter()
    outcomes = executors.run_many(models, days, params, force=args.force, **_executor(args))
    return _report(outcomes, started)


def cmd_experiment(args: argparse.Namespace) -> int:
    """Run a named experiment (experiments/<name>/config.yaml), after checking its requirements."""
    from rrlib import experiments

    started = time.perf_counter()
    outcomes = experiments.run(args.config, force=args.force, **_executor(args))
    return _report(outcomes, started)


def _executor(args: argparse.Namespace) -> dict:
    """The executor options shared by ``rr run`` and ``rr experiment run``, plus a printing log."""
    return {"log": lambda line: print(line, flush=True), "executor": args.executor, "address": args.address,
            "cpus_per_job": args.cpus_per_job, "gpus_per_job": args.gpus_per_job, "jobs": args.jobs}


def _report(outcomes: list, started: float) -> int:
    """Regenerate the book's run TOC, print the summary and return the exit status."""
    from rrlib import book
    from rrlib.config import project_root, results_dir

    if results_dir().resolve() == (project_root() / "results").resolve():
        book.write_toc()  # the book only includes runs under the project's own results/
    failed = [o for o in outcomes if o.status == "failed"]
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} runs ok in {time.perf_counter() - started:.1f} s")
    if failed:
        print("failed:", file=sys.stderr)
        for outcome in failed:
            print(f"  {outcome.line()}", file=sys.stderr)
        return 1
    return 0


def cmd_organism(args: argparse.Namespace) -> int:
    """Build (or list) the offline model organisms."""
    from rrlib import organism
    from rrlib.config import ORGANISMS

    names = list(ORGANISMS) if args.all else [args.name]
    if args.action == "list":
        for name in ORGANISMS:
            path = organism.build_dir(name)
            state = "built" if (path / "build.json").exists() else "not built"
            print(f"{name:14s} {state:10s} {path}")
        return 0
    for name in names:
        started = time.perf_counter()
        path = organism.ensure(name, progress=not args.quiet)
        info = organism.build_info(name)
        print(f"{name}: {info['params']:,} parameters, built in {info['seconds']} s "
              f"(this call {time.perf_counter() - started:.1f} s) -> {path}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """Validate a prompt file and print a summary."""
    from rrlib import data

    if args.kind == "attack":
        frame = data.load_attack_set(args.path, args.format)
    else:
        frame = data.load_prompts(args.path, args.format, kind=args.kind)
    print(f"{args.path}: {len(frame)} rows, format {frame.attrs.get('format')}, "
          f"{frame['category'].nunique()} categories")
    for note in frame.attrs.get("notes", []):
        print(f"  note: {note}")
    return 0


def cmd_book(args: argparse.Namespace) -> int:
    """Generate the results pages and build the HTML book."""
    from rrlib import book

    if args.pages_only:
        book.generate_pages()
        print("pages and _toc.yml regenerated")
        return 0
    index = book.build(strict=not args.no_strict, log=print)
    print(f"book built: {index}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """List the model registry."""
    from rrlib.config import REGISTRY

    for spec in REGISTRY.values():
        params = f"{spec.params:,}" if spec.params else "built offline"
        print(f"{spec.name:26s} {spec.family:9s} {spec.dtype:9s} {params:>16s}  {spec.source}")
    return 0


def _executor_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--executor", choices=["local", "ray"], default="local",
                        help="local: on this machine, --jobs at a time; ray: each (model, Day) as a Ray task "
                             "(default local)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster address ('auto' joins a running cluster; omitted: start a local one)")
    parser.add_argument("--cpus-per-job", type=float, default=1.0, help="Ray CPUs reserved per job (default 1)")
    parser.add_argument("--gpus-per-job", type=float, default=0.0, help="Ray GPUs reserved per job (default 0)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="local executor: jobs at the same time; each waits only for the Days it reads (default 1)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``rr``."""
    parser = argparse.ArgumentParser(prog="rr", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute Day notebooks per model with papermill",
                         description="Execute notebooks/DayN_*.ipynb per model into results/runs/<model>/DayN.ipynb. "
                                     "Finished runs with the same parameters are skipped; a failing model does not "
                                     "stop the others and the command exits 1 at the end.")
    run.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated models (default {DEFAULT_MODELS})")
    run.add_argument("--days", default=DEFAULT_DAYS, help=f"days to run, e.g. 3-5 or 3,5 (default {DEFAULT_DAYS})")
    run.add_argument("--force", action="store_true", help="re-run finished runs")
    run.add_argument("--param", action="append", metavar="NAME=VALUE",
                     help="extra papermill parameter for every run (repeatable), e.g. --param limit=20")
    _executor_options(run)
    run.set_defaults(func=cmd_run)

    exp = sub.add_parser("experiment", help="run a named experiment (experiments/<name>/config.yaml)",
                         description="Check the experiment's requirements (GPU, hub), then run all its runs as one "
                                     "plan; each job waits only for the Days it reads.")
    exp.add_argument("action", choices=["run"])
    exp.add_argument("config", help="path to experiments/<name>/config.yaml")
    exp.add_argument("--force", action="store_true", help="re-run finished runs")
    _executor_options(exp)
    exp.set_defaults(func=cmd_experiment)

    org = sub.add_parser("organism", help="build or list the offline model organisms",
                         description="Build (and cache) the model organisms under .rr_cache/organisms.")
    org.add_argument("action", choices=["build", "list"])
    org.add_argument("--name", default="organism-m", help="organism to build (default organism-m)")
    org.add_argument("--all", action="store_true", help="build every organism")
    org.add_argument("--quiet", action="store_true", help="no progress bar")
    org.set_defaults(func=cmd_organism)

    dat = sub.add_parser("data", help="validate a prompt file",
                         description="Load a prompt file in any known format and report problems in one line.")
    dat.add_argument("action", choices=["check"])
    dat.add_argument("path")
    dat.add_argument("--format", default=None, help="format name (detected from the columns when omitted)")
    dat.add_argument("--kind", default="harmful", choices=["harmful", "benign", "attack"])
    dat.set_defaults(func=cmd_data)

    bk = sub.add_parser("book", help="generate results pages and build the HTML book",
                        description="Regenerate _toc.yml, Results and Reproducibility, then build book/_build/html.")
    bk.add_argument("--pages-only", action="store_true", help="only regenerate pages and _toc.yml")
    bk.add_argument("--no-strict", action="store_true", help="do not turn warnings into errors")
    bk.set_defaults(func=cmd_book)

    mod = sub.add_parser("models", help="list the model registry", description="List the named models.")
    mod.set_defaults(func=cmd_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rr``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RRError as exc:
        print(f"rr: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rr: interrupted; finished work is saved and a rerun resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
