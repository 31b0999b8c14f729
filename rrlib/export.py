"""Static PNG export of every saved figure, for papers.

Plotly's kaleido renders through a headless Chrome; Debian's ``chromium``
package works. Figures are exported in one browser session, and only those
whose PNG is missing or older than the figure.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rrlib.config import results_dir

PNG_WIDTH, PNG_HEIGHT, PNG_SCALE = 1000, 560, 2  # 2000x1120 pixels: sharp in print


def chrome_available() -> bool:
    """Whether a Chrome or Chromium binary is on the PATH."""
    return any(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"))


def export_pngs(folder: Path | None = None) -> list[Path]:
    """Render every ``results/figures/**/*.json`` figure to a PNG beside it.

    Parameters
    ----------
    folder : Path, optional
        Defaults to ``results/figures``.

    Returns
    -------
    list of Path
        The PNGs written now (up-to-date ones are skipped).

    Raises
    ------
    RuntimeError
        If no Chrome/Chromium is installed (callers decide whether that is fatal).
    """
    import plotly.io as pio

    folder = folder or results_dir() / "figures"
    todo = [p for p in sorted(folder.rglob("*.json"))
            if not p.with_suffix(".png").exists() or p.with_suffix(".png").stat().st_mtime < p.stat().st_mtime]
    if not todo:
        return []
    if not chrome_available():
        raise RuntimeError("PNG export needs Chrome or Chromium (apt-get install chromium)")
    figures = [pio.from_json(p.read_text()) for p in todo]
    targets = [p.with_suffix(".png") for p in todo]
    pio.write_images(figures, targets, width=PNG_WIDTH, height=PNG_HEIGHT, scale=PNG_SCALE)
    return targets
