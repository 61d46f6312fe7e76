"""Canvas's SIS-import CSV rules as a library: one implementation shared by the blocking asset checks
(before an upload) and the demo Canvas (when it applies an upload).

The rules and message texts mirror canvas-lms `lib/sis/csv/*` and `lib/sis/*_importer.rb` (see
`shared/reference/canvas.md` §1): file-level failures (`Invalid UTF-8`, `Malformed CSV`, `Couldn't find
Canvas CSV import headers`), then row rejections in Canvas's processing order, where a rejected row does
not create the id later rows refer to. Two rules are ours, not Canvas's (`Violation.source == "precheck"`):
duplicate ids within a file (Canvas silently lets the last row win) and an unknown term on a course
(Canvas silently puts the course in the default term).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Callable

# Canvas's processing order (`IMPORTERS`); file type detection takes the first matching predicate.
IMPORTERS: tuple[str, ...] = (
    "change_sis_id", "account", "term", "abstract_course", "course", "section", "xlist", "user", "login",
    "enrollment", "admin", "group_category", "group", "group_membership", "grade_publishing_results",
    "user_observer",
)

_LOGIN_COLUMNS = frozenset({"existing_user_id", "existing_integration_id", "existing_canvas_user_id"})

_PREDICATES: dict[str, Callable[[frozenset[str]], bool]] = {
    "change_sis_id": lambda h: "old_id" in h or "old_integration_id" in h,
    "account": lambda h: "account_id" in h and "parent_account_id" in h,
    "term": lambda h: "term_id" in h and "name" in h,
    "abstract_course": lambda h: "abstract_course_id" in h and "course_id" not in h and "short_name" in h,
    "course": lambda h: "course_id" in h and "short_name" in h,
    "section": lambda h: "section_id" in h and "name" in h,
    "xlist": lambda h: "xlist_course_id" in h and "section_id" in h,
    "user": lambda h: "user_id" in h and "login_id" in h and not (h & _LOGIN_COLUMNS),
    "login": lambda h: bool(h & _LOGIN_COLUMNS),
    "enrollment": lambda h: ("section_id" in h or "course_id" in h) and ("user_id" in h or "user_integration_id" in h),
    "admin": lambda h: "account_id" in h and "user_id" in h,
    "group_category": lambda h: "group_category_id" in h and "category_name" in h,
    "group": lambda h: "group_id" in h and "name" in h,
    "group_membership": lambda h: "group_id" in h and "user_id" in h,
    "grade_publishing_results": lambda h: "enrollment_id" in h and "grade_publishing_status" in h,
    "user_observer": lambda h: "observer_id" in h and "student_id" in h,
}

# The columns that identify "the same record" within a file (duplicates). An observer may watch several
# students, so for user_observers the pair is the record here.
IDENTIFYING_FIELDS: dict[str, tuple[str, ...]] = {
    "account": ("account_id",),
    "term": ("term_id",),
    "course": ("course_id",),
    "section": ("section_id",),
    "xlist": ("section_id",),
    "user": ("user_id",),
    "enrollment": ("course_id", "section_id", "user_id", "user_integration_id", "role", "role_id", "associated_user_id"),
    "admin": ("user_id", "account_id"),
    "group": ("group_id",),
    "user_observer": ("observer_id", "student_id"),
}
# The keys Canvas's diffing matches rows on (each importer's identifying_fields): the same, except that
# UserObserverImporter.identifying_fields is %w[observer_id] alone, so a diffed user_observers file keeps
# one row per guardian (the upload therefore sends that file undiffed).
DIFFING_FIELDS: dict[str, tuple[str, ...]] = {**IDENTIFYING_FIELDS, "user_observer": ("observer_id",)}

IGNORED_ZIP_ENTRY = re.compile(r"__macosx|desktop d[bf]|\A\..*", re.IGNORECASE)
DELETE_SENTINEL = "<delete>"
BUILT_IN_ROLES = {
    "student": re.compile(r"\Astudent", re.IGNORECASE),  # prefix-anchored in Canvas, like the statuses
    "teacher": re.compile(r"\Ateacher\Z", re.IGNORECASE),
    "ta": re.compile(r"\Ata\Z", re.IGNORECASE),
    "observer": re.compile(r"\Aobserver\Z", re.IGNORECASE),
    "designer": re.compile(r"\Adesigner\Z", re.IGNORECASE),
}
ENROLLMENT_TYPES = {
    "student": "StudentEnrollment", "teacher": "TeacherEnrollment", "ta": "TaEnrollment",
    "observer": "ObserverEnrollment", "designer": "DesignerEnrollment",
}
_STATUS = {
    "account": re.compile(r"\A(active|deleted)", re.IGNORECASE),
    "term": re.compile(r"\Aactive|\Adeleted", re.IGNORECASE),
    "course": re.compile(r"\A(active|deleted|completed|unpublished|published)", re.IGNORECASE),
    "section": re.compile(r"\Aactive|\Adeleted", re.IGNORECASE),
    "xlist": re.compile(r"\A(active|deleted)\Z", re.IGNORECASE),
    "user": re.compile(r"\A(active|suspended|deleted)", re.IGNORECASE),
    "enrollment": re.compile(r"\Aactive|\Adeleted|\Acompleted|\Ainactive|\Adeleted_last_completed", re.IGNORECASE),
    "user_observer": re.compile(r"\A(active|deleted)\Z", re.IGNORECASE),
}
_COURSE_FORMAT = re.compile(r"\A(online|on_campus|blended|not_set)\Z", re.IGNORECASE)
_GRADE_PASSBACK = {"nightly_sync", "disabled", "not_set"}
_DATE_OVERRIDE_TYPES = {"StudentEnrollment", "TeacherEnrollment", "TaEnrollment", "DesignerEnrollment"}
# Canvas parses dates leniently (Time.zone.parse); these are the ISO 8601 shapes its docs and samples use.
_DATE = re.compile(
    r"\A\d{4}-\d{1,2}-\d{1,2}"
    r"(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
    r"\s*(?:Z|[+-]\d{2}:?\d{2})?\Z",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Violation:
    """One broken rule. `row` is 1-based with the header as row 1 (like Canvas); None for a file."""

    file: str
    row: int | None
    record_id: str | None
    message: str
    severity: str  # "error" (Canvas rejects the row or the file) | "warning" (imported anyway)
    source: str = "canvas"  # "canvas": Canvas's own message; "precheck": a stricter rule of ours


@dataclass
class ExistingIds:
    """SIS ids Canvas already holds, so one data set can refer to another's records."""

    accounts: set[str] = field(default_factory=set)
    terms: set[str] = field(default_factory=set)
    courses: set[str] = field(default_factory=set)
    sections: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)
    section_course: dict[str, str] = field(default_factory=dict)
    # Optional detail a live Canvas state can supply (the demo Canvas does): login and integration id
    # owners (lower-cased login → user_id; integration_id → user_id) and users whose login is deleted.
    user_logins: dict[str, str] = field(default_factory=dict)
    user_integration_ids: dict[str, str] = field(default_factory=dict)
    deleted_users: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class ParsedFile:
    name: str
    file_type: str
    header: tuple[str | None, ...]
    records: tuple[tuple[int, tuple[str | None, ...]], ...]  # (row number, stripped values)

    def column_index(self) -> dict[str, int]:
        index: dict[str, int] = {}
        for i, column in enumerate(self.header):
            if column is not None:
                index.setdefault(column, i)  # a repeated header: the first column wins, as in Ruby's CSV
        return index

    def rows(self) -> Iterator[tuple[int, dict[str, str | None]]]:
        index = self.column_index()
        for row_number, values in self.records:
            yield row_number, {c: (values[i] if i < len(values) else None) for c, i in index.items()}


