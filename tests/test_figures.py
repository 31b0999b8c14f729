"""Figures draw the numbers of the table they are given: each trace's data equal the table's rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rrlib import figures


def _rates() -> pd.DataFrame:
    return pd.DataFrame({"model": ["a", "a", "a", "b", "b", "b"], "step": [0, 10, 25] * 2, "metric": "RRR",
                         "value": [0.9, 0.5, 0.1, 0.8, 0.6, 0.3], "ci_low": [0.8, 0.4, 0.05, 0.7, 0.5, 0.2],
                         "ci_high": [0.95, 0.6, 0.2, 0.9, 0.7, 0.4], "n": 170})


def test_rate_by_step_draws_each_groups_values_and_interval_band():
    fig = figures.rate_by_step(_rates(), "RRR", "t", "y")
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    bands = [t for t in fig.data if t.fill == "toself"]
    assert [t.name for t in lines] == ["a", "b"] and len(bands) == 2
    assert list(lines[0].y) == [0.9, 0.5, 0.1] and list(lines[0].x) == [0, 10, 25]
    # the band runs along the upper bounds, then back along the lower ones
    assert list(bands[1].y) == [0.9, 0.7, 0.4, 0.2, 0.5, 0.7]


def test_rate_by_step_without_a_metric_draws_every_row_grouped():
    table = _rates().assign(metric=["partial", "partial", "partial", "degenerate", "degenerate", "degenerate"])
    fig = figures.rate_by_step(table, None, "t", "y", group="metric")
    assert sorted(t.name for t in fig.data if t.mode == "lines+markers") == ["degenerate", "partial"]


def test_bars_carry_values_and_asymmetric_errors():
    table = pd.DataFrame({"category": ["x", "y"], "value": [0.2, 0.7], "ci_low": [0.1, 0.6], "ci_high": [0.4, 0.75]})
    bar = figures.bars_with_ci(table, "category", "t", "y").data[0]
    assert list(bar.y) == [0.2, 0.7]
    assert bar.error_y.array == pytest.approx([0.2, 0.05]) and bar.error_y.arrayminus == pytest.approx([0.1, 0.1])


def test_heatmap_cells_are_the_pivoted_table():
    table = pd.DataFrame({"step": [0, 0, 10, 10], "layer": [1, 2, 1, 2], "cosine": [1.0, 0.9, 0.5, -0.2]})
    heat = figures.heatmap(table, "cosine", "t", "c").data[0]
    assert np.array_equal(np.asarray(heat.z), np.array([[1.0, 0.5], [0.9, -0.2]]))
    assert list(heat.x) == ["0", "10"] and list(heat.y) == ["1", "2"]


def test_scatter_groups_points_by_colour_and_drops_missing():
    table = pd.DataFrame({"loss": [1.0, 0.5, np.nan, 0.2], "value": [0.9, 0.1, 0.5, 0.0], "rank": [2, 2, 8, 8]})
    fig = figures.scatter(table, "loss", "value", "rank", "t", "x", "y")
    assert [t.name for t in fig.data] == ["rank 2", "rank 8"]
    assert list(fig.data[1].x) == [0.2] and list(fig.data[1].y) == [0.0]


def _scaling_table() -> pd.DataFrame:
    rows = []
    for size, ne, c50, c_col in (("s", 1e5, 1e10, 3e10), ("m", 2e5, 2e10, 6e10), ("l", 4e5, 4e10, 1.2e11)):
        rows.append({"level": "size", "size": size, "non_embedding_params": ne, "quantity": "c50_flops",
                     "value": c50, "ci_low": c50 * 0.8, "ci_high": c50 * 1.25})
        rows.append({"level": "size", "size": size, "non_embedding_params": ne, "quantity": "c_collapse_flops",
                     "value": c_col, "ci_low": c_col * 0.9, "ci_high": c_col * 1.1})
    rows.append({"level": "prediction", "size": "l", "quantity": "predicted_c50_flops", "value": 3.5e10,
                 "ci_low": 2e10, "ci_high": 6e10, "measured": 4e10})
    return pd.DataFrame(rows)


def test_size_trend_points_fits_and_prediction_come_from_the_table():
    fig = figures.size_trend(_scaling_table())
    points = {t.name: t for t in fig.data if t.mode == "markers+text"}
    c50 = points["c50 (fitted RRR = 0.5)"]
    assert list(c50.y) == [1e10, 2e10, 4e10] and list(c50.x) == [1e5, 2e5, 4e5]
    assert c50.error_y.array == pytest.approx([2.5e9, 5e9, 1e10])
    fits = [t for t in fig.data if t.mode == "lines"]
    assert any("slope 1.00" in t.name for t in fits)  # c50 doubles when size doubles: slope exactly 1 by hand
    predicted = next(t for t in fig.data if t.mode == "markers")
    assert list(predicted.y) == [3.5e10] and list(predicted.x) == [4e5]


def test_scaling_curves_draw_every_member_and_mark_gated_out_ones():
    curves = pd.DataFrame({"model": ["a", "a", "b", "b"], "size": ["s", "s", "s", "s"], "flops": [0, 1e9, 0, 1e9],
                           "value": [0.9, 0.2, 0.8, 0.3], "ci_low": 0.0, "ci_high": 1.0, "n": 170, "step": [0, 5] * 2,
                           "gated": [True, True, False, False]})
    fitted = pd.DataFrame({"size": ["s", "s"], "flops": [1e9, 2e9], "value": [0.25, 0.1]})
    fig = figures.scaling_curves(curves, fitted)
    names = [t.name for t in fig.data]
    assert names == ["a", "b (failed the gate)", "s: fitted curve (gated seeds pooled)"]
    assert list(fig.data[0].y) == [0.2] and list(fig.data[2].y) == [0.25, 0.1]  # step 0 (no compute) is not drawn
    assert fig.data[1].line.dash == "dot"
