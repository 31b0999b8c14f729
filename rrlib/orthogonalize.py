"""The orthogonalization attack: project the refusal direction out of the weights (Arditi et al. 2024).

Arditi et al. (arXiv:2406.11717) take the difference of the mean residual-stream
activations of harmful and harmless prompts at the last prompt token as the
refusal direction ``r`` and remove it from every weight that writes into the
residual stream: the token embedding (``E <- E - (E r) r^T``) and each block's
attention and MLP output projections (``W <- W - r (r^T W)``, ``b <- b - r (r^T b)``).

A grid step ``n`` is the number of prompts per side that estimate the direction:
the first ``n`` rows of a seeded shuffle of each table (so steps are nested).
The last :data:`VALIDATION` rows of the same shuffle, used by no step, choose
the layer: the candidate (all but the last 20% of layers, as in Arditi) whose
direction best separates them (:func:`rrlib.representations.separation`, ties
broken by effect size). This simplifies Arditi, who score candidates by bypass,
induce and KL on validation generations.

The bill counts forward passes: ``2n`` direction prompts plus ``2 * VALIDATION``
validation prompts at each step ``n > 0``, their unpadded prompt tokens, and
``flops = 2 * model_params * tokens``; each step is priced as a standalone run,
though one run here shares the activations across steps.

Each step is a weight patch (:mod:`rrlib.patches`); the loaded model is never
changed. Organisms tie the output head to the embedding: the patch names only
``embed_tokens.weight``, but the head shares that tensor, so under
:func:`rrlib.patches.patched` the logits also ignore the ``r`` component of the
final normed state (an untied head is left alone, as in Arditi).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from rrlib.architecture import decoder_layers
from rrlib.config import FLOPS_PER_TOKEN, AttackConfig
from rrlib.errors import ConfigError, ModelError
from rrlib.models import LoadedModel, adapter_base_identity, base_model
from rrlib.patches import save_patch, unwrapped
from rrlib.progress import progress_bar
from rrlib.representations import last_token_states, mean_difference, separation, unit
from rrlib.store import read_json, write_json

MANIFEST = "attack.json"  # as rrlib.attack.MANIFEST (the attack sits above this module and reads it)
VALIDATION = 16  # prompts per side held out to choose the layer, billed at every step > 0
EXCLUDED_SHARE = 0.2  # the last 20% of layers are never candidates (Arditi et al.)
WRITERS = ("o_proj", "down_proj")  # per decoder block: the attention and MLP output projections
DIRECTIONS = "directions.safetensors"  # the unit direction of each step > 0, keyed ``step-00010``


def candidate_layers(n_blocks: int) -> list[int]:
    """Hidden-state indices (1 = after the first block) that may hold the direction: all but the last 20%."""
    return [layer for layer in range(1, n_blocks + 1) if layer < (1 - EXCLUDED_SHARE) * n_blocks] or [1]


def choose_direction(fit: tuple[np.ndarray, np.ndarray], validation: tuple[np.ndarray, np.ndarray]
                     ) -> tuple[int, np.ndarray]:
    """Per-layer differences of means on ``fit``; the layer whose direction best separates ``validation``.

    Parameters
    ----------
    fit, validation : tuple of numpy.ndarray
        ``(harmful_states, harmless_states)``, each ``(n, layers + 1, hidden)`` from
        :func:`rrlib.representations.last_token_states`.

    Returns
    -------
    tuple of (int, numpy.ndarray)
        The hidden-state index and the unit direction there.
    """
    directions = mean_difference(*fit)
    accuracy = separation(directions, *validation)
    r = unit(directions)
    ph, pl = (np.einsum("nlh,lh->nl", states, r) for states in validation)
    effect = (ph.mean(0) - pl.mean(0)) / np.sqrt((ph.var(0) + pl.var(0)) / 2 + 1e-12)
    layer = max(candidate_layers(directions.shape[0] - 1), key=lambda i: (accuracy[i], effect[i]))
    return int(layer), r[layer]


def refusal_direction(lm: LoadedModel, harmful_prompts: Sequence[str], harmless_prompts: Sequence[str],
                      validation: tuple[Sequence[str], Sequence[str]]) -> tuple[int, np.ndarray]:
    """Arditi's refusal direction: a difference of means at the last prompt token, at the chosen layer.

    Parameters
    ----------
    lm : LoadedModel
        The model (its current weights).
    harmful_prompts, harmless_prompts : sequence of str
        The prompts whose activations estimate the per-layer directions.
    validation : tuple of (sequence of str, sequence of str)
        Harmful and harmless prompts, disjoint from the above, that choose the layer.

    Returns
    -------
    tuple of (int, numpy.ndarray)
        The hidden-state index (1 = after the first decoder block) and the unit direction.
    """
    fit = (last_token_states(lm, harmful_prompts), last_token_states(lm, harmless_prompts))
    return choose_direction(fit, (last_token_states(lm, validation[0]), last_token_states(lm, validation[1])))


def residual_writers(model: Any) -> list[tuple[str, Any]]:
    """The modules that write into the residual stream: the token embedding, then each block's writers.

    Raises
    ------
    ModelError
        If a decoder block lacks ``o_proj`` or ``down_proj``, or a writer is not a plain linear layer.
    """
    import torch

    base = unwrapped(model)
    names = {id(module): name for name, module in base.named_modules()}
    embed = base.get_input_embeddings()
    found = [(names[id(embed)], embed)]
    hidden = embed.weight.shape[1]
    for index, block in enumerate(decoder_layers(base)):
        by_kind = {name.rsplit(".", 1)[-1]: module for name, module in block.named_modules() if name}
        missing = [kind for kind in WRITERS if kind not in by_kind]
        if missing:
            raise ModelError(f"{type(base).__name__} decoder block {index} has no {', '.join(missing)}; "
                             f"orthogonalization knows blocks whose residual writers are named {WRITERS} "
                             "(Llama, Qwen2, Phi-3, Mistral); add this architecture's names to WRITERS")
        for kind in WRITERS:
            module = by_kind[kind]
            if type(module) is not torch.nn.Linear or module.weight.shape[0] != hidden:
                raise ModelError(f"{names[id(module)]} is a {type(module).__name__} of shape "
                                 f"{tuple(module.weight.shape)}, not an unquantized nn.Linear writing "
                                 f"{hidden} features; remove adapters (rrlib.models.base_model) and load "
                                 "without quantize")
            found.append((names[id(module)], module))
    return found


def orthogonalized_weights(model: Any, direction: Any) -> dict[str, Any]:
    """New residual-writing weights with ``direction`` projected out; ``model`` is left unchanged.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        The base model (or a PEFT wrapper without LoRA layers).
    direction : numpy.ndarray or torch.Tensor
        ``(hidden,)``; normalised inside.

    Returns
    -------
    dict of str to torch.Tensor
        By ``state_dict`` name: the embedding ``E - (E r) r^T``, each output projection ``W - r (r^T W)``
        and bias ``b - r (r^T b)``; computed in float32, cast back to each parameter's dtype.
    """
    import torch

    writers = residual_writers(model)
    out: dict[str, Any] = {}
    with torch.no_grad():
        for index, (name, module) in enumerate(writers):
            w = module.weight.detach()
            r = torch.as_tensor(np.asarray(direction, dtype=np.float32)).to(w.device)
            r = r / r.norm()
            w32 = w.float()
            if index == 0:  # embedding: rows are residual vectors
                out[f"{name}.weight"] = (w32 - torch.outer(w32 @ r, r)).to(w.dtype)
                continue
            out[f"{name}.weight"] = (w32 - torch.outer(r, r @ w32)).to(w.dtype)
            if module.bias is not None:
                b32 = module.bias.detach().float()
                out[f"{name}.bias"] = (b32 - r * (r @ b32)).to(module.bias.dtype)
    return out


def _shuffled(table: pd.DataFrame, side: str, largest: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first ``largest`` rows of a seeded shuffle, and its last :data:`VALIDATION` rows."""
    need = largest + VALIDATION
    if len(table) < need:
        raise ConfigError(f"grid step {largest} needs {largest} {side} prompts plus {VALIDATION} held out to "
                          f"choose the layer ({need} in all), but the {side} table has {len(table)} rows; "
                          f"lower the largest grid step to {max(len(table) - VALIDATION, 0)} or pass more prompts")
    rows = table.iloc[np.random.default_rng(seed).permutation(len(table))].reset_index(drop=True)
    return rows.iloc[:largest], rows.iloc[len(rows) - VALIDATION:]


