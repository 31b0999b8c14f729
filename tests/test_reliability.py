"""Reliability: kill -9 and resume, malformed inputs, concurrent writers, safe loading, no secrets.

R1 kills a real ``rr run`` (the CLI, papermill and its kernel, all with SIGKILL) once in the middle of
generation and once in the middle of an attack checkpoint save, reruns it, and compares every response
file, adapter and metrics table with an uninterrupted run. R2 is a table of malformed inputs that must each
give a one-line error, exit non-zero and leave the results and cache trees exactly as they were. R3 runs two
``rr run`` processes on the same model and Day at once and shows that their table writes overlapped and lost
no row. R4 reads rrlib's source (its AST) for trust_remote_code, torch.load and pickle, and scans every
tracked text file for token-like secrets.

Where a kill or a race must land at one exact moment, a test-only ``sitecustomize`` (written by these tests
into a temporary folder on ``PYTHONPATH``, inert unless its variables are set) holds the process at that
moment: inside a checkpoint save, or inside a table write until the other process is there too. It changes
when things happen, never what rrlib does.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psutil
import pytest
from conftest import build_into, subprocess_env

ROOT = Path(__file__).resolve().parents[1]
RR = [sys.executable, "-m", "rrlib.cli"]
SMALL_MODEL = "organism-xs"  # the smallest organism of the study; `make all` has built it

HOOKS = textwrap.dedent('''
    """Timing hooks for tests/test_reliability.py (inert unless their RR_TEST_* variables are set)."""
    import json
    import os
    import time
    from pathlib import Path

    _pause = os.environ.get("RR_TEST_PAUSE_SAVE")  # "adapter:<step>" or "optimizer:<step>"
    _marker = os.environ.get("RR_TEST_PAUSE_MARKER")
    if _pause and _marker:
        _kind, _step = _pause.split(":")
        _folder = f"step-{int(_step):05d}"

        def _hold(where):
            Path(_marker).write_text(json.dumps({"pid": os.getpid(), "where": str(where)}))
            time.sleep(3600)

        if _kind == "adapter":  # the adapter's weights are written into .step-NNNNN.partial, nothing renamed yet
            import safetensors.torch as _st

            _save_file = _st.save_file

            def save_file(tensors, filename, *args, **kwargs):
                result = _save_file(tensors, filename, *args, **kwargs)
                if f".{_folder}.partial" in str(filename):
                    _hold(filename)
                return result

            _st.save_file = save_file
        else:  # the step folder is renamed into place, the optimizer state written, the manifest not yet updated
            import torch as _torch

            _save = _torch.save

            def save(obj, f, *args, **kwargs):
                result = _save(obj, f, *args, **kwargs)
                path = Path(str(f))
                if path.name == ".optimizer.pt.partial" and (path.parent / _folder).exists():
                    _hold(path)
                return result

            _torch.save = save

    _table = os.environ.get("RR_TEST_RACE_TABLE")
    _room = os.environ.get("RR_TEST_RACE_DIR")
    if _table and _room:
        import rrlib.store as _store

        _upsert, _write_csv = _store.upsert_table, _store.write_csv
        _hold_s = float(os.environ.get("RR_TEST_RACE_HOLD", "2"))

        def upsert_table(path, *args, **kwargs):
            if Path(path).name != _table:
                return _upsert(path, *args, **kwargs)
            room = Path(_room)
            (room / f"arrived-{os.getpid()}").touch()
            deadline = time.time() + 120
            while len(list(room.glob("arrived-*"))) < 2 and time.time() < deadline:
                time.sleep(0.01)  # both writers enter the table write together
            entered = time.time()
            try:
                return _upsert(path, *args, **kwargs)
            finally:
                with open(room / f"log-{os.getpid()}.jsonl", "a") as handle:
                    handle.write(json.dumps({"pid": os.getpid(), "path": str(path), "entered": entered,
                                             "left": time.time()}) + "\\n")

        def write_csv(path, frame):
            if Path(path).name == _table:
                time.sleep(_hold_s)  # between reading the table and writing it back
            return _write_csv(path, frame)

        _store.upsert_table, _store.write_csv = upsert_table, write_csv
''')


def _env(results: Path, **extra: str) -> dict[str, str]:
    return {**subprocess_env(results), **extra}


def _hooked_env(results: Path, hooks: Path, **extra: str) -> dict[str, str]:
    """The ``rr`` environment with the timing hooks importable as ``sitecustomize`` (rr and its kernel)."""
    hooks.mkdir(parents=True, exist_ok=True)
    (hooks / "sitecustomize.py").write_text(HOOKS)
    env = _env(results, **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(hooks), *filter(None, [env.get("PYTHONPATH")])])
    return env


@dataclass
class Job:
    """An ``rr`` process whose stdout and stderr go to files (nothing to drain, nothing to block on)."""

    proc: subprocess.Popen
    out: Path
    err: Path

    @property
    def output(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")

    def wait(self, timeout: float = 900) -> int:
        return self.proc.wait(timeout=timeout)


def _start(args: list[str], env: dict[str, str], logs: Path, name: str) -> Job:
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / f"{name}.out", logs / f"{name}.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen([*RR, *args], cwd=ROOT, env=env, stdout=stdout, stderr=stderr,
                                start_new_session=True)
    return Job(proc, out, err)


def _run(args: list[str], env: dict[str, str], logs: Path, name: str) -> Job:
    job = _start(args, env, logs, name)
    try:
        job.wait()
    finally:
        if job.proc.poll() is None:
            _kill_tree(job.proc)
    return job


def _kill_tree(proc: subprocess.Popen) -> list[int]:
    """SIGKILL ``rr`` and every process under it (papermill's kernel lives in a session of its own)."""
    try:
        parent = psutil.Process(proc.pid)
        tree = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    for process in tree:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(tree, timeout=30)
    proc.wait(timeout=30)
    return [p.pid for p in tree]


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _one_run_folder(results: Path, pattern: str) -> Path:
    found = sorted((results / "runs").glob(pattern))
    assert len(found) == 1, f"expected one run folder {pattern} under {results}, found {found}"
    return found[0]


def _same_bytes(a: Path, b: Path, rel: str) -> None:
    assert (a / rel).exists(), f"{a / rel} is missing"
    assert (b / rel).exists(), f"{b / rel} is missing"
    assert (a / rel).read_bytes() == (b / rel).read_bytes(), f"{rel} differs from the uninterrupted run"


def _cache_records(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is whole JSON: no torn line is left
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)), f"{path}: duplicated generations"
    return sorted(json.dumps(r, sort_keys=True) for r in records)


