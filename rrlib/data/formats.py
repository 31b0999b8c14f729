"""Adapters from peer benchmark formats to the canonical prompt schema.

Each format is detected from its columns (or named explicitly) and converted
to ``id, prompt, category, source[, split, label, target]``. Rows a format
marks as out of scope (HarmBench copyright behaviours, XSTest rows of the other
label) are dropped and counted in ``frame.attrs['notes']``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from rrlib.data.schema import (REQUIRED, display_path, read_csv_rows, read_jsonl_rows, read_text,
                               require_columns, validate)
from rrlib.errors import DataError


@dataclass(frozen=True)
class Format:
    """A file format: its columns (for detection) and a converter."""

    name: str
    kind: str  # "csv" or "jsonl"
    columns: tuple[str, ...]
    convert: Callable[[Any, str, str], tuple[pd.DataFrame, list[int]]]
    description: str


def _frame(rows: dict[str, list[Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def _record_lines(path: str | Path, count: int) -> list[int]:
    """The file line on which each of the ``count`` CSV data rows starts.

    Quoted cells may span lines (HarmBench's ``ContextString`` does), so data row
    ``i`` is not always line ``i + 2``. Falls back to that numbering if the csv
    module does not see the same number of rows as pandas.
    """
    reader = csv.reader(io.StringIO(read_text(path)))
    starts: list[int] = []
    try:
        while True:
            start = reader.line_num + 1
            row = next(reader, None)
            if row is None:
                break
            if row:  # blank lines are skipped by pandas too
                starts.append(start)
    except csv.Error:
        starts = []
    starts = starts[1:]  # the header
    return starts if len(starts) == count else [i + 2 for i in range(count)]


def _csv_lines(frame: pd.DataFrame) -> list[int]:
    """File lines of the rows: :func:`load_any` indexes a CSV table by the line each row starts on."""
    return [int(i) for i in frame.index]


def _canonical(frame: pd.DataFrame, where: str, kind: str) -> tuple[pd.DataFrame, list[int]]:
    frame = frame.copy()
    if "label" not in frame.columns or (frame["label"].astype(str).str.strip() == "").all():
        frame["label"] = kind
    return frame, _csv_lines(frame)


def _advbench(frame: pd.DataFrame, where: str, kind: str) -> tuple[pd.DataFrame, list[int]]:
    out = _frame({
        "id": [f"advbench-{i + 1:04d}" for i in range(len(frame))],
        "prompt": frame["goal"], "category": "advbench", "source": "advbench",
        "label": "harmful", "target": frame["target"],
    })
    return out, _csv_lines(frame)


def _harmbench(frame: pd.DataFrame, where: str, kind: str) -> tuple[pd.DataFrame, list[int]]:
    copyright_rows = (frame["SemanticCategory"].str.lower() == "copyright") | (
        frame["FunctionalCategory"].str.lower() == "copyright")
    kept = frame[~copyright_rows]
    fallback = [f"harmbench-{n:04d}" for n, keep in enumerate(~copyright_rows, start=1) if keep]
    context = kept["ContextString"].str.strip()
    # HarmBench's own test cases put a contextual behaviour's context first: f"{context}\n\n---\n\n{behavior}".
    prompt = [f"{c}\n\n---\n\n{b}" if c else b for c, b in zip(context, kept["Behavior"])]
    out = _frame({
        "id": kept["BehaviorID"].where(kept["BehaviorID"].str.strip() != "", fallback),
        "prompt": prompt, "category": kept["SemanticCategory"],
        "source": "harmbench:" + kept["FunctionalCategory"], "label": "harmful", "target": "",
    })
    out.attrs["notes"] = [f"skipped {int(copyright_rows.sum())} copyright behaviour(s): "
                          "they test verbatim reproduction, not refusal"] if copyright_rows.any() else []
    return out, _csv_lines(kept)


def _jbb(frame: pd.DataFrame, where: str, kind: str) -> tuple[pd.DataFrame, list[int]]:
    out = _frame({
        "id": [f"jbb-{kind}-{str(i).strip()}" for i in frame["Index"]],
        "prompt": frame["Goal"], "category": frame["Category"],
        "source": "jbb:" + frame["Source"], "label": kind, "target": frame["Target"],
    })
    return out, _csv_lines(frame)


def _strongreject(frame: pd.DataFrame, where: str, kind: str) -> tuple[pd.DataFrame, list[int]]:
    out = _frame({
        "id": [f"strongreject-{i + 1:04d}" for i in range(len(frame))],
        "prompt": frame["forbidden_prompt"], "category": frame["category"],
        "source": "strongreject:" + frame["source"], "label": "harmful", "target": "",
    })
    return out, _csv_lines(frame)


def _xstest(frame: pd.DataFrame, where: str, kind: str) -> tuple[pd.DataFrame, list[int]]:
    label = frame["label"].str.strip().str.lower()
    unknown = sorted(set(label) - {"safe", "unsafe"})
    if unknown:
        line = int(frame.index[label.isin(unknown)][0])
        raise DataError(f"{where} line {line}, column 'label': XSTest labels are 'safe' or 'unsafe', "
                        f"got {frame.loc[line, 'label']!r}; fix the label or delete the row")
    wanted = "unsafe" if kind == "harmful" else "safe"
    kept = frame[label == wanted]
    out = _frame({
        "id": [f"xstest-{str(i).strip()}" for i in kept["id"]],
        "prompt": kept["prompt"], "category": kept["type"], "source": "xstest",
        "label": kind, "target": "",
    })
    dropped = len(frame) - len(kept)
    out.attrs["notes"] = [f"kept the {len(kept)} {wanted} row(s) as {kind}; "
                          f"dropped {dropped} row(s) of the other label"] if dropped else []
    return out, _csv_lines(kept)


def _sorry_bench(rows: list[tuple[int, dict[str, Any]]], where: str,
                 kind: str) -> tuple[pd.DataFrame, list[int]]:
    ids, prompts, categories, styles, lines = [], [], [], [], []
    for line, obj in rows:
        turns = obj.get("turns")
        if not isinstance(turns, list) or not turns or not isinstance(turns[0], str):
            raise DataError(f"{where} line {line}, field 'turns': expected a list with the question text")
        ids.append(f"sorry-{obj.get('question_id', line)}-{obj.get('prompt_style', 'base')}")
        prompts.append(turns[0])
        categories.append(str(obj.get("category", "")))
        styles.append(str(obj.get("prompt_style", "base")))
        lines.append(line)
    out = _frame({"id": ids, "prompt": prompts, "category": categories,
                  "source": ["sorry-bench:" + s for s in styles], "label": "harmful", "target": ""})
    return out, lines


def _chat(rows: list[tuple[int, dict[str, Any]]], where: str, kind: str) -> tuple[pd.DataFrame, list[int]]:
    ids, prompts, targets, categories, lines = [], [], [], [], []
    for line, obj in rows:
        messages = obj.get("messages")
        if not isinstance(messages, list) or not messages:
            raise DataError(f"{where} line {line}, field 'messages': expected a non-empty list of "
                            "{\"role\": ..., \"content\": ...} objects")
        for m in messages:
            if not isinstance(m, dict) or "role" not in m or not isinstance(m.get("content"), str):
                raise DataError(f"{where} line {line}, field 'messages': every message needs a 'role' and a "
                                "string 'content'")
        users = [i for i, m in enumerate(messages) if m["role"] == "user"]
        if not users:
            raise DataError(f"{where} line {line}, field 'messages': no user message")
        # The target is the reply to the last user turn, never an earlier turn's answer.
        replies = [m["content"] for m in messages[users[-1] + 1:] if m["role"] == "assistant"]
        ids.append(str(obj.get("id", f"chat-{line:05d}")))
        prompts.append(messages[users[-1]]["content"])
        targets.append(replies[0] if replies else "")
        categories.append(str(obj.get("category", "")))
        lines.append(line)
    out = _frame({"id": ids, "prompt": prompts, "category": categories, "source": "chat-jsonl",
                  "label": kind, "target": targets})
    out.attrs["messages"] = [obj["messages"] for _, obj in rows]
    return out, lines


FORMATS: dict[str, Format] = {f.name: f for f in [
    Format("canonical", "csv", tuple(REQUIRED), _canonical, "id,prompt,category,source[,split,label,target]"),
    Format("advbench", "csv", ("goal", "target"), _advbench, "AdvBench harmful_behaviors.csv (goal,target)"),
    Format("harmbench", "csv", ("Behavior", "FunctionalCategory", "SemanticCategory", "Tags", "ContextString",
                                "BehaviorID"), _harmbench, "HarmBench behaviors CSV"),
    Format("jbb", "csv", ("Index", "Goal", "Target", "Behavior", "Category", "Source"), _jbb,
           "JailbreakBench JBB-Behaviors (harmful or benign)"),
    Format("strongreject", "csv", ("category", "source", "forbidden_prompt"), _strongreject,
           "StrongREJECT (category,source,forbidden_prompt)"),
    Format("xstest", "csv", ("id", "prompt", "type", "label", "focus", "note"), _xstest,
           "XSTest (safe rows are benign, unsafe rows harmful)"),
    Format("sorry-bench", "jsonl", ("question_id", "category", "turns"), _sorry_bench,
           "SORRY-Bench question.jsonl"),
    Format("chat", "jsonl", ("messages",), _chat, "chat JSONL {\"messages\": [...]}"),
]}


_CSV_SUFFIXES = (".csv",)
_JSONL_SUFFIXES = (".jsonl", ".ndjson")


def known_formats() -> str:
    """A one-line list of the known formats for error messages."""
    return ", ".join(FORMATS)


def detect_format(columns: set[str], kind: str) -> Format:
    """Pick the format whose columns are all present (most specific first).

    Parameters
    ----------
    columns : set of str
        Column names (CSV header) or keys of the first JSONL record.
    kind : str
        ``"csv"`` or ``"jsonl"``.

    Returns
    -------
    Format
        The matching format.

    Raises
    ------
    DataError
        If no format matches.
    """
    candidates = [f for f in FORMATS.values() if f.kind == kind and set(f.columns) <= columns]
    if not candidates:
        raise DataError(f"unrecognised {kind.upper()} columns ({', '.join(sorted(columns))}); "
                        f"known formats: {known_formats()}")
    return max(candidates, key=lambda f: len(f.columns))


def load_any(path: str | Path, fmt: str | None = None, kind: str = "harmful") -> pd.DataFrame:
    """Load a prompt file in any known format as a canonical table.

    Parameters
    ----------
    path : str or Path
        CSV or JSONL file.
    fmt : str, optional
        A key of :data:`FORMATS`; detected from the columns when omitted.
    kind : str
        ``"harmful"`` or ``"benign"``: the label given to rows (and which XSTest rows to keep).

    Returns
    -------
    pandas.DataFrame
        Canonical columns; ``attrs`` hold ``path``, ``format`` and ``notes``.

    Raises
    ------
    DataError
        For a missing file, unknown format, missing column, empty prompt or duplicate id.
    """
    where = display_path(path)
    if kind not in ("harmful", "benign"):
        raise DataError(f"kind must be 'harmful' or 'benign', got {kind!r}")
    if fmt is not None and fmt not in FORMATS:
        raise DataError(f"{where}: unknown format {fmt!r}; known formats: {known_formats()}")
    suffix = Path(path).suffix.lower()
    # The file name decides; an explicit format only decides for other suffixes (.txt, .json, none).
    is_jsonl = suffix in _JSONL_SUFFIXES or (suffix not in _CSV_SUFFIXES and fmt is not None
                                             and FORMATS[fmt].kind == "jsonl")
    if is_jsonl:
        rows = read_jsonl_rows(path)
        spec = FORMATS[fmt] if fmt else _detect_or_explain(set(rows[0][1]), "jsonl", where)
        if spec.kind != "jsonl":
            raise DataError(f"{where}: format {spec.name!r} is a CSV format, but this is a JSONL file")
        frame, lines = spec.convert(rows, where, kind)
    else:
        table = read_csv_rows(path)
        spec = FORMATS[fmt] if fmt else _detect_or_explain(set(table.columns), "csv", where,
                                                             has_prompt="prompt" in table.columns)
        if spec.kind != "csv":
            raise DataError(f"{where}: format {spec.name!r} is a JSONL format, but this is a CSV file")
        require_columns(table, list(spec.columns), spec.name)
        table.index = pd.Index(_record_lines(path, len(table)))
        frame, lines = spec.convert(table, where, kind)
    notes = list(frame.attrs.get("notes", []))
    messages = frame.attrs.get("messages")
    if len(frame) == 0:
        raise DataError(f"{where}: no {kind} rows left after reading format {spec.name!r}; "
                        f"{'; '.join(notes) or 'the file has no usable rows'}")
    out = validate(frame, where, lines)
    out.attrs.update({"path": str(path), "format": spec.name, "notes": notes})
    if messages is not None:
        out.attrs["messages"] = messages
    return out


def _detect_or_explain(columns: set[str], kind: str, where: str, has_prompt: bool = True) -> Format:
    try:
        return detect_format(columns, kind)
    except DataError:
        if kind == "csv" and not has_prompt and {"id", "category", "source"} & columns:
            # Looks like a canonical file with the prompt column missing: say exactly that.
            raise DataError(f"{where}: missing required column 'prompt' (found: {', '.join(sorted(columns))}); "
                            "add a 'prompt' column with the request text") from None
        raise DataError(f"{where}: unrecognised columns ({', '.join(sorted(columns))}); "
                        f"known formats: {known_formats()}; pass the format explicitly or use "
                        "the canonical columns id,prompt,category,source") from None
