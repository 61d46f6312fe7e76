"""The OneRoster -> Canvas mapping on small hand-made snapshots: every setting, hostile values,
deleted/disabled records, guardians, multi-term classes, and Canvas's importer rules on the output."""

from __future__ import annotations

import pytest
import dagster as dg

from assets import transform
from pipeline import canvas_rules
from pipeline.canvas_data_set import DISTRICT
from pipeline.partitions import discover_term_keys
from pipeline.resources.mapping import MappingSettings
from tests.test_transform_fixtures import enrollment, org, read_csv, small_district, user, write_snapshot


def build_metadata(data_dir, mapping: MappingSettings) -> dict[str, dict]:
    """Build every data set of the snapshot in `data_dir`; returns each file's metadata by
    "district/users", "fall-2026/courses", ..."""
    out: dict[str, dict] = {}
    with mapping.open_roster_db(data_dir) as conn:
        for file, metadata in transform.build_district(conn, data_dir, mapping):
            out[f"district/{file.name}"] = metadata
    for term in discover_term_keys(data_dir, mapping):
        with mapping.open_roster_db(data_dir, term.sourced_id) as conn:
            for file, metadata in transform.build_term(conn, data_dir, mapping, term.key):
                out[f"{term.key}/{file.name}"] = metadata
    return out


def build(data_dir, mapping: MappingSettings | None = None, snapshot: dict | None = None) -> dict[str, list[dict]]:
    """Write the snapshot, build every data set; returns rows by "district/users", "fall-2026/courses", ..."""
    mapping = mapping or MappingSettings()
    write_snapshot(data_dir, **(snapshot or small_district()))
    return {name: read_csv(metadata["path"].value) for name, metadata in build_metadata(data_dir, mapping).items()}


def rows(out, name, *columns):
    return [tuple(r[c] for c in columns) for r in out[name]]


def violations(data_dir, mapping: MappingSettings | None = None) -> list[canvas_rules.Violation]:
    """Canvas's rules over the district data set and every term's (with the district's ids as existing)."""
    mapping = mapping or MappingSettings()
    district_dir = data_dir.canvas_dir(DISTRICT)
    district = {f.file_name: (district_dir / f.file_name).read_bytes() for f in transform.DISTRICT_FILES}
    root = canvas_rules.ExistingIds(accounts={mapping.root_account_id} if mapping.root_account_id else set())
    found = canvas_rules.validate_import(district, root)
    existing = transform.existing_ids_from_district(district, mapping.root_account_id)
    for term in discover_term_keys(data_dir, mapping):
        term_dir = data_dir.canvas_dir(term.key)
        files = {f.file_name: (term_dir / f.file_name).read_bytes() for f in transform.TERM_FILES}
        found += canvas_rules.validate_import(files, existing)
    return found


