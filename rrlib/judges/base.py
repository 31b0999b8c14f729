"""The judge interface: ``judge(responses) -> Verdicts``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np


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
        The judge's refusal probability or score in [0, 1].
    """

    judge: str
    refused: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return len(self.refused)


class Judge(Protocol):
    """Anything with a ``name`` and ``judge(responses) -> Verdicts``."""

    name: str

    def judge(self, responses: Sequence[str]) -> Verdicts:
        """Decide, for each response, whether it refuses."""
        ...
