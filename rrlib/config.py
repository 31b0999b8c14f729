"""Typed configuration: paths, the model registry, generation and attack settings.

Configs are frozen dataclasses. :func:`from_mapping` builds one from a dict (a
YAML file, papermill parameters) and rejects unknown keys with an error that
lists the valid ones, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

from rrlib.defense import DEFENSES, DEFAULT_RHO, check_defense
from rrlib.errors import ConfigError

T = TypeVar("T")

# ---------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------


def project_root() -> Path:
    """Return the project root (``RR_ROOT`` or the checkout that holds rrlib).

    Returns
    -------
    Path
        The directory holding ``data/``, ``notebooks/`` and ``results/``.
    """
    env = os.environ.get("RR_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parents[1]
    if (here / "notebooks").is_dir() or (here / "data").is_dir():
        return here
    return Path.cwd().resolve()


def results_dir() -> Path:
    """Return the results root (``RR_RESULTS_DIR`` or ``<root>/results``).

    Returns
    -------
    Path
        Where runs, metrics, figures and caches are written.
    """
    env = os.environ.get("RR_RESULTS_DIR")
    return Path(env).resolve() if env else project_root() / "results"


def cache_dir() -> Path:
    """Return the organism cache (``RR_CACHE_DIR`` or ``<root>/.rr_cache``).

    Returns
    -------
    Path
        Where built model organisms are kept between runs.
    """
    env = os.environ.get("RR_CACHE_DIR")
    return Path(env).resolve() if env else project_root() / ".rr_cache"


def slug(name: str) -> str:
    """Turn a model name, hub id or path into a folder-safe name.

    Parameters
    ----------
    name : str
        Any model name (``Qwen/Qwen2-7B-Instruct``, ``./models/x``).

    Returns
    -------
    str
        Lower-case letters, digits, ``.``, ``-`` and ``_`` only.
    """
    out = "".join(c if c.isalnum() or c in "._-" else "-" for c in name.strip().strip("/"))
    return out.strip("-.").lower() or "model"


def stable_hash(obj: Any, length: int = 12) -> str:
    """Hash a JSON-serialisable object deterministically.

    Parameters
    ----------
    obj : Any
        Dicts, lists, strings and numbers (dataclasses are converted).
    length : int
        Number of hex characters to keep.

    Returns
    -------
    str
        A hex digest prefix that depends only on the object's content.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    text = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def from_mapping(cls: type[T], values: Mapping[str, Any] | None, where: str = "config") -> T:
    """Build a config dataclass from a mapping, rejecting unknown keys.

    Parameters
    ----------
    cls : type
        A dataclass type such as :class:`GenerationConfig`.
    values : Mapping or None
        Keys and values; ``None`` gives the defaults.
    where : str
        Names the source (a file or ``papermill parameters``) in errors.

    Returns
    -------
    T
        The dataclass instance.

    Raises
    ------
    ConfigError
        If a key is unknown.
    """
    values = dict(values or {})
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} for {cls.__name__}; "
            f"valid keys are: {', '.join(sorted(names))}"
        )
    for key, value in list(values.items()):
        if isinstance(value, list):
            values[key] = tuple(value)
    return cls(**values)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ---------------------------------------------------------------------------
