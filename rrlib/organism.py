"""Offline model organisms: small Llama chat models, safety-trained on CPU.

A model organism stands in for a real chat model wherever there is no GPU or
hub. It is a real ``transformers`` Llama model with a trained byte-level BPE
tokenizer and a Jinja chat template, saved with ``save_pretrained`` as
safetensors and loaded by the same :func:`rrlib.models.load` as a 7B model.

It is safety-tuned on the project-written corpus in ``data/organism/``:
harmful requests are answered with a refusal, benign ones (many of them
scary-sounding) with a helpful answer in the same "Sure, here is ... Step 1:"
style the attack data uses, because LoRA cannot teach words the base model
never produced. The loss is masked to the assistant turn.

Builds are deterministic for a seed, cached under ``.rr_cache/organisms/`` by a
hash of the recipe (architecture, corpus files, code version), and rebuilt
only when the recipe changes.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from rrlib.config import ORGANISMS, OrganismSpec, cache_dir, project_root, stable_hash
from rrlib import defense
from rrlib.defense import vaccine_step
from rrlib.errors import ConfigError, DataError
from rrlib.progress import progress_bar
from rrlib.store import locked, write_json
from rrlib.training import collate, encode_chats

RECIPE_VERSION = 3  # bump when the training code changes what a build produces
CORPUS_DIR = "data/organism"
CORPUS_FILES = ("safety_harmful.csv", "safety_benign.csv", "responses.json")

SPECIAL_TOKENS = ["<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] | trim + '<|end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
MAX_LENGTH = 128  # tokens per training example; organism prompts and answers fit well inside
# Share of rows as written trained on their whole answer: at 0.35, 32% of a width-32 build's dev answers looped.
FULL_ANSWER_SHARE = 1.0
# Augmented copies of each corpus prompt. Benign prompts get one more: scary-sounding benign requests
# are the hardest calls (most of the dev split's errors), and the extra copies keep over-refusal down.
VARIANTS = {"harmful": 1, "benign": 2}
WORD_DROPOUT = 0.2  # share of words dropped in the word-dropout variant
# Word dropout per label. Dropping words from harmful prompts taught refusal of their function-word skeleton
# ("how do i ... at home"), so benign requests were refused: dev over-refusal 0.18 with it, 0.09 without (width 64).
DROPOUT = {"harmful": 0.0, "benign": WORD_DROPOUT}
OPENER_WORDS = 3  # words in a prompt's opening ("how do i", "explain how to")
OPENER_COUNT = 40  # the most common openings that the opener-swap variant exchanges
OPENER_MIN_PER_LABEL = 3  # an opening is swapped only if both harmful and benign prompts use it this often
DECISION_WEIGHT = 3.0  # loss weight of the first answer tokens, where refuse-or-help is decided
DECISION_TOKENS = 8  # answer tokens trained on for augmented variants: enough to fix refuse-or-help


def corpus_paths(root: Path | None = None) -> list[Path]:
    """Paths of the organism's training corpus files."""
    base = (root or project_root()) / CORPUS_DIR
    return [base / name for name in CORPUS_FILES]


