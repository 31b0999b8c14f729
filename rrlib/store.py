"""Atomic, lock-protected file writes (the results tables themselves are declared in :mod:`rrlib.results`).

Every file is written to a temporary sibling, flushed to disk and renamed over
the target, so a killed process never leaves a half-written CSV or JSON. Shared
tables (``metrics.csv``) are updated under an exclusive file lock, so two runs
writing at once lose no rows.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes to ``path`` atomically (temp file, fsync, rename).

    Parameters
    ----------
    path : str or Path
        Target file; parent folders are created.
    data : bytes
        The full content.

    Returns
    -------
    Path
        The written path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically; see :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    """Write an object as indented JSON, atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_csv(path: str | Path, frame: pd.DataFrame) -> Path:
    """Write a DataFrame as CSV (no index), atomically."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return atomic_write_text(path, buffer.getvalue())


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` for the duration of the block.

    Parameters
    ----------
    path : str or Path
        The file being protected; the lock file sits beside it.
    """
    lock_path = Path(str(path) + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def append_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Append records to a JSONL file durably, under a lock.

    A torn last line left by a killed writer is cut off first, so the file
    stays one valid JSON object per line.

    Parameters
    ----------
    path : str or Path
        The JSONL file.
    records : iterable of dict
        Records to append.

    Returns
    -------
    int
        Number of records written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records]
    if not lines:
        return 0
    with locked(path):
        repair_jsonl_tail(path)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write("".join(lines))
            handle.flush()
            os.fsync(handle.fileno())
    return len(lines)


def repair_jsonl_tail(path: str | Path) -> bool:
    """Cut a torn (unterminated) last line from a JSONL file.

    Parameters
    ----------
    path : str or Path
        The JSONL file; nothing happens if it does not exist.

    Returns
    -------
    bool
        True if a torn line was removed.
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return False
    with open(path, "rb+") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 1))
        if handle.read(1) == b"\n":
            return False
        # Walk back to the last newline and truncate after it.
        block = 4096
        pos = size
        while pos > 0:
            start = max(0, pos - block)
            handle.seek(start)
            chunk = handle.read(pos - start)
            idx = chunk.rfind(b"\n")
            if idx >= 0:
                handle.truncate(start + idx + 1)
                return True
            pos = start
        handle.truncate(0)
        return True


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL file, skipping a torn last line and any corrupt line.

    Parameters
    ----------
    path : str or Path
        The JSONL file; a missing file gives an empty list.

    Returns
    -------
    list of dict
        The parsed records, in file order.
    """
    path = Path(path)
    if not path.exists():
        return []
    records = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.endswith("\n"):
                break  # torn tail from a killed writer
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def upsert_table(path: str | Path, rows: Sequence[dict[str, Any]], key: Sequence[str],
                 columns: Sequence[str], replace: Sequence[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """Insert or replace rows of a CSV table by key, atomically and under a lock.

    Parameters
    ----------
    path : str or Path
        The CSV table.
    rows : sequence of dict
        New rows; a row whose key matches an existing row replaces it.
    key : sequence of str
        Columns that identify a row.
    columns : sequence of str
        Column order of the table.
    replace : sequence of mapping
        Scopes to clear first: existing rows whose columns equal every value of
        one of these mappings are dropped before the new rows go in.

    Returns
    -------
    pandas.DataFrame
        The table as written.
    """
    path = Path(path)
    new = pd.DataFrame(list(rows), columns=list(columns))
    with locked(path):
        if path.exists():
            old = pd.read_csv(path, keep_default_na=False, na_values=[""])
            for column in columns:
                if column not in old.columns:
                    old[column] = None
            old = old[list(columns)]
            for scope in replace:
                old = old[~np.logical_and.reduce([_equals(old[c], v) for c, v in scope.items()])]
            combined = pd.concat([old.astype(object), new.astype(object)], ignore_index=True)
        else:
            combined = new.astype(object)
        keys = combined[list(key)].astype(str)
        combined = sort_by_key(combined[~keys.duplicated(keep="last")], key)
        write_csv(path, combined)
    return combined


def sort_by_key(frame: pd.DataFrame, key: Sequence[str]) -> pd.DataFrame:
    """Rows in key order (numbers by value, text as text), so a table's bytes do not depend on write order.

    Parameters
    ----------
    frame : pandas.DataFrame
        The table.
    key : sequence of str
        Columns that identify a row.

    Returns
    -------
    pandas.DataFrame
        The rows sorted, with a fresh index.
    """
    def order(column: pd.Series) -> pd.Series:
        numbers = pd.to_numeric(column, errors="coerce")
        if numbers.notna().all():
            return numbers
        return column.astype(str)

    return frame.sort_values(list(key), key=order, kind="mergesort").reset_index(drop=True)


def _equals(column: pd.Series, value: Any) -> np.ndarray:
    """Which cells equal ``value``: numerically for numbers (a CSV may read 5 back as 5.0), else as text."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return (pd.to_numeric(column, errors="coerce") == value).to_numpy()
    return (column.astype(str) == str(value)).to_numpy()
