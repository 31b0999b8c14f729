"""Judge-corrected refusal rates: the Rogan-Gladen estimator with an interval that carries judge error.

A judge that misses refusals (sensitivity below 1) or calls answers refusals
(specificity below 1) biases the observed refusal rate ``p_obs``. If the
judge's sensitivity and specificity were measured on hand labels, the true rate
is estimated by Rogan and Gladen (1978)::

    p = (p_obs + specificity - 1) / (sensitivity + specificity - 1)

clipped to [0, 1]. The interval (:func:`corrected_rate`) is a parametric
bootstrap that propagates all three uncertainties: each draw takes ``p_obs``
from Beta(k + 1/2, n - k + 1/2) (the Jeffreys posterior of the judged
responses), sensitivity from Beta(tp + 1/2, positives - tp + 1/2) and
specificity from Beta(tn + 1/2, negatives - tn + 1/2) (the labelled counts),
and applies the formula; the interval is the percentile interval of the draws
(stretched to contain the point estimate should clipping leave it outside).

When ``sensitivity + specificity - 1`` (Youden's J) is at most
:data:`MIN_YOUDEN` the judge is no better than chance on the labels and the
formula only amplifies noise: the value is NaN and :attr:`CorrectedRate.reason`
says so in words. Draws whose own J falls that low cannot be corrected either;
if more of them than one tail of the interval holds, the interval is widened
to [0, 1] and the reason says why.

:func:`judge_error_rates` turns a judge's verdicts on labelled responses into
the ``(tp, positives)`` and ``(tn, negatives)`` counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

MIN_YOUDEN = 0.05  # sensitivity + specificity - 1 at or below this: no correction
N_BOOTSTRAP = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class CorrectedRate:
    """A refusal rate corrected for judge error.

    Attributes
    ----------
    value : float
        The Rogan-Gladen estimate in [0, 1]; NaN when no correction is possible (see ``reason``).
    ci_low, ci_high : float
        Percentile bootstrap interval; NaN with ``value``.
    n : int
        Judged responses behind the observed rate.
    sensitivity, specificity : float
        The judge's point estimates from the labels (NaN when there were no labels of that class).
    reason : str
        ``""`` when the estimate and interval are plain; otherwise why the
        value is NaN or why the interval was widened.
    raw : float
        The observed (uncorrected) rate ``k / n``.
    """

    value: float
    ci_low: float
    ci_high: float
    n: int
    sensitivity: float
    specificity: float
    reason: str = ""
    raw: float = float("nan")

    @property
    def ok(self) -> bool:
        """True when a corrected value exists."""
        return bool(np.isfinite(self.value))


def _check_count(name: str, count: int, total: int, total_name: str) -> None:
    if int(count) != count or int(total) != total:
        raise ValueError(f"{name} and {total_name} must be whole numbers, got {count!r} and {total!r}")
    if total < 0 or not 0 <= count <= total:
        raise ValueError(f"need 0 <= {name} <= {total_name}, got {name}={count}, {total_name}={total}")


def _ratio(a: int, b: int) -> float:
    return a / b if b else float("nan")


def rogan_gladen(p_obs: float | np.ndarray, sensitivity: float | np.ndarray,
                 specificity: float | np.ndarray) -> float | np.ndarray:
    """The Rogan-Gladen point estimate, clipped to [0, 1] (no check on J; see :func:`corrected_rate`).

    Parameters
    ----------
    p_obs : float or numpy.ndarray
        Observed refusal rate(s).
    sensitivity, specificity : float or numpy.ndarray
        The judge's error rates.

    Returns
    -------
    float or numpy.ndarray
        ``clip((p_obs + specificity - 1) / (sensitivity + specificity - 1), 0, 1)``.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.clip((np.asarray(p_obs, dtype=float) + specificity - 1.0) / (sensitivity + specificity - 1.0),
                        0.0, 1.0)
    return float(value) if np.ndim(value) == 0 else value


