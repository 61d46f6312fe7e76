"""The nightly schedule and the sensors that chain its runs, evaluated with Dagster's test contexts."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import dagster as dg
import pytest

from pipeline import settings
from pipeline.partitions import SCHOOL_TERM, TermPartition
from pipeline.resources.mapping import MappingSettings
from pipeline.schedules import CHAIN_TAG, NIGHT_TAG, active_terms, nightly_snapshot_job, nightly_sync
from pipeline.sensors import nightly_district_upload, nightly_term_uploads, school_term_discovery
from tests.test_transform_fixtures import small_district, write_snapshot

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


@dg.op
def noop() -> None:
    pass


@dg.job
def stand_in() -> None:
    noop()


def finished_run(instance: dg.DagsterInstance, tags: dict[str, str]) -> tuple[dg.DagsterRun, dg.DagsterEvent]:
    """A real successful run with `tags` and its RUN_SUCCESS event (what a run-status sensor receives)."""
    result = stand_in.execute_in_process(instance=instance, tags=tags)
    event = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_SUCCESS)
    return instance.get_run_by_id(result.run_id), event


def run_status_context(instance, run, event, **resources) -> dg.RunStatusSensorContext:
    return dg.build_run_status_sensor_context(sensor_name="test", dagster_event=event, dagster_instance=instance,
                                              dagster_run=run, resources=resources or None)


def test_schedule_defaults_and_run_request():
    assert nightly_sync.cron_schedule == settings.BY_NAME["ROSTERBRIDGE_SCHEDULE_CRON"].default == "0 2 * * *"
    assert nightly_sync.execution_timezone == "America/New_York"
    assert nightly_sync.job_name == nightly_snapshot_job.name
    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 11, 26, 2, 0, tzinfo=NEW_YORK))
    request = nightly_sync.evaluate_tick(context).run_requests[0]
    assert request.run_key == "nightly:2026-11-26"
    assert request.tags[NIGHT_TAG] == "2026-11-26" and request.tags[CHAIN_TAG] == "true"


def test_snapshot_success_launches_the_district_run_only_for_scheduled_runs(instance):
    run, event = finished_run(instance, {NIGHT_TAG: "2026-11-26", CHAIN_TAG: "true"})
    request = nightly_district_upload(run_status_context(instance, run, event))
    assert request.run_key == f"{run.run_id}:district"
    assert request.tags == {NIGHT_TAG: "2026-11-26", CHAIN_TAG: "true"}
    manual, manual_event = finished_run(instance, {})
    assert isinstance(nightly_district_upload(run_status_context(instance, manual, manual_event)), dg.SkipReason)


def test_district_success_launches_one_run_per_active_term_in_start_order(instance, data_dir):
    write_snapshot(data_dir, **small_district())
    run, event = finished_run(instance, {NIGHT_TAG: "2026-11-26", CHAIN_TAG: "true"})
    requests = nightly_term_uploads(run_status_context(instance, run, event, data_dir=data_dir,
                                                       mapping=MappingSettings()))
    # Earliest start first (the year and the fall semester start together: sourcedId breaks the tie).
    assert [r.partition_key for r in requests] == ["fall-2026", "sy-2026", "spring-2027"]
    assert [r.tags["rosterbridge/term_order"] for r in requests] == ["1", "2", "3"]
    assert {r.run_key for r in requests} == {f"{run.run_id}:{k}" for k in ("sy-2026", "fall-2026", "spring-2027")}
    assert all(r.tags[NIGHT_TAG] == "2026-11-26" for r in requests)
    # Partitions exist before the runs for them are launched.
    assert set(instance.get_dynamic_partitions(SCHOOL_TERM)) >= {"sy-2026", "fall-2026", "spring-2027"}

    # After the fall semester ends only the year and spring remain active.
    late, late_event = finished_run(instance, {NIGHT_TAG: "2027-01-20", CHAIN_TAG: "true"})
    later = nightly_term_uploads(run_status_context(instance, late, late_event, data_dir=data_dir,
                                                    mapping=MappingSettings()))
    assert [r.partition_key for r in later] == ["sy-2026", "spring-2027"]


def test_term_discovery_adds_partitions_once_per_snapshot(instance, data_dir):
    resources = {"data_dir": data_dir, "mapping": MappingSettings()}
    empty = school_term_discovery(dg.build_sensor_context(instance=instance, resources=resources))
    assert isinstance(empty, dg.SkipReason) and "no OneRoster snapshot" in empty.skip_message

    write_snapshot(data_dir, **small_district())
    result = school_term_discovery(dg.build_sensor_context(instance=instance, resources=resources))
    assert [r.partition_keys for r in result.dynamic_partitions_requests] == [["fall-2026", "sy-2026", "spring-2027"]]
    again = school_term_discovery(dg.build_sensor_context(instance=instance, cursor=result.cursor, resources=resources))
    assert isinstance(again, dg.SkipReason)

    instance.add_dynamic_partitions(SCHOOL_TERM, ["sy-2026", "fall-2026", "spring-2027"])
    district = small_district()
    district["academicSessions"].append(
        {"sourcedId": "summer-2027", "status": "active", "title": "Summer 2027", "type": "term",
         "startDate": dt.date(2027, 6, 20), "endDate": dt.date(2027, 8, 1)})
    district["classes"][0]["termSourcedIds"] = ["summer-2027"]
    write_snapshot(data_dir, "2026-09-16", **district)
    newer = school_term_discovery(dg.build_sensor_context(instance=instance, cursor=result.cursor, resources=resources))
    assert [r.partition_keys for r in newer.dynamic_partitions_requests] == [["summer-2027"]]


def term(key: str, start: str | None, end: str | None, deleted: bool = False) -> TermPartition:
    day = lambda value: dt.date.fromisoformat(value) if value else None  # noqa: E731
    return TermPartition(key, key, key, "term", day(start), day(end), deleted, 1)


@pytest.mark.parametrize("night, expected", [
    ("2026-08-01", ["year", "fall", "spring", "open"]),
    ("2027-01-16", ["year", "spring", "open"]),
    ("2027-07-01", ["open"]),
])
def test_active_terms_skip_ended_and_deleted_terms_but_keep_future_ones(night, expected):
    terms = [term("year", "2026-08-20", "2027-06-10"), term("fall", "2026-08-20", "2027-01-15"),
             term("spring", "2027-01-16", "2027-06-10"), term("gone", "2026-08-20", "2027-06-10", deleted=True),
             term("open", None, None)]
    assert [t.key for t in active_terms(terms, dt.date.fromisoformat(night))] == expected
