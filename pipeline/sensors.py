"""Term discovery, and the sensors that chain the nightly runs: snapshot -> district -> terms."""

import datetime as dt
import json

import dagster as dg

from pipeline.datadir import DataDir
from pipeline.partitions import SCHOOL_TERM, add_new_terms, discover_term_keys, school_term_partitions
from pipeline.resources.mapping import MappingSettings
from pipeline.schedules import (
    CHAIN_TAG, NIGHT_TAG, active_terms, nightly_district_job, nightly_snapshot_job, term_sync_job,
)

# Term discovery reads the snapshot: these files decide which terms exist.
TERM_SOURCES = ("academicSessions", "classes")


def _snapshot_state(data_dir: DataDir) -> str | None:
    """A cursor that changes whenever a newer snapshot of the term sources lands."""
    try:
        paths = data_dir.snapshot_paths(TERM_SOURCES).values()
    except FileNotFoundError:
        return None
    return json.dumps({str(p): p.stat().st_mtime_ns for p in paths}, sort_keys=True)


@dg.sensor(
    name="school_term_discovery",
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds a school_term partition for every term the latest OneRoster snapshot schedules classes in.",
)
def school_term_discovery(context: dg.SensorEvaluationContext, data_dir: DataDir,
                          mapping: MappingSettings) -> dg.SensorResult | dg.SkipReason:
    state = _snapshot_state(data_dir)
    if state is None:
        return dg.SkipReason("no OneRoster snapshot yet: materialize the oneroster/* assets first")
    if state == context.cursor:
        return dg.SkipReason("snapshot unchanged since the last discovery")
    known = set(context.instance.get_dynamic_partitions(SCHOOL_TERM))
    new = [t.key for t in discover_term_keys(data_dir, mapping) if t.key not in known]
    if new:
        context.log.info(f"new school terms: {', '.join(new)}")
    requests = [school_term_partitions.build_add_request(new)] if new else []
    return dg.SensorResult(dynamic_partitions_requests=requests, cursor=state)


def _chained(run: dg.DagsterRun) -> str | None:
    """Why `run` does not continue the nightly chain, or None when it does."""
    if run.tags.get(CHAIN_TAG) != "true":
        return f"run {run.run_id} was not launched by the nightly schedule"
    return None


@dg.run_status_sensor(
    name="nightly_district_upload",
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[nightly_snapshot_job],
    request_job=nightly_district_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When the scheduled snapshot run succeeds, launches the district upload run.",
)
def nightly_district_upload(context: dg.RunStatusSensorContext):
    snapshot_run = context.dagster_run
    skip = _chained(snapshot_run)
    if skip:
        return dg.SkipReason(skip)
    return dg.RunRequest(run_key=f"{snapshot_run.run_id}:district", tags=_chain_tags(snapshot_run))


def _chain_tags(run: dg.DagsterRun) -> dict[str, str]:
    return {name: run.tags[name] for name in (NIGHT_TAG, CHAIN_TAG) if name in run.tags}


@dg.run_status_sensor(
    name="nightly_term_uploads",
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[nightly_district_job],
    request_job=term_sync_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When the scheduled district run succeeds, launches one term_sync run per active term, in order.",
)
def nightly_term_uploads(context: dg.RunStatusSensorContext, data_dir: DataDir, mapping: MappingSettings):
    district_run = context.dagster_run
    skip = _chained(district_run)
    if skip:
        return dg.SkipReason(skip)
    night = district_run.tags.get(NIGHT_TAG) or dt.date.today().isoformat()
    terms = active_terms(discover_term_keys(data_dir, mapping), dt.date.fromisoformat(night))
    if not terms:
        return dg.SkipReason("no active school terms in the snapshot")
    # Partitions must exist before runs for them are launched, so a term new tonight is added now.
    add_new_terms(context.instance, terms)
    return [
        dg.RunRequest(run_key=f"{district_run.run_id}:{term.key}", partition_key=term.key,
                      tags={NIGHT_TAG: night, "rosterbridge/term_order": str(position)})
        for position, term in enumerate(terms, start=1)
    ]


defs = dg.Definitions(sensors=[school_term_discovery, nightly_district_upload, nightly_term_uploads])