@dataclass(frozen=True)
class ParsedImport:
    """Files grouped by type in Canvas's processing order, plus the file-level findings."""

    files: tuple[ParsedFile, ...]
    file_violations: tuple[Violation, ...]

    @property
    def failed(self) -> bool:
        return any(v.severity == "error" for v in self.file_violations)

    def by_type(self) -> Iterator[tuple[str, list[ParsedFile]]]:
        for file_type in IMPORTERS:
            group = [f for f in self.files if f.file_type == file_type]
            if group:
                yield file_type, group

    @property
    def supplied_types(self) -> list[str]:
        return [t for t, _ in self.by_type()]


class _MalformedCSV(Exception):
    pass


def detect_file_type(header: list[str]) -> str | None:
    """The Canvas importer a header row selects (first match in IMPORTERS order), or None."""
    columns = frozenset(h.lower() for h in header if h)
    return next((t for t in IMPORTERS if _PREDICATES[t](columns)), None)


def read_zip(data: bytes) -> dict[str, bytes]:
    """The entries of an uploaded zip Canvas would look at (folders walked, Mac/dot junk ignored)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {
            info.filename: archive.read(info)
            for info in archive.infolist()
            if not info.is_dir() and not IGNORED_ZIP_ENTRY.search(info.filename)
        }


def parse_import(files: Mapping[str, bytes]) -> ParsedImport:
    """Decode, parse and type every file. Zero-byte files are skipped like Canvas skips them."""
    parsed: list[ParsedFile] = []
    findings: list[Violation] = []
    for name in sorted(files):
        data = files[name]
        if IGNORED_ZIP_ENTRY.search(name) or not data:
            continue
        if not name.lower().endswith(".csv"):
            findings.append(Violation(name, None, None, "Skipping unknown file type", "warning"))
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            findings.append(Violation(name, None, None, "Invalid UTF-8", "error"))
            continue
        try:
            header, records = _parse_csv(text.removeprefix("\ufeff"))
        except _MalformedCSV:
            findings.append(Violation(name, None, None, "Malformed CSV", "error"))
            continue
        file_type = detect_file_type([h for h in header if h]) if header is not None else None
        if file_type is None:
            findings.append(Violation(name, None, None, "Couldn't find Canvas CSV import headers", "error"))
            continue
        parsed.append(ParsedFile(name, file_type, header, records))
    return ParsedImport(tuple(parsed), tuple(findings))


def _parse_csv(text: str) -> tuple[tuple[str | None, ...] | None, tuple[tuple[int, tuple[str | None, ...]], ...]]:
    """Ruby-CSV-strict parsing: header downcased, values stripped (empty → None), blank lines skipped.

    Python's reader tolerates a quote inside an unquoted field; Ruby's raises. Records holding a quote are
    therefore re-read by a strict tokenizer (rare, so the fast C reader does the bulk of the work).
    """
    source = io.StringIO(text, newline="")
    consumed: list[str] = []

    def lines() -> Iterator[str]:
        for line in source:
            consumed.append(line)
            yield line

    reader = csv.reader(lines(), strict=True)
    header: tuple[str | None, ...] | None = None
    records: list[tuple[int, tuple[str | None, ...]]] = []
    row_number = 0
    try:
        for fields in reader:
            raw = "".join(consumed)
            consumed.clear()
            if not fields:
                continue  # skip_blanks
            if any('"' in f for f in fields) or '"' in raw:
                fields = _strict_fields(raw)
            row_number += 1
            if header is None:
                header = tuple(f.lower() if f else None for f in fields)
            else:
                records.append((row_number, tuple(f.strip() or None for f in fields)))
    except csv.Error as exc:
        raise _MalformedCSV(str(exc)) from exc
    return header, tuple(records)


def _strict_fields(raw: str) -> list[str]:
    """Split one CSV record the way Ruby's CSV does, raising on a stray or unclosed quote."""
    record = raw[:-2] if raw.endswith("\r\n") else raw[:-1] if raw.endswith(("\n", "\r")) else raw
    fields: list[str] = []
    i, n = 0, len(record)
    while True:
        if i < n and record[i] == '"':
            i += 1
            value: list[str] = []
            while True:
                end = record.find('"', i)
                if end < 0:
                    raise _MalformedCSV("unclosed quoted field")
                value.append(record[i:end])
                if end + 1 < n and record[end + 1] == '"':
                    value.append('"')
                    i = end + 2
                    continue
                i = end + 1
                break
            if i < n and record[i] != ",":
                raise _MalformedCSV("any value after quoted field isn't allowed")
            fields.append("".join(value))
        else:
            end = record.find(",", i)
            end = n if end < 0 else end
            value_text = record[i:end]
            if '"' in value_text or "\r" in value_text or "\n" in value_text:
                raise _MalformedCSV("illegal quoting")
            fields.append(value_text)
            i = end
        if i >= n:
            return fields
        i += 1  # the comma


