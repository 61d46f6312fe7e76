"""How OneRoster records become Canvas SIS-import rows: the `MappingSettings` resource and the DuckDB
session the transform SQL (`assets/sql/canvas_*.sql`) runs in.

Every choice a district can make lives here, read from the `MAPPING_*` environment variables
(`pipeline/settings.py`); the SQL reads them as DuckDB variables and macros, so one `.sql` file serves
every configuration.
"""

from __future__ import annotations

import importlib.resources
import string
import zoneinfo
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa

from pipeline import settings
from pipeline.canvas_data_set import DELETED_ENROLLMENTS, DISTRICT, EXCEEDED_DELETED_ENROLLMENTS, DataSet
from pipeline.datadir import DataDir
from pipeline.oneroster.schema import ENTITIES

COURSE_MODES = ("per_class", "per_course_term")
LOGIN_ID_SOURCES = ("username", "email", "identifier")
NEW_COURSE_STATUSES = ("active", "published")
DROP_STATUSES = ("deleted", "inactive", "completed", "deleted_last_completed")
DISABLED_USER_STATUSES = ("suspended", "deleted", "active")
ACCOUNT_ID_SOURCES = ("sourcedId", "identifier")
ACCOUNT_NAME_FIELDS = ("name", "identifier", "type", "sourcedId")
TERM_NAME_FIELDS = ("title", "schoolYear", "type", "sourcedId")
# Canvas's built-in enrollment roles: what a SIS import can name without a role_id.
CANVAS_ROLES = ("student", "teacher", "ta", "observer", "designer")
# OneRoster 1.1 user roles that are a student's guardians: Canvas observers.
GUARDIAN_ROLES = ("parent", "guardian", "relative")

# OneRoster entity -> the DuckDB view name the SQL reads it under.
SOURCE_VIEWS = {
    "orgs": "or_orgs",
    "academicSessions": "or_academic_sessions",
    "courses": "or_courses",
    "classes": "or_classes",
    "users": "or_users",
    "enrollments": "or_enrollments",
}
# A district that schedules only classes may send no courses at all; per_class mode does not need them.
OPTIONAL_SOURCES = ("courses",)


def sql_text(name: str) -> str:
    """The text of `assets/sql/<name>.sql`."""
    return importlib.resources.files("assets").joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _parse_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _parse_roles(value: str) -> dict[str, str]:
    roles: dict[str, str] = {}
    for pair in _parse_list(value):
        oneroster_role, sep, canvas_role = pair.partition("=")
        if not sep or not oneroster_role.strip() or not canvas_role.strip():
            raise ValueError(f"MAPPING_ROLES: {pair!r} is not oneroster_role=canvas_role")
        roles[oneroster_role.strip()] = canvas_role.strip()
    return roles


def _template_parts(template: str, fields: tuple[str, ...], variable: str) -> list[tuple[str, str | None]]:
    parts = []
    for literal, field, spec, conversion in string.Formatter().parse(template):
        if field is not None and (field not in fields or spec or conversion):
            allowed = ", ".join("{" + f + "}" for f in fields)
            raise ValueError(f"{variable}: {{{field}}} is not a placeholder; use {allowed}")
        parts.append((literal, field))
    return parts


def _template_macro(name: str, template: str, fields: tuple[str, ...], variable: str) -> str:
    """A DuckDB macro that fills `template` from its arguments (missing values become empty)."""
    pieces = []
    for literal, field in _template_parts(template, fields, variable):
        if literal:
            pieces.append(sql_literal(literal))
        if field is not None:
            pieces.append(f"coalesce({field}, '')")
    body = " || ".join(pieces) or "''"
    return f"CREATE MACRO {name}({', '.join(fields)}) AS {body}"


