"""The nbval settings for the goldens: the sanitize rules bite, and the plugin is wired through nbval's hooks.

The rules are read with nbval's own parser and applied the way nbval applies
them (each pair in file order, ``re.sub``), so these examples see exactly what
a golden comparison sees.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output
from nbval.plugin import IPyNbFile, get_sanitize_patterns

import nbval_plugin

CFG = nbval_plugin.SANITIZE_FILE


def rules() -> list[tuple[str, str]]:
    return get_sanitize_patterns(CFG.read_text())


def sanitize(text: str) -> str:
    for regex, replace in rules():
        text = re.sub(regex, replace, text)
    return text


def same(a: str, b: str) -> bool:
    return sanitize(a) == sanitize(b)


def test_every_rule_parses_compiles_and_is_unique():
    text = CFG.read_text()
    regex_lines = [line for line in text.splitlines() if line.startswith("regex:")]
    found = rules()
    assert len(found) == len(regex_lines), "a 'regex:' line is not followed directly by its 'replace:' line"
    regexes = [regex for regex, _ in found]
    assert len(set(regexes)) == len(regexes), "nbval keeps one replacement per regex; a duplicate is lost"
    for regex, replace in found:
        re.sub(regex, replace, "")  # compiles, and the replacement's groups exist


@pytest.mark.parametrize("a, b", [
    ("0.12341", "0.12349"),
    ("RD 0.9156821819 [0.881, 0.906]", "RD 0.9156799999 [0.881, 0.906]"),
    ('"y": [0.13974367442625768, 1.0]', '"y": [0.1397999, 1.0]'),
    ("1.2345678e-05", "1.2349e-05"),
    ("12.3456", "12.3451"),
    ("-0.0004", "0.0003"),
])
def test_numbers_equal_to_3_decimals_compare_equal(a, b):
    assert same(a, b)


@pytest.mark.parametrize("a, b", [
    ("0.1234", "0.1244"),
    ("0.123", "0.124"),
    ("RRR = 0.941 [0.895, 0.968]", "RRR = 0.942 [0.895, 0.968]"),
    ("loss went from 1.130 to 0.646", "loss went from 1.131 to 0.646"),
    ("1.2345e-05", "1.2355e-05"),
    ("-0.002", "0.002"),
])
def test_numbers_that_differ_at_the_3rd_decimal_differ(a, b):
    assert not same(a, b)


def test_text_already_at_3_decimals_is_untouched():
    text = "RRR = 0.941 [0.895, 0.968]; 3.44% of 237,888; about 1.37e+11 FLOPs; lora-r8-lr0.001-s0"
    assert sanitize(text) == text


def test_memory_addresses_are_masked():
    a = "<rrlib.models.LM object at 0x7f3a2b1c4d50>"
    b = "<rrlib.models.LM object at 0x7f00deadbeef>"
    assert "0x7f" not in sanitize(a)
    assert same(a, b)


@pytest.mark.parametrize("a, b", [
    ("Wall time: 14.3 s (0 when loaded)", "Wall time: 0 s (0 when loaded)"),
    ("took 2.51 s", "took 17.03 s"),
    ("saved to /tmp/pytest-of-me/pytest-3/x.csv", "saved to /tmp/abc/x.csv"),
    ("cache/organism-m-51d9c665a704/model", "cache/organism-m-0123456789ab/model"),
    ('<div id="rrfig-6542176a2538" class="rr-plotly">', '<div id="rrfig-f247582c802a" class="rr-plotly">'),
    ('"y": {"bdata": "AAAA4H0T8j8AAABgrBHzPw==", "dtype": "f8"}', '"y": {"bdata": "AAAAIK+k8j8=", "dtype": "f8"}'),
])
def test_volatile_text_is_masked(a, b):
    assert same(a, b)


def test_figure_text_around_the_masks_is_still_compared():
    a = '<div id="rrfig-6542176a2538"></div>"title": {"text": "RRR by step"}, "y": {"bdata": "AAAA", "dtype": "f8"}'
    assert not same(a, a.replace("RRR by step", "CE by step"))
    assert not same(a, a.replace('"f8"', '"i2"'))


def test_collectstart_extends_nbvals_skips_on_notebooks_only():
    notebook = object.__new__(IPyNbFile)  # no pytest node construction; only skip_compare matters here
    notebook.skip_compare = ("metadata", "traceback")
    nbval_plugin.pytest_collectstart(notebook)
    assert notebook.skip_compare == ("metadata", "traceback", *nbval_plugin.SKIP_COMPARE)
    assert {"stderr", "application/vnd.plotly.v1+json"} <= set(notebook.skip_compare)

    class Other:
        skip_compare = ("metadata",)

    other = Other()
    nbval_plugin.pytest_collectstart(other)
    assert other.skip_compare == ("metadata",)


def _golden(path: Path, cells: list[tuple[str, list]]) -> Path:
    """A notebook whose saved outputs are given, not produced by its code."""
    notebook = new_notebook(cells=[new_code_cell(source, execution_count=i + 1, outputs=outputs)
                                   for i, (source, outputs) in enumerate(cells)])
    nbformat.write(notebook, path)
    return path


def test_nbval_run_ignores_volatile_output_and_catches_a_changed_number(tmp_path):
    """End to end through the goldens' own command line (two tiny notebooks, one kernel each)."""
    figure = ("from IPython.display import display\n"
              "display({'application/vnd.plotly.v1+json': {'data': [0.1]},"
              " 'text/html': '<div id=\"rrfig-000000000001\"></div>', 'text/plain': '<figure f>'}, raw=True)")
    volatile = _golden(tmp_path / "volatile.ipynb", [
        ("import sys\nprint('rate 0.94117647')\nprint('chatter', file=sys.stderr)",
         [new_output("stream", name="stdout", text="rate 0.9411999\n"),
          new_output("stream", name="stderr", text="other chatter from another machine\n")]),
        ("object()", [new_output("execute_result", data={"text/plain": "<object at 0x7f0000000000>"},
                                 execution_count=2)]),
        (figure, [new_output("display_data", data={"application/vnd.plotly.v1+json": {"data": [0.2]},
                                                   "text/html": '<div id="rrfig-abcdefabcdef"></div>',
                                                   "text/plain": "<figure f>"})]),
    ])
    changed = _golden(tmp_path / "changed.ipynb", [
        ("print('rate 0.94117647')", [new_output("stream", name="stdout", text="rate 0.9421\n")]),
    ])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent)}
    proc = subprocess.run(nbval_plugin.command([volatile, changed], rootdir=tmp_path, cell_timeout=60) + ["-rfE"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert "1 failed, 3 passed" in out, out[-4000:]
    assert re.search(r"FAILED \S*changed\.ipynb::Cell 0", out), out[-4000:]
