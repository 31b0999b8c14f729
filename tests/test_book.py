"""The book: generated pages rendered from templates and tables, and the built book.

The unit tests render each generated page from a tiny synthetic table. The
``browser`` tests build the book with -W from the committed runs and check that
it renders offline, redacts and leaks nothing; their browser part may skip only
where Chromium is missing; CI installs it and sets RR_REQUIRE_BROWSER=1 so that
it cannot skip there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from browser_check import chromium, open_page
from rrlib import book as rrbook
from rrlib import results
from rrlib.days import DAYS

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "book" / "_build" / "browser-check"
browser = pytest.mark.browser
CDN = re.compile(r'(?:src|href)="(https?://[^"]+\.(?:js|css)[^"]*)"')


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Path:
    """Build the book from a copy of the committed sources and runs."""
    root = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "book", root / "book", ignore=shutil.ignore_patterns("_build"))
    shutil.copytree(ROOT / "data", root / "data")  # the Judges page validates on data/raw/judge_labels.csv
    shutil.copytree(ROOT / "notebooks", root / "notebooks")  # the data-set defaults are the Day notebooks' parameters
    for path in (ROOT / "results").glob("runs/*/Day*"):
        if path.suffix in (".ipynb", ".json") and ".failed" not in path.name:
            target = root / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    shutil.copytree(ROOT / "results" / "metrics", root / "results" / "metrics")
    env = {**os.environ, "RR_ROOT": str(root), "RR_RESULTS_DIR": str(root / "results")}
    proc = subprocess.run([sys.executable, "-m", "rrlib.cli", "book"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root / "book" / "_build" / "html"


def pages(html: Path) -> list[Path]:
    skip = {"genindex.html", "search.html"}
    return sorted(p for p in html.rglob("*.html") if p.name not in skip and "_static" not in p.parts
                  and p.name != "index.html")


@browser
def test_book_has_every_page_and_run(book):
    assert (book / "index.html").exists()
    for name in ("intro", "metrics", "methods", "results", "original_study", "reproducibility"):
        assert (book / "book" / f"{name}.html").exists(), name
    runs = sorted(p.name for p in (book / "results" / "runs").rglob("Day*.html"))
    assert {"Day3.html", "Day4.html", "Day5.html"} <= set(runs)


@browser
def test_no_page_references_a_cdn(book):
    for page in pages(book):
        assert not CDN.findall(page.read_text()), page


@browser
def test_results_page_is_generated_from_metrics(book):
    text = (book / "book" / "results.html").read_text()
    metrics = pd.read_csv(ROOT / "results" / "metrics" / "metrics.csv")
    row = metrics[(metrics["day"] == 5) & (metrics["metric"] == "RRR") & (metrics["step"] == 0)].iloc[0]
    assert f"{row['value']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]" in text
    assert text.count('class="rr-plotly"') >= 3


@browser
def test_post_attack_completions_are_redacted(book):
    text = (book / "results" / "runs" / "organism-m" / "Day5.html").read_text()
    assert "[redacted:" in text
    explorer = text[text.find("Responses to harmful prompts at step"):]
    assert "Step 2:" not in explorer  # compliant completions never appear in full


@browser
def test_every_page_renders_offline_in_chromium(book):
    if chromium() is None:
        if os.environ.get("RR_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is required here (RR_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("chromium is not installed")
    figures = 0
    for page in pages(book):
        shot = SHOTS / (page.relative_to(book).as_posix().replace("/", "__") + ".png")
        report = open_page(page, screenshot=shot if page.name in ("Day5.html", "results.html") else None)
        assert report.external_requests == [], f"{page}: {report.external_requests}"
        for div in report.figure_ids():
            assert report.figure_rendered(div), f"{page}: figure {div} did not render"
            figures += 1
        if "widget-view+json" in page.read_text():
            assert "widget-tab" in report.dom or "lm-TabBar" in report.dom, f"{page}: widget did not render"
    assert figures >= 8
    assert (SHOTS / "results__runs__organism-m__Day5.html.png").exists()


@browser
def test_browser_check_catches_a_cdn_request(tmp_path):
    if chromium() is None:
        pytest.skip("chromium is not installed")
    page = tmp_path / "leak.html"
    page.write_text('<html><body><script src="https://cdn.jsdelivr.net/npm/nothing@1/x.js"></script></body></html>')
    assert open_page(page).external_requests


@browser
def test_every_saved_figure_has_a_png(book):
    if chromium() is None:
        pytest.skip("chromium is not installed")
    figures_dir = book.parents[2] / "results" / "figures"
    specs = sorted(figures_dir.rglob("*.json"))
    assert specs, "no figures were saved"
    for spec in specs:
        png = spec.with_suffix(".png")
        assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


# ---------------------------------------------------------------------------
# Generated pages, rendered from tiny synthetic tables (no build)
# ---------------------------------------------------------------------------


def metric_rows(model: str, day: int, recipe: str, steps: dict[int, dict[str, tuple[float, float, float]]],
                n: int = 170, judge: str = "arditi12") -> list[dict]:
    """Metrics rows: per step, metric -> (value, ci_low, ci_high); RD is judged by sbert."""
    return [{"model": model, "day": day, "step": step, "metric": metric, "value": v, "ci_low": lo, "ci_high": hi,
             "n": n, "judge": "sbert" if metric == "RD" else judge, "run_id": f"{model}-d{day}", "recipe": recipe,
             "seed": -1 if recipe == "grid-pooled" else 0, "reason": ""}
            for step, values in steps.items() for metric, (v, lo, hi) in values.items()]


@pytest.fixture
def metrics() -> pd.DataFrame:
    day5 = metric_rows("organism-m", 5, "lora-r8", {
        0: {"RRR": (0.9, 0.846, 0.937), "CE": (0.1, 0.063, 0.154), "over_refusal": (0.125, 0.078, 0.194),
            "RD": (0.0, 0.0, 0.0)},
        100: {"RRR": (0.0235, 0.009, 0.059), "CE": (0.9765, 0.941, 0.991), "over_refusal": (0.0, 0.0, 0.029),
              "RD": (0.8123, 0.7991, 0.8254)}})
    day7 = metric_rows("organism-l", 7, "grid-pooled", {
        0: {"RRR": (0.888, 0.859, 0.916), "CE": (0.112, 0.084, 0.141), "RD": (0.0, 0.0, 0.0)},
        200: {"RRR": (0.0275, 0.0, 0.131), "CE": (0.9725, 0.869, 1.0), "RD": (0.886, 0.876, 0.894)}}, n=1530)
    return pd.DataFrame(day5 + day7, columns=list(results.TABLES["metrics"].columns))


def write_metrics(root: Path, frame: pd.DataFrame) -> None:
    path = results.metrics_path(root / "results")
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def test_markdown_table_is_a_pipe_table():
    frame = pd.DataFrame({"judge": ["a|b", "c"], "accuracy": [0.91234, float("nan")], "n": [10, 3]})
    assert rrbook.markdown_table(frame) == ("| judge | accuracy | n |\n|---|---|---|\n| a\\|b | 0.912 | 10 |\n"
                                          "| c |  | 3 |")


def test_results_page_shows_every_headline_number(metrics, tmp_path):
    page = rrbook.results_page(metrics)
    assert page.startswith("# Results\n") and page.count("\n# ") == 0
    assert "| organism-m | lora-r8 | RRR | arditi12 | 0.900 [0.846, 0.937] | 0.024 [0.009, 0.059] @ step 100 | 170 |" \
        in page
    assert "| organism-m | lora-r8 | RD | sbert | 0.000 [0.000, 0.000] | 0.812 [0.799, 0.825] @ step 100 | 170 |" in page
    assert "organism-l" not in page  # Day 7 rows are not Day 5 headline numbers
    assert "response drift (RD)" in page and "Model organisms in this table: organism-m." in page
    assert "No Day 5 results yet" in rrbook.results_page(metrics[metrics["day"] == 7])
    write_metrics(tmp_path, metrics)
    written = rrbook.write_results_page(tmp_path).read_text()
    assert written.count('class="rr-plotly"') == 3 and "Response drift (RD) across the attack grid" in written
    assert (tmp_path / "results" / "figures" / "RD_compare.html").exists()
    assert "`results/figures/RD_compare.html`" in written


def test_original_comparison_sets_the_original_beside_our_pooled_grid(metrics):
    fragment = rrbook.original_fragment(metrics)
    assert fragment.count("**organism-l**") == 1 and "(a model organism, built offline)" in fragment
    assert "| metric | original study: baseline | original study: after LoRA | organism-l: baseline | " \
           "organism-l: after 200 steps |" in fragment
    assert "| RRR | ≈ 0.13 | 0.0 | 0.888 [0.859, 0.916] | 0.028 [0.000, 0.131] |" in fragment
    assert "| RD | moderate drift | NaN | 0.000 [0.000, 0.000] | 0.886 [0.876, 0.894] |" in fragment  # one table
    assert "organism-m" not in fragment  # only Day 7's pooled rows
    assert "No Day 7 grid" in rrbook.original_fragment(metrics[metrics["day"] == 5])


def test_toc_and_run_index_are_built_from_the_results(metrics, tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "metrics.md").write_text("# Metrics\n")
    write_metrics(tmp_path, metrics)
    for day in (3, 4, 5):
        path = results.run_file("organism-m", day, ".ipynb", tmp_path / "results")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    toc = yaml.safe_load(rrbook.write_toc(tmp_path).read_text())
    assert toc["parts"][0]["chapters"] == [{"file": "book/metrics"}]
    assert toc["parts"][1] == {"caption": "Runs", "chapters": [{"file": "book/runs/organism-m", "sections": [
        {"file": f"results/runs/organism-m/Day{d}", "title": DAYS[d].title} for d in (3, 4, 5)]}]}
    index = (tmp_path / "book" / "runs" / "organism-m.md").read_text()
    assert index.startswith("# organism-m\n")
    assert f"[{DAYS[5].title}](../../results/runs/organism-m/Day5.ipynb)." in index
    assert "0.900 [0.846, 0.937]" in index
    assert "Headline numbers (from `results/metrics/metrics.csv`)" in index


def test_reproducibility_page_reads_configs_and_provenance(tmp_path):
    from rrlib.store import write_json

    root = tmp_path / "results"
    for name in ("organism-m", "organism-s"):
        results.run_file(name, 3, ".ipynb", root).parent.mkdir(parents=True, exist_ok=True)
        results.run_file(name, 3, ".ipynb", root).write_text("{}")
        write_json(results.run_file(name, 3, ".config.json", root),
                   {"model": name, "day": 3, "params": {"model": name, "limit": None, "seed": 0}})
    environment = {"python": "3.11.7", "torch": "2.13.0+cpu", "git_commit": "0dc046c", "cuda": False}
    write_json(results.provenance_path("organism-m", 3, root), {"environment": environment, "seconds": 41.26})
    page = rrbook.reproducibility_page(rrbook.reproducibility_runs(tmp_path))
    assert page.startswith("# Reproducibility\n") and page.count("\n# ") == 0
    assert f"| organism-m | {DAYS[3].title} | 41.3 | 0dc046c | environment 1 |" in page
    assert f"| organism-s | {DAYS[3].title} | {rrbook.NOT_EXECUTED} | {rrbook.NOT_EXECUTED} | {rrbook.NOT_EXECUTED} |" in page
    assert "1 of 2 runs were not executed on this machine" in page
    assert "| torch | 2.13.0+cpu |" in page and f"Used by organism-m ({DAYS[3].title})." in page
    assert '| model | "organism-m" | "organism-s" |' in page and "| limit | null | null |" in page
    fresh = rrbook.reproducibility_page([run for run in rrbook.reproducibility_runs(tmp_path)
                                         if run["name"] == "organism-s"])
    assert "None of these runs was executed on this machine" in fresh and "## Environments" not in fresh


def test_data_sets_are_counted_from_the_notebooks_default_files():
    sets = rrbook.data_sets().set_index("set")
    attack = ROOT / "data" / "raw" / "attack_train.jsonl"
    assert sets.loc["attack", "rows"] == sum(1 for line in attack.read_text().splitlines() if line.strip())
    assert sets.loc["harmful eval", "rows"] == len(pd.read_csv(ROOT / "data" / "raw" / "redteam_eval.csv"))
    assert sets.loc["harmful eval", "file"] == "`data/raw/redteam_eval.csv`"
    assert rrbook.render("data_sets.md.jinja", sets=rrbook.data_sets()).startswith("| set | file | rows | categories |")


def test_book_imports_nothing_above_it():
    """The book reads results and renders; it never imports the runner, the job plan or the CLI."""
    import ast

    tree = ast.parse(Path(rrbook.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {f"rrlib.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "rrlib"
                 for a in n.names}
    above = {"rrlib.runner", "rrlib.study", "rrlib.jobs", "rrlib.executors", "rrlib.experiments", "rrlib.cli"}
    assert not imported & above
    assert "results/runs" not in Path(rrbook.__file__).read_text().split('"""', 2)[2].replace(
        "lists results/runs/*/Day*.ipynb", "")


def test_a_run_on_other_inputs_shows_its_own_metrics(metrics, tmp_path):
    name = "organism-m@1a2b3c4d"
    own = metrics[metrics["day"] == 5].assign(model=name)
    path = results.table_path("metrics", name, tmp_path / "results", tagged=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    own.assign(value=own["value"] / 2).to_csv(path, index=False)
    write_metrics(tmp_path, metrics)  # the study's table, which this run never touches
    index = rrbook.write_run_index(tmp_path, name, [3, 5]).read_text()
    assert f"(from `results/runs/{name}/metrics/metrics.csv`)" in index
    assert "| 0.450 [0.846, 0.937] |" in index and "0.900 [0.846, 0.937]" not in index