# --- defaults ------------------------------------------------------------------------------------
def test_default_mapping_of_the_small_district(data_dir):
    out = build(data_dir)
    assert rows(out, "district/accounts", "account_id", "parent_account_id", "name", "status") == [
        ("dist-1", "", "Springfield District", "active"),
        ("sch-1", "dist-1", 'Évergreen High, "North"', "active"),
        ("sch-2", "dist-1", "O'Brien Middle", "active"),
    ]
    assert rows(out, "district/terms", "term_id", "name", "start_date", "end_date") == [
        ("fall-2026", "Fall 2026", "2026-08-20T00:00:00Z", "2027-01-15T23:59:59Z"),
        ("spring-2027", "Spring 2027", "2027-01-16T00:00:00Z", "2027-06-10T23:59:59Z"),
        ("sy-2026", "2026-27", "2026-08-20T00:00:00Z", "2027-06-10T23:59:59Z"),
    ]
    assert rows(out, "district/users", "user_id", "status") == [
        ("u-admin", "active"), ("u-aide", "active"), ("u-s1", "active"), ("u-s2", "active"),
        ("u-s3", "suspended"), ("u-s4", "deleted"), ("u-t1", "active"), ("u-t2", "active"),
    ]  # guardians only with observers on
    assert out["district/user_observers"] == []
    assert rows(out, "fall-2026/courses", "course_id", "short_name", "account_id", "term_id", "status") == [
        ("cls-alg-1", "ALG1-1", "sch-1", "fall-2026", "active"),
        ("cls-alg-2", "ALG1-2", "sch-1", "fall-2026", "active"),
        ("cls-q1", "=Quarter club", "sch-2", "fall-2026", "active"),  # scheduled in a grading period of fall
    ]
    assert rows(out, "fall-2026/sections", "section_id", "course_id") == [
        ("cls-alg-1", "cls-alg-1"), ("cls-alg-2", "cls-alg-2"), ("cls-q1", "cls-q1"),
    ]
    assert rows(out, "fall-2026/enrollments", "section_id", "user_id", "role", "status") == [
        ("cls-alg-1", "u-aide", "ta", "active"),
        ("cls-alg-1", "u-s1", "student", "active"),
        ("cls-alg-1", "u-s2", "student", "active"),
        ("cls-alg-1", "u-t1", "teacher", "active"),
        ("cls-alg-2", "u-aide", "ta", "active"),  # a 1.1 aide: user role aide, enrollment role teacher
        ("cls-alg-2", "u-s2", "student", "active"),  # dropped then re-enrolled: one active row
        ("cls-q1", "u-s1", "student", "active"),
    ]  # administrator skipped; u-ghost (not in the snapshot) left out
    assert rows(out, "sy-2026/courses", "course_id", "short_name", "term_id") == [
        ("cls-hist", 'History "World",\nyear-long', "sy-2026"),  # listed in both semesters
    ]
    assert rows(out, "sy-2026/enrollments", "user_id", "role", "status") == [
        ("u-s3", "student", "active"),  # disabled user: suspended, enrollment kept
        ("u-s4", "student", "deleted"),  # deleted user: enrollment deleted too
        ("u-t2", "teacher", "active"),
    ]
    assert rows(out, "spring-2027/courses", "course_id", "status") == [("cls-sp", "deleted")]
    assert rows(out, "spring-2027/enrollments", "user_id", "status") == [("u-s1", "deleted")]
    assert violations(data_dir) == []


def test_hostile_values_reach_canvas_exactly(data_dir):
    out = build(data_dir)
    users = {r["user_id"]: r for r in out["district/users"]}
    assert (users["u-t1"]["first_name"], users["u-t1"]["last_name"], users["u-t1"]["email"]) == ("Zoë", "O'Brien", "")
    assert users["u-t2"]["last_name"] == "Smith, Jr."
    assert users["u-s1"]["first_name"] == "=cmd"  # not neutralised: Canvas stores values verbatim
    assert users["u-s2"]["last_name"] == "Line\nBreak"
    raw = (data_dir.canvas_dir(DISTRICT) / "accounts.csv").read_bytes()
    assert '"Évergreen High, ""North"""'.encode() in raw
    assert raw.startswith(b"account_id,parent_account_id,name,status\n")  # UTF-8, no BOM, header first


def test_a_class_in_two_terms_lives_in_the_term_containing_both(data_dir):
    out = build(data_dir)
    where = {key.split("/")[0] for key, rows_ in out.items() if key.endswith("/courses")
             for r in rows_ if r["course_id"] == "cls-hist"}
    assert where == {"sy-2026"}


def test_without_a_common_term_a_class_lives_in_the_one_it_starts_in(data_dir):
    out = build(data_dir, MappingSettings(term_types=["semester"]))
    assert "cls-hist" in [r["course_id"] for r in out["fall-2026/courses"]]
    assert "cls-hist" not in [r["course_id"] for r in out["spring-2027/courses"]]
    assert violations(data_dir, MappingSettings(term_types=["semester"])) == []


def test_output_is_byte_identical_when_nothing_changed(data_dir, tmp_path):
    build(data_dir)
    first = {p.relative_to(data_dir.path): p.read_bytes() for p in (data_dir.path / "canvas").rglob("*.csv")}
    snapshot = small_district()
    for rows_ in snapshot.values():
        rows_.reverse()  # the provider may page in another order
    build(data_dir, snapshot=snapshot)
    second = {p.relative_to(data_dir.path): p.read_bytes() for p in (data_dir.path / "canvas").rglob("*.csv")}
    assert first == second and len(first) == 13


