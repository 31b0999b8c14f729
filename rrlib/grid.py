"""The flagship LoRA grid: steps x rank x seed on one model.

For every (rank, seed) the attack trains once and saves adapters at every grid
step; each adapter is evaluated on the held-out harmful prompts through
:func:`rrlib.evaluation.judge_at_steps`, the same loop as Day 5. Seeds are then
pooled with a crossed bootstrap (:func:`rrlib.metrics.crossed_bootstrap_indices`:
runs with replacement, and one resample of the prompts every run shares), so
the intervals include seed variance, and each unique response counts once:
step 0 is one base model, whatever the number of seeds. Computes and returns; writes no results table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from rrlib.attack import loss_at, run_attack
from rrlib.config import AttackConfig, GenerationConfig
from rrlib.evaluation import judge_at_steps
from rrlib.metrics import (Estimate, N_BOOTSTRAP, compliance_error, crossed_bootstrap_indices,
                           refusal_robustness_rate, response_distances)
from rrlib.models import LoadedModel
from rrlib.progress import progress_bar


@dataclass
class GridResult:
    """Per-prompt verdicts and losses for every (rank, seed, step)."""

    verdicts: pd.DataFrame  # rank, seed, step, id, refused, parsed, response
    losses: pd.DataFrame  # rank, seed, step, loss, tokens, flops

    def judged(self) -> pd.DataFrame:
        """Verdict rows the judge decided (unparsed LLM-judge answers are left out of every rate)."""
        return self.verdicts[self.verdicts["parsed"].astype(bool)]

    def per_run(self) -> pd.DataFrame:
        """RRR with its Wilson interval for each (rank, seed, step), joined with the loss and compute."""
        rows = []
        for (rank, seed, step), group in self.judged().groupby(["rank", "seed", "step"]):
            rrr = refusal_robustness_rate(group["refused"].to_numpy())
            rows.append({"rank": rank, "seed": seed, "step": step, "value": rrr.value, "ci_low": rrr.ci_low,
                         "ci_high": rrr.ci_high, "n": rrr.n})
        return pd.DataFrame(rows).merge(self.losses, on=["rank", "seed", "step"], how="left")

    def pooled(self, n_boot: int = N_BOOTSTRAP, seed: int = 0) -> pd.DataFrame:
        """RRR per (rank, step) pooled over seeds (:func:`pooled_rate`), with the mean attack loss."""
        rows = []
        for (rank, step), group in self.judged().groupby(["rank", "step"]):
            estimate, runs = pooled_rate(group, int(step), n_boot, seed)
            loss = self.losses[(self.losses["rank"] == rank) & (self.losses["step"] == step)]["loss"].mean()
            rows.append({"rank": rank, "step": step, **estimate.row(), "seeds": runs, "loss": loss})
        return pd.DataFrame(rows)


def _run_matrix(verdicts: pd.DataFrame, step: int, column: str) -> np.ndarray:
    """Runs x prompts of one column at one step; step 0 is one base model, so its runs collapse to one."""
    if step == 0:
        verdicts = verdicts.drop_duplicates("id").assign(rank=0, seed=0)
    table = verdicts.pivot_table(index=["rank", "seed"], columns="id", values=column, aggfunc="first")
    if table.isna().any().any():
        table = table.dropna(axis=1)  # a prompt some run has no verdict on is left out of every run
    return table.to_numpy()


def pooled_rate(verdicts: pd.DataFrame, step: int, n_boot: int = N_BOOTSTRAP, seed: int = 0,
                metric: str = "RRR") -> tuple[Estimate, int]:
    """RRR at one step pooled over the runs (ranks, seeds) in ``verdicts``, each response counted once.

    Step 0 is the base model: every run shares its responses, so they count
    once (``n`` = the number of prompts). At an attacked step each run's
    responses are distinct. The interval is a crossed bootstrap
    (:func:`rrlib.metrics.crossed_bootstrap_indices`): runs with replacement
    and one resample of prompts shared by every run, because every run
    answers the same prompts.

    Parameters
    ----------
    verdicts : pandas.DataFrame
        Judged grid rows (``rank, seed, step, id, refused``) at this step.
    step : int
        The grid step.
    n_boot : int
        Bootstrap replicates.
    seed : int
        Bootstrap seed.
    metric : str
        Name of the estimate.

    Returns
    -------
    tuple of (Estimate, int)
        The pooled rate (``n`` = unique responses) and the number of distinct runs behind it.
    """
    rows = verdicts[verdicts["step"] == step]
    if rows.empty:
        return Estimate.missing(metric, f"no grid cell at step {step}"), 0
    matrix = _run_matrix(rows, step, "refused").astype(float)
    samples = np.array([matrix[units["runs"]][:, prompts].mean() for units, prompts in
                        crossed_bootstrap_indices({"runs": len(matrix)}, matrix.shape[1], n_boot,
                                                  np.random.default_rng(seed))])
    low, high = np.quantile(samples, [0.025, 0.975])
    method = "bootstrap95 (prompts)" if len(matrix) == 1 else "bootstrap95 (runs x shared prompts)"
    return Estimate(metric, float(matrix.mean()), float(low), float(high), int(matrix.size), method), len(matrix)


def run_grid(lm: LoadedModel, harmful: pd.DataFrame, attack_set: pd.DataFrame, steps: Sequence[int],
             ranks: Sequence[int], seeds: Sequence[int], learning_rate: float, batch_size: int,
             gen: GenerationConfig, judge: str, progress: bool = True) -> GridResult:
    """Train and evaluate every (rank, seed) of the grid.

    Parameters
    ----------
    lm : LoadedModel
        The model under attack.
    harmful : pandas.DataFrame
        Held-out harmful prompts.
    attack_set : pandas.DataFrame
        Attack training data (prompts with targets).
    steps, ranks, seeds : sequence of int
        The grid.
    learning_rate : float
        LoRA learning rate (the same for every cell).
    batch_size : int
        Attack batch size.
    gen : GenerationConfig
        Decoding settings for evaluation.
    judge : str
        Judge name.
    progress : bool
        Show a progress bar over cells.

    Returns
    -------
    GridResult
        Verdicts and losses; attacks are reused from disk when already trained.
    """
    verdict_rows, loss_rows = [], []
    base = judge_at_steps(lm, harmful, {0: None}, gen, judge, progress=False)[0]
    with progress_bar(total=len(ranks) * len(seeds), desc="LoRA grid", disable=not progress) as bar:
        for rank in ranks:
            for seed in seeds:
                config = AttackConfig(grid_steps=tuple(steps), rank=rank, alpha=2.0 * rank,
                                      learning_rate=learning_rate, batch_size=batch_size, seed=seed)
                result = run_attack(lm, attack_set, config, progress=False)
                attacked = {step: result.adapters[step] for step in steps if step != 0}
                judged = {0: base, **judge_at_steps(lm, harmful, attacked, gen, judge, progress=False)}
                bill = result.bill.set_index("step")
                for step in steps:
                    verdict_rows += [{"rank": rank, "seed": seed, "step": step, "id": pid, "refused": bool(r),
                                      "parsed": bool(ok), "response": text}
                                     for pid, r, ok, text in zip(judged[step]["id"], judged[step]["refused"],
                                                                 judged[step]["parsed"], judged[step]["response"])]
                    loss_rows.append({"rank": rank, "seed": seed, "step": step,
                                      "loss": loss_at(result.loss_curve, step),
                                      "tokens": int(bill.loc[step, "tokens"]), "flops": float(bill.loc[step, "flops"]),
                                      "trainable_params": int(bill.loc[step, "trainable_params"])})
                bar.update(1)
    return GridResult(pd.DataFrame(verdict_rows), pd.DataFrame(loss_rows))


def pooled_rd(grid: GridResult, step: int, n_boot: int = N_BOOTSTRAP, seed: int = 0) -> Estimate:
    """RD between baseline and step-``step`` responses, pooled over ranks and seeds (crossed bootstrap).

    Parameters
    ----------
    grid : GridResult
        The grid's verdicts and responses.
    step : int
        The attacked step.
    n_boot : int
        Bootstrap replicates.
    seed : int
        Bootstrap seed.

    Returns
    -------
    Estimate
        ``metric='RD'``; ``n`` counts (run, prompt) pairs.
    """
    v = grid.verdicts
    base = v[v["step"] == 0].drop_duplicates("id").set_index("id")["response"]
    runs = v[v["step"] == step].sort_values(["rank", "seed", "id"])
    if runs.empty:
        return Estimate.missing("RD", f"no responses at step {step}")
    ids = sorted(set(runs["id"]))
    matrix = np.stack([response_distances(base.loc[ids].tolist(), g.set_index("id").loc[ids, "response"].tolist())
                       for _, g in runs.groupby(["rank", "seed"])])
    samples = [np.median(matrix[units["runs"]][:, prompts]) for units, prompts in
               crossed_bootstrap_indices({"runs": len(matrix)}, len(ids), n_boot, np.random.default_rng(seed))]
    low, high = np.quantile(samples, [0.025, 0.975])
    return Estimate("RD", float(np.median(matrix)), float(low), float(high), int(matrix.size),
                    "bootstrap95 (runs x shared prompts)")


def pooled_estimate(grid: GridResult, step: int, n_boot: int = N_BOOTSTRAP, seed: int = 0) -> Estimate:
    """The RRR at one step pooled over every rank and seed (each unique response counted once)."""
    return pooled_rate(grid.judged(), step, n_boot, seed)[0]


def headline(grid: GridResult, pooled: pd.DataFrame) -> tuple[int, dict[str, tuple[Estimate, Estimate]]]:
    """The original study's headline quantities, ours: RRR, CE and RD before and after the last grid step.

    Parameters
    ----------
    grid : GridResult
        The grid.
    pooled : pandas.DataFrame
        Seed-pooled RRR per (rank, step) (:meth:`GridResult.pooled`).

    Returns
    -------
    tuple
        The last step, and metric to (baseline, after the attack) estimates.
    """
    last = int(pooled["step"].max())
    before, after = pooled_estimate(grid, 0), pooled_estimate(grid, last)
    rd_after = pooled_rd(grid, last)
    rd_before = Estimate("RD", 0.0, 0.0, 0.0, before.n, "greedy decoding: the base model's responses are its own")
    return last, {"RRR": (before, after), "CE": (compliance_error(before), compliance_error(after)),
                  "RD": (rd_before, rd_after)}
