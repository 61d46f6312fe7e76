"""The extract assets end to end: dg.materialize against the demo OneRoster provider over real HTTP."""

import datetime as dt

import dagster as dg
import pyarrow.parquet as pq
import pytest

from assets import extract
from assets.extract import asset_key
from pipeline.datadir import DataDir, tonight
from pipeline.demo.oneroster_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DemoOneRosterServer, FaultPlan
from pipeline.demo.samples import SampleSource
from pipeline.oneroster.schema import DEFAULT_ENTITIES, ENTITIES
from pipeline.resources.oneroster import OneRosterClient

NIGHTLY = [a for a in extract.extract_assets if a.key != asset_key("demographics")]
DEMOGRAPHICS = next(a for a in extract.extract_assets if a.key == asset_key("demographics"))


def client_for(server, **settings) -> OneRosterClient:
    return OneRosterClient(
        base_url=server.base_url,
        token_url=server.token_url,
        client_id=DEMO_CLIENT_ID,
        client_secret=DEMO_CLIENT_SECRET,
        **settings,
    )


def materialize(server, data_dir, instance, assets=NIGHTLY, **settings):
    return dg.materialize(
        [*assets, *extract.record_checks],
        selection=dg.AssetSelection.assets(*assets),
        instance=instance,
        resources={"oneroster": client_for(server, **settings), "data_dir": data_dir},
        raise_on_error=False,
    )


def provider_totals(server, entities=DEFAULT_ENTITIES) -> dict[str, int]:
    with client_for(server).open() as session:
        return {
            name: session.fetch_page(
                ENTITIES[name].path, envelope_keys=ENTITIES[name].envelope_keys, params=None, offset=0, limit=1
            ).total
            for name in entities
        }


def metadata_of(result, entity):
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == asset_key(entity)]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def snapshot_tables(data_dir, entities=DEFAULT_ENTITIES):
    return {name: pq.read_table(data_dir.entity_path(tonight(), name)) for name in entities}


@pytest.fixture(scope="module")
def district():
    with DemoOneRosterServer(students=300, seed=1) as server:
        yield server


def test_the_nightly_extract_writes_every_entity_of_the_provider(district, data_dir, instance):
    result = materialize(district, data_dir, instance, page_size=100, max_concurrency=4)
    assert result.success
    totals = provider_totals(district)
    tables = snapshot_tables(data_dir)
    for name in DEFAULT_ENTITIES:
        metadata = metadata_of(result, name)
        assert tables[name].schema == ENTITIES[name].schema
        assert tables[name].num_rows == metadata["dagster/row_count"] == totals[name] - metadata["rejected_records"]
        assert metadata["pages_fetched"] >= totals[name] // 100
        assert metadata["requests"] >= metadata["pages_fetched"]
        assert metadata["path"] == str(data_dir.entity_path(tonight(), name))
    assert sum(metadata_of(result, n)["rejected_records"] for n in DEFAULT_ENTITIES) == 0
    assert all(check.passed for check in result.get_asset_check_evaluations())

    # Names that break naive CSV/SQL/JSON handling come through byte for byte, and stay out of metadata.
    users = tables["users"].select(["givenName", "familyName"]).to_pylist()
    for given, family in [("Zoë", "O'Brien"), ("Marcus", "García, Jr."), ('Katherine "Kate"', "Núñez")]:
        assert {"givenName": given, "familyName": family} in users
    every_metadata = str([e.materialization.metadata for e in result.get_asset_materialization_events()])
    assert "O'Brien" not in every_metadata and "García" not in every_metadata

    # References are flattened and resolve: every enrollment points at an extracted user and class.
    user_ids = set(tables["users"].column("sourcedId").to_pylist())
    class_ids = set(tables["classes"].column("sourcedId").to_pylist())
    enrollments = tables["enrollments"].select(["userSourcedId", "classSourcedId"]).to_pylist()
    assert all(e["userSourcedId"] in user_ids and e["classSourcedId"] in class_ids for e in enrollments)


def test_demographics_are_off_unless_enabled(district, data_dir, instance, monkeypatch):
    assert asset_key("demographics") not in extract.nightly_extract_selection().resolve(extract.extract_assets)
    result = materialize(district, data_dir, instance, assets=[DEMOGRAPHICS])
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "ONEROSTER_EXTRACT_DEMOGRAPHICS=true" in str(failure.step_failure_data.error)
    assert not data_dir.entity_path(tonight(), "demographics").exists()

    monkeypatch.setenv("ONEROSTER_EXTRACT_DEMOGRAPHICS", "true")
    assert asset_key("demographics") in extract.nightly_extract_selection().resolve(extract.extract_assets)
    result = materialize(district, data_dir, instance, assets=[DEMOGRAPHICS])
    assert result.success
    table = pq.read_table(data_dir.entity_path(tonight(), "demographics"))
    assert table.schema == ENTITIES["demographics"].schema
    assert table.num_rows == provider_totals(district, ("demographics",))["demographics"]


def test_an_entity_whose_upstream_is_not_extracted_tonight_fails_naming_it(district, data_dir, instance):
    result = materialize(district, data_dir, instance, assets=[a for a in NIGHTLY if a.key == asset_key("users")])
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "materialize oneroster/orgs first" in str(failure.step_failure_data.error)


def test_injected_faults_give_the_same_snapshot_as_a_fault_free_run(district, tmp_path, instance):
    clean_dir, faulty_dir = DataDir(root=str(tmp_path / "clean")), DataDir(root=str(tmp_path / "faulty"))
    assert materialize(district, clean_dir, instance, page_size=100).success
    faults = FaultPlan(rate=0.1, statuses=(429, 503, 503, 502), retry_after_seconds=0, first_n=2)
    with DemoOneRosterServer(students=300, seed=1, faults=faults) as flaky:
        result = materialize(flaky, faulty_dir, instance, page_size=100, max_retries=8)
        assert result.success
        assert flaky.stats.faults_injected >= 6
    assert sum(metadata_of(result, n)["retries"] for n in DEFAULT_ENTITIES) >= flaky.stats.faults_injected
    assert snapshot_tables(faulty_dir) == snapshot_tables(clean_dir)


def small_district(**changes):
    """A hand-made roster for the demo provider: one school, one class, a teacher and two students.
    `changes` replaces fields of records by sourcedId ({sourcedId: {field: value}})."""
    def guid(kind, sourced_id):
        return {"href": f"/{kind}s/{sourced_id}", "sourcedId": sourced_id, "type": kind}

    def base(sourced_id, **fields):
        return {"sourcedId": sourced_id, "status": "active", "dateLastModified": "2026-11-20T02:00:00Z", **fields}

    def user(sourced_id, role):
        return base(sourced_id, username=sourced_id, enabledUser="true", givenName="Ann", familyName="Lee", role=role, orgs=[guid("org", "sch")])

    def enrollment(sourced_id, user_id, role):
        return base(sourced_id, user=guid("user", user_id), school=guid("org", "sch"), role=role, **{"class": guid("class", "cls")})

    records = {
        "orgs": [base("sch", name="School", type="school")],
        "academicSessions": [base("trm", title="Fall", type="term", startDate="2026-08-01", endDate="2026-12-20", schoolYear="2027")],
        "courses": [base("crs", title="Maths", courseCode="M1", org=guid("org", "sch"))],
        "classes": [base("cls", title="Maths 1", classType="scheduled", course=guid("course", "crs"), school=guid("org", "sch"), terms=[guid("academicSession", "trm")])],
        "users": [user("tch", "teacher"), user("stu1", "student"), user("stu2", "student")],
        "enrollments": [enrollment("e-tch", "tch", "teacher"), enrollment("e-stu1", "stu1", "student"), enrollment("e-stu2", "stu2", "student")],
    }
    for rows in records.values():
        for record in rows:
            record.update(changes.get(record["sourcedId"], {}))
    return SampleSource(records, fingerprint=f"small_district({changes!r})")


def test_a_student_rejected_tonight_stays_in_tonights_snapshot_with_their_enrollments(data_dir, instance, monkeypatch):
    """Canvas's diffing deletes whoever is missing from tonight's files: a record that breaks a rule
    tonight, but was fine last night, is written at last night's version instead of left out."""
    monkeypatch.setenv("ROSTERBRIDGE_MAX_REJECT_SHARE", "1")  # one class of one: the share check would block
    with DemoOneRosterServer(source=small_district()) as server:
        assert materialize(server, data_dir, instance).success
    yesterday = (dt.datetime.strptime(tonight(), "%Y-%m-%d") - dt.timedelta(days=1)).strftime("%Y-%m-%d")
    data_dir.snapshot_dir(tonight()).rename(data_dir.snapshot_dir(yesterday))

    # Tonight the SIS sends stu1 with a broken enabledUser, and the class with a status nobody knows.
    broken = small_district(stu1={"enabledUser": "yes", "familyName": "Lee-Smith"}, cls={"status": "archived"})
    with DemoOneRosterServer(source=broken) as server:
        result = materialize(server, data_dir, instance)
    assert result.success
    tables = snapshot_tables(data_dir)
    assert sorted(tables["users"].column("sourcedId").to_pylist()) == ["stu1", "stu2", "tch"]
    stu1 = next(u for u in tables["users"].to_pylist() if u["sourcedId"] == "stu1")
    assert (stu1["familyName"], stu1["enabledUser"]) == ("Lee", True)  # last night's version
    assert tables["classes"].column("sourcedId").to_pylist() == ["cls"]
    assert sorted(tables["enrollments"].column("sourcedId").to_pylist()) == ["e-stu1", "e-stu2", "e-tch"]

    users, classes = metadata_of(result, "users"), metadata_of(result, "classes")
    assert (users["rejected_records"], users["carried_forward"], users["carried_forward_from"]) == (1, 1, yesterday)
    assert (classes["rejected_records"], classes["carried_forward"]) == (1, 1)
    assert metadata_of(result, "enrollments")["rejected_records"] == 0
    rejects = pq.read_table(data_dir.rejects_path(tonight(), "users")).to_pylist()
    assert [(r["sourcedId"], r["rule"], r["field"]) for r in rejects] == [("stu1", "boolean_format", "enabledUser")]

    checks = {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations()}
    users_check = checks["users"]
    assert not users_check.passed and users_check.severity == dg.AssetCheckSeverity.WARN
    assert users_check.metadata["carried_forward"].value == 1
    assert users_check.metadata["rejected_records"].value == 1 and users_check.metadata["rows"].value == 3
    assert users_check.metadata["reject_share"].value == round(1 / 3, 6)  # of the 3 records received
    assert "1 of them kept at their previous snapshot version" in users_check.description


def test_users_without_a_username_are_kept_and_counted_as_a_warning(data_dir, instance):
    """With MAPPING_LOGIN_ID_FROM=email or identifier a username is not needed; rejected, such a user
    would be missing from the snapshot and deleted in Canvas."""
    with DemoOneRosterServer(source=small_district(tch={"username": None}, stu2={"username": ""})) as server:
        result = materialize(server, data_dir, instance)
    assert result.success
    assert sorted(snapshot_tables(data_dir, ("users",))["users"].column("sourcedId").to_pylist()) == ["stu1", "stu2", "tch"]
    users = metadata_of(result, "users")
    assert users["rejected_records"] == 0
    assert [r.data for r in users["warnings_by_rule"].records] == [{"rule": "required", "field": "username", "records": 2}]
    assert metadata_of(result, "enrollments")["rejected_records"] == 0
    [check] = [e for e in result.get_asset_check_evaluations() if e.asset_key == asset_key("users")]
    assert check.passed
    assert [r.data for r in check.metadata["warnings_by_rule"].records] == [{"rule": "required", "field": "username", "records": 2}]


def test_an_aide_enrollment_reaches_the_snapshot(data_dir, instance):
    """docs/transform.md: a 1.2-style `aide` enrollment role maps directly (MAPPING_ROLES aide=ta)."""
    with DemoOneRosterServer(source=small_district(**{"e-tch": {"role": "aide"}})) as server:
        result = materialize(server, data_dir, instance)
    assert result.success
    enrollments = snapshot_tables(data_dir, ("enrollments",))["enrollments"].select(["sourcedId", "role"]).to_pylist()
    assert {"sourcedId": "e-tch", "role": "aide"} in enrollments
    assert metadata_of(result, "enrollments")["rejected_records"] == 0


def test_enum_values_in_another_case_or_unknown_are_kept_and_counted_as_warnings(data_dir, instance):
    """Providers are lenient, so the extract reads leniently: a record is not lost (and deleted in
    Canvas) for `Student`, a 1.0 `inactive` status or a classType the spec does not list."""
    changes = {"stu1": {"role": "Student"}, "tch": {"role": " teacher"}, "e-stu2": {"role": "ta"},
               "cls": {"classType": "virtual"}, "trm": {"status": "inactive"}}
    with DemoOneRosterServer(source=small_district(**changes)) as server:
        result = materialize(server, data_dir, instance)
    assert result.success
    tables = snapshot_tables(data_dir)
    assert sorted(tables["users"].select(["sourcedId", "role"]).to_pylist(), key=lambda u: u["sourcedId"]) == [
        {"sourcedId": "stu1", "role": "student"}, {"sourcedId": "stu2", "role": "student"}, {"sourcedId": "tch", "role": "teacher"}]
    assert tables["academicSessions"].column("status").to_pylist() == ["inactive"]
    assert tables["classes"].column("classType").to_pylist() == ["virtual"]
    assert tables["enrollments"].num_rows == 3
    assert all(metadata_of(result, name)["rejected_records"] == 0 for name in DEFAULT_ENTITIES)
    warnings = {name: [r.data for r in metadata_of(result, name)["warnings_by_rule"].records] for name in DEFAULT_ENTITIES}
    assert warnings["users"] == [{"rule": "enum_normalised", "field": "role", "records": 2}]
    assert warnings["enrollments"] == [{"rule": "enum_unknown", "field": "role", "records": 1}]
    assert warnings["classes"] == [{"rule": "enum_unknown", "field": "classType", "records": 1}]
    assert warnings["academicSessions"] == [{"rule": "enum_unknown", "field": "status", "records": 1}]
    assert warnings["orgs"] == warnings["courses"] == []
    assert all(check.passed for check in result.get_asset_check_evaluations())