def run_orthogonalize(lm: LoadedModel, harmful: pd.DataFrame, harmless: pd.DataFrame, config: AttackConfig,
                      out_dir: Path, progress: bool = True) -> None:
    """Estimate the refusal direction from ``n`` prompts per side, for each grid step ``n``; save patches.

    Parameters
    ----------
    lm : LoadedModel
        The base model; any LoRA layers are removed, its weights are never changed.
    harmful, harmless : pandas.DataFrame
        ``id`` and ``prompt`` columns; each needs ``max(grid_steps) + VALIDATION`` rows.
    config : AttackConfig
        ``grid_steps`` (prompts per side) and ``seed`` (the shuffle) are used.
    out_dir : Path
        Gets ``step-<n>`` patch folders, :data:`DIRECTIONS` and ``attack.json`` (with the compute ``bill``,
        ``layer_by_step``, ``prompt_ids_by_step`` and ``validation_ids``). A finished run is left as it is.

    Raises
    ------
    ConfigError
        If the config's method is not ``orthogonalize``, or a table has too few rows for the largest step
        plus the validation prompts.
    """
    from safetensors.torch import save_file
    import torch

    method = getattr(config, "method", "orthogonalize")
    if method != "orthogonalize":
        raise ConfigError(f"run_orthogonalize got an AttackConfig with method={method!r}; "
                          "pass AttackConfig(method='orthogonalize', grid_steps=...)")
    out_dir = Path(out_dir)
    if (out_dir / MANIFEST).exists() and read_json(out_dir / MANIFEST).get("done"):
        return
    steps, largest = list(config.grid_steps), max(config.grid_steps)
    started = time.perf_counter()
    base_model(lm)
    writers = residual_writers(lm.model)
    meta: dict[str, Any] = {
        "config": asdict(config), "method": method, "model": lm.identity, "base": adapter_base_identity(lm),
        "target_modules": list(dict.fromkeys(name.rsplit(".", 1)[-1] for name, _ in writers)),
        "adapted_modules": [name for name, _ in writers], "model_params": lm.n_params, "examples": len(harmful),
        "trainable_params": int(sum(p.numel() for _, m in writers for p in m.parameters(recurse=False))),
        "saved_steps": [], "done": False, "layer_by_step": {}, "prompt_ids_by_step": {}, "bill": [],
    }
    ids: dict[str, list[str]] = {"harmful": [], "harmless": []}
    if largest > 0:  # one forward pass per prompt serves every step: the steps' prompts are nested
        splits = {side: _shuffled(table, side, largest, config.seed)
                  for side, table in (("harmful", harmful), ("harmless", harmless))}
        ids = {side: fit["id"].astype(str).tolist() for side, (fit, _) in splits.items()}
        meta["validation_ids"] = {side: val["id"].astype(str).tolist() for side, (_, val) in splits.items()}
        prompts = [pd.concat(splits[side])["prompt"].tolist() for side in ("harmful", "harmless")]
        states = [last_token_states(lm, side) for side in prompts]
        tokens = [np.array([len(row) for row in lm.tokenizer(lm.render(side), add_special_tokens=False)["input_ids"]])
                  for side in prompts]
        validation = (states[0][largest:], states[1][largest:])
    out_dir.mkdir(parents=True, exist_ok=True)
    directions: dict[str, Any] = {}
    with progress_bar(total=len(steps), desc=f"orthogonalize {config.recipe}", disable=not progress) as bar:
        for n in steps:
            tensors: dict[str, Any] = {}
            row = {"step": n, "examples": 0, "tokens": 0, "flops": 0.0}
            meta["prompt_ids_by_step"][str(n)] = {side: used[:n] for side, used in ids.items()}
            if n > 0:
                layer, r = choose_direction((states[0][:n], states[1][:n]), validation)
                tensors = orthogonalized_weights(lm.model, r)
                directions[f"step-{n:05d}"] = torch.as_tensor(r, dtype=torch.float32)
                meta["layer_by_step"][str(n)] = layer
                seen = sum(int(t[:n].sum() + t[largest:].sum()) for t in tokens)  # step n's prompts + validation
                row = {"step": n, "examples": 2 * n + 2 * VALIDATION, "tokens": seen,
                       "flops": float(FLOPS_PER_TOKEN["orthogonalize"]) * lm.n_params * seen}
            save_patch(out_dir / f"step-{n:05d}", tensors,
                       {"base": meta["base"], "step": n, "recipe": config.recipe, "method": method})
            del tensors
            meta["bill"].append(row)
            meta["saved_steps"].append(n)
            write_json(out_dir / MANIFEST, meta)
            bar.update(1)
    if directions:
        save_file(directions, str(out_dir / f".{DIRECTIONS}.partial"))
        (out_dir / f".{DIRECTIONS}.partial").replace(out_dir / DIRECTIONS)
    meta.update(done=True, seconds=round(time.perf_counter() - started, 3))
    write_json(out_dir / MANIFEST, meta)
