"""Grade passback assets (per school_term): Canvas gradebook export → OneRoster objects → SIS writes.

One run handles the courses named in its config (the grade-change sensor names the courses that
changed), or every course provisioned in the term. Each run works in its own folder
`gradebook/term=<key>/runs/<root run id>/` (export and objects Parquet), so runs never read each other's
half-written files; a re-execution continues in its root run's folder, and an asset materialized on its
own reads its upstream's latest materialization of the term. The term's ledger
(`gradebook/term=<key>/ledger.sqlite`) is what runs share; one run of a term sends at a time (an OS lock
beside the ledger), and never an export older than one a run already began sending.
"""


import collections
import datetime as dt
import time
import zoneinfo
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from assets.extract import asset_key as oneroster_key
from pipeline.datadir import DataDir, atomic_path, remove_folder
from pipeline.partitions import school_term_partitions
from pipeline.passback.config import PassbackSettings
from pipeline.passback.export import SCHEMAS, export_path, gather, provisioned_courses
from pipeline.passback.ledger import Ledger, term_send_lock
from pipeline.passback.objects import (
    SnapshotPaths,
    bind_inputs,
    build_objects,
    connect,
    fetch_sis_categories,
    object_path,
    write_objects,
)
from pipeline.passback.sync import send_changes
from pipeline.passback.writer import GradebookWriter
from pipeline.resources.canvas import CanvasClient
from pipeline.resources.oneroster import OneRosterClient

GROUP = "gradebook"
EXPORT = dg.AssetKey(["gradebook", "canvas_export"])
OBJECTS = dg.AssetKey(["gradebook", "oneroster_objects"])
PASSBACK = dg.AssetKey(["gradebook", "sis_passback"])
# The ledger's items table (gradebook/term=<key>/ledger.sqlite): what this asset maintains.
LEDGER_SCHEMA = dg.TableSchema(columns=[
    dg.TableColumn(name, kind) for name, kind in (
        ("sourced_id", "string"), ("kind", "string"), ("sis_course_id", "string"), ("line_item_id", "string"),
        ("accepted_hash", "string"), ("accepted_status", "int"), ("accepted_at", "string"),
        ("rejected_hash", "string"), ("rejected_status", "int"), ("rejected_message", "string"),
        ("rejected_at", "string"), ("deleted_at", "string"),
    )
])
# A run in one of these states may still read its folder or write to the SIS.
ACTIVE_RUN_STATUSES = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
                       dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
# Beside the objects: when Canvas was read for each course they came from (sis_passback refuses to send
# an export older than one a run already began sending).
EXPORT_TIMES = "export_times"
RUNS_KEPT = 20  # run folders kept per term for inspection; older ones are removed
ROWS_SHOWN = 100


class GradebookExportConfig(dg.Config):
    courses: list[str] = Field(
        default_factory=list,
        description="SIS ids of the Canvas courses to gather; empty = every course provisioned in the term.",
    )


class OneRosterObjectsConfig(dg.Config):
    as_of: str = Field(
        default="",
        description="YYYY-MM-DD whose grading period course grades go to; empty = today in PASSBACK_TIMEZONE.",
    )


def run_dir(data_dir: DataDir, term: str, run_id: str) -> Path:
    return data_dir.gradebook_dir(term) / "runs" / run_id


def work_dir(context: dg.AssetExecutionContext, data_dir: DataDir) -> Path:
    """The run's folder. A re-execution (e.g. "from failure" in the UI) has a new run id but continues
    its root run: it works in the root run's folder, where the steps that succeeded left their files."""
    return run_dir(data_dir, context.partition_key, context.run.root_run_id or context.run.run_id)


