"""Grade passback end to end over real HTTP: the nightly sync provisions the demo Canvas from the demo
OneRoster provider, grades are seeded in Canvas, the grade-change sensor ticks, and the
gradebook_passback job writes to the demo provider, which then holds exactly what Canvas shows, even
after a first run whose process was killed half-way."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from assets import passback
from pipeline.demo.source import Selection, ref_id
from pipeline.passback import ids
from pipeline.passback.config import PassbackSettings
from pipeline.passback.ledger import LEDGER_FILE
from pipeline.passback_sensor import grade_change_sensor
from pipeline.sync import run_sync
from tests.test_e2e_sync import NIGHT, assert_no_secret_or_personal_data_left
from tests.test_e2e_sync import Stack as SyncStack
from tests.test_e2e_sync import stack as sync_stack

TERM = "as-2027-fall"


@dataclass
class Stack(SyncStack):
    """The nightly-sync stack whose `defs` are the passback assets with the same resources + `passback`."""

    resources: dict = field(default_factory=dict)

    def tick(self, cursor: str | None) -> dg.SensorResult:
        sensor_resources = {k: self.resources[k] for k in ("canvas", "data_dir", "passback")}
        context = dg.build_sensor_context(instance=self.instance, cursor=cursor, resources=sensor_resources)
        return grade_change_sensor(context)

    def run(self, result: dg.SensorResult) -> list[dg.ExecuteInProcessResult]:
        job = self.defs.resolve_job_def("gradebook_passback")
        runs = [job.execute_in_process(run_config=r.run_config, partition_key=r.partition_key, tags=r.tags,
                                       instance=self.instance) for r in result.run_requests]
        assert runs and all(r.success for r in runs)
        return runs

    def run_killed(self, request: dg.RunRequest, *, after_results: int) -> int:
        """Run the passback job in another process and SIGKILL it once the SIS holds `after_results`
        results; returns how many it holds then."""
        argv = json.dumps({
            "data_dir": self.data_dir.root, "roster": [self.roster.base_url, self.roster.token_url],
            "canvas": self.canvas.base_url, "term": request.partition_key, "run_config": request.run_config,
        })
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        process = subprocess.Popen([sys.executable, "-c", KILLABLE_RUN, argv], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while len(self.provider("results")) < after_results:
            assert process.poll() is None, "the passback run ended before it could be killed"
            assert time.monotonic() < deadline, "the passback run wrote too slowly"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        return len(self.provider("results"))

    def provider(self, entity: str) -> dict[str, dict]:
        return {r["sourcedId"]: r for r in self.roster.store.iter_all(Selection(entity))}

    def provider_results(self) -> dict[tuple[str, int | None, str], tuple[str, float]]:
        """(class, Canvas assignment id or None for a course grade, student) -> (scoreStatus, score)."""
        line_items = self.provider("lineItems")
        out = {}
        for r in self.provider("results").values():
            li = line_items[ref_id(r, "lineItem")]
            assignment = (li.get("metadata") or {}).get("canvasAssignmentId")
            out[(ref_id(li, "class"), assignment, ref_id(r, "student"))] = (r["scoreStatus"], r["score"])
        return out

    def canvas_expected(self) -> dict[tuple[str, int, str], tuple[str, float]]:
        """What the SIS must hold for assignments, straight from the demo Canvas's state."""
        rows = self.canvas.db.query(
            "SELECT sec.sis_id AS class, a.id AS assignment_id, u.sis_id AS student, s.score, s.excused, s.missing, "
            "s.posted_at FROM submissions s JOIN assignments a ON a.id = s.assignment_id "
            "JOIN enrollments e ON e.user_id = s.user_id AND e.course_id = a.course_id "
            "AND e.type = 'StudentEnrollment' AND e.workflow_state = 'active' "
            "JOIN sections sec ON sec.id = e.section_id JOIN users u ON u.id = s.user_id "
            "WHERE a.published = 1 AND a.post_to_sis = 1")
        expected = {}
        for r in rows:
            key = (r["class"], r["assignment_id"], r["student"])
            if r["excused"] and r["posted_at"]:
                expected[key] = ("exempt", 0.0)
            elif r["score"] is not None and r["posted_at"]:
                expected[key] = ("fully graded", r["score"])
            elif r["missing"] and r["score"] is None and not r["excused"]:
                expected[key] = ("not submitted", 0.0)
        return expected

    def hidden_grades(self) -> set[tuple[str, int, str]]:
        rows = self.canvas.db.query(
            "SELECT sec.sis_id AS class, a.id AS assignment_id, u.sis_id AS student FROM submissions s "
            "JOIN assignments a ON a.id = s.assignment_id JOIN enrollments e ON e.user_id = s.user_id "
            "AND e.course_id = a.course_id AND e.type = 'StudentEnrollment' JOIN sections sec ON sec.id = e.section_id "
            "JOIN users u ON u.id = s.user_id WHERE (s.score IS NOT NULL OR s.excused = 1) AND s.posted_at IS NULL")
        return {(r["class"], r["assignment_id"], r["student"]) for r in rows}

    def ledger_accepted_since(self, term: str, since: str) -> list[tuple[str, str]]:
        path = self.data_dir.gradebook_dir(term) / LEDGER_FILE
        with contextlib.closing(sqlite3.connect(path)) as conn:
            return conn.execute("SELECT kind, sourced_id FROM items WHERE accepted_at > ? ORDER BY kind", (since,)).fetchall()


