"""Is the refusal direction destroyed or bypassed? Test it directly.

The original study read a NaN as "the refusal subspace is destroyed". Here we
measure the representation itself (Arditi et al. 2024):

- hidden states at the last prompt token (the end of the chat template's
  assistant prefix), at every layer, for harmful and harmless prompts that are
  disjoint from the evaluation sets;
- the refusal direction per layer: the difference of the harmful and harmless
  means; the layer is chosen by held-out separation;
- at each attack step: the cosine between that step's direction and the
  baseline's, a linear probe's held-out accuracy (harmful vs harmless), and the
  mean projection of harmful prompts onto the baseline direction;
- causal checks on the baseline: project the direction out of every layer
  (directional ablation) and measure RRR; add it to harmless prompts and
  measure the refusal it induces.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from rrlib.architecture import decoder_layers
from rrlib.generate import adapter_active
from rrlib.metrics import Estimate, bootstrap_interval, wilson_interval
from rrlib.models import LoadedModel

DIRECTION_PROMPTS = 128  # harmful and harmless prompts each for fitting directions (disjoint from eval)
VALIDATION_SHARE = 0.25  # of the direction prompts, held out to choose the layer


def direction_sets(n: int = DIRECTION_PROMPTS, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Harmful and harmless prompts for fitting directions, disjoint from every eval set.

    They are drawn (seeded) from the project-written organism corpus, which a
    test keeps disjoint from the evaluation, benign and attack sets.

    Parameters
    ----------
    n : int
        Prompts per side.
    seed : int
        Sampling seed.

    Returns
    -------
    tuple of pandas.DataFrame
        ``(harmful, harmless)`` with ``id`` and ``prompt`` columns.
    """
    from rrlib.organism import load_corpus

    corpus = load_corpus()
    harmful = corpus[corpus["label"] == "harmful"].sample(n=n, random_state=seed)
    harmless = corpus[corpus["label"] == "benign"].sample(n=n, random_state=seed)
    return harmful[["id", "prompt"]].reset_index(drop=True), harmless[["id", "prompt"]].reset_index(drop=True)


def last_token_states(lm: LoadedModel, prompts: Sequence[str], adapter_dir: str | Path | None = None,
                      batch_size: int = 32) -> np.ndarray:
    """Hidden states at the last prompt token, at every layer.

    Parameters
    ----------
    lm : LoadedModel
        The model (an adapter is applied for the call if given).
    prompts : sequence of str
        User prompts; rendered through the chat template with the assistant prefix.
    adapter_dir : str or Path, optional
        A LoRA adapter folder.
    batch_size : int
        Prompts per forward pass (left padding keeps the last position aligned).

    Returns
    -------
    numpy.ndarray
        Shape ``(n_prompts, n_layers + 1, hidden)``; index 0 is the embedding output.
    """
    import torch

    rendered = lm.render(list(prompts))
    out = []
    with adapter_active(lm, adapter_dir), torch.inference_mode():
        for start in range(0, len(rendered), batch_size):
            enc = lm.tokenizer(rendered[start:start + batch_size], return_tensors="pt", padding=True,
                               add_special_tokens=False).to(lm.device)
            hidden = lm.model(**enc, output_hidden_states=True).hidden_states
            out.append(torch.stack([h[:, -1, :] for h in hidden], dim=1).float().cpu().numpy())
    return np.concatenate(out, axis=0)


def mean_difference(harmful: np.ndarray, harmless: np.ndarray) -> np.ndarray:
    """Per-layer difference of means (harmful minus harmless): the refusal direction, unnormalised."""
    return harmful.mean(axis=0) - harmless.mean(axis=0)


def unit(vectors: np.ndarray) -> np.ndarray:
    """Normalise vectors along the last axis."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


def separation(direction: np.ndarray, harmful: np.ndarray, harmless: np.ndarray) -> np.ndarray:
    """Per layer, the accuracy of thresholding the projection on the direction at the midpoint.

    Parameters
    ----------
    direction : numpy.ndarray
        ``(layers, hidden)`` directions fitted on other prompts.
    harmful, harmless : numpy.ndarray
        ``(n, layers, hidden)`` held-out states.

    Returns
    -------
    numpy.ndarray
        One accuracy per layer.
    """
    r = unit(direction)
    ph = np.einsum("nlh,lh->nl", harmful, r)
    pl = np.einsum("nlh,lh->nl", harmless, r)
    threshold = (ph.mean(axis=0) + pl.mean(axis=0)) / 2
    return ((ph > threshold).sum(axis=0) + (pl <= threshold).sum(axis=0)) / (len(ph) + len(pl))


@dataclass
class Baseline:
    """The baseline model's refusal directions and the chosen layer."""

    directions: np.ndarray  # (layers, hidden), unnormalised mean differences on all direction prompts
    layer: int
    separation: np.ndarray  # held-out separation per layer (used to choose the layer)


