"""Canvas SIS-import CSVs from the OneRoster snapshot: DuckDB SQL over the Parquet, one data set for the
district (accounts, terms, users, user_observers) and one per `school_term` partition (courses,
sections, enrollments), each guarded by a blocking check that applies Canvas's importer rules.

The SQL is in `assets/sql/canvas_*.sql` (the shared model in `canvas_model.sql`); the mapping options
are the `mapping` resource (`MappingSettings`). See docs/transform.md.
"""

import csv
import io
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb

from assets.extract import asset_key as extract_asset_key
from pipeline import canvas_rules
from pipeline.canvas_data_set import DISTRICT, DataSet
from pipeline.datadir import DataDir, atomic_path
from pipeline.markdown import markdown_table
from pipeline.personal_data import mask_record
from pipeline.partitions import add_new_terms, school_term_partitions, term_partitions, term_sourced_id
from pipeline.resources.mapping import SOURCE_VIEWS, MappingSettings, sql_literal, sql_text

GROUP = "canvas_csv"
PREVIEW_ROWS = 5
# Violations listed in a failed check's metadata; the count covers all of them.
VIOLATIONS_SHOWN = 25

Lineage = Mapping[str, tuple[tuple[str, str], ...]]  # CSV column -> ((OneRoster entity, field), ...)


@dataclass(frozen=True)
class CanvasFile:
    """One Canvas SIS-import CSV: its asset, its SQL and where its columns come from."""

    name: str  # file stem: users -> users.csv, canvas/users_csv, assets/sql/canvas_users.sql
    description: str

    @property
    def key(self) -> dg.AssetKey:
        return dg.AssetKey(["canvas", f"{self.name}_csv"])

    @property
    def file_name(self) -> str:
        return f"{self.name}.csv"

    @property
    def query(self) -> str:
        return sql_text(f"canvas_{self.name}").strip().rstrip(";")


ACCOUNTS = CanvasFile("accounts", "Canvas accounts from OneRoster orgs, parents first.")
TERMS = CanvasFile("terms", "Canvas terms from the academicSessions of MAPPING_TERM_TYPES.")
USERS = CanvasFile(
    "users",
    "Canvas users: staff and students (guardians when MAPPING_OBSERVERS=true) with a login_id.",
)
USER_OBSERVERS = CanvasFile(
    "user_observers", "Guardian -> student links from OneRoster agents (header only unless MAPPING_OBSERVERS=true)."
)
COURSES = CanvasFile("courses", "Canvas courses of one term (MAPPING_COURSE_MODE).")
SECTIONS = CanvasFile("sections", "Canvas sections of one term: one per class.")
ENROLLMENTS = CanvasFile("enrollments", "Canvas enrollments of one term, roles mapped by MAPPING_ROLES.")
DISTRICT_FILES = (ACCOUNTS, TERMS, USERS, USER_OBSERVERS)
TERM_FILES = (COURSES, SECTIONS, ENROLLMENTS)


