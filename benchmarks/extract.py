"""Extract benchmark: `python -m benchmarks.run extract [--students N] [--latency-ms 20] [--memory] [--no-sequential]`.

Against the demo provider started in a separate process (so it never shares the client's GIL), with
injected latency on every request, the same page size everywhere:

(a) rows/s of the extract assets (all six, `dg.materialize`) ÷ rows/s of a bare loop that only GETs
    the same pages with the same concurrency and the same HTTP library, reading each body without
    parsing it into records (rows counted from X-Total-Count) (goal ≥ 0.9);
(b) speed-up of the extract assets over a sequential page-by-page client that fetches a page, writes
    it (the same decoding, checks and Parquet writing), then fetches the next (goal ≥ 5×);
(c) with --memory: peak RSS and time of extracting a whole district of --students in a fresh process
    (goal ≤ 2 GB for 500k students ≈ 4M enrollments).

A fourth figure, the project's client paging alone (records dropped), tells how the gap to the bare
loop splits between the client and the extract step. The concurrent runs are repeated (--repeat) and
interleaved, and the median of each is reported, because the machine may be shared; CPU seconds of the
client process and of the provider process are given per row, which the machine's load barely moves.
The provider computes every page afresh on every request (no cache), so no run is warmer than another.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import dagster as dg
import httpx2

from assets.extract import asset_key, extract_assets, record_checks, write_snapshot
from pipeline.datadir import DataDir, tonight
from pipeline.oneroster.records import PageConverter
from pipeline.oneroster.schema import DEFAULT_ENTITIES, ENTITIES
from pipeline.resources.oneroster import OneRosterClient


@dataclass(frozen=True)
class Provider:
    base_url: str
    token_url: str
    client_id: str
    client_secret: str


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _serve(students: int, latency_ms: int, connection) -> None:
    from pipeline.demo.oneroster_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DemoOneRosterServer

    with DemoOneRosterServer(students=students, seed=1, latency_ms=latency_ms, port=0) as server:
        connection.send(Provider(server.base_url, server.token_url, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET))
        while connection.recv() == "cpu":  # until the benchmark says stop
            connection.send(_cpu_seconds())


@contextmanager
def provider_process(students: int, latency_ms: int):
    """The demo provider in its own process."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=_serve, args=(students, latency_ms, theirs), daemon=True)
    process.start()
    try:
        if not ours.poll(300):
            raise RuntimeError("the demo provider did not start within 300 s")
        provider = ours.recv()

        def cpu_seconds() -> float:
            ours.send("cpu")
            return ours.recv()

        yield provider, cpu_seconds
    finally:
        ours.send("stop")
        process.join(30)
        if process.is_alive():
            process.kill()


def client_for(provider: Provider, page_size: int, concurrency: int) -> OneRosterClient:
    return OneRosterClient(
        base_url=provider.base_url,
        token_url=provider.token_url,
        client_id=provider.client_id,
        client_secret=provider.client_secret,
        page_size=page_size,
        max_concurrency=concurrency,
    )


def bare_concurrent_get(provider: Provider, page_size: int, concurrency: int) -> int:
    """GET every page of every entity, `concurrency` at a time, reading each body but not parsing it
    into records; nothing else. Returns rows (the first page's size and X-Total-Count tell them)."""
    rows = 0
    with httpx2.Client(timeout=60, limits=httpx2.Limits(max_connections=concurrency)) as http:
        token = http.post(
            provider.token_url,
            data={"grant_type": "client_credentials"},
            auth=(provider.client_id, provider.client_secret),
        ).raise_for_status().json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}

        def page(path: str, offset: int, rows: int) -> int:
            response = http.get(f"{provider.base_url}{path}", params={"limit": page_size, "offset": offset}, headers=headers)
            if not response.raise_for_status().content:
                raise RuntimeError(f"GET {path} offset={offset}: empty body")
            return rows

        with ThreadPoolExecutor(concurrency) as pool:
            for name in DEFAULT_ENTITIES:
                entity = ENTITIES[name]
                first = http.get(f"{provider.base_url}{entity.path}", params={"limit": page_size, "offset": 0}, headers=headers)
                total = int(first.raise_for_status().headers["X-Total-Count"])
                step = len(first.json()[entity.envelope_keys[0]]) or page_size
                rows += step
                offsets = range(step, total, step)
                rows += sum(pool.map(lambda o, e=entity: page(e.path, o, min(step, total - o)), offsets))
    return rows