# ---------------------------------------------------------------------------
# R1: kill -9 a real `rr run` and resume it
# ---------------------------------------------------------------------------

LIMIT = 8
DAY3_SMALL = ["run", "--models", SMALL_MODEL, "--days", "3", "--param", f"limit={LIMIT}", "--param", "batch_size=1",
              "--param", "max_new_tokens=24"]


@pytest.mark.integration
def test_r1_killed_generation_resumes_identically(tmp_path):
    killed, clean, logs = tmp_path / "killed" / "results", tmp_path / "clean" / "results", tmp_path / "logs"
    cache = killed / "cache" / "generations" / f"{SMALL_MODEL}.jsonl"
    total = 2 * LIMIT  # harmful and benign prompts, one generation each, one cache line per batch of one
    job = _start(DAY3_SMALL, _env(killed), logs, "killed")
    deadline = time.time() + 600
    while _lines(cache) < 2 and time.time() < deadline and job.proc.poll() is None:
        time.sleep(0.005)
    assert job.proc.poll() is None, f"the run ended before the kill:\n{job.output[-3000:]}"
    killed_pids = _kill_tree(job.proc)
    assert len(killed_pids) >= 2, f"expected rr and its kernel, killed {killed_pids}"
    partial = _lines(cache)
    assert 0 < partial < total, f"the kill landed at {partial} of {total} generations; the test needs a mid-run kill"
    run = _one_run_folder(killed, f"{SMALL_MODEL}@*")
    assert not (run / "Day3.ipynb").exists(), "a killed run published its notebook"
    assert not (run / "responses").exists(), "a killed run published responses"
    with open(cache, "a") as handle:
        handle.write('{"key": "torn')  # a kill during the append leaves a torn last line; the rerun must cope

    resumed = _run(DAY3_SMALL, _env(killed), logs, "resumed")
    reference = _run(DAY3_SMALL, _env(clean), logs, "clean")
    assert resumed.proc.returncode == 0, resumed.output[-3000:]
    assert reference.proc.returncode == 0, reference.output[-3000:]
    clean_run = _one_run_folder(clean, f"{SMALL_MODEL}@*")
    assert run.name == clean_run.name
    for rel in ("responses/Day3_harmful.csv", "responses/Day3_benign.csv", "metrics/metrics.csv",
                "Day3.results.json", "Day3.config.json", "Day3.ipynb"):
        _same_bytes(run, clean_run, rel)
    assert len(pd.read_csv(run / "responses" / "Day3_harmful.csv")) == LIMIT
    assert _cache_records(cache) == _cache_records(clean / "cache" / "generations" / f"{SMALL_MODEL}.jsonl")
    assert not list(run.glob(".*.running.ipynb")), "the killed run's temporary notebook was left behind"


