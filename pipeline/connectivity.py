"""The first thing a district runs with new OneRoster credentials: `python -m pipeline.connectivity`.

It authenticates, reads the first page of every collection the pipeline extracts, and reports what it
learnt: the scopes the provider granted, the total per collection (X-Total-Count, or "unknown"), and
the provider's effective page cap. It writes nothing. Exit status 0 when every check passed, 1 when a
check failed, 2 when the configuration itself is wrong. The same check runs from the Dagster UI as the
job `check_oneroster_connection`.
"""


import argparse
import sys
from dataclasses import dataclass, field

import dagster as dg

from assets.extract import demographics_enabled
from pipeline import settings
from pipeline.oneroster.schema import DEFAULT_ENTITIES, ENTITIES
from pipeline.resources.oneroster import OneRosterClient, OneRosterError, OneRosterSession, oneroster_from_env

@dataclass(frozen=True)
class EndpointCheck:
    path: str
    first_page_rows: int = 0
    total: int | None = None
    page_cap: int | None = None  # rows per page the provider allows, when it capped the limit asked
    full_page: bool = False  # the provider returned every row asked for
    error: str | None = None
    status_code: int | None = None


@dataclass
class ConnectivityReport:
    base_url: str
    auth: str
    page_size: int
    granted_scopes: list[str] | None = None
    endpoints: list[EndpointCheck] = field(default_factory=list)
    auth_error: str | None = None
    requests: int = 0
    retries: int = 0

    @property
    def ok(self) -> bool:
        return self.auth_error is None and all(e.error is None for e in self.endpoints)

    @property
    def effective_page_cap(self) -> str:
        caps = [e.page_cap for e in self.endpoints if e.page_cap is not None]
        if caps:
            return f"{min(caps)} rows per page (asked for {self.page_size}; paging by the cap)"
        if any(e.full_page for e in self.endpoints):
            return f"none seen: the provider returned the full {self.page_size} rows asked for"
        return f"not observed: every collection fits in one page of {self.page_size}"

    def lines(self) -> list[str]:
        out = [f"OneRoster provider: {self.base_url}", f"Authentication:     {self.auth}"]
        if self.auth_error:
            return [*out, f"FAILED: {self.auth_error}"]
        if self.auth.startswith("oauth1"):
            scopes = "n/a (OAuth 1.0a signs each request; there is no token)"
        elif self.granted_scopes is None:
            scopes = "not stated in the token response"
        else:
            scopes = " ".join(self.granted_scopes) or "(none)"
        out += [f"Scopes granted:     {scopes}", "", f"{'endpoint':<20}{'total':>12}  result"]
        for check in self.endpoints:
            if check.error:
                out.append(f"{check.path:<20}{'-':>12}  FAILED: {check.error}")
                continue
            total = "unknown" if check.total is None else str(check.total)
            out.append(f"{check.path:<20}{total:>12}  ok ({check.first_page_rows} rows on the first page)")
        out.append("")
        if any(check.error is None for check in self.endpoints):
            out.append(f"Effective page cap: {self.effective_page_cap}")
        out += [
            f"HTTP requests:      {self.requests} ({self.retries} retried)",
            "OK: the pipeline can read this provider." if self.ok else "FAILED: see the lines above.",
        ]
        return out


def check_connection(client: OneRosterClient, *, include_demographics: bool) -> ConnectivityReport:
    """Run every check against the provider `client` configures (EnvVar fields must be resolved)."""
    names = DEFAULT_ENTITIES + (("demographics",) if include_demographics else ())
    with client.open() as session:
        auth = client.auth if client.base_url else "oauth2"
        if auth == "oauth1":
            auth = f"oauth1 ({client.oauth1_signature_method})"
        report = ConnectivityReport(base_url=session.base_url, auth=auth, page_size=session.page_size)
        try:
            report.granted_scopes = session.granted_scopes
        except OneRosterError as exc:
            report.auth_error = str(exc)
            return report
        for name in names:
            report.endpoints.append(_check_endpoint(session, ENTITIES[name].path, ENTITIES[name].envelope_keys))
            if report.endpoints[-1].status_code == 401:
                break  # the credentials are refused everywhere: one clear line is enough
        stats = session.stats.as_dict()
        report.requests, report.retries = stats["requests"], stats["retries"]
    return report


def _check_endpoint(session: OneRosterSession, path: str, envelope_keys: tuple[str, ...]) -> EndpointCheck:
    limit = session.page_size
    try:
        first = session.fetch_page(path, envelope_keys=envelope_keys, params=None, offset=0, limit=limit)
        rows, total = len(first.rows), first.total
        capped = False
        if 0 < rows < limit:
            if total is None:
                # Without a total, a short page is either everything or a cap: one row past it tells.
                probe = session.fetch_page(path, envelope_keys=envelope_keys, params=None, offset=rows, limit=1)
                capped = bool(probe.rows)
                total = None if capped else rows
            else:
                capped = total > rows
    except OneRosterError as exc:
        return EndpointCheck(path=path, error=str(exc), status_code=exc.status_code)
    return EndpointCheck(
        path=path,
        first_page_rows=rows,
        total=total,
        page_cap=rows if capped else None,
        full_page=rows >= limit,
    )


@dg.op(description="Checks the OneRoster credentials and endpoints; writes nothing.")
def oneroster_connectivity_check(context: dg.OpExecutionContext, oneroster: OneRosterClient) -> None:
    report = check_connection(oneroster, include_demographics=demographics_enabled())
    for line in report.lines():
        context.log.info(line)
    if not report.ok:
        raise dg.Failure(
            description="OneRoster connectivity check failed",
            metadata={"report": dg.MetadataValue.md("```\n" + "\n".join(report.lines()) + "\n```")},
        )


@dg.job(
    name="check_oneroster_connection",
    description="What a district runs first with new OneRoster credentials (python -m pipeline.connectivity).",
    tags={"rosterbridge/writes": "nothing"},
)
def check_oneroster_connection_job() -> None:
    oneroster_connectivity_check()


defs = dg.Definitions(jobs=[check_oneroster_connection_job])


def _require_credentials() -> None:
    if not settings.get("ONEROSTER_BASE_URL"):
        return  # the embedded demo provider brings its own
    missing = [n for n in ("ONEROSTER_CLIENT_ID", "ONEROSTER_CLIENT_SECRET") if not settings.is_set(n)]
    if missing:
        raise ValueError(f"ONEROSTER_BASE_URL is set but {' and '.join(missing)} not")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.connectivity",
        description="Check the OneRoster provider the ONEROSTER_* environment variables configure. Writes nothing.",
    )
    parser.add_argument(
        "--demographics",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also check /demographics (default: ONEROSTER_EXTRACT_DEMOGRAPHICS)",
    )
    args = parser.parse_args(argv)
    try:
        include_demographics = demographics_enabled() if args.demographics is None else args.demographics
        _require_credentials()
        client = oneroster_from_env().process_config_and_initialize()
        report = check_connection(client, include_demographics=include_demographics)
    except ValueError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
