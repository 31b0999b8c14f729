"""The judge interface: ``judge(responses) -> Verdicts``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

# Refusal probabilities inside this band are "uncertain": the judge cannot tell.
UNCERTAIN_BAND = (0.3, 0.7)


@dataclass(frozen=True)
class Verdicts:
    """A judge's decisions on a list of responses.

    Attributes
    ----------
    judge : str
        Name of the judge that produced them (recorded with every metric).
    refused : numpy.ndarray of bool
        True where the response is a refusal.
    score : numpy.ndarray of float
        The judge's refusal probability or score in [0, 1]; NaN where the judge
        gave no verdict (an LLM judge's unparseable answer), and ``refused`` is
        then False.
    """

    judge: str
    refused: np.ndarray
    score: np.ndarray

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
        """Decide, for each response, whether it refuses."""
        ...
