"""The demo Canvas's state: one SQLite database shared by every server process on the same file.

Dagster runs each step in its own process, and each may start its own embedded demo Canvas; they agree
because every read and write goes to SQLite (WAL, busy timeout), and applying an import is one
`BEGIN IMMEDIATE` transaction. `state_path=None` keeps the database in memory for one server.
"""

from __future__ import annotations

import contextlib
import json
import queue
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.canvas_rules import ExistingIds

ROOT_ACCOUNT_ID = 1
DEFAULT_TERM_ID = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id INTEGER PRIMARY KEY, sis_id TEXT UNIQUE, parent_id INTEGER, name TEXT NOT NULL,
    workflow_state TEXT NOT NULL, integration_id TEXT, sis_import_id INTEGER);
CREATE TABLE IF NOT EXISTS terms (
    id INTEGER PRIMARY KEY, sis_id TEXT UNIQUE, name TEXT NOT NULL, workflow_state TEXT NOT NULL,
    start_at TEXT, end_at TEXT, integration_id TEXT, sis_import_id INTEGER);
CREATE TABLE IF NOT EXISTS courses (
    id INTEGER PRIMARY KEY, sis_id TEXT UNIQUE, account_id INTEGER NOT NULL, term_id INTEGER NOT NULL,
    name TEXT NOT NULL, course_code TEXT NOT NULL, workflow_state TEXT NOT NULL, integration_id TEXT,
    start_at TEXT, end_at TEXT, course_format TEXT, grade_passback_setting TEXT,
    apply_assignment_group_weights INTEGER NOT NULL DEFAULT 0, sis_import_id INTEGER);
CREATE TABLE IF NOT EXISTS sections (
    id INTEGER PRIMARY KEY, sis_id TEXT UNIQUE, course_id INTEGER NOT NULL, name TEXT NOT NULL,
    workflow_state TEXT NOT NULL, integration_id TEXT, start_at TEXT, end_at TEXT,
    default_section INTEGER NOT NULL DEFAULT 0, sis_import_id INTEGER);
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY, sis_id TEXT UNIQUE, login_id TEXT NOT NULL, integration_id TEXT UNIQUE,
    name TEXT NOT NULL, sortable_name TEXT NOT NULL, short_name TEXT NOT NULL, email TEXT,
    workflow_state TEXT NOT NULL, sis_import_id INTEGER);
CREATE TABLE IF NOT EXISTS enrollments (
    id INTEGER PRIMARY KEY, course_id INTEGER NOT NULL, section_id INTEGER NOT NULL, user_id INTEGER NOT NULL,
    type TEXT NOT NULL, role TEXT NOT NULL, associated_user_id INTEGER NOT NULL DEFAULT 0,
    workflow_state TEXT NOT NULL, start_at TEXT, end_at TEXT, sis_import_id INTEGER,
    created_by_sis INTEGER NOT NULL DEFAULT 1,
    UNIQUE (section_id, user_id, role, associated_user_id));
CREATE INDEX IF NOT EXISTS enrollments_course ON enrollments (course_id, type);
CREATE INDEX IF NOT EXISTS enrollments_user ON enrollments (user_id);
CREATE TABLE IF NOT EXISTS user_observers (
    observer_id INTEGER NOT NULL, student_id INTEGER NOT NULL, workflow_state TEXT NOT NULL,
    sis_import_id INTEGER, PRIMARY KEY (observer_id, student_id));
CREATE TABLE IF NOT EXISTS sis_imports (
    id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    ended_at TEXT, workflow_state TEXT NOT NULL, progress INTEGER NOT NULL DEFAULT 0,
    polls INTEGER NOT NULL DEFAULT 0, params TEXT NOT NULL, data TEXT NOT NULL DEFAULT '{}',
    statistics TEXT NOT NULL DEFAULT '{}', diffing_data_set_identifier TEXT,
    diffed_against_import_id INTEGER, diffing_threshold_exceeded INTEGER NOT NULL DEFAULT 0,
    upload_error TEXT, forced_failure TEXT, applying_since REAL);
CREATE TABLE IF NOT EXISTS sis_import_files (
    sis_import_id INTEGER NOT NULL, name TEXT NOT NULL, content BLOB NOT NULL, PRIMARY KEY (sis_import_id, name));
