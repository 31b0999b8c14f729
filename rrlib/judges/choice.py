"""The default judge of each label domain, chosen by a rule in code from held-out evidence.

The rule (:func:`choose_judge`)
-------------------------------
Among the candidate judges (by default every judge that runs offline,
:func:`rrlib.judges.available`), the default judge of a domain is the one with
the **highest held-out accuracy of the binary refusal decision** on that
domain's held-out labelled rows (truth ``label == "refusal"``, the judge's
call ``verdict == "refusal"``; a response without a verdict counts as not
refused). Ties are broken by the **higher refusal recall** on the same rows
(missing a refusal understates robustness, the error the study most needs to
avoid), then by **name** (alphabetical), so the choice is always unique.
Accuracy and recall are compared as exact counts (correct rows, refusals
caught) over the same rows, never as rounded floats.

Where it is recorded
--------------------
* :func:`default_judge` computes the choice lazily, on first use, never on
  import. It is kept per process and on disk under
  ``<cache_dir>/judges/choice-<key>.json``, where the key
  (:func:`choice_key`) covers every labels file's hash, the source of the
  judges package (:func:`judges_code_version`), the ``sbert-lr`` fit's key,
  the degenerate rule's vocabulary and the candidate list; when the committed
  ``data/raw/judge_choice.json`` carries the same key, it is used directly.
* :func:`write_choice` writes ``data/raw/judge_choice.json`` (a test recomputes
  the rule and checks the file is up to date).
* :data:`DEFAULT_JUDGES` is a read-only mapping ``domain -> judge name`` that
  computes on first access; :func:`default_judge_for` maps a model to its
  domain (organisms -> ``organism``, every other model -> ``fluent``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd

from rrlib.config import ModelSpec, cache_dir, project_root, resolve_model, stable_hash
from rrlib.errors import DataError
from rrlib.judges import labels as judge_labels
from rrlib.store import atomic_write_text

CHOICE_FILE = "data/raw/judge_choice.json"  # relative to the project root; committed
FORMAT_VERSION = 1  # bump when the choice file's fields or the rule change
RULE = ("the candidate with the highest held-out accuracy of the binary refusal decision (label == refusal vs "
        "verdict == refusal) on the domain's held-out labelled rows; ties broken by higher refusal recall, "
        "then by name")
TABLE_COLUMNS = ["rank", "judge", "n", "correct", "accuracy", "refusals", "caught", "recall", "precision"]
_MEMO: dict[str, dict[str, str]] = {}


def choice_path() -> Path:
    """The committed record of the chosen judges, ``data/raw/judge_choice.json``."""
    return project_root() / CHOICE_FILE


def selection_table(domain: str, candidates: Sequence[str] | None = None) -> pd.DataFrame:
    """Every candidate's evidence on one domain's held-out rows, sorted by the rule (best first).

    Parameters
    ----------
    domain : str
        ``fluent`` or ``organism``.
    candidates : sequence of str, optional
        Judge names; defaults to :func:`rrlib.judges.available`.

    Returns
    -------
    pandas.DataFrame
        :data:`TABLE_COLUMNS`: ``n`` held-out rows, ``correct`` refusal
        decisions and ``accuracy``; ``refusals`` labelled, ``caught`` and
        ``recall``; ``precision``; ``rank`` 1 is the choice.

    Raises
    ------
    DataError
        If the domain is unknown, its labels file is missing, or there are no candidates.
    """
    from rrlib.judges import available
    from rrlib.judges.validation import judge_held_out

    names = list(available() if candidates is None else candidates)
    if not names:
        raise DataError("choose_judge needs at least one candidate judge")
    verdicts, _, _ = judge_held_out(names, domain=judge_labels.check_domain(domain))
    return rank_judges(verdicts)


def rank_judges(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Apply the rule to held-out verdicts: every judge's evidence, best first.

    Parameters
    ----------
    verdicts : pandas.DataFrame
        Long verdicts with ``judge``, ``label`` and ``verdict`` (as in
        :attr:`rrlib.judges.validation.JudgeValidation.verdicts`), every judge
        on the same held-out rows.

    Returns
    -------
    pandas.DataFrame
        :data:`TABLE_COLUMNS`, sorted by the rule; ``rank`` 1 is the choice.
    """
    rows = []
    for name in dict.fromkeys(verdicts["judge"]):
        g = verdicts[verdicts["judge"] == name]
        truth = judge_labels.is_refusal(g["label"]).to_numpy(dtype=bool)
        said = (g["verdict"] == "refusal").to_numpy(dtype=bool)
        n, correct, caught = len(g), int((truth == said).sum()), int((truth & said).sum())
        rows.append({"judge": name, "n": n, "correct": correct, "accuracy": correct / n if n else float("nan"),
                     "refusals": int(truth.sum()), "caught": caught,
                     "recall": caught / truth.sum() if truth.sum() else float("nan"),
                     "precision": caught / said.sum() if said.sum() else float("nan")})
    table = pd.DataFrame(rows, columns=[c for c in TABLE_COLUMNS if c != "rank"])
    # The rule: exact counts over the same rows (every candidate sees all n rows), then the name.
    table = table.sort_values(["correct", "caught", "judge"], ascending=[False, False, True], kind="stable")
    table = table.reset_index(drop=True).assign(rank=range(1, len(table) + 1))
    return table[TABLE_COLUMNS]


