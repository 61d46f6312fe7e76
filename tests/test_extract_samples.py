"""The public OneRoster samples, served by the demo provider, through the extract and its record checks."""

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


def test_moodle_full_set_bad_rows_are_rejected_with_reasons_and_the_share_check_blocks(data_dir, instance, monkeypatch):
    monkeypatch.setenv("ROSTERBRIDGE_MAX_REJECT_SHARE", "0.25")
    with serve("moodle_Test_full_data_set.zip") as server:
        result = materialize(server, data_dir, instance)

    sessions = rejects(data_dir, "academicSessions")
    assert "'inactive' is not one of active|tobedeleted" in sessions[("as-grp-222-2345", "enum", "status")]["message"]
    classes = rejects(data_dir, "classes")
    assert "'Scheduled'" in classes[("cls-222-123456", "enum", "classType")]["message"]
    # The sample has no courses, so the other class points at nothing.
    assert ("cls-222-123478", "missing_reference", "course") in classes
    users = rejects(data_dir, "users")
    assert set(users) == {("usr-222-66778899", "required", "status"), ("usr-222-66778899", "required", "dateLastModified")}
    assert "Mary" not in str(users) and "Password1-" not in str(users)
    # The rest flows.
    assert kept(data_dir, "orgs") == ["org-sch-222-456"]
    assert len(kept(data_dir, "academicSessions")) == 4
    assert kept(data_dir, "users") == ["usr-222-123456", "usr-222-1234561", "usr-222-987654", "usr-222-1234561232", "usr-222-567891"]

    checks = {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations()}
    assert checks["orgs"].passed
    assert not checks["users"].passed and checks["users"].severity == dg.AssetCheckSeverity.WARN  # 1 of 6
    assert not checks["classes"].passed and checks["classes"].severity == dg.AssetCheckSeverity.ERROR  # 2 of 2
    # classes' blocking check failed, so nothing downstream of classes ran in this run.
    assert kept(data_dir, "enrollments") is None
    assert asset_key("enrollments") not in {e.asset_key for e in result.get_asset_materialization_events()}


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
