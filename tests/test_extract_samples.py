"""The public OneRoster samples, served by the demo provider, through the extract and its record checks."""

import json
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from assets.extract import asset_key
from pipeline.datadir import tonight
from pipeline.demo.oneroster_server import DemoOneRosterServer
from pipeline.demo.samples import load_samples
from pipeline.oneroster.schema import DEFAULT_ENTITIES, ENTITIES
from tests.test_extract_assets import materialize, provider_totals

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "samples" / "oneroster-1.1"


def serve(sample: str):
    path = SAMPLES / sample
    if not path.exists():
        pytest.skip(f"{path} is not here (shared samples live beside the project)")
    return DemoOneRosterServer(source=load_samples(path))


def kept(data_dir, entity):
    path = data_dir.entity_path(tonight(), entity)
    return pq.read_table(path).column("sourcedId").to_pylist() if path.exists() else None


def rejects(data_dir, entity):
    return {(r["sourcedId"], r["rule"], r["field"]): r for r in pq.read_table(data_dir.rejects_path(tonight(), entity)).to_pylist()}


def metadata_of(result, entity):
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == asset_key(entity)]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def warnings_of(result, entity):
    return [r.data for r in metadata_of(result, entity)["warnings_by_rule"].records]


def test_moodle_full_set_bad_rows_are_rejected_with_reasons_and_the_share_check_blocks(data_dir, instance, monkeypatch):
    monkeypatch.setenv("ROSTERBRIDGE_MAX_REJECT_SHARE", "0.25")
    with serve("moodle_Test_full_data_set.zip") as server:
        result = materialize(server, data_dir, instance)

    # The 1.0 status `inactive` and the classType `Scheduled` are read leniently: kept, and counted.
    assert rejects(data_dir, "academicSessions") == {}
    sessions = pq.read_table(data_dir.entity_path(tonight(), "academicSessions")).to_pylist()
    assert len(sessions) == 5
    assert next(s["status"] for s in sessions if s["sourcedId"] == "as-grp-222-2345") == "inactive"
    assert warnings_of(result, "academicSessions") == [{"rule": "enum_unknown", "field": "status", "records": 1}]
    # The sample has no courses, so both classes point at nothing.
    classes = rejects(data_dir, "classes")
    assert set(classes) == {("cls-222-123456", "missing_reference", "course"), ("cls-222-123478", "missing_reference", "course")}
    assert json.loads(classes[("cls-222-123456", "missing_reference", "course")]["record"])["classType"] == "scheduled"  # as stored
    users = rejects(data_dir, "users")
    assert set(users) == {("usr-222-66778899", "required", "status"), ("usr-222-66778899", "required", "dateLastModified")}
    assert "Mary" not in str(users) and "Password1-" not in str(users)
    # The rest flows.
    assert kept(data_dir, "orgs") == ["org-sch-222-456"]
    assert kept(data_dir, "users") == ["usr-222-123456", "usr-222-1234561", "usr-222-987654", "usr-222-1234561232", "usr-222-567891"]

    checks = {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations()}
    assert checks["orgs"].passed and checks["academicSessions"].passed
    assert not checks["users"].passed and checks["users"].severity == dg.AssetCheckSeverity.WARN  # 1 of 6
    assert not checks["classes"].passed and checks["classes"].severity == dg.AssetCheckSeverity.ERROR  # 2 of 2
    # classes' blocking check failed, so nothing downstream of classes ran in this run.
    assert kept(data_dir, "enrollments") is None
    assert asset_key("enrollments") not in {e.asset_key for e in result.get_asset_materialization_events()}


def test_microsoft_sample_keeps_its_inactive_session_and_everything_scheduled_in_it(data_dir, instance):
    """academic-session-1 has OneRoster 1.0's status `inactive`. Rejected, it took course-2, both
    classes and both enrollments with it (missing references); now every record flows, and the
    transform deletes the session's term (docs/transform.md, Status)."""
    with serve("ms_provider_demo_seed.db") as server:
        result = materialize(server, data_dir, instance)
        totals = provider_totals(server)
    assert result.success
    for entity in DEFAULT_ENTITIES:
        assert len(kept(data_dir, entity)) == totals[entity] and rejects(data_dir, entity) == {}
    sessions = pq.read_table(data_dir.entity_path(tonight(), "academicSessions")).select(["sourcedId", "status"]).to_pylist()
    assert {"sourcedId": "academic-session-1", "status": "inactive"} in sessions
    assert kept(data_dir, "classes") == ["class-1", "class-2"]
    assert warnings_of(result, "academicSessions") == [{"rule": "enum_unknown", "field": "status", "records": 1}]
    assert all(check.passed for check in result.get_asset_check_evaluations())


@pytest.mark.parametrize("sample", ["moodle_Test_minimal_data_set.zip", "ms_provider_demo_seed.db", "moodle_Test_full_data_set.zip"])
def test_every_sample_record_is_either_kept_or_rejected_with_a_reason(data_dir, instance, monkeypatch, sample):
    monkeypatch.setenv("ROSTERBRIDGE_MAX_REJECT_SHARE", "1")
    with serve(sample) as server:
        result = materialize(server, data_dir, instance)
        totals = provider_totals(server)
    assert result.success
    for entity in DEFAULT_ENTITIES:
        table = pq.read_table(data_dir.entity_path(tonight(), entity))
        assert table.schema == ENTITIES[entity].schema
        reasons = rejects(data_dir, entity)
        assert all(r["message"] for r in reasons.values())
        assert table.num_rows + len({sourced_id for sourced_id, _, _ in reasons}) == totals[entity]
