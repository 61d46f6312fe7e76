"""The passback ledger: what the SIS has accepted, per sourcedId, and what it rejected and why.

It is what decides what is sent (not the sensor's cursor): an object is sent when its payload hash
differs from the hash the SIS last accepted. One SQLite file per term
(`gradebook/term=<key>/ledger.sqlite`), in WAL mode, so every commit is atomic and survives a killed
process. The writer records acceptances in small batches as they come back: a crash loses at most the
last batch of *records*, and those objects are simply PUT again (same deterministic ids, so no
duplicate).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

LEDGER_FILE = "ledger.sqlite"
SEND_LOCK_FILE = "passback.lock"
COURSES_PER_QUERY = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    sourced_id        TEXT PRIMARY KEY,
    kind              TEXT NOT NULL,      -- category | lineItem | courseGrade | result
    sis_course_id     TEXT,               -- the Canvas course (SIS id) the object came from
    line_item_id      TEXT,               -- results: their lineItem
    canvas_assignment_id INTEGER,         -- assignment lineItems: the Canvas assignment (decides removal)
    accepted_hash     TEXT,               -- payload hash the SIS last accepted (NULL: never / deleted)
    accepted_status   INTEGER,            -- 201 created, 200 replaced
    accepted_at       TEXT,
    rejected_hash     TEXT,               -- payload hash of the last rejected (or held back) attempt
    rejected_status   INTEGER,            -- HTTP status; NULL when held back because a parent was rejected
    rejected_message  TEXT,
    rejected_at       TEXT,
    deleted_at        TEXT
);
CREATE INDEX IF NOT EXISTS items_course ON items (sis_course_id, kind);
CREATE TABLE IF NOT EXISTS courses (
    sis_course_id     TEXT PRIMARY KEY,
    graded_through    TEXT,               -- Canvas graded_at up to which the course's grades are sent (NULL: none yet)
    synced_at         TEXT NOT NULL,      -- when a run last finished sending the course
    run_id            TEXT
);
CREATE TABLE IF NOT EXISTS course_exports (
    sis_course_id     TEXT PRIMARY KEY,
    gathered_at       TEXT NOT NULL,      -- the newest Canvas export of the course a run has begun sending
    run_id            TEXT
);
"""


class AnotherRunSending(RuntimeError):
    """Another passback run of the term holds the term's send lock."""


class NewerGradesSent(RuntimeError):
    """A run began sending a newer Canvas export of some of these courses than this run's."""


@contextlib.contextmanager
def term_send_lock(gradebook_dir: Path, term: str) -> Iterator[None]:
    """Hold the term's exclusive send lock, or fail at once if another passback run holds it.

    An OS lock (flock) on a file beside the ledger, not a Dagster tag limit: runs launched by hand, in
    process or by another instance are held too, and the OS releases it when the holder's process ends,
    however it ends, so a killed run never leaves the term locked."""
    gradebook_dir.mkdir(parents=True, exist_ok=True)
    with open(gradebook_dir / SEND_LOCK_FILE, "a") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AnotherRunSending(
                f"another passback run of term {term} is sending to the SIS now: two runs of a term would PUT the "
                "same objects and the one finishing last could overwrite newer grades; nothing was sent by this "
                "run (its courses are requested again by the sensor, or start a run once the other one ends)"
            ) from None
        yield  # closing the file releases the lock


@dataclass(frozen=True)
class Accepted:
    sourced_id: str
    kind: str
    sis_course_id: str | None
    line_item_id: str | None
    payload_hash: str
    status: int
    canvas_assignment_id: int | None = None


@dataclass(frozen=True)
class Rejected:
    sourced_id: str
    kind: str
    sis_course_id: str | None
    line_item_id: str | None
    payload_hash: str
    status: int | None
    message: str


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