def client_pages_only(provider: Provider, page_size: int, concurrency: int) -> int:
    """The project's client paging through every entity and decoding the pages as the extract does,
    rows dropped: where time goes, client or extract."""
    with client_for(provider, page_size, concurrency).open() as session:
        return sum(
            len(page)
            for entity in (ENTITIES[name] for name in DEFAULT_ENTITIES)
            for page in session.iter_pages(entity.path, envelope_keys=entity.envelope_keys, decode=PageConverter(entity).decode_many)
        )


ASSETS_OWN_SECONDS: list[float] = []  # per extract_assets_run: the sum of the assets' duration_seconds


def extract_assets_run(provider: Provider, page_size: int, concurrency: int, root: str) -> int:
    """Materialize the six extract assets (and their record checks); returns the records fetched.

    Also notes the assets' own time (their `duration_seconds`), i.e. without Dagster's per-step cost.
    """
    selected = [a for a in extract_assets if a.key in {asset_key(n) for n in DEFAULT_ENTITIES}]
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [*selected, *record_checks],
            selection=dg.AssetSelection.assets(*selected),
            instance=instance,
            resources={"oneroster": client_for(provider, page_size, concurrency), "data_dir": DataDir(root=root)},
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
    if not result.success:
        raise RuntimeError("the extract run failed")
    records, own_seconds = 0, 0.0
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        records += metadata["dagster/row_count"].value + metadata["rejected_records"].value
        own_seconds += metadata["duration_seconds"].value
    ASSETS_OWN_SECONDS.append(own_seconds)
    return records


def sequential_extract(provider: Provider, page_size: int, root: str) -> int:
    """The same snapshots, fetching one page, writing it, then fetching the next."""
    records = 0
    data_dir = DataDir(root=root)
    with client_for(provider, page_size, 1).open() as session:
        for name in DEFAULT_ENTITIES:
            entity = ENTITIES[name]

            def pages(entity=entity, decode=PageConverter(entity).decode_many):
                offset = 0
                while True:
                    page = session.fetch_page(
                        entity.path, envelope_keys=entity.envelope_keys, params=None, offset=offset, limit=page_size,
                        decode=decode,
                    )
                    if not page.rows:
                        return
                    yield page.rows
                    offset += len(page.rows)
                    if page.total is not None and offset >= page.total:
                        return

            report = write_snapshot(entity, pages(), data_dir, tonight())
            records += report.rows + report.rejected_records
    return records


@dataclass(frozen=True)
class Timing:
    rows: int
    seconds: float  # wall
    cpu_seconds: float  # this process, all threads: a figure the machine's load barely moves
    provider_cpu_seconds: float | None = None  # the provider's process over the same run

    @property
    def rate(self) -> float:
        return self.rows / self.seconds

    def line(self, label: str) -> str:
        text = (
            f"{label:<28}: {self.rows} rows in {self.seconds:6.2f} s = {self.rate:>9,.0f} rows/s; "
            f"CPU µs/row: client {self.cpu_seconds / self.rows * 1e6:5.1f}"
        )
        if self.provider_cpu_seconds is not None:
            text += f", provider {self.provider_cpu_seconds / self.rows * 1e6:5.1f}"
        return text


def _timed(fn, *args, provider_cpu=None) -> Timing:
    provider_before = provider_cpu() if provider_cpu else None
    started, cpu = time.perf_counter(), time.process_time()
    rows = fn(*args)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    provider_seconds = provider_cpu() - provider_before if provider_cpu else None
    return Timing(rows, seconds, cpu_seconds, provider_seconds)


def _median(timings: list[Timing]) -> Timing:
    return Timing(
        timings[0].rows,
        statistics.median(t.seconds for t in timings),
        statistics.median(t.cpu_seconds for t in timings),
        statistics.median(t.provider_cpu_seconds for t in timings),
    )


