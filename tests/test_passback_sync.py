"""Grade passback writes against the demo OneRoster provider over real HTTP: ledger, changed set,
rejections, held-back results, deletion and a writer killed half-way."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.demo.oneroster_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DemoOneRosterServer, FaultPlan
from pipeline.demo.source import Selection, ref_id
from pipeline.passback import ids
from pipeline.passback.config import PassbackSettings
from pipeline.passback.ledger import (
    Accepted,
    AnotherRunSending,
    Ledger,
    NewerGradesSent,
    Rejected,
    term_send_lock,
)
from pipeline.passback.objects import (
    SnapshotPaths,
    bind_inputs,
    build_objects,
    connect,
    fetch_sis_categories,
    write_objects,
)
from pipeline.passback.sync import send_changes
from pipeline.passback.writer import GradebookWriter
from pipeline.resources.oneroster import OneRosterClient, OneRosterError
from tests.passback_fixtures import class_export, demo_class_students, demo_snapshot

AS_OF = dt.date(2026, 9, 20)
CLASS = "cls-0000000"
NS = ids.namespace("rosterbridge")


def client(srv: DemoOneRosterServer) -> OneRosterClient:
    return OneRosterClient(base_url=srv.base_url, client_id=DEMO_CLIENT_ID, client_secret=DEMO_CLIENT_SECRET,
                           token_url=srv.token_url)


def passback(tmp_path: Path, srv: DemoOneRosterServer, settings: PassbackSettings | None = None, run: str = "run",
             sis_categories=None):
    """Transform the export under tmp_path/export and send the changes; returns the sync report.

    The OneRoster snapshot is taken from the provider on first use (as the nightly extract would)."""
    settings = settings or PassbackSettings(course_grades=False)
    snapshot = demo_snapshot(tmp_path / "snapshot", srv.store) if not (tmp_path / "snapshot").exists() else \
        SnapshotPaths(*(tmp_path / "snapshot" / f"{n}.parquet" for n in ("classes", "academicSessions", "users")))
    conn = connect()
    bind_inputs(conn, tmp_path / "export", snapshot, settings, AS_OF, sis_categories)
    build_objects(conn)
    write_objects(conn, tmp_path / run / "objects")
    with Ledger.for_term(tmp_path / "term") as ledger, client(srv).open() as session:
        writer = GradebookWriter(session, ledger, max_concurrency=4, log=lambda _: None)
        return send_changes(conn, tmp_path / run / "objects", ledger, writer,
                            gathered={CLASS: dt.datetime(2026, 9, 20, tzinfo=dt.timezone.utc)}, run_id=run,
                            delete_line_items=settings.delete_line_items, log=lambda _: None)


def stored(srv: DemoOneRosterServer, entity: str) -> dict[str, dict]:
    return {r["sourcedId"]: r for r in srv.store.iter_all(Selection(entity)) if not r["sourcedId"].startswith("cat-")}


def test_ledger_records_atomically_and_keeps_the_accepted_hash_on_rejection(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ledger.record([Accepted("a", "result", "c1", "li", "h1", 201)])
        ledger.record(rejected=[Rejected("a", "result", "c1", "li", "h2", 422, "bad")])
        assert ledger.accepted_hashes().to_pylist() == [{"sourced_id": "a", "accepted_hash": "h1"}]
        assert ledger.rejections()[0]["rejected_message"] == "bad"
        assert ledger.course_states() == {"c1": (None, None, 1)}
        with pytest.raises(RuntimeError):
            with ledger._transaction() as conn:
                conn.execute("UPDATE items SET accepted_hash = 'x'")
                raise RuntimeError("crash inside a batch")
        ledger.record([Accepted("a", "result", "c1", "li", "h2", 200)])
        assert ledger.rejection_count() == 0
        ledger.mark_courses_synced({"c1": "2026-09-20T00:00:00+00:00"}, "run-1")
    with Ledger(tmp_path / "ledger.sqlite") as reopened:
        assert reopened.accepted_hashes().to_pylist() == [{"sourced_id": "a", "accepted_hash": "h2"}]
        through, synced_at, rejections = reopened.course_states()["c1"]
        assert (through, rejections) == ("2026-09-20T00:00:00+00:00", 0) and synced_at


def test_passback_writes_once_then_only_what_changed(tmp_path):
    with DemoOneRosterServer(students=60) as srv:
        students = demo_class_students(srv.store, CLASS)
        class_export(tmp_path / "export", CLASS, students)
        first = passback(tmp_path, srv)
        assert first.totals()["sent"] == 1 + 2 + 2 * len(students)  # category, lineItems, results
        results = stored(srv, "results")
        assert len(results) == 2 * len(students)
        line_item = ids.sourced_id(NS, ids.line_item_key(CLASS, 500))
        one = results[ids.sourced_id(NS, ids.result_key(line_item, students[0]))]
        assert (one["score"], one["scoreStatus"], one["scoreDate"]) == (7.0, "fully graded", "2026-09-15")
        assert stored(srv, "lineItems")[line_item]["gradingPeriod"]["sourcedId"] == "as-2027-q1"

        again = passback(tmp_path, srv, run="rerun")
        assert again.totals()["sent"] == 0 and again.unchanged == first.totals()["sent"]

        class_export(tmp_path / "export", CLASS, students,
                     score=lambda a, s: 3.5 if (a, s) == (1, students[1]) else 7.0)
        changed = passback(tmp_path, srv, run="changed")
        assert changed.totals()["sent"] == 1
        line_item_1 = ids.sourced_id(NS, ids.line_item_key(CLASS, 501))
        assert stored(srv, "results")[ids.sourced_id(NS, ids.result_key(line_item_1, students[1]))]["score"] == 3.5


def test_a_rejected_result_is_recorded_and_the_rest_written(tmp_path):
    with DemoOneRosterServer(students=60) as srv:
        students = demo_class_students(srv.store, CLASS)
        dropped = students[0]
        enrollment = next(e for e in srv.store.class_enrollments(CLASS) if ref_id(e, "user") == dropped)
        srv.store.set_status("enrollments", enrollment["sourcedId"], "tobedeleted")  # dropped in the SIS
        class_export(tmp_path / "export", CLASS, students)
        report = passback(tmp_path, srv)
        assert report.phases["results"].rejected == 2
        assert len(stored(srv, "results")) == 2 * (len(students) - 1)
        with Ledger.for_term(tmp_path / "term") as ledger:
            rejections = ledger.rejections()
            assert len(rejections) == 2
            assert rejections[0]["rejected_status"] == 422
            assert "has no active student enrollment" in rejections[0]["rejected_message"]
            assert ledger.course_states()[CLASS][2] == 2  # the sensor will request the course again

        srv.store.set_status("enrollments", enrollment["sourcedId"], "active")  # fixed in the SIS
        retry = passback(tmp_path, srv, run="retry")
        assert retry.totals()["sent"] == 2 and retry.totals()["rejected"] == 0
        with Ledger.for_term(tmp_path / "term") as ledger:
            assert ledger.rejection_count() == 0


def test_results_of_a_rejected_line_item_are_held_back(tmp_path):
    with DemoOneRosterServer(students=60) as srv:
        students = demo_class_students(srv.store, CLASS)
        class_export(tmp_path / "export", CLASS, students, assignments=1)
        demo_snapshot(tmp_path / "snapshot", srv.store)
        srv.store.drop_record("academicSessions", "as-2027-q1")  # gone from the SIS since last night's snapshot
        report = passback(tmp_path, srv)
        assert report.phases["lineItems"].rejected == 1
        assert report.phases["results"].held_back == len(students) and report.phases["results"].sent == 0
        with Ledger.for_term(tmp_path / "term") as ledger:
            messages = {r["rejected_message"] for r in ledger.rejections()}
        assert any(m.startswith("not sent: its lineItem") for m in messages)
        assert not stored(srv, "results")


def test_removed_assignment_is_reported_or_deleted(tmp_path):
    with DemoOneRosterServer(students=60) as srv:
        students = demo_class_students(srv.store, CLASS)
        class_export(tmp_path / "export", CLASS, students, assignments=2)
        passback(tmp_path, srv)
        class_export(tmp_path / "export", CLASS, students, assignments=1)
        kept = passback(tmp_path, srv, run="kept")
        gone = ids.sourced_id(NS, ids.line_item_key(CLASS, 501))
        assert kept.orphans == [(gone, CLASS)] and gone in stored(srv, "lineItems")
        deleted = passback(tmp_path, srv, PassbackSettings(course_grades=False, delete_line_items=True), run="deleted")
        assert deleted.deleted_line_items == 1 and deleted.deleted_results == len(students)
        assert gone not in stored(srv, "lineItems")
        assert {ref_id(r, "lineItem") for r in stored(srv, "results").values()} == {
            ids.sourced_id(NS, ids.line_item_key(CLASS, 500))
        }


KILLABLE_WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from pipeline.demo.oneroster_server import DemoOneRosterServer
    from tests.test_passback_sync import passback
    class Remote:  # the server runs in the test process; the same deterministic district gives the snapshot
        base_url, token_url, store = sys.argv[2], sys.argv[3], DemoOneRosterServer(students=60).store
    passback(Path(sys.argv[1]), Remote(), run=sys.argv[4])
""")


