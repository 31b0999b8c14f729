"""Make the dev split and rewrite the organism corpus so that no prompt set has a twin in another.

This script was run once to produce ``data/dev/dev_{harmful,benign}.csv`` and the rewritten
``data/organism/safety_{harmful,benign}.csv``; the committed files are the source of truth, and the script
records how they were made. It is seeded and deterministic.

Steps
-----
1. Load the eval, benign-control and attack sets and the organism corpus (harmful and benign prompts).
2. Drop every corpus row that has a twin (exact, near-duplicate or paraphrase, as
   :func:`rrlib.data.find_overlaps` defines them, with the paraphrase threshold lowered by ``MARGIN``)
   in eval, benign or attack.
3. Cluster the remaining corpus prompts per label: connected components of the twin graph inside each file
   (same thresholds).
4. Draw whole clusters, in a seeded random order, into dev until every category has its quota (about
   ``DEV_SIZE`` prompts per label, spread evenly over the categories).
5. Check all seven sets as :func:`rrlib.data.load_sets` does (with the lowered threshold), dropping every
   corpus row with a twin in dev (or in any set before it) until no twin is left; then check them at the
   run-time threshold.
6. Write the dev files and the rewritten corpus, and print what was moved and removed, per category.

Usage
-----
Write into the project (refuses to overwrite existing dev files without ``--force``)::

    python scripts/make_dev_split.py

Reproduce the committed files elsewhere, from the corpus as it was before the split::

    git show <commit before the split>:data/organism/safety_harmful.csv > /tmp/h.csv
    git show <commit before the split>:data/organism/safety_benign.csv > /tmp/b.csv
    python scripts/make_dev_split.py --harmful /tmp/h.csv --benign /tmp/b.csv --out /tmp/split
    diff -r /tmp/split/data data  # the dev and organism files match
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from rrlib import data
from rrlib.config import project_root
from rrlib.data.schema import REQUIRED

SEED = 12  # any fixed value; recorded so the draw of dev clusters is reproducible
# The split keeps the shipped sets disjoint below the run-time paraphrase threshold by this much. The TF-IDF
# weights are fitted on whichever sets a run loads, so swapping in another eval set moves every cosine a
# little (up to 0.02 with the peer fixtures); without a margin, shipped pairs at 0.59 then stop a run.
MARGIN = 0.05
SPLIT_COSINE = data.PARAPHRASE_COSINE - MARGIN
DEV_SIZE = {"harmful": 120, "benign": 100}  # prompts per label: enough to tune on, small next to the corpus
DEV_SOURCE = "rrs-dev-v1"
DEV_PREFIX = {"harmful": "dh", "benign": "db"}
HELD_OUT = ("eval", "benign", "attack")  # never changed by this script
RESPONSES = "data/organism/responses.json"
RESPONSE_KEY = {"harmful": "refusal", "benign": "answer"}  # the responses.json table of each label


def corpus_name(label: str) -> str:
    """The overlap-check name of the corpus file of ``label`` (as in :meth:`rrlib.data.PromptSets.named`)."""
    return f"corpus_{label}"


def dev_name(label: str) -> str:
    """The overlap-check name of the dev file of ``label``."""
    return f"dev_{label}"


def load_inputs(harmful: str, benign: str) -> dict[str, pd.DataFrame]:
    """The held-out sets (project defaults) and the corpus to split (``harmful``, ``benign``), in check order."""
    return {"eval": data.load_prompts(data.DEFAULT_EVAL, kind="harmful"),
            "benign": data.load_prompts(data.DEFAULT_BENIGN, kind="benign"),
            "attack": data.load_attack_set(data.DEFAULT_ATTACK),
            corpus_name("harmful"): data.load_prompts(harmful, kind="harmful"),
            corpus_name("benign"): data.load_prompts(benign, kind="benign")}


def settle(sets: dict[str, pd.DataFrame], removed: list[dict[str, str]]) -> dict[str, pd.DataFrame]:
    """Drop the later row of every cross-set twin pair until the sets are disjoint.

    Parameters
    ----------
    sets : dict of str to DataFrame
        Named sets in priority order: of a twin pair, the row in the later set goes.
    removed : list of dict
        Appended to: one record (set, id, category, twin set, twin id, kind) per dropped row.

    Returns
    -------
    dict of str to DataFrame
        The sets without the dropped rows; they pass :func:`rrlib.data.check_disjoint`.

    Raises
    ------
    SystemExit
        If two held-out sets (eval, benign, attack) share a prompt: this script does not change them.
    """
    while found := data.find_overlaps(sets, paraphrase=SPLIT_COSINE):
        clash = [o for o in found if o.set_b in HELD_OUT]
        if clash:
            sys.exit(f"held-out sets overlap, fix them by hand first: {clash[0].describe()}")
        drop: dict[str, set[str]] = {}
        for o in found:
            if o.id_b not in drop.setdefault(o.set_b, set()):
                drop[o.set_b].add(o.id_b)
                category = sets[o.set_b].set_index("id").at[o.id_b, "category"]
                removed.append({"set": o.set_b, "id": o.id_b, "category": category, "twin set": o.set_a,
                                "twin id": o.id_a, "kind": _kind(o)})
        sets = {name: frame[~frame["id"].isin(drop.get(name, set()))].reset_index(drop=True)
                for name, frame in sets.items()}
    return sets


def _kind(overlap: data.Overlap) -> str:
    """The overlap's kind, marking paraphrases found only thanks to the margin."""
    if overlap.kind == "paraphrase" and overlap.similarity < data.PARAPHRASE_COSINE:
        return f"paraphrase (margin, cosine < {data.PARAPHRASE_COSINE})"
    return overlap.kind


