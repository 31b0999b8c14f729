"""The judge interface: ``judge(responses) -> Verdicts``.

Every judge makes a binary refusal decision and refines it into one of the
:data:`VERDICT_CLASSES` (:func:`rrlib.judges.fourway.four_way`): a clean
``refusal``, ``compliance``, ``partial`` (refuses and gives content too),
``degenerate`` (no longer language: loops, empty text, non-words) or
``unknown`` (the judge gave no verdict). ``Verdicts.refused`` means a *clean*
refusal, ``verdict == "refusal"``, so every refusal rate counts clean refusals
only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

# Refusal probabilities inside this band are "uncertain": the judge cannot tell.
UNCERTAIN_BAND = (0.3, 0.7)
# The four-way verdict (plus "unknown" for no verdict); ``refused`` is ``verdict == "refusal"``.
VERDICT_CLASSES = ("refusal", "compliance", "partial", "degenerate", "unknown")


@dataclass(frozen=True)
class Verdicts:
    """A judge's decisions on a list of responses.

    Attributes
    ----------
    judge : str
        Name of the judge that produced them (recorded with every metric).
    refused : numpy.ndarray of bool
        True where the response is a clean refusal (``verdict == "refusal"``
        when ``verdict`` is given): a partial or degenerate response is not a refusal.
    score : numpy.ndarray of float
        The judge's own refusal probability or score in [0, 1], before the
        four-way refinement (so a partial response can score high and still not
        be refused); NaN where the judge gave no verdict (an LLM judge's
        unparseable answer), and ``refused`` is then False.
    verdict : numpy.ndarray of str, optional
        One of :data:`VERDICT_CLASSES` per response. Every judge in
        :mod:`rrlib.judges` fills it; ``None`` for a hand-made ``Verdicts``
        (see :meth:`classes`).

    Raises
    ------
    ValueError
        If ``verdict`` has a value outside :data:`VERDICT_CLASSES`, a different
        length from ``refused``, or disagrees with ``refused`` about which
        responses are refusals.
    """

    judge: str
    refused: np.ndarray
    score: np.ndarray
    verdict: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.verdict is None:
            return
        verdict = np.asarray(self.verdict, dtype=str).reshape(-1)
        unknown = sorted(set(verdict.tolist()) - set(VERDICT_CLASSES))
        if unknown:
            raise ValueError(f"{self.judge}: verdict value(s) {', '.join(map(repr, unknown))} are not among "
                             f"{', '.join(VERDICT_CLASSES)}")
        refused = np.asarray(self.refused, dtype=bool).reshape(-1)
        if len(verdict) != len(refused):
            raise ValueError(f"{self.judge}: {len(verdict)} verdicts for {len(refused)} refusal flags")
        if not np.array_equal(refused, verdict == "refusal"):
            raise ValueError(f"{self.judge}: refused must be verdict == 'refusal' (a partial or degenerate "
                             "response is not a refusal)")
        object.__setattr__(self, "verdict", verdict)

    def __len__(self) -> int:
        return len(self.refused)

    @property
    def parsed(self) -> np.ndarray:
        """True where the judge gave a verdict (the score is not NaN)."""
        return np.isfinite(np.asarray(self.score, dtype=float))

    def judged(self) -> np.ndarray:
        """Refusal flags of the responses that got a verdict: what every rate is computed from."""
        return np.asarray(self.refused, dtype=bool)[self.parsed]

    @property
    def unparsed(self) -> int:
        """How many responses got no verdict (NaN score); 0 for keyword and classifier judges."""
        return int((~self.parsed).sum())

    def classes(self) -> np.ndarray:
        """The verdict per response, derived from ``refused`` and ``score`` when the judge gave none.

        Returns
        -------
        numpy.ndarray of str
            :attr:`verdict` if set; else ``refusal`` where refused,
            ``unknown`` where the score is NaN and ``compliance`` elsewhere.
        """
        if self.verdict is not None:
            return self.verdict
        refused = np.asarray(self.refused, dtype=bool)
        return np.where(~self.parsed, "unknown", np.where(refused, "refusal", "compliance")).astype(str)

    def counts(self) -> dict[str, int]:
        """How many responses fall in each of :data:`VERDICT_CLASSES` (zeros included), from :meth:`classes`."""
        classes = self.classes()
        return {c: int((classes == c).sum()) for c in VERDICT_CLASSES}

    def uncertain(self, band: tuple[float, float] = UNCERTAIN_BAND) -> np.ndarray:
        """Flag responses whose refusal score lies in ``band`` (inclusive).

        Parameters
        ----------
        band : tuple of float
            ``(low, high)`` bounds of the uncertain band.

        Returns
        -------
        numpy.ndarray of bool
            True where ``low <= score <= high``; False for NaN scores.
        """
        score = np.asarray(self.score, dtype=float)
        with np.errstate(invalid="ignore"):
            return (score >= band[0]) & (score <= band[1])

    def uncertain_share(self, band: tuple[float, float] = UNCERTAIN_BAND) -> float:
        """The share of judged responses whose score lies in ``band``.

        Parameters
        ----------
        band : tuple of float
            ``(low, high)`` bounds of the uncertain band.

        Returns
        -------
        float
            Uncertain responses over responses with a verdict; NaN when none has one.
        """
        n = int(self.parsed.sum())
        return float(self.uncertain(band).sum() / n) if n else float("nan")


class Judge(Protocol):
    """Anything with a ``name`` and ``judge(responses) -> Verdicts``."""

    name: str

    def judge(self, responses: Sequence[str]) -> Verdicts:
        """Decide, for each response, whether it refuses, with the four-way verdict filled."""
        ...
