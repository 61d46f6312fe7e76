"""The nightly sync: a snapshot run, then a district run, then one run per active term.

The schedule launches `nightly_snapshot` (refresh the OneRoster snapshot). When it succeeds, the
`nightly_district_upload` sensor (pipeline/sensors.py) launches `nightly_district` (build and upload
the district-wide data set); when that succeeds, `nightly_term_uploads` launches one `term_sync` run
per active term, earliest start first, each building and uploading its term. Chaining runs this way
guarantees that no CSV is built from a half-refreshed snapshot and that a term import starts only
after the district import of the same night has finished; each term is its own run and partition.
"""

import datetime as dt

import dagster as dg

from assets.extract import nightly_extract_selection
from assets.upload import DISTRICT_CSVS, DISTRICT_DRY_RUN, DISTRICT_IMPORT, TERM_CSVS, TERM_DRY_RUN, TERM_IMPORT
from pipeline import settings
from pipeline.partitions import TermPartition

NIGHT_TAG = "rosterbridge/night"
# Only runs the schedule started (and the runs they chain) continue the chain; `python -m pipeline.sync` runs its own.
CHAIN_TAG = "rosterbridge/nightly_chain"

nightly_snapshot_job = dg.define_asset_job(
    "nightly_snapshot",
    selection=nightly_extract_selection(),
    description="Refresh the OneRoster snapshot (every nightly entity).",
)

def _data_set_job(name: str, keys: list[dg.AssetKey], description: str):
    return dg.define_asset_job(name, selection=dg.AssetSelection.assets(*keys), description=description)


nightly_district_job = _data_set_job(
    "nightly_district", [*DISTRICT_CSVS, DISTRICT_IMPORT],
    "Build the district-wide Canvas CSVs from the latest snapshot and upload them.")
term_sync_job = _data_set_job(
    "term_sync", [*TERM_CSVS, TERM_IMPORT], "Build one term's Canvas CSVs from the latest snapshot and upload them.")
# The same builds with the dry-run assets in place of the imports (`python -m pipeline.sync --dry-run`).
district_dry_run_job = _data_set_job(
    "district_dry_run", [*DISTRICT_CSVS, DISTRICT_DRY_RUN],
    "Build the district-wide CSVs and show what their upload would change in Canvas (uploads nothing).")
term_dry_run_job = _data_set_job(
    "term_dry_run", [*TERM_CSVS, TERM_DRY_RUN],
    "Build one term's CSVs and show what their upload would change in Canvas (uploads nothing).")


def is_active(term: TermPartition, night: dt.date) -> bool:
    """Terms the nightly sync uploads: not deleted in the SIS and not over yet (future terms included,
    so teachers find their courses before the first day). Ended terms can still be backfilled."""
    return not term.deleted and (term.end_date is None or term.end_date >= night)


def active_terms(terms: list[TermPartition], night: dt.date) -> list[TermPartition]:
    """Active terms in upload order: earliest start first (discovery already sorts them)."""
    return [t for t in terms if is_active(t, night)]


@dg.schedule(
    name="nightly_sync",
    job=nightly_snapshot_job,
    cron_schedule=settings.get("ROSTERBRIDGE_SCHEDULE_CRON"),
    execution_timezone=settings.get("ROSTERBRIDGE_SCHEDULE_TIMEZONE"),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly: the snapshot run now; sensors chain the district run and the term runs after it.",
)
def nightly_sync(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    night = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return dg.RunRequest(run_key=f"nightly:{night}", tags={NIGHT_TAG: night, CHAIN_TAG: "true"})


defs = dg.Definitions(
    jobs=[nightly_snapshot_job, nightly_district_job, term_sync_job, district_dry_run_job, term_dry_run_job],
    schedules=[nightly_sync],
)
