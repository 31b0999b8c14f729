"""P1: batched greedy generation against the original one-prompt-at-a-time loop.

Ours is :func:`rrlib.generate.generate` (``cache=False``) on the default
organism over the held-out harmful prompts, with the model's default token
budget and batch size. The reference is what the original study did: render
one prompt with the chat template, call Hugging Face ``model.generate``
greedily with the same ``max_new_tokens`` and end-of-turn tokens, decode the
new tokens, next prompt. Both run in the same process after an untimed
warm-up; the loop runs once (it is the slow side), the batched version three
times (once before the loop, twice after). The speedup is loop seconds over
the batched median, and is only claimed when every response is identical.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from bench.measure import median, timed


def one_at_a_time(lm: Any, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
    """The original study's loop: one templated prompt per ``model.generate`` call.

    Parameters
    ----------
    lm : rrlib.models.LoadedModel
        The model.
    prompts : sequence of str
        User messages.
    max_new_tokens : int
        Token budget per response.

    Returns
    -------
    list of str
        Decoded new tokens of each response, stripped.
    """
    import torch

    from rrlib.models import eos_ids

    tokenizer, eos = lm.tokenizer, eos_ids(lm)
    responses = []
    for prompt in prompts:
        enc = tokenizer(lm.render([prompt])[0], return_tensors="pt", add_special_tokens=False).to(lm.device)
        with torch.no_grad():
            out = lm.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                                    pad_token_id=tokenizer.pad_token_id, temperature=None, top_p=None, top_k=None)
        new_tokens = out[0, enc["input_ids"].shape[1]:]
        responses.append(tokenizer.decode(new_tokens, skip_special_tokens=True).strip())
    return responses


def compare(ours: Sequence[str], reference: Sequence[str], ids: Sequence[str]) -> list[dict[str, Any]]:
    """Prompts whose responses differ: id and the first differing character (texts are not stored)."""
    out = []
    for pid, a, b in zip(ids, ours, reference):
        if a != b:
            first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            out.append({"id": pid, "first_difference_at": first, "len_batched": len(a), "len_loop": len(b)})
    return out


def run(quick: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure P1.

    Parameters
    ----------
    quick : bool
        16 prompts, each side once (a smoke check; the ratio means little).
    log : callable
        Progress lines.

    Returns
    -------
    dict
        Raw timings, token counts, mismatches and the headline ``p1_generation_speedup``
        (``None`` when any response differs, or the batched repeats disagree).
    """
    from rrlib import data, evaluation, models
    from rrlib.config import DEFAULT_ORGANISM
    from rrlib.generate import generate

    lm = models.load(DEFAULT_ORGANISM, progress=False)
    harmful = data.load_sets().harmful
    if quick:
        harmful = harmful.head(16)
    gen = evaluation.generation_config(lm.spec, None, None)
    prompts, ids = harmful["prompt"].astype(str).tolist(), harmful["id"].astype(str).tolist()
    batched_reps = 1 if quick else 3  # the loop runs once: it is the slow side

    def ours() -> Any:
        return generate(lm, harmful, gen, cache=False, progress=False)

    log(f"P1: {len(prompts)} prompts, {DEFAULT_ORGANISM}, max_new_tokens={gen.max_new_tokens}, "
        f"batch_size={gen.batch_size}; batched x{batched_reps}, one at a time x1")
    generate(lm, harmful.head(4), gen, cache=False, progress=False)  # warm-up, untimed
    one_at_a_time(lm, prompts[:4], gen.max_new_tokens)
    batched_s: list[float] = []
    seconds, frame = timed(ours)
    batched_s.append(round(seconds, 3))
    seconds, loop_out = timed(lambda: one_at_a_time(lm, prompts, gen.max_new_tokens))
    loop_s = [round(seconds, 3)]
    repeats_identical = True
    for _ in range(batched_reps - 1):
        seconds, again = timed(ours)
        batched_s.append(round(seconds, 3))
        repeats_identical &= again["response"].tolist() == frame["response"].tolist()
    log(f"P1: batched {', '.join(f'{s:.2f}' for s in batched_s)} s; one at a time {loop_s[0]:.2f} s")
    mismatches = compare(frame["response"].tolist(), loop_out, ids)
    ratio = median(loop_s) / median(batched_s)
    new_tokens = int(frame["n_new_tokens"].sum())
    return {
        "model": lm.name, "model_identity": lm.identity, "model_params": lm.n_params, "device": lm.device,
        "n_prompts": len(prompts), "max_new_tokens": gen.max_new_tokens, "batch_size": gen.batch_size,
        "batched_seconds": batched_s, "loop_seconds": loop_s,
        "batched_median_seconds": median(batched_s), "loop_median_seconds": median(loop_s),
        "new_tokens": new_tokens, "batched_tokens_per_second": round(new_tokens / median(batched_s), 1),
        "loop_tokens_per_second": round(new_tokens / median(loop_s), 1),
        "mismatches": len(mismatches), "mismatch_examples": mismatches[:10],
        "batched_repeats_identical": repeats_identical, "ratio": round(ratio, 2),
        "headline": {"p1_generation_speedup": round(ratio, 2) if not mismatches and repeats_identical else None,
                     "p1_mismatches": len(mismatches)},
    }
