"""Shared pieces of the two training loops (organism safety-tuning, LoRA attack).

Both train on chats with the loss masked to the assistant answer: the prompt,
rendered through the chat template, is context only.
"""

from __future__ import annotations

from typing import Any, Sequence


def encode_chats(tokenizer: Any, pairs: Sequence[tuple[str, str]], max_length: int) -> list[tuple[list[int], int]]:
    """Tokenise (prompt, answer) chats through the chat template.

    Parameters
    ----------
    tokenizer : transformers tokenizer
        With a chat template.
    pairs : sequence of (str, str)
        User prompt and assistant answer.
    max_length : int
        Longer examples lose tokens from the left of the prompt; the answer stays whole.

    Returns
    -------
    list of (list of int, int)
        Token ids and the index of the first answer token (the loss starts there).
    """
    prefixes, fulls = [], []
    for prompt, answer in pairs:
        messages = [{"role": "user", "content": prompt}]
        prefixes.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        fulls.append(tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": answer}],
                                                   tokenize=False))
    # One batched call per list: the fast tokenizer encodes them in parallel.
    prefix_ids = tokenizer(prefixes, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(fulls, add_special_tokens=False)["input_ids"]
    examples = []
    for prefix, full in zip(prefix_ids, full_ids):
        start = 0
        while start < min(len(prefix), len(full)) and prefix[start] == full[start]:
            start += 1
        if len(full) > max_length:
            cut = len(full) - max_length
            full, start = full[cut:], max(1, start - cut)
        examples.append((full, start))
    return examples


def collate(batch: Sequence[tuple[list[int], int]], pad_id: int) -> tuple[Any, Any, Any]:
    """Right-pad a training batch; labels are -100 outside the assistant answer.

    Parameters
    ----------
    batch : sequence of (list of int, int)
        From :func:`encode_chats`.
    pad_id : int
        Padding token id.

    Returns
    -------
    tuple of torch.Tensor
        ``input_ids``, ``labels``, ``attention_mask``.
    """
    import torch

    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (ids, start) in enumerate(batch):
        input_ids[row, :len(ids)] = torch.tensor(ids)
        labels[row, start:len(ids)] = torch.tensor(ids[start:])
        mask[row, :len(ids)] = 1
    return input_ids, labels, mask