def column_lineage(file: CanvasFile, mapping: MappingSettings) -> Lineage:
    """Which OneRoster fields each column of `file` is computed from, under `mapping`."""
    per_class = mapping.course_mode == "per_class"
    course_id = (("classes", "sourcedId"),) if per_class else (
        ("classes", "courseSourcedId"), ("academicSessions", "sourcedId"))
    course_names = (("classes", "classCode"), ("classes", "title")) if per_class else (
        ("courses", "courseCode"), ("courses", "title"), ("classes", "title"))
    account_id = (("orgs", "sourcedId"),) + ((("orgs", "identifier"),) if mapping.account_id_from == "identifier" else ())
    lineages: dict[str, Lineage] = {
        "accounts": {
            "account_id": account_id,
            "parent_account_id": (("orgs", "parentSourcedId"),),
            "name": (("orgs", "name"), ("orgs", "identifier"), ("orgs", "type")),
            "status": (("orgs", "status"),),
        },
        "terms": {
            "term_id": (("academicSessions", "sourcedId"),),
            "name": (("academicSessions", "title"), ("academicSessions", "schoolYear"), ("academicSessions", "type")),
            "status": (("academicSessions", "status"),),
            "start_date": (("academicSessions", "startDate"),),
            "end_date": (("academicSessions", "endDate"),),
        },
        "users": {
            "user_id": (("users", "sourcedId"),),
            "login_id": (("users", mapping.login_id_from),),
            "authentication_provider_id": (),
            "first_name": (("users", "givenName"),),
            "last_name": (("users", "familyName"),),
            "email": (("users", "email"),),
            "status": (("users", "status"), ("users", "enabledUser")),
        },
        "user_observers": {
            "observer_id": (("users", "sourcedId"), ("users", "agentSourcedIds"), ("users", "role")),
            "student_id": (("users", "sourcedId"), ("users", "agentSourcedIds"), ("users", "role")),
            "status": (("users", "status"),),
        },
        "courses": {
            "course_id": course_id,
            "short_name": course_names,
            "long_name": course_names,
            "account_id": (("classes", "schoolSourcedId"),) + account_id
            + (() if per_class else (("courses", "orgSourcedId"),)),
            "term_id": (("classes", "termSourcedIds"), ("academicSessions", "sourcedId"), ("academicSessions", "parentSourcedId")),
            "status": (("classes", "status"),) + (() if per_class else (("courses", "status"),)),
        },
        "sections": {
            "section_id": (("classes", "sourcedId"),),
            "course_id": course_id,
            "name": (("classes", "title"), ("classes", "classCode")),
            "status": (("classes", "status"),) + (() if per_class else (("courses", "status"),)),
        },
        "enrollments": {
            "course_id": (("enrollments", "classSourcedId"),) + course_id,
            "section_id": (("enrollments", "classSourcedId"),),
            "user_id": (("enrollments", "userSourcedId"),),
            "role": (("enrollments", "role"),),
            "status": (("enrollments", "status"), ("users", "status"), ("classes", "status")),
        },
    }
    return lineages[file.name]


# --- writing -----------------------------------------------------------------------------------
def write_csv(conn: duckdb.DuckDBPyConnection, file: CanvasFile, directory: Path) -> tuple[Path, int, list[str]]:
    """Write `file` into `directory` atomically; returns its path, data rows and columns."""
    query = file.query
    columns = [row[0] for row in conn.execute(f"DESCRIBE {query}").fetchall()]
    final = directory / file.file_name
    with atomic_path(final) as tmp:
        (rows,) = conn.execute(f"COPY ({query}) TO {sql_literal(str(tmp))} (FORMAT csv, HEADER true)").fetchone()
    return final, rows, columns


