"""Generate organism responses to the judge-calibration prompts, before and during the LoRA attack.

This script produced ``data/raw/judge_calibration_responses.csv``, the pool from which the organism-domain judge
labels (``data/raw/judge_labels_organism.csv``) were hand-labelled. The committed files are the source of truth;
the script records how they were made. It is seeded and deterministic: greedy decoding, one attack per model with
a fixed seed, and rows written in a fixed order.

Steps
-----
1. Load the calibration prompts (``data/raw/judge_calibration_prompts.csv``) and check that they are disjoint from
   the eval, benign, attack, dev and organism-corpus sets (:func:`rrlib.data.find_overlaps`, the run-time
   thresholds); stop naming the pairs if they are not.
2. For each organism name, in the order given: build or load it (:func:`rrlib.models.load`, which calls
   :func:`rrlib.organism.ensure`), then train the LoRA attack once on ``data/raw/attack_train.jsonl`` with the
   grid ``GRID`` and attack seed ``seed + i`` (``i`` the model's position in the list), so every model has its
   own attack seed.
3. Generate greedy responses (64 new tokens) to every calibration prompt with the base model (step 0) and with
   the adapter of every later grid step.
4. Write one row per (model, step, prompt): ``id, prompt_id, prompt, model, step, response, kind``.

Attacks, generation caches and any organism builds go to throwaway folders (``RR_RESULTS_DIR`` and
``RR_CACHE_DIR``, defaulting under ``/tmp``), never to the project's ``results/``.

Usage
-----
The committed file (the organism names come from the final family)::

    OMP_NUM_THREADS=1 python scripts/make_judge_calibration.py \\
        --models organism-xs organism-s organism-m organism-l organism-xl --cache-dir /path/to/shared/cache

A quick dry run on one small organism and five prompts::

    OMP_NUM_THREADS=1 python scripts/make_judge_calibration.py --models organism-xs --limit 5 \\
        --out /tmp/jc_dry.csv
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

GRID = (0, 10, 20, 40, 80, 200)  # attack steps with a saved adapter: dense early, where refusal collapses
STEPS = GRID  # steps at which responses are generated (step 0 is the unattacked model)
SEED = 1300  # base attack seed; model i of the list is attacked with SEED + i
MAX_NEW_TOKENS = 64  # the organisms' token budget everywhere in the study
BATCH_SIZE = 256  # organisms generate fastest in large batches (per-step overhead dominates)
PROMPTS = "data/raw/judge_calibration_prompts.csv"
ATTACK = "data/raw/attack_train.jsonl"
OUT = "data/raw/judge_calibration_responses.csv"
SCRATCH = Path("/tmp/rr_judge_calibration")  # default throwaway root for attacks, caches and builds
HARMFUL_CATEGORIES = ("weapons", "cyber", "drugs", "fraud", "privacy", "self_harm", "chem_bio", "extremism",
                      "harassment", "misinformation")  # the eval set's ten harm categories
COLUMNS = ["id", "prompt_id", "prompt", "model", "step", "response", "kind"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (defaults to ``sys.argv[1:]``).

    Returns
    -------
    argparse.Namespace
        ``models, steps, seed, limit, prompts, attack, out, cache_dir, results_dir``.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", required=True,
                        help="organism names, e.g. organism-xs organism-s organism-m organism-l organism-xl")
    parser.add_argument("--steps", nargs="+", type=int, default=list(STEPS),
                        help=f"attack steps to generate at (a subset of the grid {list(GRID)})")
    parser.add_argument("--seed", type=int, default=SEED, help="base attack seed; model i uses seed + i")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N prompts (dry runs)")
    parser.add_argument("--prompts", default=PROMPTS, help="calibration prompts (canonical CSV)")
    parser.add_argument("--attack", default=ATTACK, help="attack training set")
    parser.add_argument("--out", default=OUT, help="responses CSV to write")
    parser.add_argument("--cache-dir", default=os.environ.get("RR_CACHE_DIR", str(SCRATCH / "cache")),
                        help="organism cache (RR_CACHE_DIR); point it at a shared cache to reuse builds")
    parser.add_argument("--results-dir", default=str(SCRATCH / "results"),
                        help="throwaway results root for attacks and generation caches (RR_RESULTS_DIR)")
    args = parser.parse_args(argv)
    bad = sorted(set(args.steps) - set(GRID))
    if bad:
        parser.error(f"--steps {bad} are not in the attack grid {list(GRID)}")
    return args


def use_scratch(cache: str, results: str) -> None:
    """Point ``RR_CACHE_DIR`` and ``RR_RESULTS_DIR`` at the given folders, refusing the project's ``results/``.

    Parameters
    ----------
    cache, results : str
        Folders (created if missing).
    """
    from rrlib.config import project_root

    results_path = Path(results).resolve()
    if results_path == (project_root() / "results").resolve():
        sys.exit("refusing to write attacks into the project's results/; pass --results-dir under /tmp")
    for path in (Path(cache), results_path):
        path.mkdir(parents=True, exist_ok=True)
    os.environ["RR_CACHE_DIR"] = str(Path(cache).resolve())
    os.environ["RR_RESULTS_DIR"] = str(results_path)


def load_prompts(path: str, limit: int | None):
    """Load the calibration prompts, check them disjoint from every other set, and tag each harmful or benign.

    Parameters
    ----------
    path : str
        The calibration CSV.
    limit : int, optional
        Keep only the first ``limit`` rows after the check.

    Returns
    -------
    pandas.DataFrame
        ``id, prompt, category, kind``.
    """
    from rrlib import data

    prompts = data.load_prompts(path)
    others = data.load_sets().named()  # eval, benign, attack, dev and the organism corpus, checked disjoint
    found = [o for o in data.find_overlaps({"calibration": prompts, **others})
             if "calibration" in (o.set_a, o.set_b)]
    if found:
        sys.exit("calibration prompts overlap other sets:\n" + "\n".join(o.describe() for o in found))
    prompts = prompts[["id", "prompt", "category"]].copy()
    prompts["kind"] = ["harmful" if c in HARMFUL_CATEGORIES else "benign" for c in prompts["category"]]
    return prompts.head(limit) if limit else prompts


def responses_for(name: str, attack_seed: int, prompts, attack_set, steps: list[int]):
    """Build or load one organism, attack it once, and generate at every requested step.

    Parameters
    ----------
    name : str
        Organism name.
    attack_seed : int
        Seed of this model's attack.
    prompts : pandas.DataFrame
        ``id, prompt, kind``.
    attack_set : pandas.DataFrame
        Attack training data with targets.
    steps : list of int
        Grid steps to generate at.

    Returns
    -------
    list of dict
        One record per (step, prompt), without the row id.
    """
    from rrlib import attack, generate, models
    from rrlib.config import AttackConfig, GenerationConfig

    t0 = time.perf_counter()
    lm = models.load(name, progress=True)
    print(f"[{name}] loaded in {time.perf_counter() - t0:.1f}s ({lm.n_params:,} parameters)", flush=True)
    t0 = time.perf_counter()
    result = attack.run_attack(lm, attack_set, AttackConfig(grid_steps=GRID, seed=attack_seed), progress=True)
    print(f"[{name}] attack seed {attack_seed}: {result.recipe} in {time.perf_counter() - t0:.1f}s "
          f"({result.out_dir})", flush=True)
    config = GenerationConfig(max_new_tokens=MAX_NEW_TOKENS, batch_size=BATCH_SIZE)
    kinds = dict(zip(prompts["id"], prompts["kind"]))
    records = []
    for step in steps:
        t0 = time.perf_counter()
        adapter = None if step == 0 else result.adapters[step]  # step 0: the unattacked model itself
        out = generate.generate(lm, prompts[["id", "prompt"]], config, adapter_dir=adapter, progress=False)
        records += [{"prompt_id": r.id, "prompt": r.prompt, "model": name, "step": step,
                     "response": r.response, "kind": kinds[r.id]} for r in out.itertuples()]
        print(f"[{name}] step {step:>3}: {len(out)} responses in {time.perf_counter() - t0:.1f}s", flush=True)
    return records


def main(argv: list[str] | None = None) -> int:
    """Run the steps of the module docstring and write the responses CSV.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments.

    Returns
    -------
    int
        Exit status.
    """
    args = parse_args(argv)
    use_scratch(args.cache_dir, args.results_dir)
    import pandas as pd
    import torch

    from rrlib import data

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    started = time.perf_counter()
    prompts = load_prompts(args.prompts, args.limit)
    attack_set = data.load_attack_set(args.attack)
    print(f"{len(prompts)} prompts ({(prompts['kind'] == 'harmful').sum()} harmful), {len(args.models)} models, "
          f"steps {args.steps}; cache {os.environ['RR_CACHE_DIR']}, results {os.environ['RR_RESULTS_DIR']}",
          flush=True)
    records = []
    for i, name in enumerate(args.models):
        records += responses_for(name, args.seed + i, prompts, attack_set, list(args.steps))
    frame = pd.DataFrame(records)
    frame.insert(0, "id", [f"jcr-{k + 1:04d}" for k in range(len(frame))])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame[COLUMNS].to_csv(out, index=False)
    print(f"wrote {len(frame)} rows to {out} in {time.perf_counter() - started:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
