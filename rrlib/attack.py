"""The adversarial LoRA fine-tune: one training run, an adapter at every grid step.

The attacker fine-tunes LoRA adapters on harmful-sounding requests paired with
generic compliance. Training runs once per recipe with a constant learning
rate and a fixed data order, and saves an adapter at each grid step, so the
checkpoint at step 25 is exactly what a separate 25-step run would produce
(the original study retrained for every grid point).

Each run records its loss curve and its compute bill: trainable parameters,
tokens seen and FLOPs, estimated as ``4 * N_model * tokens`` (a forward and a
backward pass through frozen weights). Target modules are resolved per
architecture (Phi-3 fuses ``qkv_proj``), and the modules actually adapted are
logged. An interrupted run resumes from its last saved grid step.
"""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from rrlib.config import AttackConfig, build_seed, results_dir, slug, stable_hash
from rrlib.errors import ConfigError, DataError
from rrlib.models import LoadedModel, adapter_base_identity, base_model, quiet_peft
from rrlib.progress import progress_bar
from rrlib.store import read_json, write_csv, write_json
from rrlib.training import collate, encode_chats

# LoRA targets per architecture: attention projections, as each model names them.
TARGET_MODULES: dict[str, tuple[str, ...]] = {
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "mistral": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "qwen2": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "qwen3": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "gemma": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "gemma2": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "phi3": ("qkv_proj", "o_proj"),  # Phi-3 fuses q, k and v into one projection
    "phi": ("q_proj", "k_proj", "v_proj", "dense"),
    "gpt2": ("c_attn", "c_proj"),
    "gpt_neox": ("query_key_value", "dense"),
}
MANIFEST = "attack.json"
LOSS_WINDOW = 5  # optimiser steps averaged for the training loss reported at a grid step


@dataclass
class AttackResult:
    """What one attack run produced.

    Attributes
    ----------
    out_dir : Path
        The run folder (adapters, loss curve, bill, manifest).
    config : AttackConfig
        The recipe.
    adapters : dict of int to Path
        Adapter folder per grid step.
    loss_curve : pandas.DataFrame
        ``step, loss, tokens`` per optimiser step.
    bill : pandas.DataFrame
        Compute per grid step: examples, tokens, FLOPs, trainable and model parameters.
    target_modules : list of str
        Module names LoRA was asked to target.
    adapted_modules : list of str
        Full names of the modules that were actually adapted.
    seconds : float
        Wall time of the training (0 when fully loaded from disk).
    """

    out_dir: Path
    config: AttackConfig
    adapters: dict[int, Path]
    loss_curve: pd.DataFrame
    bill: pd.DataFrame
    target_modules: list[str]
    adapted_modules: list[str]
    seconds: float

    @property
    def recipe(self) -> str:
        """The recipe name, e.g. ``lora-r8-lr0.001-s0``."""
        return self.config.recipe


