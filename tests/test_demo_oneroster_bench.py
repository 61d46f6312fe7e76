"""Benchmark of the demo provider as a benchmark peer (500k students, ~4M enrollments).

Run: .venv/bin/python -m pytest tests/test_demo_oneroster_bench.py -m bench -s -q
Prints the figures; asserts only loose bounds so a loaded machine does not fail it.
"""

from __future__ import annotations

import concurrent.futures
import statistics
import time

import pytest

from pipeline.demo.oneroster_server import DemoOneRosterServer
from tests.test_demo_oneroster import bearer_client

pytestmark = pytest.mark.bench


def test_500k_district_page_latency_and_concurrent_throughput():
    with DemoOneRosterServer(students=500_000) as server, bearer_client(server) as client:
        total = int(client.get("/enrollments", params={"limit": 1}).headers["X-Total-Count"])
        timings = []
        for i in range(20):
            offset = (i * 197_003) % (total - 1000)
            started = time.perf_counter()
            response = client.get("/enrollments", params={"limit": 1000, "offset": offset})
            timings.append(time.perf_counter() - started)
            assert len(response.json()["enrollments"]) == 1000
        print(f"\n500k students: {total} enrollments; page of 1000 enrollments: "
              f"median {statistics.median(timings) * 1000:.0f} ms, max {max(timings) * 1000:.0f} ms, "
              f"{len(response.content) / 1e6:.2f} MB")
        assert statistics.median(timings) < 1.0

    with DemoOneRosterServer(students=500_000, latency_ms=20) as server, bearer_client(server) as client:
        pages = 64

        def fetch(i: int) -> int:
            return len(client.get("/enrollments", params={"limit": 1000, "offset": i * 1000}).json()["enrollments"])

        for workers in (1, 4, 8):
            started = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                rows = sum(pool.map(fetch, range(pages)))
            elapsed = time.perf_counter() - started
            print(f"20 ms latency, {workers} concurrent client(s): {pages} pages of 1000 in {elapsed:.2f} s "
                  f"= {rows / elapsed:,.0f} enrollments/s")
            assert rows == pages * 1000
