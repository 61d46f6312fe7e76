"""Extract benchmark: `python -m benchmarks.run extract [--students N] [--latency-ms 20] [--memory]`.

Against the demo provider started in a separate process (so it never shares the client's GIL), with
injected latency on every request, the same page size everywhere:

(a) rows/s of the extract assets (all six, `dg.materialize`) ÷ rows/s of a bare loop that only GETs
    and parses the same pages with the same concurrency (goal ≥ 0.9);
(b) speed-up of the extract assets over a sequential page-by-page client that fetches a page, writes
    it, then fetches the next (goal ≥ 5×);
(c) with --memory: peak RSS and time of extracting a whole district of --students in a fresh process
    (goal ≤ 2 GB for 500k students ≈ 4M enrollments).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import dagster as dg
import httpx2

from assets.extract import asset_key, extract_assets, write_snapshot
from pipeline.datadir import DataDir, tonight
from pipeline.oneroster.schema import DEFAULT_ENTITIES, ENTITIES
from pipeline.resources.oneroster import OneRosterClient


@dataclass(frozen=True)
class Provider:
    base_url: str
    token_url: str
    client_id: str
    client_secret: str


def _serve(students: int, latency_ms: int, connection) -> None:
    from pipeline.demo.oneroster_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DemoOneRosterServer

    with DemoOneRosterServer(students=students, seed=1, latency_ms=latency_ms, port=0) as server:
        connection.send(Provider(server.base_url, server.token_url, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET))
        connection.recv()  # until the benchmark says stop


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
        yield ours.recv()
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
    """GET and parse every page of every entity, `concurrency` at a time; nothing else. Returns rows."""
    rows = 0
    with httpx2.Client(timeout=60, limits=httpx2.Limits(max_connections=concurrency)) as http:
        token = http.post(
            provider.token_url,
            data={"grant_type": "client_credentials"},
            auth=(provider.client_id, provider.client_secret),
        ).raise_for_status().json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}

        def page(path: str, key: str, offset: int) -> int:
            response = http.get(f"{provider.base_url}{path}", params={"limit": page_size, "offset": offset}, headers=headers)
            return len(response.raise_for_status().json()[key])

        with ThreadPoolExecutor(concurrency) as pool:
            for name in DEFAULT_ENTITIES:
                entity = ENTITIES[name]
                first = http.get(f"{provider.base_url}{entity.path}", params={"limit": page_size, "offset": 0}, headers=headers)
                total = int(first.raise_for_status().headers["X-Total-Count"])
                step = len(first.json()[entity.envelope_keys[0]]) or page_size
                rows += step
                offsets = range(step, total, step)
                rows += sum(pool.map(lambda o, e=entity: page(e.path, e.envelope_keys[0], o), offsets))
    return rows


def extract_assets_run(provider: Provider, page_size: int, concurrency: int, root: str) -> tuple[int, float]:
    """Materialize the six extract assets; returns (records fetched, sum of the assets' own durations)."""
    selected = [a for a in extract_assets if a.key in {asset_key(n) for n in DEFAULT_ENTITIES}]
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            selected,
            instance=instance,
            resources={"oneroster": client_for(provider, page_size, concurrency), "data_dir": DataDir(root=root)},
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
    assert result.success
    records, seconds = 0, 0.0
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        records += metadata["dagster/row_count"].value + metadata["rejected_records"].value
        seconds += metadata["duration_seconds"].value
    return records, seconds


def sequential_extract(provider: Provider, page_size: int, root: str) -> int:
    """The same snapshots, fetching one page, writing it, then fetching the next."""
    records = 0
    data_dir = DataDir(root=root)
    with client_for(provider, page_size, 1).open() as session:
        for name in DEFAULT_ENTITIES:
            entity = ENTITIES[name]

            def pages(entity=entity):
                offset = 0
                while True:
                    page = session.fetch_page(
                        entity.path, envelope_keys=entity.envelope_keys, params=None, offset=offset, limit=page_size
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


def _timed(fn, *args):
    started = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - started


def _memory_child(provider: Provider, page_size: int, concurrency: int, root: str, connection) -> None:
    started = time.perf_counter()
    records, _ = extract_assets_run(provider, page_size, concurrency, root)
    elapsed = time.perf_counter() - started
    connection.send((records, elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def memory_run(provider: Provider, page_size: int, concurrency: int, root: str) -> tuple[int, float, float]:
    """(records, seconds, peak RSS MiB) of a materialization in a fresh process."""
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
    parser.add_argument("--students", type=int, default=None, help="district size (default 5000; 500000 with --memory)")
    parser.add_argument("--latency-ms", type=int, default=20, help="latency the provider adds to every request")
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8, help="pages in flight (ONEROSTER_MAX_CONCURRENCY)")
    parser.add_argument("--memory", action="store_true", help="only (c): peak RSS and time of one whole extract")
    args = parser.parse_args(argv)
    students = args.students or (500_000 if args.memory else 5_000)
    print(
        f"demo provider in its own process: {students} students, {args.latency_ms} ms latency; "
        f"page size {args.page_size}, concurrency {args.concurrency}"
    )
    with provider_process(students, args.latency_ms) as provider, tempfile.TemporaryDirectory() as root:
        if args.memory:
            records, seconds, peak = memory_run(provider, args.page_size, args.concurrency, root)
            print(f"(c) {records} records in {seconds:.1f} s ({records / seconds:,.0f} rows/s); peak RSS {peak:,.0f} MiB")
            return
        bare_rows, bare_s = _timed(bare_concurrent_get, provider, args.page_size, args.concurrency)
        (asset_rows, asset_own_s), asset_s = _timed(extract_assets_run, provider, args.page_size, args.concurrency, root)
        seq_rows, seq_s = _timed(sequential_extract, provider, args.page_size, root)
    if not bare_rows == asset_rows == seq_rows:
        raise RuntimeError(f"runs saw different row counts: bare {bare_rows}, assets {asset_rows}, sequential {seq_rows}")
    rate = {"bare": bare_rows / bare_s, "assets": asset_rows / asset_s, "assets_own": asset_rows / asset_own_s, "seq": seq_rows / seq_s}
    print(f"bare concurrent GET loop : {bare_rows} rows in {bare_s:6.2f} s = {rate['bare']:>9,.0f} rows/s")
    print(f"extract assets (run wall): {asset_rows} rows in {asset_s:6.2f} s = {rate['assets']:>9,.0f} rows/s")
    print(f"extract assets (own time): {asset_rows} rows in {asset_own_s:6.2f} s = {rate['assets_own']:>9,.0f} rows/s")
    print(f"sequential page-by-page  : {seq_rows} rows in {seq_s:6.2f} s = {rate['seq']:>9,.0f} rows/s")
    print(f"(a) assets ÷ bare loop   : {rate['assets_own'] / rate['bare']:.2f} (own time), {rate['assets'] / rate['bare']:.2f} (run wall incl. Dagster)  goal ≥ 0.9")
    print(f"(b) speed-up over sequential: {rate['assets_own'] / rate['seq']:.1f}× (own time), {rate['assets'] / rate['seq']:.1f}× (run wall)  goal ≥ 5×")
