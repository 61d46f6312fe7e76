"""The Canvas CSV assets in Dagster: metadata, partitions, blocking checks, and what a term run touches."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from assets import transform
from pipeline.canvas_data_set import DISTRICT
from pipeline.partitions import SCHOOL_TERM
from pipeline.resources.mapping import MappingSettings
from tests.test_transform_fixtures import small_district, user, write_snapshot

ASSETS = [transform.canvas_district_csvs, transform.canvas_term_csvs]
CHECKS = [transform.canvas_district_import_rules, transform.canvas_term_import_rules]
PERSONAL_VALUES = ["Zoë", "O'Brien", "Évora", "zoë.o'brien", "@example.org", "Smith, Jr.", "Principal"]


def resources(data_dir, mapping: MappingSettings | None = None) -> dict:
    return {"data_dir": data_dir, "mapping": mapping or MappingSettings()}


def materialize_district(data_dir, instance, mapping=None, raise_on_error=True) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        ASSETS + CHECKS, selection=dg.AssetSelection.assets(transform.canvas_district_csvs),
        instance=instance, resources=resources(data_dir, mapping), raise_on_error=raise_on_error,
    )


def materialize_term(data_dir, instance, key, mapping=None, raise_on_error=True) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        ASSETS + CHECKS, selection=dg.AssetSelection.assets(transform.canvas_term_csvs),
        partition_key=key, instance=instance, resources=resources(data_dir, mapping), raise_on_error=raise_on_error,
    )


def materializations(result) -> dict[str, dict]:
    return {
        e.asset_key.to_user_string(): e.metadata
        for e in (ev.event_specific_data.materialization for ev in result.get_asset_materialization_events())
    }


def test_district_run_writes_files_with_metadata_and_registers_terms(data_dir, instance):
    write_snapshot(data_dir, **small_district())
    result = materialize_district(data_dir, instance)
    assert result.success
    meta = materializations(result)
    assert set(meta) == {"canvas/accounts_csv", "canvas/terms_csv", "canvas/users_csv", "canvas/user_observers_csv"}
    users = meta["canvas/users_csv"]
    assert users["dagster/row_count"].value == 8
    assert [c.name for c in users["dagster/column_schema"].schema.columns] == [
        "user_id", "login_id", "authentication_provider_id", "first_name", "last_name", "email", "status"]
    lineage = users["dagster/column_lineage"].lineage.deps_by_column
    assert lineage["login_id"] == [dg.TableColumnDep(asset_key=dg.AssetKey(["oneroster", "users"]), column_name="username")]
    assert users["path"].value == str(data_dir.canvas_dir(DISTRICT) / "users.csv")
    # names, logins, e-mails and short user ids hidden
    assert "***" in users["preview"].value and "u-admin" not in users["preview"].value
    assert sorted(instance.get_dynamic_partitions(SCHOOL_TERM)) == ["fall-2026", "spring-2027", "sy-2026"]
    assert meta["canvas/terms_csv"]["school_term_partitions_added"].value == 3
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 4 and all(c.passed for c in checks)


def test_no_personal_data_in_metadata(data_dir, instance):
    write_snapshot(data_dir, **small_district())
    district = materialize_district(data_dir, instance, MappingSettings(observers=True))
    term = materialize_term(data_dir, instance, "fall-2026", MappingSettings(observers=True))
    text = json.dumps(
        [{k: str(v) for k, v in m.items()} for r in (district, term) for m in materializations(r).values()],
        ensure_ascii=False,
    )
    leaked = [value for value in PERSONAL_VALUES if value in text]
    assert leaked == []


def test_term_run_touches_only_that_terms_files(data_dir, instance):
    write_snapshot(data_dir, **small_district())
    assert materialize_district(data_dir, instance).success
    assert materialize_term(data_dir, instance, "spring-2027").success
    before = {p: p.stat().st_mtime_ns for p in (data_dir.path / "canvas").rglob("*.csv")}

    result = materialize_term(data_dir, instance, "fall-2026")
    assert result.success
    after = {p: p.stat().st_mtime_ns for p in (data_dir.path / "canvas").rglob("*.csv")}
    fall = data_dir.canvas_dir("fall-2026")
    assert sorted(p.name for p in after if p.parent == fall) == ["courses.csv", "enrollments.csv", "sections.csv"]
    assert {p: t for p, t in after.items() if p.parent != fall} == before
    meta = materializations(result)
    assert meta["canvas/enrollments_csv"]["dagster/row_count"].value == 7
    assert meta["canvas/enrollments_csv"]["enrollments_skipped"].value == 2
    assert meta["canvas/courses_csv"]["term_sourced_id"].value == "fall-2026"
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 3 and all(c.passed for c in checks)


def test_unknown_term_key_fails_fast(data_dir, instance):
    write_snapshot(data_dir, **small_district())
    with pytest.raises(dg.DagsterUnknownPartitionError):
        materialize_term(data_dir, instance, "fall-2026")  # not discovered yet


def test_blocking_check_names_file_row_id_and_message(data_dir, instance):
    snapshot = small_district()
    snapshot["users"].append(user("u-s1", "student", "Twin", "Record"))
    write_snapshot(data_dir, **snapshot)
    result = materialize_district(data_dir, instance, raise_on_error=False)
    assert not result.success  # the blocking check fails its step, so nothing downstream runs
    (users_check,) = [c for c in result.get_asset_check_evaluations() if c.asset_key == transform.USERS.key]
    assert not users_check.passed and users_check.severity == dg.AssetCheckSeverity.ERROR
    assert users_check.metadata["errors"].value == 1
    (record,) = users_check.metadata["violations"].records
    assert (record.data["file"], record.data["row"], record.data["id"]) == ("users.csv", 5, "u-s1")
    assert "Duplicate" in record.data["message"]
    others = [c for c in result.get_asset_check_evaluations() if c.asset_key != transform.USERS.key]
    assert all(c.passed for c in others)


def test_failed_district_check_blocks_the_term_files_in_the_same_run(data_dir, instance):
    snapshot = small_district()
    snapshot["users"].append(user("u-s1", "student", "Twin", "Record"))
    write_snapshot(data_dir, **snapshot)
    instance.add_dynamic_partitions(SCHOOL_TERM, ["fall-2026"])
    job = dg.define_asset_job("sync_term", selection=dg.AssetSelection.all(), partitions_def=None)
    defs = dg.Definitions(assets=ASSETS, asset_checks=CHECKS, jobs=[job], resources=resources(data_dir))
    result = defs.resolve_job_def("sync_term").execute_in_process(
        instance=instance, partition_key="fall-2026", raise_on_error=False
    )
    produced = set(materializations(result))
    assert "canvas/users_csv" in produced
    assert not produced & {"canvas/courses_csv", "canvas/sections_csv", "canvas/enrollments_csv"}


def test_a_term_that_left_the_snapshot_keeps_its_files(data_dir, instance):
    write_snapshot(data_dir, **small_district())
    assert materialize_district(data_dir, instance).success
    assert materialize_term(data_dir, instance, "spring-2027").success
    spring = data_dir.canvas_dir("spring-2027") / "courses.csv"
    before = spring.read_bytes()
    later = small_district()
    later["academicSessions"] = [s for s in later["academicSessions"] if s["sourcedId"] != "spring-2027"]
    later["classes"] = [c for c in later["classes"] if c["sourcedId"] != "cls-sp"]
    write_snapshot(data_dir, "2026-09-16", **later)
    result = materialize_term(data_dir, instance, "spring-2027", raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "is not a term of the latest snapshot" in failure.event_specific_data.error.message
    assert spring.read_bytes() == before


def test_every_csv_asset_depends_on_every_entity_its_duckdb_session_reads():
    # A combined run (snapshot + CSVs) must not start a CSV step before all of the snapshot exists.
    from assets.transform import canvas_district_csvs, canvas_term_csvs
    from pipeline.resources.mapping import SOURCE_VIEWS

    read = {dg.AssetKey(["oneroster", entity]) for entity in SOURCE_VIEWS}
    for assets_def in (canvas_district_csvs, canvas_term_csvs):
        for key in assets_def.keys:
            assert read <= assets_def.asset_deps[key], key