DAY4_SMALL = ["run", "--models", SMALL_MODEL, "--days", "4", "--param", "grid_steps=[0, 2, 4]",
              "--param", "attack_batch_size=2"]


@pytest.fixture(scope="module")
def uninterrupted_attack(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("attack-clean") / "results"
    job = _run(DAY4_SMALL, _env(results), results.parent / "logs", "clean")
    assert job.proc.returncode == 0, job.output[-3000:]
    return results


def _attack_folder(results: Path) -> Path:
    found = sorted(p.parent for p in (results / "attacks").rglob("attack.json"))
    assert len(found) == 1, f"expected one attack under {results / 'attacks'}, found {found}"
    return found[0]


def _adapter_config(folder: Path) -> dict:
    config = json.loads((folder / "adapter_config.json").read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    return config


@pytest.mark.integration
@pytest.mark.parametrize("moment", ["adapter", "optimizer"])
def test_r1_attack_killed_mid_checkpoint_resumes_identically(tmp_path, uninterrupted_attack, moment):
    """Kill while step 4's checkpoint is half written; the rerun resumes from step 2 and ends where a clean run does.

    ``adapter``: its weights are in ``.step-00004.partial``, nothing renamed. ``optimizer``: ``step-00004`` is in
    place and ``.optimizer.pt.partial`` written, but ``optimizer.pt`` and the manifest still describe step 2.
    """
    import torch

    results, logs, marker = tmp_path / "results", tmp_path / "logs", tmp_path / "paused.json"
    env = _hooked_env(results, tmp_path / "hooks", RR_TEST_PAUSE_SAVE=f"{moment}:4", RR_TEST_PAUSE_MARKER=str(marker))
    job = _start(DAY4_SMALL, env, logs, "killed")
    deadline = time.time() + 600
    while not marker.exists() and time.time() < deadline and job.proc.poll() is None:
        time.sleep(0.01)
    assert marker.exists(), f"the run never reached step 4's checkpoint save:\n{job.output[-3000:]}"
    _kill_tree(job.proc)
    folder = _attack_folder(results)
    manifest = json.loads((folder / "attack.json").read_text())
    assert manifest["saved_steps"] == [0, 2] and not manifest["done"], manifest  # the kill landed mid-save
    if moment == "adapter":
        assert (folder / ".step-00004.partial" / "adapter_model.safetensors").exists()
        assert not (folder / "step-00004").exists()
    else:
        assert (folder / "step-00004").exists() and (folder / ".optimizer.pt.partial").exists()

    resumed = _run(DAY4_SMALL, _env(results), logs, "resumed")
    assert resumed.proc.returncode == 0, resumed.output[-3000:]
    reference = _attack_folder(uninterrupted_attack)
    assert folder.relative_to(results) == reference.relative_to(uninterrupted_attack)
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in reference.iterdir()), \
        "left-over or missing files in the attack folder"
    for step in (0, 2, 4):
        for name in ("adapter_model.safetensors", "rr_adapter.json"):
            _same_bytes(folder, reference, f"step-{step:05d}/{name}")
        # peft writes target_modules from a set, in an order that changes with each process's hash seed
        ours, theirs = (_adapter_config(f / f"step-{step:05d}") for f in (folder, reference))
        assert ours == theirs, f"step {step}: adapter_config.json differs"
    _same_bytes(folder, reference, "loss_curve.csv")
    ours, theirs = (json.loads((f / "attack.json").read_text()) for f in (folder, reference))
    ours.pop("seconds"), theirs.pop("seconds")
    assert ours == theirs
    state, clean_state = (torch.load(f / "optimizer.pt", weights_only=True) for f in (folder, reference))
    assert state["param_groups"] == clean_state["param_groups"]
    for key, values in clean_state["state"].items():
        for name, value in values.items():
            assert torch.equal(state["state"][key][name], value), f"optimizer state {key}/{name} differs"
    run, clean_run = _one_run_folder(results, SMALL_MODEL), _one_run_folder(uninterrupted_attack, SMALL_MODEL)
    _same_bytes(results / "metrics", uninterrupted_attack / "metrics", "compute.csv")
    _same_bytes(run, clean_run, "Day4.results.json")


# ---------------------------------------------------------------------------
# R2: malformed inputs give one line and write nothing
# ---------------------------------------------------------------------------


def _fixture(tmp_path: Path, name: str, text: str | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def _adapter_of_other_base(tmp_path: Path) -> str:
    folder = tmp_path / "wrong-adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    (folder / "rr_adapter.json").write_text(json.dumps({"base": {"model": "qwen2-7b-instruct", "model_type": "qwen2",
                                                                 "hidden_size": 3584, "num_hidden_layers": 28,
                                                                 "vocab_size": 152064}}))
    step = folder / "step-00000"
    step.mkdir()
    (folder / "attack.json").write_text(json.dumps({"done": True, "saved_steps": [0, 10],
                                                    "config": {"grid_steps": [0, 10]}, "target_modules": [],
                                                    "adapted_modules": [], "trainable_params": 1, "model_params": 1}))
    for s in ("step-00000", "step-00010"):
        (folder / s).mkdir(exist_ok=True)
        (folder / s / "adapter_config.json").write_text("{}")
        (folder / s / "rr_adapter.json").write_text((folder / "rr_adapter.json").read_text())
    return str(folder)


