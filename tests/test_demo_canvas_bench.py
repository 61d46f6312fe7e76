"""Benchmark (excluded from `make test`): canvas_rules validation, demo Canvas import and grade seeding
on a synthetic 50,000-student import. Run: `.venv/bin/python -m pytest tests/test_demo_canvas_bench.py -m bench -s`."""

from __future__ import annotations

import time

import httpx2
import pytest

from pipeline.canvas_rules import validate_import
from pipeline.demo.canvas_server import DEMO_CANVAS_TOKEN, DemoCanvasServer
from tests.test_demo_canvas import zipped

USERS, COURSES, ENROLLMENTS_PER_USER = 50_000, 2_000, 4


def synthetic_import() -> dict[str, str]:
    def course_of(user: int, k: int) -> int:
        return (user * 7 + k) % COURSES

    return {
        "accounts.csv": "account_id,parent_account_id,name,status\nA1,,District,active\n",
        "terms.csv": "term_id,name,status\nT1,Year,active\n",
        "courses.csv": "course_id,short_name,long_name,account_id,term_id,status\n"
                       + "".join(f"C{i},c{i},Course {i},A1,T1,published\n" for i in range(COURSES)),
        "sections.csv": "section_id,course_id,name,status\n" + "".join(f"S{i},C{i},Section {i},active\n" for i in range(COURSES)),
        "users.csv": "user_id,login_id,first_name,last_name,email,status\n"
                     + "".join(f"U{i},u{i},F{i},L{i},u{i}@example.org,active\n" for i in range(USERS)),
        "enrollments.csv": "course_id,section_id,user_id,role,status\n"
                           + "".join(f"C{course_of(u, k)},S{course_of(u, k)},U{u},student,active\n"
                                     for u in range(USERS) for k in range(ENROLLMENTS_PER_USER)),
    }


@pytest.mark.bench
def test_import_and_seed_throughput():
    files = synthetic_import()
    rows = sum(text.count("\n") - 1 for text in files.values())
    started = time.perf_counter()
    assert validate_import({k: v.encode() for k, v in files.items()}) == []
    validated = time.perf_counter() - started
    print(f"\ncanvas_rules.validate_import: {rows:,} rows in {validated:.2f}s ({rows / validated:,.0f} rows/s)")
    with DemoCanvasServer(polls_to_finish=0) as srv:
        started = time.perf_counter()
        response = httpx2.post(f"{srv.base_url}/api/v1/accounts/self/sis_imports", content=zipped(files), timeout=600,
                               headers={"Authorization": f"Bearer {DEMO_CANVAS_TOKEN}", "Content-Type": "application/zip"})
        applied = time.perf_counter() - started
        assert response.json()["workflow_state"] == "imported"
        print(f"demo Canvas upload + apply: {rows:,} rows in {applied:.2f}s ({rows / applied:,.0f} rows/s)")
        started = time.perf_counter()
        created = srv.seed_grades(seed=1)
        seeded = time.perf_counter() - started
        print(f"seed_grades: {created['courses']:,} courses, {created['graded_submissions']:,} graded submissions "
              f"in {seeded:.2f}s")
