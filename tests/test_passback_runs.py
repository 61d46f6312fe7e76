"""Passback runs as Dagster operates them: re-executed from failure in the UI, and assets materialized on
their own; over real HTTP against the demo Canvas and the demo OneRoster provider."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from assets import passback
from pipeline.datadir import DataDir
from pipeline.demo.canvas_server import DEMO_CANVAS_TOKEN
from pipeline.demo.oneroster_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from pipeline.passback.config import PassbackSettings
from pipeline.passback.ledger import Ledger
from pipeline.resources.canvas import CanvasClient
from pipeline.resources.oneroster import OneRosterClient
from tests.test_passback_e2e import KILLABLE_RUN, TERM, stack

STACK_ENV = "ROSTERBRIDGE_TEST_PASSBACK_STACK"


def passback_job() -> dg.JobDefinition:
    """The gradebook_passback job on the test stack named in STACK_ENV (reconstructable, as the UI's
    re-execution needs), run in process."""
    args = json.loads(os.environ[STACK_ENV])
    resources = {
        "data_dir": DataDir(root=args["data_dir"]),
        "oneroster": OneRosterClient(base_url=args["roster"], token_url=args["token_url"], client_id=DEMO_CLIENT_ID,
                                     client_secret=DEMO_CLIENT_SECRET, max_retries=0),
        "canvas": CanvasClient(base_url=args["canvas"], access_token=DEMO_CANVAS_TOKEN),
        "passback": PassbackSettings(),
    }
    defs = dg.Definitions.merge(passback.defs, dg.Definitions(resources=resources, executor=dg.in_process_executor))
    return defs.resolve_job_def("gradebook_passback")


def point_at(s, monkeypatch) -> None:
    monkeypatch.setenv(STACK_ENV, json.dumps({
        "data_dir": s.data_dir.root, "roster": s.roster.base_url, "token_url": s.roster.token_url,
        "canvas": s.canvas.base_url,
    }))
    # Dagster keeps the last reconstructed job process-wide (keyed by its code pointer, the same in every
    # test): forget it, or this test would run with the previous test's (stopped) servers.
    from dagster._core.definitions.reconstruct import ReconstructableJob

    ReconstructableJob.get_definition.cache_clear()
    ReconstructableJob.get_repository_definition.cache_clear()


def step_failures(result: dg.ExecuteJobResult) -> list[str]:
    return [e.step_key for e in result.all_events if e.is_step_failure]


def failure_messages(result: dg.ExecuteJobResult) -> list[str]:
    """Each failed step's error with its causes (Dagster wraps the asset's exception)."""
    messages = []
    for event in (e for e in result.all_events if e.is_step_failure):
        error, chain = event.event_specific_data.error, []
        while error is not None:
            chain.append(error.message)
            error = error.cause
        messages.append(" <- ".join(chain))
    return messages


def test_a_run_that_failed_at_the_sis_is_re_executed_from_failure(tmp_path, monkeypatch):
    with stack(tmp_path) as s:
        point_at(s, monkeypatch)
        s.roster.allow_category_writes = False  # the SIS refuses the first writes (403): the send step fails
        job = dg.reconstructable(passback_job)
        with dg.execute_job(job, s.instance, tags={"dagster/partition": TERM}, raise_on_error=False) as first:
            assert not first.success and step_failures(first) == ["gradebook__sis_passback"]
            failed_run = first.run_id
        assert not s.provider_results()

        s.roster.allow_category_writes = True
        options = dg.ReexecutionOptions.from_failure(failed_run, s.instance)
        with dg.execute_job(job, s.instance, reexecution_options=options, tags={"dagster/partition": TERM},
                            raise_on_error=False) as again:
            assert again.success, step_failures(again)
            steps = {e.step_key for e in again.all_events if e.is_step_success}
        assert steps == {"gradebook__sis_passback"}  # the export and objects of the failed run were used
        held = {k: v for k, v in s.provider_results().items() if k[1] is not None}
        assert held == s.canvas_expected()


def test_re_executing_an_old_failed_run_never_sends_its_grades_over_a_newer_runs(tmp_path, monkeypatch):
    with stack(tmp_path) as s:
        point_at(s, monkeypatch)
        job = dg.reconstructable(passback_job)
        s.roster.allow_category_writes = False  # run 1 fails at the SIS, its old export stays in its folder
        with dg.execute_job(job, s.instance, tags={"dagster/partition": TERM}, raise_on_error=False) as first:
            assert step_failures(first) == ["gradebook__sis_passback"]
            failed_run = first.run_id
        s.roster.allow_category_writes = True
        (klass, assignment, student), _ = next(
            (k, v) for k, v in sorted(s.canvas_expected().items()) if v[0] == "fully graded")
        course = s.canvas.db.query("SELECT c.sis_id AS course FROM sections sec JOIN courses c ON c.id = sec.course_id "
                                   "WHERE sec.sis_id = ?", (klass,))[0]["course"]
        s.canvas.set_grade(course, assignment, student, score=1.5)  # the teacher changes the grade
        with dg.execute_job(job, s.instance, tags={"dagster/partition": TERM}, raise_on_error=False) as second:
            assert second.success  # run 2 sends 1.5
        assert s.provider_results()[(klass, assignment, student)] == ("fully graded", 1.5)
        requests_before = s.roster.stats.requests

        options = dg.ReexecutionOptions.from_failure(failed_run, s.instance)
        with dg.execute_job(job, s.instance, reexecution_options=options, tags={"dagster/partition": TERM},
                            raise_on_error=False) as again:
            assert step_failures(again) == ["gradebook__sis_passback"]
            [message] = failure_messages(again)
        assert "a newer passback run of this term already sent newer grades for" in message
        assert "start a new run instead of re-executing this one" in message
        assert s.roster.stats.requests == requests_before  # nothing at all was sent
        assert s.provider_results()[(klass, assignment, student)] == ("fully graded", 1.5)

        # A new run is what to do: it sends nothing, the SIS already holds Canvas's grades.
        with dg.execute_job(job, s.instance, tags={"dagster/partition": TERM}, raise_on_error=False) as third:
            assert third.success
        assert {k: v for k, v in s.provider_results().items() if k[1] is not None} == s.canvas_expected()


def test_two_sends_of_one_term_never_overlap_however_they_were_launched(tmp_path):
    with stack(tmp_path) as s:
        s.roster.latency_seconds = 0.02  # the first run sends for seconds: the second gathers and computes meanwhile
        requests_before = s.roster.stats.requests  # the nightly sync's reads
        # The first: a run in another process, on another Dagster instance (another shell's `dagster job
        # execute`), so no run queue or tag limit can see both runs; only the send lock does.
        argv = json.dumps({"data_dir": s.data_dir.root, "roster": [s.roster.base_url, s.roster.token_url],
                           "canvas": s.canvas.base_url, "term": TERM, "run_config": {}})
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        first = subprocess.Popen([sys.executable, "-c", KILLABLE_RUN, argv], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while s.roster.stats.requests == requests_before:  # the first run is sending
                assert first.poll() is None and time.monotonic() < deadline
                time.sleep(0.01)
            # The second: a whole run in this process, as `dagster asset materialize` runs it. Its Canvas
            # export is newer than the first's, so only the lock stops it from sending at the same time.
            second = s.defs.resolve_job_def("gradebook_passback").execute_in_process(
                partition_key=TERM, instance=s.instance, raise_on_error=False)
            still_sending = first.poll() is None
        finally:
            assert first.wait(timeout=120) == 0
        assert still_sending, "the first run ended before the second tried to send: slow the SIS down"
        assert step_failures(second) == ["gradebook__sis_passback"]
        [message] = failure_messages(second)
        assert f"another passback run of term {TERM} is sending to the SIS now" in message

        # Every object went to the SIS exactly once: one PUT per object the ledger holds, nothing else.
        with Ledger.for_term(s.data_dir.gradebook_dir(TERM)) as ledger:
            held = sum(ledger.counts().values())
        assert s.roster.stats.requests - requests_before == held
        assert {k: v for k, v in s.provider_results().items() if k[1] is not None} == s.canvas_expected()

        # The lock went with the first run's process: a new run goes ahead (and has nothing left to send).
        s.roster.latency_seconds = 0
        after = s.defs.resolve_job_def("gradebook_passback").execute_in_process(partition_key=TERM, instance=s.instance)
        sent = [e.materialization.metadata["sent"].value for e in after.get_asset_materialization_events()
                if e.materialization.asset_key == passback.PASSBACK]
        assert sent == [0]


def test_objects_and_passback_materialized_on_their_own_use_the_latest_upstream(tmp_path):
    with stack(tmp_path) as s:
        job = s.defs.resolve_job_def("gradebook_passback")
        assert job.execute_in_process(partition_key=TERM, instance=s.instance).success
        sent = s.provider_results()
        assert sent

        # Another grading period's course grades: only gradebook/oneroster_objects, with as_of (a new run).
        objects_only = s.defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={passback.OBJECTS})
        result = objects_only.execute_in_process(
            partition_key=TERM, instance=s.instance,
            run_config={"ops": {"gradebook__oneroster_objects": {"config": {"as_of": "2027-01-10"}}}})
        assert result.success
        objects = result.get_asset_materialization_events()[0].materialization.metadata
        assert objects["as_of"].value == "2027-01-10" and objects["results"].value > 0

        # Then only gradebook/sis_passback (another new run): it sends the objects just computed.
        passback_only = s.defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={passback.PASSBACK})
        result = passback_only.execute_in_process(partition_key=TERM, instance=s.instance)
        assert result.success
        metadata = result.get_asset_materialization_events()[0].materialization.metadata
        assert metadata["courses"].value > 0


def test_pruning_keeps_the_folder_of_a_run_still_going(tmp_path):
    from dagster._core.utils import make_new_run_id

    from assets.passback import RUNS_KEPT, prune_old_runs

    runs = tmp_path / "runs"
    with dg.instance_for_test() as instance:
        long_run = dg.DagsterRun(job_name="gradebook_passback", run_id=make_new_run_id(),
                                 status=dg.DagsterRunStatus.STARTED)
        instance.add_run(long_run)
        (runs / long_run.run_id / "export").mkdir(parents=True)
        hour_ago = time.time() - 3600
        os.utime(runs / long_run.run_id, (hour_ago, hour_ago))  # the oldest folder: a long full-term run
        finished = [f"finished-{i:02d}" for i in range(RUNS_KEPT + 2)]
        for i, name in enumerate(finished):
            (runs / name).mkdir()
            os.utime(runs / name, (hour_ago + 60 + i, hour_ago + 60 + i))
        prune_old_runs(runs, RUNS_KEPT - 1, instance)
        left = {p.name for p in runs.iterdir()}
        assert left == {long_run.run_id, *finished[-(RUNS_KEPT - 1):]}
        instance.report_run_failed(long_run)  # it ended: now it is an old folder like the others
        prune_old_runs(runs, RUNS_KEPT - 1, instance)
        assert long_run.run_id not in {p.name for p in runs.iterdir()}
