"""The attacks of Day 4: one run per recipe, a checkpoint at every grid step.

Four attacks share one interface and one compute axis (:data:`rrlib.config.ATTACKS`):

- ``lora``: LoRA adapters trained on harmful-sounding requests paired with generic compliance;
- ``full``: full fine-tuning of every weight on the same data (a weight patch per step, :mod:`rrlib.patches`);
- ``benign``: LoRA adapters trained on benign instructions only (Qi et al. 2023's third tier);
- ``orthogonalize``: refusal-direction weight orthogonalization (:mod:`rrlib.orthogonalize`).

A training attack runs once per recipe with a constant learning rate and a
fixed data order and saves a checkpoint at each grid step, so the checkpoint
at step 25 is exactly what a separate 25-step run would produce (the original
study retrained for every grid point). An interrupted run resumes from its
last saved grid step.

Each run records its loss curve and its compute bill: trainable parameters,
examples, tokens and FLOPs, estimated as ``k * N_model * tokens`` with ``k``
from :data:`rrlib.config.FLOPS_PER_TOKEN` (4 for adapters: a forward and a
backward pass through frozen weights; 6 for full fine-tuning; 2 for the
forward passes of the orthogonalization's direction estimate). Target modules
are resolved per architecture (Phi-3 fuses ``qkv_proj``), and the modules
actually adapted are logged.
"""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from rrlib.config import DEFAULT_LEARNING_RATES, FLOPS_PER_TOKEN, AttackConfig, build_seed, results_dir, slug, stable_hash
from rrlib.errors import ConfigError, DataError
from rrlib.models import LoadedModel, adapter_base_identity, base_model, quiet_peft
from rrlib.patches import load_patch, save_patch
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
    key = stable_hash({"model": lm.identity, "config": config.identity()}, 8)
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


class _Trainable:
    """What the training loop needs from one training attack: the model to step, its trainable
    parameters, how to save a checkpoint and restore the base model, and how to resume."""

    def __init__(self, lm: LoadedModel, config: AttackConfig) -> None:
        import torch

        self.lm, self.config = lm, config
        base_model(lm)
        torch.manual_seed(config.seed)
        if config.method == "full":
            self.targets: tuple[str, ...] = ("all",)
            self.model = lm.model
            self.originals = {n: p.detach().to("cpu", copy=True) for n, p in self.model.named_parameters()}
            for p in self.model.parameters():
                p.requires_grad_(True)
            self.adapted = sorted(n for n, _ in self.model.named_parameters())
        else:
            from peft import LoraConfig, get_peft_model
            from peft.tuners.lora import LoraLayer

            self.targets = resolve_target_modules(lm.model, config.target_modules)
            lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                              target_modules=list(self.targets), bias="none", task_type="CAUSAL_LM")
            with quiet_peft():
                self.model = get_peft_model(lm.model, lora)
            self.adapted = sorted(n for n, m in self.model.named_modules() if isinstance(m, LoraLayer))
        self.parameters = [p for p in self.model.parameters() if p.requires_grad]
        self.trainable = int(sum(p.numel() for p in self.parameters))

    def save(self, folder: Path, info: dict[str, Any]) -> None:
        """Write the checkpoint of the current weights: a LoRA adapter, or a patch of every weight."""
        if self.config.method == "full":
            save_patch(folder, dict(self.model.named_parameters()), info)
            return
        tmp = folder.with_name(f".{folder.name}.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save_pretrained(str(tmp))
        write_json(tmp / "rr_adapter.json", info)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)

    def load(self, folder: Path) -> None:
        """Restore the weights of a saved checkpoint (to resume an interrupted run)."""
        import torch

        if self.config.method == "full":
            tensors = load_patch(folder)
            with torch.no_grad():
                for name, p in self.model.named_parameters():
                    p.copy_(tensors[name])
            return
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(self.model, load_file(str(folder / "adapter_model.safetensors")))

    def restore(self) -> None:
        """Give ``lm`` its base model back, unchanged."""
        import torch

        self.model.eval()
        if self.config.method == "full":
            with torch.no_grad():
                for name, p in self.model.named_parameters():
                    p.copy_(self.originals[name])
                    p.requires_grad_(False)
            self.lm.model = self.model
        else:
            self.lm.model = self.model.unload()  # remove LoRA layers: the base model is unchanged