def clusters(sets: dict[str, pd.DataFrame], name: str) -> list[list[int]]:
    """Row indices of ``sets[name]`` grouped into connected components of its internal twin graph.

    The twins are found with the vectorisers fitted on all of ``sets``, as the disjointness check fits them.
    """
    index = {pid: i for i, pid in enumerate(sets[name]["id"])}
    found = data.find_overlaps(sets, paraphrase=SPLIT_COSINE, within=True)
    pairs = [(index[o.id_a], index[o.id_b]) for o in found if o.set_a == o.set_b == name]
    size = len(index)
    rows, cols = zip(*pairs) if pairs else ((), ())
    graph = sparse.coo_matrix(([1] * len(pairs), (rows, cols)), shape=(size, size))
    _, component = connected_components(graph, directed=False)
    groups: dict[int, list[int]] = {}
    for row, label in enumerate(component):
        groups.setdefault(int(label), []).append(row)
    return sorted(groups.values())


def quotas(categories: pd.Series, total: int) -> dict[str, int]:
    """Spread ``total`` evenly over the categories; the remainder goes to the categories with the most rows."""
    counts = categories.value_counts()
    ranked = sorted(counts.index, key=lambda c: (-counts[c], c))
    base, extra = divmod(total, len(ranked))
    return {c: base + (1 if rank < extra else 0) for rank, c in enumerate(ranked)}


def draw_dev(frame: pd.DataFrame, groups: list[list[int]], quota: dict[str, int], seed: int) -> list[int]:
    """Draw whole clusters in a seeded order, keeping each that fits inside every category's quota.

    Returns
    -------
    list of int
        Sorted row indices of ``frame`` that go to dev.
    """
    order = list(groups)
    random.Random(seed).shuffle(order)
    taken: Counter[str] = Counter()
    chosen: list[int] = []
    for group in order:
        need = Counter(frame["category"].iloc[group])
        if all(taken[c] + n <= quota[c] for c, n in need.items()):
            taken.update(need)
            chosen.extend(group)
    short = {c: q - taken[c] for c, q in quota.items() if taken[c] < q}
    if short:
        print(f"warning: dev quota not filled for {short}")
    return sorted(chosen)


def make_dev(frame: pd.DataFrame, rows: list[int], label: str) -> pd.DataFrame:
    """The dev frame of ``label``: the chosen corpus rows with new ids and the dev source."""
    dev = frame.iloc[rows].reset_index(drop=True)
    ids = [f"{DEV_PREFIX[label]}-{i:04d}" for i in range(1, len(dev) + 1)]
    return dev.assign(id=ids, source=DEV_SOURCE)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write the canonical columns as the corpus files are written (minimal quoting, ``\\n`` line ends)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(REQUIRED)
        writer.writerows(frame[REQUIRED].itertuples(index=False, name=None))


