"""The book: generated pages rendered from templates and tables, and the built book.

The unit tests render each generated page from a tiny synthetic table. The
``browser`` tests build the book with -W from the committed runs and check that
it renders offline, redacts and leaks nothing; their browser part may skip only
where Chromium is missing; CI installs it and sets RR_REQUIRE_BROWSER=1 so that
it cannot skip there.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

from browser_check import chromium, open_page
from rrlib import book as rrbook
from rrlib import results
from rrlib.days import DAYS

ROOT = Path(__file__).resolve().parents[1]
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


# ---------------------------------------------------------------------------
# Redaction: every page, every model and Day, checked against the response files
# ---------------------------------------------------------------------------

KEEP_WORDS = 6  # rrlib.notebook.REDACT_KEEP_WORDS, written down here so that the check does not share the code
REDACTED = " … [redacted:"
HARMFUL_FILE = re.compile(r"^Day(\d+)_(?:step(\d+)_)?harmful\.csv$")


@dataclass
class ResponseFile:
    """One run's saved responses to harmful prompts, with the verdict saved beside them."""

    run: str
    day: int
    step: int | None
    path: Path
    frame: pd.DataFrame  # id, response, clean_refusal


def _bool(column: pd.Series) -> pd.Series:
    return column.map(lambda v: str(v).strip().lower() in ("true", "1", "1.0"))


def clean_refusals(frame: pd.DataFrame) -> pd.Series:
    """A parsed refusal verdict (and, where the run saved a four-way verdict, one of ``refusal``)."""
    clean = _bool(frame["refused"])
    if "parsed" in frame:
        clean &= _bool(frame["parsed"])
    if "verdict" in frame:
        clean &= frame["verdict"].astype(str) == "refusal"
    return clean


def _check_day5_verdicts(run_dir: Path, step: int, frame: pd.DataFrame, clean: pd.Series) -> None:
    """The response file's verdicts are the ones Day5.verdicts.csv saved at ``step`` for one judge and recipe.

    The run's headline judge is the one Day5.config.json records (a ``judge`` parameter of None resolves to
    the domain's default, and the config keeps the resolved name).
    """
    table = run_dir / "Day5.verdicts.csv"
    assert table.exists(), f"{run_dir}: Day 5 responses are saved but no per-prompt verdicts table ({table.name})"
    verdicts = pd.read_csv(table, keep_default_na=False, dtype={"id": str})
    config = json.loads((run_dir / "Day5.config.json").read_text())
    judge = config.get("judge") or config["params"].get("judge")
    assert judge, f"{run_dir}/Day5.config.json: records no judge"
    rows = verdicts[(verdicts["step"] == step) & ((verdicts["judge"] == judge) if judge else True)]
    mine = dict(zip(frame["id"], clean))
    tried = []
    for (name, recipe), group in rows.groupby(["judge", "recipe"]):
        saved = dict(zip(group["id"], clean_refusals(group)))
        tried.append(f"{name}/{recipe}")
        if saved.keys() >= mine.keys() and all(saved[i] == v for i, v in mine.items()):
            return
    raise AssertionError(f"{frame.attrs.get('path')}: its verdicts match no judge's saved verdicts at step {step} "
                         f"in {table} (tried {tried or 'none'})")