def test_a_writer_killed_half_way_leaves_no_duplicate_and_the_rerun_completes(tmp_path):
    with DemoOneRosterServer(students=60, latency_ms=25) as srv:
        students = demo_class_students(srv.store, CLASS)
        class_export(tmp_path / "export", CLASS, students, assignments=8)
        expected_results = 8 * len(students)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLABLE_WRITER, str(tmp_path), srv.base_url, srv.token_url, "killed"], env=env
        )
        deadline = time.monotonic() + 60
        while len(stored(srv, "results")) < expected_results // 3 and time.monotonic() < deadline:
            assert proc.poll() is None, "the writer finished before it could be killed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        written_before = len(stored(srv, "results"))
        assert 0 < written_before < expected_results

        rerun = passback(tmp_path, srv, run="rerun")
        results = stored(srv, "results")
        assert len(results) == expected_results  # nothing missing, and ids are deterministic: no duplicate
        assert len({(ref_id(r, "lineItem"), ref_id(r, "student")) for r in results.values()}) == expected_results
        assert len(stored(srv, "lineItems")) == 8
        # Only what the killed run had not durably recorded is sent again (at most one batch in flight).
        assert rerun.totals()["sent"] <= expected_results - written_before + 250
        assert passback(tmp_path, srv, run="settled").totals()["sent"] == 0
        assert rerun.totals()["rejected"] == 0