def choose_judge(domain: str, candidates: Sequence[str] | None = None) -> tuple[str, pd.DataFrame]:
    """Choose a domain's default judge by the rule.

    The rule: among ``candidates``, the judge with the highest held-out
    accuracy of the binary refusal decision on ``domain``'s held-out labelled
    rows (truth ``label == "refusal"``, call ``verdict == "refusal"``, a
    missing verdict counting as not refused); ties broken by the higher
    refusal recall on the same rows, then by name (alphabetical). Counts, not
    rounded rates, are compared.

    Parameters
    ----------
    domain : str
        ``fluent`` or ``organism`` (:data:`rrlib.judges.labels.DOMAINS`).
    candidates : sequence of str, optional
        Judge names; defaults to every offline judge, :func:`rrlib.judges.available`.

    Returns
    -------
    tuple
        ``(name, table)``: the chosen judge and :func:`selection_table` (best first).

    Raises
    ------
    DataError
        If the domain is unknown, its labels file is missing, or there are no candidates.
    """
    table = selection_table(domain, candidates)
    return str(table["judge"].iloc[0]), table


@functools.lru_cache(maxsize=1)
def judges_code_version() -> str:
    """Hash of the source of every module of :mod:`rrlib.judges` (rules, phrase lists, training code)."""
    folder = Path(__file__).resolve().parent
    return stable_hash({p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.py"))}, 16)


def _vocabulary_hash() -> str:
    from rrlib.judges.degenerate import vocabulary

    return _hash_words(vocabulary())


@functools.lru_cache(maxsize=4)
def _hash_words(words: frozenset[str]) -> str:
    return stable_hash(sorted(words), 16)


def choice_key(candidates: Sequence[str] | None = None) -> str:
    """What the choice depends on, hashed: labels files, judges' code, sbert-lr fit, vocabulary, candidates."""
    from rrlib.judges import available
    from rrlib.judges.classifier import model_key

    return stable_hash({"labels": {d: judge_labels.file_sha256(judge_labels.labels_path(d))
                                   for d in judge_labels.available_domains()},
                        "code": judges_code_version(), "sbert_lr": model_key(), "vocabulary": _vocabulary_hash(),
                        "candidates": list(available() if candidates is None else candidates),
                        "format": FORMAT_VERSION}, 16)


def compute_choice(candidates: Sequence[str] | None = None) -> dict[str, Any]:
    """Apply the rule to every domain whose labels file exists.

    Returns
    -------
    dict
        ``rule``, ``key`` (:func:`choice_key`), ``candidates``, ``defaults``
        (``domain -> judge``), ``labels`` (``domain -> labels file``) and
        ``evidence`` (``domain -> {judge, n, accuracy, recall}`` of the chosen judge).
    """
    from rrlib.judges import available

    names = list(available() if candidates is None else candidates)
    defaults, evidence = {}, {}
    for domain in judge_labels.available_domains():
        name, table = choose_judge(domain, names)
        best = table.iloc[0]
        defaults[domain] = name
        evidence[domain] = {"n": int(best["n"]), "correct": int(best["correct"]),
                            "refusals": int(best["refusals"]), "caught": int(best["caught"])}
    return {"rule": RULE, "key": choice_key(names), "candidates": names, "defaults": defaults,
            "labels": {d: judge_labels.DOMAINS[d] for d in defaults}, "evidence": evidence,
            "format": FORMAT_VERSION}


def _dump(choice: dict[str, Any]) -> str:
    return json.dumps(choice, indent=2, sort_keys=True) + "\n"


def read_choice(path: str | Path | None = None) -> dict[str, Any]:
    """The recorded choice (default ``data/raw/judge_choice.json``); ``{}`` if the file is absent or unreadable."""
    path = Path(path) if path else choice_path()
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_choice(path: str | Path | None = None, candidates: Sequence[str] | None = None) -> Path:
    """Apply the rule and record it in ``data/raw/judge_choice.json`` (or ``path``), atomically.

    Returns
    -------
    Path
        The file written (sorted keys, so an unchanged choice rewrites the same bytes).
    """
    return atomic_write_text(Path(path) if path else choice_path(), _dump(compute_choice(candidates)))


def _cache_file(key: str) -> Path:
    return cache_dir() / "judges" / f"choice-{key}.json"


def default_choices() -> dict[str, str]:
    """``domain -> default judge`` for every domain with labels, computed lazily and cached (see the module docstring)."""
    key = choice_key()
    if key not in _MEMO:
        found = None
        for record in (read_choice(_cache_file(key)), read_choice()):
            if record.get("key") == key and isinstance(record.get("defaults"), dict):
                found = record
                break
        if found is None:
            found = compute_choice()
            try:
                atomic_write_text(_cache_file(key), _dump(found))
            except OSError:
                pass  # a read-only cache only costs a recomputation in the next process
        _MEMO[key] = dict(found["defaults"])
    return _MEMO[key]


def default_judge(domain: str) -> str:
    """The default judge of a label domain, chosen by the rule of :func:`choose_judge`.

    Parameters
    ----------
    domain : str
        ``fluent`` (real chat models) or ``organism`` (the study's model organisms).

    Returns
    -------
    str
        A judge name for :func:`rrlib.judges.get_judge`.

    Raises
    ------
    DataError
        If the domain is unknown or has no labels file here.
    """
    judge_labels.check_domain(domain)
    choices = default_choices()
    if domain not in choices:
        raise DataError(f"no default judge for the {domain} domain: its labels file "
                        f"{judge_labels.DOMAINS[domain]} is missing; restore it from git")
    return choices[domain]


def domain_for(model: ModelSpec | str) -> str:
    """The label domain of a model: ``organism`` for the model organisms, ``fluent`` for every other model."""
    spec = resolve_model(model) if isinstance(model, str) else model
    return "organism" if spec.is_organism else "fluent"


def default_judge_for(model_spec: ModelSpec | str) -> str:
    """The default judge for a model: :func:`default_judge` of its domain (:func:`domain_for`).

    Parameters
    ----------
    model_spec : ModelSpec or str
        A :class:`rrlib.config.ModelSpec` (or a name :func:`rrlib.config.resolve_model` accepts).

    Returns
    -------
    str
        The organism domain's default for organisms (``spec.is_organism``), the fluent domain's otherwise.
    """
    return default_judge(domain_for(model_spec))


class _DefaultJudges(Mapping):
    """Read-only ``domain -> default judge``; computes on first access (:func:`default_judge`), never on import."""

    def __getitem__(self, domain: str) -> str:
        if domain not in judge_labels.DOMAINS:
            raise KeyError(domain)
        return default_judge(domain)

    def __iter__(self) -> Iterator[str]:
        return iter(judge_labels.available_domains())

    def __len__(self) -> int:
        return len(judge_labels.available_domains())

    def __repr__(self) -> str:
        return "DEFAULT_JUDGES(computed on first access: " + ", ".join(judge_labels.DOMAINS) + ")"


DEFAULT_JUDGES: Mapping[str, str] = _DefaultJudges()
