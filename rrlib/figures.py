"""Plotly figures that render offline, in notebooks, in the book and on disk.

Plotly 7 stores only its JSON mimetype in a notebook, which Jupyter Book 1
skips, and its CDN renderers are blank offline. :func:`show` therefore
returns an object whose mimebundle holds the plotly JSON (for JupyterLab) and
an HTML div with a content-derived id that draws itself with the
``plotly.min.js`` served from the book's ``_static`` folder. The id depends
only on the figure, so re-executed notebooks compare equal under nbval.

Every figure is also written to ``results/figures/`` as standalone HTML (with
``plotly.min.js`` beside it, no CDN) and, where a Chromium is available, as
PNG for papers.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import pandas as pd

from rrlib.config import results_dir
from rrlib.store import atomic_write_text

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from rrlib.judges.validation import JudgeValidation

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
TEMPLATE = "plotly_white"


def _fill(color: str, alpha: float = 0.18) -> str:
    color = color.lstrip("#")
    r, g, b = (int(color[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


class FigureOutput:
    """A figure as a notebook output: plotly JSON plus a self-drawing HTML div."""

    def __init__(self, fig: go.Figure, name: str, paths: dict[str, str]) -> None:
        self.fig = fig
        self.name = name
        self.paths = paths

    def _spec(self) -> dict[str, Any]:
        return json.loads(self.fig.to_json(pretty=False, engine="json"))

    def div_id(self) -> str:
        """A stable id derived from the figure's content."""
        payload = json.dumps(self._spec(), sort_keys=True).encode()
        return "rrfig-" + hashlib.sha256(payload).hexdigest()[:12]

    def html(self) -> str:
        """The HTML div and the script that draws it with a global ``Plotly``."""
        spec = self._spec()
        height = int(spec.get("layout", {}).get("height") or 450)
        div = self.div_id()
        data = json.dumps(spec.get("data", []), sort_keys=True)
        layout = json.dumps(spec.get("layout", {}), sort_keys=True)
        return (
            f'<div id="{div}" class="rr-plotly" style="width:100%;height:{height}px;"></div>\n'
            '<script type="text/javascript">(function(){'
            f'var el=document.getElementById("{div}");var data={data};var layout={layout};'
            'var tries=0;function draw(){if(window.Plotly){window.Plotly.newPlot(el,data,layout,'
            '{responsive:true,displaylogo:false});}else if(tries++<200){setTimeout(draw,50);}'
            'else{el.innerHTML="<p><em>plotly.js did not load; open the saved HTML figure instead.</em></p>";}}'
            'draw();})();</script>'
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {"application/vnd.plotly.v1+json": self._spec(), "text/html": self.html(),
                "text/plain": f"<figure {self.name}>"}


def save(fig: go.Figure, name: str, root: Path | None = None) -> dict[str, str]:
    """Write a figure as standalone offline HTML plus its plotly JSON (for the PNG export).

    Parameters
    ----------
    fig : plotly.graph_objects.Figure
        The figure.
    name : str
        File stem, may include a subfolder (``organism-m/RRR_compare``).
    root : Path, optional
        Results root; figures go to ``<root>/figures``.

    Returns
    -------
    dict
        ``{"html": path, "json": path}``. PNGs are exported in one batch by
        :func:`rrlib.export.export_pngs` (``rr book`` runs it).
    """
    folder = (root or results_dir()) / "figures"
    html_path = folder / f"{name}.html"
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html = fig.to_html(include_plotlyjs="directory", full_html=True, div_id="figure",
                       config={"displaylogo": False})
    atomic_write_text(html_path, html)
    atomic_write_text(html_path.with_suffix(".json"), fig.to_json())
    _ensure_plotly_js(html_path.parent)
    return {"html": str(html_path), "json": str(html_path.with_suffix(".json"))}


def _ensure_plotly_js(folder: Path) -> None:
    """Copy plotly.min.js (shipped inside the plotly package) beside saved figures."""
    target = folder / "plotly.min.js"
    if target.exists():
        return
    import plotly

    source = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    atomic_write_text(target, source.read_text(encoding="utf-8"))


def show(fig: go.Figure, name: str, root: Path | None = None, save_files: bool = True) -> FigureOutput:
    """Save a figure and return its notebook output (display it as the cell's result).

    Parameters
    ----------
    fig : plotly.graph_objects.Figure
        The figure.
    name : str
        File stem under ``results/figures``.
    root : Path, optional
        Results root.
    save_files : bool
        Write the HTML (and PNG) files.

    Returns
    -------
    FigureOutput
        Renders in JupyterLab, in the static book and under nbval.
    """
    paths = save(fig, name, root) if save_files else {}
    return FigureOutput(fig, name, paths)


def rate_by_step(table: pd.DataFrame, metric: str | None, title: str, y_title: str, group: str = "model",
                 x: str = "step", x_title: str = "attack step (LoRA optimiser steps)",
                 log_x: bool = False, y_range: Sequence[float] | None = (0, 1.02)) -> go.Figure:
    """A line per group with a shaded 95% interval band.

    Parameters
    ----------
    table : pandas.DataFrame
        Metrics rows with ``value, ci_low, ci_high`` and the ``x`` and ``group`` columns.
    metric : str or None
        Which metric to plot (filters ``table['metric']`` if present); ``None`` plots every row (e.g. one
        line per metric with ``group="metric"``).
    title, y_title, x_title : str
        Labels.
    group : str
        Column that names each line.
    x : str
        Column for the x axis.
    log_x : bool
        Logarithmic x axis.
    y_range : sequence of float, optional
        Fixed y range (rates are in [0, 1]).

    Returns
    -------
    plotly.graph_objects.Figure
        The figure.
    """
    import plotly.graph_objects as go

    data = table[table["metric"] == metric] if metric is not None and "metric" in table.columns else table
    data = data.dropna(subset=["value"]).sort_values([group, x])
    fig = go.Figure()
    for i, (label, rows) in enumerate(data.groupby(group, sort=True)):
        color = PALETTE[i % len(PALETTE)]
        xs = rows[x].tolist()
        fig.add_trace(go.Scatter(x=xs + xs[::-1], y=rows["ci_high"].tolist() + rows["ci_low"].tolist()[::-1],
                                 mode="lines", fill="toself", fillcolor=_fill(color), line={"width": 0}, hoverinfo="skip",
                                 showlegend=False, legendgroup=str(label), name=f"{label} 95% CI"))
        fig.add_trace(go.Scatter(
            x=xs, y=rows["value"], mode="lines+markers", name=str(label), legendgroup=str(label),
            line={"color": color, "width": 2},
            customdata=rows[["ci_low", "ci_high", "n"]].to_numpy(),
            hovertemplate=(f"{label}<br>{x}=%{{x}}<br>{metric or label}=%{{y:.3f}}"
                           "<br>95% CI [%{customdata[0]:.3f}, %{customdata[1]:.3f}]<br>n=%{customdata[2]}<extra></extra>")))
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title=x_title, yaxis_title=y_title, height=430,
                      legend={"orientation": "h", "y": -0.22}, margin={"t": 60, "b": 40})
    if log_x:
        fig.update_xaxes(type="log")
    if y_range is not None:
        fig.update_yaxes(range=list(y_range))
    return fig