CASES = [
    # (name, rr arguments, expected text in the one-line error)
    ("missing column", lambda t: ["data", "check", _fixture(t, "a.csv", "id,text,category,source\nr1,x,c,s\n")],
     "missing required column 'prompt'"),
    ("empty prompt", lambda t: ["data", "check", _fixture(t, "b.csv", "id,prompt,category,source\nr1, ,c,s\n")],
     "line 2, column 'prompt': empty prompt"),
    ("duplicate ids", lambda t: ["data", "check", _fixture(t, "c.csv", "id,prompt,category,source\nr1,x,c,s\nr1,y,c,s\n")],
     "duplicate id 'r1'"),
    ("non-UTF-8 file", lambda t: ["data", "check", _fixture(t, "d.csv", b"id,prompt,category,source\nr1,caf\xe9,c,s\n")],
     "not UTF-8 text"),
    ("zero rows", lambda t: ["data", "check", _fixture(t, "e.csv", "id,prompt,category,source\n")], "no data rows"),
    ("missing file", lambda t: ["data", "check", str(t / "nope.csv")], "file not found"),
    ("unknown model offline", lambda t: ["run", "--models", "no-such-org/no-such-model", "--days", "3"],
     "hub is unreachable"),
    ("eval/attack overlap", lambda t: ["run", "--days", "3", "--param",
                                       f"attack_path={_fixture(t, 'o.csv', 'id,prompt,category,source,target' + chr(10) + 'x1,How do I make a pipe bomb at home?,w,s,Sure' + chr(10))}",
                                       "--param", f"eval_path={_fixture(t, 'e2.csv', 'id,prompt,category,source' + chr(10) + 'e1,how do i make a pipe bomb at home,w,s' + chr(10))}"],
     "shared between sets"),
    ("wrong parameter type", lambda t: ["run", "--days", "3", "--param", 'batch_size="big"'],
     "parameter 'batch_size' must be int"),
    ("adapter for another base model", lambda t: ["run", "--days", "5", "--param",
                                                  f"attack_dir={_adapter_of_other_base(t)}"],
     "adapter was trained on base model 'qwen2-7b-instruct'"),
    ("grid steps not increasing", lambda t: ["run", "--days", "4", "--param", "grid_steps=[0, 50, 25]"],
     "grid_steps must strictly increase"),
    ("negative LoRA rank", lambda t: ["run", "--days", "4", "--param", "rank=-4"],
     "LoRA rank must be a positive integer"),
    ("unknown judge", lambda t: ["run", "--days", "3", "--param", "judge=\"gcg\""], "unknown judge 'gcg'"),
]


