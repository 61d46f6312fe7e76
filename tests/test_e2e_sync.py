"""The nightly sync end to end over real HTTP: demo OneRoster provider -> snapshot -> CSVs -> demo Canvas.

Every test runs `pipeline.sync.run_sync` (what `python -m pipeline.sync` runs) with the project's own
jobs against fresh demo servers, then changes the roster and syncs again.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._serdes import serialize_value

from assets import extract, transform, upload
from pipeline import schedules
from pipeline.canvas_data_set import DataSet
from pipeline.canvas_summary import format_holdings, read_holdings
from pipeline.datadir import DataDir
from pipeline.demo.canvas_server import DEMO_CANVAS_TOKEN, CanvasFaultPlan, DemoCanvasServer
from pipeline.demo.oneroster_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DemoOneRosterServer
from pipeline.demo.source import Selection
from pipeline.resources.canvas import CanvasClient, CanvasUploadPolicy
from pipeline.resources.mapping import MappingSettings
from pipeline.resources.oneroster import OneRosterClient
from pipeline.sync import SyncOutcome, run_sync

STUDENTS = 60
NIGHT = dt.date(2026, 11, 26)  # inside the demo district's 2026-2027 school year


@dataclass
class Stack:
    roster: DemoOneRosterServer
    canvas: DemoCanvasServer
    data_dir: DataDir
    defs: dg.Definitions
    instance: dg.DagsterInstance
    log: list[str]

    def sync(self, **options) -> SyncOutcome:
        return run_sync(self.defs, self.instance, night=NIGHT, say=self.log.append, **options)

    def imports(self) -> list[dict]:
        return self.canvas.state.imports()

    def csv_rows(self, data_set: str, file: str) -> list[dict[str, str]]:
        with DataSet.for_name(self.data_dir, data_set).csv_path(file).open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    def terms(self) -> list[str]:
        return sorted(p.name.removeprefix("term=") for p in (Path(self.data_dir.path) / "canvas").glob("term=*"))


@contextlib.contextmanager
def stack(tmp_path, *, faults: CanvasFaultPlan | None = None) -> Iterator[Stack]:
    data_dir = DataDir(root=str(tmp_path / "data"))
    with DemoOneRosterServer(students=STUDENTS) as roster, DemoCanvasServer(polls_to_finish=2, faults=faults) as canvas, \
            dg.instance_for_test() as instance:
        resources = {
            "data_dir": data_dir,
            "oneroster": OneRosterClient(base_url=roster.base_url, token_url=roster.token_url,
                                         client_id=DEMO_CLIENT_ID, client_secret=DEMO_CLIENT_SECRET),
            "mapping": MappingSettings(),
            "canvas": CanvasClient(base_url=canvas.base_url, access_token=DEMO_CANVAS_TOKEN,
                                   backoff_base_seconds=0.01, backoff_max_seconds=0.05,
                                   poll_interval_seconds=0.01, poll_max_interval_seconds=0.05),
            "canvas_upload": CanvasUploadPolicy(),
        }
        defs = dg.Definitions.merge(extract.defs, transform.defs, upload.defs, schedules.defs,
                                    dg.Definitions(resources=resources))
        yield Stack(roster, canvas, data_dir, defs, instance, [])


def first_sync(s: Stack) -> SyncOutcome:
    outcome = s.sync()
    assert outcome.ok, "\n".join(s.log)
    assert outcome.terms, "the demo district has active terms"
    return outcome


def test_first_sync_creates_everything_and_an_identical_sync_uploads_nothing(tmp_path):
    with stack(tmp_path) as s:
        outcome = first_sync(s)
        state = s.canvas.state
        users = s.csv_rows("district", "users")
        assert len(state.users()) == len(users)
        assert {u["sis_id"] for u in state.users()} == {u["user_id"] for u in users}
        assert len(state.accounts()) == len(s.csv_rows("district", "accounts"))
        for term in s.terms():
            courses = {r["course_id"] for r in s.csv_rows(term, "courses")}
            assert courses <= {c["sis_id"] for c in state.courses()}
        enrollments = sum(len(s.csv_rows(term, "enrollments")) for term in s.terms())
        assert len(state.enrollments()) == enrollments
        imports = s.imports()
        assert [i["workflow_state"] for i in imports] == ["imported"] * (1 + len(s.terms()))
        identifiers = [i["diffing_data_set_identifier"] for i in imports]
        assert identifiers[0] == "rosterbridge:district"
        assert identifiers[1:] == [f"rosterbridge:term:{t}" for t in outcome.terms]
        # The summary is read back from Canvas's API.
        with s.defs.resources["canvas"].open() as session:
            holdings = read_holdings(session)
        assert sum(holdings.by_kind["courses"].values()) == len(state.courses())
        assert sum(holdings.by_kind["enrollments"].values()) == enrollments
        assert "Canvas now holds:" in format_holdings(holdings)
        with s.defs.resources["canvas"].open() as session:
            capped = read_holdings(session, course_limit=1)
        assert "enrollments" not in capped.by_kind and "more than the 1 walked" in capped.unavailable["enrollments"]

        assert_no_secret_or_personal_data_left(s, users)

        s.log.clear()
        assert s.sync().ok
        assert len(s.imports()) == len(imports), "an unchanged night uploads nothing"
        skipped = s.instance.get_latest_materialization_event(upload.DISTRICT_IMPORT).asset_materialization.metadata
        assert skipped["uploaded"].value is False
        assert "byte-identical" in skipped["skip_reason"].value


def assert_no_secret_or_personal_data_left(s: Stack, users: list[dict[str, str]]) -> None:
    """No credential in any file under the data dir, nor in the run events (logs, metadata, check
    results); no e-mail address or full name of a user in the run events."""
    issued_tokens = list(s.roster.api.tokens._tokens)
    assert issued_tokens, "the OneRoster client authenticated with OAuth 2"
    secrets = [DEMO_CANVAS_TOKEN, DEMO_CLIENT_SECRET, *issued_tokens]
    for path in Path(s.data_dir.path).rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            leaked = [secret for secret in secrets if secret.encode() in content]
            assert not leaked, f"{path} holds a credential"
    runs = s.instance.get_runs()
    assert runs
    events = "\n".join(serialize_value(entry) for run in runs for entry in s.instance.all_logs(run.run_id))
    assert not [secret for secret in secrets if secret in events], "a credential reached the Dagster event log"
    personal = [u["email"] for u in users if u["email"]] + [f"{u['first_name']} {u['last_name']}" for u in users]
    assert personal
    shown = [value for value in personal if value in events]
    assert not shown, f"personal data in the Dagster event log: {shown[:3]}"


def drop_student_enrollment(s: Stack, term: str) -> dict[str, str]:
    """Remove one active student enrollment of `term` from the SIS feed; returns its Canvas CSV row."""
    row = next(r for r in s.csv_rows(term, "enrollments") if r["role"] == "student" and r["status"] == "active")
    sourced_id = next(e["sourcedId"] for e in s.roster.store.class_enrollments(row["section_id"])
                      if e["user"]["sourcedId"] == row["user_id"])
    assert s.roster.store.drop_record("enrollments", sourced_id)
    return row


def test_dropped_enrollment_and_tobedeleted_user_propagate(tmp_path):
    with stack(tmp_path) as s:
        first_sync(s)
        term = s.terms()[0]
        dropped = drop_student_enrollment(s, term)
        leaving = next(u["user_id"] for u in s.csv_rows("district", "users")
                       if u["status"] == "active" and u["user_id"] != dropped["user_id"])
        s.roster.store.set_status("users", leaving, "tobedeleted")
        before = {(e["section_sis_id"], e["user_sis_id"], e["type"]): e["workflow_state"] for e in s.canvas.state.enrollments()}

        assert s.sync().ok, "\n".join(s.log)

        after = {(e["section_sis_id"], e["user_sis_id"], e["type"]): e["workflow_state"] for e in s.canvas.state.enrollments()}
        key = (dropped["section_id"], dropped["user_id"], "StudentEnrollment")
        assert after[key] == "inactive"  # MAPPING_ENROLLMENT_DROP_STATUS default, sent as diffing_drop_status
        assert next(u for u in s.canvas.state.users() if u["sis_id"] == leaving)["workflow_state"] == "deleted"
        assert all(after[k] == "deleted" for k in after if k[1] == leaving)
        changed = {k for k in after if after[k] != before.get(k)}
        assert changed == {key} | {k for k in after if k[1] == leaving and before.get(k) != "deleted"}


def test_truncated_users_feed_is_blocked_with_canvas_untouched_until_approved(tmp_path):
    with stack(tmp_path) as s:
        first_sync(s)
        imports_before = len(s.imports())
        counts_before = s.canvas.state.counts()
        # Half the users Canvas gets vanish from the feed, with their enrollments (a consistent but truncated
        # feed, so the extract's reference checks pass and the upload guard is what stops it).
        vanished = {u["user_id"] for u in s.csv_rows("district", "users")[::2]}
        s.roster.store.drop_records("enrollments", [e["sourcedId"] for e in s.roster.store.iter_all(Selection("enrollments"))
                                                    if e["user"]["sourcedId"] in vanished])
        s.roster.store.drop_records("users", vanished)

        s.log.clear()
        assert s.sync(dry_run=True, terms=[s.terms()[0]]).ok
        dry_run = "\n".join(s.log)
        assert f"dry run district: would create 0, change 0, delete {len(vanished)}" in dry_run
        assert "guard would block: users" in dry_run and "guard would block: enrollments" in dry_run
        assert len(s.imports()) == imports_before

        s.log.clear()
        outcome = s.sync()
        assert not outcome.ok and not outcome.district_ok
        report = "\n".join(s.log)
        assert "Mass-delete guard blocked the district upload" in report
        assert "users: " in report and "rosterbridge/approve_mass_delete=district" in report
        assert len(s.imports()) == imports_before
        assert s.canvas.state.counts() == counts_before
        check = s.instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(upload.DISTRICT_IMPORT, upload.GUARD_CHECK)])
        assert check

        # The term's enrollments of the vanished students are guarded too: each data set is approved by name.
        term = s.terms()[0]
        approved = s.sync(approve_mass_delete=["district", term], terms=[term])
        assert approved.ok, "\n".join(s.log)
        deleted = {u["sis_id"] for u in s.canvas.state.users() if u["workflow_state"] == "deleted"}
        assert vanished <= deleted


def test_term_backfill_changes_only_that_term(tmp_path):
    with stack(tmp_path) as s:
        first_sync(s)
        terms = s.terms()
        assert len(terms) >= 2
        target, other = terms[0], terms[1]
        drop_student_enrollment(s, target)
        other_before = DataSet.for_name(s.data_dir, other).last_import()
        imports_before = len(s.imports())

        assert s.sync(terms=[target]).ok, "\n".join(s.log)

        new_imports = s.imports()[imports_before:]
        assert [i["diffing_data_set_identifier"] for i in new_imports] == [f"rosterbridge:term:{target}"]
        assert DataSet.for_name(s.data_dir, other).last_import() == other_before
        runs = s.instance.get_runs(filters=dg.RunsFilter(job_name="term_sync"))
        assert runs[0].tags["dagster/partition"] == target


def test_failed_import_fails_the_asset_with_canvas_message(tmp_path):
    with stack(tmp_path) as s:
        first_sync(s)
        term = s.terms()[0]
        drop_student_enrollment(s, term)
        baseline = DataSet.for_name(s.data_dir, term).last_import()
        s.canvas.fail_next_import("Enrollment processing halted by the demo Canvas")

        s.log.clear()
        outcome = s.sync(terms=[term])
        assert outcome.failed_terms == [term]
        report = "\n".join(s.log)
        assert "ended failed_with_messages" in report
        assert "Enrollment processing halted by the demo Canvas" in report
        # The baseline stays on the last good import, so the next night retries the same change.
        assert DataSet.for_name(s.data_dir, term).last_import() == baseline
        assert s.sync(terms=[term]).ok


def test_throttling_and_server_errors_from_canvas_are_survived(tmp_path):
    faults = CanvasFaultPlan(seed=3, throttle_first_n=2, throttle_statuses=(403, 429), throttle_rate=0.15,
                             server_error_first_n=1, server_error_rate=0.1)
    with stack(tmp_path, faults=faults) as s:
        first_sync(s)
        assert s.canvas.fault_counts["throttle"] >= 2 and s.canvas.fault_counts["server_error"] >= 1
        assert all(i["workflow_state"] == "imported" for i in s.imports())
        assert len(s.canvas.state.users()) == len(s.csv_rows("district", "users"))


def test_sync_command_exit_codes_and_summary(tmp_path):
    """`python -m pipeline.sync` configured only through the environment, as `make sync` runs it."""
    with DemoOneRosterServer(students=STUDENTS) as roster, DemoCanvasServer(polls_to_finish=1) as canvas:
        env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"} | {
            "ROSTERBRIDGE_DATA_DIR": str(tmp_path / "data"),
            "ONEROSTER_BASE_URL": roster.base_url, "ONEROSTER_TOKEN_URL": roster.token_url,
            "ONEROSTER_CLIENT_ID": DEMO_CLIENT_ID, "ONEROSTER_CLIENT_SECRET": DEMO_CLIENT_SECRET,
            "CANVAS_BASE_URL": canvas.base_url, "CANVAS_ACCESS_TOKEN": DEMO_CANVAS_TOKEN,
        }

        def sync(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "pipeline.sync", *args], env=env, capture_output=True,
                                  text=True, timeout=240, cwd=Path(__file__).resolve().parents[1])

        first = sync()
        assert first.returncode == 0, first.stdout + first.stderr
        assert "Canvas now holds:" in first.stdout and "Sync finished" in first.stdout
        assert re.search(rf"courses\s+{len(canvas.state.courses())}\s", first.stdout)
        assert DEMO_CANVAS_TOKEN not in first.stdout + first.stderr

        term = sorted(p.name.removeprefix("term=") for p in (tmp_path / "data" / "canvas").glob("term=*"))[0]
        row = next(r for r in csv.DictReader((tmp_path / "data" / "canvas" / f"term={term}" / "enrollments.csv").open())
                   if r["role"] == "student")
        roster.store.drop_record("enrollments", next(e["sourcedId"] for e in roster.store.class_enrollments(row["section_id"])
                                                     if e["user"]["sourcedId"] == row["user_id"]))
        canvas.fail_next_import("Rejected by the demo Canvas")
        failed = sync("--term", term)
        assert failed.returncode == 1
        assert "Rejected by the demo Canvas" in failed.stdout and f"Sync FAILED for 1 term(s): {term}" in failed.stderr
