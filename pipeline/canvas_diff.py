"""What an upload would create, change and delete in Canvas: the mass-delete guard and the dry run.

Each CSV of a data set is compared with its copy from the data set's last successful import (the
state Canvas diffs against) in an in-memory DuckDB, matching records on Canvas's identifying columns.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from pipeline.canvas_data_set import KEY_COLUMNS, DataSet
from pipeline.personal_data import mask_record
from pipeline.resources.mapping import sql_text

GUARDED_FILES = frozenset({"users", "user_observers", "courses", "sections", "enrollments"})
DELETED_STATUSES = ["deleted", "deleted_last_completed"]
# Statuses that take a live record out of use without deleting it. A record turning to one counts like
# one that disappears: a feed that suddenly sends every user `suspended` (enabledUser=false) locks
# everyone out as surely as one that drops them; every enrollment turning `inactive` or `completed`
# takes the students out of their courses.
DEACTIVATED_STATUSES: dict[str, list[str]] = {
    "users": ["suspended"],
    "enrollments": ["inactive", "completed"],
}
SAMPLE_PER_CHANGE = 5


@dataclass(frozen=True)
class FileDiff:
    file: str
    rows: int  # records in the current CSV
    created: int
    changed: int
    deleted: int
    unchanged: int
    previously_live: int
    sample: list[dict[str, Any]] = field(default_factory=list)
    # `deleted` counts every live record that would disappear, turn deleted or be suspended/deactivated
    # (DEACTIVATED_STATUSES); the sample calls them "deleted" too.

    @property
    def deleted_percent(self) -> float:
        """Share of the records live in Canvas that this upload would drop, delete, suspend or deactivate."""
        return 100.0 * self.deleted / self.previously_live if self.previously_live else 0.0


@dataclass(frozen=True)
class DataSetDiff:
    data_set: str
    files: list[FileDiff]
    has_baseline: bool

    def totals(self) -> dict[str, int]:
        return {kind: sum(getattr(f, kind) for f in self.files) for kind in ("created", "changed", "deleted", "unchanged")}

    def mass_deletes(self, threshold_percent: float) -> list[FileDiff]:
        """Guarded files whose deletions exceed the threshold share."""
        return [f for f in self.files if f.file in GUARDED_FILES and f.deleted_percent > threshold_percent]


def diff_data_set(data_set: DataSet, *, sample_per_change: int = SAMPLE_PER_CHANGE) -> DataSetDiff:
    """Compare every CSV of `data_set` with the last successfully imported copy."""
    data_set.require_files()
    has_baseline = data_set.last_import() is not None
    conn = duckdb.connect(":memory:")
    try:
        diffs = [
            _diff_file(conn, file, data_set.csv_path(file),
                       data_set.last_imported_path(file) if has_baseline else None, sample_per_change)
            for file in data_set.files
        ]
    finally:
        conn.close()
    return DataSetDiff(data_set=data_set.name, files=diffs, has_baseline=has_baseline)


def _diff_file(conn: duckdb.DuckDBPyConnection, file: str, current: Path, previous: Path | None,
               sample_per_change: int) -> FileDiff:
    header = _header(current)
    keys = [column for column in KEY_COLUMNS[file] if column in header]
    if not keys:
        raise ValueError(f"{current}: none of Canvas's identifying columns {KEY_COLUMNS[file]} is in the header")
    has_previous = previous is not None and previous.is_file()
    conn.execute(sql_text("canvas_diff_changes"), {
        "previous": str(previous if has_previous else current),
        "has_previous": has_previous,
        "current": str(current),
        "key_columns": keys,
        "deleted_statuses": DELETED_STATUSES,
        "deactivated_statuses": DEACTIVATED_STATUSES.get(file, []),
    })
    rows, created, changed, deleted, unchanged, previously_live = conn.execute(sql_text("canvas_diff_counts")).fetchone()
    changed_rows = conn.execute(sql_text("canvas_diff_sample"), {"per_change": sample_per_change}).fetchall()
    sample = [{"change": change, **mask_record(file, json.loads(row_json))} for change, row_json in changed_rows]
    return FileDiff(file=file, rows=rows, created=created, changed=changed, deleted=deleted, unchanged=unchanged,
                    previously_live=previously_live, sample=sample)


def _header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return [column.strip().lower() for column in next(csv.reader(handle), [])]