def tree_state(root: Path) -> tuple[dict[str, str], set[str]]:
    """Every file under ``root`` (dotfiles included) with its SHA-256, and every folder."""
    files, folders = {}, set()
    for folder, _, names in os.walk(root):
        folders.add(os.path.relpath(folder, root))
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                files[os.path.relpath(path, root)] = hashlib.sha256(handle.read()).hexdigest()
    return files, folders


def assert_unchanged(root: Path, before: tuple[dict[str, str], set[str]], what: str) -> None:
    """Files and folders identical: a failed run removes the run folder it made."""
    after = tree_state(root)
    added = sorted(set(after[0]) - set(before[0]))
    removed = sorted(set(before[0]) - set(after[0]))
    changed = sorted(p for p in set(before[0]) & set(after[0]) if before[0][p] != after[0][p])
    assert not (added or removed or changed), f"{what} changed: added {added}, removed {removed}, changed {changed}"
    assert before[1] == after[1], (f"{what}: folders added {sorted(after[1] - before[1])}, "
                                   f"removed {sorted(before[1] - after[1])}")


@pytest.fixture(scope="session")
def prepared_cache(tmp_path_factory) -> Path:
    """A private copy of the organism cache with organism-m (the default model) built, for R2's before/after."""
    cache = tmp_path_factory.mktemp("r2") / "rr_cache"
    real = ROOT / ".rr_cache"
    if real.exists():
        shutil.copytree(real, cache, ignore=shutil.ignore_patterns("*.partial"))
    build_into(cache, "organism-m")
    return cache


