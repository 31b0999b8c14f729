"""The rr command: help everywhere, one-line errors, no tracebacks for user mistakes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from rrlib.cli import build_parser, main

RR = [sys.executable, "-m", "rrlib.cli"]


COMMANDS = ["run", "experiment", "organism", "data", "book", "models"]


def test_the_readme_documents_exactly_these_commands():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert sorted(set(re.findall(r"^\| `rr ([a-z]+)", readme, flags=re.MULTILINE))) == sorted(COMMANDS)


def _subcommands() -> list[str]:
    import argparse

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(sub.choices)


def test_the_parser_has_exactly_the_documented_commands():
    assert sorted(_subcommands()) == sorted(COMMANDS)


@pytest.mark.parametrize("args", [[], *[[c] for c in COMMANDS], ["experiment", "run"], ["data", "check"]])
def test_every_command_has_help(args, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([*args, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: rr {' '.join(args[:1])}".rstrip())
    if not args:  # the top-level help lists every command
        listed = re.search(r"\{([a-z,]+)\}", out)
        assert listed and sorted(listed.group(1).split(",")) == sorted(COMMANDS), out


def _rr(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*RR, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_eval_csv_without_prompt_column_is_one_line_error(tmp_path):
    bad = tmp_path / "eval.csv"
    bad.write_text("id,text,category,source\nr1,hello,weapons,x\n")
    proc = _rr("data", "check", str(bad))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "eval.csv" in lines[0] and "'prompt'" in lines[0] and lines[0].startswith("rr: error:")
    assert "Traceback" not in proc.stderr


def test_unknown_model_and_bad_days_are_user_errors(capsys):
    assert main(["run", "--models", "organism-nope", "--days", "3"]) == 2
    assert "unknown organism 'organism-nope'" in capsys.readouterr().err
    assert main(["run", "--models", "organism-m", "--days", "9"]) == 2
    assert "no notebook for day(s) [9]" in capsys.readouterr().err


def test_a_param_no_day_declares_is_a_user_error(capsys):
    assert main(["run", "--models", "organism-m", "--days", "4", "--param", "limit=5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rr: error: --param limit: not a parameter of Day4")
    assert "valid names: " in err and "grid_steps" in err and "rank" in err
    assert main(["run", "--models", "organism-m", "--days", "3-4", "--param", "limt=5", "--param", "rank=4"]) == 2
    err = capsys.readouterr().err
    assert "--param limt: not a parameter of Day3 (Day3_baseline.ipynb) or Day4 (Day4_attack.ipynb)" in err


def test_data_check_reports_the_shipped_sets():
    proc = _rr("data", "check", "data/raw/attack_train.jsonl", "--kind", "attack", cwd=Path(__file__).parents[1])
    assert proc.returncode == 0 and "format chat" in proc.stdout
