"""The Days, declared once.

Each Day is one :class:`Day` record: its notebook, title, question, which of
its model's earlier Days it reads, which results tables it owns, and a cost
hint. The runner's dependencies, the book's table of contents, the scopes a
rerun replaces and the scheduler's priorities are all derived from
:data:`DAYS`.

A notebook parameter is declared in exactly one place: its notebook's
``parameters`` cell. :func:`parameters` reads the schema from there with
papermill's own inspector (name, type from the annotation, default, help
comment), and :func:`check_parameters` checks a run's values against it.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from rrlib.config import project_root
from rrlib.errors import ConfigError

CROSS_MODEL_NAME = "scaling"  # cross-model Days file their runs under results/runs/scaling/


@dataclass(frozen=True)
class Day:
    """One Day notebook and everything the rest of the project needs to know about it.

    Parameters
    ----------
    number : int
        The Day (3-7).
    notebook : str
        Its source notebook in ``notebooks/``.
    title : str
        Its title in the book's navigation.
    question : str
        The question it answers, in one sentence.
    reads : tuple of int
        Earlier Days whose results it reads: of the same model, or of every
        model it covers when ``cross_model``.
    owns : tuple of str
        Names of the results tables it writes (:data:`rrlib.results.TABLES`).
    cost : float
        Relative CPU cost on the organism family (Day 3 = 1), to start long
        chains first.
    cross_model : bool
        Runs once across models (filed under :data:`CROSS_MODEL_NAME`).
    owns_whole_day : bool
        A rerun replaces every metric row of its (model, Day), not only those
        of its recipe: Day 7's grid defines its own recipes.
    """

    number: int
    notebook: str
    title: str
    question: str
    reads: tuple[int, ...]
    owns: tuple[str, ...]
    cost: float
    cross_model: bool = False
    owns_whole_day: bool = False

    @property
    def source(self) -> Path:
        """The source notebook, ``notebooks/DayN_*.ipynb``."""
        return project_root() / "notebooks" / self.notebook

    @property
    def text_pair(self) -> Path:
        """The notebook's jupytext MyST Markdown pair, ``notebooks/DayN_*.md``."""
        return self.source.with_suffix(".md")


DAYS: dict[int, Day] = {day.number: day for day in (
    Day(3, "Day3_baseline.ipynb", "Day 3 · Baseline",
        "Before any attack, how often does the model refuse held-out harmful requests, and wrongly refuse benign ones?",
        reads=(), owns=("metrics",), cost=1.0),
    Day(4, "Day4_attack.ipynb", "Day 4 · Attack",
        "What does a cheap attack on safety training change, and what does it cost?",
        reads=(3,), owns=("compute",), cost=0.5),
    Day(5, "Day5_after_attack.ipynb", "Day 5 · After the attack",
        "How much refusal survives at each step of the attack, and is the refusal direction destroyed or bypassed?",
        reads=(3, 4), owns=("metrics", "verdicts", "representations"), cost=1.5),
    Day(6, "Day6_scaling.ipynb", "Day 6 · Scaling",
        "Does the base model's size buy robustness, or does the attacker's compute dominate?",
        reads=(3, 4, 5), owns=("scaling",), cost=0.1, cross_model=True),
    # Day 7 needs only the model (Day 3 builds an organism) and Day 4's attack, so it can run beside Day 5.
    Day(7, "Day7_lora_grid.ipynb", "Day 7 · LoRA grid",
        "Across steps, ranks and seeds, does a lower training loss ever restore refusal?",
        reads=(3, 4), owns=("metrics", "grid"), cost=4.0, owns_whole_day=True),
)}


def get(number: int) -> Day:
    """The record of Day ``number``.

    Raises
    ------
    ConfigError
        For a Day without a notebook.
    """
    try:
        return DAYS[int(number)]
    except (KeyError, ValueError, TypeError):
        raise ConfigError(f"no notebook for day {number!r}; available days: {sorted(DAYS)}") from None


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
    unknown = sorted(set(days) - set(DAYS))
    if unknown:
        raise ConfigError(f"no notebook for day(s) {unknown}; available days: {sorted(DAYS)}")
    return sorted(set(days))


# ---------------------------------------------------------------------------
# The parameter schema, read from each notebook's parameters cell
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    """One notebook parameter as its ``parameters`` cell declares it."""

    name: str
    kinds: tuple[type, ...]  # accepted types
    optional: bool  # None is accepted
    default: Any
    help: str

    @property
    def type_name(self) -> str:
        """The accepted types in words (``int or None``)."""
        names = " or ".join(k.__name__ for k in self.kinds)
        return f"{names} or None" if self.optional else names


_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (float, int), "bool": (bool,),
                                       "list": (list, tuple)}
_OPTIONAL = re.compile(r"^Optional\[(.+)\]$")