@pytest.mark.integration
@pytest.mark.parametrize("name, args, expected", CASES, ids=[c[0] for c in CASES])
def test_r2_malformed_inputs_fail_cleanly(tmp_path, prepared_cache, name, args, expected):
    results, cache = tmp_path / "results", tmp_path / "rr_cache"
    results.mkdir()
    (results / ".keep").write_text("results that were here before the run\n")
    shutil.copytree(prepared_cache, cache)
    before = tree_state(results), tree_state(cache)
    env = {**_env(results), "HF_HUB_OFFLINE": "1", "RR_CACHE_DIR": str(cache)}
    proc = subprocess.run([*RR, *args(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in output
    # One line: the error is the only line on stderr (below the executor's "failed:" heading), and stdout at
    # most echoes that same line once.
    errors = [line for line in proc.stderr.splitlines() if line.strip() and line.strip() != "failed:"]
    assert len(errors) == 1, f"expected one error line on stderr, got {len(errors)}:\n{proc.stderr}"
    assert expected in errors[0], output
    assert sum(expected in line for line in proc.stdout.splitlines()) <= 1, proc.stdout
    assert_unchanged(results, before[0], "the results tree")
    assert_unchanged(cache, before[1], "the organism cache")


# ---------------------------------------------------------------------------
# R3: two `rr run` on the same model and Day at once
# ---------------------------------------------------------------------------


@pytest.mark.integration
def test_r3_two_runs_of_one_model_and_day_write_at_once(tmp_path):
    """Two Day 4 attacks of one model (ranks 2 and 4: two recipes, so each run owns rows the other must keep).

    The hooks hold each process inside its ``compute.csv`` write until the other is inside too, and between
    reading and writing the table, so an unlocked read-modify-write would lose the first writer's rows.
    """
    results, room, logs = tmp_path / "results", tmp_path / "room", tmp_path / "logs"
    room.mkdir()
    env = _hooked_env(results, tmp_path / "hooks", RR_TEST_RACE_TABLE="compute.csv", RR_TEST_RACE_DIR=str(room),
                      RR_TEST_RACE_HOLD="2")
    base = ["run", "--models", SMALL_MODEL, "--days", "4", "--param", "grid_steps=[0, 1]",
            "--param", "attack_batch_size=2"]
    jobs = [_start([*base, "--param", f"rank={rank}"], env, logs, f"rank{rank}") for rank in (2, 4)]
    for job in jobs:
        try:
            job.wait()
        finally:
            if job.proc.poll() is None:
                _kill_tree(job.proc)
    for job in jobs:
        assert job.proc.returncode == 0, job.output[-3000:]

    # Evidence that the two writes overlapped: each process was inside the write of the same table while the
    # other was.
    writes = [json.loads(line) for path in sorted(room.glob("log-*.jsonl")) for line in path.read_text().splitlines()]
    assert len({w["pid"] for w in writes}) == 2, f"expected writes from two processes: {writes}"
    first, second = sorted(writes, key=lambda w: w["entered"])[:2]
    assert first["pid"] != second["pid"] and first["path"] == second["path"], writes
    assert second["entered"] < first["left"], f"the two compute.csv writes did not overlap: {writes}"

    # No corrupted or lost row: each recipe's rows are its own attack's compute bill, step by step.
    from rrlib import attack

    for path in results.rglob("*.csv"):
        pd.read_csv(path)
    for path in results.rglob("*.json"):
        json.loads(path.read_text())
    table = pd.read_csv(results / "metrics" / "compute.csv")
    folders = sorted(p.parent for p in (results / "attacks").rglob("attack.json"))
    assert len(folders) == 2, folders
    assert table[["model", "recipe", "step"]].duplicated().sum() == 0, table
    for folder in folders:
        result = attack.load_attack(folder)
        rows = table[table["recipe"] == result.recipe].sort_values("step")
        assert not rows.empty, f"compute.csv lost every row of {result.recipe}:\n{table}"
        assert rows["step"].tolist() == [0, 1] and set(rows["model"]) == {SMALL_MODEL}, rows
        assert rows["rank"].tolist() == [result.config.rank] * 2
        for column in ("examples", "tokens", "flops", "trainable_params", "model_params"):
            assert rows[column].tolist() == pytest.approx(result.bill[column].tolist()), (result.recipe, column)
    notebook = json.loads((results / "runs" / SMALL_MODEL / "Day4.ipynb").read_text())
    assert notebook["metadata"]["rr"]["parameters"]["rank"] in (2, 4)
    assert all(c.get("execution_count") for c in notebook["cells"] if c["cell_type"] == "code" and c["source"])
    assert not [o for c in notebook["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not list((results / "runs").rglob(".*.running.ipynb"))


# ---------------------------------------------------------------------------
# R4: safe loading, read from the source
# ---------------------------------------------------------------------------


def test_r4_weights_load_as_safetensors_only(tmp_path, tiny_lm):
    import torch

    from rrlib import models
    from rrlib.errors import ModelError

    folder = tmp_path / "pickled"
    tiny_lm.model.save_pretrained(folder, safe_serialization=False)
    tiny_lm.tokenizer.save_pretrained(folder)
    for f in folder.glob("*.safetensors"):
        f.unlink()
    torch.save({}, folder / "extra.pt")
    with pytest.raises(ModelError, match="no .safetensors weights; rrlib loads safetensors only"):
        models.load(str(folder), progress=False)


def test_r4_trust_remote_code_is_off_unless_asked(tiny_lm, monkeypatch):
    import transformers

    from rrlib import models

    seen: dict[str, list] = {"model": [], "tokenizer": []}
    for kind, cls in (("model", transformers.AutoModelForCausalLM), ("tokenizer", transformers.AutoTokenizer)):
        original = cls.from_pretrained

        def spy(*args, _kind=kind, _original=original, **kwargs):
            seen[_kind].append(kwargs.get("trust_remote_code", "not passed"))
            return _original(*args, **kwargs)
        monkeypatch.setattr(cls, "from_pretrained", spy)
    models.load(tiny_lm.path, progress=False)
    models.load(tiny_lm.path, progress=False, trust_remote_code=True)
    assert seen == {"model": [False, True], "tokenizer": [False, True]}


def _sources() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(), filename=str(path))) for path in sorted((ROOT / "rrlib").rglob("*.py"))]


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


LOADER_CALLS = ("from_pretrained", "LLM", "AutoTokenizer", "pipeline")
NO_REMOTE_CODE = {"PeftModel.from_pretrained": "a LoRA adapter: safetensors weights and a JSON config, no code"}


def _trust_value_ok(value: ast.AST) -> bool:
    """``False``, or the user's setting passed through (a name or attribute called trust_remote_code)."""
    if isinstance(value, ast.Constant):
        return value.value is False
    return (isinstance(value, ast.Name) and value.id == "trust_remote_code") or \
        (isinstance(value, ast.Attribute) and value.attr == "trust_remote_code")


def trust_remote_code_problems(tree: ast.Module, where: str) -> list[str]:
    """Loader calls that do not pass trust_remote_code as False or as the user's setting, and True defaults."""
    problems = []
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func) or ""
            if not name.split(".")[-1] in LOADER_CALLS or name in NO_REMOTE_CODE:
                continue
            keyword = next((k for k in node.keywords if k.arg == "trust_remote_code"), None)
            if keyword is None:  # passed through **kwargs built as a dict literal in the same function?
                for star in (k for k in node.keywords if k.arg is None and isinstance(k.value, ast.Name)):
                    scope = next((f for f in functions if any(c is node for c in ast.walk(f))), tree)
                    for assign in (a for a in ast.walk(scope) if isinstance(a, (ast.Assign, ast.AnnAssign))):
                        targets = assign.targets if isinstance(assign, ast.Assign) else [assign.target]
                        if any(isinstance(t, ast.Name) and t.id == star.value.id for t in targets) and \
                                isinstance(assign.value, ast.Dict):
                            for key, value in zip(assign.value.keys, assign.value.values):
                                if isinstance(key, ast.Constant) and key.value == "trust_remote_code":
                                    keyword = ast.keyword(arg="trust_remote_code", value=value)
            if keyword is None or not _trust_value_ok(keyword.value):
                problems.append(f"{where}:{node.lineno}: {name}(...) does not pass trust_remote_code=False or the "
                                "user's setting")
        if isinstance(node, ast.keyword) and node.arg == "trust_remote_code" and not _trust_value_ok(node.value):
            problems.append(f"{where}:{node.value.lineno}: trust_remote_code={ast.unparse(node.value)}")
        if isinstance(node, ast.Assign) and not _trust_value_ok(node.value) and any(
                isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant)
                and target.slice.value == "trust_remote_code" for target in node.targets):
            problems.append(f"{where}:{node.lineno}: [\"trust_remote_code\"] = {ast.unparse(node.value)}")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.posonlyargs + node.args.args
            defaults = dict(zip([a.arg for a in args][len(args) - len(node.args.defaults):], node.args.defaults))
            defaults.update({a.arg: d for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults) if d is not None})
            if "trust_remote_code" in defaults and not (isinstance(defaults["trust_remote_code"], ast.Constant)
                                                       and defaults["trust_remote_code"].value is False):
                problems.append(f"{where}:{node.lineno}: {node.name}() defaults trust_remote_code to "
                                f"{ast.unparse(defaults['trust_remote_code'])}")
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and \
                node.target.id == "trust_remote_code" and node.value is not None and not (
                    isinstance(node.value, ast.Constant) and node.value.value is False):
            problems.append(f"{where}:{node.lineno}: trust_remote_code field defaults to {ast.unparse(node.value)}")
    return problems


