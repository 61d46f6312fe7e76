"""`python -m pipeline.sync`: the nightly sync, once, without the Dagster daemon (`make sync`, `make demo`).

It runs the same jobs the schedule and its sensors do, in this process: `nightly_snapshot` (refresh the
OneRoster snapshot), `nightly_district` (build and upload the district-wide data set), then `term_sync`
for every active term, earliest first. With DAGSTER_HOME set the runs are recorded there and show up in the UI. It prints what Canvas
holds at the end and exits non-zero if any run failed.

    python -m pipeline.sync                                 # the nightly sync
    python -m pipeline.sync --term <key> [--term <key>]    # re-fetch, rebuild and re-upload these terms only
    python -m pipeline.sync --remaster district             # diffing_remaster_data_set for one data set
    python -m pipeline.sync --approve-mass-delete <name>    # let one blocked data set through, this run only
    python -m pipeline.sync --dry-run                       # what tonight would change in Canvas; uploads nothing
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from assets.upload import APPROVE_MASS_DELETE_TAG, DISTRICT_DRY_RUN, REMASTER_TAG, TERM_DRY_RUN
from pipeline.canvas_summary import DEFAULT_COURSE_LIMIT, canvas_holdings, format_holdings
from pipeline.partitions import SCHOOL_TERM, add_new_terms, discover_term_keys
from pipeline.schedules import (
    NIGHT_TAG, active_terms, district_dry_run_job, nightly_district_job, nightly_snapshot_job, term_dry_run_job,
    term_sync_job,
)


# Step-level DEBUG events would bury the outcome on an operator's terminal; the UI keeps them all.
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def _instance() -> dg.DagsterInstance:
    """DAGSTER_HOME's instance when set (runs appear in the UI), else a throwaway one."""
    home = os.environ.get("DAGSTER_HOME")
    if home:
        Path(home).mkdir(parents=True, exist_ok=True)
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def _failure_messages(result: dg.ExecuteInProcessResult) -> Iterator[str]:
    """Each failed step and its root cause (Dagster wraps user errors in an execution error)."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            error = event.step_failure_data.error
            while error.cause is not None:
                error = error.cause
            yield f"{event.step_key}: {error.message.strip()}"


def _run(job_name: str, defs: dg.Definitions, instance: dg.DagsterInstance, *, tags: dict[str, str],
         partition_key: str | None = None, say: Callable[[str], None]) -> bool:
    """Run one job in this process and report it; with a dry-run asset in it, say what it found."""
    job = defs.resolve_job_def(job_name)
    label = job_name if partition_key is None else f"{job_name}[{partition_key}]"
    say(f"--> {label}")
    result = job.execute_in_process(instance=instance, tags=tags, partition_key=partition_key, raise_on_error=False,
                                    run_config=QUIET_CONSOLE)
    if result.success:
        say(f"    ok (run {result.run_id})")
        for line in _dry_run_lines(result):
            say(f"    {line}")
        return True
    say(f"    FAILED (run {result.run_id})")
    for message in _failure_messages(result):
        say(f"    {message}")
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            say(f"    check {evaluation.asset_key.to_user_string()} {evaluation.check_name}: "
                f"{evaluation.description or 'failed'}")
            for line in _table_lines(evaluation.metadata):
                say(f"      {line}")
    return False


def _table_lines(metadata: dict, limit: int = 5) -> Iterator[str]:
    """The first rows of a check's tables (e.g. the violations it found), as `column=value` lines."""
    for value in metadata.values():
        if isinstance(value, dg.TableMetadataValue):
            for record in value.records[:limit]:
                yield "; ".join(f"{column}={cell}" for column, cell in record.data.items() if cell not in ("", None))


def _dry_run_lines(result: dg.ExecuteInProcessResult) -> Iterator[str]:
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key not in (DISTRICT_DRY_RUN, TERM_DRY_RUN):
            continue
        meta = {key: value.value for key, value in materialization.metadata.items()}
        yield (f"dry run {meta['data_set']}: would create {meta['diff/created']}, change {meta['diff/changed']}, "
               f"delete {meta['diff/deleted']} (compared with import {meta['compared_with_import_id'] or 'none'}); "
               f"upload needed: {'yes' if meta['would_upload'] else 'no'}; guard would block: {meta['guard_would_block']}")


@dataclass
class SyncOutcome:
    district_ok: bool
    terms: list[str] = field(default_factory=list)
    failed_terms: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.district_ok and not self.failed_terms


class UnknownTermError(ValueError):
    pass