def upstream_dir(context: dg.AssetExecutionContext, data_dir: DataDir, key: dg.AssetKey, name: str) -> Path:
    """Where `key`'s files for this term are: this run's (or its root's) folder when it materialized them,
    else the folder of `key`'s latest materialization of the partition (an asset materialized on its own)."""
    own = work_dir(context, data_dir) / name
    if own.is_dir():
        return own
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[context.partition_key]), limit=1
    ).records
    path = records[0].asset_materialization.metadata.get("path") if records and records[0].asset_materialization else None
    if path is None or not Path(path.value).is_dir():
        raise FileNotFoundError(
            f"{key.to_user_string()} has no files for term {context.partition_key} (this run did not materialize it "
            f"and its latest materialization's folder is gone): materialize {key.to_user_string()} first"
        )
    return Path(path.value)


def active_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return list(instance.get_runs(dg.RunsFilter(statuses=ACTIVE_RUN_STATUSES)))


def prune_old_runs(runs: Path, keep: int, instance: dg.DagsterInstance) -> None:
    """Remove all but the `keep` newest run folders of a term, never the folder of a run still queued or
    going (a long full-term run outlives many short sensor runs; a re-execution works in its root's folder)."""
    if not runs.is_dir():
        return
    in_use = {run.root_run_id or run.run_id for run in active_runs(instance)}
    folders = sorted((p for p in runs.iterdir() if p.is_dir() and p.name not in in_use),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for old in folders[keep:]:
        remove_folder(old)


def _column_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in schema])


def _table(rows: list[dict], columns: list[str]) -> dg.TableMetadataValue:
    return dg.MetadataValue.table(
        records=[dg.TableRecord({c: (None if r.get(c) is None else str(r[c])) for c in columns}) for r in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(c) for c in columns]),
    )


@dg.asset(
    key=EXPORT,
    group_name=GROUP,
    kinds={"canvas", "parquet"},
    partitions_def=school_term_partitions,
    description="Canvas gradebooks of the requested courses (assignments marked Sync to SIS, groups, section "
    "overrides, posted submissions, course scores) as Parquet under gradebook/term=<key>/runs/<run>/export/.",
)
def canvas_export(context: dg.AssetExecutionContext, config: GradebookExportConfig, canvas: CanvasClient,
                  data_dir: DataDir, passback: PassbackSettings) -> dg.MaterializeResult:
    term = context.partition_key
    courses = sorted(set(config.courses)) or provisioned_courses(data_dir, term)
    runs = data_dir.gradebook_dir(term) / "runs"
    prune_old_runs(runs, RUNS_KEPT - 1, context.instance)
    export_dir = work_dir(context, data_dir) / "export"
    started = time.monotonic()
    with canvas.open() as session:
        counts, problems = gather(session, courses, export_dir, comments=passback.send_comments)
        requests = session.stats.requests
    for problem in problems:
        context.log.warning(problem)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": counts["submissions"],
            "dagster/column_schema": _column_schema(SCHEMAS["submissions"]),
            "path": dg.MetadataValue.path(str(export_dir)),
            "courses_requested": len(courses),
            "courses_gathered": counts["courses"],
            "canvas_requests": requests,
            "seconds": round(time.monotonic() - started, 2),
            **{f"rows/{name}": n for name, n in counts.items()},
            "courses_not_gathered": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems[:ROWS_SHOWN]) or "none"),
        }
    )


def _record_export_times(export_dir: Path, objects_dir: Path) -> None:
    times = pq.read_table(export_path(export_dir, "courses"), columns=["sis_course_id", "gathered_at"])
    with atomic_path(object_path(objects_dir, EXPORT_TIMES)) as tmp:
        pq.write_table(times, tmp)


def _export_times(objects_dir: Path) -> dict[str, str]:
    """SIS course id → when the export the objects were computed from read the course (ISO UTC)."""
    path = object_path(objects_dir, EXPORT_TIMES)
    if not path.is_file():
        raise FileNotFoundError(
            f"{objects_dir} does not say when Canvas was read (computed by an older rosterbridge), so it could hold "
            "grades older than the SIS has: start a new run, or materialize gradebook/oneroster_objects again"
        )
    return {row["sis_course_id"]: row["gathered_at"].astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")
            for row in pq.read_table(path).to_pylist()}


