"""Data sets, zips, diffing identifiers, the record diff behind the mass-delete guard and the dry run."""

from __future__ import annotations

import zipfile

import pytest

from pipeline.canvas_data_set import DataSet
from pipeline.canvas_diff import diff_data_set
from pipeline.personal_data import mask_message, mask_record, mask_value

USERS_HEADER = "user_id,login_id,first_name,last_name,email,status\n"
TERM = "2026-fall"


def user_rows(ids, status="active"):
    return "".join(f"u{i:04d},login{i:04d},First{i},Last{i},u{i}@example.org,{status}\n" for i in ids)


def write_district(data_dir, users: str, observers: str = "") -> DataSet:
    data_set = DataSet.for_name(data_dir, "district")
    data_set.directory.mkdir(parents=True, exist_ok=True)
    data_set.csv_path("accounts").write_text("account_id,parent_account_id,name,status\nA1,,North,active\n")
    data_set.csv_path("terms").write_text(f"term_id,name,status\n{TERM},Fall,active\n")
    data_set.csv_path("users").write_text(USERS_HEADER + users)
    data_set.csv_path("user_observers").write_text("observer_id,student_id,status\n" + observers)
    return data_set


def write_term(data_dir) -> DataSet:
    """A term data set of one course and section; each test writes its own enrollments.csv."""
    data_set = DataSet.for_name(data_dir, TERM)
    data_set.directory.mkdir(parents=True, exist_ok=True)
    data_set.csv_path("courses").write_text("course_id,short_name,long_name,term_id,status\nC1,C1,Course 1,2026-fall,active\n")
    data_set.csv_path("sections").write_text("section_id,course_id,name,status\nS1,C1,Section 1,active\n")
    return data_set


def baseline(data_set: DataSet, import_id: int = 1) -> None:
    data_set.record_successful_import({"id": import_id, "workflow_state": "imported"}, data_set.fingerprints())


def by_file(diff):
    return {f.file: f for f in diff.files}


def test_first_run_has_no_baseline_and_everything_is_created(data_dir):
    data_set = write_district(data_dir, user_rows(range(20)))
    diff = diff_data_set(data_set)
    assert not diff.has_baseline
    users = by_file(diff)["users"]
    assert (users.rows, users.created, users.deleted, users.previously_live) == (20, 20, 0, 0)
    assert diff.mass_deletes(10) == []


def test_diff_counts_created_changed_removed_and_turned_deleted(data_dir):
    data_set = write_district(data_dir, user_rows(range(100)))
    baseline(data_set)
    # 0-4 vanish, 5-6 turn deleted, 7 changes its email, 100-102 are new
    current = user_rows(range(7, 100)).replace("u7@example.org", "new7@example.org")
    current += user_rows([5, 6], status="deleted") + user_rows([100, 101, 102])
    data_set.csv_path("users").write_text(USERS_HEADER + current)
    users = by_file(diff_data_set(data_set))["users"]
    assert (users.created, users.changed, users.deleted, users.previously_live) == (3, 1, 7, 100)
    assert users.rows == 98
    assert users.deleted_percent == pytest.approx(7.0)
    assert by_file(diff_data_set(data_set))["accounts"].unchanged == 1


def test_guard_trips_on_truncated_feed_but_not_on_already_deleted_records(data_dir):
    data_set = write_district(data_dir, user_rows(range(50)) + user_rows(range(50, 60), status="deleted"))
    baseline(data_set)
    data_set.csv_path("users").write_text(USERS_HEADER + user_rows(range(25)))
    diff = diff_data_set(data_set)
    blocked = diff.mass_deletes(10)
    assert [f.file for f in blocked] == ["users"]
    # The ten already-deleted users leaving the feed change nothing in Canvas: 25 of 50 live users go.
    assert (blocked[0].deleted, blocked[0].previously_live) == (25, 50)
    assert diff.mass_deletes(60) == []