def _memory_child(provider: Provider, page_size: int, concurrency: int, root: str, connection) -> None:
    timing = _timed(extract_assets_run, provider, page_size, concurrency, root)
    connection.send((timing, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def memory_run(provider: Provider, page_size: int, concurrency: int, root: str) -> tuple[Timing, float]:
    """Timing and peak RSS (MiB) of a materialization in a fresh process."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=_memory_child, args=(provider, page_size, concurrency, root, theirs))
    process.start()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"the extract process failed with exit code {process.exitcode}")
    return ours.recv()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run extract", description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=None, help="district size (default 20000; 500000 with --memory)")
    parser.add_argument("--latency-ms", type=int, default=20, help="latency the provider adds to every request")
    parser.add_argument(
        "--page-size", type=int, default=None,
        help="limit= per page, the same for every loop (default 100, OneRoster's default limit; 1000 with --memory)",
    )
    parser.add_argument("--concurrency", type=int, default=16, help="pages in flight (ONEROSTER_MAX_CONCURRENCY)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs of each loop; medians are reported")
    parser.add_argument("--memory", action="store_true", help="only (c): peak RSS and time of one whole extract")
    parser.add_argument("--no-sequential", action="store_true",
                        help="leave out the sequential loop (b), which takes minutes at large districts")
    args = parser.parse_args(argv)
    students = args.students or (500_000 if args.memory else 20_000)
    args.page_size = args.page_size or (1000 if args.memory else 100)
    print(
        f"demo provider in its own process: {students} students, {args.latency_ms} ms latency; "
        f"page size {args.page_size}, concurrency {args.concurrency}"
    )
    with provider_process(students, args.latency_ms) as (provider, provider_cpu), tempfile.TemporaryDirectory() as root:
        if args.memory:
            timing, peak = memory_run(provider, args.page_size, args.concurrency, root)
            print(timing.line("(c) extract assets (dg run)"))
            print(f"(c) peak RSS of the extracting process: {peak:,.0f} MiB (goal ≤ 2048)")
            return
        # The machine is shared: interleave the runs and report the median of each.
        runs = [
            (
                _timed(bare_concurrent_get, provider, args.page_size, args.concurrency, provider_cpu=provider_cpu),
                _timed(client_pages_only, provider, args.page_size, args.concurrency, provider_cpu=provider_cpu),
                _timed(extract_assets_run, provider, args.page_size, args.concurrency, root, provider_cpu=provider_cpu),
            ) + (() if args.no_sequential else (
                _timed(sequential_extract, provider, args.page_size, root, provider_cpu=provider_cpu),
            ))
            for _ in range(args.repeat)
        ]
    bare, client, assets, *sequential = (_median([run[i] for run in runs]) for i in range(len(runs[0])))
    if len({t.rows for run in runs for t in run}) != 1:
        raise RuntimeError(f"runs saw different row counts: {runs}")
    own_seconds = statistics.median(ASSETS_OWN_SECONDS)
    own_rate = assets.rows / own_seconds
    print(f"medians of {args.repeat} interleaved runs")
    print(bare.line("bare concurrent GET loop"))
    print(client.line("client iter_pages + decode"))
    print(assets.line("extract assets (dg run)"))
    print(f"{'extract assets (own time)':<28}: {assets.rows} rows in {own_seconds:6.2f} s = {own_rate:>9,.0f} rows/s")
    if sequential:
        print(sequential[0].line("sequential page-by-page"))
    print(
        f"(a) extract assets ÷ bare loop: {own_rate / bare.rate:.2f} (assets' own time), "
        f"{assets.rate / bare.rate:.2f} (whole Dagster run incl. checks and per-step cost)  goal ≥ 0.9"
    )
    print(f"    split: client ÷ bare {client.rate / bare.rate:.2f}, extract assets (own) ÷ client {own_rate / client.rate:.2f}")
    if sequential:
        print(
            f"(b) speed-up over sequential: {own_rate / sequential[0].rate:.1f}× (own time), "
            f"{assets.rate / sequential[0].rate:.1f}× (whole Dagster run)  goal ≥ 5×"
        )
