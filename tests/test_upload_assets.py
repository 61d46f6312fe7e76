"""The import and dry-run assets on hand-written CSVs against the demo Canvas: run config, tags, metadata."""

from __future__ import annotations

import io
import json
import zipfile

import dagster as dg
import pytest

from assets.upload import (
    APPROVE_MASS_DELETE_TAG, GUARD_CHECK, REMASTER_TAG, dry_run_district, import_messages, sis_import_district,
)
from assets.transform import DISTRICT_FILES, canvas_district_import_rules
from pipeline.canvas_data_set import DataSet
from pipeline.demo.canvas_server import DEMO_CANVAS_TOKEN, DemoCanvasServer
from pipeline.resources.canvas import CanvasClient, CanvasUploadPolicy
from pipeline.resources.mapping import MappingSettings
from tests.test_upload_guards import USERS_HEADER, user_rows, write_district

CONFIG_KEY = "canvas__sis_import_district"


@pytest.fixture
def canvas():
    with DemoCanvasServer(polls_to_finish=1) as server:
        yield server


def check(data_dir, instance):
    """The district files' blocking import-rules check, on its own (as after the CSV assets are built)."""
    return dg.materialize([canvas_district_import_rules, *(dg.AssetSpec(f.key) for f in DISTRICT_FILES)],
                          selection=dg.AssetSelection.checks(canvas_district_import_rules),
                          resources={"data_dir": data_dir, "mapping": MappingSettings()}, instance=instance,
                          raise_on_error=False)


def upload(canvas, data_dir, instance, *, config: dict | None = None, tags: dict | None = None, checked: bool = True):
    if checked:
        assert check(data_dir, instance).success
    resources = {
        "canvas": CanvasClient(base_url=canvas.base_url, access_token=DEMO_CANVAS_TOKEN, poll_interval_seconds=0.01),
        "canvas_upload": CanvasUploadPolicy(diffing_prefix="sd42", change_threshold=10),
        "mapping": MappingSettings(),
        "data_dir": data_dir,
    }
    run_config = {"ops": {CONFIG_KEY: {"config": config}}} if config else None
    return dg.materialize([sis_import_district], resources=resources, instance=instance, run_config=run_config,
                          tags=tags, raise_on_error=False)


def metadata(result) -> dict:
    event = result.asset_materializations_for_node(CONFIG_KEY)[0]
    return {key: value.value for key, value in event.metadata.items()}


def test_upload_records_import_metadata_and_skips_unchanged_files(canvas, data_dir, instance):
    write_district(data_dir, user_rows(range(40)))
    first = upload(canvas, data_dir, instance)
    assert first.success
    meta = metadata(first)
    assert meta["uploaded"] is True and meta["canvas/workflow_state"] == "imported"
    assert meta["counts/users"] == 40 and meta["statistics/Pseudonym/created"] == 40
    assert meta["diffing_data_set_identifier"] == "sd42:district"
    assert isinstance(meta["canvas/import_id"], int) and meta["dagster/row_count"] == 42
    assert DataSet.for_name(data_dir, "district").last_import()["import_id"] == meta["canvas/import_id"]

    second = upload(canvas, data_dir, instance)
    assert second.success and metadata(second)["uploaded"] is False
    assert len(canvas.state.imports()) == 1

    remastered = upload(canvas, data_dir, instance, tags={REMASTER_TAG: "district"})
    assert metadata(remastered)["remaster"] is True
    result = json.loads(DataSet.for_name(data_dir, "district").result_path.read_text())
    assert result["sis_import"]["diffing_remaster"] is True
    assert len(canvas.state.imports()) == 2


