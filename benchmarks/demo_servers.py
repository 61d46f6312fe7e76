"""The demo servers as benchmark peers: `python -m benchmarks.run demo_servers [--students N] [--canvas-users N]`.

- Demo OneRoster provider on a large district: latency of a 1000-row enrollments page at scattered
  offsets, and enrollments/s with 20 ms injected latency for 1, 4 and 8 concurrent clients.
- Canvas: `canvas_rules.validate_import`, a demo Canvas upload + apply, and grade seeding, on a
  synthetic import (users x 4 enrollments).
Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import statistics
import time
import zipfile

import httpx2

from pipeline.canvas_rules import validate_import
from pipeline.demo.canvas_server import DEMO_CANVAS_TOKEN, DemoCanvasServer
from pipeline.demo.oneroster_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DemoOneRosterServer

PAGE = 1000


def provider_client(server: DemoOneRosterServer) -> httpx2.Client:
    token = httpx2.post(server.token_url, data={"grant_type": "client_credentials"},
                        auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)).raise_for_status().json()["access_token"]
    return httpx2.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def bench_provider(students: int) -> None:
    with DemoOneRosterServer(students=students) as server, provider_client(server) as client:
        total = int(client.get("/enrollments", params={"limit": 1}).headers["X-Total-Count"])
        timings = []
        for i in range(20):
            offset = (i * 197_003) % max(1, total - PAGE)
            started = time.perf_counter()
            response = client.get("/enrollments", params={"limit": PAGE, "offset": offset})
            timings.append(time.perf_counter() - started)
        print(f"{students:,} students: {total:,} enrollments; page of {PAGE}: median "
              f"{statistics.median(timings) * 1000:.0f} ms, max {max(timings) * 1000:.0f} ms, "
              f"{len(response.content) / 1e6:.2f} MB")

    with DemoOneRosterServer(students=students, latency_ms=20) as server, provider_client(server) as client:
        pages = 64

        def fetch(i: int) -> int:
            return len(client.get("/enrollments", params={"limit": PAGE, "offset": i * PAGE}).json()["enrollments"])

        for workers in (1, 4, 8):
            started = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                rows = sum(pool.map(fetch, range(pages)))
            elapsed = time.perf_counter() - started
            print(f"20 ms latency, {workers} concurrent client(s): {rows:,} enrollments in {elapsed:.2f} s "
                  f"= {rows / elapsed:,.0f} enrollments/s")


def synthetic_import(users: int, courses: int) -> dict[str, str]:
    def course_of(user: int, k: int) -> int:
        return (user * 7 + k) % courses

    return {
        "accounts.csv": "account_id,parent_account_id,name,status\nA1,,District,active\n",
        "terms.csv": "term_id,name,status\nT1,Year,active\n",
        "courses.csv": "course_id,short_name,long_name,account_id,term_id,status\n"
        + "".join(f"C{i},c{i},Course {i},A1,T1,published\n" for i in range(courses)),
        "sections.csv": "section_id,course_id,name,status\n"
        + "".join(f"S{i},C{i},Section {i},active\n" for i in range(courses)),
        "users.csv": "user_id,login_id,first_name,last_name,email,status\n"
        + "".join(f"U{i},u{i},F{i},L{i},u{i}@example.org,active\n" for i in range(users)),
        "enrollments.csv": "course_id,section_id,user_id,role,status\n"
        + "".join(f"C{course_of(u, k)},S{course_of(u, k)},U{u},student,active\n" for u in range(users) for k in range(4)),
    }


def bench_canvas(users: int) -> None:
    files = synthetic_import(users, courses=max(1, users // 25))
    rows = sum(text.count("\n") - 1 for text in files.values())
    started = time.perf_counter()
    violations = validate_import({name: text.encode() for name, text in files.items()})
    validated = time.perf_counter() - started
    print(f"canvas_rules.validate_import: {rows:,} rows in {validated:.2f} s ({rows / validated:,.0f} rows/s), "
          f"{len(violations)} violations")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    with DemoCanvasServer(polls_to_finish=0) as server:
        started = time.perf_counter()
        response = httpx2.post(f"{server.base_url}/api/v1/accounts/self/sis_imports", content=buffer.getvalue(),
                               timeout=600, headers={"Authorization": f"Bearer {DEMO_CANVAS_TOKEN}",
                                                     "Content-Type": "application/zip"})
        applied = time.perf_counter() - started
        print(f"demo Canvas upload + apply: {rows:,} rows in {applied:.2f} s ({rows / applied:,.0f} rows/s), "
              f"state {response.json()['workflow_state']}")
        started = time.perf_counter()
        created = server.seed_grades(seed=1)
        print(f"seed_grades: {created['courses']:,} courses, {created['graded_submissions']:,} graded "
              f"submissions in {time.perf_counter() - started:.2f} s")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run demo_servers", description=__doc__)
    parser.add_argument("--students", type=int, default=500_000, help="demo provider district size")
    parser.add_argument("--canvas-users", type=int, default=50_000, help="users in the synthetic Canvas import")
    args = parser.parse_args(argv)
    bench_provider(args.students)
    bench_canvas(args.canvas_users)