def resolve_target_modules(model: Any, requested: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """Pick LoRA target modules for a model's architecture.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        The base model.
    requested : tuple of str, optional
        Explicit names; checked to exist.

    Returns
    -------
    tuple of str
        Module name suffixes present in the model.

    Raises
    ------
    ConfigError
        If a requested name matches no module, or the architecture is unknown.
    """
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    if requested:
        missing = [m for m in requested if m not in names]
        if missing:
            raise ConfigError(f"target_modules {missing} not found in {type(model).__name__}; "
                              f"linear layers present include: {', '.join(sorted(names)[:20])}")
        return tuple(requested)
    model_type = getattr(model.config, "model_type", "")
    if model_type in TARGET_MODULES:
        return tuple(m for m in TARGET_MODULES[model_type] if m in names)
    guess = tuple(m for m in ("q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj") if m in names)
    if guess:
        return guess
    raise ConfigError(f"no LoRA target rule for model_type {model_type!r}; pass target_modules=[...]")


def attack_dir(lm: LoadedModel, config: AttackConfig, root: Path | None = None) -> Path:
    """Folder of an attack run: ``results/attacks/<model>/<recipe>-<hash>``."""
    key = stable_hash({"model": lm.identity, "config": asdict(config)}, 8)
    return (root or results_dir()) / "attacks" / slug(lm.name) / f"{config.recipe}-{key}"


def _batches(n_examples: int, batch_size: int, seed: int, steps: int) -> list[list[int]]:
    """The example indices of each optimiser step: seeded reshuffles, epoch after epoch."""
    rng = random.Random(seed)
    order: list[int] = []
    out = []
    for _ in range(steps):
        if len(order) < batch_size:
            epoch = list(range(n_examples))
            rng.shuffle(epoch)
            order += epoch
        out.append(order[:batch_size])
        order = order[batch_size:]
    return out


def run_attack(lm: LoadedModel, attack_set: pd.DataFrame, config: AttackConfig | None = None,
               out_dir: Path | None = None, progress: bool = True, force: bool = False) -> AttackResult:
    """Train the LoRA attack once and save an adapter at every grid step.

    Parameters
    ----------
    lm : LoadedModel
        The base model; it is restored (LoRA layers removed) afterwards.
    attack_set : pandas.DataFrame
        Prompts with compliance ``target`` answers.
    config : AttackConfig, optional
        The recipe (defaults: steps 0-100, rank 8, lr 1e-3).
    out_dir : Path, optional
        Defaults to :func:`attack_dir`.
    progress : bool
        Show a progress bar.
    force : bool
        Retrain even if a finished run exists.

    Returns
    -------
    AttackResult
        Adapters, loss curve and compute bill.
    """
    import torch
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from peft.tuners.lora import LoraLayer
    from safetensors.torch import load_file

    config = config or AttackConfig()
    if len(attack_set) == 0 or "target" not in attack_set:
        raise DataError("the attack set is empty or has no 'target' answers; load it with rrlib.data.load_attack_set")
    out_dir = Path(out_dir) if out_dir else attack_dir(lm, config)
    if force:
        shutil.rmtree(out_dir, ignore_errors=True)
    manifest = read_json(out_dir / MANIFEST) if (out_dir / MANIFEST).exists() else None
    if manifest and manifest.get("done"):
        return load_attack(out_dir)

    base_model(lm)
    torch.manual_seed(config.seed)
    targets = resolve_target_modules(lm.model, config.target_modules)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=list(targets), bias="none", task_type="CAUSAL_LM")
    with quiet_peft():
        model = get_peft_model(lm.model, lora)
    adapted = sorted(n for n, m in model.named_modules() if isinstance(m, LoraLayer))
    trainable = int(sum(p.numel() for p in model.parameters() if p.requires_grad))
    examples = encode_chats(lm.tokenizer, list(zip(attack_set["prompt"], attack_set["target"])), config.max_length)
    last = config.grid_steps[-1]
    batches = _batches(len(examples), config.batch_size, config.seed, last)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate,
                                  weight_decay=0.0)
    pad = lm.tokenizer.pad_token_id
    losses: list[dict[str, Any]] = []
    start_step = 0
    done_steps: list[int] = []
    if manifest and manifest.get("saved_steps"):  # resume after an interruption
        start_step = max(manifest["saved_steps"])
        done_steps = list(manifest["saved_steps"])
        weights = load_file(str(out_dir / f"step-{start_step:05d}" / "adapter_model.safetensors"))
        set_peft_model_state_dict(model, weights)
        optimizer.load_state_dict(torch.load(out_dir / "optimizer.pt", weights_only=True))
        losses = pd.read_csv(out_dir / "loss_curve.csv").query("step <= @start_step").to_dict("records")
    meta = {"config": asdict(config), "model": lm.identity, "base": adapter_base_identity(lm),
            "target_modules": list(targets), "adapted_modules": adapted, "trainable_params": trainable,
            "model_params": lm.n_params, "examples": len(examples), "saved_steps": done_steps, "done": False}
    started = time.perf_counter()
    model.train()
    device = lm.device

    def save(step: int) -> None:
        folder = out_dir / f"step-{step:05d}"
        tmp = out_dir / f".step-{step:05d}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(str(tmp))
        write_json(tmp / "rr_adapter.json", {"base": meta["base"], "step": step, "recipe": config.recipe})
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
        tmp_opt = out_dir / ".optimizer.pt.partial"
        torch.save(optimizer.state_dict(), tmp_opt)
        tmp_opt.replace(out_dir / "optimizer.pt")
        write_csv(out_dir / "loss_curve.csv", pd.DataFrame(losses, columns=["step", "loss", "tokens"]))
        meta["saved_steps"] = sorted(set(meta["saved_steps"]) | {step})
        write_json(out_dir / MANIFEST, meta)

    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        if 0 in config.grid_steps and 0 not in meta["saved_steps"]:
            save(0)
        with progress_bar(total=last, initial=start_step, desc=f"attack {config.recipe}",
                          disable=not progress) as bar:
            for step in range(start_step + 1, last + 1):
                batch = [examples[i] for i in batches[step - 1]]
                input_ids, labels, mask = collate(batch, pad)
                out = model(input_ids=input_ids.to(device), attention_mask=mask.to(device), labels=labels.to(device))
                optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                optimizer.step()
                losses.append({"step": step, "loss": float(out.loss.detach()), "tokens": int(mask.sum())})
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]['loss']:.3f}")
                if step in config.grid_steps:
                    save(step)
    finally:
        model.eval()
        lm.model = model.unload()  # remove LoRA layers: the base model is unchanged
    meta["done"] = True
    meta["seconds"] = round(time.perf_counter() - started, 3)
    write_json(out_dir / MANIFEST, meta)
    return load_attack(out_dir)


