"""Where a causal LM keeps its decoder blocks, for any supported architecture and its PEFT wrappers.

Used by the representation analyses, the orthogonalization attack and the Vaccine defense's
per-layer perturbations, so it sits with the foundations.
"""

from __future__ import annotations

from typing import Any


def decoder_layers(model: Any) -> Any:
    """The list of decoder blocks of a causal LM (Llama, Qwen2, Phi-3, ... and their PEFT wrappers)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for path in ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        obj = base
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return obj
    raise TypeError(f"cannot find the decoder layers of {type(base).__name__}")
