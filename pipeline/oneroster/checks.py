"""Record rules for extracted OneRoster entities: which records go to the rejects file, and why.

Two kinds of rules, so that memory stays bounded for millions of enrollments:

* per-record rules (required fields, enum values, and the type/format problems found while
  normalising) are evaluated on each page as it streams in (`check_records`), which also respells enum
  values that differ from the spec only by case or surrounding blanks;
* snapshot rules (duplicate sourcedIds, references to records that do not exist in the same snapshot)
  need the whole entity, so they run afterwards as anti-joins in one in-memory DuckDB over the written
  Parquet (`snapshot_problems`).

A record that breaks any rule is left out of tonight's records; the others flow. If the previous
snapshot holds it, its version there is carried forward instead (`carry_forward`, same DuckDB), so that
Canvas's diffing does not delete it; see docs/extract.md, Carry forward.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Rule names, as they appear in the rejects file's `rule` column.
REQUIRED = "required"
ENUM = "enum"
# Warnings only (records kept): an enum value respelled as the spec spells it, and one outside the
# spec's vocabulary kept as sent.
ENUM_NORMALISED = "enum_normalised"
ENUM_UNKNOWN = "enum_unknown"
DATE_FORMAT = "date_format"
BOOLEAN_FORMAT = "boolean_format"
WRONG_TYPE = "wrong_type"
DUPLICATE_SOURCED_ID = "duplicate_sourcedId"
MISSING_REFERENCE = "missing_reference"

STATUSES = ("active", "tobedeleted")
USER_ROLES = ("administrator", "aide", "guardian", "parent", "proctor", "relative", "student", "teacher")

# Columns (schema names) that must hold a value; list columns need at least one element.
_BASE_REQUIRED = ("sourcedId", "status", "dateLastModified")
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "orgs": (*_BASE_REQUIRED, "name", "type"),
    "academicSessions": (*_BASE_REQUIRED, "title", "type", "startDate", "endDate", "schoolYear"),
    "courses": (*_BASE_REQUIRED, "title", "courseCode"),
    "classes": (*_BASE_REQUIRED, "title", "courseSourcedId", "schoolSourcedId", "termSourcedIds"),
    "users": (*_BASE_REQUIRED, "enabledUser", "givenName", "familyName", "role", "orgSourcedIds"),
    "enrollments": (*_BASE_REQUIRED, "userSourcedId", "classSourcedId", "schoolSourcedId", "role"),
    "demographics": _BASE_REQUIRED,
}

# Columns OneRoster 1.1 requires but the pipeline does not: a record missing one is kept, and counted
# as a warning (`check_records`). A user's login may come from email or identifier
# (MAPPING_LOGIN_ID_FROM), and the transform leaves out, and counts, users without a usable login_id;
# rejecting a guardian or a staff member without a username here would instead make Canvas's diffing
# delete them.
WARNED_COLUMNS: dict[str, tuple[str, ...]] = {"users": ("username",)}


@dataclass(frozen=True)
class Vocabulary:
    """An enum field's values. `spec` as OneRoster 1.1 spells them; `legacy`, values outside 1.1 that
    providers still send and the pipeline understands (kept, counted as ENUM_UNKNOWN). A value equal to
    one of either but for case and surrounding blanks is respelled (ENUM_NORMALISED). Any other value is
    kept as sent and counted (ENUM_UNKNOWN), unless `unknown_rejects`: then the record is rejected
    (ENUM), because no downstream reading of it is safe."""

    spec: tuple[str, ...]
    legacy: tuple[str, ...] = ()
    unknown_rejects: bool = False


# Status decides whether a record exists in Canvas at all. OneRoster 1.0's `inactive` (the Microsoft
# sample still sends it) means the record is no longer in use: the transform deletes it, as it does
# `tobedeleted` (rb_deleted). Any other status cannot be read either way: kept as active, a removed
# student would stay enrolled; kept as deleted, a vendor's "pending" would delete a school. So such a
# record is rejected: last night's version is carried forward (Canvas keeps what it has), a new
# record waits until the SIS sends a status we know, and record_rules flags it.
_STATUS = {"status": Vocabulary(STATUSES, legacy=("inactive",), unknown_rejects=True)}
# The other enums only pick how a record is mapped, and an unknown value has a safe mapping: an org of
# any type is an account; a session whose type is not in MAPPING_TERM_TYPES stands for the term it
# rolls up to; classType and sex are not mapped; a role MAPPING_ROLES does not map is skipped and
# counted by the transform (enrollments), and a user account alone grants nothing.
ENUM_VALUES: dict[str, dict[str, Vocabulary]] = {
    "orgs": {**_STATUS, "type": Vocabulary(("department", "school", "district", "local", "state", "national"))},
    "academicSessions": {**_STATUS, "type": Vocabulary(("gradingPeriod", "semester", "schoolYear", "term"))},
    "courses": _STATUS,
    "classes": {**_STATUS, "classType": Vocabulary(("homeroom", "scheduled"))},
    "users": {**_STATUS, "role": Vocabulary(USER_ROLES)},
    # The spec's text lists administrator, proctor, student and teacher, but the IMS OpenAPI of 1.1 gives
    # enrollments the user roles, and providers send them (a 1.2-style `aide`, which the transform maps
    # as MAPPING_ROLES says).
    "enrollments": {**_STATUS, "role": Vocabulary(USER_ROLES)},
    "demographics": {**_STATUS, "sex": Vocabulary(("male", "female"))},
}

# References that must resolve to a record of another entity in the same snapshot:
# (column, referenced entity). Self-references (org/session parents, children, user agents) are not
# checked: a school whose district is not in the feed, or a student whose guardian is not, still
# belongs in Canvas, and rejecting it would cascade to all of its classes and enrollments.
REFERENCES: dict[str, tuple[tuple[str, str], ...]] = {
    "orgs": (),
    "academicSessions": (),
    "courses": (("orgSourcedId", "orgs"), ("schoolYearSourcedId", "academicSessions")),
    "classes": (("courseSourcedId", "courses"), ("schoolSourcedId", "orgs"), ("termSourcedIds", "academicSessions")),
    "users": (("orgSourcedIds", "orgs"),),
    "enrollments": (("userSourcedId", "users"), ("classSourcedId", "classes"), ("schoolSourcedId", "orgs")),
    "demographics": (),
}

# OneRoster field names that identify or describe a person. They never reach a rejects file, a
# message or Dagster metadata. Demographics are sensitive as a whole.
PERSONAL_FIELDS: dict[str, frozenset[str]] = {
    "users": frozenset(
        {"username", "userIds", "givenName", "familyName", "middleName", "identifier", "email", "sms", "phone", "password"}
    ),
    "demographics": frozenset(
        {
            "birthDate", "sex", "americanIndianOrAlaskaNative", "asian", "blackOrAfricanAmerican",
            "nativeHawaiianOrOtherPacificIslander", "white", "demographicRaceTwoOrMoreRaces",
            "hispanicOrLatinoEthnicity", "countryOfBirthCode", "stateOfBirthAbbreviation", "cityOfBirth",
            "publicSchoolResidenceStatus",
        }
    ),
}

# Schema column → the OneRoster JSON field it comes from, where the two differ (GUIDRefs).
REFERENCE_FIELDS: dict[str, str] = {
    "parentSourcedId": "parent",
    "childSourcedIds": "children",
    "schoolYearSourcedId": "schoolYear",
    "orgSourcedId": "org",
    "courseSourcedId": "course",
    "schoolSourcedId": "school",
    "termSourcedIds": "terms",
    "agentSourcedIds": "agents",
    "orgSourcedIds": "orgs",
    "userSourcedId": "user",
    "classSourcedId": "class",
}


def field_name(entity: str, column: str) -> str:
    """The OneRoster field a data engineer will look for in the provider's JSON."""
    return REFERENCE_FIELDS.get(column, column)