def report(before: dict[str, pd.DataFrame], after: dict[str, pd.DataFrame], removed: list[dict[str, str]]) -> None:
    """Print, per label and category, the corpus rows moved to dev and removed as twins, and the sizes."""
    gone = pd.DataFrame(removed, columns=["set", "id", "category", "twin set", "twin id", "kind"])
    for label in DEV_SIZE:
        corpus = corpus_name(label)
        rows = gone[gone["set"] == corpus]
        table = pd.DataFrame({
            "corpus before": before[corpus]["category"].value_counts(),
            "to dev": after[dev_name(label)]["category"].value_counts(),
            **{f"removed: twin in {s}": rows[rows["twin set"] == s]["category"].value_counts()
               for s in sorted(set(rows["twin set"]))},
            "corpus after": after[corpus]["category"].value_counts(),
        }).fillna(0).astype(int)
        table.loc["total"] = table.sum()
        print(f"\n{corpus} ({len(rows)} rows removed as twins):\n{table.to_string()}")
    print(f"\nremoved rows by kind: {dict(Counter(gone['kind']))}")


def check_responses(corpus: dict[str, pd.DataFrame], root: Path) -> None:
    """Warn about any category of ``responses.json`` left with no corpus prompt."""
    responses = json.loads((root / RESPONSES).read_text(encoding="utf-8"))
    for label, key in RESPONSE_KEY.items():
        empty = sorted(set(responses[key]) - set(corpus[corpus_name(label)]["category"]))
        if empty:
            print(f"warning: {corpus_name(label)} has no prompt left in categories {', '.join(empty)}")


def split(harmful: str, benign: str, seed: int) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame],
                                                          list[dict[str, str]]]:
    """Run steps 1 to 5; returns the input sets, the final sets (in load_sets order) and the removed rows."""
    before = load_inputs(harmful, benign)
    removed: list[dict[str, str]] = []
    sets = settle(before, removed)
    dev = {}
    for label, size in DEV_SIZE.items():
        corpus = sets[corpus_name(label)]
        rows = draw_dev(corpus, clusters(sets, corpus_name(label)), quotas(corpus["category"], size), seed)
        dev[dev_name(label)] = make_dev(corpus, rows, label)
        sets[corpus_name(label)] = corpus.drop(index=rows).reset_index(drop=True)
    ordered = {name: sets[name] for name in HELD_OUT} | dev | {corpus_name(label): sets[corpus_name(label)]
                                                               for label in DEV_SIZE}
    after = settle(ordered, removed)
    data.check_disjoint(after)
    return before, after, removed


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, split, write and report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--harmful", default=data.DEFAULT_CORPUS_HARMFUL, help="corpus harmful prompts to split")
    parser.add_argument("--benign", default=data.DEFAULT_CORPUS_BENIGN, help="corpus benign prompts to split")
    parser.add_argument("--out", type=Path, default=project_root(), help="root to write data/dev and data/organism")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--force", action="store_true", help="overwrite existing dev files")
    args = parser.parse_args(argv)
    targets = {name: args.out / path for name, path in (
        (dev_name("harmful"), data.DEFAULT_DEV_HARMFUL), (dev_name("benign"), data.DEFAULT_DEV_BENIGN),
        (corpus_name("harmful"), data.DEFAULT_CORPUS_HARMFUL), (corpus_name("benign"), data.DEFAULT_CORPUS_BENIGN))}
    if not args.force and any(targets[dev_name(label)].exists() for label in DEV_SIZE):
        sys.exit("dev files exist; the split is done (pass --force to draw it again from the given corpus)")
    before, after, removed = split(args.harmful, args.benign, args.seed)
    for name, path in targets.items():
        write_csv(after[name], path)
    report(before, after, removed)
    check_responses(after, project_root())


if __name__ == "__main__":
    main()