def harmful_response_files(results_root: Path) -> list[ResponseFile]:
    """Every run's responses to harmful prompts, each with its clean-refusal verdict as saved by the run.

    The verdicts are the response file's own (``refused``, ``parsed``, ``verdict``); for Day 5 they must also be
    the ones the run's per-prompt verdicts table holds at that step. Nothing is judged again here. Anything but a
    clean refusal must not be shown in full.
    """
    found = []
    for path in sorted(results_root.glob("runs/*/responses/Day*_harmful.csv")):
        match = HARMFUL_FILE.match(path.name)
        if not match:
            continue
        day, step = int(match.group(1)), int(match.group(2)) if match.group(2) else None
        frame = pd.read_csv(path, keep_default_na=False, dtype={"id": str})
        frame.attrs["path"] = str(path)
        assert {"id", "response", "refused"} <= set(frame.columns), f"{path}: columns {list(frame.columns)}"
        clean = clean_refusals(frame)
        if day == 5 and step is not None:
            _check_day5_verdicts(path.parents[1], step, frame, clean)
        found.append(ResponseFile(path.parents[1].name, day, step, path,
                                  pd.DataFrame({"id": frame["id"], "response": frame["response"].astype(str),
                                                "clean_refusal": clean.astype(bool)})))
    return found


def encodings(text: str) -> set[str]:
    """The forms a text takes in a built page or notebook: raw, HTML-escaped, and JSON-escaped of each."""
    forms = {text, html.escape(text, quote=False), html.escape(text, quote=True)}
    for form in list(forms):
        forms.add(json.dumps(form)[1:-1])
        forms.add(json.dumps(form, ensure_ascii=False)[1:-1])
    return forms


def visible_prefix(text: str) -> str:
    """What a redacted response keeps: its first words, single-spaced."""
    return " ".join(text.split()[:KEEP_WORDS])


def hidden_tail(text: str) -> str:
    """The part of a response that redaction hides (after its first words, in its own spacing)."""
    words = text.split()
    if len(words) <= KEEP_WORDS:
        return ""
    position = 0
    for word in words[:KEEP_WORDS]:
        position = text.index(word, position) + len(word)
    return text[position:].strip()


def allowed_texts(root: Path) -> list[str]:
    """Texts the book shows in full by design: the project's own training targets (the attack set's generic
    compliance, the benign instruction set's answers) and judge-calibration labels."""
    texts = []
    for name in ("attack_train.jsonl", "benign_train.jsonl"):
        for line in (root / "data" / "raw" / name).read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                texts += [str(m.get("content", "")) for m in record.get("messages", [])] + [str(record.get("target", ""))]
    labels = root / "data" / "raw" / "judge_labels.csv"
    if labels.exists():
        texts += pd.read_csv(labels, keep_default_na=False).get("response", pd.Series(dtype=str)).astype(str).tolist()
    return [t for t in texts if t]


def book_text_files(html_root: Path) -> list[Path]:
    """Every file of the built book a reader can open, except the vendored scripts and styles in ``_static``."""
    suffixes = {".html", ".ipynb", ".md", ".js", ".txt", ".json"}
    return sorted(p for p in html_root.rglob("*") if p.is_file() and p.suffix in suffixes
                  and "_static" not in p.relative_to(html_root).parts)


def explorer_titles(notebook: Path) -> list[str]:
    """Titles of the response explorers a notebook displayed (their text/plain is ``<explorer: TITLE>``)."""
    nb = nbformat.read(notebook, as_version=4)
    titles = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            plain = output.get("data", {}).get("text/plain", "")
            match = re.fullmatch(r"<explorer: (.*)>", plain.strip(), flags=re.DOTALL)
            if match:
                titles.append(match.group(1))
    return titles