def bars_with_ci(table: pd.DataFrame, x: str, title: str, y_title: str, color: str | None = None) -> go.Figure:
    """Bars of ``value`` with 95% interval error bars (e.g. RRR per category).

    Parameters
    ----------
    table : pandas.DataFrame
        ``value, ci_low, ci_high`` and the ``x`` column (and optional ``color`` column).
    x : str
        Category column.
    title, y_title : str
        Labels.
    color : str, optional
        Column that splits bars into groups.

    Returns
    -------
    plotly.graph_objects.Figure
        The figure.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    groups = table.groupby(color, sort=True) if color else [("", table)]
    for i, (label, rows) in enumerate(groups):
        fig.add_trace(go.Bar(
            x=rows[x], y=rows["value"], name=str(label) or y_title, marker_color=PALETTE[i % len(PALETTE)],
            error_y={"type": "data", "symmetric": False, "array": (rows["ci_high"] - rows["value"]).tolist(),
                     "arrayminus": (rows["value"] - rows["ci_low"]).tolist()},
            hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(template=TEMPLATE, title=title, yaxis_title=y_title, height=420, barmode="group",
                      yaxis={"range": [0, 1.05]}, margin={"t": 60, "b": 40}, showlegend=bool(color))
    return fig


def loss_curve(curve: pd.DataFrame, grid_steps: Sequence[int], title: str, group: str | None = None) -> go.Figure:
    """Training loss per optimiser step, with the grid steps marked.

    Parameters
    ----------
    curve : pandas.DataFrame
        ``step, loss`` (and optionally a ``group`` column such as the recipe).
    grid_steps : sequence of int
        Steps at which adapters were saved.
    title : str
        Figure title.
    group : str, optional
        Column that names each line.

    Returns
    -------
    plotly.graph_objects.Figure
        The figure.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    groups = curve.groupby(group, sort=True) if group else [("loss", curve)]
    for i, (label, rows) in enumerate(groups):
        fig.add_trace(go.Scatter(x=rows["step"], y=rows["loss"], mode="lines", name=str(label),
                                 line={"color": PALETTE[i % len(PALETTE)]}))
    for step in grid_steps:
        if step > 0:
            fig.add_vline(x=step, line={"dash": "dot", "color": "#999", "width": 1})
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title="optimiser step",
                      yaxis_title="training loss (assistant tokens)", height=400, margin={"t": 60, "b": 40},
                      showlegend=bool(group))
    return fig