def run_attack(lm: LoadedModel, attack_set: pd.DataFrame, config: AttackConfig | None = None,
               out_dir: Path | None = None, progress: bool = True, force: bool = False,
               harmless: pd.DataFrame | None = None) -> AttackResult:
    """Run one attack once and save a checkpoint at every grid step.

    ``lora`` and ``benign`` save LoRA adapters; ``full`` saves a weight patch of every weight
    (:mod:`rrlib.patches`); ``orthogonalize`` estimates the refusal direction and saves the orthogonalized
    weights (:mod:`rrlib.orthogonalize`).

    Parameters
    ----------
    lm : LoadedModel
        The base model; it is restored (unchanged) afterwards.
    attack_set : pandas.DataFrame
        Prompts with ``target`` answers (for ``benign``: benign instructions; for ``orthogonalize``: the
        harmful prompts of the direction estimate).
    config : AttackConfig, optional
        The recipe (defaults: LoRA, steps 0-100, rank 8, lr 1e-3).
    out_dir : Path, optional
        Defaults to :func:`attack_dir`.
    progress : bool
        Show a progress bar.
    force : bool
        Rerun even if a finished run exists.
    harmless : pandas.DataFrame, optional
        Harmless prompts (``orthogonalize`` only: the other side of the direction estimate).

    Returns
    -------
    AttackResult
        Checkpoints, loss curve and compute bill.
    """
    import torch

    config = config or AttackConfig()
    if len(attack_set) == 0 or ("target" not in attack_set and config.method != "orthogonalize"):
        raise DataError("the attack set is empty or has no 'target' answers; load it with rrlib.data.load_attack_set")
    out_dir = Path(out_dir) if out_dir else attack_dir(lm, config)
    if force:
        shutil.rmtree(out_dir, ignore_errors=True)
    manifest = read_json(out_dir / MANIFEST) if (out_dir / MANIFEST).exists() else None
    if manifest and manifest.get("done"):
        return load_attack(out_dir)
    if config.method == "orthogonalize":
        from rrlib.orthogonalize import run_orthogonalize

        if harmless is None or len(harmless) == 0:
            raise DataError("the orthogonalize attack needs harmless prompts (harmless=...) beside the harmful ones")
        base_model(lm)
        run_orthogonalize(lm, attack_set, harmless, config, out_dir, progress=progress)
        return load_attack(out_dir)

    trainer = _Trainable(lm, config)
    model = trainer.model
    examples = encode_chats(lm.tokenizer, list(zip(attack_set["prompt"], attack_set["target"])), config.max_length)
    last = config.grid_steps[-1]
    batches = _batches(len(examples), config.batch_size, config.seed, last)
    optimizer = torch.optim.AdamW(trainer.parameters, lr=config.learning_rate, weight_decay=0.0)
    pad = lm.tokenizer.pad_token_id
    losses: list[dict[str, Any]] = []
    start_step = 0
    done_steps: list[int] = []
    meta = {"config": asdict(config), "model": lm.identity, "base": adapter_base_identity(lm),
            "target_modules": list(trainer.targets), "adapted_modules": trainer.adapted,
            "trainable_params": trainer.trainable, "model_params": lm.n_params, "examples": len(examples),
            "saved_steps": done_steps, "done": False}
    if manifest and manifest.get("saved_steps"):  # resume after an interruption
        start_step = max(manifest["saved_steps"])
        done_steps = list(manifest["saved_steps"])
        meta["saved_steps"] = done_steps
        trainer.load(out_dir / f"step-{start_step:05d}")
        optimizer.load_state_dict(torch.load(out_dir / "optimizer.pt", weights_only=True))
        losses = pd.read_csv(out_dir / "loss_curve.csv").query("step <= @start_step").to_dict("records")
    started = time.perf_counter()
    model.train()
    device = lm.device

    def save(step: int) -> None:
        trainer.save(out_dir / f"step-{step:05d}", {"base": meta["base"], "step": step, "recipe": config.recipe})
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
        trainer.restore()
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
        ``flops = k * model_params * tokens`` with ``k`` from :data:`rrlib.config.FLOPS_PER_TOKEN`.
    """
    config = manifest["config"]
    method = config.get("method", "lora")
    sizes = {"trainable_params": manifest["trainable_params"], "model_params": manifest["model_params"]}
    if manifest.get("bill"):  # an attack that bills itself (orthogonalize: its forward passes)
        return pd.DataFrame([{"step": int(r["step"]), "examples": int(r["examples"]), "tokens": int(r["tokens"]),
                              "flops": float(r["flops"]), **sizes} for r in manifest["bill"]])
    cumulative = loss_curve.sort_values("step").set_index("step")["tokens"].cumsum()
    rows = []
    for step in config["grid_steps"]:
        tokens = int(cumulative.loc[:step].iloc[-1]) if step > 0 and len(cumulative) else 0
        rows.append({"step": step, "examples": step * config["batch_size"], "tokens": tokens,
                     "flops": float(FLOPS_PER_TOKEN[method]) * manifest["model_params"] * tokens, **sizes})
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
    ``attack`` picks the method (default ``lora``); a ``learning_rate`` of ``None`` takes the method's default
    (:data:`rrlib.config.DEFAULT_LEARNING_RATES`).
    """
    seed = params["seed"] if params.get("seed") is not None else build_seed(params["model"])
    method = params.get("attack") or "lora"
    rate = params.get("learning_rate")
    return AttackConfig(grid_steps=tuple(params["grid_steps"]), rank=params["rank"], alpha=float(params["alpha"]),
                        learning_rate=float(DEFAULT_LEARNING_RATES.get(method, 1e-3) if rate is None else rate),
                        batch_size=params["attack_batch_size"],
                        target_modules=tuple(params["target_modules"]) if params.get("target_modules") else None,
                        seed=int(seed), method=method)


