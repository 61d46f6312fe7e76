"""Applying accepted SIS-import rows to the demo Canvas state, with Canvas's status semantics.

Rows reaching here already passed `canvas_rules`; what is left are the rules that need the stored state
(deleted parents, custom role ids). Statuses follow Canvas: course `active` leaves a new course unpublished
(`claimed`) and `published` makes it `available`; a user's `deleted`/`suspended` is its login's state;
enrollment `deleted_last_completed` completes the user's last enrollment in a course and deletes the others.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections import Counter

from pipeline.canvas_rules import DELETE_SENTINEL, enrollment_type
from pipeline.demo.canvas_state import DEFAULT_TERM_ID, ROOT_ACCOUNT_ID

# Canvas's built-in role ids on a fresh instance; custom roles are not modelled.
BUILT_IN_ROLE_IDS = {"3": "StudentEnrollment", "4": "TeacherEnrollment", "5": "TaEnrollment",
                     "6": "DesignerEnrollment", "7": "ObserverEnrollment"}
STATISTICS_CLASSES = {"account": "Account", "term": "EnrollmentTerm", "course": "Course", "section": "CourseSection",
                      "user": "Pseudonym", "enrollment": "Enrollment", "user_observer": "UserObserver"}
_APPLIED_TYPES = frozenset(STATISTICS_CLASSES)
_DATE = re.compile(
    r"\A(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?\Z", re.I)


# Canvas's EmailAddressValidator in short: one @, something on each side, no spaces.
_EMAIL = re.compile(r"\A[^@\s]+@[^@\s]+\Z")


def applies(file_type: str) -> bool:
    return file_type in _APPLIED_TYPES


def parse_date(value: str | None) -> str | None:
    """An importer date as Canvas's API shows it (UTC, `YYYY-MM-DDTHH:MM:SSZ`); None if blank or unparseable."""
    match = _DATE.match(value or "")
    if not match:
        return None
    year, month, day, hour, minute, second, zone = match.groups()
    offset = dt.timedelta()
    if zone and zone.upper() != "Z":
        digits = zone[1:].replace(":", "")
        offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        offset = -offset if zone[0] == "-" else offset
    try:
        local = dt.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    except ValueError:
        return None
    return (local - offset).strftime("%Y-%m-%dT%H:%M:%SZ")


def _state(status: str | None) -> str:
    return (status or "").lower()