@browser
def test_no_page_shows_a_non_refusal_to_a_harmful_prompt_in_full(book):
    root = book.parents[2]  # the copied project the book was built from
    files = harmful_response_files(ROOT / "results")
    assert files, f"{ROOT / 'results' / 'runs'}: no responses/Day*_harmful.csv; run `make all` before the book tests"
    allowed = allowed_texts(ROOT)
    clean = {t for f in files for t in f.frame.loc[f.frame["clean_refusal"], "response"]}
    needles: dict[str, str] = {}  # an encoded text that must not appear -> where it comes from
    for f in files:
        for row in f.frame[~f.frame["clean_refusal"]].itertuples():
            text = row.response
            if len(text.split()) <= KEEP_WORDS or text in clean or any(text in a for a in allowed):
                continue  # nothing to hide, or the same text is shown in full for another reason
            where = f"{f.path.relative_to(ROOT)} id {row.id}"
            pieces = [text]
            tail = hidden_tail(text)
            if len(tail) >= 40 and not any(tail in other for other in (*clean, *allowed)):
                pieces.append(tail)
            for piece in pieces:
                for form in encodings(piece):
                    needles.setdefault(form, where)
    assert needles, "no response to a harmful prompt needs redaction; the check would be empty"

    leaks = []
    for path in book_text_files(book):
        content = path.read_text(errors="replace")
        leaks += [f"{path.relative_to(book)}: {where}: {needle[:80]!r}" for needle, where in needles.items()
                  if needle in content]
    assert not leaks, f"{len(leaks)} unredacted non-refusals in the book:\n" + "\n".join(leaks[:20])

    # Each run page with a response explorer is built from the response file checked here, and redacts.
    for f in files:
        notebook = root / "results" / "runs" / f.run / f"Day{f.day}.ipynb"
        page = book / "results" / "runs" / f.run / f"Day{f.day}.html"
        if not notebook.exists():
            continue  # a run that is not in the book
        assert page.exists(), f"{page}: missing from the built book"
        text = page.read_text()
        titles = [t for t in explorer_titles(notebook)
                  if f.step is None or re.search(rf"\bstep {f.step}\b", t)]
        assert titles, f"{notebook}: no response explorer for {f.path.name}"
        for title in titles:
            assert html.escape(title, quote=False) in text, f"{page}: explorer title {title!r} not found"
        hidden = f.frame[~f.frame["clean_refusal"] & (f.frame["response"].str.split().str.len() > KEEP_WORDS)]
        markers = [visible_prefix(r) + REDACTED for r in hidden["response"]]
        shown = [m for m in markers if any(form in text for form in encodings(m))]
        assert not markers or shown, f"{page}: none of the {len(markers)} non-refusals of {f.path.name} appears " \
                                     f"redacted (marker e.g. {markers[0]!r})"
        refusals = [r for r in f.frame.loc[f.frame["clean_refusal"], "response"] if len(r.split()) > KEEP_WORDS]
        if f.day == 3 and refusals:  # Day 3 keeps clean refusals readable: the page shows this file's texts
            assert any(form in text for r in refusals for form in encodings(r)), \
                f"{page}: no refusal of {f.path.name} appears in full; is the page built from this run?"



# ---------------------------------------------------------------------------
# In Chromium: what a reader sees, page by page, against the page's own source
# ---------------------------------------------------------------------------

PLOTLY = "application/vnd.plotly.v1+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
REMOVED = {"remove-cell", "remove-output"}


@dataclass
class Expected:
    """What a page must show, counted from the source it was built from."""

    source: Path
    figures: int
    widget_views: int
    tabs: int


def expected_on_page(book_root: Path, html_root: Path, page: Path) -> Expected:
    """Count the plotly outputs, widget views and tab widgets of the notebook (or Markdown page) behind ``page``.

    A code cell whose top level displays ``figures.show(...)`` or ``nb.explorer(...)`` unconditionally must have
    left that output in the executed notebook, so a notebook that lost its figures cannot set the expectation to
    zero (a call under an ``if`` may rightly show nothing).
    """
    stem = book_root / page.relative_to(html_root).with_suffix("")
    sources = [stem.with_suffix(s) for s in (".ipynb", ".md") if stem.with_suffix(s).exists()]
    assert sources, f"{page}: no .ipynb or .md source at {stem}"
    source = sources[0]
    if source.suffix == ".md":
        return Expected(source, source.read_text().count('class="rr-plotly"'), 0, 0)
    nb = nbformat.read(source, as_version=4)
    figures = views = 0
    for cell in nb.cells:
        if cell.cell_type != "code" or REMOVED & set(cell.get("metadata", {}).get("tags", [])):
            continue
        data = [o.get("data", {}) for o in cell.get("outputs", [])]
        cell_figures = sum(PLOTLY in d for d in data)
        cell_views = sum(WIDGET_VIEW in d for d in data)
        hint = "(a cell displays only its last expression; wrap earlier ones in display())"
        assert cell_figures >= displays(cell.source, "figures.show"), \
            f"{source}: cell {cell.get('id')} calls figures.show {displays(cell.source, 'figures.show')} time(s) " \
            f"at top level but has {cell_figures} plotly output(s) {hint}"
        assert cell_views >= displays(cell.source, "nb.explorer"), \
            f"{source}: cell {cell.get('id')} calls nb.explorer at top level but has no widget view {hint}"
        figures += cell_figures
        views += cell_views
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    tabs = sum(model.get("model_name") == "TabModel" for model in state.values())
    return Expected(source, figures, views, tabs)


