"""Benchmark of the Canvas CSV build for a large district: `python -m benchmarks.run transform [options]`
(or `python -m benchmarks.transform`).

1. Generates a OneRoster snapshot of `--students` students directly as Parquet (DuckDB `range()`,
   written in batches with the schema.py schemas), so it does not depend on the extract step:
   ~600 students per school, 7 classes per student in sections of 25 (a third year-long, a third per
   semester), one teacher per 5 classes, one guardian per student.
2. build: every Canvas CSV exactly as the assets build them (district data set, term discovery, then
   each term's data set in its own in-memory DuckDB), in a fresh child process. What is timed is the
   step's work as a data engineer waits for it in the step's log: DuckDB sessions, SQL, CSV writing
   and the metadata (previews, counts); not the interpreter, imports or Dagster's process start-up.
3. bare: in another child process, one DuckDB `COPY` per file of the same rows (the same row count
   per file, checked) and columns from the same Parquet to CSV: projection only, no mapping, joins,
   de-duplication or ordering. The floor the build is compared with (goal: ratio <= 1.5).
4. floor: what any build of these files that keeps one term per step must do, and nothing else: users
   sorted by id; each term in its own DuckDB scans every enrollment for its classes, looks each one's
   user up (Canvas rejects enrollments of users it does not have, and active ones of deleted users),
   de-duplicates on (section, user, role) and sorts on it. floor / bare is the least ratio such a
   build can reach; build / floor is what the mapping itself costs.
5. one-step floor: the same work with every term in one DuckDB (enrollments scanned, looked up,
   de-duplicated and sorted once, then written per term): the least a design that gave up one term per
   step (and with it per-term runs and backfills) could reach.

The phases run interleaved `--repeat` times (the machine may be shared) and the best run of each is
reported, wall time and CPU time (user + system of all DuckDB threads) both.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.datadir import DataDir
from pipeline.oneroster.schema import ENTITIES
from pipeline.resources.mapping import MappingSettings, sql_literal

SNAPSHOT = "2026-09-15"
STUDENTS_PER_SCHOOL = 600
CLASSES_PER_STUDENT = 7
SECTION_SIZE = 25
CLASSES_PER_TEACHER = 5
COURSES_PER_SCHOOL = 30
BATCH_ROWS = 250_000

_MODIFIED = "TIMESTAMPTZ '2026-09-01 00:00:00+00'"


def _generators(students: int) -> dict[str, str]:
    """DuckDB queries producing each entity's columns (by schema.py name) for a district of `students`."""
    schools = max(1, math.ceil(students / STUDENTS_PER_SCHOOL))
    cohorts = math.ceil(students / SECTION_SIZE)
    classes = cohorts * CLASSES_PER_STUDENT
    teachers = math.ceil(classes / CLASSES_PER_TEACHER)
    return {
        "orgs": f"""
            SELECT 'org-district' AS sourcedId, 'active' AS status, {_MODIFIED} AS dateLastModified,
                   'Benchmark Unified School District' AS name, 'district' AS type, 'BUSD' AS identifier,
                   NULL::VARCHAR AS parentSourcedId
            UNION ALL
            SELECT printf('sch-%05d', i), 'active', {_MODIFIED}, printf('School №%d, "Campus" %d', i, i % 7),
                   'school', printf('S%05d', i), 'org-district'
            FROM range({schools}) t(i)""",
        "academicSessions": f"""
            SELECT * FROM (VALUES
                ('sy-2026', 'active', {_MODIFIED}, '2026-27', 'schoolYear', DATE '2026-08-17', DATE '2027-06-04', NULL, '2027'),
                ('fall-2026', 'active', {_MODIFIED}, 'Fall 2026', 'semester', DATE '2026-08-17', DATE '2027-01-15', 'sy-2026', '2027'),
                ('spring-2027', 'active', {_MODIFIED}, 'Spring 2027', 'semester', DATE '2027-01-19', DATE '2027-06-04', 'sy-2026', '2027'),
                ('q1-2026', 'active', {_MODIFIED}, 'Q1', 'gradingPeriod', DATE '2026-08-17', DATE '2026-10-23', 'fall-2026', '2027')
            ) t(sourcedId, status, dateLastModified, title, type, startDate, endDate, parentSourcedId, schoolYear)""",
        "courses": f"""
            SELECT printf('crs-%05d-%02d', i // {COURSES_PER_SCHOOL}, i % {COURSES_PER_SCHOOL}) AS sourcedId,
                   'active' AS status, {_MODIFIED} AS dateLastModified,
                   printf('Course %d', i % {COURSES_PER_SCHOOL}) AS title, printf('C%02d', i % {COURSES_PER_SCHOOL}) AS courseCode,
                   'sy-2026' AS schoolYearSourcedId, printf('sch-%05d', i // {COURSES_PER_SCHOOL}) AS orgSourcedId
            FROM range({schools * COURSES_PER_SCHOOL}) t(i)""",
        "classes": f"""
            SELECT printf('cls-%07d', i) AS sourcedId,
                   CASE WHEN i % 997 = 0 THEN 'tobedeleted' ELSE 'active' END AS status, {_MODIFIED} AS dateLastModified,
                   printf('Course %d - Section %d', i % {COURSES_PER_SCHOOL}, i // {CLASSES_PER_STUDENT}) AS title,
                   printf('C%02d-%07d', i % {COURSES_PER_SCHOOL}, i) AS classCode, 'scheduled' AS classType,
                   printf('crs-%05d-%02d', (i // {CLASSES_PER_STUDENT}) % {schools}, i % {COURSES_PER_SCHOOL}) AS courseSourcedId,
                   printf('sch-%05d', (i // {CLASSES_PER_STUDENT}) % {schools}) AS schoolSourcedId,
                   [CASE i % 3 WHEN 0 THEN 'sy-2026' WHEN 1 THEN 'fall-2026' ELSE 'spring-2027' END] AS termSourcedIds
            FROM range({classes}) t(i)""",
        "users": f"""
            SELECT printf('stu-%07d', i) AS sourcedId,
                   CASE WHEN i % 1000 = 7 THEN 'tobedeleted' ELSE 'active' END AS status, {_MODIFIED} AS dateLastModified,
                   printf('s%07d', i) AS username, i % 500 <> 3 AS enabledUser,
                   ['Zoë', 'Seán', 'Ana María', 'D''Andre', 'Li'][1 + i % 5] AS givenName,
                   ['O''Brien', 'García, Jr.', 'Nguyễn', 'Smith', '=Jones'][1 + (i // 5) % 5] AS familyName,
                   'student' AS role, printf('S%07d', i) AS identifier, printf('s%07d@example.org', i) AS email,
                   [printf('gdn-%07d', i)] AS agentSourcedIds
            FROM range({students}) t(i)
            UNION ALL
            SELECT printf('tch-%06d', i), 'active', {_MODIFIED}, printf('t%06d', i), true, 'Teach', printf('Er %d', i),
                   'teacher', printf('T%06d', i), CASE WHEN i % 50 = 0 THEN NULL ELSE printf('t%06d@example.org', i) END, []
            FROM range({teachers}) t(i)
            UNION ALL
            SELECT printf('gdn-%07d', i), 'active', {_MODIFIED}, printf('g%07d', i), true, 'Guard', 'Ian',
                   'guardian', printf('G%07d', i), printf('g%07d@example.org', i), [printf('stu-%07d', i)]
            FROM range({students}) t(i)""",
        "enrollments": f"""
            SELECT printf('enr-s-%07d-%d', s, k) AS sourcedId, 'active' AS status, {_MODIFIED} AS dateLastModified,
                   printf('stu-%07d', s) AS userSourcedId,
                   printf('cls-%07d', (s // {SECTION_SIZE}) * {CLASSES_PER_STUDENT} + k) AS classSourcedId,
                   printf('sch-%05d', (s // {SECTION_SIZE}) % {schools}) AS schoolSourcedId, 'student' AS role, false AS "primary"
            FROM range({students}) a(s), range({CLASSES_PER_STUDENT}) b(k)
            UNION ALL
            SELECT printf('enr-t-%07d', c), 'active', {_MODIFIED}, printf('tch-%06d', c // {CLASSES_PER_TEACHER}),
                   printf('cls-%07d', c), printf('sch-%05d', (c // {CLASSES_PER_STUDENT}) % {schools}), 'teacher', true
            FROM range({classes}) t(c)""",
    }