def _reject_implausible_terms(defs: dg.Definitions, instance: dg.DagsterInstance, terms: Sequence[str]) -> None:
    """Before anything runs (snapshot refresh, district upload): a key that is not a known partition and
    not a term of the current snapshot is a typo. A term new in tonight's snapshot passes only the check
    after the refresh, so this one accepts every key when there is no snapshot yet."""
    known = set(instance.get_dynamic_partitions(SCHOOL_TERM))
    candidates = [key for key in terms if key not in known]
    if not candidates:
        return
    try:
        in_snapshot = {t.key for t in discover_term_keys(defs.resources["data_dir"], defs.resources["mapping"])}
    except FileNotFoundError:  # the first sync: nothing to compare with yet
        return
    unknown = [key for key in candidates if key not in in_snapshot]
    if unknown:
        raise UnknownTermError(f"unknown school_term key(s): {', '.join(unknown)}; known: "
                               f"{', '.join(sorted(known | in_snapshot)) or 'none'} (nothing was run)")


def run_sync(defs: dg.Definitions, instance: dg.DagsterInstance, *, terms: Sequence[str] = (),
             remaster: Sequence[str] = (), approve_mass_delete: Sequence[str] = (), night: dt.date | None = None,
             dry_run: bool = False, say: Callable[[str], None] = print) -> SyncOutcome:
    """The nightly sync once: the snapshot and district runs, then one run per term (all active ones, or
    `terms`). `dry_run` builds everything but runs the dry-run assets instead of the imports."""
    if terms:
        _reject_implausible_terms(defs, instance, terms)
    district_job = district_dry_run_job if dry_run else nightly_district_job
    term_job = term_dry_run_job if dry_run else term_sync_job
    night = night or dt.date.today()
    tags = {NIGHT_TAG: night.isoformat()}
    if remaster:
        tags[REMASTER_TAG] = ",".join(remaster)
    if approve_mass_delete:
        tags[APPROVE_MASS_DELETE_TAG] = ",".join(approve_mass_delete)
    for job in (nightly_snapshot_job, district_job):
        if not _run(job.name, defs, instance, tags=tags, say=say):
            say(f"The {job.name} run failed, so nothing further was uploaded.")
            return SyncOutcome(district_ok=False)
    discovered = discover_term_keys(defs.resources["data_dir"], defs.resources["mapping"])
    add_new_terms(instance, discovered)
    if terms:
        known = set(instance.get_dynamic_partitions(SCHOOL_TERM))
        unknown = [key for key in terms if key not in known]
        if unknown:
            raise UnknownTermError(f"unknown school_term key(s): {', '.join(unknown)}; known: "
                                   f"{', '.join(sorted(known)) or 'none'}")
        keys = list(terms)
    else:
        keys = [t.key for t in active_terms(discovered, night)]
    outcome = SyncOutcome(district_ok=True, terms=keys)
    for key in keys:
        if not _run(term_job.name, defs, instance, tags=tags, partition_key=key, say=say):
            outcome.failed_terms.append(key)
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.sync", description=__doc__.split("\n\n")[0])
    parser.add_argument("--term", action="append", default=[], metavar="KEY",
                        help="only these school_term partition keys (repeatable); default: every active term")
    parser.add_argument("--remaster", action="append", default=[], metavar="DATA_SET",
                        help="send diffing_remaster_data_set for this data set: district or a term key (repeatable)")
    parser.add_argument("--approve-mass-delete", action="append", default=[], metavar="DATA_SET",
                        help="upload this data set although the mass-delete guard blocks it (repeatable)")
    parser.add_argument("--dry-run", action="store_true",
                        help="refresh and build everything, then show what each upload would change; upload nothing")
    parser.add_argument("--summary-course-limit", type=int, default=DEFAULT_COURSE_LIMIT, metavar="N",
                        help="walk sections and enrollments of at most N courses for the final summary (0 = all)")
    args = parser.parse_args(argv)

    from pipeline.definitions import defs  # resources are built from the environment at import

    def say(line: str) -> None:
        print(line, flush=True)

    with _instance() as instance:
        try:
            outcome = run_sync(defs, instance, terms=args.term, remaster=args.remaster,
                               approve_mass_delete=args.approve_mass_delete, dry_run=args.dry_run, say=say)
        except UnknownTermError as exc:
            print(str(exc), file=sys.stderr)
            return 2
    say("")
    say(format_holdings(canvas_holdings(defs.resources["canvas"], args.summary_course_limit)))
    if not outcome.district_ok:
        print("\nSync FAILED: the snapshot or district run failed (see above); no term was uploaded.", file=sys.stderr)
        return 1
    if outcome.failed_terms:
        print(f"\nSync FAILED for {len(outcome.failed_terms)} term(s): {', '.join(outcome.failed_terms)}",
              file=sys.stderr)
        return 1
    if args.dry_run:
        say(f"\nDry run finished: district and {len(outcome.terms)} term(s) compared; nothing was uploaded.")
    else:
        say(f"\nSync finished: district and {len(outcome.terms)} term(s) up to date.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
