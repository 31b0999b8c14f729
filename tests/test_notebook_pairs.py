"""The Day notebooks: each in sync with its MyST Markdown pair, and each a page in one skeleton.

Every ``notebooks/DayN_*.ipynb`` is paired through jupytext with
``notebooks/DayN_*.md`` (``md:myst``), so a review reads a text diff. The pair
must say the same thing: the same cells, in the same order, with the same
sources and tags (jupytext drops outputs, cell ids and execution counts from
the text file, so those are not compared). ``make pair`` re-syncs a pair; the
newer file wins.

The skeleton: a ``# Day N · Title`` cell with the Question, an Overview,
Prerequisites, the ``parameters`` cell, Imports, the Day's own sections, a
Summary that names the next Day, and References.
"""

from __future__ import annotations

import ast
import difflib
import io
import re
import tokenize

import jupytext
import pytest

from rrlib import days

NUMBERS = sorted(days.DAYS)
SKELETON = ["Prerequisites", "Imports", "Summary", "References"]  # second-level headings, in this order
FIX = "run `make pair` (jupytext --sync; the newer of the two files wins)"


def _cells(path) -> list[tuple[str, str, list[str]]]:
    """(cell type, source, tags) of every cell, as jupytext reads the file."""
    notebook = jupytext.read(path)
    return [(cell.cell_type, cell.source, list(cell.metadata.get("tags", []))) for cell in notebook.cells]


def _headings(notebook) -> list[tuple[int, str]]:
    """(cell index, title) of every second-level heading in markdown cells."""
    found = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "markdown":
            found += [(index, title.strip()) for title in re.findall(r"^## (.+)$", cell.source, re.MULTILINE)]
    return found


def _parameters_index(notebook) -> int:
    tagged = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"expected exactly one cell tagged 'parameters', found {len(tagged)}"
    return tagged[0]


@pytest.fixture(params=NUMBERS, ids=[f"Day{n}" for n in NUMBERS])
def day(request) -> days.Day:
    return days.DAYS[request.param]


def test_every_day_is_paired_with_myst_markdown(day):
    notebook = jupytext.read(day.source)
    assert notebook.metadata.get("jupytext", {}).get("formats") == "ipynb,md:myst", (
        f"notebooks/{day.notebook}: set metadata jupytext.formats to 'ipynb,md:myst', then {FIX}")
    assert day.text_pair.exists(), f"{day.text_pair.name} is missing; {FIX}"
    text = jupytext.read(day.text_pair)
    assert text.metadata["jupytext"]["text_representation"]["format_name"] == "myst"


def test_pair_is_in_sync(day):
    ipynb, md = _cells(day.source), _cells(day.text_pair)
    for index, (left, right) in enumerate(zip(ipynb, md)):
        if left != right:
            diff = "\n".join(difflib.unified_diff(
                [left[0], *left[1].splitlines(), f"tags: {left[2]}"], [right[0], *right[1].splitlines(),
                                                                        f"tags: {right[2]}"],
                day.notebook, day.text_pair.name, lineterm="", n=1))
            pytest.fail(f"notebooks/{day.notebook} and {day.text_pair.name} differ at cell {index}:\n{diff}\n{FIX}")
    assert len(ipynb) == len(md), (f"notebooks/{day.notebook} has {len(ipynb)} cells, {day.text_pair.name} "
                                   f"{len(md)}; {FIX}")


