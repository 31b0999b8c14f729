"""Load chat models (organisms, hub ids, local folders) the same way.

Weights load as safetensors only and ``trust_remote_code`` stays off unless
the caller turns it on. Every prompt goes through the tokenizer's chat
template; a model without one is an error, not a silent fallback to raw text
(the original study prompted instruct models as base models).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from rrlib import organism
from rrlib.config import ModelSpec, resolve_model, stable_hash
from rrlib.errors import ConfigError, ModelError

if TYPE_CHECKING:
    import pandas as pd

HUB_HOST = ("huggingface.co", 443)


@dataclass
class LoadedModel:
    """A model, its tokenizer and everything needed to reproduce its prompts."""

    spec: ModelSpec
    path: str
    model: Any
    tokenizer: Any
    dtype: str
    device: str
    trust_remote_code: bool = False
    adapters: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The model's registry or slug name."""
        return self.spec.name

    @property
    def chat_template(self) -> str:
        """The Jinja chat template every prompt is rendered with."""
        return self.tokenizer.chat_template

    @property
    def template_hash(self) -> str:
        """A short hash of the chat template, recorded with each run."""
        return stable_hash(self.chat_template, 10)

    @property
    def n_params(self) -> int:
        """Parameters of the base model (adapters excluded)."""
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return int(sum(p.numel() for n, p in base.named_parameters() if "lora_" not in n))

    @property
    def n_non_embedding_params(self) -> int:
        """Parameters outside the token embedding and the output head (Kaplan et al. 2020's N).

        A tied output head shares the embedding's weights and is counted once, as
        part of the embedding. This is the size that scaling fits use.
        """
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        embedding_ids = {id(base.get_input_embeddings().weight)}
        head = base.get_output_embeddings()
        if head is not None:
            embedding_ids.add(id(head.weight))
        seen: set[int] = set()
        total = 0
        for name, param in base.named_parameters(remove_duplicate=False):
            if "lora_" in name or id(param) in embedding_ids or id(param) in seen:
                continue
            seen.add(id(param))
            total += param.numel()
        return int(total)

    @property
    def identity(self) -> str:
        """What distinguishes this model's outputs: name, weights, dtype, template."""
        return f"{self.name}@{stable_hash([Path(self.path).name, self.dtype, self.template_hash], 10)}"

    def render(self, prompts: Sequence[str], system: str | None = None) -> list[str]:
        """Render user prompts through the chat template, ready for generation.

        Parameters
        ----------
        prompts : sequence of str
            User messages.
        system : str, optional
            A system message placed before each prompt.

        Returns
        -------
        list of str
            Prompt strings ending with the assistant prefix.
        """
        rendered = []
        for prompt in prompts:
            messages = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": prompt}]
            rendered.append(self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        return rendered

    def card(self) -> dict[str, Any]:
        """A JSON-serialisable description for run configs and the book."""
        source = self.spec.source
        if self.spec.is_organism:
            source = f".rr_cache/organisms/{Path(self.path).name}"
        return {
            "model": self.name, "source": source,
            "family": self.spec.family, "params": self.n_params,
            "non_embedding_params": self.n_non_embedding_params, "dtype": self.dtype, "device": self.device,
            "chat_template_sha": self.template_hash, "trust_remote_code": self.trust_remote_code,
            "organism": self.spec.is_organism,
        }


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers (always False when ``HF_HUB_OFFLINE=1``)."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1":
        return False
    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def pick_device(device: str = "auto") -> str:
    """Resolve ``auto`` to ``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but no CUDA GPU is visible; use device='cpu' or 'auto'")
    return device


def pick_dtype(spec: ModelSpec, dtype: str, device: str) -> str:
    """Resolve ``auto``: the spec's default on GPU, float32 on CPU (bf16 is slow there)."""
    valid = {"auto", "float32", "float16", "bfloat16"}
    if dtype not in valid:
        raise ConfigError(f"dtype must be one of {', '.join(sorted(valid))}, got {dtype!r}")
    if dtype != "auto":
        return dtype
    if device == "cpu":
        return "float32"
    return spec.dtype if spec.dtype != "auto" else "bfloat16"


def _quantization(quantize: str | None, device: str) -> Any:
    if quantize in (None, "", "none"):
        return None
    if quantize not in ("4bit", "8bit"):
        raise ConfigError(f"quantize must be '4bit', '8bit' or None, got {quantize!r}")
    if device == "cpu":
        raise ConfigError(f"quantize={quantize!r} needs a CUDA GPU (bitsandbytes); on CPU leave quantize=None")
    try:
        from transformers import BitsAndBytesConfig
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError(f"quantize={quantize!r} needs bitsandbytes: pip install bitsandbytes") from None
    if quantize == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype="bfloat16", bnb_4bit_quant_type="nf4")
    return BitsAndBytesConfig(load_in_8bit=True)