def test_guard_blocks_before_any_write_and_run_config_approves_once(canvas, data_dir, instance):
    data_set = write_district(data_dir, user_rows(range(40)))
    assert upload(canvas, data_dir, instance).success
    data_set.csv_path("users").write_text(USERS_HEADER + user_rows(range(20)))

    blocked = upload(canvas, data_dir, instance)
    assert not blocked.success
    check = blocked.get_asset_check_evaluations()[0]
    assert check.check_name == GUARD_CHECK and not check.passed
    assert "users: 20 of 40 (50.0 %)" in check.description
    assert f"{APPROVE_MASS_DELETE_TAG}=district" in check.description
    assert len(canvas.state.imports()) == 1 and canvas.state.counts()["users"] == {"active": 40}

    wrong_data_set = upload(canvas, data_dir, instance, tags={APPROVE_MASS_DELETE_TAG: "as-2027"})
    assert not wrong_data_set.success and len(canvas.state.imports()) == 1

    approved = upload(canvas, data_dir, instance, config={"approve_mass_delete": True})
    assert approved.success
    assert metadata(approved)["mass_delete_approved"] is True
    assert canvas.state.counts()["users"] == {"active": 20, "deleted": 20}
    # The approval was for that run: the new baseline makes the next night's guard pass again.
    assert upload(canvas, data_dir, instance).success


def test_guard_blocks_a_mass_suspension_before_canvas_locks_everyone_out(canvas, data_dir, instance):
    data_set = write_district(data_dir, user_rows(range(40)))
    assert upload(canvas, data_dir, instance).success
    data_set.csv_path("users").write_text(USERS_HEADER + user_rows(range(40), status="suspended"))
    blocked = upload(canvas, data_dir, instance)
    assert not blocked.success
    check = blocked.get_asset_check_evaluations()[0]
    assert "users: 40 of 40 (100.0 %) would disappear, turn deleted or be suspended/deactivated" in check.description
    assert len(canvas.state.imports()) == 1 and canvas.state.counts()["users"] == {"active": 40}


def test_an_import_canvas_did_not_diff_is_not_the_baseline_so_the_guard_sees_the_drops_canvas_will_make(
        canvas, data_dir, instance):
    data_set = write_district(data_dir, user_rows(range(100)))
    first = metadata(upload(canvas, data_dir, instance))["canvas/import_id"]
    # 9 users leave (9 %, under the guard), 20 join: 111 rows, beyond change_threshold 10 %: Canvas applies
    # every row, drops nothing, and keeps diffing against the first import.
    data_set.csv_path("users").write_text(USERS_HEADER + user_rows(range(9, 120)))
    exceeded = upload(canvas, data_dir, instance)
    assert exceeded.success
    meta = metadata(exceeded)
    assert meta["canvas/diffing_threshold_exceeded"] is True
    assert (meta["baseline_import_id"], meta["threshold_exceeded_import_id"]) == (first, meta["canvas/import_id"])
    assert data_set.last_import()["import_id"] == first
    assert canvas.state.counts()["users"] == {"active": 120}
    advice = [e.message for e in instance.all_logs(exceeded.run_id) if "Canvas skipped diffing" in e.message]
    assert advice and f"rosterbridge/approve_mass_delete=district" in advice[0] and "rosterbridge/remaster=district" in advice[0]

    # The same files the next night are not sent again: Canvas would apply them without diffing once more,
    # one more exceedance for nothing (after five in a row it refuses the data set until a remaster).
    for _ in range(6):
        again = upload(canvas, data_dir, instance)
        assert again.success and metadata(again)["uploaded"] is False
        assert "applied without diffing: not sent again" in metadata(again)["skip_reason"]
    assert len(canvas.state.imports()) == 2

    # 9 more leave: against Canvas's base (the first import) that is 18 of 100, which the guard now blocks.
    data_set.csv_path("users").write_text(USERS_HEADER + user_rows(range(18, 120)))
    blocked = upload(canvas, data_dir, instance)
    assert not blocked.success and "users: 18 of 100 (18.0 %)" in blocked.get_asset_check_evaluations()[0].description
    assert len(canvas.state.imports()) == 2 and canvas.state.counts()["users"] == {"active": 120}

    approved = upload(canvas, data_dir, instance, tags={APPROVE_MASS_DELETE_TAG: "district"})
    assert approved.success and metadata(approved)["canvas/diffing_threshold_exceeded"] is False
    assert canvas.state.counts()["users"] == {"active": 102, "deleted": 18}
    assert data_set.last_import()["import_id"] == metadata(approved)["canvas/import_id"]
    assert data_set.last_threshold_exceeded_import() is None