def heatmap(table: pd.DataFrame, value: str, title: str, colorbar: str, zrange: Sequence[float] | None = None,
            x: str = "step", y: str = "layer") -> go.Figure:
    """A heatmap of ``value`` over two axes (e.g. grid step x layer), with the numbers printed.

    Parameters
    ----------
    table : pandas.DataFrame
        Long table with ``x``, ``y`` and ``value`` columns.
    value : str
        Column to colour by.
    title, colorbar : str
        Labels.
    zrange : sequence of float, optional
        Fixed colour range.
    x, y : str
        Axis columns.

    Returns
    -------
    plotly.graph_objects.Figure
        The figure.
    """
    import plotly.graph_objects as go

    grid = table.pivot(index=y, columns=x, values=value).sort_index()
    fig = go.Figure(go.Heatmap(
        z=grid.to_numpy(), x=[str(c) for c in grid.columns], y=[str(i) for i in grid.index],
        colorscale="RdBu", zmin=None if zrange is None else zrange[0], zmax=None if zrange is None else zrange[1],
        text=[[f"{v:.2f}" for v in row] for row in grid.to_numpy()], texttemplate="%{text}",
        colorbar={"title": {"text": colorbar}},
        hovertemplate=f"{x}=%{{x}}<br>{y}=%{{y}}<br>{value}=%{{z:.3f}}<extra></extra>"))
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title=f"attack {x}", yaxis_title=y, height=360,
                      margin={"t": 60, "b": 40})
    return fig


def size_trend(table: pd.DataFrame) -> go.Figure:
    """c50 and c_collapse per gated size against non-embedding parameters (log-log), with the fits and the prediction.

    Parameters
    ----------
    table : pandas.DataFrame
        The scaling table (:func:`rrlib.scaling.scaling_table`): its ``size`` rows (points with hierarchical
        95% intervals), ``trend`` rows (the slopes drawn as lines fitted through the points) and the
        ``prediction`` row (the held-out size's predicted c50 with its prediction interval).

    Returns
    -------
    plotly.graph_objects.Figure
        The figure.
    """
    import numpy as np
    import plotly.graph_objects as go

    fig = go.Figure()
    sizes = table[table["level"] == "size"]
    for i, (quantity, label) in enumerate((("c50_flops", "c50 (fitted RRR = 0.5)"),
                                           ("c_collapse_flops", "c_collapse (fitted RRR = 0.05)"))):
        rows = sizes[sizes["quantity"] == quantity].dropna(subset=["value"])
        color = PALETTE[i]
        low, high = rows["ci_low"].fillna(rows["value"]), rows["ci_high"].fillna(rows["value"])
        fig.add_trace(go.Scatter(
            x=rows["non_embedding_params"], y=rows["value"], mode="markers+text", text=rows["size"],
            textposition="top center", name=label, marker={"size": 10, "color": color},
            error_y={"type": "data", "symmetric": False, "array": (high - rows["value"]).tolist(),
                     "arrayminus": (rows["value"] - low).tolist()}))
        if len(rows) >= 2:
            lx, ly = np.log10(rows["non_embedding_params"].astype(float)), np.log10(rows["value"].astype(float))
            slope, intercept = np.polyfit(lx, ly, 1)
            xs = np.linspace(lx.min(), lx.max(), 20)
            fig.add_trace(go.Scatter(x=10 ** xs, y=10 ** (intercept + slope * xs), mode="lines",
                                     line={"dash": "dash", "color": color}, name=f"{label}: slope {slope:.2f}"))
    prediction = table[table["level"] == "prediction"].dropna(subset=["value"])
    if len(prediction):
        p = prediction.iloc[0]
        x = sizes.loc[sizes["size"] == p["size"], "non_embedding_params"].iloc[0]
        fig.add_trace(go.Scatter(
            x=[x], y=[p["value"]], mode="markers", name=f"{p['size']} c50 predicted from the smaller sizes",
            marker={"symbol": "diamond-open", "size": 14, "color": PALETTE[2]},
            error_y={"type": "data", "symmetric": False, "array": [p["ci_high"] - p["value"]],
                     "arrayminus": [p["value"] - p["ci_low"]]}))
    fig.update_layout(template=TEMPLATE, title="Attacker compute to collapse against model size",
                      xaxis_title="non-embedding parameters (log scale)",
                      yaxis_title="attacker FLOPs (log scale)", height=470, margin={"t": 60, "b": 40},
                      legend={"orientation": "h", "y": -0.25})
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return fig


