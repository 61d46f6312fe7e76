"""Extract assets: one per OneRoster entity, streamed from the provider into tonight's Parquet snapshot.

Each asset writes `oneroster/<YYYY-MM-DD>/<entity>.parquet` (the fixed schema of
`pipeline.oneroster.schema`) and `oneroster/<YYYY-MM-DD>/rejects/<entity>.parquet` (records that broke
a rule, with the rule). Pages are normalised and checked as they arrive and written a row group at a
time, so memory does not grow with the district; duplicates and references are checked afterwards by
DuckDB over the written file, and the file is rewritten without those rejects only when there are any
(with the previous snapshot's version of each rejected record it holds: carried forward).
Both files appear atomically: a reader sees last night's file or tonight's, never half of one.
"""

import collections
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import settings
from pipeline.datadir import DataDir, atomic_path, tonight
from pipeline.oneroster import checks
from pipeline.oneroster.records import DecodedPage, PageConverter, redacted_json
from pipeline.oneroster.schema import DEFAULT_ENTITIES, ENTITIES, REJECTS, Entity
from pipeline.resources.oneroster import OneRosterClient

GROUP = "oneroster"
# Rows per Parquet row group: large enough for good compression and scans, small enough that a
# batch of pages in flight stays a few tens of MB.
ROW_GROUP_ROWS = 65_536
# Rows converted and checked at once: amortises per-call costs when the provider's pages are small
# (0.3–0.4 µs per row at 2,000, 0.15–0.25 at 8,000, for enrollments and users in pages of 100).
CONVERT_BATCH_ROWS = 8_000
# DuckDB spills to disk beyond this, which keeps the snapshot checks of 4M enrollments bounded.
DUCKDB_MEMORY_LIMIT = "1GB"


# Columns holding (nearly) one value per record. Dictionary-encoding them costs CPU and space for
# nothing; every other column repeats (status, roles, dates, school and class ids) and gains from it.
UNIQUE_PER_RECORD = frozenset({"sourcedId", "username", "email", "identifier", "userIds", "sms", "phone", "metadata"})


def _parquet_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    return pq.ParquetWriter(path, schema, use_dictionary=[c for c in schema.names if c not in UNIQUE_PER_RECORD])


def asset_key(entity: str) -> dg.AssetKey:
    return dg.AssetKey([GROUP, entity])


@dataclass
class ExtractReport:
    """What one entity's extract wrote: counts for metadata and the record check."""

    path: Path
    rejects_path: Path
    rows: int = 0
    rejected_records: int = 0
    rejects_by_rule: collections.Counter = field(default_factory=collections.Counter)  # (rule, field) → reject rows
    carried_forward: int = 0  # rejected tonight, written at last night's version instead
    carried_forward_from: str | None = None  # the snapshot those versions come from
    warnings_by_rule: collections.Counter = field(default_factory=collections.Counter)  # (rule, field) → records kept