def test_a_rejection_is_forgotten_once_its_object_leaves_canvas(tmp_path):
    with DemoOneRosterServer(students=60) as srv:
        students = demo_class_students(srv.store, CLASS)
        enrollment = next(e for e in srv.store.class_enrollments(CLASS) if ref_id(e, "user") == students[0])
        srv.store.set_status("enrollments", enrollment["sourcedId"], "tobedeleted")
        class_export(tmp_path / "export", CLASS, students)
        passback(tmp_path, srv)
        class_export(tmp_path / "export", CLASS, students[1:])  # the student left the Canvas course too
        report = passback(tmp_path, srv, run="after")
        assert report.totals()["sent"] == 0
        with Ledger.for_term(tmp_path / "term") as ledger:
            assert ledger.rejection_count() == 0
            assert ledger.course_states()[CLASS][2] == 0  # the sensor stops retrying the course


def test_match_mode_uses_the_sis_categories_when_it_refuses_category_writes(tmp_path):
    with DemoOneRosterServer(students=60, allow_category_writes=False) as srv:
        students = demo_class_students(srv.store, CLASS)
        class_export(tmp_path / "export", CLASS, students, assignments=1)
        with pytest.raises(OneRosterError, match="PASSBACK_CATEGORY_MODE=match"):
            passback(tmp_path, srv)
        assert not stored(srv, "lineItems")

        settings = PassbackSettings(course_grades=False, category_mode="match", fallback_category="cat-project")
        with client(srv).open() as session:
            categories = fetch_sis_categories(session)
        report = passback(tmp_path, srv, settings, run="match", sis_categories=categories)
        assert report.totals()["rejected"] == 0 and "categories" in report.phases
        (line_item,) = stored(srv, "lineItems").values()
        assert line_item["category"]["sourcedId"] == "cat-homework"  # the group "Homework" matched by title
        assert len(stored(srv, "results")) == len(students)


def test_a_sis_that_stays_overloaded_stops_the_run_without_recording_rejections(tmp_path):
    with DemoOneRosterServer(students=60) as srv:
        students = demo_class_students(srv.store, CLASS)
        class_export(tmp_path / "export", CLASS, students, assignments=1)
        passback(tmp_path, srv)  # token and first writes fine
        class_export(tmp_path / "export", CLASS, students, assignments=1, score=lambda a, s: 4.0)
        srv.faults = FaultPlan(rate=1.0, statuses=(429,), retry_after_seconds=0)
        with pytest.raises(OneRosterError, match="429"):
            passback(tmp_path, srv, run="throttled")
        with Ledger.for_term(tmp_path / "term") as ledger:
            assert ledger.rejection_count() == 0  # nothing is blamed on the objects
        srv.faults = None
        assert passback(tmp_path, srv, run="later").totals()["sent"] == len(students)