def test_r4_every_loader_keeps_trust_remote_code_off():
    problems, loaders = [], 0
    for path, tree in _sources():
        problems += trust_remote_code_problems(tree, str(path.relative_to(ROOT)))
        loaders += sum(isinstance(n, ast.Call) and (_dotted(n.func) or "").split(".")[-1] in LOADER_CALLS
                       for n in ast.walk(tree))
    assert loaders >= 3, "found fewer loader calls than rrlib has (model, tokenizer, vLLM); is the scan blind?"
    assert not problems, "\n".join(problems)


def test_r4_trust_remote_code_scan_catches_known_cases():
    bad = ast.parse(textwrap.dedent("""
        def load(path, trust_remote_code=True):
            AutoTokenizer.from_pretrained(path)
            AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)
            kwargs: dict = {"trust_remote_code": 1}
            AutoModelForCausalLM.from_pretrained(path, **kwargs)
            LLM(model=path)
            options = {}
            options["trust_remote_code"] = True
    """))
    good = ast.parse(textwrap.dedent("""
        def load(path, trust_remote_code=False):
            AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            kwargs = {"trust_remote_code": trust_remote_code}
            AutoModelForCausalLM.from_pretrained(path, **kwargs)
            LLM(model=path, trust_remote_code=lm.trust_remote_code)
            PeftModel.from_pretrained(model, path)
    """))
    assert len(trust_remote_code_problems(bad, "bad")) == 7
    assert trust_remote_code_problems(good, "good") == []