class _BatchWriter:
    """Buffers normalised pages and writes them as row groups of about ROW_GROUP_ROWS rows."""

    def __init__(self, writer: pq.ParquetWriter):
        self._writer = writer
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows = 0

    def add(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        if self._pending_rows:
            table = pa.concat_tables(self._pending)
            self._writer.write_table(table, row_group_size=table.num_rows)
            self.rows += table.num_rows
        self._pending, self._pending_rows = [], 0


class UpstreamNotExtracted(Exception):
    """An entity's references can only be checked once the entities they point at are in the snapshot."""


def write_snapshot(entity: Entity, pages: Iterable[Sequence], data_dir: DataDir, snapshot: str) -> ExtractReport:
    """Stream `pages` of `entity` into the snapshot's Parquet file and rejects file.

    A page is a list of records, or a `DecodedPage` (the client's pages with `PageConverter.decode_many`).
    A record rejected tonight that the previous snapshot holds is written at that version instead
    (`carried_forward`): Canvas's diffing would otherwise delete it, and everything hanging off it.
    """
    report = ExtractReport(data_dir.entity_path(snapshot, entity.name), data_dir.rejects_path(snapshot, entity.name))
    referenced = {target: data_dir.entity_path(snapshot, target) for _, target in checks.REFERENCES[entity.name]}
    absent = sorted(name for name, path in referenced.items() if not path.exists())
    if absent:
        raise UpstreamNotExtracted(
            f"oneroster/{entity.name} is checked against {', '.join(absent)} of the same snapshot ({snapshot}), "
            f"which {'is' if len(absent) == 1 else 'are'} not extracted yet: materialize "
            f"{', '.join(f'oneroster/{a}' for a in absent)} first (or together)"
        )
    converter = PageConverter(entity)
    with (
        _SnapshotChecker(report.path.parent, entity.name) as checker,
        atomic_path(report.rejects_path) as rejects_tmp,
        pq.ParquetWriter(rejects_tmp, REJECTS) as rejects,
        atomic_path(report.path) as staging,
    ):
        with _parquet_writer(staging, entity.schema) as writer:
            batches = _BatchWriter(writer)
            for batch in _in_batches(pages):
                checked, records = _normalised(converter, entity.name, batch)
                table, problems = checked.table, checked.problems
                if problems:
                    rows = sorted({p.row for p in problems})
                    checks.note_rejected(checker.connection(), table.take(rows))
                    table = _drop_rows(table, rows, offset=0)
                    rejects.write_table(_reject_rows(entity.name, records, problems))
                    report.rejected_records += len(rows)
                    report.rejects_by_rule.update((p.rule, p.field) for p in problems)
                for rule, field_, count in checked.warnings:
                    report.warnings_by_rule[(rule, field_)] += count
                batches.add(table)
            batches.flush()
        rows_to_drop = _apply_snapshot_rules(entity, staging, referenced, checker.connection(), rejects, report)
        carried = _carry_forward(entity, data_dir, snapshot, staging, referenced, checker.connection(), rejects, report)
        checker.close()  # the rewrite does not need DuckDB's memory or spill files
        if len(rows_to_drop) or carried is not None:
            _rewrite(staging, entity.schema, rows_to_drop, carried)
        report.rows = pq.ParquetFile(staging).metadata.num_rows
    return report


def _in_batches(pages: Iterable[Sequence]) -> Iterator[list[Sequence]]:
    """Pages regrouped into runs of at least CONVERT_BATCH_ROWS rows, so that small pages do not pay
    the per-call cost of the Arrow conversion and checks once each."""
    batch: list[Sequence] = []
    rows = 0
    for page in pages:
        batch.append(page)
        rows += len(page)
        if rows >= CONVERT_BATCH_ROWS:
            yield batch
            batch, rows = [], 0
    if batch:
        yield batch


def _normalised(converter: PageConverter, entity: str, pages: list[Sequence]) -> tuple[checks.RecordCheck, Sequence]:
    """The pages' rows with the rules they break, and the records as received (for the rejects rows).

    Decoded pages are read in Arrow; their records are parsed only if a rule broke.
    """
    if all(isinstance(page, DecodedPage) for page in pages):
        checked = checks.check_records(entity, *converter.convert_decoded(pages))
        return checked, [record for page in pages for record in page] if checked.problems else ()
    records = [record for page in pages for record in page]
    return checks.check_records(entity, *converter.convert(records)), records


class _SnapshotChecker:
    """The step's DuckDB connection (spilling to a private directory next to the snapshot), opened in
    a background thread while the first pages are on their way: opening it costs about 10 ms of CPU
    that would otherwise be spent after the stream, when nothing else is waiting."""

    def __init__(self, directory: Path, entity: str):
        self._directory, self._entity = directory, entity
        self._spill: tempfile.TemporaryDirectory | None = None
        self._conn: duckdb.DuckDBPyConnection | None = None

    def __enter__(self) -> "_SnapshotChecker":
        self._opener = ThreadPoolExecutor(max_workers=1, thread_name_prefix="extract-duckdb")
        self._opening = self._opener.submit(self._open)
        return self

    def _open(self) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        self._spill = tempfile.TemporaryDirectory(dir=self._directory, prefix=f".{self._entity}.duckdb.")
        config = {"memory_limit": DUCKDB_MEMORY_LIMIT, "temp_directory": self._spill.name, "preserve_insertion_order": False}
        self._conn = duckdb.connect(":memory:", config=config)

    def connection(self) -> duckdb.DuckDBPyConnection:
        self._opening.result()
        assert self._conn is not None
        return self._conn

    def close(self) -> None:
        self._opener.shutdown(wait=True)
        try:
            if self._conn is not None:
                self._conn.close()
        finally:
            if self._spill is not None:
                self._spill.cleanup()
            self._conn = self._spill = None

    def __exit__(self, *exc_info) -> None:
        self.close()


def _apply_snapshot_rules(
    entity: Entity, staging: Path, referenced: dict[str, Path], conn: duckdb.DuckDBPyConnection,
    rejects: pq.ParquetWriter, report: ExtractReport,
) -> np.ndarray:
    """Writes the rejects of the snapshot rules and counts them; returns the rows to leave out."""
    found = checks.snapshot_problems(conn, entity.name, entity.schema, staging, referenced)
    for batch in found.rejects:
        rejects.write_batch(batch.cast(REJECTS))
    for rule, field_, count in found.counts:
        report.rejects_by_rule[(rule, field_)] += count
    report.rejected_records += len(found.rows_to_drop)
    return found.rows_to_drop


def previous_snapshot(data_dir: DataDir, snapshot: str, entity: str) -> str | None:
    """The newest snapshot before `snapshot` that holds `entity`."""
    earlier = [s for s in data_dir.snapshots() if s < snapshot and data_dir.entity_path(s, entity).exists()]
    return earlier[-1] if earlier else None


@dataclass(frozen=True)
class _Carried:
    path: Path  # last night's file
    rows: np.ndarray  # its sorted row numbers to write tonight


def _carry_forward(
    entity: Entity, data_dir: DataDir, snapshot: str, staging: Path, referenced: dict[str, Path],
    conn: duckdb.DuckDBPyConnection, rejects: pq.ParquetWriter, report: ExtractReport,
) -> _Carried | None:
    """Which of last night's records to write in place of tonight's rejected ones (None: none). Writes
    the rejects of those whose references no longer resolve, and counts what is carried forward."""
    if not report.rejected_records:
        return None  # a clean night pays nothing for this
    previous = previous_snapshot(data_dir, snapshot, entity.name)
    if previous is None:
        return None
    path = data_dir.entity_path(previous, entity.name)
    if not pq.read_schema(path).equals(entity.schema):
        # A file of an older schema cannot be copied as it is; tonight's rejects stay left out.
        dg.get_dagster_logger("rosterbridge").warning(
            f"{entity.name}: not carrying rejected records forward from {path}: its schema is not tonight's"
        )
        return None
    found = checks.carry_forward(conn, entity.name, entity.schema, staging, path, previous, referenced)
    for batch in found.rejects:
        rejects.write_batch(batch.cast(REJECTS))
    for rule, field_, count in found.counts:
        report.rejects_by_rule[(rule, field_)] += count
    report.carried_forward, report.carried_forward_from = len(found.rows), previous
    return _Carried(path, found.rows) if len(found.rows) else None


def _rewrite(path: Path, schema: pa.Schema, rows_to_drop: np.ndarray, carried: _Carried | None) -> None:
    """Rewrite `path` in place (atomically), batch by batch: without the given sorted row numbers, and
    followed by the carried-forward rows of last night's file."""
    with atomic_path(path) as rewritten, _parquet_writer(rewritten, schema) as writer:
        offset = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=ROW_GROUP_ROWS):
            table = pa.Table.from_batches([batch]).cast(schema)
            writer.write_table(_drop_rows(table, rows_to_drop, offset))
            offset += batch.num_rows
        if carried is not None:
            previous = pq.ParquetFile(carried.path)
            offset = 0
            for group in range(previous.metadata.num_row_groups):
                size = previous.metadata.row_group(group).num_rows
                if np.any((carried.rows >= offset) & (carried.rows < offset + size)):  # read only groups with some
                    table = previous.read_row_group(group).cast(schema)
                    writer.write_table(table.filter(pa.array(_row_mask(table, carried.rows, offset))))
                offset += size


def _drop_rows(table: pa.Table, rows: Iterable[int] | np.ndarray, offset: int) -> pa.Table:
    return table.filter(pa.array(~_row_mask(table, rows, offset)))


def _row_mask(table: pa.Table, rows: Iterable[int] | np.ndarray, offset: int) -> np.ndarray:
    """Which rows of `table` (row `offset` of its file first) are among the file's row numbers `rows`."""
    positions = np.arange(offset, offset + table.num_rows)
    return np.isin(positions, np.fromiter(rows, dtype=np.int64))


def _reject_rows(entity: str, page: Sequence[dict], problems: list[checks.Problem]) -> pa.Table:
    records = {row: redacted_json(entity, page[row]) for row in {p.row for p in problems}}
    rows = [
        {
            "entity": entity,
            "sourcedId": _sourced_id(page[p.row]),
            "rule": p.rule,
            "field": p.field,
            "message": p.message,
            "record": records[p.row],
        }
        for p in sorted(problems, key=lambda p: (p.row, p.rule, p.field))
    ]
    return pa.Table.from_pylist(rows, schema=REJECTS)


def _sourced_id(record: object) -> str | None:
    value = record.get("sourcedId") if isinstance(record, dict) else None
    # A lone UTF-16 surrogate (its wrong_type reject) is written as its \u escape: UTF-8 cannot hold it.
    return value.encode("utf-8", "backslashreplace").decode() if isinstance(value, str) else None


# --- Dagster definitions ---------------------------------------------------------------------------

def snapshot_of_run(context: dg.AssetExecutionContext) -> str:
    """The UTC date the run was created: every entity of one run lands in the same snapshot, even when
    the run goes past midnight (references are checked within a snapshot)."""
    record = context.instance.get_run_record_by_id(context.run.run_id)
    return tonight(record.create_timestamp if record else None)


def demographics_enabled() -> bool:
    value = settings.get("ONEROSTER_EXTRACT_DEMOGRAPHICS").strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"ONEROSTER_EXTRACT_DEMOGRAPHICS must be true or false, got {value!r}")
    return value == "true"


def enabled_entities() -> tuple[str, ...]:
    """The entities the nightly run extracts."""
    return DEFAULT_ENTITIES + (("demographics",) if demographics_enabled() else ())


def nightly_extract_selection() -> dg.AssetSelection:
    """The extract assets of the nightly run: every entity, demographics only when enabled."""
    return dg.AssetSelection.assets(*(asset_key(name) for name in enabled_entities()))


def _column_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(f.name, str(f.type), constraints=dg.TableColumnConstraints(nullable=f.nullable))
            for f in schema
        ]
    )


def _column_lineage(entity: str) -> dg.TableColumnLineage:
    """Reference columns hold sourcedIds of the upstream entity they were checked against."""
    return dg.TableColumnLineage(
        deps_by_column={
            column: [dg.TableColumnDep(asset_key=asset_key(target), column_name="sourcedId")]
            for column, target in checks.REFERENCES[entity]
        }
    )


def _counts_table(counts: collections.Counter, counted: str) -> dg.TableMetadataValue:
    return dg.MetadataValue.table(
        records=[dg.TableRecord({"rule": rule, "field": f, counted: n}) for (rule, f), n in sorted(counts.items())],
        schema=dg.TableSchema(
            columns=[dg.TableColumn("rule"), dg.TableColumn("field"), dg.TableColumn(counted, "int")]
        ),
    )


def _description(entity: Entity) -> str:
    text = (
        f"OneRoster {entity.name} ({entity.path}) as tonight's Parquet snapshot, references flattened to "
        f"sourcedIds. Records that break a rule go to rejects/{entity.name}.parquet with the rule."
    )
    if entity.name == "demographics":
        text += (
            " Sensitive and not needed by Canvas: off unless ONEROSTER_EXTRACT_DEMOGRAPHICS=true, and left out "
            "of the nightly run otherwise."
        )
    return text


def build_extract_asset(entity: Entity) -> dg.AssetsDefinition:
    upstream = sorted({target for _, target in checks.REFERENCES[entity.name]})

    @dg.asset(
        key=asset_key(entity.name),
        group_name=GROUP,
        kinds={"parquet"},
        deps=[asset_key(name) for name in upstream],
        description=_description(entity),
        tags={"sensitive": "true"} if entity.name == "demographics" else None,
    )
    def extract(context: dg.AssetExecutionContext, oneroster: OneRosterClient, data_dir: DataDir) -> dg.MaterializeResult:
        if entity.name == "demographics" and not demographics_enabled():
            raise dg.Failure(
                description=(
                    "oneroster/demographics is disabled: demographics are sensitive and Canvas does not need them. "
                    "Set ONEROSTER_EXTRACT_DEMOGRAPHICS=true to extract them."
                ),
                allow_retries=False,
            )
        started = time.monotonic()
        snapshot = snapshot_of_run(context)
        with oneroster.open() as session:
            try:
                # Read again from scratch (the files are rewritten) if records are deleted mid-read.
                report = session.read_collection(
                    entity.path,
                    lambda pages: write_snapshot(entity, pages, data_dir, snapshot),
                    envelope_keys=entity.envelope_keys,
                    decode=PageConverter(entity).decode_many,
                )
            except UpstreamNotExtracted as missing:
                raise dg.Failure(description=str(missing), allow_retries=False) from None
            stats = session.stats
        if report.rejected_records:
            carried = (
                f"; {report.carried_forward} kept at their version of {report.carried_forward_from} (carried forward)"
                if report.carried_forward else ""
            )
            context.log.warning(
                f"{entity.name}: {report.rejected_records} record(s) rejected{carried}, see {report.rejects_path}"
            )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": report.rows,
                "dagster/column_schema": _column_schema(entity.schema),
                "dagster/column_lineage": _column_lineage(entity.name),
                "snapshot": snapshot,
                "path": dg.MetadataValue.path(str(report.path)),
                "rejects_path": dg.MetadataValue.path(str(report.rejects_path)),
                "rejected_records": report.rejected_records,
                "rejects_by_rule": _counts_table(report.rejects_by_rule, "rejects"),
                # Spec rules broken by records that are kept all the same (checks.WARNED_COLUMNS, ENUM_VALUES).
                "warnings_by_rule": _counts_table(report.warnings_by_rule, "records"),
                "carried_forward": report.carried_forward,
                "carried_forward_from": report.carried_forward_from or "",
                "duration_seconds": round(time.monotonic() - started, 3),
                "pages_fetched": stats.pages_fetched,
                "requests": stats.requests,
                "retries": stats.retries,
            }
        )

    return extract


def reject_share_limit() -> float:
    share = settings.get_float("ROSTERBRIDGE_MAX_REJECT_SHARE")
    if share > 1:
        raise ValueError(f"ROSTERBRIDGE_MAX_REJECT_SHARE is a share between 0 and 1, got {share}")
    return share


def build_record_check(entity: Entity) -> dg.AssetChecksDefinition:
    key = asset_key(entity.name)

    @dg.asset_check(
        asset=key,
        name="record_rules",
        blocking=True,
        description=(
            "Fails (blocking downstream) when more than ROSTERBRIDGE_MAX_REJECT_SHARE of the records broke a "
            "record rule; warns when some did."
        ),
    )
    def record_rules(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        event = context.instance.get_latest_materialization_event(key)
        if event is None or event.asset_materialization is None:
            return dg.AssetCheckResult(
                passed=False, severity=dg.AssetCheckSeverity.ERROR, description=f"{key.to_user_string()} has not been extracted"
            )
        metadata = event.asset_materialization.metadata
        rows = metadata["dagster/row_count"].value
        rejected = metadata["rejected_records"].value
        carried = metadata["carried_forward"].value if "carried_forward" in metadata else 0
        total = rows - carried + rejected  # the records received tonight
        share = rejected / total if total else 0.0
        limit = reject_share_limit()
        result_metadata = {
            "rows": rows,
            "rejected_records": rejected,
            "reject_share": round(share, 6),
            "max_reject_share": limit,
            "rejects_path": metadata["rejects_path"],
            "rejects_by_rule": metadata["rejects_by_rule"],
            "carried_forward": carried,
            **({"warnings_by_rule": metadata["warnings_by_rule"]} if "warnings_by_rule" in metadata else {}),
        }
        if not rejected:
            return dg.AssetCheckResult(passed=True, metadata=result_metadata)
        over = share > limit
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR if over else dg.AssetCheckSeverity.WARN,
            description=(
                f"{rejected} of {total} {entity.name} records rejected ({share:.2%}"
                f"{', over' if over else ', within'} the {limit:.2%} limit)"
                f"{f', {carried} of them kept at their previous snapshot version' if carried else ''}; see the rejects file"
            ),
            metadata=result_metadata,
        )

    return record_rules


extract_assets = [build_extract_asset(ENTITIES[name]) for name in (*DEFAULT_ENTITIES, "demographics")]
record_checks = [build_record_check(ENTITIES[name]) for name in (*DEFAULT_ENTITIES, "demographics")]

defs = dg.Definitions(assets=extract_assets, asset_checks=record_checks)