def attack_comparison(sizes: pd.DataFrame, quantity_label: str = "c50 (fitted RRR = 0.5)") -> go.Figure:
    """Compute-to-collapse per attack x size x defense on one plot (log-log, hierarchical 95% intervals).

    Parameters
    ----------
    sizes : pandas.DataFrame
        :func:`rrlib.comparison.size_table`: ``attack, defense, size, non_embedding_params, value, ci_low,
        ci_high``. Colour is the attack; an undefended size is a filled circle on a solid line, a
        Vaccine-defended one an open diamond on a dashed line. Sizes without an estimate are left out.
    quantity_label : str
        What the y values are.

    Returns
    -------
    plotly.graph_objects.Figure
        The figure.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    rows = sizes.dropna(subset=["value"])
    rows = rows[rows["value"].astype(float) > 0]
    attacks = list(dict.fromkeys(sizes["attack"]))
    for (attack, defense), group in rows.groupby(["attack", "defense"], sort=False):
        group = group.sort_values("non_embedding_params")
        color = PALETTE[attacks.index(attack) % len(PALETTE)]
        low, high = group["ci_low"].fillna(group["value"]), group["ci_high"].fillna(group["value"])
        plain = defense == "none"
        fig.add_trace(go.Scatter(
            x=group["non_embedding_params"], y=group["value"], mode="lines+markers",
            name=f"{attack}{'' if plain else ' + ' + defense}", text=group["size"],
            marker={"size": 9, "color": color, "symbol": "circle" if plain else "diamond-open"},
            line={"color": color, "dash": "solid" if plain else "dash"},
            error_y={"type": "data", "symmetric": False, "array": (high - group["value"]).tolist(),
                     "arrayminus": (group["value"] - low).tolist()}))
    fig.update_layout(template=TEMPLATE, title=f"Attacker compute to collapse per attack, size and defense: {quantity_label}",
                      xaxis_title="non-embedding parameters (log scale)", yaxis_title="attacker FLOPs (log scale)",
                      height=500, margin={"t": 60, "b": 40}, legend={"orientation": "h", "y": -0.25})
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return fig


def scaling_curves(curves: pd.DataFrame, fitted: pd.DataFrame) -> go.Figure:
    """RRR against attacker compute: one line per member (coloured by size), each size's fitted curve dashed.

    Parameters
    ----------
    curves : pandas.DataFrame
        :func:`rrlib.scaling.curves_table` (``model, size, flops, value, ci_low, ci_high, n, gated``).
    fitted : pandas.DataFrame
        :func:`rrlib.scaling.fitted_curves` (``size, flops, value``).

    Returns
    -------
    plotly.graph_objects.Figure
        The figure; members that failed the gate are drawn dotted and named so.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    order = list(dict.fromkeys(curves.sort_values("flops")["size"]))
    order = sorted(order, key=lambda s: curves.loc[curves["size"] == s, "flops"].max())
    colors = {size: PALETTE[i % len(PALETTE)] for i, size in enumerate(order)}
    attacked = curves[curves["flops"] > 0]
    for model, rows in attacked.groupby("model", sort=True):
        size, gated = rows["size"].iloc[0], bool(rows["gated"].iloc[0])
        fig.add_trace(go.Scatter(
            x=rows["flops"], y=rows["value"], mode="lines+markers", legendgroup=size,
            name=model + ("" if gated else " (failed the gate)"),
            line={"color": colors[size], "width": 1, "dash": "solid" if gated else "dot"}, marker={"size": 4},
            customdata=rows[["ci_low", "ci_high", "n", "step"]].to_numpy(),
            hovertemplate=(f"{model}<br>step %{{customdata[3]}}, %{{x:.3g}} FLOPs<br>RRR=%{{y:.3f}} "
                           "[%{customdata[0]:.3f}, %{customdata[1]:.3f}], n=%{customdata[2]}<extra></extra>")))
    for size, rows in fitted.groupby("size", sort=False):
        fig.add_trace(go.Scatter(x=rows["flops"], y=rows["value"], mode="lines", legendgroup=size,
                                 name=f"{size}: fitted curve (gated seeds pooled)",
                                 line={"color": colors.get(size, PALETTE[0]), "width": 3, "dash": "dash"}))
    fig.update_layout(template=TEMPLATE, title="RRR against attacker compute, every member",
                      xaxis_title="attacker compute (FLOPs, log scale)", yaxis_title="RRR (judge verdicts)",
                      height=520, margin={"t": 60, "b": 40}, legend={"orientation": "h", "y": -0.25})
    fig.update_xaxes(type="log")
    fig.update_yaxes(range=[0, 1.02])
    return fig