def is_personal(entity: str, field: str) -> bool:
    return field in PERSONAL_FIELDS.get(entity, ())


@dataclass(frozen=True)
class Problem:
    """One broken rule of one record. `row` is the record's position in its page or file."""

    row: int
    rule: str
    field: str
    message: str


@dataclass(frozen=True)
class RecordCheck:
    table: pa.Table  # the page, enum values respelled as the spec spells them
    problems: list[Problem]  # the rules its records break: they are rejected
    warnings: list[tuple[str, str, int]]  # (rule, field, records) of rules broken by records kept all the same


def check_records(entity: str, table: pa.Table, known: Sequence[Problem] = ()) -> RecordCheck:
    """Required-field and enum rules of a normalised page, plus the `known` normalisation problems.

    A field that already failed to normalise (e.g. a malformed date, now null) is not reported a
    second time as missing. Warnings count only records that are not rejected.
    """
    problems = list(known)
    warned: list[tuple[str, str, pa.ChunkedArray | pa.Array]] = []
    for column, vocabulary in ENUM_VALUES[entity].items():
        table = _check_enum(entity, table, column, vocabulary, problems, warned)
    already = {(p.row, p.field) for p in problems}
    for column in REQUIRED_COLUMNS[entity]:
        field = field_name(entity, column)
        for row in _true_rows(_missing(table.column(column))):
            if (row, field) not in already:
                problems.append(Problem(row, REQUIRED, field, f"{field} is required"))
    # Required by OneRoster, not by the pipeline (WARNED_COLUMNS).
    for column in WARNED_COLUMNS.get(entity, ()):
        warned.append((REQUIRED, field_name(entity, column), _missing(table.column(column))))
    rejected = pa.array(sorted({p.row for p in problems}), pa.int64())
    warnings = []
    for rule, field, mask in warned:
        records = (pc.sum(mask).as_py() or 0) - (pc.sum(mask.take(rejected)).as_py() or 0)
        if records:
            warnings.append((rule, field, records))
    return RecordCheck(table, problems, warnings)