def validate_import(files: Mapping[str, bytes], existing: ExistingIds | None = None) -> list[Violation]:
    """Every rule Canvas would apply to this upload (file and row level), plus our duplicate check."""
    parsed = parse_import(files)
    return list(parsed.file_violations) + validate_parsed(parsed, existing)


def validate_parsed(parsed: ParsedImport, existing: ExistingIds | None = None) -> list[Violation]:
    """Row rules over parsed files, in Canvas's processing order; a rejected row defines no id."""
    checker = _RowChecker(existing or ExistingIds())
    violations: list[Violation] = []
    for file_type, group in parsed.by_type():
        for parsed_file in group:
            found = list(_duplicates(parsed_file))
            check = getattr(checker, f"check_{file_type}", None)
            if check is not None:
                for row_number, row in parsed_file.rows():
                    for record_id, message, severity, source in check(row):
                        found.append(Violation(parsed_file.name, row_number, record_id, message, severity, source))
            violations.extend(sorted(found, key=lambda v: v.row or 0))  # row order, as Canvas reports them
    return violations


def rejected_rows(violations: list[Violation]) -> set[tuple[str, int]]:
    """(file, row) of every row Canvas would reject."""
    return {(v.file, v.row) for v in violations if v.row is not None and v.severity == "error" and v.source == "canvas"}