def generate(data_dir: DataDir, students: int) -> dict[str, int]:
    """Write the synthetic snapshot; returns rows per entity."""
    counts = {}
    with duckdb.connect(":memory:") as conn:
        conn.execute("SET enable_progress_bar = false")
        for entity, query in _generators(students).items():
            schema = ENTITIES[entity].schema
            path = data_dir.entity_path(SNAPSHOT, entity)
            path.parent.mkdir(parents=True, exist_ok=True)
            rows = 0
            with pq.ParquetWriter(path, schema) as writer:
                for batch in conn.sql(query).to_arrow_reader(BATCH_ROWS):
                    arrays = [
                        batch.column(f.name).cast(f.type) if f.name in batch.schema.names else pa.nulls(batch.num_rows, f.type)
                        for f in schema
                    ]
                    writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
                    rows += batch.num_rows
            counts[entity] = rows
    return counts


def build(data_dir: DataDir) -> dict:
    """Every Canvas CSV, as the assets build them: {"<data set>/<file>": rows}."""
    from assets import transform
    from pipeline.partitions import term_partitions

    mapping = MappingSettings()
    rows: dict[str, int] = {}
    with mapping.open_roster_db(data_dir) as conn:
        for file, metadata in transform.build_district(conn, data_dir, mapping):
            rows[f"district/{file.file_name}"] = metadata["dagster/row_count"]
        terms = term_partitions(conn)
    for term in terms:
        with mapping.open_roster_db(data_dir, term.sourced_id) as conn:
            for file, metadata in transform.build_term(conn, data_dir, mapping, term.key):
                rows[f"{term.sourced_id}/{file.file_name}"] = metadata["dagster/row_count"]
    return rows


