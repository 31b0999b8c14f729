"""The results store: every results table declared once, where a run's files go, and :class:`Run`.

Only this module builds paths under ``results/runs`` and ``results/metrics``;
every other module asks it (:func:`run_folder`, :func:`run_file`,
:func:`table_path`). A run owns a *scope* in each table it writes (declared in
:data:`TABLES` and, for metrics, by its Day record): its first write there
drops what an earlier run of the same scope left, so no stale rows sit beside
new ones. Tables are written in key order, so a rerun is byte-identical.

A run whose *inputs* differ from its notebook's defaults (another prompt file,
a ``limit``, another judge or decoding) is filed under its own name,
``<model>@<hash>``, with its own tables in ``results/runs/<model>@<hash>/metrics``:
your own data never overwrites the study.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import pandas as pd

from rrlib import days as rdays
from rrlib.config import RunInfo, family_members, project_root, resolve_model, results_dir, slug, stable_hash
from rrlib.errors import DataError
from rrlib.metrics import Estimate
from rrlib.store import read_json, upsert_table, write_csv, write_json

if TYPE_CHECKING:
    from rrlib.attack import AttackResult
    from rrlib.evaluation import AttackEvaluation
    from rrlib.representations import DriftResult

# ---------------------------------------------------------------------------
# The tables
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """One results table: its file, columns, key and the scope a run owns in it.

    Parameters
    ----------
    name : str
        Short name (``metrics``, ``compute`` ...).
    file : str
        File name; under ``results/metrics/`` unless ``per_run``.
    columns, key : tuple of str
        Column order and the columns that identify a row.
    scope : tuple of str
        Columns whose values (this run's) identify what a run owns in the table.
    per_run : bool
        The table lives in the run's folder (``results/runs/<model>/``), one per model.
    """

    name: str
    file: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    scope: tuple[str, ...]
    per_run: bool = False


TABLES: dict[str, Table] = {t.name: t for t in (
    Table("metrics", "metrics.csv",
          ("model", "day", "step", "metric", "value", "ci_low", "ci_high", "n", "judge", "run_id", "recipe", "seed",
           "reason"),
          key=("model", "day", "step", "metric", "judge", "recipe", "seed"), scope=("model", "day", "recipe")),
    Table("compute", "compute.csv",
          ("model", "recipe", "rank", "seed", "step", "examples", "tokens", "flops", "trainable_params",
           "model_params", "final_loss"),
          key=("model", "recipe", "step"), scope=("model", "recipe")),
    Table("representations", "representations.csv",
          ("model", "recipe", "step", "layer", "cosine", "probe_accuracy", "harmful_projection"),
          key=("model", "recipe", "step", "layer"), scope=("model", "recipe")),
    Table("grid", "grid.csv",
          ("model", "rank", "step", "metric", "value", "ci_low", "ci_high", "n", "seeds", "loss", "judge"),
          key=("model", "rank", "step", "metric", "judge"), scope=("model",)),
    Table("verdicts", "Day5.verdicts.csv", ("id", "step", "refused", "parsed", "verdict", "judge", "recipe"),
          key=("id", "step", "judge", "recipe"), scope=("recipe",), per_run=True),
    Table("scaling", "scaling.csv",
          ("level", "model", "size", "build_seed", "recipe", "params", "non_embedding_params", "gate", "gate_reason",
           "baseline_rrr", "baseline_rrr_ci_low", "baseline_rrr_ci_high", "over_refusal", "over_refusal_ci_high",
           "degenerate", "quantity", "value", "ci_low", "ci_high", "extrapolated", "measured", "covered", "seeds",
           "n_prompts", "judge", "reason", "attack", "defense"),
          key=("judge", "attack", "defense", "level", "model", "quantity"), scope=("judge",)),
)}
METRIC_COLUMNS = list(TABLES["metrics"].columns)

# ---------------------------------------------------------------------------
# Where files go
# ---------------------------------------------------------------------------


def _folder_name(name: str) -> str:
    """Folder-safe run name; the ``@<hash>`` of a run on other inputs is kept."""
    return "@".join(slug(part) for part in str(name).split("@", 1))


def run_folder(name: str, root: Path | None = None) -> Path:
    """``results/runs/<name>``: the one place a run's folder is built.

    Parameters
    ----------
    name : str
        A run name (:func:`run_name`), a model name or ``scaling``.
    root : Path, optional
        Results root (default :func:`rrlib.config.results_dir`).
    """
    return (root or results_dir()) / "runs" / _folder_name(name)


def run_file(name: str, day: int, suffix: str = ".ipynb", root: Path | None = None) -> Path:
    """``results/runs/<name>/Day<day><suffix>`` (``.ipynb``, ``.config.json``, ``.results.json`` ...)."""
    return run_folder(name, root) / f"Day{int(day)}{suffix}"


def state_file(name: str, day: int, suffix: str, root: Path | None = None) -> Path:
    """A git-ignored local file of a run, ``results/runs/<name>/.state/Day<day><suffix>``."""
    return run_folder(name, root) / ".state" / f"Day{int(day)}{suffix}"


def provenance_path(name: str, day: int, root: Path | None = None) -> Path:
    """Where a run's volatile provenance (timings, git commit, versions) is kept, outside git."""
    return state_file(name, day, ".provenance.json", root)


def read_provenance(name: str, day: int, root: Path | None = None) -> dict[str, Any]:
    """A run's provenance record, or ``{}`` when this machine has not executed it."""
    path = provenance_path(name, day, root)
    return read_json(path) if path.exists() else {}


def update_provenance(name: str, day: int, fields: Mapping[str, Any], root: Path | None = None) -> None:
    """Merge fields into a run's provenance record (the kernel adds its environment, the runner its timings)."""
    write_json(provenance_path(name, day, root), {**read_provenance(name, day, root), **fields})


def judge_tables_folder(root: Path | None = None) -> Path:
    """``results/metrics/judges``: the judges' held-out validation tables the book writes."""
    return (root or results_dir()) / "metrics" / "judges"


def executed_runs(root: Path | None = None) -> dict[str, list[int]]:
    """Run folders with executed notebooks and their Days, from ``results/runs/<name>/DayN.ipynb``."""
    runs_dir = (root or results_dir()) / "runs"
    found: dict[str, list[int]] = {}
    for path in sorted(runs_dir.glob("*/Day*.ipynb")):
        number = path.stem[3:]
        if number.isdigit() and int(number) in rdays.DAYS:
            found.setdefault(path.parent.name, []).append(int(number))
    return {name: sorted(found_days) for name, found_days in found.items()}


def table_path(table: str, run: str | None = None, root: Path | None = None, tagged: bool = False) -> Path:
    """Path of a results table.

    Parameters
    ----------
    table : str
        A name in :data:`TABLES`.
    run : str, optional
        The run name; needed for per-run tables and for runs on other inputs.
    root : Path, optional
        Results root.
    tagged : bool
        The run is on other inputs than its notebook's defaults: its tables live in its own folder.
    """
    spec = TABLES[table]
    if spec.per_run:
        if run is None:
            raise ValueError(f"table {table!r} is per run; name the run")
        return run_folder(run, root) / spec.file
    if tagged and run is not None:
        return run_folder(run, root) / "metrics" / spec.file
    return (root or results_dir()) / "metrics" / spec.file


def metrics_path(root: Path | None = None) -> Path:
    """``results/metrics/metrics.csv``, the study's long metrics table."""
    return table_path("metrics", root=root)


def read_table(table: str, run: str | None = None, root: Path | None = None,
               path: str | Path | None = None) -> pd.DataFrame:
    """Read a results table, or an empty one with its columns.

    Parameters
    ----------
    table : str
        A name in :data:`TABLES`.
    run : str, optional
        For per-run tables.
    root : Path, optional
        Results root.
    path : str or Path, optional
        Read this file instead (a copy of the table).
    """
    spec = TABLES[table]
    path = Path(path) if path else table_path(table, run, root)
    if not path.exists():
        return pd.DataFrame(columns=list(spec.columns))
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    for column in spec.columns:
        if column not in frame.columns:
            frame[column] = None
    return frame[list(spec.columns)]


def read_metrics(path: str | Path | None = None) -> pd.DataFrame:
    """Read ``metrics.csv`` (or the given copy of it); empty with the standard columns when absent."""
    return read_table("metrics", path=path)


def read_runs_table(table: str, names: Sequence[str], root: Path | None = None) -> pd.DataFrame:
    """The rows of several runs in one table, each read from where that run wrote it.

    A run on other inputs (``<model>@<hash>``) keeps its tables in its own
    folder; when it has no compute rows of its own (its Day 5 evaluated the
    study's Day 4 attack), the study's compute rows of its model stand in,
    as :meth:`Run.day4_attack_dir` falls back to the study's attack.

    Parameters
    ----------
    table : str
        A name in :data:`TABLES` (not a per-run table).
    names : sequence of str
        Run names.
    root : Path, optional
        Results root.
    """
    frames = []
    for name in dict.fromkeys(names):
        frame = read_table(table, path=table_path(table, name, root, tagged="@" in name))
        rows = frame[frame["model"] == name]
        if rows.empty and table == "compute" and "@" in name:
            study = read_table(table, root=root)
            rows = study[study["model"] == model_base(name)].assign(model=name)
        frames.append(rows)
    columns = list(TABLES[table].columns)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def read_verdicts(model: str, root: Path | None = None) -> pd.DataFrame:
    """A model's per-prompt Day 5 verdicts at every step.

    Raises
    ------
    DataError
        If the model has no Day 5 run.
    """
    path = table_path("verdicts", model, root)
    if not path.exists():
        raise DataError(f"{path}: no per-prompt verdicts for {model!r}; run Day 5 first "
                        f"(rr run --models {model} --days 3-5)")
    frame = read_table("verdicts", model, root)
    frame["parsed"] = frame["parsed"].fillna(True).astype(bool)  # files from before LLM judges: every verdict parsed
    return frame


def model_params(model: str, root: Path | None = None) -> int:
    """The parameter count recorded by a model's Day 3 run.

    Raises
    ------
    DataError
        If the model has no Day 3 run.
    """
    return int(model_card(model, root)["params"])


def non_embedding_params(model: str, root: Path | None = None) -> int:
    """The non-embedding parameter count recorded by a model's Day 3 run (the size scaling fits use).

    Raises
    ------
    DataError
        If the model has no Day 3 run, or one from before the count was recorded.
    """
    card = model_card(model, root)
    if "non_embedding_params" not in card:
        raise DataError(f"{run_file(model, 3, '.config.json', root)}: no non-embedding parameter count; "
                        f"rerun Day 3 (rr run --models {model} --days 3 --force)")
    return int(card["non_embedding_params"])


def model_card(model: str, root: Path | None = None) -> dict[str, Any]:
    """The model card a model's Day 3 run recorded.

    Raises
    ------
    DataError
        If the model has no Day 3 run.
    """
    path = run_file(model, 3, ".config.json", root)
    if not path.exists():
        raise DataError(f"{path}: no Day 3 run for {model!r}; run Day 3 first (rr run --models {model} --days 3)")
    return dict(read_json(path)["model_card"])


# ---------------------------------------------------------------------------
# Which inputs a run used, and the name it is filed under
# ---------------------------------------------------------------------------

# Parameters that identify a run's inputs: a run that changes one of them is filed under its own name.
INPUT_PARAMETERS = ("eval_path", "eval_format", "benign_path", "benign_format", "attack_path", "attack_format",
                    "limit", "judge", "max_new_tokens", "dtype", "device", "backend", "models", "recipe", "attack",
                    "benign_train_path", "attacks", "defenses")
_PATH_PARAMETERS = {"eval_path", "benign_path", "attack_path"}


def file_identity(path: str | None) -> str | None:
    """A prompt file's identity: its name and the hash of its content (``None`` for no file)."""
    if path is None:
        return None
    from rrlib.data import resolve

    resolved = resolve(path)
    if not resolved.exists():
        return str(path)
    return f"{resolved.name}#{hashlib.sha256(resolved.read_bytes()).hexdigest()[:16]}"


def input_changes(day: int, params: Mapping[str, Any]) -> dict[str, Any]:
    """The input parameters whose values differ from the notebook's defaults (files compared by content).

    Parameters
    ----------
    day : int
        The Day.
    params : mapping
        The run's parameters.

    Returns
    -------
    dict
        Parameter to its identity (a file's name and content hash); empty for the study's own inputs.
    """
    schema = rdays.parameters(day)
    changed = {}
    for name in INPUT_PARAMETERS:
        if name not in schema or name not in params:
            continue
        value, default = params[name], schema[name].default
        if name == "models":  # None stands for the organism family, so naming the family is no change
            value, default = (family_members() if v is None else v for v in (value, default))
        if name in _PATH_PARAMETERS:
            value, default = file_identity(value), file_identity(default)
        elif isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
            value, default = list(value), list(default)
        if value != default:
            changed[name] = value
    return changed


def run_name(model: str, day: int, params: Mapping[str, Any] | None = None) -> str:
    """The name a run is filed under: the model's (or ``scaling``), plus ``@<hash>`` on other inputs.

    A run that changes only the attack is filed as ``<model>@<attack>`` (``organism-m@full``).

    Parameters
    ----------
    model : str
        Registry name, hub id or path (ignored for cross-model Days).
    day : int
        The Day.
    params : mapping, optional
        The run's parameters.
    """
    base = rdays.CROSS_MODEL_NAME if rdays.get(day).cross_model else resolve_model(model_base(model)).name
    changed = input_changes(day, params or {})
    if set(changed) == {"attack"}:  # another attack on the study's inputs reads as such: organism-m@full
        return f"{base}@{slug(str(changed['attack']))}"
    return f"{base}@{stable_hash(changed, 8)}" if changed else base


def model_base(name: str) -> str:
    """The model part of a run name (``organism-m@1a2b3c4d`` gives ``organism-m``)."""
    return str(name).split("@", 1)[0]


def relative_to_project(value: Any) -> Any:
    """Paths inside the project as relative paths (recursively in lists and dicts); others unchanged."""
    if isinstance(value, dict):
        return {k: relative_to_project(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [relative_to_project(v) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        try:
            return str(Path(value).resolve().relative_to(project_root()))
        except ValueError:
            return value
    return value


# ---------------------------------------------------------------------------
# A run
# ---------------------------------------------------------------------------


@dataclass
class Run:
    """One executed (model, Day): its name, parameters and where it writes.

    Parameters
    ----------
    model : str
        Model name, hub id or path; ``scaling`` for cross-model Days.
    day : int
        The Day notebook (3-7).
    params : mapping
        The notebook's parameters (recorded with the run).
    """

    model: str
    day: int
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.name = run_name(self.model, self.day, self.params)
        self.tagged = "@" in self.name
        self.info = RunInfo(self.name if self.tagged else model_base(self.name), self.day, dict(self.params))
        self._claimed: set[tuple[str, tuple[tuple[str, str], ...]]] = set()  # (table, scope) written so far

    @classmethod
    def from_notebook(cls, day: int, namespace: Mapping[str, Any]) -> "Run":
        """Check a Day notebook's parameters (types and judge) and open its run.

        Parameters
        ----------
        day : int
            The Day.
        namespace : mapping
            The notebook's ``globals()`` after the parameters cell.

        Raises
        ------
        rrlib.errors.ConfigError
            For a missing or mistyped parameter or an unknown judge (one line).
        """
        from rrlib.judges import get_judge

        params = rdays.check_parameters(day, namespace)
        judge = params.get("judge")
        if judge is not None and not str(judge).lower().startswith("llm:"):
            get_judge(judge)  # an unknown judge fails here, before any work is done
        model = rdays.CROSS_MODEL_NAME if rdays.get(day).cross_model else str(params["model"])
        return cls(model, day, params)

    @property
    def slug(self) -> str:
        """Folder-safe run name (figures are filed under it)."""
        return _folder_name(self.name)

    @property
    def run_id(self) -> str:
        """Deterministic id of this (model, Day, parameters)."""
        return self.info.run_id

    @property
    def folder(self) -> Path:
        """``results/runs/<name>``."""
        return run_folder(self.name)

    def path(self, table: str) -> Path:
        """Where this run writes ``table``."""
        return table_path(table, self.name, tagged=self.tagged)

    # -- writing tables -----------------------------------------------------

    def upsert(self, table: str, rows: Sequence[dict[str, Any]], scope: Mapping[str, Any] | None = None) -> None:
        """Upsert rows into a results table; this run's first write to its scope there drops the scope's older rows.

        Parameters
        ----------
        table : str
            A name in :data:`TABLES`.
        rows : sequence of dict
            New rows, all inside the scope.
        scope : mapping, optional
            The scope's column values (default: taken from the first row for the table's scope columns).
        """
        spec = TABLES[table]
        if scope is None:
            scope = {c: rows[0][c] for c in spec.scope} if rows else {}
        path = self.path(table)
        claim = (str(path), tuple(sorted((k, str(v)) for k, v in scope.items())))
        upsert_table(path, rows, spec.key, spec.columns, replace=[] if claim in self._claimed else [dict(scope)])
        self._claimed.add(claim)

    def write_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        """Upsert rows into ``metrics.csv``, replacing what an earlier run of the same scope left there.

        The scope is (model, Day, recipe); for a Day that owns its whole Day
        (Day 7, whose grid defines its recipes) it is (model, Day). A rerun
        replaces every row an earlier run of that scope wrote, whatever its
        parameters (limit, grid steps), instead of leaving them beside its own.
        Runs on other inputs write their own table, so they never touch the study's rows.
        """
        groups: dict[tuple[tuple[str, Any], ...], list[dict[str, Any]]] = {}
        for row in rows:
            scope: dict[str, Any] = {"model": self.name, "day": int(row["day"])}
            if not rdays.get(int(row["day"])).owns_whole_day:
                scope["recipe"] = str(row["recipe"])
            groups.setdefault(tuple(scope.items()), []).append(row)
        for scope_items, group in groups.items():
            self.upsert("metrics", group, dict(scope_items))

    def record(self, estimates: Sequence[Estimate], judge: str, step: int = 0, recipe: str = "baseline",
               seed: int = 0, day: int | None = None) -> pd.DataFrame:
        """Write estimates to the metrics table.

        Parameters
        ----------
        estimates : sequence of Estimate
            Metric values.
        judge : str
            The judge that produced the verdicts (``sbert`` for RD, ``probe`` for representation measures).
        step : int
            Attack grid step (0 = baseline).
        recipe : str
            ``baseline`` or the attack recipe.
        seed : int
            Seed of the run.
        day : int, optional
            Defaults to this run's Day.

        Returns
        -------
        pandas.DataFrame
            The rows written.
        """
        rows = [e.row(model=self.name, day=day or self.day, step=step, judge=judge, run_id=self.run_id,
                      recipe=recipe, seed=seed) for e in estimates]
        self.write_rows(rows)
        self._add_results(rows)
        return pd.DataFrame(rows)

    def record_table(self, frame: pd.DataFrame, step: int = 0, recipe: str = "baseline", seed: int = 0) -> None:
        """Record rows of a table with ``judge, metric, value, ci_low, ci_high, n, reason`` columns."""
        rows = [{"model": self.name, "day": self.day, "step": step, "recipe": recipe, "seed": seed,
                 "run_id": self.run_id, **{k: r.get(k) for k in ("judge", "metric", "value", "ci_low", "ci_high",
                                                                 "n", "reason")}}
                for r in frame.to_dict("records")]
        self.write_rows(rows)
        self._add_results(rows)

    def record_attack(self, evaluation: "AttackEvaluation", judge: str, recipe: str, seed: int) -> None:
        """Write Day 5's per-step metrics (every judge measured) and per-prompt verdicts.

        Parameters
        ----------
        evaluation : AttackEvaluation
            From :func:`rrlib.evaluation.evaluate_attack`.
        judge : str
            The primary judge (every judge's per-prompt verdicts go to ``Day5.verdicts.csv``, so Day 6 can
            be rerun under any of them).
        recipe : str
            The attack recipe.
        seed : int
            The attack seed.
        """
        metric_rows = [{"model": self.name, "day": self.day, "step": int(row["step"]), "metric": row["metric"],
                        "value": row["value"], "ci_low": row["ci_low"], "ci_high": row["ci_high"], "n": row["n"],
                        "judge": row["judge"], "run_id": self.run_id, "recipe": recipe, "seed": seed,
                        "reason": row.get("reason") or ""}
                       for row in evaluation.steps.to_dict("records")]
        self.write_rows(metric_rows)  # one write for every step, not one per row
        self._add_results(metric_rows)
        by_judge = evaluation.judged or {judge: evaluation.responses}
        rows = [{"id": pid, "step": step, "refused": bool(flag), "parsed": bool(ok), "verdict": verdict,
                 "judge": name, "recipe": recipe}
                for name, steps in by_judge.items() for step, judged in steps.items()
                for pid, flag, ok, verdict in zip(judged["id"], judged["refused"], judged["parsed"],
                                                  judged["verdict"])]
        self.upsert("verdicts", rows, {"recipe": recipe})

    def record_compute(self, result: "AttackResult") -> pd.DataFrame:
        """Write an attack's compute bill (with the loss reached at each grid step) and return it."""
        from rrlib.attack import loss_at

        bill = result.bill.copy()
        bill["final_loss"] = [loss_at(result.loss_curve, int(s)) for s in bill["step"]]
        bill.insert(0, "seed", result.config.seed)
        bill.insert(0, "rank", result.config.rank)
        bill.insert(0, "recipe", result.recipe)
        bill.insert(0, "model", self.name)
        self.upsert("compute", bill.to_dict("records"), {"model": self.name, "recipe": result.recipe})
        self._add_results([{"task": f"day4/{result.recipe}/step{int(r['step'])}", "metric": quantity, "judge": "count",
                            "value": r[quantity], "ci_low": None, "ci_high": None, "n": None,
                            "reason": "an exact count: no interval"}
                           for r in bill.to_dict("records") for quantity in ("flops", "tokens", "examples")])
        return bill

    def record_representations(self, drift: "DriftResult", recipe: str, seed: int) -> None:
        """Write the chosen layer's representation measures to metrics and every layer to ``representations.csv``."""
        for step in sorted(drift.summary["step"].unique()):
            self.record(drift.estimates(int(step)), judge="probe", step=int(step), recipe=recipe, seed=seed)
        table = drift.table.assign(model=self.name, recipe=recipe)
        self.upsert("representations", table.to_dict("records"), {"model": self.name, "recipe": recipe})

    def record_grid(self, per_run: pd.DataFrame, pooled: pd.DataFrame, learning_rate: float, judge: str) -> None:
        """Write Day 7's per-run RRR to metrics and the seed-pooled grid to ``grid.csv``."""
        rows = [{"model": self.name, "day": self.day, "step": int(r["step"]), "metric": "RRR", "value": r["value"],
                 "ci_low": r["ci_low"], "ci_high": r["ci_high"], "n": int(r["n"]), "judge": judge,
                 "run_id": self.run_id, "recipe": f"lora-r{int(r['rank'])}-lr{learning_rate:g}-s{int(r['seed'])}",
                 "seed": int(r["seed"]), "reason": ""} for r in per_run.to_dict("records")]
        self.write_rows(rows)
        self._add_results(rows)
        self.upsert("grid", pooled.assign(model=self.name, judge=judge).to_dict("records"), {"model": self.name})

    def record_headline(self, ours: Mapping[str, tuple[Estimate, Estimate]], judge: str, last_step: int) -> None:
        """Write Day 7's seed-pooled headline (RRR, CE, RD at step 0 and the last step) as recipe ``grid-pooled``."""
        for metric, (before, after) in ours.items():
            metric_judge = "sbert" if metric == "RD" else judge
            self.record([before], judge=metric_judge, step=0, recipe="grid-pooled", seed=-1)
            self.record([after], judge=metric_judge, step=last_step, recipe="grid-pooled", seed=-1)

    def record_scaling(self, table: pd.DataFrame, judge: str) -> None:
        """Write Day 6's scaling table under one judge (a rerun under another judge keeps the others' rows)."""
        self.upsert("scaling", table.assign(judge=judge).to_dict("records"), {"judge": judge})
        self._add_results([{"task": f"day6/{r['level']}/{r['model']}", "metric": r["quantity"], "judge": judge,
                            "value": r["value"], "ci_low": r.get("ci_low"), "ci_high": r.get("ci_high"),
                            "n": r.get("n_prompts"), "reason": str(r.get("reason") or "")}
                           for r in table.to_dict("records")])

    # -- files beside the notebook -----------------------------------------

    def save_responses(self, name: str, frame: pd.DataFrame) -> None:
        """Keep the full responses locally (``results/runs/<name>/responses/``); the book shows them redacted."""
        write_csv(self.folder / "responses" / f"Day{self.day}_{name}.csv", frame)

    def save_config(self, extra: Mapping[str, Any] | None = None) -> None:
        """Save the run's parameters and model card to ``DayN.config.json`` (deterministic; paths relative).

        Versions, hardware and the git commit change between machines, so
        they go to the run's git-ignored provenance file instead
        (:func:`provenance_path`); the Reproducibility page shows both.
        """
        record = {"model": self.name, "day": self.day, "run_id": self.run_id,
                  "params": relative_to_project(dict(self.params)), **relative_to_project(dict(extra or {}))}
        if self.tagged:
            record["inputs"] = relative_to_project(input_changes(self.day, self.params))
        write_json(run_file(self.name, self.day, ".config.json"), record)
        update_provenance(self.name, self.day, {"environment": environment()})

    def day4_attack_dir(self) -> str:
        """The attack folder recorded by this model's Day 4 run (this run's own inputs first, then the study's).

        Raises
        ------
        DataError
            If Day 4 has not run for this model.
        """
        for name in dict.fromkeys((self.name, model_base(self.name))):
            path = run_file(name, 4, ".config.json")
            if path.exists():
                attack_dir = Path(str(read_json(path)["attack_dir"]))
                return str(attack_dir if attack_dir.is_absolute() else project_root() / attack_dir)
        raise DataError(f"{run_file(self.name, 4, '.config.json')}: no Day 4 run for model {self.name!r}; run Day 4 "
                        f"first (rr run --models {model_base(self.name)} --days 4) or pass attack_dir=...")

    def _add_results(self, rows: Sequence[dict[str, Any]]) -> None:
        """Add rows to ``DayN.results.json``, the run's numbers in lm-evaluation-harness's shape."""
        path = run_file(self.name, self.day, ".results.json")
        claim = (str(path), ())
        document = read_json(path) if path.exists() and claim in self._claimed else {
            "results": {}, "config": {"model": self.name, "day": self.day, "run_id": self.run_id,
                                      "params": relative_to_project(dict(self.params))},
            "versions": {"rrlib-results": 1}}
        self._claimed.add(claim)
        for row in rows:
            task = row.get("task") or f"day{row['day']}/{row['recipe']}/step{int(row['step'])}/seed{int(row['seed'])}"
            entry = document["results"].setdefault(task, {"alias": task})
            metric = f"{row['metric']},{row['judge']}"
            entry[metric] = _number(row["value"])
            entry[f"{metric}_stderr"] = _stderr(row)
            entry[f"{metric}_ci_low"] = _number(row["ci_low"])
            entry[f"{metric}_ci_high"] = _number(row["ci_high"])
            entry[f"{metric}_n"] = _number(row["n"])
            if row.get("reason"):
                entry[f"{metric}_reason"] = str(row["reason"])
        document["results"] = dict(sorted(document["results"].items()))
        write_json(path, document)


def _number(value: Any) -> float | int | None:
    """A JSON-safe number (``None`` for missing or NaN)."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() and not isinstance(value, float) else number


def _stderr(row: Mapping[str, Any]) -> float | None:
    """Standard error implied by a 95% interval, ``(ci_high - ci_low) / (2 * 1.96)`` ("N/A" as ``None``)."""
    low, high = _number(row.get("ci_low")), _number(row.get("ci_high"))
    if low is None or high is None:
        return None
    return (float(high) - float(low)) / (2 * 1.959963984540054)


def environment() -> dict[str, Any]:
    """Versions, hardware and git commit, for the run's provenance record."""
    import platform
    import subprocess
    import sys

    import peft
    import torch
    import transformers

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=project_root(), capture_output=True,
                                text=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "platform": platform.platform(), "cpu_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(), "git_commit": commit}