def test_source_notebook_stores_no_outputs(day):
    notebook = jupytext.read(day.source)
    stored = [i for i, cell in enumerate(notebook.cells)
              if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not stored, f"notebooks/{day.notebook}: cells {stored} store outputs; clear them (outputs live in results/)"


def test_title_and_question_match_the_day_record(day):
    first = jupytext.read(day.source).cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(f"# {day.title}\n"), (
        f"notebooks/{day.notebook}: the first cell must start with '# {day.title}' (rrlib.days.DAYS)")
    assert f"**Question.** {day.question}" in first.source, (
        f"notebooks/{day.notebook}: the title cell must ask the question declared in rrlib.days.DAYS")


def test_skeleton_headings_in_order(day):
    notebook = jupytext.read(day.source)
    headings = _headings(notebook)
    titles = [title for _, title in headings]
    for name in SKELETON:
        assert titles.count(name) == 1, f"notebooks/{day.notebook}: needs exactly one '## {name}' heading"
    where = {title: index for index, title in headings}
    overview = [i for i, cell in enumerate(notebook.cells) if "**Overview.**" in cell.source]
    assert overview and overview[0] < where["Prerequisites"], f"notebooks/{day.notebook}: Overview comes first"
    parameters = _parameters_index(notebook)
    assert where["Prerequisites"] < parameters < where["Imports"] < where["Summary"] < where["References"], (
        f"notebooks/{day.notebook}: order must be Prerequisites, the parameters cell, Imports, ..., Summary, "
        "References")
    assert where["References"] == len(notebook.cells) - 1, f"notebooks/{day.notebook}: References is the last cell"
    assert all(cell.cell_type == "markdown" for cell in notebook.cells[where["Summary"]:]), (
        f"notebooks/{day.notebook}: only markdown after the Summary")


def test_prerequisites_state_runs_hardware_and_runtime(day):
    notebook = jupytext.read(day.source)
    index = dict((title, i) for i, title in _headings(notebook))["Prerequisites"]
    text = notebook.cells[index].source
    for label in ("**Earlier runs:**", "**Hardware:**", "**Runtime:**"):
        assert label in text, f"notebooks/{day.notebook}: Prerequisites must state {label}"
    for earlier in day.reads:
        assert f"Day {earlier}" in text or f"Days {earlier}" in text, (
            f"notebooks/{day.notebook}: Prerequisites must name Day {earlier}, which rrlib.days says it reads")


def test_summary_names_the_next_day(day):
    notebook = jupytext.read(day.source)
    index = dict((title, i) for i, title in _headings(notebook))["Summary"]
    text = notebook.cells[index].source
    later = [n for n in NUMBERS if n > day.number]
    if later:
        assert f"**Next: Day {later[0]}**" in text, f"notebooks/{day.notebook}: the Summary must name Day {later[0]}"
    else:
        assert "last Day" in text, f"notebooks/{day.notebook}: the Summary must say this is the last Day"


def test_parameters_are_typed_with_help(day):
    """Every parameter is annotated and helped, so papermill's inspector reads the whole schema."""
    notebook = jupytext.read(day.source)
    source = notebook.cells[_parameters_index(notebook)].source
    assigned = []
    for node in ast.parse(source).body:
        assert isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name), (
            f"notebooks/{day.notebook}: line {node.lineno} of the parameters cell is not `name: type = value`")
        assigned.append(node.target.id)
        annotation = ast.unparse(node.annotation)
        if "[" in annotation:
            assert isinstance(node.annotation, ast.Constant), (
                f"notebooks/{day.notebook}: quote the annotation of {node.target.id!r} (\"{annotation}\"); "
                "it is evaluated when the cell runs")
    # papermill skips a line with a second '=' (in a help comment, say): the schema must hold every name.
    assert list(days.parameters(day.number)) == assigned
    commented = {token.start[0] for token in tokenize.generate_tokens(io.StringIO(source).readline)
                 if token.type == tokenize.COMMENT}
    for node in ast.parse(source).body:
        assert node.lineno in commented, (
            f"notebooks/{day.notebook}: parameter {node.target.id!r} needs its help as a trailing comment")
    assert all(p.help for p in days.parameters(day.number).values())


def test_response_drift_is_named(day):
    markdown = "\n".join(cell.source for cell in jupytext.read(day.source).cells if cell.cell_type == "markdown")
    if re.search(r"\bRD\b", markdown):
        assert "response drift (RD)" in markdown, f"notebooks/{day.notebook}: introduce RD as 'response drift (RD)'"
    assert markdown.count("representation distance") <= 1, (
        f"notebooks/{day.notebook}: 'representation distance' is only the original study's name for RD; say it once")