def modules_table(result: AttackResult) -> pd.DataFrame:
    """The adapted module names, grouped by module type (count and one example each)."""
    names = pd.Series(result.adapted_modules, dtype=str)
    kinds = names.str.rsplit(".", n=1).str[-1]
    return (pd.DataFrame({"module type": kinds, "name": names}).groupby("module type")
            .agg(count=("name", "size"), example=("name", "first")).reset_index())


@dataclass
class AttackInputs:
    """The prompt sets of one attack run, checked disjoint.

    Attributes
    ----------
    sets : PromptSets
        Eval, benign and the attack's training set (``sets.attack``), checked against each other, the dev
        split, the organism corpus and the judge-calibration prompts.
    train : pandas.DataFrame
        What the attack trains on: harmful requests with generic compliance (``lora``, ``full``, and the
        harmful side of ``orthogonalize``), or benign instructions (``benign``).
    harmless : pandas.DataFrame or None
        ``orthogonalize`` only: the harmless side of the direction estimate (the benign instructions).
    """

    sets: "PromptSets"
    train: pd.DataFrame
    harmless: pd.DataFrame | None = None


def load_inputs(params: Mapping[str, Any]) -> AttackInputs:
    """Load and check the data an attack needs, from Day 4's parameters.

    ``benign`` trains on ``benign_train_path`` instead of ``attack_path``; ``orthogonalize`` takes its harmful
    prompts from ``attack_path`` and its harmless ones from ``benign_train_path``. Every set is checked
    against every other one for shared prompts before any model is loaded.

    Raises
    ------
    rrlib.errors.OverlapError
        If two sets share a prompt.
    """
    from rrlib.data import DEFAULT_BENIGN_TRAIN, check_disjoint, load_attack_set, load_sets

    method = params.get("attack") or "lora"
    benign_train = params.get("benign_train_path") or DEFAULT_BENIGN_TRAIN
    attack_path = benign_train if method == "benign" else params["attack_path"]
    attack_format = None if method == "benign" else params.get("attack_format")
    sets = load_sets(params["eval_path"], params["benign_path"], attack_path, params.get("eval_format"),
                     params.get("benign_format"), attack_format)
    harmless = None
    if method == "orthogonalize":
        harmless = load_attack_set(benign_train)
        check_disjoint({**sets.named(), "benign_train": harmless})
    return AttackInputs(sets, sets.attack, harmless)