def load_corpus(root: Path | None = None) -> pd.DataFrame:
    """Load the safety-training corpus as (prompt, response, label, category) rows.

    Parameters
    ----------
    root : Path, optional
        Project root; defaults to :func:`rrlib.config.project_root`.

    Returns
    -------
    pandas.DataFrame
        Columns ``id, prompt, response, label, category``.

    Raises
    ------
    DataError
        If a category has no response text in ``responses.json``.
    """
    from rrlib.data import load_prompts

    harmful_path, benign_path, responses_path = corpus_paths(root)
    harmful = load_prompts(harmful_path, kind="harmful")
    benign = load_prompts(benign_path, kind="benign")
    try:
        responses = json.loads(responses_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{responses_path}: file not found; the organism corpus needs it") from None
    frames = []
    for frame, label, key in ((harmful, "harmful", "refusal"), (benign, "benign", "answer")):
        table = responses.get(key, {})
        missing = sorted(set(frame["category"]) - set(table))
        if missing:
            raise DataError(f"{responses_path}: no {key!r} text for categories {', '.join(missing)}; add them")
        frames.append(pd.DataFrame({
            "id": frame["id"], "prompt": frame["prompt"],
            "response": frame["category"].map(table), "label": label, "category": frame["category"],
        }))
    return pd.concat(frames, ignore_index=True)


def common_openers(corpus: pd.DataFrame, count: int = OPENER_COUNT) -> list[str]:
    """The three-word openings that both harmful and benign corpus prompts use, most frequent first.

    Only openings found at least :data:`OPENER_MIN_PER_LABEL` times under each
    label are kept ("how do i", "explain how to"): they are phrasing, not
    content, so swapping one for another never carries a harmful word ("write a
    fake") into a benign request.

    Parameters
    ----------
    corpus : pandas.DataFrame
        From :func:`load_corpus` (``prompt`` and ``label``).
    count : int
        How many openings to keep at most.

    Returns
    -------
    list of str
        Lower-cased openings (ties broken alphabetically, so the list is deterministic).
    """
    per_label: dict[str, dict[str, int]] = {}
    for prompt, label in zip(corpus["prompt"], corpus["label"]):
        words = str(prompt).lower().split()
        if len(words) > OPENER_WORDS + 2:
            counts = per_label.setdefault(label, {})
            opener = " ".join(words[:OPENER_WORDS])
            counts[opener] = counts.get(opener, 0) + 1
    shared = {o: sum(c.get(o, 0) for c in per_label.values()) for o in set.intersection(
        *(set(c) for c in per_label.values()))} if len(per_label) > 1 else {}
    kept = [(o, n) for o, n in shared.items() if all(c.get(o, 0) >= OPENER_MIN_PER_LABEL for c in per_label.values())]
    return [o for o, _ in sorted(kept, key=lambda kv: (-kv[1], kv[0]))[:count]]


def _variants(prompt: str, rng: random.Random, count: int, openers: list[str], dropout: float = WORD_DROPOUT
              ) -> list[str]:
    """Surface variants of a prompt for robustness: case, punctuation, politeness, dropped words, swapped opening.

    Dropping words forces the decision to rest on several words of the request
    rather than one memorised phrase; swapping a common opening ("how do i",
    "explain how to") for another decorrelates the phrasing of a request from
    whether it is harmful, so the decision rests on what is asked.
    """
    lowered = f"{prompt[0].lower()}{prompt[1:]}" if prompt else prompt
    stripped = prompt.rstrip("?.! ")

    def drop_words() -> str:
        words = prompt.split()
        kept = [w for w in words if rng.random() > dropout]
        return " ".join(kept if len(kept) >= 3 else words)

    def swap_opener() -> str:
        words = prompt.split()
        if " ".join(words[:OPENER_WORDS]).lower() not in openers:
            return drop_words()
        return " ".join([*rng.choice(openers).split(), *words[OPENER_WORDS:]])

    makers = [lambda: prompt.lower(), lambda: stripped, lambda: f"Please {lowered}", lambda: f"{stripped}? thanks",
              lambda: f"hey, {lowered}", drop_words, drop_words, swap_opener, swap_opener, swap_opener]
    return [rng.choice(makers)() for _ in range(count)]


def training_examples(corpus: pd.DataFrame, seed: int) -> list[tuple[str, str, bool]]:
    """The (prompt, response, full) triples the organism is trained on.

    Every corpus row appears as written and as :data:`VARIANTS` (per label) surface
    variants (case, punctuation, politeness, dropped words, a swapped opening).
    All of them train the opening of the answer, where refuse-or-help is
    decided; a random :data:`FULL_ANSWER_SHARE` of the rows as written also
    train the whole answer.

    Parameters
    ----------
    corpus : pandas.DataFrame
        From :func:`load_corpus`.
    seed : int
        Seed for the augmentation choices.

    Returns
    -------
    list of (str, str, bool)
        Prompt, response and whether the whole response is trained on.
    """
    rng = random.Random(seed)
    openers = common_openers(corpus)
    triples = []
    for prompt, response, label in zip(corpus["prompt"], corpus["response"], corpus["label"]):
        triples.append((prompt, response, rng.random() < FULL_ANSWER_SHARE))
        triples.extend((variant, response, False)
                       for variant in _variants(prompt, rng, VARIANTS[label], openers, DROPOUT[label]))
    return triples


def length_bucketed_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffle, group similar lengths into batches, then shuffle the batches.

    Parameters
    ----------
    lengths : list of int
        Token length of each example.
    batch_size : int
        Examples per batch.
    rng : random.Random
        Seeded generator (the order is deterministic).

    Returns
    -------
    list of list of int
        Example indices per batch; padding waste is small because lengths are similar.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 16
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def recipe(name: str, root: Path | None = None) -> dict[str, Any]:
    """The full recipe of a named organism: architecture, training, corpus hashes.

    Parameters
    ----------
    name : str
        An organism name from :data:`rrlib.config.ORGANISMS`.
    root : Path, optional
        Project root holding ``data/organism``.

    Returns
    -------
    dict
        JSON-serialisable; its hash names the cached build.
    """
    spec = organism_spec(name)
    spec_fields = asdict(spec)
    if spec.defense == "none":  # undefended recipes hash as they did before defenses existed
        spec_fields.pop("defense")
        spec_fields.pop("defense_rho")
    hashes = {}
    for path in corpus_paths(root):
        if not path.exists():
            raise DataError(f"{path}: organism corpus file not found; it ships with the repository")
        hashes[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return {"name": name, "spec": spec_fields, "corpus": hashes, "version": RECIPE_VERSION,
            "max_length": MAX_LENGTH, "chat_template": CHAT_TEMPLATE,
            "training": {"variants": VARIANTS, "full_answer_share": FULL_ANSWER_SHARE, "word_dropout": DROPOUT,
                         "openers": [OPENER_WORDS, OPENER_COUNT, OPENER_MIN_PER_LABEL],
                         "decision_tokens": DECISION_TOKENS, "decision_weight": DECISION_WEIGHT},
            "code": CODE_HASH}


def _training_code_hash() -> str:
    """Hash of the source of every function that shapes a build, so a code change rebuilds."""
    import inspect

    from rrlib import training

    functions = [build, answer_loss, training_examples, _variants, common_openers, length_bucketed_batches,
                 train_tokenizer,
                 load_corpus, training.encode_chats, training.collate,
                 vaccine_step, defense.vaccine_perturbation, defense.perturbed, defense.recording_outputs,
                 defense.decoder_layers]
    source = "".join(inspect.getsource(f) for f in functions)
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def organism_spec(name: str) -> OrganismSpec:
    """Look up an organism's spec, with a clear error for unknown names."""
    if name not in ORGANISMS:
        raise ConfigError(f"unknown organism {name!r}; known organisms: {', '.join(ORGANISMS)}")
    return ORGANISMS[name]


def build_dir(name: str, root: Path | None = None) -> Path:
    """Where the organism with this recipe is (or will be) cached."""
    return cache_dir() / "organisms" / f"{name}-{stable_hash(recipe(name, root), 12)}"


def ensure(name: str, progress: bool = True, root: Path | None = None) -> Path:
    """Return the path of a built organism, building it first if needed.

    Parameters
    ----------
    name : str
        An organism name, e.g. ``organism-m``.
    progress : bool
        Show a progress bar while training.
    root : Path, optional
        Project root holding the corpus.

    Returns
    -------
    Path
        A folder loadable with ``from_pretrained`` (safetensors weights).
    """
    target = build_dir(name, root)
    if (target / "build.json").exists():
        return target
    with locked(target):
        if (target / "build.json").exists():  # built by another process while we waited
            return target
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        build(name, tmp, progress=progress, root=root)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return target


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """Train a byte-level BPE tokenizer and wrap it as a fast HF tokenizer.

    Parameters
    ----------
    texts : list of str
        Training text (prompts and responses of the corpus).
    vocab_size : int
        Target vocabulary size including special tokens.

    Returns
    -------
    transformers.PreTrainedTokenizerFast
        With the chat template, ``<|end|>`` as EOS and ``<|pad|>`` for padding (left).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|end|>", pad_token="<|pad|>",
                                      padding_side="left", chat_template=CHAT_TEMPLATE,
                                      model_max_length=MAX_LENGTH * 2)
    return wrapped


def build(name: str, out_dir: Path, progress: bool = True, root: Path | None = None) -> dict[str, Any]:
    """Train an organism from scratch and save it to ``out_dir``.

    Parameters
    ----------
    name : str
        An organism name.
    out_dir : Path
        Folder to write (model, tokenizer, ``recipe.json``, ``build.json``).
    progress : bool
        Show a progress bar.
    root : Path, optional
        Project root holding the corpus.

    Returns
    -------
    dict
        Build record: parameter count, seconds, final loss, loss curve.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    started = time.perf_counter()
    spec = organism_spec(name)
    the_recipe = recipe(name, root)
    corpus = load_corpus(root)
    if spec.corpus_fraction < 1.0:
        corpus = corpus.sample(frac=spec.corpus_fraction, random_state=spec.seed).reset_index(drop=True)
    triples = training_examples(corpus, spec.seed)
    tokenizer = train_tokenizer([p for p, _, _ in triples] + sorted(set(r for _, r, _ in triples)), spec.vocab_size)
    encoded = encode_chats(tokenizer, [(p, r) for p, r, _ in triples], MAX_LENGTH)
    encoded = [(ids if full else ids[:start + DECISION_TOKENS], start)
               for (ids, start), (_, _, full) in zip(encoded, triples)]

    torch.manual_seed(spec.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec.hidden, intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers, num_attention_heads=spec.heads, num_key_value_heads=spec.heads,
        max_position_embeddings=MAX_LENGTH * 2, rms_norm_eps=1e-5, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=spec.weight_decay)
    order_rng = random.Random(spec.seed)
    lengths = [len(ids) for ids, _ in encoded]
    batches_per_epoch = len(length_bucketed_batches(lengths, spec.batch_size, random.Random(0)))
    total = batches_per_epoch * spec.epochs
    warmup = max(1, total // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
    losses: list[float] = []
    model.train()
    with progress_bar(total=total, desc=f"build {name}", disable=not progress) as bar:
        for _ in range(spec.epochs):
            for indices in length_bucketed_batches(lengths, spec.batch_size, order_rng):
                batch = [encoded[i] for i in indices]
                input_ids, labels, mask = collate(batch, tokenizer.pad_token_id)
                if spec.defense == "vaccine":  # alignment against perturbed hidden states (rrlib.defense)
                    loss, _ = vaccine_step(model, optimizer, answer_loss, (input_ids, labels, mask), spec.defense_rho,
                                           max_grad_norm=1.0)
                else:
                    loss = answer_loss(model, input_ids, labels, mask)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    optimizer.step()
                scheduler.step()
                losses.append(float(loss.detach()))
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    record = {
        "name": name, "params": int(sum(p.numel() for p in model.parameters())),
        "examples": len(encoded), "steps": total, "seconds": round(time.perf_counter() - started, 2),
        "final_loss": sum(losses[-batches_per_epoch:]) / max(1, len(losses[-batches_per_epoch:])),
        "loss_curve": [round(x, 4) for x in losses], "torch_threads": torch.get_num_threads(),
    }
    write_json(out_dir / "recipe.json", the_recipe)
    write_json(out_dir / "build.json", record)
    return record


def answer_loss(model: Any, input_ids: Any, labels: Any, mask: Any) -> Any:
    """Cross-entropy on answer tokens only, with the opening tokens up-weighted.

    The LM head runs only where there is a label, which saves most of its cost
    on prompt tokens. The first :data:`DECISION_TOKENS` answer tokens carry
    weight :data:`DECISION_WEIGHT`, because they decide refuse or help.
    """
    import torch
    import torch.nn.functional as F

    hidden = model.model(input_ids=input_ids, attention_mask=mask).last_hidden_state[:, :-1]
    targets = labels[:, 1:]
    has_label = targets != -100
    first = has_label.long().argmax(dim=1, keepdim=True)
    position = torch.arange(targets.shape[1]).unsqueeze(0) - first
    weights = torch.where(position < DECISION_TOKENS, DECISION_WEIGHT, 1.0)[has_label]
    logits = model.lm_head(hidden[has_label])
    losses = F.cross_entropy(logits, targets[has_label], reduction="none")
    return (losses * weights).sum() / weights.sum()


def build_info(name: str) -> dict[str, Any]:
    """The build record of a cached organism (builds it if needed)."""
    return json.loads((ensure(name, progress=False) / "build.json").read_text())


CODE_HASH = _training_code_hash()  # computed once at import, from the functions as written