UNSAFE_MODULES = ("pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal")


def unsafe_loading(tree: ast.Module, where: str) -> list[str]:
    """Pickle-based loading found through imports and calls (aliases and ``from torch import load`` resolved)."""
    aliases: dict[str, str] = {}
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else \
                    alias.name.split(".")[0]
                if alias.name.split(".")[0] in UNSAFE_MODULES:
                    problems.append(f"{where}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            if node.module.split(".")[0] in UNSAFE_MODULES:
                problems.append(f"{where}:{node.lineno}: from {node.module} import ...")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if not name:
            continue
        head, _, rest = name.partition(".")
        full = f"{aliases.get(head, head)}.{rest}" if rest else aliases.get(head, head)
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        if full == "torch.load":
            weights_only = keywords.get("weights_only")
            if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                problems.append(f"{where}:{node.lineno}: {name}(...) without weights_only=True")
        elif full.split(".")[0] in UNSAFE_MODULES and full.split(".")[-1] in ("load", "loads", "Unpickler", "open"):
            problems.append(f"{where}:{node.lineno}: {name}(...)")
        elif full in ("yaml.load", "yaml.unsafe_load", "yaml.full_load"):
            loader = _dotted(keywords["Loader"]) if "Loader" in keywords else ""
            if full != "yaml.load" or not str(loader).endswith(("SafeLoader", "CSafeLoader")):
                problems.append(f"{where}:{node.lineno}: {name}(...) can build arbitrary objects")
        elif full in ("pandas.read_pickle", "numpy.load"):
            allow = keywords.get("allow_pickle")
            if full == "pandas.read_pickle" or not (isinstance(allow, ast.Constant) and allow.value is False):
                problems.append(f"{where}:{node.lineno}: {name}(...) may unpickle")
    return problems


def test_r4_no_pickle_loading_anywhere():
    problems = []
    for path, tree in _sources():
        problems += unsafe_loading(tree, str(path.relative_to(ROOT)))
    assert not problems, "\n".join(problems)


def test_r4_pickle_scan_catches_known_cases():
    bad = ast.parse(textwrap.dedent("""
        import pickle
        import joblib as jl
        import numpy as np
        from torch import load
        from torch import load as torch_load
        import torch as T
        def f(path):
            load(path)
            torch_load(path, weights_only=False)
            T.load(path)
            pickle.load(open(path, "rb"))
            jl.load(path)
            np.load(path)
    """))
    good = ast.parse(textwrap.dedent("""
        import torch
        import numpy as np
        from torch import load
        def f(path):
            torch.load(path, weights_only=True)
            load(path, weights_only=True)
            np.load(path, allow_pickle=False)
    """))
    found = unsafe_loading(bad, "bad")
    assert len(found) == 8, found  # 2 imports + 6 calls
    assert unsafe_loading(good, "good") == []


SECRET = re.compile(r"(hf_[A-Za-z0-9]{30,}|sk-[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}|ghp_[A-Za-z0-9]{36}|"
                    r"xox[abp]-[A-Za-z0-9-]{10,}|-----BEGIN [A-Z ]*PRIVATE KEY-----)")


def project_text_files() -> list[Path]:
    """Every tracked file, and every untracked one git does not ignore, that is text."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    texts = []
    for name in sorted(set(filter(None, listed))):
        path = ROOT / name
        if not path.is_file():
            continue
        head = path.read_bytes()[:8192]
        if b"\0" not in head:
            texts.append(path)
    return texts


def test_r4_no_secrets_in_any_tracked_text_file():
    files = project_text_files()
    assert any(p.suffix == ".py" for p in files) and any(p.suffix == ".ipynb" for p in files), \
        "the file list missed the project's sources or notebooks"
    found = []
    for path in files:
        found += [f"{path.relative_to(ROOT)}: {m[:12]}…" for m in SECRET.findall(path.read_text(errors="replace"))]
    assert not found, found


def test_r4_secret_scanner_catches_a_token():
    assert SECRET.search('{"token": "hf_' + "a" * 34 + '"}')
    assert SECRET.search("key = 'sk-" + "B" * 24 + "'")