def _snapshot(data_dir: DataDir) -> SnapshotPaths:
    paths = data_dir.snapshot_paths(("classes", "academicSessions", "users"))
    return SnapshotPaths(classes=paths["classes"], academic_sessions=paths["academicSessions"], users=paths["users"])


def _lineage(columns: dict[str, list[tuple[dg.AssetKey, str]]]) -> dg.TableColumnLineage:
    return dg.TableColumnLineage(
        deps_by_column={
            column: [dg.TableColumnDep(asset_key=key, column_name=name) for key, name in deps]
            for column, deps in columns.items()
        }
    )


@dg.asset(
    key=OBJECTS,
    group_name=GROUP,
    kinds={"duckdb", "parquet"},
    partitions_def=school_term_partitions,
    deps=[EXPORT, oneroster_key("classes"), oneroster_key("academicSessions"), oneroster_key("users")],
    description="OneRoster 1.1 categories, lineItems (assignments and course grades) and results computed in "
    "DuckDB (assets/sql/passback_*.sql), each with a payload hash; plus what cannot be sent and why.",
)
def oneroster_objects(context: dg.AssetExecutionContext, config: OneRosterObjectsConfig, data_dir: DataDir,
                      passback: PassbackSettings, oneroster: OneRosterClient) -> dg.MaterializeResult:
    export_dir = upstream_dir(context, data_dir, EXPORT, "export")
    objects_dir = work_dir(context, data_dir) / "objects"
    as_of = dt.date.fromisoformat(config.as_of) if config.as_of else dt.datetime.now(zoneinfo.ZoneInfo(passback.timezone)).date()
    sis_categories = None
    if passback.category_mode == "match":
        with oneroster.open() as session:
            sis_categories = fetch_sis_categories(session)
    conn = connect()
    try:
        bind_inputs(conn, export_dir, _snapshot(data_dir), passback, as_of, sis_categories)
        build_objects(conn)
        counts = write_objects(conn, objects_dir)
        _record_export_times(export_dir, objects_dir)
        skipped = conn.execute(
            "SELECT kind, reason, count(*) AS n FROM skipped GROUP BY ALL ORDER BY n DESC, kind, reason"
        ).fetchall()
        kinds = dict(conn.execute("SELECT kind, count(*) FROM line_items GROUP BY kind").fetchall())
    finally:
        conn.close()
    results = pq.read_schema(object_path(objects_dir, "results"))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": counts["results"],
            "dagster/column_schema": _column_schema(results),
            "dagster/column_lineage": _lineage({
                "score": [(EXPORT, "score"), (EXPORT, "current_score"), (EXPORT, "final_score")],
                "student_id": [(EXPORT, "sis_user_id"), (oneroster_key("users"), "sourcedId")],
                "class_sourced_id": [(EXPORT, "sis_section_id"), (oneroster_key("classes"), "sourcedId")],
            }),
            "path": dg.MetadataValue.path(str(objects_dir)),
            "export": dg.MetadataValue.path(str(export_dir)),
            "as_of": str(as_of),
            "categories": counts["categories"],
            "line_items": kinds.get("lineItem", 0),
            "course_grade_line_items": kinds.get("courseGrade", 0),
            "results": counts["results"],
            "skipped": counts["skipped"],
            "skipped_by_reason": _table(
                [{"kind": k, "reason": r, "count": n} for k, r, n in skipped[:ROWS_SHOWN]], ["kind", "reason", "count"]
            ),
        }
    )