def displays(source: str, call: str) -> int:
    """How many of a cell's top-level expression statements (not ones under ``if``/``for``, and not a branch of a
    conditional expression, which may not run) call ``call``."""
    import ast

    def calls(node: ast.AST) -> bool:
        if isinstance(node, ast.IfExp):
            return False
        if isinstance(node, ast.Call) and ast.unparse(node.func) == call:
            return True
        return any(calls(child) for child in ast.iter_child_nodes(node))

    try:
        tree = ast.parse(source)
    except SyntaxError:  # a cell with magics: nothing to require
        return 0
    return sum(calls(statement) for statement in tree.body if isinstance(statement, ast.Expr))


def png_facts(path: Path) -> tuple[int, int, int]:
    """Width, height and the number of distinct byte values in the decompressed image data of a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    position, idat = 8, b""
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        if kind == b"IDAT":
            idat += data[position + 8:position + 8 + length]
        position += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


def require_chromium() -> None:
    if chromium() is None:
        if os.environ.get("RR_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is required here (RR_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("chromium is not installed")


# Pages also screenshotted (a second Chromium load each): the results page, and one page of each Day kind that
# draws figures or widgets. Every page gets the full DOM check either way.
SCREENSHOT_PAGES = {"book/results.html", "results/runs/organism-m/Day5.html", "results/runs/organism-m/Day7.html",
                    "results/runs/scaling/Day6.html"}


RUN_INDEX_SAMPLE = "book/runs/organism-m.html"  # the run index pages share one template; this one is loaded


def loaded_in_chromium(page: str) -> bool:
    """Every page is loaded in Chromium except the run index pages (``book/runs/<run>.html``, one template
    holding a list of links), of which one stands for all."""
    return not page.startswith("book/runs/") or page == RUN_INDEX_SAMPLE


def check_index_page_statically(book_root: Path, html_root: Path, page: Path) -> None:
    """A run index page not loaded in Chromium: no figure or widget expected, and nothing loaded from the web."""
    expected = expected_on_page(book_root, html_root, page)
    assert (expected.figures, expected.widget_views) == (0, 0), f"{page}: an index page with outputs: load it"
    external = re.findall(r'\ssrc="(https?://[^"]*)"', page.read_text())
    assert not external, f"{page}: loads {external}"


@browser
def test_every_page_renders_offline_in_chromium(book, tmp_path):
    require_chromium()
    shots = tmp_path / "screenshots"  # fresh for this run: a PNG left by an earlier run cannot pass the check
    book_root = book.parents[2]
    wanted, seen = [], {"figures": 0, "views": 0}
    todo = []
    for page in pages(book):
        if not loaded_in_chromium(page.relative_to(book).as_posix()):
            check_index_page_statically(book_root, book, page)
            continue
        shot = None
        if page.relative_to(book).as_posix() in SCREENSHOT_PAGES:
            shot = shots / (page.relative_to(book).as_posix().replace("/", "__") + ".png")
            wanted.append(shot)
        todo.append((page, shot))
    # Two Chromiums at a time (each load is its own process and profile); every page is still checked in full.
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = pool.map(lambda item: open_page(item[0], screenshot=item[1]), todo)
    for (page, _), report in zip(todo, reports):
        expected = expected_on_page(book_root, book, page)
        where = f"{page.relative_to(book)} (from {expected.source.relative_to(book_root)})"
        assert report.external_requests == [], f"{where}: {report.external_requests}"
        figures = report.figures
        assert report.figure_containers == expected.figures, \
            f"{where}: {report.figure_containers} figure divs on the page, {expected.figures} plotly outputs"
        assert len(figures) == expected.figures, \
            f"{where}: plotly drew {len(figures)} of {expected.figures} figures"
        for figure in figures:
            assert figure.drawn, f"{where}: figure {figure.id} has no SVG"
            assert figure.traces, f"{where}: figure {figure.id} has no trace"
            assert not figure.empty_traces(), f"{where}: figure {figure.id}: traces without points: " \
                                              f"{figure.empty_traces()}"
        assert report.widget_views == expected.widget_views, \
            f"{where}: {report.widget_views} widget views on the page, {expected.widget_views} in the notebook"
        assert report.rendered_widget_views == expected.widget_views, \
            f"{where}: the widget manager rendered {report.rendered_widget_views} of {expected.widget_views} views"
        assert report.rendered_tabs == expected.tabs, \
            f"{where}: {report.rendered_tabs} tab widgets rendered, {expected.tabs} in the notebook's widget state"
        seen["figures"] += len(figures)
        seen["views"] += report.rendered_widget_views
    assert seen["figures"] and seen["views"], f"nothing to check: {seen}"
    assert len(wanted) == len(SCREENSHOT_PAGES), f"screenshotted {len(wanted)} of the pages {sorted(SCREENSHOT_PAGES)}"
    for shot in wanted:
        assert shot.exists(), f"{shot.name}: Chromium wrote no screenshot"
        width, height, distinct = png_facts(shot)
        assert (width, height) == (1280, 2400), f"{shot.name}: {width}x{height}"
        assert distinct > 16, f"{shot.name}: a blank image ({distinct} distinct byte values)"


@browser
def test_browser_check_catches_a_cdn_request(tmp_path):
    if chromium() is None:
        pytest.skip("chromium is not installed")
    page = tmp_path / "leak.html"
    page.write_text('<html><body><script src="https://cdn.jsdelivr.net/npm/nothing@1/x.js"></script></body></html>')
    assert open_page(page).external_requests


@browser
def test_browser_check_sees_undrawn_figures_empty_traces_and_unrendered_widgets(book):
    """A known-bad copy of a built page: one empty trace, one figure never drawn, one widget view without its model."""
    require_chromium()
    source = next(p for p in pages(book) if p.name == "Day5.html")
    good = open_page(source)
    text = source.read_text()
    draws = [m.start() for m in re.finditer(re.escape("window.Plotly.newPlot(el,data,layout"), text)]
    views = re.findall(r'<script type="application/vnd.jupyter.widget-view\+json">\{"model_id": "', text)
    assert len(draws) >= 2 and len(views) == 1, (len(draws), len(views))
    broken = text[:draws[1]] + "void(el,data,layout" + text[draws[1] + len("window.Plotly.newPlot(el,data,layout"):]
    broken = broken.replace("var data=[", 'var data=[{"type": "scatter", "name": "empty", "x": [], "y": []}, ', 1)
    broken = broken.replace(views[0], views[0] + "0000", 1)
    copy = source.with_name("known-bad-copy.html")  # beside the page, so its relative URLs still resolve
    copy.write_text(broken)
    try:
        report = open_page(copy)
    finally:
        copy.unlink()
    assert report.figure_containers == good.figure_containers == len(good.figures) == len(draws)
    assert len(report.figures) == len(draws) - 1  # the undrawn figure is not a plotly graph div
    assert report.figures[0].empty_traces() == ["empty", *good.figures[0].empty_traces()]
    assert (good.widget_views, good.rendered_widget_views, good.rendered_tabs) == (1, 1, 1)
    assert (report.widget_views, report.rendered_widget_views, report.rendered_tabs) == (1, 0, 0)
    assert "widget-tab" in report.dom  # the widget CSS is still on the page: a text search would have passed


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
    made = {("organism-m", 3): "attacks_and_defense"}
    experiments = pd.DataFrame([{"experiment": "attacks_and_defense", "command": "./experiments/attacks_and_defense/run.sh",
                                 "needs": "CPU only", "runs in this book": "1 of 145"}])
    page = rrbook.reproducibility_page(rrbook.reproducibility_runs(tmp_path), experiments, made)
    assert page.startswith("# Reproducibility\n") and page.count("\n# ") == 0
    assert f"| organism-m | {DAYS[3].title} | attacks_and_defense | 41.3 | 0dc046c | environment 1 |" in page
    assert (f"| organism-s | {DAYS[3].title} | rr run (no named experiment) | {rrbook.NOT_EXECUTED} | "
            f"{rrbook.NOT_EXECUTED} | {rrbook.NOT_EXECUTED} |") in page
    assert "## Named experiments" in page and "| attacks_and_defense | ./experiments/attacks_and_defense/run.sh |" in page
    assert "1 of 2 runs were not executed on this machine" in page
    assert "| torch | 2.13.0+cpu |" in page and f"Used by organism-m ({DAYS[3].title})." in page
    assert '| model | "organism-m" | "organism-s" |' in page and "| limit | null | null |" in page
    fresh = rrbook.reproducibility_page([run for run in rrbook.reproducibility_runs(tmp_path)
                                         if run["name"] == "organism-s"])
    assert "None of these runs was executed on this machine" in fresh and "## Environments" not in fresh


def test_experiments_are_planned_and_credit_shared_runs_to_the_default_study():
    """Every named experiment plans its runs; a run both the default study and another experiment make is
    credited to the default study (what `make all` runs)."""
    from rrlib import experiments, jobs
    from rrlib.days import parse_days

    for config in sorted((ROOT / "experiments").glob("*/config.yaml")):  # the book's reading = the job plan's
        plan = {(job.name, job.day) for spec in experiments.load(config).runs
                for job in jobs.plan_jobs(spec.models, parse_days(spec.days), spec.params)}
        assert rrbook.experiment_runs(config)[1] == plan, config
    table, made = rrbook.experiments_made(ROOT)
    assert set(table["experiment"]) >= {"organism_scaling", "attacks_and_defense"}
    assert not table["runs in this book"].str.startswith("cannot plan").any()
    assert made.get(("organism-m", 4)) == "organism_scaling"
    assert made.get(("organism-m@full", 4), "attacks_and_defense") == "attacks_and_defense"


def test_the_results_page_links_each_attack_comparison_and_only_those(tmp_path):
    from rrlib.store import write_json

    for name, params in (("scaling", {"models": ["organism-m"]}),
                         ("scaling@abc", {"attacks": ["lora", "full"], "defenses": ["none", "vaccine"]})):
        write_json(results.run_file(name, 6, ".ipynb", tmp_path / "results"),
                   {"cells": [], "metadata": {"rr": {"model": name, "day": 6, "parameters": params}}})
    found = rrbook.attack_comparisons(tmp_path)
    assert found == [{"name": "scaling@abc", "attacks": "lora, full", "defenses": "none, vaccine",
                      "link": "../results/runs/scaling@abc/Day6.ipynb"}]
    page = rrbook.results_page(pd.DataFrame(), None, found)
    assert "## Four attacks and a defense" in page and "[scaling@abc](../results/runs/scaling@abc/Day6.ipynb)" in page


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