def preview(file: CanvasFile, path: Path) -> dg.MetadataValue:
    """The first rows as a Markdown table, personal values masked."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = [mask_record(file.name, dict(zip(header, row))) for row in itertools.islice(reader, PREVIEW_ROWS)]
    return dg.MetadataValue.md(markdown_table(header, [[row[column] for column in header] for row in rows]))


def file_metadata(file: CanvasFile, mapping: MappingSettings, path: Path, rows: int, columns: list[str]) -> dict:
    lineage = column_lineage(file, mapping)
    if list(lineage) != columns:
        raise RuntimeError(f"{file.file_name}: lineage columns {list(lineage)} do not match the SQL's {columns}")
    return {
        "dagster/row_count": rows,
        "dagster/column_schema": dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in columns]),
        "dagster/column_lineage": dg.TableColumnLineage(
            deps_by_column={
                column: [dg.TableColumnDep(asset_key=extract_asset_key(e), column_name=f) for e, f in deps]
                for column, deps in lineage.items()
                if deps
            }
        ),
        "path": dg.MetadataValue.path(str(path)),
        "preview": preview(file, path),
    }


def _count_table(rows: list[tuple[str, int]], label: str) -> dg.MetadataValue:
    return dg.MetadataValue.table(
        records=[dg.TableRecord({label: name, "count": n}) for name, n in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(label), dg.TableColumn("count", "int")]),
    )


def _conflicting_login_sample(conn: duckdb.DuckDBPyConnection) -> dg.MetadataValue:
    """Which users lost their login_id to whom (ids only, like the check's findings: they name the
    records to fix in the SIS; the login itself is never shown)."""
    rows = conn.execute(sql_text("canvas_users_with_conflicting_login_sample")).fetchall()
    return dg.MetadataValue.table(
        records=[dg.TableRecord({"user_id": user_id, "login_kept_by": owner}) for user_id, owner in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn("user_id"), dg.TableColumn("login_kept_by")]),
    )


def _counts(conn: duckdb.DuckDBPyConnection, query: str, name: str, label: str) -> dict:
    """`name` (the total) and `name_by_<label>` from a query of (label, count) rows."""
    rows = conn.execute(sql_text(query)).fetchall()
    return {name: sum(n for _, n in rows), f"{name}_by_{label}": _count_table(rows, label)}


def build_district(conn: duckdb.DuckDBPyConnection, data_dir: DataDir, mapping: MappingSettings) -> Iterator[tuple[CanvasFile, dict]]:
    """Write the district data set; yields each file with its metadata."""
    cycle = conn.execute(sql_text("canvas_org_cycles")).fetchall()
    if cycle:
        listed = ", ".join(f"{org} (parent {parent})" for org, parent in cycle[:10])
        raise dg.Failure(
            description=f"orgs whose parentSourcedId chain loops back on itself cannot become Canvas accounts: {listed}",
            allow_retries=False,
        )
    directory = data_dir.canvas_dir(DISTRICT)
    for file in DISTRICT_FILES:
        path, rows, columns = write_csv(conn, file, directory)
        metadata = file_metadata(file, mapping, path, rows, columns)
        if file is USERS:
            metadata.update(_counts(conn, "canvas_users_without_login", "users_without_login_id", "role"))
            metadata.update(_counts(conn, "canvas_users_with_conflicting_login", "users_with_conflicting_login_id", "role"))
            metadata["users_with_conflicting_login_id_sample"] = _conflicting_login_sample(conn)
            metadata["login_id_from"] = mapping.login_id_from
        if file is TERMS:
            (without_term,) = conn.execute(sql_text("canvas_classes_without_term")).fetchone()
            metadata["classes_without_term"] = without_term
        yield file, metadata


def build_term(conn: duckdb.DuckDBPyConnection, data_dir: DataDir, mapping: MappingSettings, key: str) -> Iterator[tuple[CanvasFile, dict]]:
    """Write one term's data set (the term was given to `open_roster_db`); yields each file with its metadata."""
    (known,) = conn.execute(sql_text("canvas_term_is_known")).fetchone()
    if not known:
        # Empty files would make the upload's diffing delete every course of the term in Canvas.
        raise dg.Failure(
            description=f"school_term {key!r} (academicSession {term_sourced_id(key)!r}) is not a term of "
            f"the latest snapshot (MAPPING_TERM_TYPES={','.join(mapping.term_types)}): its files are left as they are",
            allow_retries=False,
        )
    directory = data_dir.canvas_dir(key)
    for file in TERM_FILES:
        path, rows, columns = write_csv(conn, file, directory)
        metadata = file_metadata(file, mapping, path, rows, columns)
        if file is ENROLLMENTS:
            skipped = conn.execute(sql_text("canvas_enrollment_skips")).fetchall()
            metadata["enrollments_skipped"] = sum(n for _, n in skipped)
            metadata["enrollments_skipped_by_reason"] = _count_table(skipped, "reason")
        yield file, metadata


# --- assets --------------------------------------------------------------------------------------
def _spec(file: CanvasFile, *, extra_deps: tuple[dg.AssetKey, ...] = (), partitioned: bool = False) -> dg.AssetSpec:
    return dg.AssetSpec(
        file.key,
        group_name=GROUP,
        description=file.description,
        # Every step opens one DuckDB session over the whole snapshot (terms are found from classes,
        # users are filtered by enrollments), so each file depends on every entity that session reads.
        deps=[extract_asset_key(e) for e in SOURCE_VIEWS] + list(extra_deps),
        kinds={"duckdb", "csv"},
        partitions_def=school_term_partitions if partitioned else None,
    )


