"""DuckDB: the Canvas export + the OneRoster snapshot → OneRoster categories, lineItems and results.

The SQL lives in assets/sql/passback_*.sql; this module binds its inputs (views over Parquet and one
row of settings) and writes each object table to Parquet with a payload hash.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from pipeline.datadir import atomic_path
from pipeline.passback.config import PassbackSettings
from pipeline.passback.export import SCHEMAS, export_path
from pipeline.resources.mapping import sql_text

OBJECT_TABLES = ("categories", "line_items", "results", "skipped", "gathered_courses", "sis_assignment_ids",
                 "empty_result_slots")
# Tables written as they are: not objects sent to the SIS, so no payload or hash.
PLAIN_TABLES = frozenset({"skipped", "gathered_courses", "sis_assignment_ids", "empty_result_slots"})
TRANSFORM_SQL = ("passback_classes", "passback_line_items", "passback_results", "passback_skipped")


def connect() -> duckdb.DuckDBPyConnection:
    """The step's in-memory DuckDB, in UTC, with the passback macros."""
    conn = duckdb.connect(":memory:")
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute(sql_text("passback_macros"))
    return conn


@dataclass(frozen=True)
class SnapshotPaths:
    classes: Path
    academic_sessions: Path
    users: Path


def sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def fetch_sis_categories(session) -> pa.Table:
    """The SIS's live categories (match mode): what existing category each assignment group maps to.
    Read again once if categories are deleted during the read (offset paging may skip one then)."""
    def live(pages) -> pa.Table:
        ids, titles = [], []
        for page in pages:
            for category in page:
                status = (category.get("status") or "").strip().lower()
                if status not in ("tobedeleted", "inactive") and category.get("sourcedId"):
                    ids.append(category["sourcedId"])
                    titles.append(category.get("title") or "")
        return pa.table({"sourcedId": pa.array(ids, pa.string()), "title": pa.array(titles, pa.string())})

    return session.read_collection("/categories", live, envelope_keys=("categories",))


def bind_inputs(
    conn: duckdb.DuckDBPyConnection,
    export_dir: Path,
    snapshot: SnapshotPaths,
    settings: PassbackSettings,
    as_of: dt.date,
    sis_categories: pa.Table | None = None,
) -> None:
    for name in SCHEMAS:
        conn.execute(f"CREATE OR REPLACE TEMP VIEW export_{name} AS SELECT * FROM read_parquet({sql_path(export_path(export_dir, name))})")
    # As the Canvas transform's rb_deleted: OneRoster 1.0's `inactive`, which the extract keeps, is gone too.
    live = "coalesce(lower(trim(status)) NOT IN ('tobedeleted', 'inactive'), true)"
    conn.execute(
        f"CREATE OR REPLACE TEMP VIEW or_classes AS SELECT sourcedId, termSourcedIds "
        f"FROM read_parquet({sql_path(snapshot.classes)}) WHERE {live}"
    )
    conn.execute(
        f"CREATE OR REPLACE TEMP VIEW or_sessions AS SELECT sourcedId, title, type, startDate, endDate, parentSourcedId "
        f"FROM read_parquet({sql_path(snapshot.academic_sessions)}) WHERE {live}"
    )
    conn.execute(
        f"CREATE OR REPLACE TEMP VIEW or_users AS SELECT sourcedId FROM read_parquet({sql_path(snapshot.users)}) WHERE {live}"
    )
    categories = sis_categories if sis_categories is not None else pa.table(
        {"sourcedId": pa.array([], pa.string()), "title": pa.array([], pa.string())}
    )
    conn.register("sis_categories_arrow", categories)
    conn.execute("CREATE OR REPLACE TEMP TABLE sis_categories AS SELECT sourcedId, title FROM sis_categories_arrow")
    conn.execute(
        """
        CREATE OR REPLACE TEMP TABLE params AS SELECT
            ?::VARCHAR AS ns_hex, ?::VARCHAR AS tz, ?::VARCHAR AS course_score, ?::BOOLEAN AS course_grades,
            ?::VARCHAR AS course_grade_title, ?::VARCHAR AS course_grade_category, ?::VARCHAR AS category_mode,
            ?::VARCHAR AS fallback_category, ?::VARCHAR AS missing_policy, ?::VARCHAR AS undated_policy,
            ?::DATE AS as_of, ?::BOOLEAN AS send_comments
        """,
        [
            settings.namespace_hex, settings.timezone, settings.course_score, settings.course_grades,
            settings.course_grade_title, settings.course_grade_category, settings.category_mode,
            settings.fallback_category, settings.missing, settings.undated_items, as_of, settings.send_comments,
        ],
    )


def build_objects(conn: duckdb.DuckDBPyConnection) -> None:
    for name in TRANSFORM_SQL:
        conn.execute(sql_text(name))


def scalar(conn: duckdb.DuckDBPyConnection, query: str):
    """One value; the result is read to its end, as DuckDB 2 requires before the next statement."""
    return conn.execute(query).fetchall()[0][0]


def object_path(objects_dir: Path, table: str) -> Path:
    return objects_dir / f"{table}.parquet"


def write_objects(conn: duckdb.DuckDBPyConnection, objects_dir: Path) -> dict[str, int]:
    """Each object table to Parquet, payload as text plus its hash (what the ledger compares)."""
    counts = {}
    for table in OBJECT_TABLES:
        columns = "*" if table in PLAIN_TABLES else "* REPLACE (payload::VARCHAR AS payload), md5(payload::VARCHAR) AS payload_hash"
        with atomic_path(object_path(objects_dir, table)) as tmp:
            conn.execute(f"COPY (SELECT {columns} FROM {table}) TO {sql_path(tmp)} (FORMAT parquet)")
        counts[table] = scalar(conn, f"SELECT count(*) FROM {table}")
    return counts