def _check_enum(
    entity: str, table: pa.Table, column: str, vocabulary: Vocabulary, problems: list[Problem], warned: list
) -> pa.Table:
    """`table` with `column`'s values respelled; adds the rejects to `problems` and the warnings'
    row masks to `warned`. A page whose values are all spelled as the spec has them costs one `is_in`."""
    values = table.column(column)
    # Blank is "missing", which the required rule reports where it matters.
    outside = pc.and_kleene(pc.is_valid(values), pc.invert(pc.is_in(values, pa.array(("", *vocabulary.spec)))))
    if not pc.any(outside).as_py():
        return table
    field = field_name(entity, column)
    known = ("", *vocabulary.spec, *vocabulary.legacy)
    # Each value's position among the known ones, ignoring case and surrounding blanks (a value of
    # blanks only is blank, i.e. missing).
    position = pc.index_in(pc.utf8_lower(pc.utf8_trim_whitespace(values)), pa.array([k.lower() for k in known]))
    spelled = pc.take(pa.array(known), position)
    respelled = pc.and_kleene(pc.is_valid(position), pc.not_equal(spelled, values))
    if pc.any(respelled).as_py():
        values = pc.if_else(respelled, spelled, values)
        table = table.set_column(table.schema.get_field_index(column), column, values)
        warned.append((ENUM_NORMALISED, field, respelled))
    if vocabulary.legacy:
        warned.append((ENUM_UNKNOWN, field, pc.is_in(values, pa.array(vocabulary.legacy))))
    unknown = pc.and_kleene(pc.is_valid(values), pc.is_null(position))
    if not vocabulary.unknown_rejects:
        warned.append((ENUM_UNKNOWN, field, unknown))
        return table
    allowed = "|".join(vocabulary.spec) + "".join(f" (or {v})" for v in vocabulary.legacy)
    for row in _true_rows(unknown):
        shown = "" if is_personal(entity, field) else f" {values[row].as_py()!r}"
        problems.append(Problem(row, ENUM, field, f"{field}{shown} is not one of {allowed}"))
    return table