def observer_links(canvas) -> dict[tuple[str, str], str]:
    return {(o["observer_sis_id"], o["student_sis_id"]): o["workflow_state"] for o in canvas.state.user_observers()}


def test_observer_links_go_undiffed_with_explicit_deletes_so_every_link_and_every_removal_reaches_canvas(
        canvas, data_dir, instance):
    # u0010 observes u0001 and u0002 (and u0020-u0039 one student each); Canvas diffs user_observers on
    # observer_id alone, so in the diffed zip a removed link would never be deleted and a new guardian of
    # two students would get one link.
    header = "observer_id,student_id,status\n"
    others = "".join(f"u{i:04d},u{i - 20:04d},active\n" for i in range(20, 40))
    data_set = write_district(data_dir, user_rows(range(40)), "u0010,u0001,active\nu0010,u0002,active\n" + others)
    first = upload(canvas, data_dir, instance)
    assert first.success and metadata(first)["undiffed/uploaded"] is True
    links = observer_links(canvas)
    assert len(links) == 22 and links[("u0010", "u0001")] == links[("u0010", "u0002")] == "active"
    diffed, undiffed = canvas.state.imports()
    assert diffed["diffing_data_set_identifier"] == "sd42:district" and undiffed["diffing_data_set_identifier"] is None

    # custody change: u0010 no longer observes u0002; new guardian u0011 observes u0003 and u0004
    data_set.csv_path("user_observers").write_text(
        header + "u0010,u0001,active\nu0011,u0003,active\nu0011,u0004,active\n" + others)
    second = upload(canvas, data_dir, instance)
    assert second.success
    meta = metadata(second)
    assert meta["uploaded"] is False and meta["undiffed/deleted_rows"] == 1  # only the links changed
    links = observer_links(canvas)
    assert (links[("u0010", "u0001")], links[("u0010", "u0002")]) == ("active", "deleted")
    assert links[("u0011", "u0003")] == links[("u0011", "u0004")] == "active"
    assert len(canvas.state.imports()) == 3

    third = upload(canvas, data_dir, instance)  # nothing changed: nothing uploaded
    assert third.success and "undiffed/import_id" not in metadata(third) and len(canvas.state.imports()) == 3

    # the guard counts observer links too: most live links going at once is a mass delete
    data_set.csv_path("user_observers").write_text(header + "u0010,u0001,active\n")
    blocked = upload(canvas, data_dir, instance)
    assert not blocked.success and "user_observers: 22 of 23" in blocked.get_asset_check_evaluations()[0].description
    assert len(canvas.state.imports()) == 3


def test_a_row_canvas_rejected_is_sent_again_until_canvas_takes_it(canvas, data_dir, instance):
    # The SIS re-creates a student under a new sourcedId with the same login. In the diffed import Canvas
    # rejects the new user (the login is still held by the old SIS id, which the same import deletes
    # later). The row is then in Canvas's diff base and in the baseline: no diffed import sends it again.
    student = lambda sis_id: f"{sis_id},jdoe,Jane,Doe,,active\n"  # noqa: E731
    data_set = write_district(data_dir, user_rows(range(40)) + student("stu-old-0001"))
    assert upload(canvas, data_dir, instance).success
    data_set.csv_path("users").write_text(USERS_HEADER + user_rows(range(40)) + student("stu-new-0001"))
    night = upload(canvas, data_dir, instance)
    assert night.success
    meta = metadata(night)
    assert meta["canvas/workflow_state"] == "imported_with_messages" and "has already claimed" in meta["canvas/messages"]
    # re-sent in the undiffed import right after, when the old login is free
    assert meta["undiffed/uploaded"] is True and meta["undiffed/retried_rows"] == 1
    users = {u["sis_id"]: u["workflow_state"] for u in canvas.state.users()}
    assert (users["stu-old-0001"], users["stu-new-0001"]) == ("deleted", "active")
    assert not data_set.rejected_rows_path.exists()
    imports = len(canvas.state.imports())
    assert metadata(upload(canvas, data_dir, instance))["uploaded"] is False and len(canvas.state.imports()) == imports