def test_guard_counts_users_turning_suspended_like_users_disappearing(data_dir):
    # The SIS sends enabledUser=false for everyone: nobody disappears, yet everyone is locked out.
    data_set = write_district(data_dir, user_rows(range(90)) + user_rows(range(90, 100), status="suspended"))
    baseline(data_set)
    data_set.csv_path("users").write_text(USERS_HEADER + user_rows(range(100), status="suspended"))
    diff = diff_data_set(data_set)
    assert [f.file for f in diff.mass_deletes(10)] == ["users"]
    users = by_file(diff)["users"]
    # the ten already suspended stay as they were; a suspended user leaving the feed would still count
    # (Canvas then deletes it)
    assert (users.deleted, users.previously_live, users.unchanged) == (90, 100, 10)
    # reactivating them is a change, not a removal
    baseline(data_set, import_id=2)
    data_set.csv_path("users").write_text(USERS_HEADER + user_rows(range(100)))
    users = by_file(diff_data_set(data_set))["users"]
    assert (users.changed, users.deleted, users.previously_live) == (100, 0, 100)


def test_guard_counts_enrollments_turning_inactive_or_completed(data_dir):
    data_set = write_term(data_dir)
    header = "course_id,section_id,user_id,role,status\n"
    rows = lambda ids, status: "".join(f"C1,S1,u{i},student,{status}\n" for i in ids)  # noqa: E731
    data_set.csv_path("enrollments").write_text(header + rows(range(50), "active"))
    baseline(data_set)
    data_set.csv_path("enrollments").write_text(header + rows(range(40), "active") + rows(range(40, 45), "inactive")
                                                + rows(range(45, 50), "completed"))
    enrollments = by_file(diff_data_set(data_set))["enrollments"]
    assert (enrollments.deleted, enrollments.previously_live, enrollments.deleted_percent) == (10, 50, 20.0)
    assert {(row["change"], row["status"]) for row in enrollments.sample} == {("deleted", "inactive")}  # first 5 by key
    assert [f.file for f in diff_data_set(data_set).mass_deletes(10)] == ["enrollments"]


def test_enrollment_identity_uses_canvas_identifying_columns(data_dir):
    data_set = write_term(data_dir)
    header = "course_id,section_id,user_id,role,status,limit_section_privileges\n"
    data_set.csv_path("enrollments").write_text(header + "C1,S1,u1,student,active,false\nC1,S1,u1,teacher,active,false\n")
    baseline(data_set)
    data_set.csv_path("enrollments").write_text(header + "C1,S1,u1,student,active,true\n")
    enrollments = by_file(diff_data_set(data_set))["enrollments"]
    assert (enrollments.changed, enrollments.deleted) == (1, 1)
    assert {row["change"]: row["role"] for row in enrollments.sample} == {"changed": "student", "deleted": "teacher"}


def test_sample_masks_personal_values(data_dir):
    data_set = write_district(data_dir, user_rows(range(3)))
    sample = by_file(diff_data_set(data_set))["users"].sample
    # ids as short as these (u0000) are hidden whole: first and last two characters would tell them
    assert sample[0] == {"change": "created", "user_id": "***", "login_id": "***", "first_name": "***",
                         "last_name": "***", "email": "***", "status": "active"}
    assert mask_value("user_id", "12345678") == "***" and mask_value("user_id", "stu-000123") == "st***23" and mask_value("email", "") == "" and mask_value("email", None) is None
    assert mask_record("enrollments", {"user_id": "stu-000123", "role": "student"}) == {"user_id": "st***23", "role": "student"}
    # a course's short name describes no one
    assert mask_record("courses", {"short_name": "Algebra I"}) == {"short_name": "Algebra I"}


def test_unchanged_detection_and_baseline_swap(data_dir):
    data_set = write_district(data_dir, user_rows(range(5)))
    assert not data_set.unchanged_since_last_import()
    baseline(data_set, import_id=7)
    assert data_set.unchanged_since_last_import()
    assert data_set.last_import()["import_id"] == 7
    data_set.csv_path("users").write_text(USERS_HEADER + user_rows(range(6)))
    assert not data_set.unchanged_since_last_import()
    baseline(data_set, import_id=8)
    assert data_set.last_imported_path("users").read_text() == USERS_HEADER + user_rows(range(6))
    assert sorted(p.name for p in data_set.directory.iterdir() if p.name.startswith(".")) == []