@dg.multi_asset(name="canvas_district_csvs", specs=[_spec(f) for f in DISTRICT_FILES])
def canvas_district_csvs(
    context: dg.AssetExecutionContext, data_dir: DataDir, mapping: MappingSettings
) -> Iterator[dg.MaterializeResult]:
    """accounts.csv, terms.csv, users.csv and user_observers.csv; also adds new school_term partitions."""
    with mapping.open_roster_db(data_dir) as conn:
        for file, metadata in build_district(conn, data_dir, mapping):
            if file is TERMS:
                # Registering here lets a plain materialization of the term assets work without the
                # daemon's discovery sensor; keys are only added, so ended terms stay in the UI.
                terms = term_partitions(conn)
                added = add_new_terms(context.instance, terms)
                if added:
                    context.log.info(f"new school_term partitions: {', '.join(added)}")
                metadata["school_term_partitions"] = dg.MetadataValue.md(
                    "\n".join(f"- `{t.key}` {t.title or ''} ({t.type}, {t.start_date} – {t.end_date}): {t.classes} classes" for t in terms)
                    or "(none)"
                )
                metadata["school_term_partitions_added"] = len(added)
            metadata["mapping"] = dg.MetadataValue.json(mapping.describe())
            yield dg.MaterializeResult(asset_key=file.key, metadata=metadata)


@dg.multi_asset(
    name="canvas_term_csvs",
    specs=[_spec(f, extra_deps=(ACCOUNTS.key, TERMS.key, USERS.key), partitioned=True) for f in TERM_FILES],
    partitions_def=school_term_partitions,
)
def canvas_term_csvs(
    context: dg.AssetExecutionContext, data_dir: DataDir, mapping: MappingSettings
) -> Iterator[dg.MaterializeResult]:
    """courses.csv, sections.csv and enrollments.csv of one school term."""
    key = context.partition_key
    term_id = term_sourced_id(key)
    last_import = DataSet.for_name(data_dir, key).last_imported_dir()
    with mapping.open_roster_db(data_dir, term_id=term_id, last_import=last_import) as conn:
        for file, metadata in build_term(conn, data_dir, mapping, key):
            metadata["term_sourced_id"] = term_id
            yield dg.MaterializeResult(asset_key=file.key, metadata=metadata)


# --- blocking checks: Canvas's importer rules ------------------------------------------------------
CHECK_NAME = "canvas_import_rules"


def _read_files(directory: Path, files: tuple[CanvasFile, ...]) -> dict[str, bytes]:
    missing = [f.file_name for f in files if not (directory / f.file_name).is_file()]
    if missing:
        raise dg.Failure(description=f"{', '.join(missing)} not found in {directory}: materialize the CSV assets first")
    return {f.file_name: (directory / f.file_name).read_bytes() for f in files}


def existing_ids_from_district(district: Mapping[str, bytes], root_account_id: str = "") -> canvas_rules.ExistingIds:
    """The ids a term data set may refer to: those the district data set creates (deleted users noted)."""

    def rows(name: str) -> Iterator[dict[str, str]]:
        return csv.DictReader(io.StringIO(district[name].decode("utf-8"), newline=""))

    existing = canvas_rules.ExistingIds()
    existing.accounts = {r["account_id"] for r in rows(ACCOUNTS.file_name)}
    if root_account_id:
        existing.accounts.add(root_account_id)
    existing.terms = {r["term_id"] for r in rows(TERMS.file_name)}
    for row in rows(USERS.file_name):
        existing.users.add(row["user_id"])
        if row["status"].strip().lower().startswith("deleted"):
            existing.deleted_users.add(row["user_id"])
    return existing