def test_a_record_rejected_again_stays_pending_and_unchanged_files_do_not_skip_its_retry(canvas, data_dir, instance):
    # u0041's login is held by a user another system imported into Canvas: rejected every time.
    data_set = write_district(data_dir, user_rows(range(40)))
    assert upload(canvas, data_dir, instance).success
    other = io.BytesIO()
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("users.csv", "user_id,login_id,status\nhr-0001,jsmith,active\n")
    with CanvasClient(base_url=canvas.base_url, access_token=DEMO_CANVAS_TOKEN, poll_interval_seconds=0.01).open() as s:
        assert s.wait_for_sis_import(s.create_sis_import(other.getvalue())["id"])["workflow_state"] == "imported"
    data_set.csv_path("users").write_text(USERS_HEADER + user_rows(range(40)) + "u0041,jsmith,Jo,Smith,,active\n")
    first = upload(canvas, data_dir, instance)
    assert first.success and metadata(first)["undiffed/retried_rows"] == 1
    assert data_set.pending_retries() == {"users": {("u0041",)}}
    again = upload(canvas, data_dir, instance)  # files unchanged: only the retry goes
    meta = metadata(again)
    assert meta["uploaded"] is False and meta["undiffed/uploaded"] is True and meta["undiffed/retried_rows"] == 1
    sent = zipfile.ZipFile(data_set.undiffed_zip_path).read("users.csv").decode()
    assert sent == USERS_HEADER + "u0041,jsmith,Jo,Smith,,active\n"
    # the SIS stops sending the record: nothing left to retry
    data_set.csv_path("users").write_text(USERS_HEADER + user_rows(range(40)))
    gone = upload(canvas, data_dir, instance)
    assert gone.success and metadata(gone)["undiffed/uploaded"] is False and data_set.pending_retries() == {}


def test_failed_import_fails_with_canvas_message_and_keeps_the_baseline(canvas, data_dir, instance):
    data_set = write_district(data_dir, user_rows(range(10)))
    assert upload(canvas, data_dir, instance).success
    baseline = data_set.last_import()
    data_set.csv_path("users").write_text(USERS_HEADER + user_rows(range(11)))
    canvas.fail_next_import("Users could not be processed")
    failed = upload(canvas, data_dir, instance)
    assert not failed.success
    failure = next(e for e in failed.all_events if e.is_step_failure).step_failure_data.error
    assert "ended failed_with_messages" in failure.message and "Users could not be processed" in failure.message
    assert data_set.last_import() == baseline


def test_dry_run_counts_and_masks_without_uploading(canvas, data_dir, instance):
    data_set = write_district(data_dir, user_rows(range(40)))
    assert upload(canvas, data_dir, instance).success
    data_set.csv_path("users").write_text(USERS_HEADER + user_rows(range(5, 42)))
    result = dg.materialize([dry_run_district], resources={"canvas_upload": CanvasUploadPolicy(), "data_dir": data_dir},
                            instance=instance)
    meta = {k: v.value for k, v in result.asset_materializations_for_node("canvas__dry_run_district")[0].metadata.items()}
    assert (meta["diff/created"], meta["diff/deleted"], meta["diff/changed"]) == (2, 5, 0)
    assert meta["would_upload"] is True and meta["guard_would_block"] == "users"
    sample = meta["masked_sample"]
    assert "***" in sample and not any(value in sample for value in ("u0041", "login0041", "First41", "u41@example.org"))
    assert len(canvas.state.imports()) == 1


def test_imported_with_messages_succeeds_with_every_message_in_metadata(canvas, data_dir, instance):
    data_set = write_district(data_dir, user_rows(range(5)))
    assert upload(canvas, data_dir, instance).success
    # Only Canvas knows A1 is deleted when A2 comes to be restored under it: the files pass the check.
    data_set.csv_path("accounts").write_text("account_id,parent_account_id,name,status\nA1,,North,deleted\n"
                                             "A2,A1,South,active\n")
    result = upload(canvas, data_dir, instance)
    assert result.success
    meta = metadata(result)
    assert meta["canvas/workflow_state"] == "imported_with_messages"
    assert meta["canvas/error_count"] + meta["canvas/warning_count"] == 1
    message = "Cannot restore sub_account with ID: A2 because parent_account with ID: A1 has been deleted."
    assert "accounts.csv" in meta["canvas/messages"] and f"| 3 | {message}" in meta["canvas/messages"]
    logged = [e.message for e in instance.all_logs(result.run_id) if "Canvas error" in e.message or "Canvas warning" in e.message]
    assert any(f"accounts.csv row 3: {message}" in line for line in logged)


