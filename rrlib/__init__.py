"""rrlib: the helper package behind the Refusal Robustness Scaling notebooks and book.

Modules are layered and import only modules of their own layer or below
(:data:`LAYERS`, lowest first; ``tests/test_layers.py`` reads every import with
``ast`` and fails on an upward import or a cycle). The data path runs
config -> days -> data -> models -> generate -> judges -> metrics -> evaluation
-> results -> narrative/figures -> book; the attacks sit above the
representation analyses (orthogonalization reuses the refusal direction) and
feed generate through their checkpoints; the job plan, the runner, the executors
and the CLI sit on top. Modules are imported on demand, so ``import rrlib`` is cheap.
"""

__version__ = "0.1.0"

# Each layer's modules, lowest first (a package counts as one module).
LAYERS: tuple[tuple[str, ...], ...] = (
    # foundations: no study logic (defense: the Vaccine perturbation step that organism builds may use)
    ("errors", "envvars", "progress", "config", "store", "embed", "training", "architecture", "defense"),
    ("days",),  # the Day records and the parameter schema read from the notebooks
    ("data", "organism"),  # prompt sets and the offline model organisms
    ("models", "patches"),  # loading, chat templates, EOS ids; weight-patch checkpoints
    ("generate", "vllm_backend"),  # batched, cached generation
    ("judges",),  # verdicts (keyword, classifier, LLM) and their validation
    ("metrics", "correction", "utility"),  # RRR, CE, RD, intervals, collapse; corrected rates; utility loss
    ("evaluation",),  # generate-then-judge over a model or an attack's checkpoints; writes nothing
    ("representations", "interventions"),  # the refusal direction: measured, ablated, added
    ("orthogonalize",),  # the refusal-direction orthogonalization attack
    ("attack",),  # the four attacks, their checkpoints and compute bills
    ("grid", "scaling"),  # analyses across runs that compute and return
    ("results",),  # Run, every results table, where files go
    ("comparison",),  # attacks x sizes x defenses, read from the runs' tables
    ("narrative", "figures", "notebook", "export"),  # sentences, plots, notebook display
    ("book", "jobs", "runner", "executors", "experiments", "cli"),  # the book, the job plan, running, the CLI
)
