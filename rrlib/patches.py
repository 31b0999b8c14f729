"""Weight patches: checkpoints of attacks that change the base weights themselves.

A LoRA attack saves an adapter at each grid step. Full fine-tuning and
refusal-direction orthogonalization change the base model's own weights, so
they save a *patch* instead: a folder holding ``weights.safetensors`` (the
changed tensors, named as in the unwrapped model's ``state_dict``) and
``rr_adapter.json`` (the base model it belongs to, the step and the recipe,
``"kind": "patch"``). :func:`patched` swaps a patch's tensors into the loaded
model for a block and restores the originals afterwards, so one loaded base
model serves every step, as with adapters.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from pathlib import Path
from typing import Any, Iterator, Mapping

from rrlib.errors import ModelError
from rrlib.store import write_json

WEIGHTS = "weights.safetensors"
META = "rr_adapter.json"


def is_patch(folder: str | Path | None) -> bool:
    """Whether a checkpoint folder holds a weight patch (rather than a LoRA adapter)."""
    return folder is not None and (Path(folder) / WEIGHTS).exists()


def patch_key(folder: str | Path) -> str:
    """Identify a patch by the hash of its weights, e.g. ``patch-1a2b3c4d5e6f``."""
    return "patch-" + hashlib.sha256((Path(folder) / WEIGHTS).read_bytes()).hexdigest()[:12]


def save_patch(folder: str | Path, tensors: Mapping[str, Any], info: Mapping[str, Any]) -> Path:
    """Write a patch folder atomically (a partial folder renamed into place).

    Parameters
    ----------
    folder : str or Path
        The checkpoint folder, e.g. ``.../step-00025``.
    tensors : mapping of str to torch.Tensor
        Changed tensors by ``state_dict`` name (may be empty: the unchanged model).
    info : mapping
        Recorded in ``rr_adapter.json`` with ``"kind": "patch"`` (``base``, ``step``, ``recipe``).

    Returns
    -------
    Path
        The folder.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}, str(tmp / WEIGHTS))
    write_json(tmp / META, {**dict(info), "kind": "patch"})
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def load_patch(folder: str | Path) -> dict[str, Any]:
    """The tensors of a patch (safetensors only; nothing is unpickled)."""
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS
    if not path.exists():
        raise ModelError(f"{folder}: not a weight patch (no {WEIGHTS}); rerun the Day 4 attack that wrote it")
    return load_file(str(path))


def unwrapped(model: Any) -> Any:
    """The model under any PEFT wrapper (the module whose ``state_dict`` names a patch uses)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@contextlib.contextmanager
def patched(model: Any, folder: str | Path) -> Iterator[None]:
    """Swap a patch's tensors into ``model`` for the block; restore the originals afterwards.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        The loaded base model (or a PEFT wrapper of it).
    folder : str or Path
        A folder written by :func:`save_patch`.

    Raises
    ------
    ModelError
        If the patch names a tensor the model lacks or has another shape.
    """
    import torch

    tensors = load_patch(folder)
    state = unwrapped(model).state_dict(keep_vars=True)
    problems = [f"{name} {tuple(t.shape)}" for name, t in tensors.items()
                if name not in state or tuple(state[name].shape) != tuple(t.shape)]
    if problems:
        raise ModelError(f"{folder}: the patch does not fit this model ({', '.join(problems[:3])}); "
                         "it was written for another base model")
    originals = {name: state[name].detach().clone() for name in tensors}
    with torch.no_grad():
        for name, tensor in tensors.items():
            state[name].copy_(tensor.to(state[name].device, state[name].dtype))
    try:
        yield
    finally:
        with torch.no_grad():
            for name, tensor in originals.items():
                state[name].copy_(tensor)