def check_data_set(
    data_set: DataSet, files: tuple[CanvasFile, ...], checked: dict[str, bytes], violations: list[canvas_rules.Violation]
) -> Iterator[dg.AssetCheckResult]:
    """Record whether the `checked` bytes may be uploaded (no errors), then report each file."""
    data_set.record_check(checked, passed=not any(v.severity == "error" for v in violations))
    yield from _results_per_file(files, violations)


def _results_per_file(
    files: tuple[CanvasFile, ...], violations: list[canvas_rules.Violation]
) -> Iterator[dg.AssetCheckResult]:
    """One result per file: errors fail it (blocking the upload), warnings only annotate it."""
    for file in files:
        found = [v for v in violations if v.file == file.file_name]
        errors = [v for v in found if v.severity == "error"]
        severity = dg.AssetCheckSeverity.ERROR if errors else dg.AssetCheckSeverity.WARN
        shown = (errors or found)[:VIOLATIONS_SHOWN]
        yield dg.AssetCheckResult(
            asset_key=file.key,
            check_name=CHECK_NAME,
            passed=not found,
            severity=severity,
            description=(
                f"{len(errors)} error(s), {len(found) - len(errors)} warning(s) by Canvas's import rules"
                if found else "Canvas's import rules find nothing to reject"
            ),
            metadata={
                "errors": len(errors),
                "warnings": len(found) - len(errors),
                "violations": dg.MetadataValue.table(
                    records=[
                        dg.TableRecord(
                            {"file": v.file, "row": v.row if v.row is not None else 0, "id": v.record_id or "",
                             "message": v.message, "severity": v.severity, "source": v.source}
                        )
                        for v in shown
                    ],
                    schema=dg.TableSchema(
                        columns=[dg.TableColumn("file"), dg.TableColumn("row", "int"), dg.TableColumn("id"),
                                 dg.TableColumn("message"), dg.TableColumn("severity"), dg.TableColumn("source")]
                    ),
                ),
            },
        )


def _check_specs(files: tuple[CanvasFile, ...], what: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            CHECK_NAME,
            asset=f.key,
            blocking=True,
            description=f"Canvas's SIS importer rules over the {what} data set (pipeline/canvas_rules.py): "
            "required columns and values, statuses, roles, dates, references, duplicate ids.",
        )
        for f in files
    ]


@dg.multi_asset_check(name="canvas_district_import_rules", specs=_check_specs(DISTRICT_FILES, "district"))
def canvas_district_import_rules(
    context: dg.AssetCheckExecutionContext, data_dir: DataDir, mapping: MappingSettings
) -> Iterator[dg.AssetCheckResult]:
    data_set = DataSet.for_name(data_dir, DISTRICT)
    files = _read_files(data_set.directory, DISTRICT_FILES)
    existing = canvas_rules.ExistingIds(accounts={mapping.root_account_id} if mapping.root_account_id else set())
    yield from check_data_set(data_set, DISTRICT_FILES, files, canvas_rules.validate_import(files, existing))


@dg.multi_asset_check(name="canvas_term_import_rules", specs=_check_specs(TERM_FILES, "term"))
def canvas_term_import_rules(
    context: dg.AssetCheckExecutionContext, data_dir: DataDir, mapping: MappingSettings
) -> Iterator[dg.AssetCheckResult]:
    key = context.run.tags.get("dagster/partition")
    if not key:
        raise dg.Failure(description="the term import-rule check runs with a school_term partition (a term's run)")
    district = _read_files(data_dir.canvas_dir(DISTRICT), (ACCOUNTS, TERMS, USERS))
    data_set = DataSet.for_name(data_dir, key)
    files = _read_files(data_set.directory, TERM_FILES)
    existing = existing_ids_from_district(district, mapping.root_account_id)
    yield from check_data_set(data_set, TERM_FILES, files, canvas_rules.validate_import(files, existing))


defs = dg.Definitions(
    assets=[canvas_district_csvs, canvas_term_csvs],
    asset_checks=[canvas_district_import_rules, canvas_term_import_rules],
)
