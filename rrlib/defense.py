"""Tamper-resistance defenses applied during alignment: Vaccine (perturbation-aware alignment).

Vaccine (Huang, Hu & Liu 2024, "Vaccine: Perturbation-aware Alignment for Large
Language Models against Harmful Fine-tuning Attack", NeurIPS 2024,
arXiv:2402.01109) hardens alignment against a later harmful fine-tune by
training the aligned model to keep its alignment loss low even when the hidden
embeddings drift, since such drift is what harmful fine-tuning does to them.
Its objective is

    min_w  max_{||eps|| <= rho}  L(w, eps),

where ``eps = (eps_1, ..., eps_L)`` holds one perturbation per transformer
layer, ``eps_l`` is added to the output hidden states of layer ``l``, and the
norm is the L2 norm over all layers jointly. The inner maximisation is solved
to first order, as in the paper, so each optimiser step costs about two
forward-backward passes:

1. forward and backward on the batch, recording ``g_l``, the gradient of the
   loss with respect to each decoder layer's output hidden states;
2. ``eps_l = rho * g_l / ||g||``, with ``||g||`` the L2 norm of all the
   ``g_l`` together;
3. forward again with ``eps_l`` added to each layer's output (forward hooks),
   backward, and step the optimiser with the gradient of this perturbed loss
   (the first pass gives no weight gradients).

``rho = 0`` is plain training. The module sits with the foundations (it
imports no study logic); :func:`rrlib.architecture.decoder_layers` finds the
decoder layers of any supported causal LM.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence

from rrlib.architecture import decoder_layers
from rrlib.errors import ConfigError

DEFENSES: tuple[str, ...] = ("none", "vaccine")
# Vaccine's rho for the organism family, chosen on the dev split (data/dev, never eval) by scripts/tune_vaccine.py
# (table: data/dev/vaccine_tuning.csv; width 80, build seed 0, LoRA attack seed 0, judge arditi12). Hidden states
# are ~5-7 per token there and ~500 per batch over both layers, so rho is far larger relative to them than the
# paper's rho = 2 on Llama2-7B. Dev refusal / over-refusal / refusal after 25 and 50 attack steps:
#   rho 0 (undefended) 0.892 / 0.150 / 0.483, 0.008     rho 0.25 0.842 / 0.140 / 0.575, 0.000
#   rho 0.1 0.833 / 0.210 / 0.458, 0.000                rho 0.5 0.817 / 0.180 / 0.133, 0.008
#   rho 1 0.808 / 0.240 / 0.183, 0.000; rho 2 0.717 / 0.190; rho 4 refuses nothing (training fails).
# 0.25 is the only rho > 0 inside the dev gate (refusal >= 0.80, over-refusal <= 0.15) and has the best refusal
# averaged over the two attack steps (0.29 vs 0.25 undefended); the gain is within one build's noise (n = 120), and
# at 50 steps every rho has collapsed. Disclosure: the rule first written (refusal at step 50) was replaced by the
# mean over steps 25 and 50 after the dev table showed every rho at 0-1 of 120 refusals at step 50; both rules
# read dev only.
DEFAULT_RHO = 0.25
MAX_GRAD_NORM = 1.0  # the organism's gradient clipping, applied to the perturbed gradient as to the plain one


def check_defense(defense: str, rho: float) -> None:
    """Raise a clear error for an unknown defense or a negative perturbation radius.

    Parameters
    ----------
    defense : str
        One of :data:`DEFENSES`.
    rho : float
        Vaccine's perturbation radius (joint L2 norm over all layers); ``>= 0``.

    Raises
    ------
    ConfigError
        If the defense is unknown or ``rho`` is negative or not a number.
    """
    if defense not in DEFENSES:
        raise ConfigError(f"unknown defense {defense!r}; use one of: {', '.join(DEFENSES)}")
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not rho >= 0:
        raise ConfigError(f"defense_rho must be a number >= 0, got {rho!r}")


def _hidden(output: Any) -> Any:
    """The hidden-state tensor of a decoder layer's output (a tensor, or a tuple led by one)."""
    return output[0] if isinstance(output, tuple) else output


