"""The canonical prompt schema and file reading with precise errors.

Canonical columns: ``id, prompt, category, source`` plus optional
``split, label, target``. Every error names the file, the row (as the line
number in the file) and the column, and says how to fix it.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

from rrlib.errors import DataError

REQUIRED = ["id", "prompt", "category", "source"]
OPTIONAL = ["split", "label", "target"]
CANONICAL = REQUIRED + OPTIONAL


def display_path(path: str | Path) -> str:
    """Return a short, stable path for messages: relative to the project root (or the cwd) when inside it."""
    from rrlib.config import project_root

    path = Path(path)
    resolved = path.resolve()
    for base in (project_root(), Path.cwd()):
        try:
            return str(resolved.relative_to(base.resolve()))
        except ValueError:
            continue
    return str(path)


def read_text(path: str | Path) -> str:
    """Read a data file as UTF-8, with one-line errors for the usual problems.

    Parameters
    ----------
    path : str or Path
        The file to read.

    Returns
    -------
    str
        The text, without a leading byte-order mark.

    Raises
    ------
    DataError
        If the file is missing, is a folder, or is not UTF-8.
    """
    path = Path(path)
    where = display_path(path)
    if not path.exists():
        raise DataError(f"{where}: file not found; check the path (relative paths start at the project root)")
    if path.is_dir():
        raise DataError(f"{where}: is a folder, not a data file; pass the CSV or JSONL file inside it")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{where}: not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); "
            "re-save the file as UTF-8"
        ) from None
    return text.lstrip("\ufeff")


def read_csv_rows(path: str | Path) -> pd.DataFrame:
    """Read a CSV file into a DataFrame of strings.

    Parameters
    ----------
    path : str or Path
        The CSV file.

    Returns
    -------
    pandas.DataFrame
        All cells as strings (empty cells as ``""``); ``attrs['path']`` is set.

    Raises
    ------
    DataError
        If the file cannot be parsed or has no data rows.
    """
    where = display_path(path)
    text = read_text(path)
    if not text.strip():
        raise DataError(f"{where}: file is empty; it needs a header row and at least one data row")
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, csv.Error) as exc:
        raise DataError(f"{where}: not a valid CSV ({' '.join(str(exc).split())}); check quoting") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(frame) == 0:
        raise DataError(f"{where}: no data rows (only a header); add at least one row")
    frame.attrs["path"] = str(path)
    return frame


def read_jsonl_rows(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """Read a JSONL file as (line number, object) pairs.

    Parameters
    ----------
    path : str or Path
        The JSONL file.

    Returns
    -------
    list of (int, dict)
        One entry per non-blank line.

    Raises
    ------
    DataError
        If a line is not a JSON object or the file has no records.
    """
    where = display_path(path)
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where} line {number}: not valid JSON ({exc.msg}); fix or delete the line") from None
        if not isinstance(obj, dict):
            raise DataError(f"{where} line {number}: expected a JSON object, got {type(obj).__name__}")
        rows.append((number, obj))
    if not rows:
        raise DataError(f"{where}: no records; a JSONL file needs one JSON object per line")
    return rows


def require_columns(frame: pd.DataFrame, columns: list[str], fmt: str) -> None:
    """Raise a one-line error if ``frame`` lacks any of ``columns``."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        where = display_path(frame.attrs.get("path", "<table>"))
        found = ", ".join(frame.columns) or "none"
        raise DataError(
            f"{where}: missing required column {', '.join(repr(c) for c in missing)} for format "
            f"{fmt!r} (found: {found}); rename the column or pass the right format"
        )


def validate(frame: pd.DataFrame, where: str, lines: list[int] | None = None) -> pd.DataFrame:
    """Check a canonical prompt table and return it with canonical columns.

    Parameters
    ----------
    frame : pandas.DataFrame
        Must have :data:`REQUIRED` columns.
    where : str
        The file name for messages.
    lines : list of int, optional
        The file line of each row (defaults to CSV lines: row i is line i + 2).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`CANONICAL` in order (missing optional ones are empty).

    Raises
    ------
    DataError
        On an empty id or prompt, or a duplicate id.
    """
    if lines is None:
        lines = [i + 2 for i in range(len(frame))]
    frame = frame.reset_index(drop=True).copy()
    for column in CANONICAL:
        if column not in frame.columns:
            frame[column] = ""
        frame[column] = frame[column].fillna("").astype(str)
    frame["id"] = frame["id"].str.strip()
    for column in ("id", "prompt"):
        empty = frame.index[frame[column].str.strip() == ""]
        if len(empty):
            i = int(empty[0])
            raise DataError(
                f"{where} line {lines[i]}, column {column!r}: empty {column}; "
                f"fill it in or delete the row ({len(empty)} such row(s))"
            )
    dup = frame["id"].duplicated(keep=False)
    if dup.any():
        first = frame.loc[dup, "id"].iloc[0]
        rows = [lines[i] for i in frame.index[frame["id"] == first]]
        raise DataError(
            f"{where} lines {', '.join(map(str, rows))}, column 'id': duplicate id {first!r}; "
            "ids must be unique"
        )
    frame = frame[CANONICAL]
    frame.attrs["path"] = where
    return frame