def _duplicates(parsed_file: ParsedFile) -> Iterator[Violation]:
    key_columns = IDENTIFYING_FIELDS.get(parsed_file.file_type)
    if not key_columns:
        return
    index = parsed_file.column_index()
    positions = [(c, index[c]) for c in key_columns if c in index]
    first_row: dict[tuple, int] = {}
    for row_number, values in parsed_file.records:
        key = tuple(values[i] if i < len(values) else None for _, i in positions)
        if all(v is None for v in key):
            continue
        seen = first_row.setdefault(key, row_number)
        if seen != row_number:
            described = ", ".join(f'{c} "{v}"' for (c, _), v in zip(positions, key) if v is not None)
            record_id = "/".join(v for v in key if v is not None)
            label = f"Duplicate {described}" if len(positions) == 1 else f"Duplicate {parsed_file.file_type} ({described})"
            yield Violation(parsed_file.name, row_number, record_id,
                            f"{label} in {parsed_file.name} (rows {seen} and {row_number})", "error", "precheck")


_Finding = tuple[str | None, str, str, str]  # (record id, message, severity, source)


def _reject(record_id: str | None, message: str) -> list[_Finding]:
    """Canvas's ImportError for a row: the row is skipped, the import goes on."""
    return [(record_id, message, "error", "canvas")]


def _is_date(value: str | None, allow_delete: bool = False) -> bool:
    return value is None or bool(_DATE.match(value)) or (allow_delete and value.lower() == DELETE_SENTINEL)