@contextlib.contextmanager
def recording_outputs(layers: Sequence[Any]) -> Iterator[list[Any]]:
    """Record each layer's output hidden states during a forward pass.

    Parameters
    ----------
    layers : sequence of torch.nn.Module
        The decoder layers, in order.

    Yields
    ------
    list of torch.Tensor
        Filled during the forward pass, one tensor per layer (the last call of each layer wins).
        The hooks are removed on exit, also after an error.
    """
    outputs: list[Any] = [None] * len(layers)

    def hook_for(index: int) -> Callable[..., None]:
        def hook(module: Any, args: Any, output: Any) -> None:
            outputs[index] = _hidden(output)
        return hook

    handles = [layer.register_forward_hook(hook_for(i)) for i, layer in enumerate(layers)]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def perturbed(layers: Sequence[Any], perturbations: Sequence[Any]) -> Iterator[None]:
    """Add a fixed perturbation to each layer's output hidden states while the context is open.

    Parameters
    ----------
    layers : sequence of torch.nn.Module
        The decoder layers, in order.
    perturbations : sequence of torch.Tensor
        One per layer, shaped like that layer's output hidden states (constants: no gradient flows into them).

    Yields
    ------
    None
        The hooks are removed on exit, also after an error.
    """
    if len(layers) != len(perturbations):
        raise ValueError(f"{len(perturbations)} perturbations for {len(layers)} layers; give one per layer")

    def hook_for(eps: Any) -> Callable[..., Any]:
        def hook(module: Any, args: Any, output: Any) -> Any:
            if isinstance(output, tuple):
                return (output[0] + eps, *output[1:])
            return output + eps
        return hook

    handles = [layer.register_forward_hook(hook_for(eps)) for layer, eps in zip(layers, perturbations)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def vaccine_perturbation(gradients: Sequence[Any], rho: float) -> list[Any]:
    """Vaccine's worst-case perturbation to first order: ``eps_l = rho * g_l / ||g||``.

    Parameters
    ----------
    gradients : sequence of torch.Tensor
        The loss gradient with respect to each layer's output hidden states.
    rho : float
        The radius: the joint L2 norm of the returned perturbations.

    Returns
    -------
    list of torch.Tensor
        Detached perturbations of joint L2 norm ``rho`` along the gradient (all zero if the gradient is).
    """
    import torch

    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach()) for g in gradients]))
    scale = rho / norm if float(norm) > 0 else 0.0
    return [(g.detach() * scale).detach() for g in gradients]


def vaccine_step(model: Any, optimizer: Any, loss_fn: Callable[..., Any], batch: Sequence[Any], rho: float,
                 layers: Sequence[Any] | None = None, max_grad_norm: float | None = MAX_GRAD_NORM
                 ) -> tuple[Any, Any]:
    """One Vaccine optimiser step (Huang et al. 2024, arXiv:2402.01109).

    Solves ``min_w max_{||eps|| <= rho} L(w, eps)`` to first order: the loss
    gradient with respect to every decoder layer's output hidden states gives
    ``eps_l = rho * g_l / ||g||`` (joint norm over all layers), and the weights
    step along the gradient of the loss with ``eps_l`` added to each layer's
    output. The scheduler, if any, is the caller's to step.

    Parameters
    ----------
    model : torch.nn.Module
        The model being aligned (in training mode).
    optimizer : torch.optim.Optimizer
        Over the model's trainable parameters.
    loss_fn : callable
        ``loss_fn(model, *batch)`` returns the scalar alignment loss.
    batch : sequence
        Arguments for ``loss_fn`` after the model.
    rho : float
        Perturbation radius, ``>= 0``; 0 gives the plain step's update.
    layers : sequence of torch.nn.Module, optional
        The decoder layers to perturb; :func:`rrlib.architecture.decoder_layers` of the model by default.
    max_grad_norm : float or None
        Clip the perturbed gradient to this norm before the step; ``None`` does not clip.

    Returns
    -------
    tuple of torch.Tensor
        The unperturbed loss (first pass) and the perturbed loss (second pass), both detached.
    """
    import torch

    check_defense("vaccine", rho)
    layers = list(decoder_layers(model) if layers is None else layers)
    if not layers:
        raise ValueError("vaccine_step needs the model's decoder layers; none were given")
    with recording_outputs(layers) as outputs:
        clean = loss_fn(model, *batch)
    missing = [i for i, h in enumerate(outputs) if h is None or not h.requires_grad]
    if missing:
        raise ValueError(f"decoder layer(s) {missing} gave no output with a gradient during the loss; "
                         "pass the layers the loss actually runs through")
    # Gradients with respect to the hidden states only: the first pass's weight gradients are never needed.
    gradients = torch.autograd.grad(clean, outputs)
    eps = vaccine_perturbation(gradients, rho)
    with perturbed(layers, eps):
        loss = loss_fn(model, *batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    return clean.detach(), loss.detach()
