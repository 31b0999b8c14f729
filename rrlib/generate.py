"""Batched, resumable generation through the chat template.

Prompts are rendered with the model's chat template, sorted by length and
generated in left-padded batches (greedy by default). Only the new tokens are
decoded, so judges never see the echoed prompt. Each finished batch is
appended to a JSONL cache keyed by (model, adapter, prompt, generation
config), so a killed run resumes where it stopped and a rerun costs nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pandas as pd

from rrlib.config import GenerationConfig, results_dir, slug, stable_hash
from rrlib.models import LoadedModel, check_adapter_base, eos_ids, quiet_peft
from rrlib.patches import is_patch, patch_key, patched
from rrlib.progress import progress_bar
from rrlib.store import append_jsonl, read_jsonl

RESPONSE_COLUMNS = ["id", "prompt", "response", "n_new_tokens", "stopped"]


def cache_path(lm: LoadedModel, root: Path | None = None) -> Path:
    """The JSONL generation cache of a model: ``results/cache/generations/<model>.jsonl``."""
    return (root or results_dir()) / "cache" / "generations" / f"{slug(lm.name)}.jsonl"


def adapter_key(adapter_dir: str | Path | None) -> str:
    """Identify an adapter by the hash of its weights (``base`` for none)."""
    if adapter_dir is None:
        return "base"
    if is_patch(adapter_dir):
        return patch_key(adapter_dir)
    weights = Path(adapter_dir) / "adapter_model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12] if weights.exists() else "missing"
    return f"lora-{digest}"


def record_key(model_id: str, adapter: str, prompt: str, config: GenerationConfig, system: str | None) -> str:
    """The cache key of one generation."""
    return stable_hash([model_id, adapter, prompt, config.cache_key(), system or ""], 20)


@contextlib.contextmanager
def adapter_active(lm: LoadedModel, adapter_dir: str | Path | None) -> Iterator[str]:
    """Activate an attack checkpoint (a LoRA adapter, a weight patch, or none) on ``lm.model`` for the block.

    Adapters are loaded once into a shared ``PeftModel`` and switched by name,
    so evaluating many grid steps loads the base model once. A weight patch
    (:mod:`rrlib.patches`) is swapped into the base weights for the block and
    swapped out afterwards.

    Parameters
    ----------
    lm : LoadedModel
        The base model (wrapped in place on first use).
    adapter_dir : str or Path or None
        An adapter folder; ``None`` runs the base model with adapters disabled.

    Yields
    ------
    str
        The adapter key used in the cache.
    """
    from peft import PeftModel

    key = adapter_key(adapter_dir)
    if adapter_dir is None:
        if isinstance(lm.model, PeftModel):
            with lm.model.disable_adapter():
                yield key
        else:
            yield key
        return
    check_adapter_base(lm, adapter_dir)
    if is_patch(adapter_dir):  # full fine-tuning or orthogonalization: the base weights themselves change
        base = lm.model.disable_adapter() if isinstance(lm.model, PeftModel) else contextlib.nullcontext()
        with base, patched(lm.model, adapter_dir):
            lm.model.eval()
            yield key
        return
    name = key.replace("-", "_")
    with quiet_peft():
        if not isinstance(lm.model, PeftModel):
            lm.model = PeftModel.from_pretrained(lm.model, str(adapter_dir), adapter_name=name, is_trainable=False)
        elif name not in lm.model.peft_config:
            lm.model.load_adapter(str(adapter_dir), adapter_name=name, is_trainable=False)
    lm.model.set_adapter(name)
    lm.model.eval()
    lm.adapters[name] = str(adapter_dir)
    yield key


def generate(lm: LoadedModel, prompts: pd.DataFrame, config: GenerationConfig | None = None,
             adapter_dir: str | Path | None = None, cache: bool = True, system: str | None = None,
             progress: bool = True, desc: str = "generate") -> pd.DataFrame:
    """Generate one response per prompt, using and filling the JSONL cache.

    Parameters
    ----------
    lm : LoadedModel
        From :func:`rrlib.models.load`.
    prompts : pandas.DataFrame
        With ``id`` and ``prompt`` columns.
    config : GenerationConfig, optional
        Decoding settings; greedy with the model's default token budget if omitted.
    adapter_dir : str or Path, optional
        A LoRA adapter to apply; ``None`` for the base model.
    cache : bool
        Read and append the cache (``results/cache/generations``).
    system : str, optional
        A system message for every prompt.
    progress : bool
        Show a progress bar.
    desc : str
        Progress bar label.

    Returns
    -------
    pandas.DataFrame
        ``id, prompt, response, n_new_tokens, stopped`` in the input order.
    """
    config = config or GenerationConfig(max_new_tokens=lm.spec.max_new_tokens)
    ids = prompts["id"].astype(str).tolist()
    texts = prompts["prompt"].astype(str).tolist()
    path = cache_path(lm)
    backend = config.backend  # "hf" or "vllm", checked by GenerationConfig
    if backend == "vllm":
        from rrlib.vllm_backend import vllm_usable

        # vLLM serves LoRA adapters; a weight patch (full fine-tuning, orthogonalization) runs on transformers
        backend = "vllm" if vllm_usable(lm) and not is_patch(adapter_dir) else "hf"
    if backend == "hf":
        context = adapter_active(lm, adapter_dir)
    else:  # vLLM serves the adapter itself: only check it belongs to this base model
        if adapter_dir is not None:
            check_adapter_base(lm, adapter_dir)
        context = contextlib.nullcontext(adapter_key(adapter_dir))
    with context as adapter:
        variant = adapter if backend == "hf" else f"{adapter}+vllm"
        keys = [record_key(lm.identity, variant, t, config, system) for t in texts]
        done = {r["key"]: r for r in read_jsonl(path)} if cache else {}
        todo = [i for i, k in enumerate(keys) if k not in done]

        def keep(batch: list[tuple[int, dict[str, Any]]]) -> None:
            """Store a finished batch at once, so a killed run loses at most the batch in flight."""
            records = [{"key": keys[todo[j]], "model": lm.identity, "adapter": variant,
                        "prompt_id": ids[todo[j]], **out} for j, out in batch]
            if cache:
                append_jsonl(path, records)
            done.update({r["key"]: r for r in records})

        if todo:
            missing = [texts[i] for i in todo]
            if backend == "vllm":
                from rrlib.vllm_backend import generate_vllm

                keep(list(enumerate(generate_vllm(lm, missing, config, system, adapter_dir))))
            else:
                _generate_missing(lm, missing, config, system, progress, desc, keep)
    rows = [{"id": pid, "prompt": text, "response": done[k]["response"],
             "n_new_tokens": done[k]["n_new_tokens"], "stopped": done[k]["stopped"]}
            for pid, text, k in zip(ids, texts, keys)]
    return pd.DataFrame(rows, columns=RESPONSE_COLUMNS)


def _generate_missing(lm: LoadedModel, texts: Sequence[str], config: GenerationConfig, system: str | None,
                      progress: bool, desc: str,
                      keep: Callable[[list[tuple[int, dict[str, Any]]]], None] | None = None) -> list[dict[str, Any]]:
    """Generate in length-sorted, left-padded batches; return outputs in input order.

    ``keep`` receives each finished batch as (index, output) pairs as soon as it is done.
    """
    import torch

    tokenizer = lm.tokenizer
    rendered = lm.render(texts, system)
    lengths = [len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in rendered]
    order = sorted(range(len(rendered)), key=lambda i: lengths[i])
    outputs: list[dict[str, Any] | None] = [None] * len(rendered)
    eos = eos_ids(lm)
    with progress_bar(total=len(rendered), desc=desc, disable=not progress) as bar, torch.inference_mode():
        for b, start in enumerate(range(0, len(order), config.batch_size)):
            batch = order[start:start + config.batch_size]
            enc = tokenizer([rendered[i] for i in batch], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(lm.device)
            kwargs: dict[str, Any] = {"max_new_tokens": config.max_new_tokens, "do_sample": config.do_sample,
                                      "pad_token_id": tokenizer.pad_token_id, "eos_token_id": eos}
            if config.do_sample:
                torch.manual_seed(config.seed * 100_003 + b)
                kwargs.update(temperature=config.temperature, top_p=config.top_p)
            else:
                kwargs.update(temperature=None, top_p=None, top_k=None)
            out = lm.model.generate(**enc, **kwargs)
            new_tokens = out[:, enc["input_ids"].shape[1]:]
            for row, i in enumerate(batch):
                tokens = new_tokens[row].tolist()
                stopped = any(t in eos for t in tokens)
                if stopped:
                    tokens = tokens[:min(tokens.index(t) for t in eos if t in tokens)]
                tokens = [t for t in tokens if t != tokenizer.pad_token_id]
                outputs[i] = {"response": tokenizer.decode(tokens, skip_special_tokens=True).strip(),
                              "n_new_tokens": len(tokens), "stopped": bool(stopped)}
            if keep is not None:
                keep([(i, outputs[i]) for i in batch])
            bar.update(len(batch))
    return [o for o in outputs if o is not None]