def test_a_baseline_swap_stopped_between_its_renames_keeps_the_old_baseline(data_dir):
    data_set = write_district(data_dir, user_rows(range(5)))
    baseline(data_set, import_id=7)
    # The process died after retiring the old baseline and before moving the new one in.
    (data_set.directory / "last_imported").rename(data_set.directory / ".last_imported.old")
    assert data_set.last_import()["import_id"] == 7
    assert data_set.last_imported_path("users").read_text() == USERS_HEADER + user_rows(range(5))
    (data_set.directory / "last_imported").rename(data_set.directory / ".last_imported.old")
    data_set.csv_path("users").write_text(USERS_HEADER + user_rows(range(6)))
    baseline(data_set, import_id=8)
    assert data_set.last_import()["import_id"] == 8
    assert not (data_set.directory / ".last_imported.old").exists()


def test_zip_is_deterministic_and_holds_every_csv(data_dir):
    data_set = write_district(data_dir, user_rows(range(5)))
    first = data_set.build_zip()
    second = data_set.build_zip()
    assert first == second == data_set.zip_path.read_bytes()
    with zipfile.ZipFile(data_set.zip_path) as archive:
        # user_observers.csv goes in an undiffed import of its own (see test_upload_assets)
        assert archive.namelist() == ["accounts.csv", "terms.csv", "users.csv"]
        assert archive.read("users.csv").decode() == USERS_HEADER + user_rows(range(5))


def test_missing_csv_names_the_file_and_the_assets_to_run(data_dir):
    data_set = DataSet.for_name(data_dir, TERM)
    with pytest.raises(FileNotFoundError, match=r"term 2026-fall: courses.csv, sections.csv, enrollments.csv"):
        data_set.build_zip()


def test_diffing_identifiers_are_per_data_set_and_bounded(data_dir):
    assert DataSet.for_name(data_dir, "district").diffing_identifier("sd42") == "sd42:district"
    assert DataSet.for_name(data_dir, TERM).diffing_identifier("sd42") == "sd42:term:2026-fall"
    with pytest.raises(ValueError, match="CANVAS_DIFFING_PREFIX"):
        DataSet.for_name(data_dir, TERM).diffing_identifier("x" * 120)


@pytest.mark.bench
def test_bench_guard_diff_of_a_million_enrollments(data_dir):
    """Guard + dry-run comparison cost at district scale: `pytest tests/test_upload_guards.py -m bench -s`."""
    import time

    data_set = DataSet.for_name(data_dir, TERM)
    data_set.directory.mkdir(parents=True)
    data_set.csv_path("courses").write_text("course_id,short_name,long_name,term_id,status\n")
    data_set.csv_path("sections").write_text("section_id,course_id,name,status\n")
    header = "course_id,section_id,user_id,role,status\n"

    def enrollments(drop_every: int) -> str:
        return header + "".join(f"C{i // 25:06d},S{i // 25:06d},stu-{i:07d},student,active\n"
                                for i in range(1_000_000) if drop_every == 0 or i % drop_every)

    data_set.csv_path("enrollments").write_text(enrollments(0))
    baseline(data_set)
    data_set.csv_path("enrollments").write_text(enrollments(50))  # 2 % dropped
    started = time.perf_counter()
    diff = diff_data_set(data_set)
    elapsed = time.perf_counter() - started
    file = by_file(diff)["enrollments"]
    assert (file.deleted, file.previously_live) == (20_000, 1_000_000)
    print(f"\nguard diff of 1,000,000 enrollments (20,000 dropped): {elapsed:.2f} s")


def test_a_pinned_data_set_keeps_the_bytes_it_was_pinned_with_while_the_csvs_are_rebuilt(data_dir):
    from pipeline.datadir import atomic_write_text

    data_set = write_district(data_dir, user_rows(range(10)))
    with data_set.pinned() as pinned:
        # a transform run rewrites users.csv the way it always does: a new file renamed over the old one
        atomic_write_text(data_set.csv_path("users"), USERS_HEADER + user_rows(range(3)))
        assert by_file(diff_data_set(pinned))["users"].created == 10
        pinned.record_successful_import({"id": 5, "workflow_state": "imported"}, pinned.fingerprints())
        folder = pinned.csv_path("users").parent
    assert not folder.exists()
    # the baseline is what was pinned (and uploaded), with checksums that match it
    assert data_set.last_imported_path("users").read_text() == USERS_HEADER + user_rows(range(10))
    assert by_file(diff_data_set(data_set))["users"].deleted == 7
    assert not data_set.unchanged_since_last_import()
    atomic_write_text(data_set.csv_path("users"), USERS_HEADER + user_rows(range(10)))
    assert data_set.unchanged_since_last_import()


