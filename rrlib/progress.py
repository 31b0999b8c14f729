"""Progress bars for long work (generation, training, builds).

Bars are plain-text ``tqdm`` bars on stderr, so they work in a terminal, in
Jupyter and under papermill alike (the book drops stderr). Set
``RR_PROGRESS=0`` to silence them.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm import tqdm


def progress_bar(total: int | None = None, desc: str = "", disable: bool = False, **kwargs: Any) -> tqdm:
    """Return a text progress bar on stderr.

    Parameters
    ----------
    total : int, optional
        Number of units of work.
    desc : str
        Label shown left of the bar.
    disable : bool
        Turn the bar off (it is also off when ``RR_PROGRESS=0``).
    **kwargs
        Passed to :class:`tqdm.tqdm`.

    Returns
    -------
    tqdm.tqdm
        Use as a context manager and call ``update``.
    """
    off = disable or os.environ.get("RR_PROGRESS", "1") == "0"
    return tqdm(total=total, desc=desc, disable=off, file=sys.stderr, dynamic_ncols=True,
                mininterval=0.5, leave=False, **kwargs)
