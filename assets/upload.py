"""Upload to Canvas: one SIS import for the district-wide data set, then one per term.

Each import asset first runs the mass-delete guard (before any HTTP write), skips the upload when the
data set's files are byte-identical to its baseline (the import Canvas diffs against), otherwise uploads
a zip with the data set's own diffing identifier, polls until Canvas finishes, and records the outcome.
Then the files Canvas cannot diff correctly (user_observers) go in an undiffed import of their own, with
explicit deleted rows. The dry-run assets compute the same comparison without uploading.
"""

# No `from __future__ import annotations` here: Dagster resolves the run-config class from the asset
# function's annotations at definition time.
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from pipeline.canvas_data_set import DISTRICT, DISTRICT_FILES, TERM_FILES, DataSet
from pipeline.canvas_diff import DataSetDiff, diff_data_set
from pipeline.datadir import DataDir
from pipeline.markdown import markdown_table
from pipeline.personal_data import mask_message
from pipeline.partitions import school_term_partitions
from pipeline.resources.canvas import FAILURE_STATES, CanvasClient, CanvasSession, CanvasUploadPolicy
from pipeline.resources.mapping import MappingSettings

DISTRICT_IMPORT = dg.AssetKey(["canvas", "sis_import_district"])
TERM_IMPORT = dg.AssetKey(["canvas", "sis_import_term"])
DISTRICT_DRY_RUN = dg.AssetKey(["canvas", "dry_run_district"])
TERM_DRY_RUN = dg.AssetKey(["canvas", "dry_run_term"])
DISTRICT_CSVS = [dg.AssetKey(["canvas", f"{file}_csv"]) for file in DISTRICT_FILES]
TERM_CSVS = [dg.AssetKey(["canvas", f"{file}_csv"]) for file in TERM_FILES]
GUARD_CHECK = "mass_delete_guard"
# Run tags: comma-separated data set names ("district" or term keys) the override applies to.
APPROVE_MASS_DELETE_TAG = "rosterbridge/approve_mass_delete"
REMASTER_TAG = "rosterbridge/remaster"
MESSAGES_IN_METADATA = 1000
# Canvas messages logged one event each; the rest become one summary line (a night with 100k row errors
# must not flood the event log: every one is in the result file).
MESSAGES_LOGGED = 100
CANVAS_POOL = "canvas_sis_import"


class SisImportConfig(dg.Config):
    remaster: bool = Field(
        default=False,
        description="Send diffing_remaster_data_set=true: Canvas applies this data set in full, without diffing "
        "or dropping anything, and later imports diff against it. For a first run or a recovery.",
    )
    approve_mass_delete: bool = Field(
        default=False,
        description="Upload even though the mass-delete guard blocked this data set (this run only).",
    )


def _tag_names(context: dg.AssetExecutionContext, tag: str) -> set[str]:
    return {name.strip() for name in context.run.tags.get(tag, "").split(",") if name.strip()}


def _diff_metadata(diff: DataSetDiff) -> dict[str, Any]:
    metadata: dict[str, Any] = {f"diff/{kind}": count for kind, count in diff.totals().items()}
    for f in diff.files:
        metadata[f"diff/{f.file}"] = dg.MetadataValue.json(
            {"rows": f.rows, "created": f.created, "changed": f.changed, "deleted": f.deleted,
             "unchanged": f.unchanged, "deleted_percent": round(f.deleted_percent, 2)}
        )
    return metadata