class _RowChecker:
    """Per-type row rules. Ids of accepted rows are added as they pass, like Canvas's sequential import."""

    def __init__(self, existing: ExistingIds):
        self.accounts = set(existing.accounts)
        self.terms = set(existing.terms)
        self.courses = set(existing.courses)
        self.sections = set(existing.sections)
        self.users = set(existing.users)
        self.section_course = dict(existing.section_course)
        self.logins = dict(existing.user_logins)
        self.integration_ids = dict(existing.user_integration_ids)
        self.deleted_users = set(existing.deleted_users)
        self.existing_accounts = existing.accounts
        self.existing_terms = existing.terms
        self.existing_sections = existing.sections

    def check_account(self, r: dict) -> list[_Finding]:
        account_id, parent, status = r.get("account_id"), r.get("parent_account_id"), r.get("status")
        if not account_id:
            return _reject(None, "No account_id given for an account")
        if parent and parent not in self.accounts:
            return _reject(account_id, f"Parent account didn't exist for {account_id}")
        if account_id not in self.existing_accounts:
            if not r.get("name"):
                return _reject(account_id, f"No name given for account {account_id}, skipping")
            if not _STATUS["account"].match(status or ""):
                return _reject(account_id, f'Improper status "{status or ""}" for account {account_id}, skipping')
        self.accounts.add(account_id)
        return []

    def check_term(self, r: dict) -> list[_Finding]:
        term_id, status = r.get("term_id"), r.get("status")
        override = r.get("date_override_enrollment_type")
        if not term_id:
            return _reject(None, "No term_id given for a term")
        if not _STATUS["term"].match(status or ""):
            return _reject(term_id, f'Improper status "{status or ""}" for term {term_id}')
        if override:
            if override not in _DATE_OVERRIDE_TYPES:
                return _reject(term_id, "Invalid date_override_enrollment_type")
            if term_id not in self.existing_terms:
                return _reject(term_id, "Cannot set date override on non-existent term")
        elif not r.get("name"):
            return _reject(term_id, f"No name given for term {term_id}")
        self.terms.add(term_id)
        return self._dates(r, term_id, "term")

    def check_course(self, r: dict) -> list[_Finding]:
        course_id, status = r.get("course_id"), r.get("status")
        abstract = r.get("abstract_course_id")
        account_id, term_id = r.get("account_id"), r.get("term_id")
        if not course_id:
            return _reject(None, "No course_id given for a course")
        if not r.get("short_name") and not abstract:
            return _reject(course_id, f"No short_name given for course {course_id}")
        if not r.get("long_name") and not abstract:
            return _reject(course_id, f"No long_name given for course {course_id}")
        if not _STATUS["course"].match(status or ""):
            return _reject(course_id, f'Improper status "{status or ""}" for course {course_id}')
        course_format = r.get("course_format")
        if course_format and not _COURSE_FORMAT.match(course_format):
            return _reject(course_id, f'Invalid course_format "{course_format}" for course {course_id}')
        passback = r.get("grade_passback_setting")
        if passback and passback not in _GRADE_PASSBACK:
            return _reject(course_id, f'Invalid grade_passback_setting "{passback}" for course {course_id}')
        if account_id and account_id not in self.accounts:
            return _reject(course_id, f'Account not found "{account_id}" for course {course_id}')
        self.courses.add(course_id)
        findings = self._dates(r, course_id, "course", allow_delete=True)
        if term_id and term_id not in self.terms:
            findings.append((course_id, f'Term not found "{term_id}" for course {course_id}: Canvas ignores it '
                                        f"and puts the course in the default term", "warning", "precheck"))
        return findings

    def check_section(self, r: dict) -> list[_Finding]:
        section_id, course_id, status = r.get("section_id"), r.get("course_id"), r.get("status")
        if not section_id:
            return _reject(None, f"No section_id given for a section in course {course_id or ''}")
        if not course_id:
            return _reject(section_id, f"No course_id given for a section {section_id}")
        deleting = (status or "").lower().startswith("deleted")
        if not r.get("name") and (not deleting or section_id not in self.existing_sections):
            return _reject(section_id, f"No name given for section {section_id} in course {course_id}")
        if not _STATUS["section"].match(status or ""):
            return _reject(section_id, f'Improper status "{status or ""}" for section {section_id} in course {course_id}')
        if course_id not in self.courses:
            return _reject(section_id, f"Section {section_id} references course {course_id} which doesn't exist")
        self.sections.add(section_id)
        self.section_course[section_id] = course_id
        return self._dates(r, section_id, "section")

    def check_xlist(self, r: dict) -> list[_Finding]:
        xlist_course_id, section_id, status = r.get("xlist_course_id"), r.get("section_id"), r.get("status")
        if not xlist_course_id:
            return _reject(section_id, "No xlist_course_id given for a cross-listing")
        if not section_id:
            return _reject(xlist_course_id, "No section_id given for a cross-listing")
        if not _STATUS["xlist"].match(status or ""):
            return _reject(section_id, f'Improper status "{status or ""}" for a cross-listing')
        if section_id not in self.sections:
            return _reject(section_id, f"A cross-listing referenced a non-existent section {section_id}")
        self.courses.add(xlist_course_id)  # Canvas creates a missing cross-listing course
        return []

    def check_user(self, r: dict) -> list[_Finding]:
        user_id, login_id, status = r.get("user_id"), r.get("login_id"), r.get("status")
        integration_id = r.get("integration_id")
        if not user_id:
            return _reject(None, "No user_id given for a user")
        if not login_id:
            return _reject(user_id, f"No login_id given for user {user_id}")
        if not status:
            return _reject(user_id, f"No status given for user {user_id}")
        if not _STATUS["user"].match(status):
            return _reject(user_id, f"Improper status for user {user_id}")
        login_owner = self.logins.setdefault(login_id.lower(), user_id)
        if login_owner != user_id:
            return _reject(user_id, f"An existing Canvas user with the SIS ID {login_owner} has already claimed "
                              f"{user_id}'s user_id requested login information, skipping")
        if integration_id:
            owner = self.integration_ids.setdefault(integration_id, user_id)
            if owner != user_id:
                return _reject(user_id, f"An existing Canvas user with the SIS ID {owner} has already claimed "
                                  f"{user_id}'s requested integration_id, skipping")
        self.users.add(user_id)
        if status.lower().startswith("deleted"):
            self.deleted_users.add(user_id)
        else:
            self.deleted_users.discard(user_id)
        return []

    def check_enrollment(self, r: dict) -> list[_Finding]:
        course_id, section_id, status = r.get("course_id"), r.get("section_id"), r.get("status")
        user_integration_id = r.get("user_integration_id")
        # Canvas: a user_integration_id wins over user_id.
        user_id = self.integration_ids.get(user_integration_id) if user_integration_id else r.get("user_id")
        shown_user = user_integration_id or r.get("user_id")
        role, role_id, associated = r.get("role"), r.get("role_id"), r.get("associated_user_id")
        record_id = "/".join(v for v in (course_id or section_id, shown_user, role or role_id) if v) or None
        if not course_id and not section_id:
            return _reject(record_id, "No course_id or section_id given for an enrollment")
        if not shown_user:
            return _reject(record_id, "No user_id given for an enrollment")
        if not _STATUS["enrollment"].match(status or ""):
            return _reject(record_id, f'Improper status "{status or ""}" for an enrollment')
        if user_id is None or user_id not in self.users:
            return _reject(record_id, f"User not found for enrollment (User ID: {shown_user}, Course ID: {course_id or ''}, "
                                f"Section ID: {section_id or ''})")
        course_ok = bool(course_id) and course_id in self.courses
        section_ok = bool(section_id) and section_id in self.sections
        if not course_ok and not section_ok:
            return _reject(record_id, f"Neither course nor section existed for user enrollment (Course ID: {course_id or ''}, "
                                f"Section ID: {section_id or ''}, User ID: {shown_user})")
        if section_id and not section_ok:
            return _reject(record_id, f"An enrollment referenced a non-existent section {section_id}")
        if course_id and not course_ok:
            return _reject(record_id, f"An enrollment referenced a non-existent course {course_id}")
        if course_id and section_id and self.section_course.get(section_id) != course_id:
            return _reject(record_id, f"An enrollment listed a section ({section_id}) and a course ({course_id}) that are "
                                f"unrelated for user ({shown_user})")
        if not role_id and enrollment_type(role) is None:
            return _reject(record_id, f'Improper role "{role or ""}" for an enrollment')
        if associated and associated not in self.users:
            return _reject(record_id, f"An enrollment referenced a non-existent associated user {associated}")
        if user_id in self.deleted_users and (status or "").lower().startswith("active"):
            return _reject(record_id, f"Attempted enrolling of deleted user {shown_user} in course "
                                f"{course_id or self.section_course.get(section_id or '', '')}")
        return []

    def check_user_observer(self, r: dict) -> list[_Finding]:
        observer_id, student_id, status = r.get("observer_id"), r.get("student_id"), r.get("status")
        record_id = "/".join(v for v in (observer_id, student_id) if v) or None
        if not observer_id:
            return _reject(record_id, "No observer_id given for a user observer")
        if not student_id:
            return _reject(record_id, "No user_id given for a user observer")
        if observer_id == student_id:
            return _reject(record_id, f"Can't observe yourself user {student_id}")
        if not _STATUS["user_observer"].match(status or ""):
            return _reject(record_id, f'Improper status "{status or ""}" for a user_observer')
        if observer_id not in self.users:
            return _reject(record_id, f"An observer referenced a non-existent user {observer_id}")
        if student_id not in self.users:
            return _reject(record_id, f"A student referenced a non-existent user {student_id}")
        return []

    @staticmethod
    def _dates(r: dict, record_id: str, kind: str, allow_delete: bool = False) -> list[_Finding]:
        if _is_date(r.get("start_date"), allow_delete) and _is_date(r.get("end_date"), allow_delete):
            return []
        return [(record_id, f"Bad date format for {kind} {record_id}", "warning", "canvas")]


def enrollment_type(role: str | None) -> str | None:
    """Canvas's enrollment type for a built-in role name (its regexes), or None."""
    if not role:
        return None
    return next((ENROLLMENT_TYPES[name] for name, pattern in BUILT_IN_ROLES.items() if pattern.match(role)), None)