def _missing(values: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Which values are missing: null, blank text or an empty list."""
    missing = pc.is_null(values)
    if pa.types.is_list(values.type):
        missing = pc.or_kleene(missing, pc.equal(pc.list_value_length(values), 0))
    elif pa.types.is_string(values.type):
        missing = pc.or_kleene(missing, pc.equal(values, ""))
    return missing


def _true_rows(mask: pa.ChunkedArray | pa.Array) -> list[int]:
    return pc.indices_nonzero(pc.fill_null(mask, False)).to_pylist()


# --- snapshot rules (DuckDB over the written Parquet) ----------------------------------------------

def _sql(name: str) -> str:
    return resources.files("assets").joinpath("sql", name).read_text(encoding="utf-8")


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True)
class SnapshotProblems:
    rejects: pa.RecordBatchReader  # REJECTS rows, streamed; read before the connection closes
    rows_to_drop: np.ndarray  # sorted row numbers of the checked file
    counts: list[tuple[str, str, int]]  # (rule, field, reject rows)


# The staged file as a relation of rows numbered as in the file.
_STAGED_ROWS = "(SELECT file_row_number AS row_number, * FROM read_parquet($staging, file_row_number = true))"


def snapshot_problems(
    conn: duckdb.DuckDBPyConnection,
    entity: str,
    schema: pa.Schema,
    staging: Path,
    referenced: Mapping[str, Path],
) -> SnapshotProblems:
    """Duplicate and dangling-reference problems of a whole written entity file.

    `referenced` maps each entity named in REFERENCES[entity] to its file in the same snapshot.
    Problems are staged in a DuckDB temporary table (`problems`), which spills to disk when large
    and which `carry_forward` reads afterwards.
    """
    params: dict[str, str] = {"staging": str(staging)}
    queries = [_sql("extract_duplicates.sql"), *_reference_queries(entity, schema, _STAGED_ROWS, referenced, params)]
    conn.execute("CREATE OR REPLACE TEMP TABLE problems AS " + "\nUNION ALL\n".join(queries), params)
    rows = conn.execute("SELECT DISTINCT row_number FROM problems ORDER BY row_number").fetchnumpy()["row_number"]
    counts = _counts(conn, "problems")
    reader = _rejects_reader(conn, entity, schema, "problems", _STAGED_ROWS, {"staging": str(staging)})
    return SnapshotProblems(reader, np.asarray(rows, dtype=np.int64), counts)


def _reference_queries(
    entity: str, schema: pa.Schema, rows: str, referenced: Mapping[str, Path], params: dict[str, str], note: str = ""
) -> list[str]:
    """One missing-reference query per reference column of `entity`, over the relation `rows`
    (columns row_number, sourcedId and the references); adds its parameters to `params`."""
    queries = []
    for i, (column, target) in enumerate(REFERENCES[entity]):
        is_list = pa.types.is_list(schema.field(column).type)
        queries.append(
            _sql("extract_missing_references.sql").format(
                rows=rows,
                reference=f"unnest({_quoted(column)})" if is_list else _quoted(column),
                field=f"CAST($field_{i} AS VARCHAR)",
                target=f"CAST($target_{i} AS VARCHAR)",
                target_path=f"$target_path_{i}",
                note="CAST($note AS VARCHAR) || " if note else "",
            )
        )
        params |= {f"field_{i}": field_name(entity, column), f"target_{i}": target, f"target_path_{i}": str(referenced[target])}
    if note and queries:
        params["note"] = note
    return queries


def _counts(conn: duckdb.DuckDBPyConnection, problems: str) -> list[tuple[str, str, int]]:
    counts = conn.execute(f"SELECT rule, field, count(*) FROM {problems} GROUP BY rule, field ORDER BY rule, field").fetchall()
    return [(rule, field_, int(n)) for rule, field_, n in counts]


def _rejects_reader(
    conn: duckdb.DuckDBPyConnection, entity: str, schema: pa.Schema, problems: str, rows: str, params: dict[str, str]
) -> pa.RecordBatchReader:
    """REJECTS rows of the problems in table `problems`, each with its record from `rows`."""
    kept_columns = [c for c in schema.names if not is_personal(entity, field_name(entity, c))]
    record = "to_json(struct_pack(" + ", ".join(f"{_quoted(c)} := s.{_quoted(c)}" for c in kept_columns) + "))"
    return conn.sql(
        _sql("extract_snapshot_rejects.sql").format(record=record, problems=problems, rows=rows),
        params={"entity": entity, **params},
    ).to_arrow_reader()


# --- carrying forward last night's version of a rejected record --------------------------------------

REJECTED_IDS_COLUMNS = "(sourcedId VARCHAR, status VARCHAR)"


def note_rejected(conn: duckdb.DuckDBPyConnection, rejected: pa.Table) -> None:
    """Remember the sourcedId and status of records a record rule rejected while streaming (sourcedId
    null when it was unreadable), for `carry_forward`."""
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS rejected_ids {REJECTED_IDS_COLUMNS}")
    conn.register("streamed_rejects", rejected.select(["sourcedId", "status"]))
    try:
        conn.execute("INSERT INTO rejected_ids SELECT sourcedId, status FROM streamed_rejects")
    finally:
        conn.unregister("streamed_rejects")


@dataclass(frozen=True)
class CarriedForward:
    rows: np.ndarray  # sorted row numbers of last night's file to write into tonight's
    rejects: pa.RecordBatchReader  # REJECTS rows of the candidates whose references no longer resolve
    counts: list[tuple[str, str, int]]  # (rule, field, reject rows) of those


def carry_forward(
    conn: duckdb.DuckDBPyConnection,
    entity: str,
    schema: pa.Schema,
    staging: Path,
    previous: Path,
    previous_snapshot: str,
    referenced: Mapping[str, Path],
) -> CarriedForward:
    """Last night's records (in `previous`) to keep tonight in place of tonight's rejected versions.

    Run after `snapshot_problems` on the same connection. A candidate is carried forward only if its
    references resolve in tonight's snapshot, as tonight's own records must: the referenced files
    already hold their own carried-forward records (upstream entities are written first), so an
    enrollment of a carried-forward user resolves, while a class whose course is in neither
    tonight's feed nor carried forward is not carried either (and gets a reject row saying why).
    """
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS rejected_ids {REJECTED_IDS_COLUMNS}")
    columns = ", ".join(f"previous.{_quoted(c)}" for c in schema.names)
    conn.execute(_sql("extract_carry_forward.sql").format(columns=columns), {"staging": str(staging), "previous": str(previous)})
    params: dict[str, str] = {}
    note = f"last night's version (snapshot {previous_snapshot}) not carried forward: "
    queries = _reference_queries(entity, schema, "carried", referenced, params, note=note)
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE carried_problems AS "
        + ("\nUNION ALL\n".join(queries) if queries else "SELECT * FROM problems LIMIT 0"),
        params,
    )
    rows = conn.execute(
        "SELECT row_number FROM carried ANTI JOIN carried_problems USING (row_number) ORDER BY row_number"
    ).fetchnumpy()["row_number"]
    counts = _counts(conn, "carried_problems")
    reader = _rejects_reader(conn, entity, schema, "carried_problems", "carried", {})
    return CarriedForward(np.asarray(rows, dtype=np.int64), reader, counts)
