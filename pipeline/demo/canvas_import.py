"""SIS import lifecycle in the demo Canvas: create, advance over polls, and apply with Canvas's semantics.

An import is stored at POST time (`created`); each poll advances it (`importing`, progress rising) and the
poll that reaches `polls_to_finish` applies it in one transaction, after any earlier pending import (Canvas
runs an account's imports one at a time, in order). Applying = file-level checks, diffing against the
data set's previous import, `canvas_rules` row checks against the current state, then the accepted rows in
Canvas's processing order, then batch-mode cleanup.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import sqlite3
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

from pipeline.canvas_rules import (
    DIFFING_FIELDS, ParsedFile, ParsedImport, Violation, parse_import, rejected_rows, validate_parsed,
)
from pipeline.demo import canvas_apply
from pipeline.demo.canvas_state import existing_ids

TERMINAL_STATES = frozenset({"imported", "imported_with_messages", "failed", "failed_with_messages", "aborted"})
DROP_STATUSES = ("deleted", "completed", "inactive", "deleted_last_completed")
USER_REMOVE_STATUSES = ("deleted", "suspended")
BATCH_DROP_STATUSES = ("deleted", "completed", "inactive")
MAX_CONSECUTIVE_EXCEEDANCES = 5
APPLY_CLAIM_STALE_SECONDS = 600
MESSAGES_IN_OBJECT = 50  # the SisImport object lists the first messages; the errors API pages all of them
COUNT_KEYS = {
    "change_sis_id": "change_sis_ids", "account": "accounts", "term": "terms", "abstract_course": "abstract_courses",
    "course": "courses", "section": "sections", "xlist": "xlists", "user": "users", "login": "logins",
    "enrollment": "enrollments", "admin": "admins", "group_category": "group_categories", "group": "groups",
    "group_membership": "group_memberships", "grade_publishing_results": "grade_publishing_results",
    "user_observer": "user_observers",
}


@dataclass(frozen=True)
class ImportOptions:
    """The POST parameters that change how an import is applied (already validated by the API)."""

    import_type: str = "instructure_csv"
    batch_mode: bool = False
    batch_mode_term_id: int | None = None
    multi_term_batch_mode: bool = False
    batch_mode_enrollment_drop_status: str = "deleted"
    skip_deletes: bool = False
    override_sis_stickiness: bool = False
    add_sis_stickiness: bool = False
    clear_sis_stickiness: bool = False
    diffing_data_set_identifier: str | None = None
    diffing_remaster_data_set: bool = False
    diffing_drop_status: str = "deleted"
    diffing_user_remove_status: str = "deleted"
    change_threshold: int | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ImportOptions:
        return cls(**json.loads(text))


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def create_import(conn: sqlite3.Connection, account_id: int, options: ImportOptions, files: dict[str, bytes],
                  upload_error: str | None) -> int:
    """Store an upload as a `created` import; call inside a transaction."""
    forced = conn.execute("DELETE FROM demo_settings WHERE key = 'fail_next_import' RETURNING value").fetchone()
    stamp = now_iso()
    data = {"import_type": options.import_type, "supplied_batches": [], "counts": {},
            "downloadable_attachment_ids": [], "running_immediately": True}
    cursor = conn.execute(
        "INSERT INTO sis_imports (account_id, created_at, updated_at, workflow_state, params, data, "
        "diffing_data_set_identifier, upload_error, forced_failure) VALUES (?, ?, ?, 'created', ?, ?, ?, ?, ?)",
        (account_id, stamp, stamp, options.to_json(), json.dumps(data), options.diffing_data_set_identifier,
         upload_error, forced[0] if forced else None))
    import_id = cursor.lastrowid
    conn.executemany("INSERT INTO sis_import_files (sis_import_id, name, content) VALUES (?, ?, ?)",
                     [(import_id, name, content) for name, content in files.items()])
    return import_id


def advance(conn: sqlite3.Connection, import_id: int, polls_to_finish: int, *, count_poll: bool) -> bool:
    """One poll of an import: more progress, or (from `polls_to_finish` on) a claim to apply it.

    Returns True when this caller has claimed the import and must run `apply_pending` (in its own
    transaction, so polls keep being answered while a large import is applied). A claim whose applier
    vanished is taken over after APPLY_CLAIM_STALE_SECONDS.
    """
    row = conn.execute("SELECT workflow_state, polls, progress, applying_since FROM sis_imports WHERE id = ?",
                       (import_id,)).fetchone()
    if row is None or row["workflow_state"] in TERMINAL_STATES:
        return False
    polls = row["polls"] + (1 if count_poll else 0)
    now = time.time()
    if polls < polls_to_finish:
        conn.execute("UPDATE sis_imports SET polls = ?, workflow_state = 'importing', progress = ?, updated_at = ? "
                     "WHERE id = ?", (polls, polls * 100 // polls_to_finish, now_iso(), import_id))
        return False
    claimed = row["applying_since"] is not None and now - row["applying_since"] < APPLY_CLAIM_STALE_SECONDS
    conn.execute("UPDATE sis_imports SET polls = ?, workflow_state = 'importing', progress = ?, updated_at = ?, "
                 "applying_since = ? WHERE id = ?",
                 (polls, max(row["progress"], 90), now_iso(), row["applying_since"] if claimed else now, import_id))
    return not claimed


def needs_advancing(conn: sqlite3.Connection, import_id: int) -> bool:
    """False for a finished import or one another poll is applying: such a poll only reads, so it never
    waits for the write lock an import being applied holds."""
    row = conn.execute("SELECT workflow_state, applying_since FROM sis_imports WHERE id = ?", (import_id,)).fetchone()
    if row is None or row["workflow_state"] in TERMINAL_STATES:
        return False
    return row["applying_since"] is None or time.time() - row["applying_since"] >= APPLY_CLAIM_STALE_SECONDS


def apply_pending(conn: sqlite3.Connection, import_id: int, auto_seed: int | None) -> None:
    """Apply the import and any earlier one still pending (Canvas runs an account's imports in order)."""
    for pending in conn.execute("SELECT id FROM sis_imports WHERE id <= ? AND workflow_state IN "
                                "('created', 'importing') ORDER BY id", (import_id,)).fetchall():
        _run(conn, pending["id"], auto_seed)


def fail_import(conn: sqlite3.Connection, import_id: int, message: str) -> None:
    """Record an import the demo could not apply (a bug, not bad data) as failed, so no client waits forever."""
    conn.execute("INSERT INTO sis_import_errors (sis_import_id, file, message, failure) VALUES (?, '', ?, 1)",
                 (import_id, message))
    conn.execute("UPDATE sis_imports SET workflow_state = 'failed_with_messages', ended_at = ?, updated_at = ? "
                 "WHERE id = ?", (now_iso(), now_iso(), import_id))


def fail_next_import(conn: sqlite3.Connection, message: str) -> None:
    conn.execute("INSERT OR REPLACE INTO demo_settings (key, value) VALUES ('fail_next_import', ?)", (message,))


class _Outcome:
    """Messages, counts and statistics collected while one import runs."""

    def __init__(self, conn: sqlite3.Connection, import_id: int):
        self.conn, self.import_id = conn, import_id
        self.counts: Counter[str] = Counter()
        self.stats: dict[str, Counter[str]] = defaultdict(Counter)
        self.failed = False
        self.messages = 0
        self.failures = 0
        self.threshold_exceeded = False
        self.diffed_against: int | None = None
        self.supplied: list[str] = []

    def add(self, file: str | None, message: str, *, failure: bool, row: int | None = None,
            row_info: str | None = None) -> None:
        self.messages += 1
        self.failures += int(failure)
        self.conn.execute("INSERT INTO sis_import_errors (sis_import_id, file, message, row, row_info, failure) "
                          "VALUES (?, ?, ?, ?, ?, ?)", (self.import_id, file, message, row, row_info, int(failure)))

    def fail(self, message: str) -> None:
        self.failed = True
        if message:
            self.add("", message, failure=True)


def _run(conn: sqlite3.Connection, import_id: int, auto_seed: int | None) -> None:
    row = conn.execute("SELECT * FROM sis_imports WHERE id = ?", (import_id,)).fetchone()
    options = ImportOptions.from_json(row["params"])
    outcome = _Outcome(conn, import_id)
    if row["forced_failure"] is not None:
        outcome.fail(row["forced_failure"])
    elif row["upload_error"]:
        outcome.fail(row["upload_error"])
    else:
        _apply(conn, import_id, options, outcome, auto_seed)
    _finish(conn, row, options, outcome)


def _apply(conn: sqlite3.Connection, import_id: int, options: ImportOptions, outcome: _Outcome,
           auto_seed: int | None) -> None:
    files = dict(conn.execute("SELECT name, content FROM sis_import_files WHERE sis_import_id = ?", (import_id,)))
    parsed = parse_import(files)
    for finding in parsed.file_violations:
        outcome.add(finding.file, finding.message, failure=finding.severity == "error")
    outcome.supplied = parsed.supplied_types
    if parsed.failed:
        outcome.failed = True  # a broken file fails the import before anything is applied
        return
    identifier = options.diffing_data_set_identifier
    if identifier and not options.diffing_remaster_data_set:
        exceeded = conn.execute("SELECT consecutive_exceedances FROM diffing_data_sets WHERE identifier = ?",
                                (identifier,)).fetchone()
        if exceeded and exceeded[0] >= MAX_CONSECUTIVE_EXCEEDANCES:
            outcome.fail(f"The change_threshold of data set {identifier} was exceeded {exceeded[0]} consecutive "
                         f"times; imports of it fail until one sets diffing_remaster_data_set")
            return
        parsed = _diff(conn, parsed, options, outcome)
    if options.skip_deletes:
        parsed = _filter_rows(parsed, lambda f, values: not _status_of(f, values).startswith("deleted"))
    violations = validate_parsed(parsed, existing_ids(conn))
    canvas_violations = [v for v in violations if v.source == "canvas"]
    _record_row_findings(parsed, canvas_violations, outcome)
    rejected = rejected_rows(canvas_violations)
    applier = canvas_apply.Applier(conn, import_id, outcome.stats)
    for file_type, group in parsed.by_type():
        if not canvas_apply.applies(file_type):
            for parsed_file in group:
                outcome.add(parsed_file.name, f"Skipping {file_type} file: the demo Canvas does not apply "
                                              f"{COUNT_KEYS[file_type]} imports", failure=False)
            continue
        for parsed_file in group:
            for row_number, values in parsed_file.rows():
                if (parsed_file.name, row_number) in rejected:
                    continue
                error = applier.apply(file_type, values)
                for message in [error] if error else applier.warnings:
                    outcome.add(parsed_file.name, message, failure=False, row=row_number, row_info=_row_info(values))
                if not error:
                    outcome.counts[COUNT_KEYS[file_type]] += 1
    if options.batch_mode:
        _batch_cleanup(conn, import_id, options, outcome)
    canvas_apply.after_import(conn, auto_seed)


def _status_of(parsed_file: ParsedFile, values: tuple[str | None, ...]) -> str:
    index = parsed_file.column_index().get("status")
    value = values[index] if index is not None and index < len(values) else None
    return (value or "").lower()


def _filter_rows(parsed: ParsedImport, keep) -> ParsedImport:
    files = tuple(dataclasses.replace(f, records=tuple((n, v) for n, v in f.records if keep(f, v)))
                  for f in parsed.files)
    return dataclasses.replace(parsed, files=files)


def _row_info(values: dict | tuple) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(
        ["" if v is None else v for v in (values.values() if isinstance(values, dict) else values)])
    return buffer.getvalue()


def _record_row_findings(parsed: ParsedImport, violations: list[Violation], outcome: _Outcome) -> None:
    wanted = {(v.file, v.row) for v in violations}
    raw = {(f.name, n): v for f in parsed.files for n, v in f.records if (f.name, n) in wanted}
    for v in violations:
        values = raw.get((v.file, v.row))
        outcome.add(v.file, v.message, failure=False, row=v.row,
                    row_info=_row_info(values) if values is not None else None)


def _diff(conn: sqlite3.Connection, parsed: ParsedImport, options: ImportOptions, outcome: _Outcome) -> ParsedImport:
    """Canvas's CSV diffing: per file name, only changed rows plus drop rows for missing records.

    The base is the data set's last import that was applied as a diff or remaster: an import that exceeded
    change_threshold was applied without drops, so the next one is still compared with the older base.
    """
    previous = conn.execute(
        "SELECT id FROM sis_imports WHERE diffing_data_set_identifier = ? AND workflow_state IN "
        "('imported', 'imported_with_messages') AND diffing_threshold_exceeded = 0 AND id < ? "
        "ORDER BY id DESC LIMIT 1",
        (options.diffing_data_set_identifier, outcome.import_id)).fetchone()
    if previous is None:
        return parsed
    outcome.diffed_against = previous["id"]
    previous_files = dict(conn.execute("SELECT name, content FROM sis_import_files WHERE sis_import_id = ?",
                                       (previous["id"],)))
    diffed = []
    for current in parsed.files:
        before = parse_import({current.name: previous_files[current.name]}).files \
            if current.name in previous_files else ()
        if not before or before[0].header != current.header or current.file_type not in DIFFING_FIELDS:
            diffed.append(current)
            continue
        old = before[0]
        if options.change_threshold is not None and _exceeds(len(old.records), len(current.records),
                                                             options.change_threshold):
            outcome.threshold_exceeded = True
            diffed.append(current)
            continue
        diffed.append(_diff_file(old, current, options))
    return dataclasses.replace(parsed, files=tuple(diffed))


def _exceeds(previous_rows: int, current_rows: int, threshold: int) -> bool:
    if previous_rows == 0:
        return current_rows > 0
    return abs(1 - current_rows / previous_rows) * 100 > threshold


def _diff_file(old: ParsedFile, current: ParsedFile, options: ImportOptions) -> ParsedFile:
    index = current.column_index()
    key_positions = [index[c] for c in DIFFING_FIELDS[current.file_type] if c in index]
    width = len(current.header)

    def key(values: tuple) -> tuple:
        return tuple(values[i] if i < len(values) else None for i in key_positions)

    def padded(values: tuple) -> tuple:
        return tuple(values) + (None,) * (width - len(values))

    # Canvas loads each side into a table keyed on the diffing fields, `insert or replace`: the last row
    # of a key wins, on both sides (a guardian of two students keeps one user_observers row).
    old_rows = {key(v): padded(v) for _, v in old.records}
    current_rows = {key(v): (n, v) for n, v in current.records}
    seen = set(current_rows)
    kept = [(n, v) for k, (n, v) in sorted(current_rows.items(), key=lambda item: item[1][0])
            if old_rows.get(k) != padded(v)]
    drop_status = {"enrollment": options.diffing_drop_status,
                   "user": options.diffing_user_remove_status}.get(current.file_type, "deleted")
    status_at = index.get("status")
    next_row = (current.records[-1][0] if current.records else 1) + 1
    for k, values in old_rows.items():
        if k in seen or status_at is None or (values[status_at] or "").lower().startswith("deleted"):
            continue
        dropped = list(values)
        dropped[status_at] = drop_status
        kept.append((next_row, tuple(dropped)))
        next_row += 1
    return dataclasses.replace(current, records=tuple(kept))


def _batch_cleanup(conn: sqlite3.Connection, import_id: int, options: ImportOptions, outcome: _Outcome) -> None:
    """Batch mode: SIS courses, sections and enrollments of the term(s) this import did not touch go away."""
    if options.multi_term_batch_mode:
        terms = [r[0] for r in conn.execute("SELECT id FROM terms WHERE sis_import_id = ?", (import_id,))]
        if not terms:
            outcome.add("", "Terms not found. Terms must be included with multi_term_batch_mode", failure=True)
            return
    else:
        terms = [options.batch_mode_term_id]
    for term_id in terms:
        for kind, label in (("course", "courses"), ("section", "sections"), ("enrollment", "enrollments")):
            if kind not in outcome.supplied:
                continue
            stale, total = canvas_apply.batch_stale(conn, kind, term_id, import_id)
            threshold = options.change_threshold
            if threshold is not None and total and len(stale) * 100 / total > threshold:
                outcome.add("", f"{len(stale)} {label} would be deleted and exceeds the set threshold of "
                                f"{threshold}%", failure=True)
                continue
            status = options.batch_mode_enrollment_drop_status if kind == "enrollment" else "deleted"
            canvas_apply.batch_drop(conn, kind, stale, status, outcome.stats)
            outcome.counts[f"batch_{label}_deleted"] += len(stale)


def _finish(conn: sqlite3.Connection, row: sqlite3.Row, options: ImportOptions, outcome: _Outcome) -> None:
    finished = not outcome.failed
    with_messages = "_with_messages" if outcome.messages else ""
    state = f"imported{with_messages}" if finished else f"failed{with_messages}"
    identifier = options.diffing_data_set_identifier
    if identifier and finished:
        conn.execute(
            "INSERT INTO diffing_data_sets (identifier, consecutive_exceedances) VALUES (?, ?) "
            "ON CONFLICT (identifier) DO UPDATE SET consecutive_exceedances = "
            "CASE WHEN excluded.consecutive_exceedances = 0 THEN 0 ELSE consecutive_exceedances + 1 END",
            (identifier, int(outcome.threshold_exceeded)))
    counts = {key: outcome.counts.get(key, 0) for key in COUNT_KEYS.values()}
    counts.update({k: v for k, v in outcome.counts.items() if k.startswith("batch_")})
    counts["error_count"] = outcome.failures
    counts["warning_count"] = outcome.messages - outcome.failures
    data = json.loads(row["data"])
    data.update(supplied_batches=outcome.supplied, counts=counts,
                completed_importers=[t for t in outcome.supplied if canvas_apply.applies(t)] if finished else [])
    statistics = canvas_apply.statistics_json(outcome.stats)
    stamp = now_iso()
    conn.execute(
        "UPDATE sis_imports SET workflow_state = ?, progress = ?, ended_at = ?, updated_at = ?, data = ?, "
        "statistics = ?, diffed_against_import_id = ?, diffing_threshold_exceeded = ? WHERE id = ?",
        (state, 100 if finished else row["progress"], stamp, stamp, json.dumps(data), json.dumps(statistics),
         outcome.diffed_against, int(outcome.threshold_exceeded), row["id"]))


def sis_import_json(conn: sqlite3.Connection, import_id: int) -> dict | None:
    """The SisImport object of the Canvas API."""
    row = conn.execute("SELECT * FROM sis_imports WHERE id = ?", (import_id,)).fetchone()
    if row is None:
        return None
    options = ImportOptions.from_json(row["params"])
    finished = row["workflow_state"] in TERMINAL_STATES

    def messages(failure: int) -> list[list[str]] | None:
        if not finished:
            return None
        found = conn.execute("SELECT file, message FROM sis_import_errors WHERE sis_import_id = ? AND failure = ? "
                             "ORDER BY id LIMIT ?", (import_id, failure, MESSAGES_IN_OBJECT)).fetchall()
        return [[f or "", m] for f, m in found] or None

    files = conn.execute("SELECT name, length(content) FROM sis_import_files WHERE sis_import_id = ? ORDER BY name",
                         (import_id,)).fetchall()
    result = {
        "id": row["id"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "ended_at": row["ended_at"],
        "workflow_state": row["workflow_state"],
        "progress": row["progress"],
        "data": json.loads(row["data"]),
        "statistics": json.loads(row["statistics"]) if finished else None,
        "user": None,
        "errors_attachment": None,
        "csv_attachments": [
            {"id": import_id * 1000 + i, "display_name": name, "filename": name.rsplit("/", 1)[-1], "size": size,
             "content-type": "text/csv"} for i, (name, size) in enumerate(files)],
        "batch_mode": options.batch_mode or None,
        "batch_mode_term_id": options.batch_mode_term_id,
        "multi_term_batch_mode": options.multi_term_batch_mode,
        "skip_deletes": options.skip_deletes,
        "override_sis_stickiness": options.override_sis_stickiness or None,
        "add_sis_stickiness": options.add_sis_stickiness or None,
        "clear_sis_stickiness": options.clear_sis_stickiness or None,
        "diffing_data_set_identifier": options.diffing_data_set_identifier,
        "diffing_remaster": options.diffing_remaster_data_set,
        "diffed_against_import_id": row["diffed_against_import_id"],
        "diffing_drop_status": options.diffing_drop_status if options.diffing_data_set_identifier else None,
        "diffing_threshold_exceeded": bool(row["diffing_threshold_exceeded"]),
        "change_threshold": options.change_threshold,
    }
    warnings, errors = messages(0), messages(1)
    if warnings:
        result["processing_warnings"] = warnings
    if errors:
        result["processing_errors"] = errors
    return result


def sis_import_errors(conn: sqlite3.Connection, import_id: int | None, failures_only: bool) -> list[dict]:
    """SisImportError objects, oldest first."""
    where, params = ["1 = 1"], []
    if import_id is not None:
        where.append("sis_import_id = ?")
        params.append(import_id)
    if failures_only:
        where.append("failure = 1")
    rows = conn.execute(f"SELECT * FROM sis_import_errors WHERE {' AND '.join(where)} ORDER BY id", params).fetchall()
    return [{"sis_import_id": r["sis_import_id"], "file": r["file"], "message": r["message"],
             "row_info": r["row_info"], "row": r["row"]} for r in rows]
