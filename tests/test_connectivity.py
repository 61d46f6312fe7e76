"""The connectivity check (`python -m pipeline.connectivity` and the Dagster job) against the demo provider."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from pipeline.connectivity import check_oneroster_connection_job, main
from pipeline.demo.oneroster_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DemoOneRosterServer
from pipeline.demo.provider_auth import ROSTER_CORE
from pipeline.oneroster.schema import ENTITIES
from pipeline.resources.oneroster import OneRosterClient

ENDPOINTS = ("/orgs", "/academicSessions", "/courses", "/classes", "/users", "/enrollments")


@pytest.fixture
def env(monkeypatch, tmp_path):
    """A clean ONEROSTER_* environment with the data dir in tmp_path; returns a function that points it
    at a provider."""
    for name in list(os.environ):
        if name.startswith("ONEROSTER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ROSTERBRIDGE_DATA_DIR", str(tmp_path / "data"))

    def point_at(srv: DemoOneRosterServer, *, auth: str = "oauth2", secret: str = DEMO_CLIENT_SECRET, **extra: str):
        monkeypatch.setenv("ONEROSTER_BASE_URL", srv.base_url)
        monkeypatch.setenv("ONEROSTER_AUTH", auth)
        monkeypatch.setenv("ONEROSTER_CLIENT_ID", DEMO_CLIENT_ID)
        monkeypatch.setenv("ONEROSTER_CLIENT_SECRET", secret)
        if auth == "oauth2":
            monkeypatch.setenv("ONEROSTER_TOKEN_URL", srv.token_url)
        for name, value in extra.items():
            monkeypatch.setenv(name, value)

    return point_at


def rows_of(output: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in output.splitlines() if line.startswith("/")}


def test_reports_totals_scopes_and_no_cap(env, capsys, tmp_path):
    with DemoOneRosterServer(students=40, seed=1) as srv:
        env(srv, ONEROSTER_SCOPE=ROSTER_CORE)
        code = main([])
        totals = count_rows(srv)
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"Scopes granted:     {ROSTER_CORE}" in out
    rows = rows_of(out)
    assert list(rows) == list(ENDPOINTS)
    for path in ENDPOINTS:
        assert rows[path][1] == str(totals[path]) and rows[path][2] == "ok"
    assert "Effective page cap: not observed: every collection fits in one page" in out  # 40 students
    assert "OK: the pipeline can read this provider." in out
    assert not (tmp_path / "data").exists()  # writes nothing


def test_full_pages_mean_no_cap_was_seen(env, capsys):
    with DemoOneRosterServer(students=40, seed=1) as srv:
        env(srv, ONEROSTER_PAGE_SIZE="10")
        assert main([]) == 0
    out = capsys.readouterr().out
    assert "Effective page cap: none seen: the provider returned the full 10 rows asked for" in out


def test_reports_the_page_cap_and_unknown_totals(env, capsys):
    with DemoOneRosterServer(students=40, seed=1, page_cap=7, send_total_count=False, send_link=False) as srv:
        env(srv, ONEROSTER_PAGE_SIZE="100")
        assert main([]) == 0
    out = capsys.readouterr().out
    assert "Effective page cap: 7 rows per page (asked for 100; paging by the cap)" in out
    assert rows_of(out)["/users"][1] == "unknown"


def test_oauth1_with_vendor_header(env, capsys):
    vendor = {"x-vendor-authorization": "vendor-key:vendor-secret-99"}
    with DemoOneRosterServer(students=10, seed=1, auth="oauth1", required_headers=vendor) as srv:
        env(srv, auth="oauth1", ONEROSTER_OAUTH1_SIGNATURE_METHOD="HMAC-SHA1")
        assert main([]) == 1  # without the vendor header every endpoint is refused
        refused = capsys.readouterr().out
        env(srv, auth="oauth1", ONEROSTER_EXTRA_HEADERS='{"x-vendor-authorization": "vendor-key:vendor-secret-99"}')
        assert main([]) == 0
    out = capsys.readouterr().out
    assert "HTTP 401" in refused and "vendor-secret-99" not in refused
    assert "Authentication:     oauth1 (HMAC-SHA1)" in out and "Scopes granted:     n/a" in out


def test_wrong_secret_fails_clearly_without_echoing_it(env, capsys):
    wrong = "definitely-not-the-secret"
    with DemoOneRosterServer(students=10, seed=1) as srv:
        env(srv, secret=wrong)
        assert main([]) == 1
    captured = capsys.readouterr()
    assert "FAILED: token request to" in captured.out and "invalid_client" in captured.out
    assert wrong not in captured.out + captured.err


def test_missing_scope_names_the_endpoint(env, capsys):
    with DemoOneRosterServer(students=10, seed=1) as srv:
        env(srv, ONEROSTER_SCOPE=ROSTER_CORE)
        assert main(["--demographics"]) == 1
    rows = rows_of(capsys.readouterr().out)
    assert rows["/users"][2] == "ok"
    assert rows["/demographics"][1:3] == ["-", "FAILED:"]
    assert "/demographics?limit=1000&offset=0 failed: HTTP 403 Forbidden" in " ".join(rows["/demographics"])
    assert "check ONEROSTER_SCOPE" in " ".join(rows["/demographics"])


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("ONEROSTER_BASE_URL", "https://sis.example.org/oneroster", "must be the provider's URL ending in /ims/oneroster/v1p1"),
        ("ONEROSTER_PAGE_SIZE", "lots", "ONEROSTER_PAGE_SIZE must be a whole number"),
        ("ONEROSTER_AUTH", "saml", "ONEROSTER_AUTH must be oauth2 or oauth1"),
    ],
)
def test_configuration_errors_exit_2(env, capsys, monkeypatch, variable, value, message):
    with DemoOneRosterServer(students=10, seed=1) as srv:
        env(srv)
        monkeypatch.setenv(variable, value)
        assert main([]) == 2
    assert message in capsys.readouterr().err


def test_missing_credentials_exit_2(env, capsys, monkeypatch):
    with DemoOneRosterServer(students=10, seed=1) as srv:
        env(srv)
        monkeypatch.delenv("ONEROSTER_CLIENT_SECRET")
        assert main([]) == 2
    assert "ONEROSTER_CLIENT_SECRET not" in capsys.readouterr().err


def test_dagster_job_runs_the_check_and_fails_on_refusal(tmp_path):
    with DemoOneRosterServer(students=10, seed=1) as srv:
        def client(secret: str) -> OneRosterClient:
            return OneRosterClient(base_url=srv.base_url, client_id=DEMO_CLIENT_ID, client_secret=secret,
                                   token_url=srv.token_url, data_dir=str(tmp_path / "data"))

        result = check_oneroster_connection_job.execute_in_process(resources={"oneroster": client(DEMO_CLIENT_SECRET)})
        assert result.success
        bad = client("wrong-secret-123")
        failed = check_oneroster_connection_job.execute_in_process(resources={"oneroster": bad}, raise_on_error=False)
    assert not failed.success
    failure = failed.failure_data_for_node("oneroster_connectivity_check")
    assert "OneRoster connectivity check failed" in str(failure.error)
    assert not (tmp_path / "data").exists()


def test_documented_command_against_the_embedded_demo(tmp_path):
    """`python -m pipeline.connectivity` with no ONEROSTER_BASE_URL checks the embedded demo provider."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEROSTER_")}
    env.update(ROSTERBRIDGE_DATA_DIR=str(tmp_path / "data"), ROSTERBRIDGE_DEMO_STUDENTS="30")
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.connectivity"], env=env, capture_output=True, text=True, timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: the pipeline can read this provider." in done.stdout
    assert set(rows_of(done.stdout)) == set(ENDPOINTS)


def count_rows(srv: DemoOneRosterServer) -> dict[str, int]:
    """Rows per collection, counted by reading every page (not from X-Total-Count)."""
    client = OneRosterClient(base_url=srv.base_url, client_id=DEMO_CLIENT_ID, client_secret=DEMO_CLIENT_SECRET,
                             token_url=srv.token_url, page_size=25)
    with client.open() as session:
        return {
            entity.path: sum(len(p) for p in session.iter_pages(entity.path, envelope_keys=entity.envelope_keys))
            for entity in (ENTITIES[path.strip("/")] for path in ENDPOINTS)
        }


def test_job_loads_in_a_code_location():
    from pipeline import connectivity

    defs = dg.Definitions.merge(connectivity.defs, dg.Definitions(resources={"oneroster": OneRosterClient()}))
    dg.Definitions.validate_loadable(defs)
    assert defs.get_job_def("check_oneroster_connection").tags["rosterbridge/writes"] == "nothing"