def test_pins_left_by_a_killed_upload_are_removed_after_a_day(data_dir):
    import os
    import time

    data_set = write_district(data_dir, user_rows(range(2)))
    stale, recent = data_set.directory / ".pinned.killed", data_set.directory / ".pinned.running"
    for folder in (stale, recent):
        folder.mkdir()
        (folder / "users.csv").write_text(USERS_HEADER)
    os.utime(stale, (time.time() - 2 * 86400,) * 2)
    with data_set.pinned():
        pass
    assert not stale.exists() and recent.exists()
    assert sorted(p.name for p in data_set.directory.iterdir() if p.name.startswith(".pinned.")) == [".pinned.running"]


@pytest.mark.parametrize("raw, shown", [
    ("The email address associated with user 'st0012345' is invalid (email: 'jane.doe@@gmail.com')",
     "The email address associated with user '***' is invalid (email: '***')"),
    ("Could not save the user with user_id: 'stu-0012346'. Invalid login_id: 'john smith'",
     "Could not save the user with user_id: 'st***46'. Invalid login_id: '***'"),
    ("Attempted enrolling with deleted sis login jdoe", "Attempted enrolling with deleted sis login ***"),
    ("An existing Canvas user with the SIS ID stu-0000001 has already claimed stu-0000002's user_id requested "
     "login information, skipping", "An existing Canvas user with the SIS ID st***01 has already claimed st***02's "
     "user_id requested login information, skipping"),
    ("User not found for enrollment (User ID: stu-0000001, Course ID: C1, Section ID: S1)",
     "User not found for enrollment (User ID: st***01, Course ID: C1, Section ID: S1)"),
    # a message Canvas may add later: e-mails and quoted logins are still hidden
    ("Unexpected thing for jane@example.org with login_id: 'jdoe'", "Unexpected thing for *** with login_id: '***'"),
    # nothing personal: unchanged
    ("Cannot restore sub_account with ID: A2 because parent_account with ID: A1 has been deleted.",
     "Cannot restore sub_account with ID: A2 because parent_account with ID: A1 has been deleted."),
])
def test_canvas_messages_are_masked(raw, shown):
    assert mask_message(raw) == shown


def test_rejected_records_are_keyed_from_the_quoted_row_or_the_uploaded_row(data_dir):
    data_set = write_term(data_dir)
    data_set.csv_path("enrollments").write_text("course_id,section_id,user_id,role,status\n"
                                                "C1,S1,u1,student,active\nC1,S1,u2,student,active\n")
    messages = [
        {"file": "enrollments.csv", "row": 3, "message": "User not found for enrollment (User ID: u2, ...)"},
        {"file": "sections.csv", "row": 2, "message": "Section S9 references course C9 which doesn't exist",
         "row_info": "S9,C9,Nine,active\n"},
        {"file": "users.csv", "row": 2, "message": "not a file of this data set"},
        {"file": "enrollments.csv", "row": None, "message": "a file-level message"},
        {"file": "enrollments.csv", "row": 2, "message": "Bad date format for enrollment"},  # imported anyway
    ]
    rejected = data_set.rejected_records(messages, {f: data_set.csv_path(f) for f in data_set.files})
    assert rejected == {"enrollments": {("C1", "S1", "u2", "student")}, "sections": {("S9",)}}
    data_set.record_pending_retries(rejected)
    assert data_set.pending_retries() == rejected
    contents, deletes, retried = data_set.undiffed_contents(False, rejected)
    assert (deletes, retried) == (0, 1)  # S9 is not in sections.csv any more: nothing to re-send
    assert contents == {"enrollments": b"course_id,section_id,user_id,role,status\nC1,S1,u2,student,active\n"}


def test_the_term_build_reads_an_interrupted_baseline_swap_without_repairing_it(data_dir):
    # An upload between its two renames has only the retired baseline; a reader in another step must not
    # rename it back under the upload (its second rename would then fail after Canvas applied the import).
    data_set = DataSet.for_name(data_dir, TERM)
    retired = data_set.directory / ".last_imported.old"
    retired.mkdir(parents=True)
    assert data_set.last_imported_dir() == retired and retired.is_dir()
    assert not (data_set.directory / "last_imported").exists()
