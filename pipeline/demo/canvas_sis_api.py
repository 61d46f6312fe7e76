"""The demo Canvas's SIS Imports API: create (multipart, raw zip, raw CSV), poll, list, errors, abort.

Create-time checks and their 400 bodies follow Canvas's `sis_imports_api_controller.rb` where canvas.md
records them; the import itself is applied by `canvas_import` as polls advance it.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import re
import threading
import zipfile
from email.message import Message

from pipeline.canvas_rules import read_zip
from pipeline.demo import canvas_import
from pipeline.demo.canvas_api import ApiError, ApiRequest, ApiResult, ReadApi, parse_time
from pipeline.demo.canvas_import import (
    BATCH_DROP_STATUSES, DROP_STATUSES, TERMINAL_STATES, USER_REMOVE_STATUSES, ImportOptions,
)
from pipeline.demo.canvas_state import ROOT_ACCOUNT_ID, CanvasDB

MAX_UNZIP_RATIO = 100
MAX_IDENTIFIER_BYTES = 128
APPLY_WAIT_SECONDS = 20.0  # a poll waits this long for an import it starts applying
_TRUE = re.compile(r"\A(1|true|yes|on)\Z", re.IGNORECASE)
_EXTENSIONS = {"application/zip": "zip", "application/x-zip-compressed": "zip", "text/csv": "csv", "text/plain": "csv"}


def truthy(value: str | None) -> bool:
    """A Canvas boolean parameter ("true", "1", ...)."""
    return bool(value) and bool(_TRUE.match(value.strip()))


def _bad_request(body: dict) -> ApiError:
    return ApiError(400, body)


def _content_type(value: str | None) -> Message:
    message = Message()
    message["content-type"] = value or "application/octet-stream"
    return message


def _multipart(content_type: Message, body: bytes) -> tuple[dict[str, list[str]], list[tuple[str, str, bytes]]]:
    """Form fields and (field, filename, bytes) files of a multipart/form-data body."""
    boundary = content_type.get_param("boundary")
    if not boundary:
        raise _bad_request({"message": "multipart body without a boundary"})
    fields: dict[str, list[str]] = {}
    files: list[tuple[str, str, bytes]] = []
    for chunk in body.split(b"--" + str(boundary).encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, content = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head + b"\r\n\r\n")
        name = headers.get_param("name", header="content-disposition")
        filename = headers.get_filename()
        content = content.removesuffix(b"\r\n")
        if filename is None:
            fields.setdefault(str(name), []).append(content.decode("utf-8", "replace"))
        else:
            files.append((str(name), filename, content))
    return fields, files


def _unpack(name: str, data: bytes, extension: str) -> tuple[dict[str, bytes], str | None]:
    """An upload as the files Canvas would process, or the reason the import will fail."""
    if extension != "zip":
        return {name if name.lower().endswith(".csv") else f"{name}.csv": data}, None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unzipped = sum(info.file_size for info in archive.infolist())
        if unzipped >= MAX_UNZIP_RATIO * len(data):
            return {}, f"The unzipped files are {MAX_UNZIP_RATIO} or more times the size of the zip file"
        return read_zip(data), None
    except zipfile.BadZipFile:
        return {}, "Invalid zip file"


class SisImportApi:
    def __init__(self, db: CanvasDB, read_api: ReadApi, polls_to_finish: int, auto_seed: int | None):
        self.db, self.read_api = db, read_api
        self.polls_to_finish, self.auto_seed = polls_to_finish, auto_seed
        self._workers: list[threading.Thread] = []
        self._workers_lock = threading.Lock()

    def _root(self, account: str) -> int:
        account_id = self.read_api.account_id(account)
        if account_id != ROOT_ACCOUNT_ID:
            raise _bad_request({"errors": ["SIS imports can only be executed on root accounts"]})
        return account_id

    def create(self, req: ApiRequest, account: str) -> ApiResult:
        account_id = self._root(account)
        content_type = _content_type(req.headers.get("Content-Type"))
        charset = content_type.get_param("charset")
        if charset and str(charset).lower().replace("-", "") != "utf8":
            raise _bad_request({"error": "Invalid content type, UTF-8 required"})
        media_type = content_type.get_content_type()
        if media_type == "multipart/form-data":
            req.form, uploads = _multipart(content_type, req.body)
            attachment = next(((filename, data) for field, filename, data in uploads if field == "attachment"), None)
            if attachment is None:
                raise _bad_request({"message": "No attachment given"})
            filename, data = attachment
            extension = req.param("extension") or ("zip" if filename.lower().endswith(".zip") else "csv")
        else:
            filename, data = "sis_import", req.body
            extension = req.param("extension") or _EXTENSIONS.get(media_type, "zip")
            filename = f"sis_import.{extension}"
        if not data:
            raise _bad_request({"message": "No attachment given"})
        options = self._options(req)
        files, upload_error = _unpack(filename, data, extension)
        with self.db.transaction() as conn:
            import_id = canvas_import.create_import(conn, account_id, options, files, upload_error)
            claimed = self.polls_to_finish == 0 and canvas_import.advance(conn, import_id, 0, count_poll=False)
        return self._status(import_id, claimed)

    def _status(self, import_id: int, claimed: bool) -> ApiResult:
        """The import as a poll sees it; a claimed import is applied first, waiting at most APPLY_WAIT_SECONDS."""
        if claimed:
            worker = threading.Thread(target=self._apply, args=(import_id,), name=f"sis-import-{import_id}", daemon=True)
            with self._workers_lock:
                self._workers = [w for w in self._workers if w.is_alive()] + [worker]
            worker.start()
            worker.join(APPLY_WAIT_SECONDS)
        with self.db.connection() as conn:
            found = canvas_import.sis_import_json(conn, import_id)
        if found is None:
            raise ApiError(404, {"errors": [{"message": "The specified resource does not exist."}]})
        return ApiResult(200, found)

    def _apply(self, import_id: int) -> None:
        try:
            with self.db.transaction() as conn:
                canvas_import.apply_pending(conn, import_id, self.auto_seed)
        except Exception as exc:  # the client must see a failed import, not poll forever
            with self.db.transaction() as conn:
                canvas_import.fail_import(conn, import_id, f"demo Canvas could not apply the import: "
                                                           f"{type(exc).__name__}: {exc}")

    def wait_for_workers(self) -> None:
        with self._workers_lock:
            workers = list(self._workers)
        for worker in workers:
            worker.join()

    def _options(self, req: ApiRequest) -> ImportOptions:
        import_type = req.param("import_type") or "instructure_csv"
        if import_type != "instructure_csv":
            raise _bad_request({"message": f"Unknown import_type {import_type}"})
        identifier = req.param("diffing_data_set_identifier")
        if identifier and len(identifier.encode()) > MAX_IDENTIFIER_BYTES:
            raise _bad_request({"message": "diffing_data_set_identifier is longer than 128 bytes"})
        drop_status = req.param("diffing_drop_status") or "deleted"
        if drop_status not in DROP_STATUSES:
            raise _bad_request({"message": "Invalid diffing_drop_status"})
        user_remove = req.param("diffing_user_remove_status") or "deleted"
        if user_remove not in USER_REMOVE_STATUSES:
            raise _bad_request({"message": "Invalid diffing_user_remove_status"})
        batch_drop = req.param("batch_mode_enrollment_drop_status") or "deleted"
        if batch_drop not in BATCH_DROP_STATUSES:
            raise _bad_request({"message": "Invalid batch_mode_enrollment_drop_status"})
        threshold_text = req.param("change_threshold")
        threshold = None
        if threshold_text is not None:
            if not threshold_text.isdigit() or not 1 <= int(threshold_text) <= 100:
                raise _bad_request({"message": "change_threshold must be an integer from 1 to 100"})
            threshold = int(threshold_text)
        batch_mode, multi_term = truthy(req.param("batch_mode")), truthy(req.param("multi_term_batch_mode"))
        if (batch_mode or multi_term) and identifier:
            raise _bad_request({"message": "batch_mode cannot be combined with diffing_data_set_identifier"})
        term_id = None
        if multi_term and threshold is None:
            raise _bad_request({"message": "change_threshold is required to use multi term_batch mode."})
        if batch_mode and not multi_term:
            raw_term = req.param("batch_mode_term_id")
            term_id = self.read_api.term_id(raw_term) if raw_term else None
            if term_id is None:
                raise _bad_request({"message": "Batch mode specified, but the given batch_mode_term_id cannot be found."})
        return ImportOptions(
            import_type=import_type, batch_mode=batch_mode or multi_term, batch_mode_term_id=term_id,
            multi_term_batch_mode=multi_term, batch_mode_enrollment_drop_status=batch_drop,
            skip_deletes=truthy(req.param("skip_deletes")),
            override_sis_stickiness=truthy(req.param("override_sis_stickiness")),
            add_sis_stickiness=truthy(req.param("add_sis_stickiness")),
            clear_sis_stickiness=truthy(req.param("clear_sis_stickiness")),
            diffing_data_set_identifier=identifier, diffing_remaster_data_set=truthy(req.param("diffing_remaster_data_set")),
            diffing_drop_status=drop_status, diffing_user_remove_status=user_remove, change_threshold=threshold)

    def get(self, req: ApiRequest, account: str, import_id: str) -> ApiResult:
        self._root(account)
        with self.db.connection() as conn:
            pending = canvas_import.needs_advancing(conn, int(import_id))
        claimed = False
        if pending:
            with self.db.transaction() as conn:
                claimed = canvas_import.advance(conn, int(import_id), self.polls_to_finish, count_poll=True)
        return self._status(int(import_id), claimed)

    def list(self, req: ApiRequest, account: str) -> ApiResult:
        self._root(account)
        where, params = ["1 = 1"], []
        for name, op in (("created_since", ">="), ("created_before", "<")):
            moment = parse_time(req.param(name), name)
            if moment:
                where.append(f"created_at {op} ?")
                params.append(moment.removesuffix("Z"))
        states = req.params("workflow_state")
        if states:
            where.append(f"workflow_state IN ({','.join('?' * len(states))})")
            params += states
        return self._listing(f"SELECT id FROM sis_imports WHERE {' AND '.join(where)} ORDER BY id DESC", params)

    def importing(self, req: ApiRequest, account: str) -> ApiResult:
        self._root(account)
        running = ",".join(f"'{s}'" for s in ("created", "importing", "cleanup_batch", "initializing"))
        return self._listing(f"SELECT id FROM sis_imports WHERE workflow_state IN ({running}) ORDER BY id", [])

    def _listing(self, sql: str, params: list) -> ApiResult:
        with self.db.connection() as conn:
            ids = [r[0] for r in conn.execute(sql, params)]
            items = [canvas_import.sis_import_json(conn, i) for i in ids]
        return ApiResult(200, {"sis_imports": items}, paginate=True)

    def errors(self, req: ApiRequest, account: str, import_id: str | None = None) -> ApiResult:
        self._root(account)
        with self.db.connection() as conn:
            found = canvas_import.sis_import_errors(conn, int(import_id) if import_id else None,
                                                    truthy(req.param("failure")))
        return ApiResult(200, {"sis_import_errors": found}, paginate=True)

    def abort(self, req: ApiRequest, account: str, import_id: str) -> ApiResult:
        self._root(account)
        with self.db.transaction() as conn:
            conn.execute(f"UPDATE sis_imports SET workflow_state = 'aborted', ended_at = ?, updated_at = ? WHERE id = ? "
                         f"AND workflow_state NOT IN ({','.join('?' * len(TERMINAL_STATES))})",
                         (canvas_import.now_iso(), canvas_import.now_iso(), int(import_id), *sorted(TERMINAL_STATES)))
            found = canvas_import.sis_import_json(conn, int(import_id))
        if found is None:
            raise ApiError(404, {"errors": [{"message": "The specified resource does not exist."}]})
        return ApiResult(200, found)