def test_ledger_course_queries_cover_more_courses_than_one_query_binds(tmp_path):
    courses = [f"course-{i}" for i in range(1_234)]
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ledger.record([Accepted(f"li-{c}", "lineItem", c, None, "h", 201) for c in courses],
                      [Rejected(f"r-{c}", "result", c, f"li-{c}", "h", 422, "no") for c in courses])
        assert ledger.accepted_line_items(courses).num_rows == 1_234
        assert ledger.rejected_ids(courses[:700]).num_rows == 700
        assert ledger.rejected_ids([]).num_rows == 0


def rewrite_export(export_dir: Path, table: str, change) -> None:
    """Edit one export file in place: `change(row)` for each row (returns the row, or None to drop it)."""
    import pyarrow.parquet as pq

    from pipeline.passback.export import SCHEMAS, export_path
    from tests.passback_fixtures import write_rows

    path = export_path(export_dir, table)
    rows = [r for r in (change(dict(row)) for row in pq.read_table(path).to_pylist()) if r is not None]
    write_rows(path, rows, SCHEMAS[table])


DELETING = PassbackSettings(course_grades=False, delete_line_items=True)


def test_a_class_gone_from_the_snapshot_does_not_delete_its_line_items(tmp_path):
    """Term end: the SIS marks the class tobedeleted; its grades stay in the SIS."""
    import pyarrow.parquet as pq

    from pipeline.oneroster import schema
    from tests.passback_fixtures import write_rows

    with DemoOneRosterServer(students=60) as srv:
        students = demo_class_students(srv.store, CLASS)
        class_export(tmp_path / "export", CLASS, students, assignments=2)
        passback(tmp_path, srv, DELETING)
        classes = tmp_path / "snapshot" / "classes.parquet"
        rows = [{**r, "status": "tobedeleted"} if r["sourcedId"] == CLASS else r for r in pq.read_table(classes).to_pylist()]
        write_rows(classes, rows, schema.CLASSES)
        report = passback(tmp_path, srv, DELETING, run="term-ended")
        assert report.orphans == [] and report.deleted_line_items == 0 and report.deleted_results == 0
        assert len(stored(srv, "lineItems")) == 2 and len(stored(srv, "results")) == 2 * len(students)


def test_a_due_date_removed_with_undated_items_skipped_does_not_delete_the_line_item(tmp_path):
    with DemoOneRosterServer(students=60) as srv:
        students = demo_class_students(srv.store, CLASS)
        class_export(tmp_path / "export", CLASS, students, assignments=2)
        settings = PassbackSettings(course_grades=False, delete_line_items=True, undated_items="skip")
        passback(tmp_path, srv, settings)
        rewrite_export(tmp_path / "export", "assignments",
                       lambda a: {**a, "due_at": None} if a["assignment_id"] == 500 else a)
        report = passback(tmp_path, srv, settings, run="undated")
        assert report.orphans == [] and ids.sourced_id(NS, ids.line_item_key(CLASS, 500)) in stored(srv, "lineItems")


def test_an_unpublished_or_unsynced_assignment_is_deleted(tmp_path):
    with DemoOneRosterServer(students=60) as srv:
        students = demo_class_students(srv.store, CLASS)
        class_export(tmp_path / "export", CLASS, students, assignments=3)
        passback(tmp_path, srv, DELETING)
        changes = {500: {"published": False}, 501: {"post_to_sis": False}}
        rewrite_export(tmp_path / "export", "assignments", lambda a: {**a, **changes.get(a["assignment_id"], {})})
        report = passback(tmp_path, srv, DELETING, run="unpublished")
        gone = {ids.sourced_id(NS, ids.line_item_key(CLASS, a)) for a in (500, 501)}
        assert {li for li, _ in report.orphans} == gone and report.deleted_line_items == 2
        assert set(stored(srv, "lineItems")) == {ids.sourced_id(NS, ids.line_item_key(CLASS, 502))}


