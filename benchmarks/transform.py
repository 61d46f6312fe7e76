"""Benchmark of the Canvas CSV build for a large district: `python -m benchmarks.run transform [options]`
(or `python -m benchmarks.transform`).

1. Generates a OneRoster snapshot of `--students` students directly as Parquet (DuckDB `range()`,
   written in batches with the schema.py schemas), so it does not depend on the extract step:
   ~600 students per school, 7 classes per student in sections of 25 (a third year-long, a third per
   semester), one teacher per 5 classes, one guardian per student.
2. Builds every Canvas CSV exactly as the assets do (district data set, term discovery, then each
   term's data set in its own in-memory DuckDB), in a child process: wall time and peak RSS.
3. In another child process, a bare DuckDB `COPY` of the same rows from the same Parquet to CSV (no
   mapping, joins, dedup or ordering): the floor the build is compared with (goal: ratio <= 1.5).
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
    """Every Canvas CSV, as the assets build them: {file: rows}."""
    from assets import transform
    from pipeline.partitions import term_partitions

    mapping = MappingSettings()
    rows: dict[str, int] = {}
    with mapping.open_roster_db(data_dir) as conn:
        for file, metadata in transform.build_district(conn, data_dir, mapping):
            rows[file.file_name] = metadata["dagster/row_count"]
        terms = term_partitions(conn)
    for term in terms:
        with mapping.open_roster_db(data_dir, term.sourced_id) as conn:
            for file, metadata in transform.build_term(conn, data_dir, mapping, term.key):
                rows[file.file_name] = rows.get(file.file_name, 0) + metadata["dagster/row_count"]
    return rows


def bare_copy(data_dir: DataDir, out: Path) -> dict:
    """The same rows straight from the Parquet to CSV: projection only."""

    def source(entity: str) -> str:
        return f"read_parquet({sql_literal(str(data_dir.latest_entity_path(entity)))})"

    copies = {
        "accounts.csv": f"SELECT sourcedId, parentSourcedId, name, status FROM {source('orgs')}",
        "terms.csv": f"SELECT sourcedId, title, status, startDate, endDate FROM {source('academicSessions')} WHERE type <> 'gradingPeriod'",
        "users.csv": f"SELECT sourcedId, username, NULL, givenName, familyName, email, status FROM {source('users')} WHERE role <> 'guardian'",
        "courses.csv": f"SELECT sourcedId, classCode, title, schoolSourcedId, termSourcedIds[1], status FROM {source('classes')}",
        "sections.csv": f"SELECT sourcedId, sourcedId, title, status FROM {source('classes')}",
        "enrollments.csv": f"SELECT classSourcedId, classSourcedId, userSourcedId, role, status FROM {source('enrollments')}",
    }
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    with duckdb.connect(":memory:") as conn:
        for name, query in copies.items():
            (rows[name],) = conn.execute(
                f"COPY ({query}) TO {sql_literal(str(out / name))} (FORMAT csv, HEADER true)"
            ).fetchone()
    return rows


def _peak_rss_mib() -> int:
    """This process's peak resident set (VmHWM). Unlike getrusage's ru_maxrss, which Linux carries
    over across exec from the parent, it starts afresh in the child."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _child(phase: str, root: str) -> None:
    """Run one phase in this (fresh) process and print its figures as JSON."""
    data_dir = DataDir(root=root)
    if phase == "build":
        from assets import transform  # noqa: F401  (imported before measuring, like the bare phase's modules)
    imports_mib = _peak_rss_mib()  # interpreter + imports
    started, cpu_started = time.perf_counter(), time.process_time()
    rows = build(data_dir) if phase == "build" else bare_copy(data_dir, Path(root) / "bare")
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


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="benchmarks.transform", description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=500_000)
    parser.add_argument("--work-dir", help="where the snapshot and CSVs go (default: a temporary folder, removed after)")
    parser.add_argument("--phase", choices=("build", "bare"), help=argparse.SUPPRESS)
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
        built = _run_child("build", root)
        bare = _run_child("bare", root)
        terms = len(list(data_dir.path.glob("canvas/term=*")))
        for label, figures in ((f"CSV build (district + {terms} terms)", built), ("bare DuckDB COPY of the same rows", bare)):
            print(f"{label}: {figures['seconds']} s wall, {figures['cpu_seconds']} s CPU, "
                  f"peak RSS {figures['peak_rss_mib']} MiB ({figures['imports_rss_mib']} MiB of it Python and imports), "
                  f"rows {figures['rows']}")
        print(f"ratio build / bare COPY: {built['seconds'] / bare['seconds']:.2f} wall, "
              f"{built['cpu_seconds'] / bare['cpu_seconds']:.2f} CPU (goal <= 1.5)")
    finally:
        if not args.work_dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
