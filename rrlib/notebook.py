"""Display helpers for the Day notebooks: tables, data-driven text, the response explorer.

Outputs are deterministic (no random ids, fixed rounding) so re-executed
notebooks compare equal under nbval. User errors raised in a notebook print
as one line instead of a traceback.
"""

from __future__ import annotations

import html
from typing import Any, Sequence

import pandas as pd


REDACT_KEEP_WORDS = 6  # words of a redacted completion left visible in the book


def setup() -> None:
    """Prepare a notebook kernel: stable pandas display, quiet library progress bars.

    Call once at the top of a notebook. User errors (:class:`RRError`: a bad
    file, an unknown model, a wrong parameter) carry a one-line message naming
    the problem and the fix; ``rr run`` reports just that line.
    """
    pd.set_option("display.max_colwidth", 120)
    pd.set_option("display.precision", 3)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass


def table(frame: pd.DataFrame, digits: int = 3, index: bool = False, caption: str | None = None,
          scientific: Sequence[str] = ()) -> Any:
    """Render a DataFrame as a plain, deterministic HTML table.

    Parameters
    ----------
    frame : pandas.DataFrame
        The table.
    digits : int
        Decimal places for floats.
    index : bool
        Show the index.
    caption : str, optional
        A caption above the table.
    scientific : sequence of str
        Columns shown in scientific notation (FLOPs, token counts).

    Returns
    -------
    IPython.display.HTML
        Displayable table.
    """
    from IPython.display import HTML

    shown = frame.copy()
    for column in scientific:
        shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{float(v):.3g}")
    for column in shown.columns:
        if column not in scientific and pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}f}")
    body = shown.to_html(index=index, border=0, classes="rr-table", escape=True, na_rep="")
    head = f"<p><strong>{html.escape(caption)}</strong></p>" if caption else ""
    return HTML(head + body)


def say(text: str) -> Any:
    """Display Markdown written from data (numbers computed in the cell)."""
    from IPython.display import Markdown

    return Markdown(text)


def redact(text: str, keep_words: int = REDACT_KEEP_WORDS) -> str:
    """Keep the first words of a completion and replace the rest with a marker.

    Parameters
    ----------
    text : str
        A model completion.
    keep_words : int
        Words left visible.

    Returns
    -------
    str
        E.g. ``"Sure, here is an overview. … [redacted: 182 chars]"``.
    """
    words = str(text).split()
    if len(words) <= keep_words:
        kept = " ".join(words)
        hidden = 0
    else:
        kept = " ".join(words[:keep_words])
        hidden = len(str(text)) - len(kept)
    return f"{kept} … [redacted: {max(hidden, 0)} chars]" if hidden > 0 else kept


def redact_frame(judged: pd.DataFrame, enabled: bool, column: str = "response",
                 keep_refusals: bool = False) -> pd.DataFrame:
    """Redact completions to harmful prompts for display.

    Parameters
    ----------
    judged : pandas.DataFrame
        Responses to harmful prompts (with a ``refused`` column when ``keep_refusals``).
    enabled : bool
        Redact when True (the published book's default).
    column : str
        The text column.
    keep_refusals : bool
        Show in full only the responses the judge's four-way verdict calls clean
        refusals (``verdict == "refusal"``; a refusal mixed with content is
        ``partial`` and stays redacted). Off: every completion is redacted.

    Returns
    -------
    pandas.DataFrame
        A copy with the completions redacted.
    """
    out = judged.copy()
    if enabled:
        mask = pd.Series(True, index=out.index)
        if keep_refusals and "verdict" in out:
            mask = out["verdict"].astype(str) != "refusal"
        elif keep_refusals and "refused" in out:
            mask = ~out["refused"].astype(bool)
        out.loc[mask, column] = out.loc[mask, column].map(redact)
    return out


class Explorer:
    """Browse responses by category: a tab per category, each a table of responses.

    The tabs switch in the browser, with no kernel behind them, so the
    explorer works live in Jupyter and in the static book alike (its widget
    state is saved with the executed notebook). The mimebundle also carries a
    plain HTML table for renderers without widget support, and for nbval.
    """

    def __init__(self, responses: pd.DataFrame, title: str, columns: Sequence[str], per_tab: int = 25) -> None:
        self.responses = responses.reset_index(drop=True)
        self.title = title
        self.columns = list(columns)
        self.per_tab = per_tab

    def _groups(self) -> list[tuple[str, pd.DataFrame]]:
        frame = self.responses
        if "category" not in frame:
            return [("all", frame)]
        return [(str(c), rows) for c, rows in frame.groupby("category", sort=True)]

    def _table(self, rows: pd.DataFrame) -> str:
        shown = rows[self.columns].head(self.per_tab)
        more = len(rows) - len(shown)
        note = f"<p><em>{more} more in results/runs/&lt;model&gt;/responses/</em></p>" if more > 0 else ""
        return shown.to_html(index=False, border=0, classes="rr-table rr-explorer", escape=True) + note

    def static_html(self) -> str:
        """Every category's table in one collapsible block (for non-widget renderers)."""
        parts = [f"<details><summary>{html.escape(name)} ({len(rows)})</summary>{self._table(rows)}</details>"
                 for name, rows in self._groups()]
        return f"<p><strong>{html.escape(self.title)}</strong> ({len(self.responses)} responses)</p>" + "".join(parts)

    def widget(self) -> Any:
        """The explorer widget: tabs of per-category tables."""
        import ipywidgets as w

        groups = self._groups()
        tabs = w.Tab(children=[w.HTML(self._table(rows)) for _, rows in groups],
                     titles=[f"{name} ({len(rows)})" for name, rows in groups])
        return w.VBox([w.HTML(f"<strong>{html.escape(self.title)}</strong> ({len(self.responses)} responses)"), tabs])

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle = {"text/html": self.static_html(), "text/plain": f"<explorer: {self.title}>"}
        live = self.widget()._repr_mimebundle_()
        view = live.get("application/vnd.jupyter.widget-view+json") if isinstance(live, dict) else None
        if view:
            bundle["application/vnd.jupyter.widget-view+json"] = view
        return bundle


def explorer(responses: pd.DataFrame, title: str = "Response explorer",
             columns: Sequence[str] = ("id", "refused", "prompt", "response")) -> Explorer:
    """Return a response explorer for display.

    Parameters
    ----------
    responses : pandas.DataFrame
        Judged responses (already redacted where needed), with a ``category`` column for the tabs.
    title : str
        Heading.
    columns : sequence of str
        Columns to show (missing ones are skipped).

    Returns
    -------
    Explorer
        Tabs per category, live in Jupyter and in the static book.
    """
    present = [c for c in columns if c in responses.columns]
    return Explorer(responses, title, present)


def parameters_table(params: dict[str, Any]) -> Any:
    """The run's parameters (as injected by papermill) as a table; the raw parameter cells are hidden in the book."""
    rows = [{"parameter": k, "value": repr(v)} for k, v in params.items()]
    return table(pd.DataFrame(rows), caption="Parameters of this run")
