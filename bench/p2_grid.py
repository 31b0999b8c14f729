"""P2: the Day 4 + Day 5 grid from one training run against one retraining per grid point.

Ours trains the LoRA attack once (:func:`rrlib.attack.run_attack` with grid
steps 0, 10, 25, 50, 100, saving an adapter at each) and measures RRR at every
step (greedy :func:`rrlib.generate.generate` on the harmful eval set, then the
default judge). The original study's way retrains for each grid point: a
separate ``run_attack`` with grid steps ``(0, s)`` per step ``s``, each
evaluated the same way (step 0 is the base model in both). Attacks write to a
temporary folder, ``RR_RESULTS_DIR`` points there for the duration and the
generation cache is off, so ``results/`` is untouched and neither side reuses
the other's work. The speedup is claimed only when both give the same RRR,
responses and adapter weights at every step.
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

from bench.measure import timed
from rrlib.envvars import temporary_env

GRID = (0, 10, 25, 50, 100)
QUICK_GRID = (0, 2, 5)

# A plan is (grid_steps of one run_attack call, the steps of that run to evaluate).
Plan = tuple[tuple[int, ...], tuple[int, ...]]


def one_run(steps: Sequence[int]) -> list[Plan]:
    """Our way: one training run that saves every grid step, all evaluated."""
    return [(tuple(steps), tuple(steps))]


def retrain_each(steps: Sequence[int]) -> list[Plan]:
    """The original way: a separate run to each grid step, evaluated at that step only."""
    return [((0, s) if s else (0,), (s,)) for s in steps]


def evaluate(lm: Any, harmful: Any, gen: Any, adapter: Path | None, judge: str) -> dict[str, Any]:
    """RRR of one adapter (``None``: the base model) on the harmful set, without the cache."""
    from rrlib import evaluation
    from rrlib.generate import generate

    responses = generate(lm, harmful, gen, adapter_dir=adapter, cache=False, progress=False)
    judged, _ = evaluation.judge_responses(responses, judge)
    rrr = evaluation.rate_estimates(judged, None)[0]
    return {"rrr": rrr.value, "n": rrr.n, "responses": responses["response"].tolist()}


def train_and_evaluate(lm: Any, sets: Any, gen: Any, judge: str, plans: Sequence[Plan],
                       out_root: Path) -> tuple[dict[int, dict[str, Any]], dict[str, float]]:
    """Run each plan's attack and evaluate the steps it names.

    Returns
    -------
    tuple of (dict, dict)
        Per grid step: ``rrr``, ``n``, ``responses`` and the ``adapter`` folder; and the
        seconds spent in ``train`` (run_attack) and ``evaluate`` (generate + judge).
    """
    from rrlib.attack import run_attack
    from rrlib.config import AttackConfig

    out: dict[int, dict[str, Any]] = {}
    seconds = {"train": 0.0, "evaluate": 0.0}
    for grid, evaluate_steps in plans:
        folder = out_root / "-".join(str(s) for s in grid)
        spent, result = timed(partial(run_attack, lm, sets.attack, AttackConfig(grid_steps=grid), out_dir=folder,
                                      progress=False, force=True))
        seconds["train"] += spent
        for step in evaluate_steps:
            adapter = None if step == 0 else result.adapters[step]
            spent, record = timed(partial(evaluate, lm, sets.harmful, gen, adapter, judge))
            seconds["evaluate"] += spent
            out[step] = {**record, "adapter": adapter}
    return out, {k: round(v, 3) for k, v in seconds.items()}


def same_weights(a: Path | None, b: Path | None) -> bool:
    """Whether two adapter folders hold bitwise identical LoRA tensors (two base models count as equal)."""
    if a is None or b is None:
        return a is b
    import torch
    from safetensors.torch import load_file

    wa, wb = (load_file(str(p / "adapter_model.safetensors")) for p in (a, b))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def run(quick: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure P2.

    Parameters
    ----------
    quick : bool
        Grid steps (0, 2, 5) on 16 prompts (a smoke check; the ratio means little).
    log : callable
        Progress lines.

    Returns
    -------
    dict
        Wall times of both ways, per-step RRR and identity checks, and the headline
        ``p2_grid_speedup`` (``None`` unless every step agrees).
    """
    from rrlib import data, evaluation, models
    from rrlib.config import DEFAULT_ORGANISM
    from rrlib.judges import DEFAULT_JUDGE

    steps = QUICK_GRID if quick else GRID
    lm = models.load(DEFAULT_ORGANISM, progress=False)
    sets = data.load_sets(limit=16 if quick else None)
    gen = evaluation.generation_config(lm.spec, None, None)
    log(f"P2: {DEFAULT_ORGANISM}, grid {list(steps)}, {len(sets.harmful)} harmful prompts, judge {DEFAULT_JUDGE}")
    with tempfile.TemporaryDirectory(prefix="rr-bench-p2-") as tmp, temporary_env(RR_RESULTS_DIR=tmp):
        root = Path(tmp)
        train_and_evaluate(lm, sets, gen, DEFAULT_JUDGE, [((0, 1), (1,))], root / "warm-up")  # untimed
        one_s, (ours, one_split) = timed(lambda: train_and_evaluate(lm, sets, gen, DEFAULT_JUDGE, one_run(steps),
                                                                    root / "one"))
        log(f"P2: one run + evaluation {one_s:.2f} s ({_split(one_split)})")
        each_s, (theirs, each_split) = timed(lambda: train_and_evaluate(lm, sets, gen, DEFAULT_JUDGE,
                                                                        retrain_each(steps), root / "each"))
        log(f"P2: one run per grid point + evaluation {each_s:.2f} s ({_split(each_split)})")
        per_step = [{"step": s, "rrr_one_run": ours[s]["rrr"], "rrr_retrained": theirs[s]["rrr"], "n": ours[s]["n"],
                     "rrr_identical": ours[s]["rrr"] == theirs[s]["rrr"],
                     "responses_identical": ours[s]["responses"] == theirs[s]["responses"],
                     "weights_identical": same_weights(ours[s]["adapter"], theirs[s]["adapter"])}
                    for s in steps]
    identical = all(row["rrr_identical"] and row["responses_identical"] and row["weights_identical"]
                    for row in per_step)
    ratio = each_s / one_s
    return {
        "model": lm.name, "model_identity": lm.identity, "judge": DEFAULT_JUDGE, "grid_steps": list(steps),
        "n_prompts": len(sets.harmful), "max_new_tokens": gen.max_new_tokens, "batch_size": gen.batch_size,
        "training_steps_one_run": max(steps), "training_steps_retrained": sum(steps),
        "one_run_seconds": round(one_s, 3), "retrained_seconds": round(each_s, 3),
        "one_run_split_seconds": one_split, "retrained_split_seconds": each_split,
        "training_steps_ratio": round(sum(steps) / max(steps), 3),
        "per_step": per_step, "identical": identical, "ratio": round(ratio, 2),
        "headline": {"p2_grid_speedup": round(ratio, 2) if identical else None, "p2_identical": identical},
    }


def _split(seconds: dict[str, float]) -> str:
    """``train 1.00 s, evaluate 2.00 s`` for a log line."""
    return ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items())