def compute_bill(manifest: dict[str, Any], loss_curve: pd.DataFrame) -> pd.DataFrame:
    """Attacker compute at each grid step.

    Parameters
    ----------
    manifest : dict
        The run's ``attack.json``.
    loss_curve : pandas.DataFrame
        ``step, loss, tokens`` per optimiser step.

    Returns
    -------
    pandas.DataFrame
        ``step, examples, tokens, flops, trainable_params, model_params``;
        ``flops = 4 * model_params * tokens``.
    """
    config = manifest["config"]
    cumulative = loss_curve.sort_values("step").set_index("step")["tokens"].cumsum()
    rows = []
    for step in config["grid_steps"]:
        tokens = int(cumulative.loc[:step].iloc[-1]) if step > 0 and len(cumulative) else 0
        rows.append({"step": step, "examples": step * config["batch_size"], "tokens": tokens,
                     "flops": 4.0 * manifest["model_params"] * tokens,
                     "trainable_params": manifest["trainable_params"], "model_params": manifest["model_params"]})
    return pd.DataFrame(rows)


def load_attack(out_dir: str | Path) -> AttackResult:
    """Load a finished attack run from its folder.

    Parameters
    ----------
    out_dir : str or Path
        A folder written by :func:`run_attack`.

    Returns
    -------
    AttackResult
        With adapters for every saved grid step.

    Raises
    ------
    DataError
        If the folder holds no finished run.
    """
    out_dir = Path(out_dir)
    if not (out_dir / MANIFEST).exists():
        raise DataError(f"{out_dir}: no attack run here (no {MANIFEST}); run the Day4 attack first")
    manifest = read_json(out_dir / MANIFEST)
    try:
        config = AttackConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in manifest["config"].items()})
        curve_path = out_dir / "loss_curve.csv"
        curve = pd.read_csv(curve_path) if curve_path.exists() else pd.DataFrame(columns=["step", "loss", "tokens"])
        adapters = {s: out_dir / f"step-{s:05d}" for s in manifest["saved_steps"]}
        bill = compute_bill({**manifest, "config": asdict(config)}, curve)
        return AttackResult(out_dir, config, adapters, curve, bill, manifest["target_modules"],
                            manifest["adapted_modules"], manifest.get("seconds", 0.0))
    except (KeyError, TypeError) as exc:
        raise DataError(f"{out_dir / MANIFEST}: malformed attack manifest ({type(exc).__name__}: {exc}); "
                        "delete the folder and rerun the Day4 attack") from None


def loss_at(curve: pd.DataFrame, step: int) -> float | None:
    """The training loss reached at a grid step: the mean over the last :data:`LOSS_WINDOW` optimiser steps.

    Parameters
    ----------
    curve : pandas.DataFrame
        ``step, loss`` per optimiser step.
    step : int
        The grid step.

    Returns
    -------
    float or None
        ``None`` at step 0 (nothing trained yet) or where the curve has no steps in the window.
    """
    window = curve[(curve["step"] > step - LOSS_WINDOW) & (curve["step"] <= step)]
    return float(window["loss"].mean()) if step > 0 and len(window) else None


def config_from_parameters(params: Mapping[str, Any]) -> AttackConfig:
    """The :class:`rrlib.config.AttackConfig` described by Day 4's notebook parameters.

    A ``seed`` of ``None`` attacks with the model's build seed (:func:`rrlib.config.build_seed`), so that
    each build of an organism size is attacked with its own seed and resampling builds resamples attacks.
    """
    seed = params["seed"] if params.get("seed") is not None else build_seed(params["model"])
    return AttackConfig(grid_steps=tuple(params["grid_steps"]), rank=params["rank"], alpha=float(params["alpha"]),
                        learning_rate=float(params["learning_rate"]), batch_size=params["attack_batch_size"],
                        target_modules=tuple(params["target_modules"]) if params.get("target_modules") else None,
                        seed=int(seed))


def modules_table(result: AttackResult) -> pd.DataFrame:
    """The adapted module names, grouped by module type (count and one example each)."""
    names = pd.Series(result.adapted_modules, dtype=str)
    kinds = names.str.rsplit(".", n=1).str[-1]
    return (pd.DataFrame({"module type": kinds, "name": names}).groupby("module type")
            .agg(count=("name", "size"), example=("name", "first")).reset_index())
