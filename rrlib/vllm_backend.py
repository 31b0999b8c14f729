"""Optional vLLM generation backend (GPU only, imported lazily).

``GenerationConfig(backend="vllm")`` (the notebooks' ``backend`` parameter) uses vLLM where it is installed and a CUDA
GPU is visible, writing to the same JSONL cache as the transformers backend
(records are marked ``+vllm``). Anywhere else it warns once and falls back to
transformers, so the same notebook runs on a laptop and on a GPU node.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

from rrlib.config import GenerationConfig
from rrlib.models import LoadedModel

MAX_LORA_RANK = 64
GPU_MEMORY_SHARE = 0.5  # the transformers copy of the model stays loaded beside vLLM's (hidden states, attacks)


def vllm_usable(lm: LoadedModel) -> bool:
    """Whether vLLM can serve this model here; warns with the reason when it cannot."""
    import torch

    if not torch.cuda.is_available():
        reason = "no CUDA GPU is visible"
    else:
        try:
            import vllm  # noqa: F401
        except ImportError:
            reason = "vllm is not installed (pip install vllm on the GPU machine)"
        else:
            return True
    warnings.warn(f"vLLM backend unavailable for {lm.name}: {reason}; generating with transformers instead",
                  stacklevel=3)
    return False


def _engine(lm: LoadedModel) -> Any:
    """One vLLM engine per loaded model, with LoRA enabled for the attack's adapters."""
    engine = getattr(lm, "_vllm_engine", None)
    if engine is None:
        from vllm import LLM

        engine = LLM(model=lm.path, dtype=lm.dtype, trust_remote_code=lm.trust_remote_code, enable_lora=True,
                     max_lora_rank=MAX_LORA_RANK, seed=0, gpu_memory_utilization=GPU_MEMORY_SHARE)
        lm._vllm_engine = engine
    return engine


def generate_vllm(lm: LoadedModel, texts: Sequence[str], config: GenerationConfig, system: str | None,
                  adapter_dir: str | Path | None) -> list[dict[str, Any]]:
    """Generate with vLLM through the same chat template; outputs in input order.

    Parameters
    ----------
    lm : LoadedModel
        The loaded model (its path, dtype and template are reused).
    texts : sequence of str
        User prompts.
    config : GenerationConfig
        Decoding settings (greedy unless ``do_sample``).
    system : str, optional
        System message.
    adapter_dir : str or Path, optional
        LoRA adapter served through vLLM's LoRA support.

    Returns
    -------
    list of dict
        ``response, n_new_tokens, stopped`` per prompt.
    """
    from vllm import SamplingParams
    from vllm.lora.request import LoRARequest

    from rrlib.models import eos_ids

    params = SamplingParams(max_tokens=config.max_new_tokens, temperature=config.temperature if config.do_sample else 0.0,
                            top_p=config.top_p if config.do_sample else 1.0, seed=config.seed,
                            stop_token_ids=eos_ids(lm))
    lora = None
    if adapter_dir:
        ids = lm.__dict__.setdefault("_vllm_lora_ids", {})  # one stable id per adapter for this engine
        lora = LoRARequest(Path(adapter_dir).name, ids.setdefault(str(adapter_dir), len(ids) + 1), str(adapter_dir))
    # Token ids, not strings: the rendered chat template already holds BOS, as on the transformers path.
    prompts = [{"prompt_token_ids": lm.tokenizer(text, add_special_tokens=False)["input_ids"]}
               for text in lm.render(list(texts), system)]
    outputs = _engine(lm).generate(prompts, params, lora_request=lora, use_tqdm=False)
    return [{"response": o.outputs[0].text.strip(), "n_new_tokens": len(o.outputs[0].token_ids),
             "stopped": o.outputs[0].finish_reason == "stop"} for o in outputs]
