"""The job plan and the local parallel executor: jobs wait for what they read, failures skip their dependents."""

from __future__ import annotations

import json
import os
import time

from rrlib import executors, jobs, results

from rrlib.config import family_members

FAMILY = family_members()


def experiment_plan() -> list[jobs.Job]:
    """The shape of experiments/organism_scaling: Days 3, 4, 5-6 for the family, then Day 7 on the largest."""
    planned = []
    for models, days in ((FAMILY, [3]), (FAMILY, [4]), (FAMILY, [5, 6]), (["organism-l"], [7])):
        planned += jobs.plan_jobs(models, days)
    return planned


def test_dependencies_follow_what_each_day_reads():
    planned = experiment_plan()
    index = {(job.name, job.day): i for i, job in enumerate(planned)}
    needs = jobs.dependencies(planned)

    def deps(name, day):
        return {(planned[j].name, planned[j].day) for j in needs[index[(name, day)]]}

    assert deps("organism-m", 3) == set()
    assert deps("organism-m", 4) == {("organism-m", 3)}
    assert deps("organism-m", 5) == {("organism-m", 3), ("organism-m", 4)}
    assert deps("organism-l", 7) == {("organism-l", 3), ("organism-l", 4)}  # not Day 5: it runs beside it
    assert deps("scaling", 6) == {(m, d) for m in FAMILY for d in (3, 4, 5)}


def test_a_rerun_of_the_same_day_waits_for_the_first():
    planned = jobs.plan_jobs(["organism-m"], [3]) + jobs.plan_jobs(["organism-m"], [3], {"batch_size": 16})
    assert [job.name for job in planned] == ["organism-m", "organism-m"]  # batch size is not an input
    assert jobs.dependencies(planned) == [[], [0]]


def test_a_run_on_other_inputs_has_its_own_name_and_waits_for_what_it_may_read():
    """limit=5 files Days 3 and 5 under organism-m@<hash>; its Day 5 may fall back to the study's Day 4."""
    planned = jobs.plan_jobs(["organism-m"], [3, 4]) + jobs.plan_jobs(["organism-m"], [3, 5], {"limit": 5})
    names = [job.name for job in planned]
    assert names[:2] == ["organism-m", "organism-m"]
    assert names[2] == names[3] and names[2].startswith("organism-m@")
    needs = jobs.dependencies(planned)
    assert needs[2] == []  # its own Day 3 overwrites nothing of the study's and reads nothing
    assert needs[3] == [0, 1, 2]  # Day 5 reads Days 3 and 4: its own, or the study's


def test_a_later_job_does_not_overwrite_what_an_earlier_one_still_reads():
    """A second Day 4 (another recipe) waits for the first Day 5, which reads the first Day 4's attack."""
    planned = jobs.plan_jobs(["organism-m"], [3, 4, 5]) + jobs.plan_jobs(["organism-m"], [4], {"rank": 32})
    planned += jobs.plan_jobs(["organism-m"], [6])
    assert jobs.dependencies(planned)[3] == [0, 1, 2]  # write-after-write on Day 4, write-after-read by Day 5
    assert jobs.dependencies(planned)[4] == [0, 1, 2, 3]  # Day 6 reads Days 3-5, including the second Day 4


def test_each_day_gets_only_the_parameters_its_notebook_declares():
    # An experiment's run gives one parameter set to several Days; papermill would inject the others anyway
    # (and warn "Passed unknown parameter"), so Day 3's page would show an attack grid it never used.
    planned = jobs.plan_jobs(["organism-m"], [3, 4, 5, 6], {"grid_steps": [0, 10], "analyses": False, "limit": 5})
    params = {job.day: job.params for job in planned}
    assert params[3] == {"limit": 5}
    assert params[4] == {"grid_steps": [0, 10]}  # Day 4 attacks with every attack prompt: it has no limit
    assert params[5] == {"analyses": False, "limit": 5}
    assert params[6] == {"models": ["organism-m"]}


def test_the_longest_chain_starts_first():
    planned = experiment_plan()
    priority = jobs.critical_path(planned, jobs.dependencies(planned))
    by_job = {(job.name, job.day): p for job, p in zip(planned, priority)}
    assert by_job[("organism-l", 3)] > max(by_job[(m, 3)] for m in FAMILY[:3])
    assert by_job[("organism-l", 7)] > by_job[("organism-l", 5)]


