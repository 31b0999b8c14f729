"""nbval settings for the golden runs, through nbval's supported hooks and options.

tests/test_nbval_goldens.py runs ``pytest --nbval -p nbval_plugin`` (with this
folder on ``PYTHONPATH``) and :func:`command` builds that command line. Nothing
of nbval is patched:

- :func:`pytest_collectstart` adds :data:`SKIP_COMPARE` to ``skip_compare`` of
  each collected notebook (``nbval.plugin.IPyNbFile``), the attribute nbval
  reads when it compares a cell's outputs.
- ``--nbval-sanitize-with`` passes :data:`SANITIZE_FILE`, whose regex rules mask
  volatile text (figure ids, wall times, addresses, temporary paths, build
  hashes) and cut floats to 3 decimals; tests/test_nbval_sanitize.py checks them.
- ``--nbval-current-env`` runs each notebook in a kernel of this interpreter,
  not whichever kernel the notebook's metadata names.

nbval flattens outputs into keys before comparing: a stream becomes a key
named after the stream (``stdout``, ``stderr``) and each mime type of a display
is its own key. Skipping the ``stderr`` key therefore drops stderr entirely
(the old plugin also filtered stderr in nbval's stream transform; skipping the
key alone has the same effect, so that patch is gone).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable

import pytest
from nbval.plugin import IPyNbFile

SANITIZE_FILE = Path(__file__).resolve().with_name("nbval_sanitize.cfg")

SKIP_COMPARE = (
    # Plotly's JSON is a dict, and nbval sanitises only text, so its float noise
    # cannot be cut to 3 decimals. The same figure is compared as its HTML twin
    # (rrlib.figures), which the sanitize rules normalise.
    "application/vnd.plotly.v1+json",
    # Library chatter (deprecation warnings with absolute paths, progress bars);
    # a finding is never reported on stderr.
    "stderr",
)


def pytest_collectstart(collector: pytest.Collector) -> None:
    """Extend nbval's comparison skips on every notebook it collects."""
    if isinstance(collector, IPyNbFile):
        collector.skip_compare = tuple(collector.skip_compare) + SKIP_COMPARE


def command(notebooks: Iterable[Path | str], rootdir: Path | str, cell_timeout: float = 900) -> list[str]:
    """The pytest command line that checks ``notebooks`` against their saved outputs.

    Parameters
    ----------
    notebooks : iterable of path
        Executed notebooks; each is re-run cell by cell and compared.
    rootdir : path
        pytest's rootdir, a temporary folder; with ``-c os.devnull`` the project's
        pytest settings (testpaths, addopts) do not apply to the notebooks.
    cell_timeout : float
        Seconds one cell may run.

    Returns
    -------
    list of str
        Arguments for :func:`subprocess.run`; run with this folder on ``PYTHONPATH``.
    """
    return [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env",
            "--nbval-sanitize-with", str(SANITIZE_FILE), "--nbval-cell-timeout", str(cell_timeout),
            "-p", "nbval_plugin", "-p", "no:cacheprovider", "-q", "--rootdir", str(rootdir), "-c", os.devnull,
            *map(str, notebooks)]
