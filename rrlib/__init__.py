"""rrlib: the helper package behind the Refusal Robustness Scaling notebooks and book.

Modules are layered and import only modules of their own layer or below
(:data:`LAYERS`, lowest first; ``tests/test_layers.py`` reads every import with
``ast`` and fails on an upward import or a cycle). The data path runs
config -> days -> data -> models -> generate -> judges -> metrics -> evaluation
-> results -> narrative/figures -> book; the attack branches off after models
and feeds generate at each checkpoint; the job plan, the runner, the executors
and the CLI sit on top. Modules are imported on demand, so ``import rrlib`` is cheap.
"""

__version__ = "0.1.0"

# Each layer's modules, lowest first (a package counts as one module).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "envvars", "progress", "config", "store", "embed", "training"),  # foundations: no study logic
    ("days",),  # the Day records and the parameter schema read from the notebooks
    ("data", "organism"),  # prompt sets and the offline model organisms
    ("models",),  # loading, chat templates, EOS ids
    ("generate", "vllm_backend"),  # batched, cached generation
    ("attack",),  # LoRA attack, checkpoints, compute bill
    ("judges",),  # verdicts (keyword, classifier, LLM) and their validation
    ("metrics", "correction"),  # RRR, CE, RD, intervals, the collapse rule; judge-error-corrected rates
    ("evaluation",),  # generate-then-judge over a model or an attack's adapters; writes nothing
    ("representations", "interventions", "grid", "scaling"),  # analyses that compute and return
    ("results",),  # Run, every results table, where files go
    ("narrative", "figures", "notebook", "export"),  # sentences, plots, notebook display
    ("book", "jobs", "runner", "executors", "experiments", "cli"),  # the book, the job plan, running, the CLI
)
