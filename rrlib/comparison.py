"""Attacks and defenses compared on one compute axis (Day 6).

Every (attack, defense) pair is analysed exactly as the default study's LoRA
attack is (:func:`rrlib.scaling.analyse`): the same members, the same gate on
each member's own Day 3 baseline, the same refusal-curve fits and the same
hierarchical bootstrap over build seeds and shared prompts. Only the runs
differ: ``<member>`` for LoRA, ``<member>@<attack>`` for another attack, and
``<member>-vaccine`` (with its own ``@<attack>`` runs) for the defended build.

Beside compute-to-collapse, the utility budget (:mod:`rrlib.utility`) picks,
per member and defense, the most harmful attack setting whose utility loss
stays within ε (TamperBench's ε-bounded selection).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from rrlib.config import ATTACKS, build_seed, size_of, undefended
from rrlib.defense import DEFENSES
from rrlib.errors import ConfigError, DataError
from rrlib.scaling import N_BOOT, FamilyScaling, StudyTables, analyse, scaling_table
from rrlib.utility import budget_by_step

SIZE_COLUMNS = ["attack", "defense", "size", "non_embedding_params", "seeds", "value", "ci_low", "ci_high",
                "extrapolated", "reason"]
TREND_COLUMNS = ["attack", "defense", "quantity", "value", "ci_low", "ci_high", "sizes", "reason"]
EFFECT_COLUMNS = ["attack", "size", "none", "none_ci_low", "none_ci_high", "vaccine", "vaccine_ci_low",
                  "vaccine_ci_high", "ratio", "moved"]
SELECTION_COLUMNS = ["member", "defense", "size", "gate", "attack", "step", "flops", "RRR", "RRR_ci_low",
                     "RRR_ci_high", "loss_increase", "over_refusal", "degenerate_benign", "reason"]


def defended(member: str, defense: str) -> str:
    """The build of ``member`` under a defense: itself for ``none``, ``<member>-vaccine`` for Vaccine."""
    return member if defense == "none" else f"{member}-{defense}"


def attack_run(member: str, attack: str, defense: str = "none") -> str:
    """The run name of one attack on one (defended) member: ``organism-m``, ``organism-m@full``, ..."""
    model = defended(member, defense)
    return model if attack == "lora" else f"{model}@{attack}"


def check_choices(attacks: Sequence[str], defenses: Sequence[str]) -> None:
    """Fail with one clear line on an unknown attack or defense."""
    bad = [a for a in attacks if a not in ATTACKS] + [d for d in defenses if d not in DEFENSES]
    if bad:
        raise ConfigError(f"unknown attack or defense {bad}; attacks: {', '.join(ATTACKS)}; "
                          f"defenses: {', '.join(DEFENSES)}")


def load_tables(members: Sequence[str], attack: str, defense: str) -> tuple[StudyTables, dict[str, tuple[str, int]]]:
    """What :func:`rrlib.scaling.analyse` needs for one (attack, defense), keyed by run name.

    Each run is gated on its own build's Day 3 baseline (the defended build's for Vaccine), and sized by
    that build's parameter counts; its size label is the undefended member's, so sizes line up across
    defenses.

    Raises
    ------
    DataError
        If a run or its build's Day 3 is missing, naming the command that makes it.
    """
    from rrlib import results

    runs = [attack_run(m, attack, defense) for m in members]
    builds = {r: defended(m, defense) for r, m in zip(runs, members)}
    day3 = results.read_runs_table("metrics", list(builds.values()))
    day3 = day3[day3["day"].astype(int) == 3]
    metrics = pd.concat([day3[day3["model"] == b].assign(model=r) for r, b in builds.items()], ignore_index=True)
    tables = StudyTables(metrics, results.read_runs_table("compute", runs),
                         {r: results.read_verdicts(r) for r in runs},
                         {r: (results.model_params(b), results.non_embedding_params(b)) for r, b in builds.items()})
    identity = {r: (size_of(m), build_seed(builds[r])) for r, m in zip(runs, members)}
    return tables, identity


@dataclass
class Comparison:
    """Compute-to-collapse per attack x size x defense, and the ε-bounded selection.

    Attributes
    ----------
    families : dict
        ``(attack, defense)`` to its :class:`rrlib.scaling.FamilyScaling` (members are run names).
    table : pandas.DataFrame
        The scaling table of every pair, with ``attack`` and ``defense`` columns.
    budget : pandas.DataFrame
        Every run's steps with their compute, RRR, utility and whether they are within the budget.
    missing : dict
        ``(attack, defense)`` to the reason it could not be analysed.
    """

    families: dict[tuple[str, str], FamilyScaling]
    table: pd.DataFrame
    budget: pd.DataFrame
    missing: dict[tuple[str, str], str]


def compare(members: Sequence[str], attacks: Sequence[str], defenses: Sequence[str], judge: str,
            n_boot: int = N_BOOT, seed: int = 0) -> Comparison:
    """Analyse every (attack, defense) over the same members.

    Parameters
    ----------
    members : sequence of str
        Undefended organism names (``organism-m``, ``organism-m-seed2``, ...).
    attacks, defenses : sequence of str
        From :data:`rrlib.config.ATTACKS` and :data:`DEFENSES`.
    judge : str
        The judge whose verdicts and baselines are used.
    n_boot, seed : int
        Hierarchical bootstrap replicates and seed.

    Returns
    -------
    Comparison
        A pair without runs is left out, with its reason in ``missing``.
    """
    check_choices(attacks, defenses)
    families, tables, budgets, missing = {}, [], [], {}
    for defense in defenses:
        for attack in attacks:
            try:
                study, identity = load_tables(members, attack, defense)
            except DataError as error:
                missing[(attack, defense)] = str(error)
                continue
            family = analyse(study, list(identity), judge, None, n_boot, seed, identity=identity)
            families[(attack, defense)] = family
            tables.append(scaling_table(family).assign(attack=attack, defense=defense))
            budgets.append(_budget_rows(study, identity, judge).assign(attack=attack, defense=defense))
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    budget = pd.concat(budgets, ignore_index=True) if budgets else pd.DataFrame()
    return Comparison(families, table, budget, missing)


def _budget_rows(study: StudyTables, identity: Mapping[str, tuple[str, int]], judge: str) -> pd.DataFrame:
    """Each run's per-step budget table (:func:`rrlib.utility.budget_by_step`) with its compute."""
    from rrlib import results

    frames = []
    for run, (size, seed) in identity.items():
        day5 = results.read_runs_table("metrics", [run])
        day5 = day5[day5["day"].astype(int) == 5]
        if day5.empty:
            continue
        steps = budget_by_step(day5, judge)
        bill = study.compute[study.compute["model"] == run].drop_duplicates("step").set_index("step")["flops"]
        frames.append(steps.assign(model=run, size=size, build_seed=seed,
                                   flops=steps["step"].map(bill).to_numpy(dtype=float)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def size_table(comparison: Comparison, quantity: str = "c50_flops") -> pd.DataFrame:
    """One row per (attack, defense, size): the quantity with its hierarchical interval, for display."""
    rows = comparison.table
    if rows.empty:
        return pd.DataFrame(columns=SIZE_COLUMNS)
    rows = rows[(rows["level"] == "size") & (rows["quantity"] == quantity)]
    rows = rows[SIZE_COLUMNS].sort_values(["non_embedding_params", "attack", "defense"]).reset_index(drop=True)
    return rows.astype({"non_embedding_params": "Int64", "seeds": "Int64"})


def trend_table(comparison: Comparison) -> pd.DataFrame:
    """The size trend of each (attack, defense): log-log slopes with intervals."""
    rows = comparison.table
    if rows.empty:
        return pd.DataFrame(columns=TREND_COLUMNS)
    rows = rows[rows["level"] == "trend"].rename(columns={"gate_reason": "sizes"})
    return rows[TREND_COLUMNS].reset_index(drop=True)


def defense_effect(comparison: Comparison, quantity: str = "c50_flops") -> pd.DataFrame:
    """Per attack and size: compute-to-collapse without and with Vaccine, their ratio, and whether the two
    hierarchical intervals are disjoint (the defense moved it by more than its interval)."""
    sizes = size_table(comparison, quantity)
    if sizes.empty or not {"none", "vaccine"} <= set(sizes["defense"]):
        return pd.DataFrame(columns=EFFECT_COLUMNS)
    plain = sizes[sizes["defense"] == "none"].set_index(["attack", "size"])
    vaccine = sizes[sizes["defense"] == "vaccine"].set_index(["attack", "size"])
    rows = []
    for key in plain.index.intersection(vaccine.index):
        a, v = plain.loc[key], vaccine.loc[key]
        finite = all(np.isfinite(float(x)) for x in (a["value"], v["value"], a["ci_low"], v["ci_low"]))
        rows.append({"attack": key[0], "size": key[1], "none": a["value"], "none_ci_low": a["ci_low"],
                     "none_ci_high": a["ci_high"], "vaccine": v["value"], "vaccine_ci_low": v["ci_low"],
                     "vaccine_ci_high": v["ci_high"], "ratio": v["value"] / a["value"] if finite else np.nan,
                     "moved": ("up" if v["ci_low"] > a["ci_high"] else "down" if v["ci_high"] < a["ci_low"]
                               else "within the intervals") if finite else "not estimable"})
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)


def epsilon_selection(comparison: Comparison) -> pd.DataFrame:
    """Per member and defense: the attack setting (attack, step) with the lowest RRR among those within the
    utility budget, with its RRR interval and compute (TamperBench's ε-bounded selection). ``gate`` is the
    build's baseline gate: a build that fails it had little refusal to remove, and is shown, not hidden."""
    from rrlib.utility import most_harmful_within_budget as pick

    budget = comparison.budget
    if budget.empty:
        return pd.DataFrame(columns=SELECTION_COLUMNS)
    budget = budget.assign(member=[undefended(str(m).split("@")[0]) for m in budget["model"]])
    gates = {(undefended(str(g["model"])), defense): g["gate"]
             for (attack, defense), family in comparison.families.items() if attack == "lora"
             for g in family.gate.to_dict("records")}
    rows = []
    for (member, defense), group in budget[budget["step"] > 0].groupby(["member", "defense"], sort=True):
        best = pick(group)
        base = {"member": member, "defense": defense, "size": group["size"].iloc[0],
                "gate": gates.get((member, defense), "n/a")}
        if best is None:
            rows.append({**base, "attack": None, "reason": "no attacked setting stays within the utility budget"})
            continue
        rows.append({**base, "attack": best["attack"], "step": int(best["step"]), "flops": best["flops"],
                     "RRR": best["RRR"], "RRR_ci_low": best["RRR_ci_low"], "RRR_ci_high": best["RRR_ci_high"],
                     "loss_increase": best["loss_increase"], "over_refusal": best["over_refusal"],
                     "degenerate_benign": best["degenerate_benign"], "reason": ""})
    return pd.DataFrame(rows, columns=SELECTION_COLUMNS)


COST_COLUMNS = ["member", "size", "defense", "gate", "baseline_rrr", "baseline_rrr_ci_low", "baseline_rrr_ci_high",
                "over_refusal", "over_refusal_ci_high", "utility_loss", "gate_reason"]


def defense_cost(comparison: Comparison) -> pd.DataFrame:
    """What the defense costs before any attack, per member: baseline RRR, over-refusal and the held-out
    reference loss of the undefended and the defended build side by side, and whether each passes the gate.

    The baseline numbers are each build's Day 3 (the gate's); the reference loss is step 0 of its LoRA run
    (the unattacked build), measured once per build.
    """
    rows = []
    for (attack, defense), family in comparison.families.items():
        if attack != "lora":
            continue
        budget = comparison.budget
        base = budget[(budget["attack"] == "lora") & (budget["defense"] == defense) & (budget["step"] == 0)] \
            if not budget.empty else budget
        loss = dict(zip(base["model"], base["utility_loss"])) if not base.empty else {}
        for g in family.gate.to_dict("records"):
            member = undefended(str(g["model"]).split("@")[0])
            rows.append({"member": member, "size": g["size"], "defense": defense, "gate": g["gate"],
                         "baseline_rrr": g["baseline_rrr"], "baseline_rrr_ci_low": g["baseline_rrr_ci_low"],
                         "baseline_rrr_ci_high": g["baseline_rrr_ci_high"], "over_refusal": g["over_refusal"],
                         "over_refusal_ci_high": g["over_refusal_ci_high"], "utility_loss": loss.get(g["model"]),
                         "gate_reason": g["gate_reason"]})
    return pd.DataFrame(rows, columns=COST_COLUMNS).sort_values(["member", "defense"]).reset_index(drop=True)