def test_a_result_that_leaves_canvas_s_export_is_removed_from_the_sis(tmp_path):
    """'not submitted' (missing), then the student hands the work in (not graded yet); an excused mark
    taken back; a grade cleared: none of them is in the export any more, so the SIS must not keep them."""
    with DemoOneRosterServer(students=60) as srv:
        students = demo_class_students(srv.store, CLASS)
        class_export(tmp_path / "export", CLASS, students, assignments=2)
        rewrite_export(tmp_path / "export", "submissions", lambda s: (
            {**s, "score": None, "missing": True, "workflow_state": "unsubmitted", "graded_at": None, "posted_at": None}
            if (s["assignment_id"], s["user_id"]) == (500, 1) else
            {**s, "score": None, "excused": True} if (s["assignment_id"], s["user_id"]) == (500, 2) else s))
        passback(tmp_path, srv)
        line_item = ids.sourced_id(NS, ids.line_item_key(CLASS, 500))
        result_of = {n: ids.sourced_id(NS, ids.result_key(line_item, students[n - 1])) for n in (1, 2, 3)}
        held = stored(srv, "results")
        assert (held[result_of[1]]["scoreStatus"], held[result_of[2]]["scoreStatus"]) == ("not submitted", "exempt")

        # Handed in, excuse taken back, grade cleared: the export drops the three submissions.
        rewrite_export(tmp_path / "export", "submissions",
                       lambda s: None if (s["assignment_id"], s["user_id"]) in {(500, 1), (500, 2), (500, 3)} else s)
        report = passback(tmp_path, srv, run="left")
        assert report.stale_results_deleted == 3 and report.totals()["sent"] == 0
        assert not set(result_of.values()) & set(stored(srv, "results"))
        assert len(stored(srv, "results")) == 2 * len(students) - 3
        assert passback(tmp_path, srv, run="again").stale_results_deleted == 0  # nothing left to remove


def test_a_result_delete_the_sis_refuses_is_reported_and_the_run_goes_on(tmp_path):
    from pipeline.demo.provider_auth import ALL_SCOPES

    scopes = tuple(s for s in ALL_SCOPES if not s.endswith("gradebook.delete"))
    with DemoOneRosterServer(students=60, allowed_scopes=scopes) as srv:
        students = demo_class_students(srv.store, CLASS)
        class_export(tmp_path / "export", CLASS, students, assignments=1)
        passback(tmp_path, srv)
        rewrite_export(tmp_path / "export", "submissions", lambda s: None if s["user_id"] == 1 else s)
        report = passback(tmp_path, srv, run="left")
        assert report.stale_results_deleted == 0 and len(report.stale_results_refused) == 1
        assert "403" in report.stale_results_refused[0][1] and len(stored(srv, "results")) == len(students)


def test_a_category_title_spelled_differently_by_another_course_does_not_rename_it(tmp_path):
    with DemoOneRosterServer(students=60) as srv:
        students = demo_class_students(srv.store, CLASS)
        class_export(tmp_path / "export", CLASS, students, assignments=1)
        passback(tmp_path, srv)
        category = ids.sourced_id(NS, ids.category_key("Homework"))
        assert srv.store.get("categories", category)["title"] == "Homework"
        # The next run gathers a course whose teacher spells the group "homework " (same category).
        rewrite_export(tmp_path / "export", "assignment_groups", lambda g: {**g, "name": "homework "})
        report = passback(tmp_path, srv, run="other-spelling")
        assert report.phases["categories"].sent == 0
        assert srv.store.get("categories", category)["title"] == "Homework"


def test_a_course_claimed_by_a_newer_export_refuses_an_older_one_and_records_nothing(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ledger.claim_courses({"c1": "2026-11-26T10:00:00.000+00:00", "c2": "2026-11-26T10:00:00.000+00:00"}, "new")
        with pytest.raises(NewerGradesSent, match="already sent newer grades for 1 courses \\(c1: .*start a new run"):
            ledger.claim_courses({"c1": "2026-11-26T09:00:00.000+00:00", "c3": "2026-11-26T09:00:00.000+00:00"}, "old")
        ledger.claim_courses({"c3": "2026-11-26T08:00:00.000+00:00"}, "older")  # c3 was not claimed by the refusal
        ledger.claim_courses({"c1": "2026-11-26T10:00:00.000+00:00"}, "new")  # the same export again (re-execution)
        ledger.claim_courses({"c2": "2026-11-26T11:00:00.000+00:00"}, "newer")


def test_the_send_lock_of_a_term_is_held_until_its_process_ends_even_when_killed(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from pathlib import Path
            from pipeline.passback.ledger import term_send_lock
            with term_send_lock(Path({str(tmp_path)!r}), "t1"):
                print("locked", flush=True)
                time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(AnotherRunSending, match="another passback run of term t1 is sending to the SIS now"):
            with term_send_lock(tmp_path, "t1"):
                pass
        with term_send_lock(tmp_path / "other-term", "t2"):  # other terms are not held
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with term_send_lock(tmp_path, "t1"):  # the OS released it with the killed process
        pass