class MappingSettings(dg.ConfigurableResource):
    """How the OneRoster snapshot maps to Canvas (docs/transform.md lists every option and default)."""

    course_mode: str = "per_class"
    term_types: list[str] = ["term", "semester", "schoolYear"]
    roles: dict[str, str] = {"student": "student", "teacher": "teacher", "aide": "ta"}
    login_id_from: str = "username"
    authentication_provider_id: str = ""
    new_course_status: str = "active"
    enrollment_drop_status: str = "inactive"
    disabled_user_status: str = "suspended"
    observers: bool = False
    root_account_id: str = ""
    account_id_from: str = "sourcedId"
    account_name_template: str = "{name}"
    term_name_template: str = "{title}"
    time_zone: str = "UTC"

    @classmethod
    def from_env(cls) -> MappingSettings:
        observers = settings.get("MAPPING_OBSERVERS").strip().lower()
        if observers not in ("true", "false"):
            raise ValueError(f"MAPPING_OBSERVERS must be true or false, got {observers!r}")
        mapping = cls(
            course_mode=settings.get("MAPPING_COURSE_MODE").strip(),
            term_types=_parse_list(settings.get("MAPPING_TERM_TYPES")),
            roles=_parse_roles(settings.get("MAPPING_ROLES")),
            login_id_from=settings.get("MAPPING_LOGIN_ID_FROM").strip(),
            authentication_provider_id=settings.get("MAPPING_AUTHENTICATION_PROVIDER_ID").strip(),
            new_course_status=settings.get("MAPPING_NEW_COURSE_STATUS").strip(),
            enrollment_drop_status=settings.get("MAPPING_ENROLLMENT_DROP_STATUS").strip(),
            disabled_user_status=settings.get("MAPPING_DISABLED_USER_STATUS").strip(),
            observers=observers == "true",
            root_account_id=settings.get("MAPPING_ROOT_ACCOUNT_ID").strip(),
            account_id_from=settings.get("MAPPING_ACCOUNT_ID_FROM").strip(),
            account_name_template=settings.get("MAPPING_ACCOUNT_NAME_TEMPLATE"),
            term_name_template=settings.get("MAPPING_TERM_NAME_TEMPLATE"),
            time_zone=settings.get("MAPPING_TIME_ZONE").strip(),
        )
        mapping.check()
        return mapping

    def check(self) -> None:
        """Raise a ValueError naming the environment variable of the first invalid option."""
        choices = (
            ("MAPPING_COURSE_MODE", self.course_mode, COURSE_MODES),
            ("MAPPING_LOGIN_ID_FROM", self.login_id_from, LOGIN_ID_SOURCES),
            ("MAPPING_NEW_COURSE_STATUS", self.new_course_status, NEW_COURSE_STATUSES),
            ("MAPPING_ENROLLMENT_DROP_STATUS", self.enrollment_drop_status, DROP_STATUSES),
            ("MAPPING_DISABLED_USER_STATUS", self.disabled_user_status, DISABLED_USER_STATUSES),
            ("MAPPING_ACCOUNT_ID_FROM", self.account_id_from, ACCOUNT_ID_SOURCES),
        )
        for variable, value, allowed in choices:
            if value not in allowed:
                raise ValueError(f"{variable} must be one of {', '.join(allowed)}; got {value!r}")
        if not self.term_types:
            raise ValueError("MAPPING_TERM_TYPES must name at least one academicSession type")
        if not self.roles:
            raise ValueError("MAPPING_ROLES must map at least one OneRoster role to a Canvas role")
        seen: set[str] = set()
        for oneroster_role, canvas_role in sorted(self.roles.items()):
            if oneroster_role.lower() in seen:
                raise ValueError(f"MAPPING_ROLES: {oneroster_role} is mapped twice (roles ignore case)")
            seen.add(oneroster_role.lower())
            if canvas_role not in CANVAS_ROLES:
                raise ValueError(
                    f"MAPPING_ROLES: {oneroster_role}={canvas_role}: the Canvas role must be one of {', '.join(CANVAS_ROLES)}"
                )
        _template_parts(self.account_name_template, ACCOUNT_NAME_FIELDS, "MAPPING_ACCOUNT_NAME_TEMPLATE")
        _template_parts(self.term_name_template, TERM_NAME_FIELDS, "MAPPING_TERM_NAME_TEMPLATE")
        try:
            zoneinfo.ZoneInfo(self.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"MAPPING_TIME_ZONE: {self.time_zone!r} is not an IANA time zone (e.g. America/Chicago)") from None

    def describe(self) -> dict[str, str]:
        """The options as metadata: which mapping produced a file."""
        return {
            "course_mode": self.course_mode,
            "term_types": ",".join(self.term_types),
            "roles": ",".join(f"{k}={v}" for k, v in sorted(self.roles.items())),
            "login_id_from": self.login_id_from,
            "new_course_status": self.new_course_status,
            "disabled_user_status": self.disabled_user_status,
            "observers": str(self.observers).lower(),
            "time_zone": self.time_zone,
        }

    # --- the DuckDB session ----------------------------------------------------------------------
    def open_roster_db(self, data_dir: DataDir, term_id: str | None = None,
                       last_import: Path | None = None) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB over the latest snapshot's Parquet with the mapping model built.

        `term_id` (an academicSession sourcedId) selects the term the per-term SQL reads; `last_import`
        is the folder of that term data set's CSVs as last imported into Canvas, if there is one.
        """
        self.check()
        conn = duckdb.connect(":memory:")
        try:
            _register_sources(conn, data_dir)
            self._install(conn, term_id)
            conn.execute(sql_text("canvas_model"))
            _register_imported_logins(conn, DataSet.for_name(data_dir, DISTRICT).last_imported_dir() / "users.csv")
            conn.execute(sql_text("canvas_model_users"))
            if term_id is not None:
                _register_last_import(conn, last_import)
                conn.execute(sql_text("canvas_term_model"))
        except BaseException:
            conn.close()
            raise
        return conn

    def _install(self, conn: duckdb.DuckDBPyConnection, term_id: str | None) -> None:
        conn.execute(f"SET TimeZone = {sql_literal(self.time_zone)}")
        variables: Mapping[str, object] = {
            "course_mode": self.course_mode,
            "term_types": [t.lower() for t in self.term_types],
            "login_id_from": self.login_id_from,
            "authentication_provider_id": self.authentication_provider_id or None,
            "new_course_status": self.new_course_status,
            "disabled_user_status": self.disabled_user_status,
            "observers": self.observers,
            "root_account_id": self.root_account_id or None,
            "account_id_from": self.account_id_from,
            "guardian_roles": list(GUARDIAN_ROLES),
            "term_id": term_id,
        }
        for name, value in variables.items():
            if value is None:
                conn.execute(f"SET VARIABLE {name} = NULL::VARCHAR")
            else:
                conn.execute(f"SET VARIABLE {name} = ?", [value])
        conn.execute("CREATE TABLE rb_role_map (oneroster_role VARCHAR PRIMARY KEY, canvas_role VARCHAR NOT NULL)")
        conn.executemany(
            "INSERT INTO rb_role_map VALUES (?, ?)",
            [[k.lower(), v] for k, v in sorted(self.roles.items())],
        )
        conn.execute(
            _template_macro("rb_account_name", self.account_name_template, ACCOUNT_NAME_FIELDS, "MAPPING_ACCOUNT_NAME_TEMPLATE")
        )
        conn.execute(
            _template_macro("rb_term_name", self.term_name_template, TERM_NAME_FIELDS, "MAPPING_TERM_NAME_TEMPLATE")
        )


def _register_imported_logins(conn: duckdb.DuckDBPyConnection, users_csv: Path) -> None:
    """rb_imported_login(user_id, login_key): the logins the district's last Canvas import gave the users
    whose login is shared now (users.csv is read only when some login is: nearly never)."""
    if users_csv.is_file() and conn.execute("SELECT count(*) FROM rb_shared_login_user").fetchone()[0]:
        conn.execute(f"CREATE TABLE rb_imported_login AS SELECT i.user_id, lower(trim(i.login_id)) AS login_key "
                     f"FROM read_csv({sql_literal(str(users_csv))}, header = true, all_varchar = true) i "
                     "SEMI JOIN rb_shared_login_user s ON s.user_id = i.user_id")
    else:
        conn.execute("CREATE TABLE rb_imported_login (user_id VARCHAR, login_key VARCHAR)")


def _register_last_import(conn: duckdb.DuckDBPyConnection, folder: Path | None) -> None:
    """From the term data set's last Canvas import (`folder`, its last_imported/): rb_imported_section
    (section_id), its sections, and rb_imported_deleted_enrollment (section_id, user_id, role), its
    enrollments sent as deleted, with those of an import Canvas applied without diffing since."""
    sections = folder / "sections.csv" if folder is not None else None
    deleted = [str(path) for path in (folder / DELETED_ENROLLMENTS, folder.parent / EXCEEDED_DELETED_ENROLLMENTS)
               if path.is_file()] if folder is not None else []
    conn.execute("CREATE TABLE rb_imported_section AS " + (
        f"SELECT DISTINCT section_id FROM read_csv({sql_literal(str(sections))}, header = true, all_varchar = true)"
        if sections is not None and sections.is_file() else "SELECT NULL::VARCHAR AS section_id LIMIT 0"))
    conn.execute("CREATE TABLE rb_imported_deleted_enrollment AS " + (
        "SELECT DISTINCT section_id, user_id, role FROM read_csv(?, header = true, all_varchar = true)" if deleted
        else "SELECT NULL::VARCHAR AS section_id, NULL::VARCHAR AS user_id, NULL::VARCHAR AS role LIMIT 0"),
        [deleted] if deleted else None)


def _register_sources(conn: duckdb.DuckDBPyConnection, data_dir: DataDir) -> None:
    """Views over one snapshot's Parquet (a missing optional entity is an empty table)."""
    paths = data_dir.snapshot_paths([e for e in SOURCE_VIEWS if e not in OPTIONAL_SOURCES], OPTIONAL_SOURCES)
    for entity, view in SOURCE_VIEWS.items():
        if entity not in paths:
            conn.register(f"{view}_empty", pa.table({f.name: pa.array([], f.type) for f in ENTITIES[entity].schema}))
            conn.execute(f"CREATE VIEW {view} AS SELECT * FROM {view}_empty")
            continue
        conn.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet({sql_literal(str(paths[entity]))})")
