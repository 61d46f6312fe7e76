"""The demo provider's writable state: a roster overlay and the gradebook, in SQLite.

The overlay holds changes on top of the read-only source: a generated record replaced, dropped, or a
new record added. Gradebook writes (categories, lineItems, results) are overlay rows like any other,
so one mechanism serves every collection. State is read through SQLite on every request: several
provider processes sharing one state file (Dagster runs each step in its own process) see each other's
writes at once. Only the immutable source may be cached.

Effective collection order: the source's records in index order (replaced ones in place, dropped ones
skipped), then added records in the order they were first written.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pipeline.demo.source import REF_FIELDS, RosterSource, Selection, record_kind, ref_id

REF_COLUMNS = {"class": "ref_class", "lineItem": "ref_line_item", "student": "ref_student"}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS overlay (
    entity TEXT NOT NULL,
    sourcedId TEXT NOT NULL,
    idx INTEGER,            -- the source index this row replaces or drops; NULL for an added record
    kind TEXT,
    ref_class TEXT,
    ref_line_item TEXT,
    ref_student TEXT,
    record TEXT,            -- JSON; NULL marks a dropped source record
    seq INTEGER NOT NULL,   -- first-write order of added records
    PRIMARY KEY (entity, sourcedId)
);
CREATE INDEX IF NOT EXISTS overlay_changed ON overlay (entity, idx) WHERE idx IS NOT NULL;
CREATE INDEX IF NOT EXISTS overlay_added ON overlay (entity, seq) WHERE idx IS NULL;
CREATE INDEX IF NOT EXISTS overlay_class ON overlay (entity, ref_class);
CREATE INDEX IF NOT EXISTS overlay_line_item ON overlay (entity, ref_line_item);
CREATE INDEX IF NOT EXISTS overlay_student ON overlay (entity, ref_student);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_SCAN_CHUNK = 1000


def now_iso() -> str:
    """dateLastModified for a write: UTC, milliseconds, Z."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class DemoStore:
    """Source + overlay = what the provider serves. Thread-safe; one SQLite connection per store."""

    def __init__(self, source: RosterSource, state_path: str | Path | None = None):
        self.source = source
        self.href_base = ""  # the provider's base URL, set by the server once it knows its port
        self._lock = threading.Lock()
        if state_path is None:
            self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        else:
            Path(state_path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(state_path), check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._db.executescript(_SCHEMA)
            self._reindex_if_source_changed()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _reindex_if_source_changed(self) -> None:
        """Overlay rows remember the source index they replace; a different source (another district
        size or seed on the same state file) moves those indexes, so recompute them from sourcedIds."""
        fingerprint = getattr(self.source, "fingerprint", type(self.source).__name__)
        row = self._db.execute("SELECT value FROM meta WHERE key='source'").fetchone()
        if row and row[0] == fingerprint:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            rows = self._db.execute("SELECT entity, sourcedId FROM overlay").fetchall()
            for entity, sourced_id in rows:
                idx = self.source.index_of(entity, sourced_id)
                self._db.execute(
                    "UPDATE overlay SET idx=? WHERE entity=? AND sourcedId=?", (idx, entity, sourced_id)
                )
            self._db.execute("DELETE FROM overlay WHERE idx IS NULL AND record IS NULL")
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('source', ?)", (fingerprint,))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    # --- reads ------------------------------------------------------------------------------------
    def get(self, entity: str, sourced_id: str) -> dict[str, Any] | None:
        """The effective record, or None if it does not exist (or was dropped)."""
        with self._lock:
            row = self._db.execute(
                "SELECT record FROM overlay WHERE entity=? AND sourcedId=?", (entity, sourced_id)
            ).fetchone()
        if row is not None:
            return None if row[0] is None else json.loads(row[0])
        idx = self.source.index_of(entity, sourced_id)
        return None if idx is None else self.source.record(entity, idx, self.href_base)

    def page(
        self, selection: Selection, offset: int, limit: int, predicate: Callable[[dict], bool] | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """Records [offset, offset+limit) of the selection and the selection's total, without a scan
        when the source can address the selection by index.

        `predicate` (a filter) is only allowed when `uniform_verdict(predicate)` is not None: it is then
        decided once for every unchanged source record and tested on changed and added records only.
        """
        seq, changes = self._source_part(selection)
        if predicate is not None and not self.uniform_verdict(predicate):
            seq = [idx for idx in sorted(changes) if changes[idx][1] is not None and _contains(seq, idx)]
        hidden = self._hidden_positions(seq, changes, predicate)
        generated_total = len(seq) - len(hidden)
        if predicate is None:
            where, params = self._added_where(selection)
            with self._lock:
                added_total = self._db.execute(f"SELECT count(*) FROM overlay WHERE {where}", params).fetchone()[0]
        else:
            matching = [r for r in self._iter_added(selection) if predicate(r)]
            added_total = len(matching)
        records: list[dict[str, Any]] = []
        if offset < generated_total:
            pos = _first_visible(offset, hidden)
            while pos < len(seq) and len(records) < limit:
                if not _is_hidden(pos, hidden):
                    records.append(self._source_record(selection.entity, seq[pos], changes))
                pos += 1
        if len(records) < limit and offset + len(records) < generated_total + added_total:
            start, count = max(0, offset - generated_total), limit - len(records)
            if predicate is None:
                records.extend(self._added(selection, start, count))
            else:
                records.extend(matching[start : start + count])
        return records, generated_total + added_total

    def uniform_verdict(self, predicate: Callable[[dict], bool]) -> bool | None:
        """What `predicate` says of every unchanged source record, when it only reads fields the source
        gives one value everywhere (the district's dateLastModified: a delta read needs no scan)."""
        uniform = getattr(self.source, "uniform_fields", {})
        fields = getattr(predicate, "fields", None)
        if not fields or not fields <= uniform.keys():
            return None
        return bool(predicate(dict(uniform)))

    def iter_all(self, selection: Selection) -> Iterator[dict[str, Any]]:
        """Every record of the selection, in collection order (for filters and sorts)."""
        seq, changes = self._source_part(selection)
        hidden = set(self._hidden_positions(seq, changes))
        for pos, idx in enumerate(seq):
            if pos not in hidden:
                yield self._source_record(selection.entity, idx, changes)
        yield from self._iter_added(selection)

    def _iter_added(self, selection: Selection) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            chunk = self._added(selection, offset, _SCAN_CHUNK)
            yield from chunk
            if len(chunk) < _SCAN_CHUNK:
                return
            offset += len(chunk)

    def class_enrollments(self, class_id: str) -> list[dict[str, Any]]:
        """Effective enrollments in one class: the source's (changes applied) plus added ones."""
        with self._lock:
            changes = self._changes("enrollments")
        found = [
            self._source_record("enrollments", idx, changes)
            for idx in self.source.enrollment_indexes_for_class(class_id)
            if not _dropped(changes, idx)
        ]
        found = [r for r in found if ref_id(r, "class") == class_id]
        found.extend(self._added(Selection("enrollments", refs=(("class", frozenset({class_id})),)), 0, 1 << 30))
        return found

    def _source_part(self, selection: Selection) -> tuple[Sequence[int], dict[int, tuple[str | None, str | None]]]:
        with self._lock:
            changes = self._changes(selection.entity)
        seq = self.source.indexes(selection)
        if seq is None:  # only a scan can tell which source records belong: judge their effective versions
            seq = [
                idx
                for idx in range(self.source.count(selection.entity))
                if not _dropped(changes, idx)
                and selection.matches(self._source_record(selection.entity, idx, changes))
            ]
            changes = {idx: change for idx, change in changes.items() if change[1] is not None}
        return seq, changes

    def _changes(self, entity: str) -> dict[int, tuple[str | None, str | None]]:
        """{source index: (kind, record JSON or None if dropped)}; caller holds the lock."""
        rows = self._db.execute(
            "SELECT idx, kind, record FROM overlay WHERE entity=? AND idx IS NOT NULL", (entity,)
        ).fetchall()
        return {idx: (kind, record) for idx, kind, record in rows}

    @staticmethod
    def _hidden_positions(seq: Sequence[int], changes, predicate: Callable[[dict], bool] | None = None) -> list[int]:
        """Positions in `seq` of dropped source records (and of replaced ones `predicate` rejects), ascending."""
        hidden = []
        for idx, (_, record) in changes.items():
            if record is None or (predicate is not None and not predicate(json.loads(record))):
                pos = bisect.bisect_left(seq, idx)
                if pos < len(seq) and seq[pos] == idx:
                    hidden.append(pos)
        return sorted(hidden)

    def _source_record(self, entity: str, idx: int, changes) -> dict[str, Any]:
        change = changes.get(idx)
        if change is not None and change[1] is not None:
            return json.loads(change[1])
        return self.source.record(entity, idx, self.href_base)

    @staticmethod
    def _added_where(selection: Selection) -> tuple[str, list[Any]]:
        where = ["entity=?", "idx IS NULL", "record IS NOT NULL"]
        params: list[Any] = [selection.entity]
        if selection.kinds is not None:
            where.append(f"kind IN ({','.join('?' * len(selection.kinds))})")
            params.extend(sorted(selection.kinds))
        for field, ids in selection.refs:
            where.append(f"{REF_COLUMNS[field]} IN ({','.join('?' * len(ids))})")
            params.extend(sorted(ids))
        return " AND ".join(where), params

    def _added(self, selection: Selection, offset: int, limit: int) -> list[dict[str, Any]]:
        where, params = self._added_where(selection)
        with self._lock:
            rows = self._db.execute(
                f"SELECT record FROM overlay WHERE {where} ORDER BY seq LIMIT ? OFFSET ?", [*params, limit, offset]
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    # --- writes -------------------------------------------------------------------------------------
    def upsert_record(self, entity: str, record: dict[str, Any], *, touch: bool = True) -> bool:
        """Create or replace a record (dateLastModified bumped to now unless touch=False).
        Returns True if it was created, False if it replaced an existing one."""
        return self.upsert_records(entity, [record], touch=touch)[0]

    def upsert_records(self, entity: str, records: Iterable[dict[str, Any]], *, touch: bool = True) -> list[bool]:
        created = []
        with self._lock, self._transaction():
            for record in records:
                sourced_id = record.get("sourcedId")
                if not isinstance(sourced_id, str) or not sourced_id:
                    raise ValueError(f"{entity} record without a sourcedId: cannot store it")
                if touch:
                    record = {**record, "dateLastModified": now_iso()}
                idx = self.source.index_of(entity, sourced_id)
                row = self._db.execute(
                    "SELECT record FROM overlay WHERE entity=? AND sourcedId=?", (entity, sourced_id)
                ).fetchone()
                existed = (row[0] is not None) if row is not None else idx is not None
                refs = [ref_id(record, field) for field in REF_FIELDS]
                self._db.execute(
                    "INSERT INTO overlay (entity, sourcedId, idx, kind, ref_class, ref_line_item, ref_student, record, seq)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, (SELECT coalesce(max(seq), 0) + 1 FROM overlay))"
                    " ON CONFLICT (entity, sourcedId) DO UPDATE SET kind=excluded.kind, ref_class=excluded.ref_class,"
                    " ref_line_item=excluded.ref_line_item, ref_student=excluded.ref_student, record=excluded.record",
                    (entity, sourced_id, idx, record_kind(record), *refs, json.dumps(record, ensure_ascii=False)),
                )
                created.append(not existed)
        return created

    def drop_record(self, entity: str, sourced_id: str) -> bool:
        """Remove a record from the collection (not a tobedeleted mark: it is simply gone).
        Returns False if there was no such record."""
        return self.drop_records(entity, [sourced_id]) == 1

    def drop_records(self, entity: str, sourced_ids: Iterable[str]) -> int:
        dropped = 0
        with self._lock, self._transaction():
            for sourced_id in sourced_ids:
                row = self._db.execute(
                    "SELECT record FROM overlay WHERE entity=? AND sourcedId=?", (entity, sourced_id)
                ).fetchone()
                idx = self.source.index_of(entity, sourced_id)
                if row is not None and row[0] is None:
                    continue
                if idx is None:
                    dropped += self._db.execute(
                        "DELETE FROM overlay WHERE entity=? AND sourcedId=?", (entity, sourced_id)
                    ).rowcount
                    continue
                self._db.execute(
                    "INSERT INTO overlay (entity, sourcedId, idx, record, seq) VALUES (?, ?, ?, NULL, 0)"
                    " ON CONFLICT (entity, sourcedId) DO UPDATE SET record=NULL, kind=NULL,"
                    " ref_class=NULL, ref_line_item=NULL, ref_student=NULL",
                    (entity, sourced_id, idx),
                )
                dropped += 1
        return dropped

    def set_status(self, entity: str, sourced_id: str, status: str) -> dict[str, Any]:
        """Change a record's status (e.g. to tobedeleted), bumping dateLastModified; returns the record."""
        record = self.get(entity, sourced_id)
        if record is None:
            raise KeyError(f"no {entity} record {sourced_id!r}")
        record["status"] = status
        self.upsert_record(entity, record)
        return self.get(entity, sourced_id)

    def _transaction(self):
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): writers from several processes queue on the file lock."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self):
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb):
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")


def _contains(seq: Sequence[int], idx: int) -> bool:
    pos = bisect.bisect_left(seq, idx)
    return pos < len(seq) and seq[pos] == idx


def _dropped(changes: dict[int, tuple[str | None, str | None]], idx: int) -> bool:
    return idx in changes and changes[idx][1] is None


def _first_visible(offset: int, hidden: list[int]) -> int:
    """The position of the `offset`-th visible record: the least p with p - #hidden(<=p) == offset."""
    pos = offset
    while True:
        moved = offset + bisect.bisect_right(hidden, pos)
        if moved == pos:
            return pos
        pos = moved


def _is_hidden(pos: int, hidden: list[int]) -> bool:
    i = bisect.bisect_left(hidden, pos)
    return i < len(hidden) and hidden[i] == pos