def _guard(context: dg.AssetExecutionContext, data_set: DataSet, diff: DataSetDiff, policy: CanvasUploadPolicy,
           approved: bool) -> dg.AssetCheckResult:
    """The guard's verdict: failed with ERROR severity when it blocks, WARN when someone approved it."""
    threshold = policy.mass_delete_threshold_percent
    blocked = diff.mass_deletes(threshold)
    metadata: dict[str, Any] = {
        "threshold_percent": threshold,
        "has_baseline": diff.has_baseline,
        **{f"deleted_percent/{f.file}": round(f.deleted_percent, 2) for f in diff.files},
    }
    if not blocked:
        return dg.AssetCheckResult(check_name=GUARD_CHECK, passed=True, metadata=metadata)
    findings = "; ".join(
        f"{f.file}: {f.deleted} of {f.previously_live} ({f.deleted_percent:.1f} %) would disappear, turn deleted or be suspended/deactivated"
        for f in blocked
    )
    approval = (
        f"If this is intended, approve it for one run: run tag {APPROVE_MASS_DELETE_TAG}={data_set.name} "
        f"(or run config approve_mass_delete: true, or `python -m pipeline.sync --approve-mass-delete {data_set.name}`)."
    )
    message = (f"Mass-delete guard blocked the {data_set.label} upload (threshold {threshold:g} %): {findings}. "
               f"Canvas was not changed. {approval}")
    if approved:
        context.log.warning(f"{message} -- approved for this run, uploading.")
        return dg.AssetCheckResult(check_name=GUARD_CHECK, passed=False, severity=dg.AssetCheckSeverity.WARN,
                                   description=f"Approved override: {findings}", metadata=metadata)
    context.log.error(message)
    return dg.AssetCheckResult(check_name=GUARD_CHECK, passed=False, severity=dg.AssetCheckSeverity.ERROR,
                               description=message, metadata=metadata)