KILLABLE_RUN = """
import json, sys
import dagster as dg
from assets import passback
from pipeline.datadir import DataDir
from pipeline.demo.canvas_server import DEMO_CANVAS_TOKEN
from pipeline.demo.oneroster_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from pipeline.passback.config import PassbackSettings
from pipeline.resources.canvas import CanvasClient
from pipeline.resources.oneroster import OneRosterClient
args = json.loads(sys.argv[1])
resources = {
    "data_dir": DataDir(root=args["data_dir"]),
    "oneroster": OneRosterClient(base_url=args["roster"][0], token_url=args["roster"][1],
                                 client_id=DEMO_CLIENT_ID, client_secret=DEMO_CLIENT_SECRET),
    "canvas": CanvasClient(base_url=args["canvas"], access_token=DEMO_CANVAS_TOKEN),
    "passback": PassbackSettings(),
}
defs = dg.Definitions.merge(passback.defs, dg.Definitions(resources=resources))
with dg.instance_for_test() as instance:
    instance.add_dynamic_partitions("school_term", [args["term"]])
    defs.resolve_job_def("gradebook_passback").execute_in_process(
        run_config=args["run_config"], partition_key=args["term"], instance=instance)
"""


@contextlib.contextmanager
def stack(tmp_path) -> Iterator[Stack]:
    """The nightly-sync test stack (demo provider, demo Canvas, Dagster instance), synced, with seeded
    grades, plus the passback assets."""
    with sync_stack(tmp_path) as base:
        # One term keeps the test short: the sensor only sees courses of imported terms.
        outcome = run_sync(base.defs, base.instance, terms=[TERM], night=NIGHT, say=lambda _: None)
        assert outcome.district_ok and outcome.terms == [TERM] and not outcome.failed_terms
        base.canvas.seed_grades(seed=1)
        resources = {**base.defs.resources, "passback": PassbackSettings(sensor_courses_per_tick=10_000,
                                                                              rejection_retry_hours=0)}
        defs = dg.Definitions.merge(passback.defs, dg.Definitions(resources=resources))
        yield Stack(base.roster, base.canvas, base.data_dir, defs, base.instance, base.log, resources)


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def test_seeded_grades_reach_the_sis_then_only_changes_and_rejections_are_retried(tmp_path):
    with stack(tmp_path) as s:
        start = s.tick(None)
        assert start.run_requests and not start.skip_reason

        # The first passback run's process dies half-way through its writes.
        s.roster.latency_seconds = 0.03  # slow enough to be caught mid-write
        killed = s.run_killed(start.run_requests[0], after_results=100)
        s.roster.latency_seconds = 0
        assert 100 <= killed < len(s.canvas_expected())

        # Nothing is lost: the ledger never marked the courses synced, so the next tick requests them again.
        first = s.tick(start.cursor)
        assert first.run_requests and not first.skip_reason
        s.run(first)

        expected = s.canvas_expected()
        results = s.provider("results").values()
        pairs = [(ref_id(r, "lineItem"), ref_id(r, "student")) for r in results]
        assert len(pairs) == len(set(pairs))  # no duplicate result for any (lineItem, student)
        held = s.provider_results()
        assignments = {k: v for k, v in held.items() if k[1] is not None}
        assert assignments == expected  # exactly: every posted grade, nothing else
        statuses = {status for status, _ in expected.values()}
        assert {"fully graded", "exempt", "not submitted"} <= statuses
        hidden = s.hidden_grades()
        assert hidden and not hidden & set(assignments)  # hidden grades exist in Canvas and were not sent
        course_grades = {k: v for k, v in held.items() if k[1] is None}
        assert course_grades and all(status == "fully graded" for status, _ in course_grades.values())
        categories = {c["title"] for c in s.provider("categories").values()}
        assert {"Assignments", "Quizzes", "Discussions", "Tests", "Course Grade"} <= categories
        line_items = [li for li in s.provider("lineItems").values() if not li["sourcedId"].startswith("li-")]
        assert {(li.get("metadata") or {}).get("canvasType") for li in line_items} >= {"assignment", "discussion", "quiz"}

        # Second tick with the returned cursor: nothing changed.
        second = s.tick(first.cursor)
        assert not second.run_requests and "no grade changes" in second.skip_reason.skip_message

        # One changed grade: only its course is requested; only its result (and the student's course grade) is sent.
        (klass, assignment, student), _ = next((k, v) for k, v in sorted(expected.items()) if v[0] == "fully graded")
        course = next(r["course"] for r in s.canvas.db.query(
            "SELECT c.sis_id AS course FROM sections sec JOIN courses c ON c.id = sec.course_id WHERE sec.sis_id = ?",
            (klass,)))
        before = now_iso()
        s.canvas.set_grade(course, assignment, student, score=1.5)
        third = s.tick(second.cursor)  # a new evaluation from the stored cursor, as after a restart
        assert [r.run_config["ops"]["gradebook__canvas_export"]["config"]["courses"] for r in third.run_requests] == [[course]]
        term = third.run_requests[0].partition_key
        s.run(third)
        sent = s.ledger_accepted_since(term, before)
        assert [kind for kind, _ in sent] == ["result", "result"]  # the grade and the student's course grade
        assert s.provider_results()[(klass, assignment, student)] == ("fully graded", 1.5)

        # Excused -> exempt.
        s.canvas.set_grade(course, assignment, student, excused=True)
        s.run(s.tick(third.cursor))
        assert s.provider_results()[(klass, assignment, student)] == ("exempt", 0.0)

        # A hidden grade is never sent; the posted state it replaced is no longer what Canvas shows, so the
        # SIS's result is removed (it comes back when the grade is posted).
        before = now_iso()
        s.canvas.set_grade(course, assignment, student, score=9.0, excused=False, posted=False)
        fourth = s.tick(third.cursor)
        metadata = s.run(fourth)[0].get_asset_materialization_events()[-1].materialization.metadata
        assert metadata["stale_results_deleted"].value == 1
        assert (klass, assignment, student) not in s.provider_results()
        ns = ids.namespace(s.resources["passback"].id_namespace)
        hidden_result = ids.sourced_id(ns, ids.result_key(ids.sourced_id(ns, ids.line_item_key(klass, assignment)), student))
        assert hidden_result not in {sourced_id for _, sourced_id in s.ledger_accepted_since(term, before)}

        # The provider refuses one result (the student left the class in the SIS today): recorded with the
        # SIS's message and shown in the run's metadata; the other change of the same run is written.
        refused, other = [k for k in sorted(expected) if k[0] == klass and k[1] == assignment and k[2] != student][:2]
        enrollment = next(e for e in s.roster.store.class_enrollments(klass) if ref_id(e, "user") == refused[2])
        s.roster.store.set_status("enrollments", enrollment["sourcedId"], "tobedeleted")
        s.canvas.set_grade(course, assignment, refused[2], score=2.0, excused=False)
        s.canvas.set_grade(course, assignment, other[2], score=3.0, excused=False)
        fifth = s.tick(third.cursor)
        metadata = s.run(fifth)[0].get_asset_materialization_events()[-1].materialization.metadata
        assert metadata["rejections_outstanding"].value == 2  # the result and the student's course grade
        assert all("has no active student enrollment" in r.data["rejected_message"]
                   for r in metadata["rejections"].value.records)
        assert s.provider_results()[other] == ("fully graded", 3.0)
        assert s.provider_results()[refused] == expected[refused]  # unchanged in the SIS

        # Fixed in the SIS: the sensor asks for the course again (rejections to retry) and they go through.
        s.roster.store.set_status("enrollments", enrollment["sourcedId"], "active")
        sixth = s.tick(third.cursor)
        metadata = s.run(sixth)[0].get_asset_materialization_events()[-1].materialization.metadata
        assert metadata["rejections_outstanding"].value == 0
        assert s.provider_results()[refused] == ("fully graded", 2.0)
        # Gradebook exports, objects, ledgers and the passback runs' events hold no credential or name either.
        assert_no_secret_or_personal_data_left(s, s.csv_rows("district", "users"))