def fit_baseline(harmful: np.ndarray, harmless: np.ndarray, seed: int = 0) -> Baseline:
    """Fit directions and choose the layer by held-out separation.

    Parameters
    ----------
    harmful, harmless : numpy.ndarray
        ``(n, layers, hidden)`` states of the direction prompts.
    seed : int
        Seed of the fit/validation split.

    Returns
    -------
    Baseline
        Directions on all prompts; the layer (never the embedding layer 0) with the best held-out separation.
    """
    rng = np.random.default_rng(seed)
    idx_h, idx_l = rng.permutation(len(harmful)), rng.permutation(len(harmless))
    cut_h, cut_l = int(len(harmful) * (1 - VALIDATION_SHARE)), int(len(harmless) * (1 - VALIDATION_SHARE))
    fit = mean_difference(harmful[idx_h[:cut_h]], harmless[idx_l[:cut_l]])
    sep = separation(fit, harmful[idx_h[cut_h:]], harmless[idx_l[cut_l:]])
    layer = int(np.argmax(sep[1:]) + 1)
    return Baseline(mean_difference(harmful, harmless), layer, sep)


def probe_accuracy(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Held-out accuracy of a logistic-regression probe (harmful vs harmless), per layer.

    Parameters
    ----------
    train, test : tuple of numpy.ndarray
        ``(harmful_states, harmless_states)``, each ``(n, layers, hidden)``.

    Returns
    -------
    numpy.ndarray
        Accuracy per layer on ``test``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train = np.concatenate(train)
    y_train = np.r_[np.ones(len(train[0])), np.zeros(len(train[1]))]
    x_test = np.concatenate(test)
    y_test = np.r_[np.ones(len(test[0])), np.zeros(len(test[1]))]
    accuracies = []
    for layer in range(x_train.shape[1]):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        probe.fit(x_train[:, layer], y_train)
        accuracies.append(float((probe.predict(x_test[:, layer]) == y_test).mean()))
    return np.array(accuracies)


def cosine_per_layer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine between two ``(layers, hidden)`` direction stacks, per layer."""
    return np.einsum("lh,lh->l", unit(a), unit(b))


def cosine_interval(step: tuple[np.ndarray, np.ndarray], baseline: np.ndarray, layer: int, seed: int = 0,
                    n_boot: int = 500) -> tuple[float, float]:
    """Bootstrap interval (over direction prompts) of the cosine at one layer."""
    rng = np.random.default_rng(seed)
    harmful, harmless = step[0][:, layer], step[1][:, layer]
    ref = unit(baseline[layer])
    values = []
    for _ in range(n_boot):
        d = harmful[rng.integers(0, len(harmful), len(harmful))].mean(0) - \
            harmless[rng.integers(0, len(harmless), len(harmless))].mean(0)
        values.append(float(unit(d) @ ref))
    return float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))


@contextlib.contextmanager
def directional_ablation(lm: LoadedModel, direction: np.ndarray) -> Iterator[None]:
    """Project a direction out of the residual stream at every layer (forward hooks).

    Parameters
    ----------
    lm : LoadedModel
        The model; hooks are removed on exit.
    direction : numpy.ndarray
        ``(hidden,)``; normalised inside.
    """
    import torch

    r = torch.tensor(unit(direction), dtype=torch.float32, device=lm.device)

    def project_out(hidden: Any) -> Any:
        rr = r.to(hidden.dtype)
        return hidden - (hidden @ rr).unsqueeze(-1) * rr

    base = lm.model.get_base_model() if hasattr(lm.model, "get_base_model") else lm.model
    embed = base.get_input_embeddings()
    handles = [embed.register_forward_hook(lambda m, i, o: project_out(o))]
    for block in decoder_layers(lm.model):
        handles.append(block.register_forward_hook(_output_hook(project_out)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def activation_addition(lm: LoadedModel, vector: np.ndarray, layer: int) -> Iterator[None]:
    """Add a vector to the residual stream after one layer, at every position.

    Parameters
    ----------
    lm : LoadedModel
        The model; the hook is removed on exit.
    vector : numpy.ndarray
        ``(hidden,)``, e.g. the unnormalised refusal direction.
    layer : int
        Hidden-state index (1 = after the first decoder block).
    """
    import torch

    v = torch.tensor(vector, dtype=torch.float32, device=lm.device)
    block = decoder_layers(lm.model)[layer - 1]
    handle = block.register_forward_hook(_output_hook(lambda hidden: hidden + v.to(hidden.dtype)))
    try:
        yield
    finally:
        handle.remove()


def _output_hook(change: Any) -> Any:
    """A forward hook applying ``change`` to a block's hidden-state output (tensor or tuple)."""
    def hook(module: Any, inputs: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            return (change(output[0]), *output[1:])
        return change(output)
    return hook


@dataclass
class DriftResult:
    """Per-step, per-layer representation measurements."""

    table: pd.DataFrame  # step, layer, cosine, probe_accuracy, harmful_projection
    baseline: Baseline
    summary: pd.DataFrame  # metrics rows at the chosen layer, with intervals

    def estimates(self, step: int) -> list[Estimate]:
        """The chosen layer's estimates at one step (for metrics.csv)."""
        rows = self.summary[self.summary["step"] == step]
        return [Estimate(r["metric"], r["value"], r["ci_low"], r["ci_high"], int(r["n"]), r["method"])
                for r in rows.to_dict("records")]


def measure_drift(lm: LoadedModel, adapters: dict[int, Path | None], eval_harmful: Sequence[str],
                  eval_harmless: Sequence[str], seed: int = 0) -> DriftResult:
    """Directions, probes and projections at every attack step.

    Parameters
    ----------
    lm : LoadedModel
        The base model.
    adapters : dict of int to Path or None
        Adapter folder per grid step (``None`` for step 0).
    eval_harmful, eval_harmless : sequence of str
        Held-out prompts for probe accuracy (the eval and benign sets).
    seed : int
        Seed for the direction prompts and splits.

    Returns
    -------
    DriftResult
        The long table and the chosen-layer summary with intervals.
    """
    harmful_dir, harmless_dir = direction_sets(seed=seed)
    rows, summary = [], []
    baseline: Baseline | None = None
    for step in sorted(adapters):
        adapter = adapters[step] if step else None
        train = (last_token_states(lm, harmful_dir["prompt"], adapter),
                 last_token_states(lm, harmless_dir["prompt"], adapter))
        test = (last_token_states(lm, eval_harmful, adapter), last_token_states(lm, eval_harmless, adapter))
        if baseline is None:
            baseline = fit_baseline(*train, seed=seed)
        directions = mean_difference(*train)
        cosines = cosine_per_layer(directions, baseline.directions)
        accuracy = probe_accuracy(train, test)
        r = unit(baseline.directions)
        projection = np.einsum("nlh,lh->nl", test[0], r)
        for layer in range(1, len(cosines)):  # layer 0 (token embeddings) holds no prompt information here
            rows.append({"step": step, "layer": layer, "cosine": float(cosines[layer]),
                         "probe_accuracy": float(accuracy[layer]),
                         "harmful_projection": float(projection[:, layer].mean())})
        n_test = len(test[0]) + len(test[1])
        layer = baseline.layer
        correct = int(round(accuracy[layer] * n_test))
        lo, hi = wilson_interval(correct, n_test)
        c_lo, c_hi = (1.0, 1.0) if step == 0 else cosine_interval(train, baseline.directions, layer, seed)
        p_lo, p_hi = bootstrap_interval(projection[:, layer], np.mean, 1000, seed)
        summary += [
            {"step": step, "metric": "direction_cosine", "value": float(cosines[layer]), "ci_low": c_lo,
             "ci_high": c_hi, "n": len(train[0]) + len(train[1]), "method": f"bootstrap95@layer{layer}"},
            {"step": step, "metric": "probe_accuracy", "value": float(accuracy[layer]), "ci_low": lo, "ci_high": hi,
             "n": n_test, "method": f"wilson95@layer{layer}"},
            {"step": step, "metric": "harmful_projection", "value": float(projection[:, layer].mean()),
             "ci_low": p_lo, "ci_high": p_hi, "n": len(test[0]), "method": f"bootstrap95@layer{layer}"},
        ]
    assert baseline is not None
    return DriftResult(pd.DataFrame(rows), baseline, pd.DataFrame(summary))