def _import_metadata(sis_import: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Import id, state, counts and statistics as numbers, so the UI plots them night over night."""
    data = sis_import.get("data") or {}
    metadata: dict[str, Any] = {
        "canvas/import_id": int(sis_import["id"]),
        "canvas/workflow_state": str(sis_import.get("workflow_state")),
        "canvas/progress": sis_import.get("progress") or 0,
        "canvas/warning_count": sum(1 for m in messages if m["severity"] == "warning"),
        "canvas/error_count": sum(1 for m in messages if m["severity"] == "error"),
        "canvas/diffing_threshold_exceeded": bool(sis_import.get("diffing_threshold_exceeded")),
    }
    for name, value in sorted((data.get("counts") or {}).items()):
        if isinstance(value, (int, float)):
            metadata[f"counts/{name}"] = value
    for name, value in sorted((sis_import.get("statistics") or {}).items()):
        if isinstance(value, (int, float)):
            metadata[f"statistics/{name}"] = value
        elif isinstance(value, dict):
            for kind, count in sorted(value.items()):
                if isinstance(count, (int, float)):
                    metadata[f"statistics/{name}/{kind}"] = count
    if messages:
        shown = messages[:MESSAGES_IN_METADATA]
        table = markdown_table(["severity", "file", "row", "message"],
                               [(m["severity"], m["file"], m["row"], mask_message(m["message"])) for m in shown])
        if len(messages) > len(shown):
            table += f"\n\n{len(messages) - len(shown)} more in the result file."
        metadata["canvas/messages"] = dg.MetadataValue.md(table)
    return metadata


def import_messages(sis_import: dict[str, Any], row_errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every warning and error of an import. The errors endpoint is complete (the SisImport object
    lists only the first ones); its `failure` flag, or else the object's lists, tell errors from warnings."""
    summary = [
        {"severity": severity, "file": entry[0] if len(entry) > 1 else "", "row": None, "message": entry[-1]}
        for severity, key in (("warning", "processing_warnings"), ("error", "processing_errors"))
        for entry in sis_import.get(key) or []
    ]
    if not row_errors:
        return summary
    errors_in_summary = {(m["file"], m["message"]) for m in summary if m["severity"] == "error"}
    messages = []
    for error in row_errors:
        file, message = error.get("file") or "", error.get("message") or ""
        failure = error["failure"] if "failure" in error else (file, message) in errors_in_summary
        messages.append({"severity": "error" if failure else "warning", "file": file, "row": error.get("row"),
                         "message": message, "row_info": error.get("row_info")})
    return messages


def upload_data_set(context: dg.AssetExecutionContext, data_set: DataSet, config: SisImportConfig,
                    canvas: CanvasClient, policy: CanvasUploadPolicy, mapping: MappingSettings,
                    ) -> Iterator[dg.AssetCheckResult | dg.MaterializeResult]:
    # Pinned: the guard, the upload and the new baseline are about the same bytes, whatever another run
    # writes to the data set meanwhile.
    with data_set.pinned() as pinned:
        yield from _upload_pinned(context, pinned, config, canvas, policy, mapping)


def _upload_pinned(context: dg.AssetExecutionContext, data_set: DataSet, config: SisImportConfig,
                   canvas: CanvasClient, policy: CanvasUploadPolicy, mapping: MappingSettings,
                   ) -> Iterator[dg.AssetCheckResult | dg.MaterializeResult]:
    fingerprints = data_set.fingerprints()
    refusal = data_set.check_refusal(fingerprints)
    if refusal:
        raise dg.Failure(description=f"nothing uploaded: {refusal}", allow_retries=False)
    diff = diff_data_set(data_set)
    approved = config.approve_mass_delete or data_set.name in _tag_names(context, APPROVE_MASS_DELETE_TAG)
    verdict = _guard(context, data_set, diff, policy, approved)
    yield verdict
    if not verdict.passed and not approved:
        raise dg.Failure(description=verdict.description, metadata=_diff_metadata(diff))

    identifier = data_set.diffing_identifier(policy.diffing_prefix)
    remaster = config.remaster or data_set.name in _tag_names(context, REMASTER_TAG)
    metadata: dict[str, Any] = {
        "data_set": data_set.name,
        "diffing_data_set_identifier": identifier,
        "remaster": remaster,
        "mass_delete_approved": not verdict.passed,
        "dagster/row_count": sum(f.rows for f in diff.files),
        **_diff_metadata(diff),
    }
    last = data_set.last_import()
    retries = data_set.pending_retries()
    exceeded = data_set.last_threshold_exceeded_import()
    if not remaster and data_set.unchanged_since_last_import(fingerprints):
        reason = f"files are byte-identical to successful import {last['import_id']}: nothing uploaded"
        context.log.info(f"{data_set.label}: {reason}")
        metadata.update({"uploaded": False, "skip_reason": reason, "canvas/import_id": int(last["import_id"])})
    elif not (remaster or approved) and exceeded and exceeded.get("sha256") == {
            f: fingerprints[f] for f in data_set.diffed_files}:
        # Canvas would again apply these bytes without diffing: one more exceedance, nothing gained, and
        # after five in a row Canvas refuses the data set until a remaster.
        advice = _threshold_exceeded_advice(data_set, {"id": exceeded["import_id"]}, policy, last)
        reason = (f"files are byte-identical to import {exceeded['import_id']}, which Canvas applied without "
                  f"diffing: not sent again. {advice}")
        context.log.warning(f"{data_set.label}: {reason}")
        metadata.update({"uploaded": False, "skip_reason": reason, "canvas/import_id": int(exceeded["import_id"])})
    else:
        params = {
            "diffing_data_set_identifier": identifier,
            "diffing_drop_status": mapping.enrollment_drop_status,
            # An approved mass delete would exceed Canvas's own change_threshold too, and Canvas would then
            # skip the diff and drop nothing: the approval lifts it for this one import (also the way to
            # apply the drops Canvas skipped after an exceedance).
            "change_threshold": None if approved else policy.change_threshold,
            "diffing_remaster_data_set": remaster or None,
        }
        sis_import, raw_messages, import_metadata = _import(context, canvas, data_set, data_set.build_zip(), params,
                                                            data_set.zip_path, data_set.result_path, metadata)
        metadata.update(import_metadata)
        if not data_set.record_successful_import(sis_import, fingerprints):
            context.log.warning(_threshold_exceeded_advice(data_set, sis_import, policy, last))
        # Rows Canvas rejected are in its diff base now: no diffed import would send them again.
        rejected = data_set.rejected_records(raw_messages, {f: data_set.csv_path(f) for f in data_set.diffed_files})
        retries = {file: retries.get(file, set()) | rejected.get(file, set()) for file in {*retries, *rejected}}
        data_set.record_pending_retries(retries)
    with_undiffed_files = not data_set.undiffed_unchanged(fingerprints)
    if with_undiffed_files or retries:
        rows = sum(f.rows for f in diff.files if f.file in data_set.undiffed_files) if with_undiffed_files else 0
        metadata.update(_undiffed_import(context, canvas, data_set, fingerprints, with_undiffed_files, retries, rows,
                                         metadata))
    yield dg.MaterializeResult(metadata={**metadata, **_baseline_metadata(data_set)})


def _undiffed_import(context: dg.AssetExecutionContext, canvas: CanvasClient, data_set: DataSet,
                     fingerprints: dict[str, str], with_undiffed_files: bool, retries: dict[str, set[tuple[str, ...]]],
                     rows: int, metadata: dict[str, Any]) -> dict[str, Any]:
    """After the diffed import succeeded (its users exist then), one import without a diffing identifier,
    so every row applies as sent: the UNDIFFED_FILES (user_observers) when they changed, with explicit
    deleted rows for the records their last import held that are gone now, and the current version of
    every record Canvas rejected before (`retries`), which no diffed import would send again."""
    contents, deletes, retried = data_set.undiffed_contents(with_undiffed_files, retries)
    if rows + deletes + retried == 0:  # header only, nothing to delete, no rejected record still sent
        if with_undiffed_files:
            data_set.record_undiffed_import({}, fingerprints)
        data_set.record_pending_retries({})
        return {"undiffed/uploaded": False}
    context.log.info(f"{data_set.label}: undiffed import of {', '.join(sorted(contents))}: {deletes} records gone "
                     f"since their last import sent as deleted, {retried} records Canvas rejected before sent again")
    sis_import, raw_messages, import_metadata = _import(context, canvas, data_set, data_set.build_undiffed_zip(contents),
                                                        {}, data_set.undiffed_zip_path, data_set.undiffed_result_path,
                                                        metadata)
    if with_undiffed_files:
        data_set.record_undiffed_import(sis_import, fingerprints)
    data_set.record_pending_retries(data_set.rejected_records(raw_messages, contents))
    return {f"undiffed/{key.removeprefix('canvas/')}": value for key, value in import_metadata.items()
            if key.startswith(("canvas/", "counts/", "statistics/"))} | {
        "undiffed/uploaded": True, "undiffed/deleted_rows": deletes, "undiffed/retried_rows": retried}


def _import(context: dg.AssetExecutionContext, canvas: CanvasClient, data_set: DataSet, zip_bytes: bytes,
            params: dict[str, Any], zip_path: Path, result_path: Path, metadata: dict[str, Any]
            ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """One SIS import: upload, poll, read its messages, keep them raw in `result_path`, log them masked;
    fails the asset (with `metadata`) when Canvas ends it failed. Returns the SisImport, its raw messages
    and its metadata."""
    with canvas.open() as session:
        sis_import = _run_import(context, session, data_set, zip_bytes, params)
        row_errors = session.sis_import_errors(sis_import["id"]) if _has_messages(sis_import) else []
        stats = {"canvas/requests": session.stats.requests, "canvas/retries": session.stats.retries}
    messages = import_messages(sis_import, row_errors)
    # Canvas's messages quote logins and e-mails: only the result file in the data dir keeps them raw;
    # metadata, logs and failure text show them through mask_message.
    data_set.write_result(result_path, {"sis_import": sis_import, "messages": messages})
    import_metadata = {**_import_metadata(sis_import, messages), **stats, "uploaded": True,
                       "zip_path": dg.MetadataValue.path(str(zip_path)),
                       "result_path": dg.MetadataValue.path(str(result_path))}
    _log_messages(context, data_set, messages, result_path)

    state = sis_import.get("workflow_state")
    if state in FAILURE_STATES:
        errors = [m for m in messages if m["severity"] == "error"] or messages
        detail = "; ".join(f"{m['file']}: {mask_message(m['message'])}" if m["file"] else mask_message(m["message"])
                           for m in errors[:20])
        raise dg.Failure(
            description=f"Canvas SIS import {sis_import['id']} of the {data_set.label} data set ended {state}: "
            f"{detail or 'Canvas gave no message'}",
            metadata={**metadata, **import_metadata},
        )
    return sis_import, messages, import_metadata


def _baseline_metadata(data_set: DataSet) -> dict[str, int]:
    """The import later uploads are compared with (Canvas's diff base), and the last one since then that
    Canvas applied without diffing (0 = none)."""
    exceeded = data_set.last_threshold_exceeded_import() or {}
    return {"baseline_import_id": int((data_set.last_import() or {}).get("import_id") or 0),
            "threshold_exceeded_import_id": int(exceeded.get("import_id") or 0)}


def _threshold_exceeded_advice(data_set: DataSet, sis_import: dict[str, Any], policy: CanvasUploadPolicy,
                               baseline: dict[str, Any] | None) -> str:
    base = f"import {baseline['import_id']}" if baseline else "its last diffed import"
    return (
        f"{data_set.label}: Canvas skipped diffing SIS import {sis_import['id']} (the row count changed by more than "
        f"change_threshold {policy.change_threshold} %): it applied every row but dropped nothing, and keeps diffing "
        f"this data set against {base}; so does the pipeline (guard, dry run, skip). Changed files are uploaded "
        f"again each night (the same files are not: each would count as another exceedance), and what is missing "
        f"since {base} is dropped once the change is within the threshold. To drop it "
        f"now, check the dry run and approve it for one run: run tag {APPROVE_MASS_DELETE_TAG}={data_set.name} (lifts "
        f"change_threshold for that import). To keep the records instead, remaster: run tag "
        f"{REMASTER_TAG}={data_set.name} (applies in full, drops nothing, later imports diff against it). Five "
        f"exceedances in a row make Canvas refuse the data set until a remaster."
    )


def _log_messages(context: dg.AssetExecutionContext, data_set: DataSet, messages: list[dict[str, Any]],
                  result_path: Path) -> None:
    for m in messages[:MESSAGES_LOGGED]:
        log = context.log.error if m["severity"] == "error" else context.log.warning
        log(f"Canvas {m['severity']}: {m['file']} row {m['row'] if m['row'] is not None else '-'}: "
            f"{mask_message(m['message'])}")
    rest = messages[MESSAGES_LOGGED:]
    if rest:
        errors = sum(1 for m in rest if m["severity"] == "error")
        context.log.warning(f"{data_set.label}: {len(rest)} more Canvas messages ({errors} errors, "
                            f"{len(rest) - errors} warnings) not logged one by one: all are in {result_path}")


def _run_import(context: dg.AssetExecutionContext, session: CanvasSession, data_set: DataSet, zip_bytes: bytes,
                params: dict[str, Any]) -> dict[str, Any]:
    created = session.create_sis_import(zip_bytes, **params)
    context.log.info(f"{data_set.label}: SIS import {created['id']} created ({len(zip_bytes)} bytes, "
                     f"{params.get('diffing_data_set_identifier') or 'not diffed'})")

    def on_poll(sis_import: dict[str, Any]) -> None:
        context.log.debug(f"SIS import {sis_import['id']}: {sis_import.get('workflow_state')} "
                          f"{sis_import.get('progress') or 0}%")

    finished = session.wait_for_sis_import(created["id"], on_poll=on_poll)
    context.log.info(f"{data_set.label}: SIS import {finished['id']} ended {finished.get('workflow_state')}")
    return finished


def _has_messages(sis_import: dict[str, Any]) -> bool:
    counts = (sis_import.get("data") or {}).get("counts") or {}
    return bool(sis_import.get("processing_warnings") or sis_import.get("processing_errors")
                or counts.get("error_count") or counts.get("warning_count")
                or sis_import.get("workflow_state") != "imported")


@dg.asset(
    key=DISTRICT_IMPORT,
    deps=DISTRICT_CSVS,
    check_specs=[dg.AssetCheckSpec(GUARD_CHECK, asset=DISTRICT_IMPORT,
                                   description="Blocks the upload when too many users would be deleted or suspended, "
                                   "or observer links removed.")],
    pool=CANVAS_POOL,
    group_name="canvas_upload",
    kinds={"canvas"},
    description="SIS import of the district-wide data set (accounts, terms, users), then the observer links "
    "undiffed.",
)
def sis_import_district(context: dg.AssetExecutionContext, config: SisImportConfig, canvas: CanvasClient,
                        canvas_upload: CanvasUploadPolicy, mapping: MappingSettings, data_dir: DataDir):
    yield from upload_data_set(context, DataSet.for_name(data_dir, DISTRICT), config, canvas, canvas_upload, mapping)


@dg.asset(
    key=TERM_IMPORT,
    deps=[*TERM_CSVS, DISTRICT_IMPORT],
    partitions_def=school_term_partitions,
    check_specs=[dg.AssetCheckSpec(GUARD_CHECK, asset=TERM_IMPORT,
                                   description="Blocks the upload when too many courses, sections or enrollments "
                                   "would be deleted, or enrollments deactivated.")],
    pool=CANVAS_POOL,
    group_name="canvas_upload",
    kinds={"canvas"},
    description="SIS import of one term's data set (courses, sections, enrollments), after the district import.",
)
def sis_import_term(context: dg.AssetExecutionContext, config: SisImportConfig, canvas: CanvasClient,
                    canvas_upload: CanvasUploadPolicy, mapping: MappingSettings, data_dir: DataDir):
    if DataSet.for_name(data_dir, DISTRICT).last_import() is None:
        raise dg.Failure(description="The district-wide data set has never been imported into Canvas, so this "
                         "term's users and accounts do not exist there yet: materialize canvas/sis_import_district first.")
    data_set = DataSet.for_name(data_dir, context.partition_key)
    yield from upload_data_set(context, data_set, config, canvas, canvas_upload, mapping)


def _dry_run_result(data_set: DataSet, policy: CanvasUploadPolicy) -> dg.MaterializeResult:
    diff = diff_data_set(data_set)
    blocked = diff.mass_deletes(policy.mass_delete_threshold_percent)
    sample = [row | {"file": f.file} for f in diff.files for row in f.sample]
    columns = ["file", "change"] + sorted({k for row in sample for k in row} - {"file", "change"})
    table = markdown_table(columns, [[row.get(c) for c in columns] for row in sample])
    return dg.MaterializeResult(metadata={
        "data_set": data_set.name,
        "compared_with_import_id": (data_set.last_import() or {}).get("import_id") or 0,
        **_baseline_metadata(data_set),
        "would_upload": not (data_set.unchanged_since_last_import() and data_set.undiffed_unchanged()
                             and not data_set.pending_retries()),
        "guard_would_block": ", ".join(f.file for f in blocked) or "no",
        "dagster/row_count": sum(f.rows for f in diff.files),
        **_diff_metadata(diff),
        "masked_sample": dg.MetadataValue.md(table if sample else "no changes"),
    })


@dg.asset(
    key=DISTRICT_DRY_RUN,
    deps=DISTRICT_CSVS,
    group_name="canvas_dry_run",
    description="What the district-wide upload would create, change and delete in Canvas (uploads nothing).",
)
def dry_run_district(canvas_upload: CanvasUploadPolicy, data_dir: DataDir) -> dg.MaterializeResult:
    return _dry_run_result(DataSet.for_name(data_dir, DISTRICT), canvas_upload)


@dg.asset(
    key=TERM_DRY_RUN,
    deps=TERM_CSVS,
    partitions_def=school_term_partitions,
    group_name="canvas_dry_run",
    description="What one term's upload would create, change and delete in Canvas (uploads nothing).",
)
def dry_run_term(context: dg.AssetExecutionContext, canvas_upload: CanvasUploadPolicy,
                 data_dir: DataDir) -> dg.MaterializeResult:
    return _dry_run_result(DataSet.for_name(data_dir, context.partition_key), canvas_upload)


defs = dg.Definitions(assets=[sis_import_district, sis_import_term, dry_run_district, dry_run_term])