class Ledger:
    """One term's ledger. Not shared between threads: the writer records from its main thread."""

    def __init__(self, path: Path, *, read_only: bool = False):
        self.path = path
        if read_only:
            # A reader (the sensor) never waits for a run's write transaction: WAL lets both proceed.
            self._conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT) so a batch is
        # all-or-nothing and concurrent runs of one term serialise on the write lock instead of failing.
        self._conn = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(items)")}
        if "canvas_assignment_id" not in columns:  # a ledger written before the column existed
            self._conn.execute("ALTER TABLE items ADD COLUMN canvas_assignment_id INTEGER")

    @classmethod
    def for_term(cls, gradebook_dir: Path) -> Ledger:
        return cls(gradebook_dir / LEDGER_FILE)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # --- recording ---------------------------------------------------------------------------------
    def record(self, accepted: Iterable[Accepted] = (), rejected: Iterable[Rejected] = ()) -> None:
        """Record one batch of outcomes in one transaction."""
        now = utc_now()
        with self._transaction() as conn:
            conn.executemany(
                """
                INSERT INTO items (sourced_id, kind, sis_course_id, line_item_id, accepted_hash,
                                   accepted_status, accepted_at, canvas_assignment_id)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (sourced_id) DO UPDATE SET
                    kind = excluded.kind, sis_course_id = excluded.sis_course_id,
                    line_item_id = excluded.line_item_id, accepted_hash = excluded.accepted_hash,
                    canvas_assignment_id = coalesce(excluded.canvas_assignment_id, items.canvas_assignment_id),
                    accepted_status = excluded.accepted_status, accepted_at = excluded.accepted_at,
                    rejected_hash = NULL, rejected_status = NULL, rejected_message = NULL,
                    rejected_at = NULL, deleted_at = NULL
                """,
                [(a.sourced_id, a.kind, a.sis_course_id, a.line_item_id, a.payload_hash, a.status, now,
                  a.canvas_assignment_id) for a in accepted],
            )
            conn.executemany(
                """
                INSERT INTO items (sourced_id, kind, sis_course_id, line_item_id, rejected_hash,
                                   rejected_status, rejected_message, rejected_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (sourced_id) DO UPDATE SET
                    rejected_hash = excluded.rejected_hash, rejected_status = excluded.rejected_status,
                    rejected_message = excluded.rejected_message, rejected_at = excluded.rejected_at
                """,
                [
                    (r.sourced_id, r.kind, r.sis_course_id, r.line_item_id, r.payload_hash, r.status, r.message, now)
                    for r in rejected
                ],
            )

    def record_deleted(self, sourced_ids: Iterable[str]) -> None:
        """The SIS no longer holds these: forget the accepted hash so a reappearance is PUT again."""
        now = utc_now()
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE items SET accepted_hash = NULL, deleted_at = ? WHERE sourced_id = ?",
                [(now, s) for s in sourced_ids],
            )

    def clear_rejections(self, sourced_ids: list[str]) -> None:
        """Forget rejections of objects that no longer exist in Canvas (nothing left to retry)."""
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE items SET rejected_hash = NULL, rejected_status = NULL, rejected_message = NULL, "
                "rejected_at = NULL WHERE sourced_id = ?",
                [(s,) for s in sourced_ids],
            )

    def mark_courses_synced(self, graded_through: dict[str, str | None], run_id: str) -> None:
        """Advance each course's watermark: only called once the run sent everything for the courses.
        The watermark never moves back (a run that gathered earlier but finishes later must not make the
        sensor miss grades it already saw as sent); the ISO texts have one format, so text order is time order."""
        now = utc_now()
        with self._transaction() as conn:
            conn.executemany(
                """
                INSERT INTO courses (sis_course_id, graded_through, synced_at, run_id) VALUES (?, ?, ?, ?)
                ON CONFLICT (sis_course_id) DO UPDATE SET
                    graded_through = CASE WHEN courses.graded_through IS NULL
                                            OR excluded.graded_through > courses.graded_through
                                          THEN excluded.graded_through ELSE courses.graded_through END,
                    synced_at = excluded.synced_at, run_id = excluded.run_id
                """,
                [(course, through, now, run_id) for course, through in graded_through.items()],
            )

    def claim_courses(self, gathered_at: dict[str, str], run_id: str) -> None:
        """Before sending, record that this run sends each course's export gathered at `gathered_at`
        (ISO UTC texts of one format, so text order is time order), or refuse them all, recording
        nothing, when a run already began sending a newer export of any: the re-execution of an old
        failed run would otherwise put its old grades over newer ones. An export as new as the claim
        (the same run re-executed, or two runs of one export) passes."""
        with self._transaction() as conn:
            claimed = dict(self._for_courses(
                "SELECT sis_course_id, gathered_at FROM course_exports WHERE sis_course_id IN ({})", sorted(gathered_at)
            ))
            newer = sorted(c for c, at in gathered_at.items() if c in claimed and claimed[c] > at)
            if newer:
                raise NewerGradesSent(
                    f"a newer passback run of this term already sent newer grades for {len(newer)} courses "
                    f"({', '.join(newer[:10])}{', ...' if len(newer) > 10 else ''}: this run's Canvas export is older "
                    "than theirs): start a new run instead of re-executing this one; nothing was sent"
                )
            conn.executemany(
                """
                INSERT INTO course_exports (sis_course_id, gathered_at, run_id) VALUES (?, ?, ?)
                ON CONFLICT (sis_course_id) DO UPDATE SET gathered_at = excluded.gathered_at, run_id = excluded.run_id
                """,
                [(course, at, run_id) for course, at in gathered_at.items()],
            )

    # --- reading -----------------------------------------------------------------------------------
    def accepted_hashes(self) -> pa.Table:
        """sourced_id → accepted_hash of every object the SIS holds, as Arrow for DuckDB."""
        rows = self._conn.execute(
            "SELECT sourced_id, accepted_hash FROM items WHERE accepted_hash IS NOT NULL"
        ).fetchall()
        ids, hashes = zip(*rows) if rows else ((), ())
        return pa.table({"sourced_id": pa.array(ids, pa.string()), "accepted_hash": pa.array(hashes, pa.string())})

    def _for_courses(self, query: str, sis_course_ids: list[str]) -> list[tuple]:
        """Rows of `query` (ending in `sis_course_id IN ({})`) for these courses, in chunks that stay
        under SQLite's limit on bound parameters."""
        rows: list[tuple] = []
        for start in range(0, len(sis_course_ids), COURSES_PER_QUERY):
            chunk = sis_course_ids[start : start + COURSES_PER_QUERY]
            rows += self._conn.execute(query.format(",".join("?" * len(chunk))), chunk).fetchall()
        return rows

    def accepted_line_items(self, sis_course_ids: list[str]) -> pa.Table:
        """Assignment lineItems this pipeline wrote for these courses, with their Canvas assignment
        (candidates for removal)."""
        rows = self._for_courses(
            "SELECT sourced_id, sis_course_id, canvas_assignment_id FROM items WHERE kind = 'lineItem'"
            " AND accepted_hash IS NOT NULL AND sis_course_id IN ({})",
            sis_course_ids,
        )
        ids, courses, assignments = zip(*rows) if rows else ((), (), ())
        return pa.table({"sourced_id": pa.array(ids, pa.string()), "sis_course_id": pa.array(courses, pa.string()),
                         "canvas_assignment_id": pa.array(assignments, pa.int64())})

    def accepted_results(self, sis_course_ids: list[str]) -> pa.Table:
        """Results the SIS holds for these courses (candidates for removal)."""
        rows = self._for_courses(
            "SELECT sourced_id, sis_course_id FROM items WHERE kind = 'result' AND accepted_hash IS NOT NULL"
            " AND sis_course_id IN ({})",
            sis_course_ids,
        )
        ids, courses = zip(*rows) if rows else ((), ())
        return pa.table({"sourced_id": pa.array(ids, pa.string()), "sis_course_id": pa.array(courses, pa.string())})

    def rejected_ids(self, sis_course_ids: list[str]) -> pa.Table:
        """Objects of these courses with an outstanding rejection."""
        rows = self._for_courses(
            "SELECT sourced_id FROM items WHERE rejected_at IS NOT NULL AND sis_course_id IN ({})", sis_course_ids
        )
        return pa.table({"sourced_id": pa.array([r[0] for r in rows], pa.string())})

    def accepted_results_of(self, line_item_id: str) -> list[str]:
        return [
            r[0]
            for r in self._conn.execute(
                "SELECT sourced_id FROM items WHERE kind = 'result' AND line_item_id = ? AND accepted_hash IS NOT NULL",
                (line_item_id,),
            )
        ]

    def rejections(self, limit: int = 1000) -> list[dict]:
        cursor = self._conn.execute(
            """
            SELECT sourced_id, kind, sis_course_id, rejected_status, rejected_message, rejected_at
            FROM items WHERE rejected_at IS NOT NULL ORDER BY rejected_at DESC, sourced_id LIMIT ?
            """,
            (limit,),
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor]

    def rejection_count(self) -> int:
        return self._conn.execute("SELECT count(*) FROM items WHERE rejected_at IS NOT NULL").fetchone()[0]

    def course_states(self) -> dict[str, tuple[str | None, str | None, int]]:
        """sis_course_id → (graded_through, synced_at, outstanding rejections): what the sensor needs.
        synced_at is None for a course never synced (it only has rejections)."""
        states = {
            course: (through, synced_at, 0)
            for course, through, synced_at in self._conn.execute(
                "SELECT sis_course_id, graded_through, synced_at FROM courses"
            )
        }
        for course, count in self._conn.execute(
            "SELECT sis_course_id, count(*) FROM items WHERE rejected_at IS NOT NULL GROUP BY sis_course_id"
        ):
            through, synced_at, _ = states.get(course, (None, None, 0))
            states[course] = (through, synced_at, count)
        return states

    def counts(self) -> dict[str, int]:
        return {
            kind: count
            for kind, count in self._conn.execute(
                "SELECT kind, count(*) FROM items WHERE accepted_hash IS NOT NULL GROUP BY kind"
            )
        }