def load(name_or_path: str, dtype: str = "auto", device: str = "auto", trust_remote_code: bool = False,
         quantize: str | None = None, chat_template: str | None = None, progress: bool = True) -> LoadedModel:
    """Load a chat model and tokenizer, ready for templated generation.

    Parameters
    ----------
    name_or_path : str
        A registry name (``organism-m``, ``qwen2-7b-instruct``), a local folder or a hub id.
    dtype : str
        ``auto``, ``float32``, ``float16`` or ``bfloat16``.
    device : str
        ``auto``, ``cpu`` or ``cuda[:N]``.
    trust_remote_code : bool
        Off by default; only turn it on for a model whose code you have read.
    quantize : str, optional
        ``4bit`` or ``8bit`` (bitsandbytes, GPU only).
    chat_template : str, optional
        A Jinja template (or a path to one) for a tokenizer that lacks its own.
    progress : bool
        Show a progress bar if an organism has to be built first.

    Returns
    -------
    LoadedModel
        The model in eval mode with a left-padding tokenizer.

    Raises
    ------
    ModelError
        If the model cannot be found, has no safetensors weights, or has no chat template.
    """
    spec = resolve_model(name_or_path)
    device = pick_device(device)
    dtype = pick_dtype(spec, dtype, device)
    quant = _quantization(quantize, device)
    path = str(organism.ensure(spec.name, progress=progress)) if spec.is_organism else spec.source
    local = Path(path).is_dir()
    if not local and not hub_reachable():
        raise ModelError(
            f"model {name_or_path!r} is not a registered name or a local folder, and the Hugging Face hub "
            "is unreachable (offline); download it where the hub is reachable "
            f"(huggingface-cli download {spec.source} --local-dir DIR) and pass model=DIR"
        )
    tokenizer = _load_tokenizer(path, name_or_path, trust_remote_code, local)
    if chat_template:
        template_path = Path(chat_template)
        tokenizer.chat_template = template_path.read_text() if template_path.is_file() else chat_template
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError(
            f"model {name_or_path!r} has no chat template; pass chat_template='<jinja>' or a template file "
            "(prompting a chat model without its template makes it behave like a base model)"
        )
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = _load_weights(path, name_or_path, dtype, device, trust_remote_code, local, quant)
    return LoadedModel(spec, path, model, tokenizer, dtype, device, trust_remote_code)


def _load_tokenizer(path: str, name: str, trust_remote_code: bool, local: bool) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, local_files_only=local)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the tokenizer of {name!r} from {path}: {exc}") from None


def _load_weights(path: str, name: str, dtype: str, device: str, trust_remote_code: bool,
                  local: bool, quant: Any) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    if local and not any(Path(path).glob("*.safetensors")):
        raise ModelError(
            f"{path}: no .safetensors weights; rrlib loads safetensors only (pickled .bin files can run code). "
            "Convert the checkpoint with save_pretrained(..., safe_serialization=True)"
        )
    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype), "use_safetensors": True,
                              "trust_remote_code": trust_remote_code, "local_files_only": local}
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map={"": device})
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the weights of {name!r} from {path}: {' '.join(str(exc).split())[:300]}") from None
    if quant is None:
        model.to(device)
    model.eval()
    return model


def base_model(lm: LoadedModel) -> Any:
    """Remove any LoRA layers from ``lm.model`` (weights untouched) and return the base model."""
    from peft import PeftModel

    if isinstance(lm.model, PeftModel):
        lm.model = lm.model.unload()
    lm.adapters.clear()
    return lm.model


def adapter_base_identity(lm: LoadedModel) -> dict[str, Any]:
    """What an adapter records about its base model, to refuse a mismatched base later."""
    config = lm.model.config
    return {"model": lm.name, "model_type": getattr(config, "model_type", "?"),
            "hidden_size": getattr(config, "hidden_size", None),
            "num_hidden_layers": getattr(config, "num_hidden_layers", None),
            "vocab_size": getattr(config, "vocab_size", None)}


def check_adapter_base(lm: LoadedModel, adapter_dir: str | Path) -> None:
    """Raise a clear error if an adapter was trained on a different base model.

    Parameters
    ----------
    lm : LoadedModel
        The loaded base model.
    adapter_dir : str or Path
        A folder written by :mod:`rrlib.attack` (holds ``rr_adapter.json``).

    Raises
    ------
    ModelError
        If the folder is missing or its recorded base differs from ``lm``.
    """
    adapter_dir = Path(adapter_dir)
    meta_path = adapter_dir / "rr_adapter.json"
    if not (adapter_dir / "adapter_config.json").exists() and not (adapter_dir / "weights.safetensors").exists():
        raise ModelError(f"{adapter_dir}: not an attack checkpoint (no adapter_config.json or weights.safetensors)")
    if not meta_path.exists():
        return
    recorded = json.loads(meta_path.read_text())["base"]
    current = adapter_base_identity(lm)
    diffs = [k for k in current if k != "model" and recorded.get(k) != current[k]]
    if diffs or recorded.get("model") != current["model"]:
        raise ModelError(
            f"{adapter_dir}: adapter was trained on base model {recorded.get('model')!r} "
            f"but the loaded model is {current['model']!r} (differs in: {', '.join(diffs) or 'name'}); "
            "load the matching base model or retrain the adapter"
        )


def eos_ids(lm: LoadedModel) -> list[int]:
    """All token ids that end an assistant turn (tokenizer EOS plus generation config)."""
    ids = set()
    if lm.tokenizer.eos_token_id is not None:
        ids.add(int(lm.tokenizer.eos_token_id))
    gen_eos = getattr(getattr(lm.model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif isinstance(gen_eos, (list, tuple)):
        ids.update(int(t) for t in gen_eos)
    return sorted(ids)


def card_table(lm: LoadedModel) -> pd.DataFrame:
    """The model card as a two-column table (field, value)."""
    import pandas as pd

    return pd.DataFrame([{"field": k, "value": str(v)} for k, v in lm.card().items()])


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """Wrap peft's model wrapping (``get_peft_model``, ``PeftModel.from_pretrained``) to silence one foreign warning.

    transformers 5 deprecates ``is_gradient_checkpointing``, which peft 0.21 still reads when it wraps a model.
    The warning is not ours to fix, and its text (with the virtual environment's absolute path) would make a run
    that trains or loads adapters print differently from one that reads them from the cache.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield
