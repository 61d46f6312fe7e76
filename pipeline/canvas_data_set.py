"""Canvas SIS-import data sets: which CSVs form one, how they are zipped, and what was last imported.

Two kinds of data set are uploaded: the district-wide one (accounts, terms, users, observers) and one
per term (courses, sections, enrollments). Each has its own Canvas diffing identifier so a record the
SIS stops sending is dropped from that data set alone. `last_imported/` keeps the exact files of the
data set's last successful import that Canvas diffed or remastered (Canvas's own diff base): the
baseline for skipping unchanged uploads, the mass-delete guard and the dry run. An import for which
Canvas skipped diffing (change beyond change_threshold) is recorded apart and is not the baseline, so
the next upload is compared, and sent, the way Canvas will diff it.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from pipeline.datadir import DataDir, atomic_path, atomic_write_bytes, atomic_write_text, remove_folder

DISTRICT = "district"
DISTRICT_FILES = ("accounts", "terms", "users", "user_observers")
TERM_FILES = ("courses", "sections", "enrollments")
# The columns that identify one record of each file (those present in the header are used): Canvas's
# identifying columns, except that a user_observers record is the (observer, student) pair.
KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "accounts": ("account_id",),
    "terms": ("term_id",),
    "users": ("user_id",),
    "user_observers": ("observer_id", "student_id"),
    "courses": ("course_id",),
    "sections": ("section_id",),
    "enrollments": ("course_id", "section_id", "user_id", "user_integration_id", "role", "role_id", "associated_user_id"),
}
# Files sent in an import of their own, without a diffing identifier, with the records of their last
# import that are gone now as explicit `deleted` rows. Canvas diffs user_observers on observer_id alone
# (UserObserverImporter.identifying_fields), so in a diffed import a guardian of several students keeps
# one link a night and removed links are never deleted.
UNDIFFED_FILES = frozenset({"user_observers"})
# Records Canvas rejected ({file: [key values, ...]}): re-sent, current version, in the next undiffed
# import. A rejected row is in Canvas's diff base and in the baseline, so no diffed import sends it again.
REJECTED_ROWS_RECORD = "rejected_rows.json"
# Canvas's row messages about rows it imported all the same (without the bad value): nothing to re-send.
IMPORTED_ANYWAY = ("The email address associated with user ", "Bad date format for ")
MAX_IDENTIFIER_BYTES = 128  # Canvas limit on diffing_data_set_identifier
LAST_IMPORTED = "last_imported"
LAST_IMPORTED_UNDIFFED = "last_imported_undiffed"  # the baseline of UNDIFFED_FILES
IMPORT_RECORD = "import.json"
# The last import Canvas applied without diffing (diffing_threshold_exceeded) since the baseline: history
# only, never a baseline (Canvas keeps diffing against the last import it diffed or remastered).
THRESHOLD_EXCEEDED_RECORD = "threshold_exceeded_import.json"
DELETED_ENROLLMENTS = "deleted_enrollments.csv"  # beside the imported enrollments.csv in last_imported/
# The same for an import Canvas applied without diffing since the baseline (beside the data set's CSVs).
EXCEEDED_DELETED_ENROLLMENTS = "threshold_exceeded_deleted_enrollments.csv"
# sha256 of the bytes that last passed the blocking import-rules check; the upload sends nothing else.
PASSED_CHECK_RECORD = "import_rules_passed.json"
PIN_PREFIX = ".pinned."
STALE_PIN_SECONDS = 24 * 3600
# A fixed timestamp inside the zip keeps identical CSVs byte-identical as a zip too.
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class DataSet:
    """One SIS-import data set: `name` is "district" or a term partition key."""

    name: str
    directory: Path
    files: tuple[str, ...]
    csv_directory: Path | None = None  # where the CSVs are read from, when not `directory` (see `pinned`)

    @classmethod
    def for_name(cls, data_dir: DataDir, name: str) -> DataSet:
        files = DISTRICT_FILES if name == DISTRICT else TERM_FILES
        return cls(name=name, directory=data_dir.canvas_dir(name), files=files)

    @property
    def label(self) -> str:
        return DISTRICT if self.name == DISTRICT else f"term {self.name}"

    def csv_path(self, file: str) -> Path:
        return (self.csv_directory or self.directory) / f"{file}.csv"

    @property
    def diffed_files(self) -> tuple[str, ...]:
        return tuple(file for file in self.files if file not in UNDIFFED_FILES)

    @property
    def undiffed_files(self) -> tuple[str, ...]:
        return tuple(file for file in self.files if file in UNDIFFED_FILES)

    def last_imported_path(self, file: str) -> Path:
        """The file as last imported: by the diffed import, or by the undiffed one for UNDIFFED_FILES."""
        return self.directory / (LAST_IMPORTED_UNDIFFED if file in UNDIFFED_FILES else LAST_IMPORTED) / f"{file}.csv"

    def last_imported_dir(self) -> Path:
        """The folder of the files of the last successful import (it may not exist). For readers in other
        steps (the term build): it repairs nothing, since an upload may be between the two renames of its
        swap; where the current baseline is missing it is the retired one."""
        current, retired = self.directory / LAST_IMPORTED, self._retired_baseline()
        return retired if not current.exists() and retired.is_dir() else current

    @property
    def zip_path(self) -> Path:
        return self.directory / "sis_import.zip"

    @property
    def result_path(self) -> Path:
        return self.directory / "sis_import_result.json"

    @property
    def undiffed_zip_path(self) -> Path:
        return self.directory / "sis_import_undiffed.zip"

    @property
    def undiffed_result_path(self) -> Path:
        return self.directory / "sis_import_undiffed_result.json"

    @property
    def passed_check_path(self) -> Path:
        return self.directory / PASSED_CHECK_RECORD

    def missing_files(self) -> list[str]:
        return [f"{file}.csv" for file in self.files if not self.csv_path(file).is_file()]

    def require_files(self) -> None:
        missing = self.missing_files()
        if missing:
            raise FileNotFoundError(
                f"{self.label}: {', '.join(missing)} not found in {self.directory}: "
                f"materialize the canvas/*_csv assets of this data set first"
            )

    @contextlib.contextmanager
    def pinned(self) -> Iterator[DataSet]:
        """This data set with each CSV as it is when pinned, for the length of an upload: hard links in a
        private folder (the transform replaces a CSV by renaming a new file over it, so linked bytes never
        change; copies where a link is not possible). The guard's diff, the zip and the new baseline then
        all see the bytes that were checked, even when a run rebuilds the CSVs meanwhile."""
        self.require_files()
        self._remove_stale_pins()
        folder = Path(tempfile.mkdtemp(prefix=PIN_PREFIX, dir=self.directory))
        try:
            for file in self.files:
                source, target = self.csv_path(file), folder / f"{file}.csv"
                try:
                    os.link(source, target)
                except OSError:
                    shutil.copyfile(source, target)
            yield dataclasses.replace(self, csv_directory=folder)
        finally:
            remove_folder(folder)

    def _remove_stale_pins(self) -> None:
        """Pins left by a process that was killed (they hold copies of personal data): any older than a
        day, which no upload lasts."""
        cutoff = time.time() - STALE_PIN_SECONDS
        for folder in self.directory.glob(f"{PIN_PREFIX}*"):
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                remove_folder(folder)

    # --- identity ------------------------------------------------------------------------------
    def diffing_identifier(self, prefix: str) -> str:
        """Stable per district and term, so Canvas diffs each data set only against itself."""
        suffix = DISTRICT if self.name == DISTRICT else f"term:{self.name}"
        identifier = f"{prefix}:{suffix}"
        if len(identifier.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
            raise ValueError(
                f"diffing_data_set_identifier {identifier!r} is longer than Canvas's {MAX_IDENTIFIER_BYTES} bytes: "
                f"shorten CANVAS_DIFFING_PREFIX"
            )
        return identifier

    def fingerprints(self) -> dict[str, str]:
        """sha256 of each current CSV."""
        return {file: file_sha256(self.csv_path(file)) for file in self.files}

    # --- upload --------------------------------------------------------------------------------
    def build_zip(self) -> bytes:
        """The data set's diffed CSVs as a zip (sorted, fixed timestamps, so equal input gives equal bytes):
        the bytes to upload, also written to `zip_path` for inspection."""
        self.require_files()
        return _write_zip(self.zip_path, {file: self.csv_path(file).read_bytes() for file in self.diffed_files})

    def undiffed_contents(self, with_undiffed_files: bool, retries: dict[str, set[tuple[str, ...]]]
                          ) -> tuple[dict[str, bytes], int, int]:
        """The files of the undiffed import ({file: CSV bytes}), how many `deleted` rows and how many
        re-sent rejected records they carry. With `with_undiffed_files`: every current row of the
        UNDIFFED_FILES, plus a deleted row for each record of their last undiffed import that is gone now.
        For the other files in `retries` (and UNDIFFED_FILES not sent whole): the current version of each
        rejected record (a record the SIS no longer sends has nothing left to retry)."""
        contents, deletes, retried = {}, 0, 0
        for file in self.files:
            if with_undiffed_files and file in UNDIFFED_FILES:
                buffer = io.BytesIO(self.csv_path(file).read_bytes())
                previous = self.last_imported_path(file)
                if previous.is_file() and self.last_import(LAST_IMPORTED_UNDIFFED) is not None:
                    deletes += _append_deleted_rows(buffer, previous, self.csv_path(file), KEY_COLUMNS[file])
                contents[file] = buffer.getvalue()
            elif retries.get(file):
                content, found = _current_records(self.csv_path(file), KEY_COLUMNS[file], retries[file])
                if found:
                    contents[file], retried = content, retried + found
        return contents, deletes, retried

    def build_undiffed_zip(self, contents: dict[str, bytes]) -> bytes:
        """`contents` as a zip, also written to `undiffed_zip_path`."""
        return _write_zip(self.undiffed_zip_path, contents)

    # --- rows Canvas rejected ------------------------------------------------------------------
    def pending_retries(self) -> dict[str, set[tuple[str, ...]]]:
        """The records Canvas rejected in the last imports, still to be re-sent."""
        if not self.rejected_rows_path.is_file():
            return {}
        recorded = json.loads(self.rejected_rows_path.read_text(encoding="utf-8"))
        return {file: {tuple(key) for key in keys} for file, keys in recorded.items()}

    def record_pending_retries(self, retries: dict[str, set[tuple[str, ...]]]) -> None:
        retries = {file: keys for file, keys in retries.items() if keys}
        if not retries:
            self.rejected_rows_path.unlink(missing_ok=True)
            return
        atomic_write_text(self.rejected_rows_path, json.dumps(
            {file: sorted(list(key) for key in keys) for file, keys in sorted(retries.items())}, indent=2))

    @property
    def rejected_rows_path(self) -> Path:
        return self.directory / REJECTED_ROWS_RECORD

    def rejected_records(self, messages: list[dict[str, Any]], uploaded: dict[str, bytes | Path]
                         ) -> dict[str, set[tuple[str, ...]]]:
        """The records of an import's row messages ({file: {key}}), keyed by KEY_COLUMNS: from the row as
        Canvas quotes it (`row_info`, in the file's columns), else from that row of the `uploaded` file
        (bytes or path). Rows Canvas imported all the same (IMPORTED_ANYWAY) are left out."""
        wanted: dict[str, list[dict[str, Any]]] = {}
        for m in messages:
            file = (m.get("file") or "").removesuffix(".csv")
            if m.get("row") is not None and file in uploaded and not m["message"].startswith(IMPORTED_ANYWAY):
                wanted.setdefault(file, []).append(m)
        rejected: dict[str, set[tuple[str, ...]]] = {}
        for file, found in wanted.items():
            with _text(uploaded[file]) as handle:
                reader = csv.reader(handle)
                header = [column.strip().lower() for column in next(reader, [])]
                positions = [header.index(c) for c in KEY_COLUMNS[file] if c in header]
                if not positions:  # no identifying column (the import-rules check prevents it): no key to keep
                    continue
                by_row = {m["row"]: m for m in found}
                rows: dict[int, list[str]] = {}
                for m in found:
                    if m.get("row_info"):
                        rows[m["row"]] = next(csv.reader([m["row_info"]]), [])
                missing = set(by_row) - set(rows)
                for number, values in enumerate(reader, start=2):  # Canvas counts the header as row 1
                    if not missing:
                        break
                    if number in missing:
                        rows[number] = values
                        missing.discard(number)
            rejected[file] = {tuple(values[i] if i < len(values) else "" for i in positions) for values in rows.values()}
        return rejected

    # --- last successful import ----------------------------------------------------------------
    def last_import(self, baseline: str = LAST_IMPORTED) -> dict[str, Any] | None:
        """The record of the last successful import ({import_id, workflow_state, sha256, ...}), if any; with
        `baseline=LAST_IMPORTED_UNDIFFED`, of the last undiffed one."""
        self._restore_interrupted_swap(baseline)
        record = self.directory / baseline / IMPORT_RECORD
        if not record.is_file():
            return None
        return json.loads(record.read_text(encoding="utf-8"))

    def unchanged_since_last_import(self, fingerprints: dict[str, str] | None = None) -> bool:
        """True when every diffed CSV (`fingerprints`, if already computed) is byte-identical to the one of
        the baseline."""
        return self._unchanged(LAST_IMPORTED, self.diffed_files, fingerprints)

    def undiffed_unchanged(self, fingerprints: dict[str, str] | None = None) -> bool:
        """True when there are no UNDIFFED_FILES or each is byte-identical to its last undiffed import."""
        return not self.undiffed_files or self._unchanged(LAST_IMPORTED_UNDIFFED, self.undiffed_files, fingerprints)

    def _unchanged(self, baseline: str, files: tuple[str, ...], fingerprints: dict[str, str] | None) -> bool:
        last = self.last_import(baseline)
        current = fingerprints or self.fingerprints()
        return last is not None and last.get("sha256") == {file: current[file] for file in files}

    # --- the blocking import-rules check -------------------------------------------------------
    def record_check(self, checked: dict[str, bytes], passed: bool) -> None:
        """After the import-rules check of `checked` ({"users.csv": bytes, ...}): remember what passed, by
        sha256, or forget any earlier pass. Blocking checks only stop their own run; this record lets an
        upload started on its own (from the UI, a retry) refuse files that were never checked or failed."""
        if not passed:
            self.passed_check_path.unlink(missing_ok=True)
            return
        digests = {name.removesuffix(".csv"): hashlib.sha256(data).hexdigest() for name, data in checked.items()}
        atomic_write_text(self.passed_check_path, json.dumps(digests, indent=2, sort_keys=True))

    def check_refusal(self, fingerprints: dict[str, str]) -> str | None:
        """Why files with these `fingerprints` must not be uploaded, or None when they passed the check."""
        if not self.passed_check_path.is_file():
            return (f"the {self.label} CSVs have not passed the canvas_import_rules check (it failed or never ran): "
                    "materialize the data set's canvas/*_csv assets with their checks first")
        passed = json.loads(self.passed_check_path.read_text(encoding="utf-8"))
        changed = sorted(f"{file}.csv" for file in self.files if passed.get(file) != fingerprints.get(file))
        if changed:
            return (f"the {self.label} CSVs changed after they passed the canvas_import_rules check "
                    f"({', '.join(changed)}; another run rebuilt them): materialize the data set's "
                    "canvas/*_csv assets with their checks again, then upload")
        return None

    @property
    def threshold_exceeded_path(self) -> Path:
        return self.directory / THRESHOLD_EXCEEDED_RECORD

    def last_threshold_exceeded_import(self) -> dict[str, Any] | None:
        """The record of the last import since the baseline that Canvas applied without diffing, if any."""
        if not self.threshold_exceeded_path.is_file():
            return None
        return json.loads(self.threshold_exceeded_path.read_text(encoding="utf-8"))

    def record_successful_import(self, sis_import: dict[str, Any], fingerprints: dict[str, str]) -> bool:
        """Make the uploaded (diffed) files the new baseline, swapping the whole folder so it is never
        half-old; returns False (and only records the import apart) when Canvas skipped diffing it: Canvas
        then dropped nothing and diffs the next import against the old base, and so must the pipeline."""
        record = self._import_record(sis_import, fingerprints, self.diffed_files)
        exceeded_deleted = self.directory / EXCEEDED_DELETED_ENROLLMENTS
        if sis_import.get("diffing_threshold_exceeded"):
            record["diffed_against_import_id"] = (self.last_import() or {}).get("import_id")
            if "enrollments" in self.diffed_files:
                # Canvas applied its deleted rows but diffs against the old base, where they may be active:
                # the term build must keep sending them deleted, as for a baseline's.
                with atomic_path(exceeded_deleted) as tmp:
                    _write_deleted_enrollments(self.csv_path("enrollments"), tmp)
            atomic_write_text(self.threshold_exceeded_path, json.dumps(record, indent=2, sort_keys=True))
            return False
        self._swap_baseline(LAST_IMPORTED, record, self.diffed_files)
        self.threshold_exceeded_path.unlink(missing_ok=True)
        exceeded_deleted.unlink(missing_ok=True)
        return True

    def record_undiffed_import(self, sis_import: dict[str, Any], fingerprints: dict[str, str]) -> None:
        """Make the UNDIFFED_FILES just imported the baseline their next `deleted` rows are computed from."""
        self._swap_baseline(LAST_IMPORTED_UNDIFFED, self._import_record(sis_import, fingerprints, self.undiffed_files),
                            self.undiffed_files)

    def _import_record(self, sis_import: dict[str, Any], fingerprints: dict[str, str],
                       files: tuple[str, ...]) -> dict[str, Any]:
        return {
            "data_set": self.name,
            "import_id": sis_import.get("id"),
            "workflow_state": sis_import.get("workflow_state"),
            "ended_at": sis_import.get("ended_at"),
            "sha256": {file: fingerprints[file] for file in files},
        }

    def _swap_baseline(self, baseline: str, record: dict[str, Any], files: tuple[str, ...]) -> None:
        staging = self.directory / f".{baseline}.new"
        retired = self._retired_baseline(baseline)
        self._restore_interrupted_swap(baseline)
        for leftover in (staging, retired):
            remove_folder(leftover)
        staging.mkdir(parents=True)
        for file in files:
            shutil.copyfile(self.csv_path(file), staging / f"{file}.csv")
        if "enrollments" in files:
            _write_deleted_enrollments(staging / "enrollments.csv", staging / DELETED_ENROLLMENTS)
        atomic_write_text(staging / IMPORT_RECORD, json.dumps(record, indent=2, sort_keys=True))
        current = self.directory / baseline
        if current.exists():
            os.replace(current, retired)
        os.replace(staging, current)
        remove_folder(retired)

    def _retired_baseline(self, baseline: str = LAST_IMPORTED) -> Path:
        return self.directory / f".{baseline}.old"

    def _restore_interrupted_swap(self, baseline: str = LAST_IMPORTED) -> None:
        """A process stopped between the two renames of `_swap_baseline` leaves only the retired
        baseline: it is still the last successful import (the guard and the diff must see it, not none)."""
        current = self.directory / baseline
        if not current.exists() and self._retired_baseline(baseline).is_dir():
            os.replace(self._retired_baseline(baseline), current)

    def write_result(self, path: Path, result: dict[str, Any]) -> None:
        """An import's outcome (`result_path` or `undiffed_result_path`), Canvas's raw messages included."""
        atomic_write_text(path, json.dumps(result, indent=2, sort_keys=True, default=str))


def _write_deleted_enrollments(enrollments: Path, target: Path) -> None:
    """The imported enrollments sent as deleted: the term build keeps sending them so (see
    assets/sql/canvas_enrollments.sql) without reading every imported enrollment each night."""
    with duckdb.connect(":memory:") as conn:
        imported = conn.read_csv(str(enrollments), header=True, all_varchar=True)
        imported.filter("lower(status) = 'deleted'").select("section_id, user_id, role").write_csv(str(target), header=True)


def _write_zip(path: Path, contents: dict[str, bytes]) -> bytes:
    """`contents` ({file: CSV bytes}) as a deterministic zip, written to `path` for inspection too."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(contents):
            info = zipfile.ZipInfo(f"{file}.csv", date_time=ZIP_TIMESTAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, contents[file])
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    return data


def _text(source: bytes | Path):
    """A CSV's text, from bytes or a file, to read once."""
    if isinstance(source, Path):
        return source.open(newline="", encoding="utf-8-sig")
    return io.StringIO(source.decode("utf-8-sig"), newline="")


def _current_records(path: Path, keys: tuple[str, ...], wanted: set[tuple[str, ...]]) -> tuple[bytes, int]:
    """The header and the rows of the CSV at `path` whose KEY_COLUMNS values are in `wanted`, as CSV bytes."""
    output, found = io.StringIO(), 0
    writer = csv.writer(output, lineterminator="\n")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        positions = [i for i, column in enumerate(header) if column.strip().lower() in keys]
        positions.sort(key=lambda i: keys.index(header[i].strip().lower()))
        if not positions:
            return b"", 0
        writer.writerow(header)
        for values in reader:
            if tuple(values[i] if i < len(values) else "" for i in positions) in wanted:
                writer.writerow(values)
                found += 1
    return output.getvalue().encode("utf-8"), found


def _append_deleted_rows(target: io.BytesIO, previous: Path, current: Path, keys: tuple[str, ...]) -> int:
    """Append to `target` (the current CSV's bytes) a `deleted` row for each record of `previous` that was
    not deleted there and is missing from `current`, in the current header's columns; returns how many."""
    with current.open(newline="", encoding="utf-8-sig") as handle:
        header = [column.strip().lower() for column in next(csv.reader(handle), [])]
    key_list = ", ".join(keys)
    with duckdb.connect(":memory:") as conn:
        before = conn.read_csv(str(previous), header=True, all_varchar=True)
        now = conn.read_csv(str(current), header=True, all_varchar=True)
        gone = (before.filter("coalesce(lower(status), '') NOT LIKE 'deleted%'").select(key_list)
                .except_(now.select(key_list)).order(key_list).fetchall())
    if not gone:
        return 0
    text = io.StringIO()
    if not target.getvalue().endswith(b"\n"):
        text.write("\n")
    writer = csv.writer(text, lineterminator="\n")
    for values in gone:
        record = dict(zip(keys, values)) | {"status": "deleted"}
        writer.writerow([record.get(column) or "" for column in header])
    target.seek(0, io.SEEK_END)
    target.write(text.getvalue().encode("utf-8"))
    return len(gone)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
