"""Benchmarks of the study's speed and memory (not tests).

Run them with ``make bench`` or ``python -m bench.run``; each benchmark writes
``bench/results/<name>.json`` and the headline numbers go to
``bench/results/summary.json``. See ``bench/README.md``.

=====  ===================================================  ==========
key    what                                                  goal
=====  ===================================================  ==========
P1     batched generation vs one ``model.generate`` a prompt  >= 12x
P2     one attack run for the grid vs one run per grid point  >= 1.8x
P3     ``make all`` after setup (study + book), cold cache     <= 900 s
P4     peak resident memory of the P3 process tree            <= 2048 MB
P5     ``experiments/attacks_and_defense``, cold cache          <= 1500 s
=====  ===================================================  ==========
"""

from __future__ import annotations

from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
QUICK_RESULTS_DIR = RESULTS_DIR / "quick"

# summary key -> (comparison, target, unit)
GOALS: dict[str, tuple[str, float, str]] = {
    "p1_generation_speedup": (">=", 12.0, "x"),
    "p2_grid_speedup": (">=", 1.8, "x"),
    "p3_make_all_seconds": ("<=", 900.0, "s"),  # the brief's budget: 15 minutes on 2 cores after setup
    "p4_peak_rss_mb": ("<=", 2048.0, "MB"),
    "p5_attacks_and_defense_seconds": ("<=", 1500.0, "s"),  # issue 15: <= 25 minutes on 2 cores, cold
}

# Other processes' average CPU use (cores) above which a benchmark's timings are flagged as unreliable.
BUSY_CORES = 0.25