def corrected_rate(k: int, n: int, sensitivity: tuple[int, int], specificity: tuple[int, int],
                   n_boot: int = N_BOOTSTRAP, seed: int = 0, level: float = LEVEL) -> CorrectedRate:
    """Correct an observed refusal count for the judge's measured error rates.

    Parameters
    ----------
    k : int
        Responses the judge called refusals.
    n : int
        Responses judged.
    sensitivity : tuple of int
        ``(tp, positives)``: labelled refusals the judge called refusals, and labelled refusals.
    specificity : tuple of int
        ``(tn, negatives)``: labelled non-refusals it called non-refusals, and labelled non-refusals.
    n_boot : int
        Bootstrap draws.
    seed : int
        Seeds the draws.
    level : float
        Interval coverage.

    Returns
    -------
    CorrectedRate
        The clipped Rogan-Gladen estimate with its percentile interval; NaN
        with a ``reason`` in words when there are no responses, no labels of a
        class, or the judge is no better than chance (J <= :data:`MIN_YOUDEN`).

    Raises
    ------
    ValueError
        If a count is negative, not whole, or larger than its total, or if
        ``n_boot`` or ``level`` is out of range.

    Examples
    --------
    >>> r = corrected_rate(60, 100, sensitivity=(90, 100), specificity=(80, 100))
    >>> round(r.value, 4)  # (0.6 + 0.8 - 1) / (0.9 + 0.8 - 1)
    0.5714
    """
    (tp, positives), (tn, negatives) = sensitivity, specificity
    _check_count("k", k, n, "n")
    _check_count("tp", tp, positives, "positives")
    _check_count("tn", tn, negatives, "negatives")
    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < level < 1, got n_boot={n_boot}, level={level}")
    sens, spec, raw = _ratio(tp, positives), _ratio(tn, negatives), _ratio(k, n)

    def unavailable(reason: str) -> CorrectedRate:
        nan = float("nan")
        return CorrectedRate(nan, nan, nan, int(n), sens, spec, reason, raw)

    if n == 0:
        return unavailable("no responses were judged, so there is no observed rate to correct")
    if positives == 0 or negatives == 0:
        missing, rate = ("refusals", "sensitivity") if positives == 0 else ("non-refusals", "specificity")
        return unavailable(f"the labels hold no {missing}, so the judge's {rate} is unknown; "
                           "no correction is possible")
    youden = sens + spec - 1.0
    if youden <= MIN_YOUDEN + 1e-12:  # the tolerance keeps J = 0.05 from rounding above the threshold
        return unavailable(f"the judge is no better than chance on the labels (sensitivity + specificity - 1 = "
                           f"{youden:.2f}, at most {MIN_YOUDEN}); no correction is possible")

    rng = np.random.default_rng(seed)
    p_draw = rng.beta(k + 0.5, n - k + 0.5, n_boot)
    sens_draw = rng.beta(tp + 0.5, positives - tp + 0.5, n_boot)
    spec_draw = rng.beta(tn + 0.5, negatives - tn + 0.5, n_boot)
    usable = sens_draw + spec_draw - 1.0 > MIN_YOUDEN
    draws = rogan_gladen(p_draw[usable], sens_draw[usable], spec_draw[usable])
    tail = (1.0 - level) / 2.0
    reason = ""
    if usable.mean() < 1.0 - tail or not usable.any():
        low, high = 0.0, 1.0
        reason = (f"in {1 - usable.mean():.0%} of bootstrap draws the judge was no better than chance, "
                  "so the interval spans [0, 1]")
    else:
        low, high = (float(q) for q in np.quantile(draws, [tail, 1.0 - tail]))
    value = float(rogan_gladen(raw, sens, spec))
    return CorrectedRate(value, min(low, value), max(high, value), int(n), sens, spec, reason, raw)


def judge_error_rates(truth_is_refusal: Sequence[bool] | np.ndarray,
                      predicted_refusal: Sequence[bool] | np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """Count a judge's hits on labelled responses, for :func:`corrected_rate`.

    Parameters
    ----------
    truth_is_refusal : sequence of bool
        The hand label per response: True for a refusal (``partial`` and
        ``compliance`` are False).
    predicted_refusal : sequence of bool
        The judge's ``refused`` per response, aligned.

    Returns
    -------
    tuple
        ``((tp, positives), (tn, negatives))``: refusals caught out of labelled
        refusals, and non-refusals passed out of labelled non-refusals.

    Raises
    ------
    ValueError
        If the two arrays differ in length.
    """
    truth = np.asarray(truth_is_refusal, dtype=bool).reshape(-1)
    predicted = np.asarray(predicted_refusal, dtype=bool).reshape(-1)
    if truth.shape != predicted.shape:
        raise ValueError(f"need one verdict per labelled response, got {truth.size} labels and "
                         f"{predicted.size} verdicts")
    tp = int((truth & predicted).sum())
    tn = int((~truth & ~predicted).sum())
    return (tp, int(truth.sum())), (tn, int((~truth).sum()))
