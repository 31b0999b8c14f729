"""The built book: builds with -W from the committed runs, renders offline, redacts, leaks nothing.

The browser part may skip only where Chromium is missing; CI installs it and sets
RR_REQUIRE_BROWSER=1 so that it cannot skip there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from browser_check import chromium, open_page

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "book" / "_build" / "browser-check"
pytestmark = pytest.mark.browser
CDN = re.compile(r'(?:src|href)="(https?://[^"]+\.(?:js|css)[^"]*)"')


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Path:
    """Build the book from a copy of the committed sources and runs."""
    root = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "book", root / "book", ignore=shutil.ignore_patterns("_build"))
    shutil.copytree(ROOT / "data", root / "data")  # the Judges page validates on data/raw/judge_labels.csv
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


def test_book_has_every_page_and_run(book):
    assert (book / "index.html").exists()
    for name in ("intro", "metrics", "methods", "results", "original_study", "reproducibility"):
        assert (book / "book" / f"{name}.html").exists(), name
    runs = sorted(p.name for p in (book / "results" / "runs").rglob("Day*.html"))
    assert {"Day3.html", "Day4.html", "Day5.html"} <= set(runs)


def test_no_page_references_a_cdn(book):
    for page in pages(book):
        assert not CDN.findall(page.read_text()), page


def test_results_page_is_generated_from_metrics(book):
    import pandas as pd

    text = (book / "book" / "results.html").read_text()
    metrics = pd.read_csv(ROOT / "results" / "metrics" / "metrics.csv")
    row = metrics[(metrics["day"] == 5) & (metrics["metric"] == "RRR") & (metrics["step"] == 0)].iloc[0]
    assert f"{row['value']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]" in text
    assert text.count('class="rr-plotly"') >= 3


def test_post_attack_completions_are_redacted(book):
    text = (book / "results" / "runs" / "organism-m" / "Day5.html").read_text()
    assert "[redacted:" in text
    explorer = text[text.find("Responses to harmful prompts at step"):]
    assert "Step 2:" not in explorer  # compliant completions never appear in full


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


def test_browser_check_catches_a_cdn_request(tmp_path):
    if chromium() is None:
        pytest.skip("chromium is not installed")
    page = tmp_path / "leak.html"
    page.write_text('<html><body><script src="https://cdn.jsdelivr.net/npm/nothing@1/x.js"></script></body></html>')
    assert open_page(page).external_requests


def test_every_saved_figure_has_a_png(book):
    if chromium() is None:
        pytest.skip("chromium is not installed")
    figures_dir = book.parents[2] / "results" / "figures"
    specs = sorted(figures_dir.rglob("*.json"))
    assert specs, "no figures were saved"
    for spec in specs:
        png = spec.with_suffix(".png")
        assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