def test_canvas_messages_reach_logs_metadata_and_failures_without_logins_or_emails(canvas, data_dir, instance):
    # 130 users whose e-mail Canvas finds invalid: each one a warning quoting the user id and the e-mail.
    users = "".join(f"stu-{i:07d},jdoe{i},Jane,Doe,jane.doe{i}@@gmail.com,active\n" for i in range(130))
    data_set = write_district(data_dir, users)
    result = upload(canvas, data_dir, instance)
    assert result.success
    meta = metadata(result)
    assert meta["canvas/warning_count"] == 130 and meta["counts/users"] == 130
    raw = json.loads(data_set.result_path.read_text())["messages"]
    assert raw[0]["message"] == "The email address associated with user 'stu-0000000' is invalid (email: 'jane.doe0@@gmail.com')"
    assert "The email address associated with user 'st***00' is invalid (email: '***')" in meta["canvas/messages"]
    canvas_lines = [e.message for e in instance.all_logs(result.run_id) if "Canvas warning" in e.message
                    or "more Canvas messages" in e.message]
    assert len(canvas_lines) == 101 and "30 more Canvas messages (0 errors, 30 warnings)" in canvas_lines[-1]
    shown = meta["canvas/messages"] + "\n".join(e.message for e in instance.all_logs(result.run_id))
    assert "@gmail.com" not in shown and "stu-00000" not in shown

    data_set.csv_path("users").write_text(USERS_HEADER + users + "stu-0012346,john smith,John,Smith,,active\n")
    canvas.fail_next_import("Could not save the user with user_id: 'stu-0012346'. Invalid login_id: 'john smith'")
    failed = upload(canvas, data_dir, instance)
    failure = next(e for e in failed.all_events if e.is_step_failure).step_failure_data.error
    assert "Could not save the user with user_id: 'st***46'. Invalid login_id: '***'" in failure.message
    shown = failure.message + "\n".join(e.message for e in instance.all_logs(failed.run_id))
    assert "john smith" not in shown and "stu-0012346" not in shown


def test_files_that_failed_or_skipped_the_import_rules_check_are_never_uploaded(canvas, data_dir, instance):
    data_set = write_district(data_dir, user_rows(range(5)) + "u0099,,No,Login,,active\n")
    assert not check(data_dir, instance).success
    refused = upload(canvas, data_dir, instance, checked=False)
    assert not refused.success
    failure = next(e for e in refused.all_events if e.is_step_failure).step_failure_data.error
    assert "have not passed the canvas_import_rules check" in failure.message

    data_set.csv_path("users").write_text(USERS_HEADER + user_rows(range(5)))
    assert check(data_dir, instance).success
    data_set.csv_path("users").write_text(USERS_HEADER + user_rows(range(6)))  # rebuilt after its check
    changed = upload(canvas, data_dir, instance, checked=False)
    assert not changed.success
    failure = next(e for e in changed.all_events if e.is_step_failure).step_failure_data.error
    assert "changed after they passed the canvas_import_rules check (users.csv" in failure.message
    assert canvas.state.imports() == [] and not data_set.zip_path.exists()
    assert upload(canvas, data_dir, instance).success and len(canvas.state.imports()) == 1


def test_import_messages_prefer_the_complete_errors_endpoint():
    sis_import = {"processing_errors": [["users.csv", "bad row"]], "processing_warnings": [["terms.csv", "odd date"]]}
    assert [m["severity"] for m in import_messages(sis_import, [])] == ["warning", "error"]
    rows = [{"file": "users.csv", "message": "bad row", "row": 3}, {"file": "terms.csv", "message": "odd date", "row": 2},
            {"file": "users.csv", "message": "bad row", "row": 9, "failure": False}]
    assert [(m["severity"], m["row"]) for m in import_messages(sis_import, rows)] == [("error", 3), ("warning", 2),
                                                                                      ("warning", 9)]
