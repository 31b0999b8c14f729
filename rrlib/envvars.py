"""Environment-variable overrides scoped to a block (used by the runner and the benchmarks)."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator


@contextlib.contextmanager
def temporary_env(**values: str | None) -> Iterator[None]:
    """Set (or, with ``None``, remove) environment variables for the block, then restore them.

    Parameters
    ----------
    **values : str or None
        Variable name to value; ``None`` removes the variable inside the block.

    Yields
    ------
    None
    """
    saved = {key: os.environ.get(key) for key in values}
    try:
        _apply(values)
        yield
    finally:
        _apply(saved)


def _apply(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