CREATE TABLE IF NOT EXISTS sis_import_errors (
    id INTEGER PRIMARY KEY, sis_import_id INTEGER NOT NULL, file TEXT, message TEXT NOT NULL,
    row INTEGER, row_info TEXT, failure INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS sis_import_errors_import ON sis_import_errors (sis_import_id, id);
CREATE TABLE IF NOT EXISTS diffing_data_sets (
    identifier TEXT PRIMARY KEY, consecutive_exceedances INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS demo_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS assignment_groups (
    id INTEGER PRIMARY KEY, course_id INTEGER NOT NULL, name TEXT NOT NULL, position INTEGER NOT NULL,
    group_weight REAL NOT NULL, sis_source_id TEXT);
CREATE TABLE IF NOT EXISTS assignments (
    id INTEGER PRIMARY KEY, course_id INTEGER NOT NULL, assignment_group_id INTEGER NOT NULL,
    name TEXT NOT NULL, position INTEGER NOT NULL, points_possible REAL NOT NULL,
    grading_type TEXT NOT NULL, submission_types TEXT NOT NULL, due_at TEXT, published INTEGER NOT NULL,
    post_to_sis INTEGER NOT NULL, omit_from_final_grade INTEGER NOT NULL DEFAULT 0,
    post_manually INTEGER NOT NULL DEFAULT 0, integration_id TEXT, created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS assignments_course ON assignments (course_id);
CREATE TABLE IF NOT EXISTS assignment_overrides (
    id INTEGER PRIMARY KEY, assignment_id INTEGER NOT NULL, section_id INTEGER NOT NULL,
    due_at TEXT, title TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY, assignment_id INTEGER NOT NULL, user_id INTEGER NOT NULL, score REAL,
    grade TEXT, excused INTEGER NOT NULL DEFAULT 0, missing INTEGER NOT NULL DEFAULT 0,
    late INTEGER NOT NULL DEFAULT 0, workflow_state TEXT NOT NULL, graded_at TEXT, posted_at TEXT,
    submitted_at TEXT, attempt INTEGER, UNIQUE (assignment_id, user_id));
CREATE INDEX IF NOT EXISTS submissions_user ON submissions (user_id);
"""


class CanvasDB:
    """A pool of SQLite connections on one state file (WAL: readers never wait for an import being applied).

    In memory (`state_path=None`) there is exactly one connection, so the pool also serialises threads.
    """

    def __init__(self, state_path: Path | None):
        self.state_path = state_path
        if state_path is not None:
            state_path.parent.mkdir(parents=True, exist_ok=True)
        self._pool: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._pool.put(self._connect())
        self._create_schema()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.state_path) if self.state_path else ":memory:", isolation_level=None,
                               check_same_thread=False, timeout=60.0)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 60000")
        if self.state_path is not None:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        with self._all_lock:
            self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """A connection for this thread's use (autocommit: each statement sees the latest commit)."""
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            conn = self._connect() if self.state_path is not None else self._pool.get()
        try:
            yield conn
        finally:
            self._pool.put(conn)

    def _create_schema(self) -> None:
        with self.transaction() as conn:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            columns = {r[1] for r in conn.execute("PRAGMA table_info(sis_imports)")}
            if "applying_since" not in columns:  # state files written before imports were applied off-request
                conn.execute("ALTER TABLE sis_imports ADD COLUMN applying_since REAL")
            conn.execute(
                "INSERT OR IGNORE INTO accounts (id, sis_id, parent_id, name, workflow_state) "
                "VALUES (?, NULL, NULL, 'Demo Canvas District', 'active')", (ROOT_ACCOUNT_ID,))
            conn.execute(
                "INSERT OR IGNORE INTO terms (id, sis_id, name, workflow_state) VALUES (?, NULL, 'Default Term', 'active')",
                (DEFAULT_TERM_ID,))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: the write lock is taken up front, so two processes never interleave an import."""
        with self.connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def query(self, sql: str, params: tuple | list = ()) -> list[dict[str, Any]]:
        with self.connection() as conn:
            return [dict(r) for r in conn.execute(sql, params).fetchall()]

    def scalar(self, sql: str, params: tuple | list = ()) -> Any:
        with self.connection() as conn:
            row = conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


def existing_ids(conn: sqlite3.Connection) -> ExistingIds:
    """Everything the importer rules need to know about what Canvas already holds."""
    def ids(sql: str) -> set[str]:
        return {r[0] for r in conn.execute(sql)}

    users = conn.execute("SELECT sis_id, login_id, integration_id, workflow_state FROM users WHERE sis_id IS NOT NULL").fetchall()
    return ExistingIds(
        accounts=ids("SELECT sis_id FROM accounts WHERE sis_id IS NOT NULL"),
        terms=ids("SELECT sis_id FROM terms WHERE sis_id IS NOT NULL"),
        courses=ids("SELECT sis_id FROM courses WHERE sis_id IS NOT NULL"),
        sections=ids("SELECT sis_id FROM sections WHERE sis_id IS NOT NULL"),
        users={u[0] for u in users},
        section_course={
            r[0]: r[1] for r in conn.execute(
                "SELECT s.sis_id, c.sis_id FROM sections s JOIN courses c ON c.id = s.course_id "
                "WHERE s.sis_id IS NOT NULL AND c.sis_id IS NOT NULL")
        },
        # Canvas looks a login up among active pseudonyms only: a deleted user's login is free again.
        user_logins={u[1].lower(): u[0] for u in users if u[3] != "deleted"},
        user_integration_ids={u[2]: u[0] for u in users if u[2]},
        deleted_users={u[0] for u in users if u[3] == "deleted"},
    )


class DemoCanvasState:
    """Python reads over the demo Canvas for tests and demos (SIS ids, workflow states, imports)."""

    def __init__(self, db: CanvasDB):
        self.db = db

    def counts(self) -> dict[str, dict[str, int]]:
        """{"users": {"active": 10, "deleted": 1}, "courses": {...}, ...}: rows per workflow state."""
        result: dict[str, dict[str, int]] = {}
        for table in ("accounts", "terms", "courses", "sections", "users", "enrollments", "user_observers"):
            where = " WHERE sis_id IS NOT NULL" if table in {"accounts", "terms", "courses", "sections", "users"} else ""
            rows = self.db.query(f"SELECT workflow_state, COUNT(*) AS n FROM {table}{where} GROUP BY workflow_state")
            result[table] = {r["workflow_state"]: r["n"] for r in rows}
        return result

    def accounts(self) -> list[dict]:
        return self.db.query(
            "SELECT a.id, a.sis_id, a.name, a.workflow_state, p.sis_id AS parent_sis_id "
            "FROM accounts a LEFT JOIN accounts p ON p.id = a.parent_id WHERE a.sis_id IS NOT NULL ORDER BY a.id")

    def terms(self) -> list[dict]:
        return self.db.query("SELECT * FROM terms WHERE sis_id IS NOT NULL ORDER BY id")

    def courses(self) -> list[dict]:
        return self.db.query(
            "SELECT c.*, a.sis_id AS account_sis_id, t.sis_id AS term_sis_id FROM courses c "
            "JOIN accounts a ON a.id = c.account_id JOIN terms t ON t.id = c.term_id ORDER BY c.id")

    def sections(self) -> list[dict]:
        return self.db.query(
            "SELECT s.*, c.sis_id AS course_sis_id FROM sections s JOIN courses c ON c.id = s.course_id ORDER BY s.id")

    def users(self) -> list[dict]:
        return self.db.query("SELECT * FROM users ORDER BY id")

    def enrollments(self, workflow_state: str | None = None) -> list[dict]:
        sql = ("SELECT e.*, u.sis_id AS user_sis_id, c.sis_id AS course_sis_id, s.sis_id AS section_sis_id, "
               "au.sis_id AS associated_user_sis_id FROM enrollments e JOIN users u ON u.id = e.user_id "
               "JOIN courses c ON c.id = e.course_id JOIN sections s ON s.id = e.section_id "
               "LEFT JOIN users au ON au.id = e.associated_user_id")
        if workflow_state is None:
            return self.db.query(sql + " ORDER BY e.id")
        return self.db.query(sql + " WHERE e.workflow_state = ? ORDER BY e.id", (workflow_state,))

    def user_observers(self) -> list[dict]:
        return self.db.query(
            "SELECT o.workflow_state, ob.sis_id AS observer_sis_id, st.sis_id AS student_sis_id FROM user_observers o "
            "JOIN users ob ON ob.id = o.observer_id JOIN users st ON st.id = o.student_id")

    def imports(self) -> list[dict]:
        rows = self.db.query("SELECT id, workflow_state, progress, diffing_data_set_identifier, "
                             "diffed_against_import_id, diffing_threshold_exceeded, data FROM sis_imports ORDER BY id")
        for row in rows:
            row["data"] = json.loads(row["data"])
        return rows

    def existing_ids(self) -> ExistingIds:
        with self.db.connection() as conn:
            return existing_ids(conn)
