"""Grade passback benchmark: `python -m benchmarks.run passback [--students 50000] [--items 20] [--latency-ms 20]`.

(a) Changed set at scale: a synthetic export of `--students` students × `--items` assignments (1M results
    by default; 25 students per class) → OneRoster objects in DuckDB (timed), a ledger holding every
    result as accepted (timed), then one grade changed → objects again → the changed set (timed), which
    must be exactly one result.
(b) Write throughput against the demo provider (separate process, `--latency-ms` per request): every
    object of `--write-classes` real demo classes × `--items` assignments is PUT (writes/s at the
    OneRoster client's concurrency), then one grade changes and the rerun must send exactly one write.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb

from pipeline.passback.config import PassbackSettings
from pipeline.passback.export import export_path, export_writers
from pipeline.passback.ledger import Accepted, Ledger
from pipeline.passback.objects import SnapshotPaths, bind_inputs, build_objects, connect, scalar, sql_path, write_objects
from pipeline.passback.sync import compute_changes, send_changes
from pipeline.passback.writer import GradebookWriter

STUDENTS_PER_CLASS = 25
AS_OF = dt.date(2026, 9, 20)
UTC = dt.timezone.utc


def _timed(label: str, fn):
    started = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - started
    print(f"  {label}: {seconds:.2f} s", flush=True)
    return value, seconds


# --- (a) changed set at scale -------------------------------------------------------------------------

def _synthetic_export(export_dir: Path, snapshot_dir: Path, students: int, items: int, changed_student: int | None) -> SnapshotPaths:
    """Parquet written by DuckDB straight from generate_series: no Python rows at this scale."""
    classes = students // STUDENTS_PER_CLASS
    conn = duckdb.connect()
    conn.execute("SET TimeZone = 'UTC'")
    export_dir.mkdir(parents=True, exist_ok=True)
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    tables = {
        "courses": f"SELECT c AS course_id, 'cls-' || c AS sis_course_id, 'Class ' || c AS name, TIMESTAMPTZ '2026-09-20 00:00:00+00' AS gathered_at, TIMESTAMPTZ '2026-09-01 12:00:00+00' AS graded_through FROM range({classes}) t(c)",
        "sections": f"SELECT c AS course_id, c AS section_id, 'cls-' || c AS sis_section_id, 'Section' AS name FROM range({classes}) t(c)",
        "assignment_groups": f"SELECT c AS course_id, c AS group_id, 'Homework' AS name, 1 AS position FROM range({classes}) t(c)",
        "assignments": f"""SELECT c AS course_id, c * 1000 + a AS assignment_id, 'Assignment ' || a AS name, NULL::VARCHAR AS description,
            'assignment' AS kind, 10.0 AS points_possible, 'points' AS grading_type,
            TIMESTAMPTZ '2026-08-20 12:00:00+00' + to_days((a * 7)::INTEGER) AS due_at, NULL::TIMESTAMPTZ AS unlock_at,
            TIMESTAMPTZ '2026-08-17 12:00:00+00' AS created_at, c AS assignment_group_id, true AS published,
            true AS post_to_sis, false AS only_visible_to_overrides
            FROM range({classes}) t(c), range({items}) i(a)""",
        "overrides": "SELECT 0::BIGINT AS course_id, 0::BIGINT AS assignment_id, 0::BIGINT AS section_id, NULL::TIMESTAMPTZ AS due_at WHERE false",
        "enrollments": f"""SELECT s // {STUDENTS_PER_CLASS} AS course_id, s // {STUDENTS_PER_CLASS} AS section_id, s AS user_id,
            'stu-' || s AS sis_user_id, 80.0 AS current_score, 80.0 AS final_score FROM range({students}) t(s)""",
        "submissions": f"""SELECT s // {STUDENTS_PER_CLASS} AS course_id, (s // {STUDENTS_PER_CLASS}) * 1000 + a AS assignment_id,
            s AS user_id,
            CASE WHEN s = {changed_student if changed_student is not None else -1} AND a = 0 THEN 1.5 ELSE ((s * 7 + a) % 21) / 2.0 END AS score,
            false AS excused, false AS missing, false AS late, 'graded' AS workflow_state,
            TIMESTAMPTZ '2026-09-01 12:00:00+00' AS graded_at, TIMESTAMPTZ '2026-09-01 12:00:00+00' AS posted_at,
            NULL::VARCHAR AS comment
            FROM range({students}) t(s), range({items}) i(a)""",
    }
    for name, query in tables.items():
        conn.execute(f"COPY ({query}) TO {sql_path(export_path(export_dir, name))} (FORMAT parquet)")
    snapshot = SnapshotPaths(snapshot_dir / "classes.parquet", snapshot_dir / "academicSessions.parquet", snapshot_dir / "users.parquet")
    conn.execute(f"COPY (SELECT 'cls-' || c AS sourcedId, 'active' AS status, ['fall'] AS termSourcedIds FROM range({classes}) t(c)) "
                 f"TO {sql_path(snapshot.classes)} (FORMAT parquet)")
    conn.execute(f"""COPY (SELECT * FROM (VALUES
        ('fall', 'active', 'Fall', 'semester', DATE '2026-08-17', DATE '2027-01-15', NULL),
        ('q1', 'active', 'Quarter 1', 'gradingPeriod', DATE '2026-08-17', DATE '2026-10-23', 'fall'),
        ('q2', 'active', 'Quarter 2', 'gradingPeriod', DATE '2026-10-26', DATE '2027-01-15', 'fall'))
        t(sourcedId, status, title, type, startDate, endDate, parentSourcedId)) TO {sql_path(snapshot.academic_sessions)} (FORMAT parquet)""")
    conn.execute(f"COPY (SELECT 'stu-' || s AS sourcedId, 'active' AS status FROM range({students}) t(s)) TO {sql_path(snapshot.users)} (FORMAT parquet)")
    conn.close()
    return snapshot


def _objects(root: Path, snapshot: SnapshotPaths, settings: PassbackSettings) -> Path:
    conn = connect()
    bind_inputs(conn, root / "export", snapshot, settings, AS_OF)
    build_objects(conn)
    write_objects(conn, root / "objects")
    conn.close()
    return root / "objects"


def _fill_ledger(ledger: Ledger, objects_dir: Path) -> int:
    count = 0
    with duckdb.connect() as conn:
        reader = conn.sql(
            f"SELECT sourced_id, 'result' AS kind, sis_course_id, line_item_id, payload_hash FROM read_parquet({sql_path(objects_dir / 'results.parquet')}) "
            f"UNION ALL SELECT sourced_id, kind, sis_course_id, NULL, payload_hash FROM read_parquet({sql_path(objects_dir / 'line_items.parquet')}) "
            f"UNION ALL SELECT sourced_id, 'category', NULL, NULL, payload_hash FROM read_parquet({sql_path(objects_dir / 'categories.parquet')})"
        ).to_arrow_reader(50_000)
        for batch in reader:
            rows = batch.to_pylist()
            ledger.record([Accepted(r["sourced_id"], r["kind"], r["sis_course_id"], r["line_item_id"], r["payload_hash"], 201) for r in rows])
            count += len(rows)
    return count


def changed_set_at_scale(students: int, items: int) -> None:
    print(f"(a) changed set: {students:,} students x {items} items = {students * items:,} results", flush=True)
    settings = PassbackSettings(course_grades=False)
    with tempfile.TemporaryDirectory(prefix="passback-bench-") as tmp:
        root = Path(tmp)
        snapshot, _ = _timed("synthetic export (DuckDB)", lambda: _synthetic_export(root / "export", root / "snapshot", students, items, None))
        objects_dir, build_seconds = _timed("OneRoster objects (transform SQL + Parquet)", lambda: _objects(root, snapshot, settings))
        with Ledger(root / "ledger.sqlite") as ledger:
            recorded, fill_seconds = _timed("ledger: record every object as accepted", lambda: _fill_ledger(ledger, objects_dir))
            print(f"    {recorded:,} ledger rows, {recorded / fill_seconds:,.0f} records/s", flush=True)
            conn = connect()
            unchanged, nothing_seconds = _timed("changed set, nothing changed", lambda: compute_changes(conn, objects_dir, ledger, []))
            pending = scalar(conn, "SELECT count(*) FROM pending")
            print(f"    pending {pending}, unchanged {unchanged:,}", flush=True)
            conn.close()

            _synthetic_export(root / "export", root / "snapshot", students, items, changed_student=students // 2)
            _timed("OneRoster objects after one changed grade", lambda: _objects(root, snapshot, settings))
            conn = connect()
            _, changed_seconds = _timed("changed set after one changed grade", lambda: compute_changes(conn, objects_dir, ledger, []))
            pending = conn.execute("SELECT kind, sourced_id FROM pending").fetchall()
            conn.close()
        print(f"    pending after one change: {len(pending)} {pending}", flush=True)
        assert len(pending) == 1 and pending[0][0] == "result", pending
        print(f"  => compute changed set for {students * items:,} results: {changed_seconds:.2f} s "
              f"(objects {build_seconds:.2f} s); one changed grade -> exactly 1 write", flush=True)


# --- (b) write throughput ---------------------------------------------------------------------------

def _serve(students: int, latency_ms: int, connection) -> None:
    from pipeline.demo.oneroster_server import DemoOneRosterServer

    with DemoOneRosterServer(students=students, seed=1, latency_ms=latency_ms) as server:
        connection.send((server.base_url, server.token_url))
        connection.recv()


@contextmanager
def _provider(students: int, latency_ms: int):
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(target=_serve, args=(students, latency_ms, child), daemon=True)
    process.start()
    try:
        yield parent.recv()
    finally:
        parent.send("stop")
        process.join(10)


def _real_export(export_dir: Path, store, classes: int, items: int, changed: bool) -> tuple[list[str], int]:
    from pipeline.demo.source import Selection, ref_id

    chosen = [c["sourcedId"] for c in store.iter_all(Selection("classes"))][:classes]
    graded = dt.datetime(2026, 9, 15, 12, tzinfo=UTC)
    results = 0
    with export_writers(export_dir) as w:
        for n, class_id in enumerate(chosen):
            students = sorted(ref_id(e, "user") for e in store.class_enrollments(class_id)
                              if e.get("role") == "student" and e.get("status") == "active")
            w["courses"].add([{"course_id": n, "sis_course_id": class_id, "gathered_at": graded}])
            w["sections"].add([{"course_id": n, "section_id": n, "sis_section_id": class_id}])
            w["assignment_groups"].add([{"course_id": n, "group_id": n, "name": "Homework", "position": 1}])
            w["assignments"].add([{"course_id": n, "assignment_id": n * 1000 + a, "name": f"Assignment {a}", "kind": "assignment",
                                   "points_possible": 10.0, "grading_type": "points",
                                   "due_at": dt.datetime(2026, 9, 1, 12, tzinfo=UTC) + dt.timedelta(days=a),
                                   "assignment_group_id": n, "published": True, "post_to_sis": True,
                                   "only_visible_to_overrides": False} for a in range(items)])
            w["enrollments"].add([{"course_id": n, "section_id": n, "user_id": i, "sis_user_id": s} for i, s in enumerate(students)])
            w["submissions"].add([{"course_id": n, "assignment_id": n * 1000 + a, "user_id": i,
                                   "score": 2.5 if (changed and n == 0 and a == 0 and i == 0) else 8.0, "excused": False,
                                   "missing": False, "workflow_state": "graded", "graded_at": graded, "posted_at": graded}
                                  for a in range(items) for i in range(len(students))])
            results += items * len(students)
    return chosen, results


def write_throughput(classes: int, items: int, latency_ms: int, concurrency: int) -> None:
    from pipeline.demo.oneroster_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DemoOneRosterServer
    from pipeline.resources.oneroster import OneRosterClient

    students = 600
    local = DemoOneRosterServer(students=students, seed=1).store  # same deterministic district as the server's
    settings = PassbackSettings(course_grades=False)
    print(f"(b) write throughput: demo provider with {latency_ms} ms latency, concurrency {concurrency}", flush=True)
    with tempfile.TemporaryDirectory(prefix="passback-bench-") as tmp, _provider(students, latency_ms) as (base_url, token_url):
        root = Path(tmp)
        client = OneRosterClient(base_url=base_url, token_url=token_url, client_id=DEMO_CLIENT_ID,
                                 client_secret=DEMO_CLIENT_SECRET, max_concurrency=concurrency)
        snapshot = _demo_snapshot(root / "snapshot", local)
        for label, changed in (("first run", False), ("after one changed grade", True)):
            chosen, results = _real_export(root / "export", local, classes, items, changed)
            objects_dir = _objects(root, snapshot, settings)
            conn = connect()
            with Ledger(root / "ledger.sqlite") as ledger, client.open() as session:
                writer = GradebookWriter(session, ledger, max_concurrency=concurrency, log=lambda _: None)
                started = time.perf_counter()
                report = send_changes(conn, objects_dir, ledger, writer, gathered={c: dt.datetime.now(UTC) for c in chosen},
                                      run_id=label, delete_line_items=False, log=lambda _: None)
                seconds = time.perf_counter() - started
            conn.close()
            totals = report.totals()
            print(f"  {label}: {totals['sent']:,} writes ({results:,} results) in {seconds:.2f} s = "
                  f"{totals['sent'] / seconds:,.0f} writes/s; rejected {totals['rejected']}", flush=True)
        assert totals["sent"] == 1, totals


def _demo_snapshot(root: Path, store) -> SnapshotPaths:
    from pipeline.demo.source import Selection, ref_id

    conn = duckdb.connect()
    root.mkdir(parents=True, exist_ok=True)
    classes = [(c["sourcedId"], [t["sourcedId"] for t in c.get("terms", [])]) for c in store.iter_all(Selection("classes"))]
    sessions = [(s["sourcedId"], s["title"], s["type"], s["startDate"], s["endDate"], ref_id(s, "parent"))
                for s in store.iter_all(Selection("academicSessions"))]
    users = [(u["sourcedId"],) for u in store.iter_all(Selection("users")) if u.get("role") == "student"]
    paths = SnapshotPaths(root / "classes.parquet", root / "academicSessions.parquet", root / "users.parquet")
    conn.execute("CREATE TABLE c (sourcedId VARCHAR, termSourcedIds VARCHAR[])")
    conn.executemany("INSERT INTO c VALUES (?, ?)", classes)
    conn.execute("CREATE TABLE s (sourcedId VARCHAR, title VARCHAR, type VARCHAR, startDate DATE, endDate DATE, parentSourcedId VARCHAR)")
    conn.executemany("INSERT INTO s VALUES (?, ?, ?, ?, ?, ?)", sessions)
    conn.execute("CREATE TABLE u (sourcedId VARCHAR)")
    conn.executemany("INSERT INTO u VALUES (?)", users)
    for table, path in (("c", paths.classes), ("s", paths.academic_sessions), ("u", paths.users)):
        conn.execute(f"COPY (SELECT *, 'active' AS status FROM {table}) TO {sql_path(path)} (FORMAT parquet)")
    conn.close()
    return paths


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run passback", description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--write-classes", type=int, default=8, help="demo classes whose results (b) writes")
    parser.add_argument("--concurrency", type=int, default=4, help="OneRoster client concurrency for (b)")
    parser.add_argument("--skip-scale", action="store_true", help="only (b)")
    args = parser.parse_args(argv)
    if not args.skip_scale:
        changed_set_at_scale(args.students, args.items)
    write_throughput(args.write_classes, args.items, args.latency_ms, args.concurrency)