class Applier:
    """Applies one accepted row at a time; returns a row error message or None. A row applied with a
    warning (Canvas imports a user whose e-mail is invalid, without it) leaves it in `warnings`."""

    def __init__(self, conn: sqlite3.Connection, import_id: int, stats: dict[str, Counter[str]]):
        self.conn, self.import_id, self.stats = conn, import_id, stats
        self.warnings: list[str] = []

    def apply(self, file_type: str, row: dict) -> str | None:
        self.warnings = []
        return getattr(self, f"_{file_type}")(row)

    def _count(self, file_type: str, before: str | None, after: str) -> None:
        """Canvas's statistics: created / deleted / concluded / deactivated / restored per class."""
        counter = self.stats[STATISTICS_CLASSES[file_type]]
        if before is None:
            counter["created"] += 1
        elif before == after:
            return
        elif after == "deleted":
            counter["deleted"] += 1
        elif after == "completed":
            counter["concluded"] += 1
        elif after in ("inactive", "suspended"):
            counter["deactivated"] += 1
        elif before in ("deleted", "completed", "inactive", "suspended"):
            counter["restored"] += 1

    def _one(self, sql: str, params: tuple) -> sqlite3.Row | None:
        return self.conn.execute(sql, params).fetchone()

    def _account(self, r: dict) -> str | None:
        sis_id, status = r["account_id"], _state(r.get("status"))
        parent = self._one("SELECT id, workflow_state FROM accounts WHERE sis_id = ?", (r["parent_account_id"],)) \
            if r.get("parent_account_id") else None
        parent_id = parent["id"] if parent else ROOT_ACCOUNT_ID
        existing = self._one("SELECT id, workflow_state, name FROM accounts WHERE sis_id = ?", (sis_id,))
        new_state = "deleted" if status.startswith("deleted") else "active" if status.startswith("active") else (
            existing["workflow_state"] if existing else "active")
        if parent and parent["workflow_state"] == "deleted" and new_state == "active":
            return (f"Cannot restore sub_account with ID: {sis_id} because parent_account with ID: "
                    f"{r['parent_account_id']} has been deleted.")
        name = r.get("name") or existing["name"]
        self.conn.execute(
            "INSERT INTO accounts (sis_id, parent_id, name, workflow_state, integration_id, sis_import_id) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sis_id) DO UPDATE SET parent_id = excluded.parent_id, "
            "name = excluded.name, workflow_state = excluded.workflow_state, "
            "integration_id = COALESCE(excluded.integration_id, integration_id), sis_import_id = excluded.sis_import_id",
            (sis_id, parent_id, name, new_state, r.get("integration_id"), self.import_id))
        self._count("account", existing["workflow_state"] if existing else None, new_state)
        return None

    def _term(self, r: dict) -> str | None:
        if r.get("date_override_enrollment_type"):
            return None  # per-enrollment-type date overrides are not modelled by the demo
        sis_id, new_state = r["term_id"], "deleted" if _state(r.get("status")).startswith("deleted") else "active"
        existing = self._one("SELECT workflow_state FROM terms WHERE sis_id = ?", (sis_id,))
        self.conn.execute(
            "INSERT INTO terms (sis_id, name, workflow_state, start_at, end_at, integration_id, sis_import_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sis_id) DO UPDATE SET name = excluded.name, "
            "workflow_state = excluded.workflow_state, start_at = excluded.start_at, end_at = excluded.end_at, "
            "integration_id = COALESCE(excluded.integration_id, integration_id), sis_import_id = excluded.sis_import_id",
            (sis_id, r["name"], new_state, parse_date(r.get("start_date")), parse_date(r.get("end_date")),
             r.get("integration_id"), self.import_id))
        self._count("term", existing["workflow_state"] if existing else None, new_state)
        return None

    def _course(self, r: dict) -> str | None:
        sis_id, status = r["course_id"], _state(r.get("status"))
        existing = self._one("SELECT * FROM courses WHERE sis_id = ?", (sis_id,))
        account = self._one("SELECT id, workflow_state FROM accounts WHERE sis_id = ?", (r["account_id"],)) \
            if r.get("account_id") else None
        if r.get("account_id") and account is None:  # its account row was rejected earlier in this import
            return f'Account not found "{r["account_id"]}" for course {sis_id}'
        if account and account["workflow_state"] == "deleted" and not status.startswith("deleted"):
            return f"Cannot restore course {sis_id} because the associated account {r['account_id']} is deleted"
        term = self._one("SELECT id FROM terms WHERE sis_id = ?", (r["term_id"],)) if r.get("term_id") else None
        before = existing["workflow_state"] if existing else None
        if status.startswith("published"):
            new_state = "available"
        elif status.startswith("completed"):
            new_state = "completed"
        elif status.startswith("deleted"):
            new_state = "deleted"
        else:  # active / unpublished: a new or deleted course is unpublished; a published one stays published
            new_state = "claimed" if before in (None, "deleted", "completed", "claimed") else before
        start_at = self._sticky_date(r.get("start_date"), existing["start_at"] if existing else None)
        end_at = self._sticky_date(r.get("end_date"), existing["end_at"] if existing else None)
        values = (
            r.get("long_name") or (existing["name"] if existing else sis_id),
            r.get("short_name") or (existing["course_code"] if existing else sis_id),
            account["id"] if account else (existing["account_id"] if existing else ROOT_ACCOUNT_ID),
            term["id"] if term else (existing["term_id"] if existing else DEFAULT_TERM_ID),
            new_state, r.get("integration_id"), start_at, end_at, r.get("course_format"),
            r.get("grade_passback_setting"), self.import_id,
        )
        if existing:
            self.conn.execute(
                "UPDATE courses SET name = ?, course_code = ?, account_id = ?, term_id = ?, workflow_state = ?, "
                "integration_id = COALESCE(?, integration_id), start_at = ?, end_at = ?, "
                "course_format = COALESCE(?, course_format), grade_passback_setting = COALESCE(?, grade_passback_setting), "
                "sis_import_id = ? WHERE id = ?", values + (existing["id"],))
        else:
            self.conn.execute(
                "INSERT INTO courses (name, course_code, account_id, term_id, workflow_state, integration_id, start_at, "
                "end_at, course_format, grade_passback_setting, sis_import_id, sis_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values + (sis_id,))
        self._count("course", before, new_state)
        return None

    @staticmethod
    def _sticky_date(value: str | None, current: str | None) -> str | None:
        """Course dates: empty keeps the stored date, `<delete>` clears it (unlike terms and sections)."""
        if value is None:
            return current
        if value.lower() == DELETE_SENTINEL:
            return None
        return parse_date(value)

    def _section(self, r: dict) -> str | None:
        sis_id, new_state = r["section_id"], "deleted" if _state(r.get("status")).startswith("deleted") else "active"
        course = self._one("SELECT id FROM courses WHERE sis_id = ?", (r["course_id"],))
        if course is None:
            return f"Section {sis_id} references course {r['course_id']} which doesn't exist"
        existing = self._one("SELECT workflow_state, name FROM sections WHERE sis_id = ?", (sis_id,))
        self.conn.execute(
            "INSERT INTO sections (sis_id, course_id, name, workflow_state, integration_id, start_at, end_at, "
            "sis_import_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sis_id) DO UPDATE SET "
            "course_id = excluded.course_id, name = excluded.name, workflow_state = excluded.workflow_state, "
            "integration_id = COALESCE(excluded.integration_id, integration_id), start_at = excluded.start_at, "
            "end_at = excluded.end_at, sis_import_id = excluded.sis_import_id",
            (sis_id, course["id"], r.get("name") or (existing["name"] if existing else sis_id), new_state,
             r.get("integration_id"), parse_date(r.get("start_date")), parse_date(r.get("end_date")), self.import_id))
        # A moved section takes its enrollments with it, as in Canvas.
        self.conn.execute("UPDATE enrollments SET course_id = ? WHERE section_id = (SELECT id FROM sections "
                          "WHERE sis_id = ?)", (course["id"], sis_id))
        self._count("section", existing["workflow_state"] if existing else None, new_state)
        return None

    def _user(self, r: dict) -> str | None:
        sis_id, status = r["user_id"], _state(r.get("status"))
        existing = self._one("SELECT * FROM users WHERE sis_id = ?", (sis_id,))
        new_state = "deleted" if status.startswith("deleted") else "suspended" if status.startswith("suspended") \
            else "active"
        first, last = r.get("first_name"), r.get("last_name")
        first_last = " ".join(p for p in (first, last) if p)
        name = (r.get("full_name") or first_last or (existing["name"] if existing else None)
                or r.get("sortable_name") or r.get("short_name") or r["login_id"])
        sortable = r.get("sortable_name") or (f"{last}, {first}" if first and last else
                                              existing["sortable_name"] if existing else name)
        short = r.get("short_name") or (existing["short_name"] if existing and not first_last else name)
        email = r.get("email")
        if email and not _EMAIL.match(email):
            self.warnings.append(f"The email address associated with user '{sis_id}' is invalid (email: '{email}')")
            email = None
        self.conn.execute(
            "INSERT INTO users (sis_id, login_id, integration_id, name, sortable_name, short_name, email, "
            "workflow_state, sis_import_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sis_id) DO UPDATE SET "
            "login_id = excluded.login_id, integration_id = COALESCE(excluded.integration_id, integration_id), "
            "name = excluded.name, sortable_name = excluded.sortable_name, short_name = excluded.short_name, "
            "email = COALESCE(excluded.email, email), workflow_state = excluded.workflow_state, "
            "sis_import_id = excluded.sis_import_id",
            (sis_id, r["login_id"], r.get("integration_id"), name, sortable, short,
             email, new_state, self.import_id))
        self._count("user", existing["workflow_state"] if existing else None, new_state)
        return None

    def _enrollment(self, r: dict) -> str | None:
        if r.get("user_integration_id"):
            user = self._one("SELECT id FROM users WHERE integration_id = ?", (r["user_integration_id"],))
        else:
            user = self._one("SELECT id FROM users WHERE sis_id = ?", (r["user_id"],))
        if user is None:
            return (f"User not found for enrollment (User ID: {r.get('user_integration_id') or r.get('user_id')}, "
                    f"Course ID: {r.get('course_id') or ''}, Section ID: {r.get('section_id') or ''})")
        if r.get("role_id") and not r.get("role"):
            kind = BUILT_IN_ROLE_IDS.get(r["role_id"])
            if kind is None:
                return f'Improper role_id "{r["role_id"]}" for an enrollment'
        else:
            kind = enrollment_type(r.get("role"))
        if r.get("section_id"):
            section = self._one("SELECT id, course_id FROM sections WHERE sis_id = ?", (r["section_id"],))
            if section is None:
                return f"An enrollment referenced a non-existent section {r['section_id']}"
            section_id, course_id = section["id"], section["course_id"]
        else:
            course = self._one("SELECT id FROM courses WHERE sis_id = ?", (r["course_id"],))
            if course is None:
                return f"An enrollment referenced a non-existent course {r['course_id']}"
            course_id = course["id"]
            section_id = self._default_section(course_id)
        associated = self._one("SELECT id FROM users WHERE sis_id = ?", (r["associated_user_id"],)) \
            if r.get("associated_user_id") else None
        associated_id = associated["id"] if associated else 0
        key = (section_id, user["id"], kind, associated_id)
        existing = self._one("SELECT id, workflow_state FROM enrollments WHERE section_id = ? AND user_id = ? AND "
                             "role = ? AND associated_user_id = ?", key)
        status = _state(r.get("status"))
        new_state = next((s for s in ("deleted_last_completed", "active", "deleted", "completed", "inactive")
                          if status.startswith(s)), "active")
        if new_state == "deleted_last_completed":
            others = self.conn.execute(
                "SELECT COUNT(*) FROM enrollments WHERE course_id = ? AND user_id = ? AND workflow_state != 'deleted' "
                "AND id IS NOT ?", (course_id, user["id"], existing["id"] if existing else None)).fetchone()[0]
            new_state = "deleted" if others else "completed"
        both_dates = r.get("start_date") and r.get("end_date")
        self.conn.execute(
            "INSERT INTO enrollments (course_id, section_id, user_id, role, associated_user_id, type, workflow_state, "
            "start_at, end_at, sis_import_id, created_by_sis) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) "
            "ON CONFLICT (section_id, user_id, role, associated_user_id) DO UPDATE SET "
            "workflow_state = excluded.workflow_state, start_at = excluded.start_at, end_at = excluded.end_at, "
            "sis_import_id = excluded.sis_import_id, created_by_sis = 1",
            (course_id,) + key + (kind, new_state, parse_date(r.get("start_date")) if both_dates else None,
                                   parse_date(r.get("end_date")) if both_dates else None, self.import_id))
        self._count("enrollment", existing["workflow_state"] if existing else None, new_state)
        return None

    def _default_section(self, course_id: int) -> int:
        found = self._one("SELECT id FROM sections WHERE course_id = ? AND default_section = 1", (course_id,))
        if found:
            return found["id"]
        name = self._one("SELECT name FROM courses WHERE id = ?", (course_id,))["name"]
        return self.conn.execute("INSERT INTO sections (course_id, name, workflow_state, default_section) "
                                 "VALUES (?, ?, 'active', 1)", (course_id, name)).lastrowid

    def _user_observer(self, r: dict) -> str | None:
        observer_row = self._one("SELECT id FROM users WHERE sis_id = ?", (r["observer_id"],))
        student_row = self._one("SELECT id FROM users WHERE sis_id = ?", (r["student_id"],))
        if observer_row is None:
            return f"An observer referenced a non-existent user {r['observer_id']}"
        if student_row is None:
            return f"A student referenced a non-existent user {r['student_id']}"
        observer, student = observer_row["id"], student_row["id"]
        new_state = "deleted" if _state(r.get("status")) == "deleted" else "active"
        existing = self._one("SELECT workflow_state FROM user_observers WHERE observer_id = ? AND student_id = ?",
                             (observer, student))
        self.conn.execute(
            "INSERT INTO user_observers (observer_id, student_id, workflow_state, sis_import_id) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (observer_id, student_id) DO UPDATE SET workflow_state = excluded.workflow_state, "
            "sis_import_id = excluded.sis_import_id", (observer, student, new_state, self.import_id))
        self._count("user_observer", existing["workflow_state"] if existing else None, new_state)
        return None


def after_import(conn: sqlite3.Connection, auto_seed: int | None) -> None:
    """What Canvas does on its own after an import: observer enrollments, submission placeholders, grades."""
    # An observer is enrolled as observer wherever the observed student is (Canvas's UserObserver).
    conn.execute(
        "INSERT INTO enrollments (course_id, section_id, user_id, type, role, associated_user_id, workflow_state, "
        "created_by_sis) SELECT e.course_id, e.section_id, o.observer_id, 'ObserverEnrollment', 'ObserverEnrollment', "
        "e.user_id, e.workflow_state, 0 FROM user_observers o JOIN enrollments e ON e.user_id = o.student_id "
        "AND e.type = 'StudentEnrollment' WHERE o.workflow_state = 'active' "
        "ON CONFLICT (section_id, user_id, role, associated_user_id) DO UPDATE SET "
        "workflow_state = excluded.workflow_state WHERE enrollments.created_by_sis = 0")
    conn.execute(
        "UPDATE enrollments SET workflow_state = 'deleted' WHERE created_by_sis = 0 AND type = 'ObserverEnrollment' "
        "AND workflow_state != 'deleted' AND NOT EXISTS (SELECT 1 FROM user_observers o WHERE "
        "o.observer_id = enrollments.user_id AND o.student_id = enrollments.associated_user_id "
        "AND o.workflow_state = 'active')")
    from pipeline.demo import canvas_grades  # grades build on the roster, not the other way round

    canvas_grades.add_submission_placeholders(conn)
    if auto_seed is not None:
        canvas_grades.seed_courses(conn, seed=auto_seed)


def batch_stale(conn: sqlite3.Connection, kind: str, term_id: int, import_id: int) -> tuple[list[int], int]:
    """Ids of this term's SIS records of `kind` the batch did not touch, and how many there are in all."""
    table, alive, where = {
        "course": ("courses c", "c.workflow_state != 'deleted'", "c.term_id = ? AND c.sis_id IS NOT NULL"),
        "section": ("sections c", "c.workflow_state != 'deleted'",
                    "c.course_id IN (SELECT id FROM courses WHERE term_id = ?) AND c.sis_id IS NOT NULL"),
        "enrollment": ("enrollments c", "c.workflow_state != 'deleted'",
                       "c.course_id IN (SELECT id FROM courses WHERE term_id = ?) AND c.created_by_sis = 1"),
    }[kind]
    rows = conn.execute(f"SELECT c.id, c.sis_import_id FROM {table} WHERE {where} AND {alive}", (term_id,)).fetchall()
    return [r[0] for r in rows if r[1] != import_id], len(rows)


def batch_drop(conn: sqlite3.Connection, kind: str, ids: list[int], status: str,
               stats: dict[str, Counter[str]]) -> None:
    table = {"course": "courses", "section": "sections", "enrollment": "enrollments"}[kind]
    conn.executemany(f"UPDATE {table} SET workflow_state = ? WHERE id = ?", [(status, i) for i in ids])
    event = {"deleted": "deleted", "completed": "concluded", "inactive": "deactivated"}[status]
    stats[STATISTICS_CLASSES[kind]][event] += len(ids)


def statistics_json(stats: dict[str, Counter[str]]) -> dict:
    result: dict = {"total_state_changes": sum(sum(c.values()) for c in stats.values())}
    for name in STATISTICS_CLASSES.values():
        counter = stats.get(name, Counter())
        result[name] = {k: counter.get(k, 0) for k in ("created", "concluded", "deactivated", "restored", "deleted")}
    return result
