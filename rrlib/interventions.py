"""Causal checks on the refusal direction and the RD noise floor.

- **Directional ablation**: project the baseline refusal direction out of every
  layer and measure RRR. If refusal is mediated by the direction, RRR falls.
- **Activation addition**: add the direction after its layer on harmless prompts
  and measure the refusal it induces.
- **RD noise floor**: RD between two baseline generations that differ only in
  the sampling seed, so readers can tell drift from sampling noise.

Generations under hooks bypass the cache: its key does not know about hooks.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from rrlib.config import GenerationConfig
from rrlib.generate import generate
from rrlib.judges import get_judge
from rrlib.metrics import Estimate, proportion
from rrlib.models import LoadedModel
from rrlib.representations import Baseline, activation_addition, directional_ablation


@dataclass
class CausalChecks:
    """Results of the interventions on the baseline model."""

    ablated_rrr: Estimate
    induced_refusal: Estimate
    ablated: pd.DataFrame
    induced: pd.DataFrame


def causal_checks(lm: LoadedModel, harmful: pd.DataFrame, benign: pd.DataFrame, baseline: Baseline,
                  gen: GenerationConfig, judge: str, progress: bool = True) -> CausalChecks:
    """Ablate the direction (harmful prompts) and add it (benign prompts), then judge.

    Parameters
    ----------
    lm : LoadedModel
        The base model (no adapter).
    harmful, benign : pandas.DataFrame
        Eval and benign prompt sets.
    baseline : Baseline
        Directions and the chosen layer from :func:`rrlib.representations.fit_baseline`.
    gen : GenerationConfig
        Decoding settings (the baseline's).
    judge : str
        Judge name.
    progress : bool
        Show progress bars.

    Returns
    -------
    CausalChecks
        RRR with the direction ablated, refusal induced by adding it, and the responses.
    """
    direction = baseline.directions[baseline.layer]
    verdicts = get_judge(judge)
    with directional_ablation(lm, direction):
        ablated = generate(lm, harmful, gen, cache=False, progress=progress, desc="ablation")
    with activation_addition(lm, direction, baseline.layer):
        induced = generate(lm, benign, gen, cache=False, progress=progress, desc="addition")
    ablated_verdicts = verdicts.judge(ablated["response"].tolist())
    induced_verdicts = verdicts.judge(induced["response"].tolist())
    ablated["refused"], induced["refused"] = ablated_verdicts.refused, induced_verdicts.refused
    ablated_rrr = proportion("RRR_ablated", ablated_verdicts.judged(), "harmful prompts")
    induced_refusal = proportion("refusal_induced", induced_verdicts.judged(), "benign prompts")
    return CausalChecks(ablated_rrr, induced_refusal, ablated, induced)