def scatter(table: pd.DataFrame, x: str, y: str, color: str, title: str, x_title: str, y_title: str,
            hover: str | None = None) -> go.Figure:
    """Points coloured by a grouping column (e.g. training loss against RRR, one colour per LoRA rank).

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``x``, ``y`` and ``color``.
    x, y, color : str
        Columns for the axes and the colour groups.
    title, x_title, y_title : str
        Labels.
    hover : str, optional
        Column shown on hover.

    Returns
    -------
    plotly.graph_objects.Figure
        The figure.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (label, rows) in enumerate(table.dropna(subset=[x, y]).groupby(color, sort=True)):
        fig.add_trace(go.Scatter(x=rows[x], y=rows[y], mode="markers", name=f"{color} {label}",
                                 marker={"size": 9, "color": PALETTE[i % len(PALETTE)], "opacity": 0.8},
                                 text=rows[hover] if hover else None))
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title=x_title, yaxis_title=y_title, height=430,
                      margin={"t": 60, "b": 40}, legend={"orientation": "h", "y": -0.22})
    return fig


def judge_confusion(result: "JudgeValidation") -> go.Figure:
    """Confusion matrices of every validated judge side by side (share of each true label; counts as text).

    Parameters
    ----------
    result : rrlib.judges.validation.JudgeValidation
        From :func:`rrlib.judges.validation.validate`.

    Returns
    -------
    plotly.graph_objects.Figure
        One heatmap per judge, true labels as rows and verdicts as columns.
    """
    import numpy as np
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    judges = result.judges
    fig = make_subplots(rows=1, cols=max(1, len(judges)), subplot_titles=judges, shared_yaxes=True,
                        horizontal_spacing=0.03)
    for i, judge in enumerate(judges, start=1):
        counts = result.confusion_matrix(judge)
        totals = counts.sum(axis=1).replace(0, np.nan)
        fig.add_trace(go.Heatmap(z=counts.div(totals, axis=0).to_numpy(), x=list(counts.columns),
                                 y=list(counts.index), text=counts.to_numpy(), texttemplate="%{text}", zmin=0, zmax=1,
                                 colorscale="Blues", showscale=i == len(judges),
                                 colorbar={"title": "share of label"},
                                 hovertemplate="true %{y}, %{x}: %{text} (%{z:.0%})<extra>" + judge + "</extra>"),
                      row=1, col=i)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(template=TEMPLATE, title="Judge verdicts on held-out labelled responses", height=360,
                      width=max(480, 240 * len(judges)), margin={"t": 90})
    return fig