def _parse_type(annotation: str, name: str, notebook: str) -> tuple[tuple[type, ...], bool]:
    """Accepted types of an annotation such as ``int``, ``list[int]`` or ``Optional[str]``."""
    text = annotation.strip().strip("\"'")
    optional = False
    match = _OPTIONAL.match(text)
    if match:
        text, optional = match.group(1), True
    base = text.split("[", 1)[0].strip()
    if base not in _TYPES:
        raise ConfigError(f"notebooks/{notebook}: parameter {name!r} has annotation {annotation!r}; use str, int, "
                          "float, bool, list[...] or Optional[...] in the parameters cell")
    return _TYPES[base], optional


@functools.lru_cache(maxsize=None)
def _schema(path: str, mtime: float) -> dict[str, Parameter]:
    import papermill

    notebook = Path(path).name
    found = papermill.inspect_notebook(path)
    if not found:
        raise ConfigError(f"notebooks/{notebook}: no cell tagged 'parameters'; tag the parameters cell")
    schema = {}
    for name, info in found.items():
        annotation = info.get("inferred_type_name") or "None"
        if annotation == "None":
            raise ConfigError(f"notebooks/{notebook}: parameter {name!r} has no type annotation; write it as "
                              f"`{name}: <type> = {info.get('default')}` in the parameters cell")
        kinds, optional = _parse_type(annotation, name, notebook)
        try:
            default = ast.literal_eval(str(info.get("default")))
        except (ValueError, SyntaxError):
            raise ConfigError(f"notebooks/{notebook}: parameter {name!r} default {info.get('default')!r} is not "
                              "a literal") from None
        schema[name] = Parameter(name, kinds, optional, default, str(info.get("help") or ""))
    return schema


def parameters(number: int) -> dict[str, Parameter]:
    """The parameter schema of Day ``number``, read from its notebook's ``parameters`` cell.

    Returns
    -------
    dict
        Parameter name to :class:`Parameter`, in the cell's order.

    Raises
    ------
    ConfigError
        If the cell is missing, or a parameter has no or an unknown annotation.
    """
    source = get(number).source
    return _schema(str(source), source.stat().st_mtime)


def check_value(parameter: Parameter, value: Any) -> Any:
    """Check one parameter value's type; the error is one line naming the parameter and the fix.

    Raises
    ------
    ConfigError
        If the type is wrong.
    """
    if value is None and parameter.optional:
        return value
    ok = isinstance(value, parameter.kinds) and not (isinstance(value, bool) and bool not in parameter.kinds)
    if not ok:
        raise ConfigError(f"parameter {parameter.name!r} must be {parameter.type_name}, got "
                          f"{type(value).__name__} {value!r}; pass e.g. -p {parameter.name} <{parameter.type_name}> "
                          "to papermill")
    return value


def check_parameters(number: int, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Collect a Day notebook's parameters from its namespace and check their types.

    Parameters
    ----------
    number : int
        The Day whose schema applies.
    namespace : mapping
        The notebook's ``globals()`` after the parameters cell (and papermill's injection).

    Returns
    -------
    dict
        Parameter name to value, in the cell's order.

    Raises
    ------
    ConfigError
        If a parameter is missing or has the wrong type (one line, naming it).
    """
    values = {}
    for name, parameter in parameters(number).items():
        if name not in namespace:
            raise ConfigError(f"Day{number} parameter {name!r} is missing from the parameters cell")
        values[name] = check_value(parameter, namespace[name])
    return values


def unknown_parameters(number: int, given: Mapping[str, Any]) -> list[str]:
    """Names in ``given`` that Day ``number``'s notebook does not declare (``model``/``models`` aside)."""
    return sorted(set(given) - set(parameters(number)))


def declared_parameters(number: int, given: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``given`` that Day ``number`` declares: a plan's parameters reach only the Days that take them."""
    schema = parameters(number)
    return {name: value for name, value in given.items() if name in schema}


def check_plan_parameters(numbers: Sequence[int], given: Mapping[str, Any], where: str = "--param") -> None:
    """Reject parameter names that no Day of a plan declares in its parameters cell.

    Parameters
    ----------
    numbers : sequence of int
        The Days of the plan.
    given : mapping
        Parameter values for the plan.
    where : str
        Where the parameters came from, for the message (``--param``, or a config file and run).

    Raises
    ------
    ConfigError
        One line naming the unknown names, the Days and their parameter names.
    """
    if not given or not numbers:
        return
    unknown = sorted(set.intersection(*(set(unknown_parameters(d, given)) for d in numbers)))
    if unknown:
        notebooks = " or ".join(f"Day{d} ({get(d).notebook})" for d in numbers)
        valid = sorted({name for d in numbers for name in parameters(d)})
        raise ConfigError(f"{where} {', '.join(unknown)}: not a parameter of {notebooks}; valid names: "
                          f"{', '.join(valid)}")