def fake_run_day(model, day, params, force):
    """Stands in for run_day in the worker processes: logs start and end, fails where told."""
    name = jobs.Job(model, day, params).name
    log = params["log"]
    with open(log, "a") as handle:
        handle.write(json.dumps({"job": [name, day], "event": "start", "t": time.time(), "pid": os.getpid(),
                                 "threads": os.environ.get("OMP_NUM_THREADS")}) + "\n")
    time.sleep(0.3)
    status = "failed" if (name, day) == tuple(params.get("fail", ())) else "ran"
    with open(log, "a") as handle:
        handle.write(json.dumps({"job": [name, day], "event": "end", "t": time.time()}) + "\n")
    return jobs.Outcome(name, day, status, results.run_file(name, day), 0.3, "boom" * (status == "failed"))


def run_plan(tmp_path, fail=(), runs=((FAMILY, [3]), (FAMILY, [4]), (FAMILY, [5, 6]), (["organism-l"], [7])),
             cores=2):
    log = tmp_path / "events.jsonl"
    planned = []
    for models, days in runs:  # the stand-in's own parameters are added after planning (no Day declares them)
        planned += [jobs.Job(job.model, job.day, {**job.params, "log": str(log), "fail": list(fail)})
                    for job in jobs.plan_jobs(models, days)]
    lines = []
    outcomes = executors.run_parallel(planned, False, lines.append, workers=2, cores=cores, run=fake_run_day)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    return planned, outcomes, events, lines


def test_parallel_run_respects_dependencies_and_uses_two_workers(tmp_path):
    planned, outcomes, events, lines = run_plan(tmp_path)
    assert [(o.model, o.day) for o in outcomes] == [(j.name, j.day) for j in planned]
    assert all(o.status == "ran" for o in outcomes) and len(lines) == len(planned)
    start = {tuple(e["job"]): e["t"] for e in events if e["event"] == "start"}
    end = {tuple(e["job"]): e["t"] for e in events if e["event"] == "end"}
    for job, deps in zip(planned, jobs.dependencies(planned)):
        for j in deps:
            dep = (planned[j].name, planned[j].day)
            assert start[(job.name, job.day)] >= end[dep], f"{job.name} Day{job.day} started before {dep} ended"
    assert len({e["pid"] for e in events if e["event"] == "start"}) == 2


def test_threads_are_shared_unless_a_job_has_nothing_beside_it(tmp_path):
    _, _, events, _ = run_plan(tmp_path, runs=((["organism-m"], [3, 4, 5, 7]),), cores=4)
    threads = {tuple(e["job"]): e["threads"] for e in events if e["event"] == "start"}
    assert threads[("organism-m", 3)] == "4" and threads[("organism-m", 4)] == "4"  # a chain: one job at a time
    assert threads[("organism-m", 5)] == "2" and threads[("organism-m", 7)] == "2"  # ready together after Day 4


def test_a_failure_skips_only_the_jobs_that_read_it(tmp_path):
    _, outcomes, events, _ = run_plan(tmp_path, fail=("organism-l", 4))
    by_job = {(o.model, o.day): o for o in outcomes}
    for day in (5, 7):
        assert by_job[("organism-l", day)].error == "skipped: organism-l Day4 failed first"
    assert by_job[("scaling", 6)].status == "failed"  # Day 6 reads every model
    assert all(by_job[(m, d)].status == "ran" for m in FAMILY[:3] for d in (3, 4, 5))
    started = {tuple(e["job"]) for e in events if e["event"] == "start"}
    assert ("organism-l", 7) not in started and ("scaling", 6) not in started


def test_a_failure_skips_the_whole_chain_below_it(tmp_path):
    _, outcomes, events, _ = run_plan(tmp_path, fail=("organism-m", 3), runs=((["organism-m"], [3, 4, 5, 7]),))
    assert [(o.day, o.status) for o in outcomes] == [(3, "failed"), (4, "failed"), (5, "failed"), (7, "failed")]
    assert outcomes[2].error == "skipped: organism-m Day3 failed first"  # not run once Day 4 was skipped
    assert {tuple(e["job"]) for e in events if e["event"] == "start"} == {("organism-m", 3)}
