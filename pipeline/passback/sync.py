"""One passback write: the changed set against the ledger, then categories → lineItems → results.

A lineItem whose category the SIS refused, or a result whose lineItem it refused, is held back
(recorded with the reason) and retried on a later run, like the refusal itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pipeline.passback.ledger import Ledger
from pipeline.passback.objects import object_path, scalar, sql_path
from pipeline.passback.writer import KINDS, LINE_ITEM, RESULT, GradebookWriter, Item, PhaseStats
from pipeline.resources.mapping import sql_text
from pipeline.resources.oneroster import OneRosterError

PHASES = {1: "categories", 2: "lineItems", 3: "results"}


@dataclass
class SyncReport:
    unchanged: int = 0
    phases: dict[str, PhaseStats] = field(default_factory=dict)
    orphans: list[tuple[str, str]] = field(default_factory=list)  # (lineItem sourcedId, course)
    deleted_line_items: int = 0
    deleted_results: int = 0
    stale_results_deleted: int = 0  # results whose grade left Canvas's export (cleared, hidden, handed in)
    stale_results_refused: list[tuple[str, str]] = field(default_factory=list)  # (result, the SIS's message)
    courses_synced: int = 0

    def totals(self) -> dict[str, int]:
        keys = ("sent", "created", "replaced", "rejected", "held_back")
        return {k: sum(getattr(p, k) for p in self.phases.values()) for k in keys}


def compute_changes(conn: duckdb.DuckDBPyConnection, objects_dir: Path, ledger: Ledger, sis_course_ids: list[str]) -> int:
    """Build `pending` and `orphan_line_items`; returns how many objects are unchanged."""
    for table in ("categories", "line_items", "results", "sis_assignment_ids", "empty_result_slots"):
        conn.execute(f"CREATE OR REPLACE TEMP VIEW obj_{table} AS SELECT * FROM read_parquet({sql_path(object_path(objects_dir, table))})")
    conn.register("ledger_hashes", ledger.accepted_hashes())
    conn.register("ledger_line_items", ledger.accepted_line_items(sis_course_ids))
    conn.register("ledger_results", ledger.accepted_results(sis_course_ids))
    conn.execute(sql_text("passback_changed"))
    total = sum(scalar(conn, f"SELECT count(*) FROM obj_{t}") for t in ("categories", "line_items", "results"))
    return total - scalar(conn, "SELECT count(*) FROM pending")


def _pending(conn: duckdb.DuckDBPyConnection, phase: int) -> Iterator[Item]:
    reader = conn.sql(
        "SELECT kind, sourced_id, payload, payload_hash, sis_course_id, line_item_id, parent_id, assignment_id "
        "FROM pending WHERE phase = ?",
        params=[phase],
    ).to_arrow_reader(10_000)
    for batch in reader:
        for row in batch.to_pylist():
            yield Item(KINDS[row["kind"]], row["sourced_id"], row["payload"], row["payload_hash"],
                       row["sis_course_id"], row["line_item_id"], row["parent_id"], row["assignment_id"])


def send_changes(
    conn: duckdb.DuckDBPyConnection,
    objects_dir: Path,
    ledger: Ledger,
    writer: GradebookWriter,
    *,
    gathered: dict[str, dt.datetime | None],
    run_id: str,
    delete_line_items: bool,
    log: Callable[[str], None],
) -> SyncReport:
    """Send what changed for the gathered courses (`gathered`: SIS course id → the latest Canvas graded_at
    the export saw in it, the watermark the sensor asks Canvas about next)."""
    courses = sorted(gathered)
    report = SyncReport(unchanged=compute_changes(conn, objects_dir, ledger, courses))
    not_ok: set[str] = set()
    for phase, name in PHASES.items():
        def blocked_by(item: Item) -> str | None:
            if item.parent_id and item.parent_id in not_ok:
                parent = "lineItem" if item.kind is RESULT else "category"
                return f"not sent: its {parent} {item.parent_id} is not in the SIS (rejected)"
            return None

        try:
            stats = writer.put_all(_pending(conn, phase), blocked_by=blocked_by)
        except OneRosterError as exc:
            if phase == 1 and exc.status_code == 403:
                raise OneRosterError(
                    f"the SIS does not accept category writes ({exc}); set PASSBACK_CATEGORY_MODE=match to use its "
                    "existing categories (and PASSBACK_FALLBACK_CATEGORY for assignment groups it has no category for)",
                    endpoint=exc.endpoint, status_code=exc.status_code, status_info=exc.status_info,
                ) from None
            raise
        not_ok |= stats.not_ok
        report.phases[name] = stats
        log(f"{name}: {stats.sent} accepted ({stats.created} created), {stats.rejected} rejected, {stats.held_back} held back")

    stale = [r[0] for r in conn.execute("SELECT sourced_id FROM stale_results ORDER BY ALL").fetchall()]
    if stale:
        removed = list(writer.delete(RESULT, stale, refused=report.stale_results_refused))
        ledger.record_deleted(removed)
        report.stale_results_deleted = len(removed)
        log(f"{len(removed)} results no longer in Canvas's export removed from the SIS"
            + (f"; {len(report.stale_results_refused)} DELETEs refused, first: {report.stale_results_refused[0][1]}"
               if report.stale_results_refused else ""))

    report.orphans = [tuple(r) for r in conn.execute("SELECT sourced_id, sis_course_id FROM orphan_line_items ORDER BY ALL").fetchall()]
    if report.orphans and delete_line_items:
        for line_item_id, _course in report.orphans:
            results = ledger.accepted_results_of(line_item_id)
            deleted = list(writer.delete(RESULT, results))
            ledger.record_deleted(deleted)
            report.deleted_results += len(deleted)
            ledger.record_deleted(list(writer.delete(LINE_ITEM, [line_item_id])))
            report.deleted_line_items += 1
    elif report.orphans:
        log(f"{len(report.orphans)} lineItems left Canvas or 'Sync to SIS'; kept in the SIS (PASSBACK_DELETE_LINE_ITEMS=false)")

    conn.register("ledger_rejected", ledger.rejected_ids(courses))
    gone = [r[0] for r in conn.execute(
        "SELECT sourced_id FROM ledger_rejected EXCEPT "
        "(SELECT sourced_id FROM obj_line_items UNION ALL SELECT sourced_id FROM obj_results)"
    ).fetchall()]
    ledger.clear_rejections(gone)
    ledger.mark_courses_synced(
        {course: at.isoformat(timespec="milliseconds") if at else None for course, at in gathered.items()}, run_id
    )
    report.courses_synced = len(gathered)
    return report