# --- settings ------------------------------------------------------------------------------------
def test_per_course_term_mode_makes_one_course_per_course_and_term(data_dir):
    out = build(data_dir, MappingSettings(course_mode="per_course_term"))
    assert rows(out, "fall-2026/courses", "course_id", "short_name", "long_name", "account_id") == [
        ("crs-1::fall-2026", "ALG1", "Algebra I", "sch-1"),
        ("crs-2::fall-2026", "HIST", "History, World", "sch-2"),
    ]
    assert rows(out, "fall-2026/sections", "section_id", "course_id", "name") == [
        ("cls-alg-1", "crs-1::fall-2026", "Algebra I - P1"),
        ("cls-alg-2", "crs-1::fall-2026", "Algebra I - P2"),
        ("cls-q1", "crs-2::fall-2026", "=Quarter club"),
    ]
    assert rows(out, "sy-2026/sections", "section_id", "course_id") == [("cls-hist", "crs-2::sy-2026")]
    assert ("crs-1::fall-2026", "cls-alg-1", "u-s1") in rows(out, "fall-2026/enrollments", "course_id", "section_id", "user_id")
    # crs-2 in spring has only a deleted class: the course is deleted with it
    assert rows(out, "spring-2027/courses", "course_id", "status") == [("crs-2::spring-2027", "deleted")]
    assert violations(data_dir) == []


def test_per_course_term_mode_without_course_records_names_courses_after_a_class(data_dir):
    snapshot = small_district()
    snapshot["courses"] = []
    out = build(data_dir, MappingSettings(course_mode="per_course_term"), snapshot)
    assert rows(out, "fall-2026/courses", "course_id", "short_name", "long_name") == [
        ("crs-1::fall-2026", "ALG1-1", "Algebra I - P1"),  # the first class (by id) names the course
        ("crs-2::fall-2026", "=Quarter club", "=Quarter club"),
    ]


def test_roles_are_configurable(data_dir):
    out = build(data_dir, MappingSettings(roles={"student": "student", "teacher": "teacher", "administrator": "teacher"}))
    roles = rows(out, "fall-2026/enrollments", "user_id", "role")
    assert ("u-admin", "teacher") in roles and not any(user_id == "u-aide" for user_id, _ in roles)


@pytest.mark.parametrize(
    ("source", "t1_login", "s1_login"),
    [("username", "zoë.o'brien", "=cmd.évora"), ("email", None, "=cmd.évora@example.org"), ("identifier", "U-T1", "U-S1")],
)
def test_login_id_source(data_dir, source, t1_login, s1_login):
    mapping = MappingSettings(login_id_from=source)
    out = build(data_dir, mapping)
    logins = dict(rows(out, "district/users", "user_id", "login_id"))
    assert logins.get("u-t1") == t1_login and logins["u-s1"] == s1_login
    if t1_login is None:  # the teacher with no email cannot log in by email: left out, with their enrollments
        assert "u-t1" not in [r["user_id"] for r in out["fall-2026/enrollments"]]
    assert violations(data_dir, mapping) == []


def test_users_without_login_are_counted_in_metadata(data_dir):
    write_snapshot(data_dir, **small_district())
    mapping = MappingSettings(login_id_from="email")
    with mapping.open_roster_db(data_dir) as conn:
        metadata = {f.name: m for f, m in transform.build_district(conn, data_dir, mapping)}
    assert metadata["users"]["users_without_login_id"] == 1
    assert metadata["users"]["dagster/row_count"] == 7


def table(value) -> list[tuple]:
    """A table metadata value's records as tuples."""
    return [tuple(record.data.values()) for record in value.records]


def test_a_login_equal_ignoring_case_is_kept_by_one_user(data_dir):
    # u-t2's username is ann.smith, jr.: a student record spelled in capitals claims the same Canvas
    # login. Both active: the smaller sourcedId (u-s5 < u-t2) keeps it, the teacher is left out.
    snapshot = small_district()
    snapshot["users"].append(user("u-s5", "student", "Ann", "Smith", username="ANN.Smith, Jr."))
    write_snapshot(data_dir, **snapshot)
    mapping = MappingSettings()
    metadata = build_metadata(data_dir, mapping)
    users = metadata["district/users"]
    user_ids = [r["user_id"] for r in read_csv(users["path"].value)]
    assert "u-s5" in user_ids and "u-t2" not in user_ids
    assert users["users_with_conflicting_login_id"] == 1
    assert table(users["users_with_conflicting_login_id_by_role"]) == [("teacher", 1)]
    assert table(users["users_with_conflicting_login_id_sample"]) == [("u-t2", "u-s5")]
    assert users["users_without_login_id"] == 0
    # u-t2 teaches the year-long history class: that enrollment is skipped, with its own reason
    year = metadata["sy-2026/enrollments"]
    assert "u-t2" not in [r["user_id"] for r in read_csv(year["path"].value)]
    assert ("user left out of users.csv: another user keeps its login_id", 1) in table(year["enrollments_skipped_by_reason"])
    assert violations(data_dir, mapping) == []


def test_siblings_sharing_an_email_get_one_login_in_email_mode(data_dir):
    # u-s7 gives u-s1's email in other letter case (É/é too): one login by email, two by username.
    snapshot = small_district()
    snapshot["users"].append(user("u-s7", "student", "Ed", "Évora", email="=CMD.ÉVORA@Example.ORG"))
    snapshot["enrollments"].append(enrollment("e15", "u-s7", "cls-alg-1", "student"))
    write_snapshot(data_dir, **snapshot)
    by_email = MappingSettings(login_id_from="email")
    metadata = build_metadata(data_dir, by_email)
    users = metadata["district/users"]
    assert "u-s7" not in [r["user_id"] for r in read_csv(users["path"].value)]
    assert users["users_with_conflicting_login_id"] == 1 and users["users_without_login_id"] == 1  # u-t1: no email
    fall = metadata["fall-2026/enrollments"]
    assert {r["user_id"] for r in read_csv(fall["path"].value)} & {"u-s1", "u-s7"} == {"u-s1"}
    assert table(fall["enrollments_skipped_by_reason"]) == [
        ("role administrator is not in MAPPING_ROLES", 1),
        ("user is not in users.csv", 2),  # u-ghost, and u-t1 who has no email
        ("user left out of users.csv: another user keeps its login_id", 1),
    ]
    assert fall["enrollments_skipped"] == 4
    assert violations(data_dir, by_email) == []

    metadata = build_metadata(data_dir, MappingSettings())
    assert "u-s7" in [r["user_id"] for r in read_csv(metadata["district/users"]["path"].value)]
    assert metadata["district/users"]["users_with_conflicting_login_id"] == 0


def test_a_login_goes_to_an_active_user_before_a_suspended_or_deleted_one(data_dir):
    # Canvas's rules here keep a deleted user's login claimed: only one of them may be in users.csv,
    # and it is the one who can still sign in, whatever the sourcedIds.
    snapshot = small_district()
    snapshot["users"] += [
        user("u-a0", "aide", "Al", "Aide", status="tobedeleted"),  # u-aide's login, smaller sourcedId
        user("u-a1", "aide", "AL", "AIDE", enabledUser=False),  # suspended
        user("u-b0", "student", "Old", "Record", username="sam.b", status="tobedeleted"),
        user("u-b1", "student", "Sam", "B", username="Sam.B", enabledUser=False),
    ]
    snapshot["enrollments"].append(enrollment("e15", "u-a0", "cls-alg-2", "teacher"))
    out = build(data_dir, snapshot=snapshot)
    statuses = dict(rows(out, "district/users", "user_id", "status"))
    assert statuses["u-aide"] == "active" and "u-a0" not in statuses and "u-a1" not in statuses
    assert statuses["u-b1"] == "suspended" and "u-b0" not in statuses
    assert "u-a0" not in [r["user_id"] for r in out["fall-2026/enrollments"]]
    assert violations(data_dir) == []


def test_authentication_provider_and_published_courses(data_dir):
    out = build(data_dir, MappingSettings(authentication_provider_id="google", new_course_status="published"))
    assert {r["authentication_provider_id"] for r in out["district/users"]} == {"google"}
    assert {r["status"] for r in out["fall-2026/courses"]} == {"published"}
    assert violations(data_dir) == []


def test_disabled_users_can_be_deleted_instead_of_suspended(data_dir):
    out = build(data_dir, MappingSettings(disabled_user_status="deleted"))
    assert dict(rows(out, "district/users", "user_id", "status"))["u-s3"] == "deleted"
    assert ("u-s3", "deleted") in rows(out, "sy-2026/enrollments", "user_id", "status")
    assert violations(data_dir) == []


def test_observers_add_guardians_and_links_from_either_side(data_dir):
    snapshot = small_district()
    snapshot["users"].append(user("u-g2", "guardian", "Gone", "Guardian", status="tobedeleted", agentSourcedIds=["u-s2"]))
    out = build(data_dir, MappingSettings(observers=True), snapshot)
    assert {"u-g1", "u-p1", "u-g2"} <= {r["user_id"] for r in out["district/users"]}
    # u-s1 lists u-g1 and u-g1 lists u-s1: one link. u-s1's teacher agent is not a guardian: no link.
    assert rows(out, "district/user_observers", "observer_id", "student_id", "status") == [
        ("u-g1", "u-s1", "active"), ("u-g2", "u-s2", "deleted"), ("u-p1", "u-s2", "active"),
    ]
    assert violations(data_dir) == []


def test_oneroster_1_0_inactive_status_is_deleted_like_tobedeleted_in_any_case(data_dir):
    """The extract keeps `inactive` (OneRoster 1.0, still sent by some providers): the record is no
    longer in use, so Canvas gets it as deleted, never as active."""
    snapshot = small_district()
    snapshot["orgs"].append(org("sch-3", "Closed School", "school", "dist-1", status="inactive"))
    for entity, sourced_id, status in [
        ("academicSessions", "spring-2027", "inactive"), ("classes", "cls-alg-2", "Inactive"),
        ("users", "u-s2", " INACTIVE"), ("enrollments", "e9", "inactive"),
    ]:
        next(r for r in snapshot[entity] if r["sourcedId"] == sourced_id)["status"] = status
    out = build(data_dir, snapshot=snapshot)
    assert ("sch-3", "deleted") in rows(out, "district/accounts", "account_id", "status")
    assert dict(rows(out, "district/terms", "term_id", "status")) == {
        "fall-2026": "active", "spring-2027": "deleted", "sy-2026": "active"}
    assert dict(rows(out, "district/users", "user_id", "status"))["u-s2"] == "deleted"
    assert dict(rows(out, "fall-2026/courses", "course_id", "status"))["cls-alg-2"] == "deleted"
    assert dict(rows(out, "fall-2026/sections", "section_id", "status"))["cls-alg-2"] == "deleted"
    assert rows(out, "fall-2026/enrollments", "section_id", "user_id", "status") == [
        ("cls-alg-1", "u-aide", "active"),
        ("cls-alg-1", "u-s1", "active"),
        ("cls-alg-1", "u-s2", "deleted"),  # the user is
        ("cls-alg-1", "u-t1", "active"),
        ("cls-alg-2", "u-aide", "deleted"),  # the class is
        ("cls-alg-2", "u-s2", "deleted"),
        ("cls-q1", "u-s1", "deleted"),  # the enrollment is
    ]
    assert violations(data_dir) == []


def test_drop_status_is_exposed_for_the_upload():
    assert MappingSettings().enrollment_drop_status == "inactive"
    assert MappingSettings(enrollment_drop_status="deleted_last_completed").enrollment_drop_status == "deleted_last_completed"


def test_account_ids_names_and_root(data_dir):
    mapping = MappingSettings(
        account_id_from="identifier", account_name_template="{name} ({identifier})", root_account_id="sis-root"
    )
    out = build(data_dir, mapping)
    assert rows(out, "district/accounts", "account_id", "parent_account_id", "name") == [
        ("dist-1", "sis-root", "Springfield District ()"),  # no identifier: the sourcedId stands in
        ("EHS", "dist-1", 'Évergreen High, "North" (EHS)'),
        ("OMS", "dist-1", "O'Brien Middle (OMS)"),
    ]
    assert {r["account_id"] for r in out["fall-2026/courses"]} == {"EHS", "OMS"}
    assert violations(data_dir, mapping) == []


def test_term_names_and_types(data_dir):
    out = build(data_dir, MappingSettings(term_types=["term", "semester"], term_name_template="{title} ({schoolYear})"))
    assert rows(out, "district/terms", "term_id", "name") == [
        ("fall-2026", "Fall 2026 (2026)"), ("spring-2027", "Spring 2027 (2027)"),
    ]


def test_term_dates_are_whole_days_in_the_districts_time_zone(data_dir):
    mapping = MappingSettings(time_zone="America/New_York")
    out = build(data_dir, mapping)
    assert rows(out, "district/terms", "term_id", "start_date", "end_date")[:2] == [
        ("fall-2026", "2026-08-20T00:00:00-04:00", "2027-01-15T23:59:59-05:00"),  # summer time, then winter time
        ("spring-2027", "2027-01-16T00:00:00-05:00", "2027-06-10T23:59:59-04:00"),
    ]
    assert violations(data_dir, mapping) == []


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MAPPING_COURSE_MODE", "per_section", "MAPPING_COURSE_MODE must be one of"),
        ("MAPPING_LOGIN_ID_FROM", "phone", "MAPPING_LOGIN_ID_FROM must be one of"),
        ("MAPPING_ROLES", "student", "is not oneroster_role=canvas_role"),
        ("MAPPING_ROLES", "aide=assistant", "the Canvas role must be one of"),
        ("MAPPING_ROLES", "aide=ta,Aide=teacher", "(?i)aide is mapped twice"),
        ("MAPPING_OBSERVERS", "yes", "MAPPING_OBSERVERS must be true or false"),
        ("MAPPING_TERM_NAME_TEMPLATE", "{name}", "{name} is not a placeholder"),
        ("MAPPING_ENROLLMENT_DROP_STATUS", "concluded", "MAPPING_ENROLLMENT_DROP_STATUS must be one of"),
        ("MAPPING_TIME_ZONE", "Eastern", "MAPPING_TIME_ZONE: 'Eastern' is not an IANA time zone"),
    ],
)
def test_bad_settings_name_the_variable(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=message):
        MappingSettings.from_env()


def test_settings_from_env(monkeypatch):
    monkeypatch.setenv("MAPPING_ROLES", "student=student, teacher=teacher ,administrator=designer")
    monkeypatch.setenv("MAPPING_TERM_TYPES", "term, semester")
    monkeypatch.setenv("MAPPING_OBSERVERS", "TRUE")
    mapping = MappingSettings.from_env()
    assert mapping.roles == {"student": "student", "teacher": "teacher", "administrator": "designer"}
    assert mapping.term_types == ["term", "semester"] and mapping.observers is True
    assert MappingSettings.from_env().course_mode == "per_class"


# --- bad input -----------------------------------------------------------------------------------
def test_an_org_cycle_is_a_clear_error(data_dir):
    snapshot = small_district()
    snapshot["orgs"] += [org("loop-a", "A", "school", "loop-b"), org("loop-b", "B", "school", "loop-a")]
    write_snapshot(data_dir, **snapshot)
    mapping = MappingSettings()
    with mapping.open_roster_db(data_dir) as conn, pytest.raises(dg.Failure, match=r"loop-a \(parent loop-b\)"):
        list(transform.build_district(conn, data_dir, mapping))


def test_a_missing_required_entity_names_it(data_dir):
    snapshot = small_district()
    del snapshot["users"]
    write_snapshot(data_dir, **snapshot)
    with pytest.raises(FileNotFoundError, match="materialize oneroster/users"):
        MappingSettings().open_roster_db(data_dir)


def test_duplicate_ids_from_the_sis_fail_the_rules(data_dir):
    snapshot = small_district()
    snapshot["users"].append(user("u-s1", "student", "Twin", "Record"))
    build(data_dir, snapshot=snapshot)
    duplicates = [v for v in violations(data_dir) if v.file == "users.csv"]
    assert [(v.record_id, v.severity) for v in duplicates] == [("u-s1", "error")]