def _source(data_dir: DataDir, entity: str) -> str:
    return f"read_parquet({sql_literal(str(data_dir.entity_path(SNAPSHOT, entity)))})"


def _copy(conn: duckdb.DuckDBPyConnection, query: str, path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    (rows,) = conn.execute(f"COPY ({query}) TO {sql_literal(str(path))} (FORMAT csv, HEADER true)").fetchone()
    return rows


def _district_copies(data_dir: DataDir, order: bool = False) -> dict[str, str]:
    """The rows of each district file, by projection only (the generator's users all have a login);
    `order`: users sorted by id, as the build's stable order needs."""
    return {
        "accounts.csv": f"SELECT sourcedId, parentSourcedId, name, status FROM {_source(data_dir, 'orgs')}",
        "terms.csv": f"SELECT sourcedId, title, status, startDate, endDate FROM {_source(data_dir, 'academicSessions')} "
                     "WHERE type <> 'gradingPeriod'",
        "users.csv": f"SELECT sourcedId, username, NULL, givenName, familyName, email, status FROM {_source(data_dir, 'users')} "
                     "WHERE role <> 'guardian'" + (" ORDER BY sourcedId" if order else ""),
    }


def bare_copy(data_dir: DataDir, out: Path) -> dict:
    """The same rows straight from the Parquet to CSV, one COPY per file: projection only."""
    classes, enrollments = _source(data_dir, "classes"), _source(data_dir, "enrollments")
    copies = _district_copies(data_dir) | {
        "courses.csv": f"SELECT sourcedId, classCode, title, schoolSourcedId, termSourcedIds[1], status FROM {classes}",
        "sections.csv": f"SELECT sourcedId, sourcedId, title, status FROM {classes}",
        "enrollments.csv": f"SELECT classSourcedId, classSourcedId, userSourcedId, role, status FROM {enrollments}",
    }
    with duckdb.connect(":memory:") as conn:
        return {name: _copy(conn, query, out / name) for name, query in copies.items()}


def per_term_floor(data_dir: DataDir, out: Path) -> dict:
    """What any build of these files with one term per step must do, and nothing else: the district
    files (users sorted by id), then each term in its own DuckDB: its classes, and its enrollments
    (every enrollment scanned for the term's classes) with their users looked up, de-duplicated on
    (section, user, role) and sorted on it. Terms as the generator makes them: each class lists one
    session, a term."""
    rows: dict[str, int] = {}
    with duckdb.connect(":memory:") as conn:
        for name, query in _district_copies(data_dir, order=True).items():
            rows[f"district/{name}"] = _copy(conn, query, out / "district" / name)
        terms = [t for (t,) in conn.execute(f"SELECT DISTINCT termSourcedIds[1] FROM {_source(data_dir, 'classes')}").fetchall()]
    for term in terms:
        with duckdb.connect(":memory:") as conn:
            conn.execute(
                f"CREATE TABLE term_class AS SELECT sourcedId, classCode, title, schoolSourcedId, status "
                f"FROM {_source(data_dir, 'classes')} WHERE termSourcedIds[1] = {sql_literal(term)}"
            )
            directory = out / f"term={term}"
            rows[f"{term}/courses.csv"] = _copy(
                conn, f"SELECT sourcedId, classCode, title, schoolSourcedId, {sql_literal(term)}, status "
                "FROM term_class ORDER BY sourcedId", directory / "courses.csv")
            rows[f"{term}/sections.csv"] = _copy(
                conn, "SELECT sourcedId, sourcedId, title, status FROM term_class ORDER BY sourcedId", directory / "sections.csv")
            rows[f"{term}/enrollments.csv"] = _copy(conn, f"""
                SELECT e.classSourcedId, e.classSourcedId, e.userSourcedId, e.role,
                       CASE WHEN bool_and(e.status = 'tobedeleted' OR u.status = 'tobedeleted') THEN 'deleted' ELSE 'active' END
                FROM {_source(data_dir, 'enrollments')} e
                SEMI JOIN term_class c ON c.sourcedId = e.classSourcedId
                JOIN (SELECT sourcedId, status FROM {_source(data_dir, 'users')} WHERE role <> 'guardian') u
                  ON u.sourcedId = e.userSourcedId
                GROUP BY e.classSourcedId, e.userSourcedId, e.role
                ORDER BY e.classSourcedId, e.userSourcedId, e.role""", directory / "enrollments.csv")
    return rows


def one_step_floor(data_dir: DataDir, out: Path) -> dict:
    """`per_term_floor`'s work with every term in one DuckDB: enrollments scanned, looked up and
    de-duplicated once for all terms, then each term's rows sorted and written."""
    rows: dict[str, int] = {}
    classes = f"(SELECT *, termSourcedIds[1] AS term FROM {_source(data_dir, 'classes')})"
    with duckdb.connect(":memory:") as conn:
        for name, query in _district_copies(data_dir, order=True).items():
            rows[f"district/{name}"] = _copy(conn, query, out / "district" / name)
        conn.execute(f"CREATE TABLE term_course AS SELECT term, sourcedId, classCode, title, schoolSourcedId, status FROM {classes}")
        conn.execute(f"""
            CREATE TABLE term_enrollment AS
            SELECT c.term, e.classSourcedId, e.userSourcedId, e.role,
                   CASE WHEN bool_and(e.status = 'tobedeleted' OR u.status = 'tobedeleted') THEN 'deleted' ELSE 'active' END AS status
            FROM {_source(data_dir, 'enrollments')} e
            JOIN term_course c ON c.sourcedId = e.classSourcedId
            JOIN (SELECT sourcedId, status FROM {_source(data_dir, 'users')} WHERE role <> 'guardian') u
              ON u.sourcedId = e.userSourcedId
            GROUP BY c.term, e.classSourcedId, e.userSourcedId, e.role""")
        files = {
            "courses.csv": ("SELECT sourcedId, classCode, title, schoolSourcedId, term, status FROM term_course", "sourcedId"),
            "sections.csv": ("SELECT sourcedId, sourcedId, title, status FROM term_course", "sourcedId"),
            "enrollments.csv": ("SELECT classSourcedId, classSourcedId, userSourcedId, role, status FROM term_enrollment",
                                "classSourcedId, userSourcedId, role"),
        }
        for (term,) in conn.execute("SELECT DISTINCT term FROM term_course ORDER BY term").fetchall():
            for name, (query, order) in files.items():
                rows[f"{term}/{name}"] = _copy(conn, f"{query} WHERE term = {sql_literal(term)} ORDER BY {order}",
                                               out / f"term={term}" / name)
    return rows


def _peak_rss_mib() -> int:
    """This process's peak resident set (VmHWM). Unlike getrusage's ru_maxrss, which Linux carries
    over across exec from the parent, it starts afresh in the child."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


PHASES = ("build", "bare", "floor", "one_step_floor")


def _child(phase: str, root: str) -> None:
    """Run one phase in this (fresh) process and print its figures as JSON."""
    data_dir = DataDir(root=root)
    if phase == "build":
        from assets import transform  # noqa: F401  (imported before measuring, like the other phases' modules)
    imports_mib = _peak_rss_mib()  # interpreter + imports
    out = Path(root) / phase  # the baselines' files; the build writes where the assets do
    started, cpu_started = time.perf_counter(), time.process_time()
    if phase == "build":
        rows = build(data_dir)
    else:
        rows = {"bare": bare_copy, "floor": per_term_floor, "one_step_floor": one_step_floor}[phase](data_dir, out)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    print(json.dumps({"seconds": round(seconds, 2), "cpu_seconds": round(cpu_seconds, 2),
                      "peak_rss_mib": _peak_rss_mib(), "imports_rss_mib": imports_mib,
                      "rows": rows}))


def _run_child(phase: str, root: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.transform", "--phase", phase, "--work-dir", str(root)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _nonzero(rows: dict[str, int]) -> dict[str, int]:
    return {key: n for key, n in rows.items() if n}


def _per_file(rows: dict[str, int]) -> dict[str, int]:
    """{"<data set>/<file>": rows} summed per file name (bare's keys are file names already)."""
    totals: dict[str, int] = {}
    for key, n in rows.items():
        file = key.rpartition("/")[2]
        totals[file] = totals.get(file, 0) + n
    return totals


def _best(runs: list[dict]) -> dict:
    """The fastest run's figures, with the least CPU time and peak RSS of all runs."""
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best["cpu_seconds"] = min(r["cpu_seconds"] for r in runs)
    best["peak_rss_mib"] = min(r["peak_rss_mib"] for r in runs)
    return best


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="benchmarks.transform", description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs of each phase; the best is reported")
    parser.add_argument("--work-dir", help="where the snapshot and CSVs go (default: a temporary folder, removed after)")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        _child(args.phase, args.work_dir)
        return

    root = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="rosterbridge-bench-transform-"))
    try:
        data_dir = DataDir(root=str(root))
        started = time.perf_counter()
        counts = generate(data_dir, args.students)
        print(f"snapshot: {args.students} students -> {counts} in {time.perf_counter() - started:.1f} s")
        runs: dict[str, list[dict]] = {phase: [] for phase in PHASES}
        for _ in range(args.repeat):
            for phase in PHASES:
                runs[phase].append(_run_child(phase, root))
        figures = {phase: _best(r) for phase, r in runs.items()}
        built, bare = figures["build"], figures["bare"]
        # A baseline is only fair if it writes what the build writes (empty files aside): the floors data
        # set by data set, the bare COPY (one file per kind) in total.
        for phase in ("floor", "one_step_floor"):
            if _nonzero(figures[phase]["rows"]) != _nonzero(built["rows"]):
                raise RuntimeError(f"{phase} rows {figures[phase]['rows']} differ from the build's {built['rows']}")
        if _nonzero(bare["rows"]) != _nonzero(_per_file(built["rows"])):
            raise RuntimeError(f"bare rows {bare['rows']} differ from the build's {_per_file(built['rows'])}")
        terms = len(list(data_dir.path.glob("canvas/term=*")))
        labels = {"build": f"CSV build (district + {terms} terms)", "bare": "bare DuckDB COPY of the same rows",
                  "floor": "per-term floor (user lookup, de-duplication, order)",
                  "one_step_floor": "one-step floor (the same, all terms in one DuckDB)"}
        for phase in PHASES:
            f = figures[phase]
            print(f"{labels[phase]}: {f['seconds']} s wall, {f['cpu_seconds']} s CPU, "
                  f"peak RSS {f['peak_rss_mib']} MiB ({f['imports_rss_mib']} MiB of it Python and imports), "
                  f"rows {_per_file(f['rows'])}")
        for phase in ("build", "floor", "one_step_floor"):
            print(f"ratio {phase} / bare COPY: {figures[phase]['seconds'] / bare['seconds']:.2f} wall, "
                  f"{figures[phase]['cpu_seconds'] / bare['cpu_seconds']:.2f} CPU" + (" (goal <= 1.5)" if phase == "build" else ""))
    finally:
        if not args.work_dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