# Generation and attack settings
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationConfig:
    """How responses are generated.

    Greedy decoding is the default so that the baseline and every attacked
    checkpoint are compared under identical, deterministic decoding.
    """

    max_new_tokens: int = 64  # organism answers fit in ~45 tokens; real models get 256
    batch_size: int = 32  # batched greedy with left padding; 32 was measured fastest on CPU
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    backend: str = "hf"  # "hf" (transformers) or "vllm" (GPU only; falls back to hf with a warning)

    def __post_init__(self) -> None:
        _require(self.backend in ("hf", "vllm"), f"unknown generation backend {self.backend!r}; use 'hf' or 'vllm'")
        _require(_is_int(self.max_new_tokens) and self.max_new_tokens > 0,
                 f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        _require(_is_int(self.batch_size) and self.batch_size > 0,
                 f"batch_size must be a positive integer, got {self.batch_size!r}")
        _require(self.temperature > 0, f"temperature must be > 0, got {self.temperature!r}")
        _require(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p!r}")

    def cache_key(self) -> dict[str, Any]:
        """Return the fields that change outputs (batch size does not)."""
        key = dataclasses.asdict(self)
        key.pop("batch_size")
        key.pop("backend")  # the cache marks vLLM records itself
        if not self.do_sample:
            key.pop("temperature")
            key.pop("top_p")
            key.pop("seed")
        return key


# The attacks Day 4 can run (its ``attack`` parameter), each billed in the same units (examples, tokens, FLOPs):
#   lora           LoRA fine-tuning on harmful requests with generic compliance (Qi et al. 2023; Lermen et al. 2023)
#   full           full fine-tuning of every weight on the same data
#   benign         LoRA fine-tuning on benign instructions only (Qi et al. 2023, tier 3); no harmful example
#   orthogonalize  refusal-direction weight orthogonalization (Arditi et al. 2024); a grid step is the number of
#                  harmful (and harmless) prompts whose forward passes estimate the direction
ATTACKS: tuple[str, ...] = ("lora", "full", "benign", "orthogonalize")
# Default learning rate per training attack. Full fine-tuning moves every weight, so it takes a 10x smaller rate
# than the adapters. Chosen on the dev split (organism-m, attack seed 0, judge arditi12): at 1e-3 full fine-tuning
# removed every dev refusal by step 10, the first grid step, so its curve is not resolved on the grid; at 1e-4
# dev RRR went 0.792 (step 10), 0.633 (25), 0.283 (50), 0.017 (100).
DEFAULT_LEARNING_RATES: dict[str, float] = {"lora": 1e-3, "benign": 1e-3, "full": 1e-4, "orthogonalize": 0.0}
# FLOPs per token processed: forward and backward through frozen weights (adapters: 4N), with weight gradients
# (full fine-tuning: 6N), or forward passes only (orthogonalization's direction estimate: 2N).
FLOPS_PER_TOKEN: dict[str, int] = {"lora": 4, "benign": 4, "full": 6, "orthogonalize": 2}


@dataclass(frozen=True)
class AttackConfig:
    """One attack run (``method`` in :data:`ATTACKS`): a checkpoint at every grid step."""

    grid_steps: tuple[int, ...] = (0, 10, 25, 50, 100)
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    learning_rate: float = 1e-3  # collapses organism refusal in 25-50 steps (DESIGN §11)
    batch_size: int = 8
    target_modules: tuple[str, ...] | None = None  # None: resolved per architecture
    max_length: int = 256
    seed: int = 0
    method: str = "lora"

    def __post_init__(self) -> None:
        _require(self.method in ATTACKS, f"unknown attack {self.method!r}; choose one of {', '.join(ATTACKS)}")
        steps = tuple(self.grid_steps)
        _require(len(steps) > 0, "grid_steps must list at least one step, e.g. [0, 10, 25, 50, 100]")
        _require(all(_is_int(s) and s >= 0 for s in steps),
                 f"grid_steps must be non-negative integers, got {list(steps)}")
        _require(all(b > a for a, b in zip(steps, steps[1:])),
                 f"grid_steps must strictly increase, got {list(steps)}; sort them and drop repeats")
        _require(_is_int(self.rank) and self.rank > 0,
                 f"LoRA rank must be a positive integer, got {self.rank!r}; try 8")
        _require(self.alpha > 0, f"LoRA alpha must be > 0, got {self.alpha!r}")
        _require(0 <= self.dropout < 1, f"LoRA dropout must be in [0, 1), got {self.dropout!r}")
        _require(self.learning_rate > 0 or self.method == "orthogonalize",
                 f"learning_rate must be > 0, got {self.learning_rate!r}")
        _require(_is_int(self.batch_size) and self.batch_size > 0,
                 f"attack batch_size must be a positive integer, got {self.batch_size!r}")
        object.__setattr__(self, "grid_steps", steps)
        if self.target_modules is not None:
            object.__setattr__(self, "target_modules", tuple(self.target_modules))

    @property
    def recipe(self) -> str:
        """A short human-readable recipe name, e.g. ``lora-r8-lr0.001-s0``, ``full-lr0.0001-s0``, ``orthogonalize-s0``."""
        if self.method == "orthogonalize":
            return f"orthogonalize-s{self.seed}"
        if self.method == "full":
            return f"full-lr{self.learning_rate:g}-s{self.seed}"
        return f"{self.method}-r{self.rank}-lr{self.learning_rate:g}-s{self.seed}"

    def identity(self) -> dict[str, Any]:
        """The fields that name the run's folder (a LoRA run's identity predates ``method`` and omits it)."""
        fields = dataclasses.asdict(self)
        if self.method == "lora":
            fields.pop("method")
        return fields


# ---------------------------------------------------------------------------
# Model registry
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OrganismSpec:
    """Architecture and training recipe of an offline model organism."""

    layers: int
    hidden: int
    heads: int
    intermediate: int
    vocab_size: int = 2048
    # The same at every size (the family rule). Tuned on the dev split (data/dev), never on eval: width 64 at
    # 3 epochs refuses 0.867 [0.794, 0.916] of dev harmful prompts and over-refuses 0.130 [0.078, 0.210] of dev
    # benign ones; 5 epochs gave 0.842 / 0.090 at 1.7x the build time, within the noise of one build. Width 32
    # reached 0.767 / 0.170 (weight decay 0.1, vocabularies of 1k or 4k and 600+600 more corpus prompts did
    # not do better on dev).
    epochs: int = 3
    learning_rate: float = 5e-3
    weight_decay: float = 0.01
    batch_size: int = 32
    seed: int = 0
    corpus_fraction: float = 1.0  # share of the corpus rows used (1.0 for every named organism)
    # Tamper-resistance defense applied during the build (its alignment stage): "none" or "vaccine"
    # (rrlib.defense), with Vaccine's perturbation radius. Undefended recipes hash without these two keys.
    defense: str = "none"
    defense_rho: float = 0.0

    def __post_init__(self) -> None:
        check_defense(self.defense, self.defense_rho)


@dataclass(frozen=True)
class ModelSpec:
    """A named model: where it comes from, its size and its default dtype."""

    name: str
    source: str  # a hub id, a local path, or "organism"
    family: str
    params: int | None = None
    dtype: str = "auto"
    organism: OrganismSpec | None = None
    max_new_tokens: int = 256
    batch_size: int = 32  # generation batch; organisms use far larger ones (per-step overhead dominates)
    notes: str = ""

    @property
    def is_organism(self) -> bool:
        """Whether the model is built offline by :mod:`rrlib.organism`."""
        return self.organism is not None


# The organism family: one scaling rule, five sizes, three build seeds per size.
#
# Rule (the only thing that varies across sizes is the width, and depth follows it):
#   width h in FAMILY_WIDTHS; depth = max(2, h // 32); heads = h // 16 (head size 16);
#   MLP width = 3h; the same corpus, the same 3 epochs and the same optimiser settings at
#   every size, so every member sees the same training tokens and size is the only variable.
# Non-embedding parameters (13 * depth * h^2 + norms) span 26.8k (xs) to 853k (xl): 32x. The widths between
# are dense where the gate is passed (64-128): a size trend needs four gated sizes, and on the dev split width 32
# refused at most 0.817 of harmful prompts with every recipe tried (data/dev; see the note on epochs below).
# Depth grows with width so that the span reaches 30x without a width at which the embedding
# (vocabulary 2048) is nearly the whole model, as it was for the old 1-layer, 8-wide organism.
# Each size is built with seeds FAMILY_BUILD_SEEDS: `organism-m` is seed 0, `organism-m-seed1`
# seed 1, and so on; a seed changes the tokenizer-independent parts of a build (augmentation
# choices, data order, initialisation), never the recipe.
FAMILY_WIDTHS: dict[str, int] = {"xs": 32, "s": 64, "m": 80, "l": 96, "xl": 128}
FAMILY_BUILD_SEEDS: tuple[int, ...] = (0, 1, 2)


def family_spec(width: int, seed: int = 0) -> OrganismSpec:
    """The organism of the family's scaling rule at one width and build seed.

    Parameters
    ----------
    width : int
        Hidden size; a multiple of 16.
    seed : int
        Build seed.

    Returns
    -------
    OrganismSpec
        Depth ``max(2, width // 32)``, ``width // 16`` heads, MLP width ``3 * width``.
    """
    _require(_is_int(width) and width >= 16 and width % 16 == 0,
             f"organism width must be a positive multiple of 16, got {width!r}")
    return OrganismSpec(layers=max(2, width // 32), hidden=width, heads=width // 16, intermediate=3 * width,
                        seed=int(seed))


# Defended members: the same spec plus a defense, named with a suffix (``organism-m-seed1-vaccine``).
_DEFENDED = "|".join(d for d in DEFENSES if d != "none")
_DEFENSE_SUFFIX = re.compile(rf"-({_DEFENDED})$")
_SEED_SUFFIX = re.compile(rf"-seed\d+(?=(-({_DEFENDED}))?$)")


def _check_family_defense(defense: str) -> None:
    _require(defense in DEFENSES, f"unknown defense {defense!r}; use one of: {', '.join(DEFENSES)}")


def member_name(size: str, seed: int, defense: str = "none") -> str:
    """The registry name of one family member.

    E.g. ``organism-m`` (seed 0), ``organism-m-seed1``, and with ``defense="vaccine"``
    ``organism-m-vaccine`` or ``organism-m-seed1-vaccine``.
    """
    _check_family_defense(defense)
    name = f"organism-{size}" if seed == 0 else f"organism-{size}-seed{seed}"
    return name if defense == "none" else f"{name}-{defense}"


def family_members(sizes: Sequence[str] | None = None, seeds: Sequence[int] = FAMILY_BUILD_SEEDS,
                   defense: str = "none") -> list[str]:
    """Registry names of the family members, size by size (smallest first), seed by seed.

    Parameters
    ----------
    sizes : sequence of str, optional
        Size labels (keys of :data:`FAMILY_WIDTHS`); all of them by default.
    seeds : sequence of int
        Build seeds.
    defense : str
        ``"none"`` (the undefended family) or a defense of :data:`rrlib.defense.DEFENSES` (its defended twins).

    Returns
    -------
    list of str
        E.g. ``["organism-xs", "organism-xs-seed1", ...]`` or ``["organism-xs-vaccine", ...]``.
    """
    _check_family_defense(defense)
    chosen = list(FAMILY_WIDTHS) if sizes is None else list(sizes)
    unknown = [s for s in chosen if s not in FAMILY_WIDTHS]
    if unknown:
        raise ConfigError(f"unknown organism size(s) {unknown}; the family has {', '.join(FAMILY_WIDTHS)}")
    return [member_name(size, seed, defense) for size in chosen for seed in seeds]


def size_of(model: str) -> str:
    """The size a model belongs to: its name without the ``-seed<k>`` build-seed suffix.

    Defended organisms form their own size groups (``organism-m-seed1-vaccine`` is in
    ``organism-m-vaccine``). Models outside the organism family are their own size.
    """
    return _SEED_SUFFIX.sub("", model) if model.startswith("organism-") else model


def defense_of(model: str) -> str:
    """The defense an organism was built with (``"vaccine"`` or ``"none"``); ``"none"`` for any other model."""
    spec = REGISTRY.get(model)
    if spec is not None and spec.organism is not None:
        return spec.organism.defense
    found = _DEFENSE_SUFFIX.search(model) if model.startswith("organism-") else None
    return found.group(1) if found else "none"


def undefended(model: str) -> str:
    """The undefended twin of a defended organism (``organism-m-seed1-vaccine`` -> ``organism-m-seed1``).

    Any other name is returned unchanged.
    """
    return _DEFENSE_SUFFIX.sub("", model) if model.startswith("organism-") else model


def build_seed(model: str) -> int:
    """The build seed of a registered organism (0 for any other model)."""
    spec = REGISTRY.get(model)
    return int(spec.organism.seed) if spec is not None and spec.organism is not None else 0


ORGANISMS: dict[str, OrganismSpec] = {
    member_name(size, seed): family_spec(width, seed)
    for size, width in FAMILY_WIDTHS.items() for seed in FAMILY_BUILD_SEEDS
}
# The Vaccine-defended twins (rrlib.defense), registered after the undefended family so its order is unchanged.
ORGANISMS.update({
    member_name(size, seed, "vaccine"): dataclasses.replace(family_spec(width, seed), defense="vaccine",
                                                            defense_rho=DEFAULT_RHO)
    for size, width in FAMILY_WIDTHS.items() for seed in FAMILY_BUILD_SEEDS
})

DEFAULT_ORGANISM = "organism-m"

_REAL_MODELS = [
    ModelSpec("tinyllama-1.1b-chat", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "llama", 1_100_048_384, "bfloat16"),
    ModelSpec("phi-3-mini-4k-instruct", "microsoft/Phi-3-mini-4k-instruct", "phi3", 3_821_079_552, "bfloat16"),
    ModelSpec("qwen2-7b-instruct", "Qwen/Qwen2-7B-Instruct", "qwen2", 7_615_616_512, "bfloat16"),
    ModelSpec("qwen2.5-0.5b-instruct", "Qwen/Qwen2.5-0.5B-Instruct", "qwen2", 494_032_768, "bfloat16"),
    ModelSpec("qwen2.5-1.5b-instruct", "Qwen/Qwen2.5-1.5B-Instruct", "qwen2", 1_543_714_304, "bfloat16"),
    ModelSpec("qwen2.5-3b-instruct", "Qwen/Qwen2.5-3B-Instruct", "qwen2", 3_085_938_688, "bfloat16"),
    ModelSpec("qwen2.5-7b-instruct", "Qwen/Qwen2.5-7B-Instruct", "qwen2", 7_615_616_512, "bfloat16"),
]

REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in _REAL_MODELS}


def register_organism(name: str, spec: OrganismSpec) -> ModelSpec:
    """Add an organism size to the registry (e.g. a custom one for an experiment).

    Parameters
    ----------
    name : str
        Must start with ``organism-``.
    spec : OrganismSpec
        Architecture and training recipe.

    Returns
    -------
    ModelSpec
        The registered model.
    """
    if not name.startswith("organism-"):
        raise ConfigError(f"organism names start with 'organism-', got {name!r}")
    ORGANISMS[name] = spec
    REGISTRY[name] = ModelSpec(name, "organism", "organism", None, "float32", spec, max_new_tokens=64,
                               batch_size=256, notes="offline model organism, built and safety-trained by rrlib.organism")
    return REGISTRY[name]


for _name, _spec in list(ORGANISMS.items()):
    register_organism(_name, _spec)


def resolve_model(name_or_path: str) -> ModelSpec:
    """Resolve a registry name, a local path or a hub id to a :class:`ModelSpec`.

    Parameters
    ----------
    name_or_path : str
        ``organism-m``, ``qwen2-7b-instruct``, ``./my-model`` or ``org/model``.

    Returns
    -------
    ModelSpec
        The registered spec, or an ad-hoc spec for a path or hub id.

    Raises
    ------
    ConfigError
        If the name is empty or looks like a registry name that does not exist.
    """
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise ConfigError(f"model must be a non-empty string, got {name_or_path!r}")
    key = name_or_path.strip()
    if key in REGISTRY:
        return REGISTRY[key]
    if key.lower() in REGISTRY:
        return REGISTRY[key.lower()]
    path = Path(key).expanduser()
    if path.exists():
        return ModelSpec(slug(path.name), str(path.resolve()), "local")
    if key.startswith("organism-"):
        raise ConfigError(
            f"unknown organism {key!r}; known organisms: {', '.join(ORGANISMS)}"
        )
    return ModelSpec(slug(key), key, "hub")


@dataclass(frozen=True)
class RunInfo:
    """Identifies one executed run (model, Day, settings) for the metrics table."""

    model: str
    day: int
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        """A deterministic id: same model, Day and settings give the same id."""
        return f"{slug(self.model)}-d{self.day}-{stable_hash(self.settings, 8)}"