@dg.asset(
    key=PASSBACK,
    group_name=GROUP,
    kinds={"oneroster"},
    partitions_def=school_term_partitions,
    deps=[OBJECTS],
    description="PUTs what changed since the SIS last accepted it (categories → lineItems → results), recording "
    "each acceptance or rejection in the term's ledger; rejections are retried on later runs.",
)
def sis_passback(context: dg.AssetExecutionContext, data_dir: DataDir, passback: PassbackSettings,
                 oneroster: OneRosterClient) -> dg.MaterializeResult:
    term = context.partition_key
    objects_dir = upstream_dir(context, data_dir, OBJECTS, "objects")
    gathered = {
        row["sis_course_id"]: row["graded_through"]
        for row in pq.read_table(object_path(objects_dir, "gathered_courses")).to_pylist()
    }
    exported = _export_times(objects_dir)
    gradebook_dir = data_dir.gradebook_dir(term)
    started = time.monotonic()
    # One sending run per term, whoever launched it; and never an export older than one already being sent.
    with term_send_lock(gradebook_dir, term), Ledger.for_term(gradebook_dir) as ledger:
        ledger.claim_courses(exported, context.run.run_id)
        with oneroster.open() as session:
            writer = GradebookWriter(session, ledger, max_concurrency=session.max_concurrency, log=context.log.info)
            with connect() as conn:
                report = send_changes(conn, objects_dir, ledger, writer, gathered=gathered, run_id=context.run.run_id,
                                      delete_line_items=passback.delete_line_items, log=context.log.info)
        rejections = ledger.rejections(ROWS_SHOWN)
        outstanding = ledger.rejection_count()
        held = ledger.counts()
    seconds = time.monotonic() - started
    totals = report.totals()
    metadata: dict[str, Any] = {
        "dagster/row_count": totals["sent"],
        "dagster/column_schema": LEDGER_SCHEMA,
        "dagster/column_lineage": _lineage({
            "sourced_id": [(OBJECTS, "sourced_id")],
            "accepted_hash": [(OBJECTS, "payload_hash")],
            "rejected_hash": [(OBJECTS, "payload_hash")],
        }),
        "ledger": dg.MetadataValue.path(str(gradebook_dir / "ledger.sqlite")),
        "courses": report.courses_synced,
        "unchanged": report.unchanged,
        **{f"sent/{name}": stats.sent for name, stats in report.phases.items()},
        **{f"rejected/{name}": stats.rejected for name, stats in report.phases.items()},
        **totals,
        "writes_per_second": round(totals["sent"] / seconds, 1) if seconds > 0 else 0.0,
        "rejections_outstanding": outstanding,
        "rejections": _table(rejections, ["sourced_id", "kind", "sis_course_id", "rejected_status", "rejected_message", "rejected_at"]),
        "ledger_accepted": dg.MetadataValue.json(held),
        "line_items_gone_from_canvas": len(report.orphans),
        "line_items_deleted": report.deleted_line_items,
        "results_deleted": report.deleted_results,
        "stale_results_deleted": report.stale_results_deleted,
        "stale_results_refused": len(report.stale_results_refused),
    }
    if report.stale_results_refused:
        metadata["stale_results_kept_in_sis"] = dg.MetadataValue.md(
            "Results no longer in Canvas's export whose DELETE the SIS refused (retried next run):\n"
            + "\n".join(f"- {result}: {message}" for result, message in report.stale_results_refused[:ROWS_SHOWN])
        )
    if report.orphans and not passback.delete_line_items:
        by_course = collections.Counter(course for _, course in report.orphans)
        metadata["line_items_kept_in_sis"] = dg.MetadataValue.md(
            "LineItems whose assignment left Canvas or 'Sync to SIS' (PASSBACK_DELETE_LINE_ITEMS=false):\n"
            + "\n".join(f"- {course}: {n}" for course, n in sorted(by_course.items())[:ROWS_SHOWN])
        )
    return dg.MaterializeResult(metadata=metadata)


passback_job = dg.define_asset_job(
    "gradebook_passback",
    selection=dg.AssetSelection.assets(EXPORT, OBJECTS, PASSBACK),
    description="Grade passback for one term: gather the named Canvas courses, compute OneRoster objects, send changes.",
)

defs = dg.Definitions(assets=[canvas_export, oneroster_objects, sis_passback], jobs=[passback_job])
