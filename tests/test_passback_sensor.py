"""The grade-change sensor's tick planning: bounded cost, rotation, and what makes a course due."""

from __future__ import annotations

import contextlib
import datetime as dt
import time

import dagster as dg

from pipeline.passback_sensor import CourseState, Cursor, TickPlan, plan_tick, run_requests

NOW = dt.datetime(2026, 9, 20, 12, tzinfo=dt.timezone.utc)
HOUR = dt.timedelta(hours=1)


def courses(n: int, term: str = "fall") -> list[tuple[str, str]]:
    return [(term, f"c{i:04d}") for i in range(n)]


WATERMARK = NOW - 3 * HOUR  # latest Canvas graded_at the SIS has


def synced(pairs, at=NOW - HOUR, rejections=0):
    return {pair: CourseState(WATERMARK, at, rejections) for pair in pairs}


class Canvas:
    """Stands for the one Canvas call per checked course; records which courses were asked."""

    def __init__(self, graded: set[str] = frozenset()):
        self.graded, self.asked = graded, []

    def __call__(self, course: str, since: dt.datetime) -> bool:
        self.asked.append((course, since))
        return course in self.graded


def tick(cursor, all_courses, states, canvas, budget=200):
    return plan_tick(cursor, all_courses, states, canvas, budget=budget, now=NOW, resync=24 * HOUR)


def test_cost_per_tick_is_bounded_and_the_cursor_rotates():
    all_courses = courses(5_000)
    states = synced(all_courses)
    canvas = Canvas()
    plan = tick(Cursor(), all_courses, states, canvas)
    assert plan.checked == 200 and plan.canvas_calls == 200 and len(canvas.asked) == 200
    assert plan.changed == {} and plan.cursor == Cursor(position=200, rotation=0)
    cursor = plan.cursor
    for _ in range(24):
        cursor = tick(cursor, all_courses, states, canvas).cursor
    assert cursor == Cursor(position=0, rotation=1)  # every course checked once in 25 ticks
    assert len(canvas.asked) == 5_000 and len({c for c, _ in canvas.asked}) == 5_000


def test_second_tick_with_the_returned_cursor_checks_the_next_courses():
    all_courses = courses(5)
    states = synced(all_courses)
    canvas = Canvas(graded={"c0003"})
    first = tick(Cursor(), all_courses, states, canvas, budget=3)
    assert first.changed == {} and first.cursor == Cursor(3, 0)
    second = tick(Cursor.parse(first.cursor.dump()), all_courses, states, canvas, budget=3)
    assert second.changed == {"fall": ["c0003"]} and second.cursor == Cursor(1, 1)  # wrapped around
    assert [c for c, _ in canvas.asked] == ["c0000", "c0001", "c0002", "c0003", "c0004", "c0000"]
    # graded_since is the course's ledger watermark, not the cursor
    assert all(since == WATERMARK for _, since in canvas.asked)


def test_courses_are_due_without_asking_canvas_when_unsynced_rejected_or_stale():
    all_courses = courses(4)
    states = {
        ("fall", "c0001"): CourseState(WATERMARK, NOW - HOUR, 2),       # SIS rejections to retry
        ("fall", "c0002"): CourseState(WATERMARK, NOW - 25 * HOUR, 0),  # resync due
        ("fall", "c0003"): CourseState(None, NOW - HOUR, 0),            # fresh, no grade yet: ask Canvas
    }
    canvas = Canvas()
    plan = tick(Cursor(), all_courses, states, canvas)
    assert plan.changed == {"fall": ["c0000", "c0001", "c0002"]}
    assert plan.canvas_calls == 1 and canvas.asked == [("c0003", dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc))]
    assert plan.reasons == {"never synced": 1, "rejections to retry": 1, "resync due": 1, "new grades": 0,
                            "check failed": 0, "run in progress": 0}


def test_restart_from_a_stored_cursor_and_run_requests_per_term():
    all_courses = courses(3, "fall") + courses(3, "spring")
    states = synced(all_courses)
    canvas = Canvas(graded={"c0002"})
    stored = Cursor(position=2, rotation=7).dump()
    plan = tick(Cursor.parse(stored), all_courses, states, canvas, budget=4)
    assert plan.changed == {"fall": ["c0002"], "spring": ["c0002"]}
    requests = run_requests(plan, NOW)
    assert [r.partition_key for r in requests] == ["fall", "spring"]
    assert requests[0].run_config == {"ops": {"gradebook__canvas_export": {"config": {"courses": ["c0002"]}}}}
    assert requests[0].run_key == "passback:fall:20260920T120000.000000Z:8:0"
    # The cursor beyond the list (courses were removed) starts a new rotation instead of failing.
    assert tick(Cursor(position=99), all_courses, states, Canvas(), budget=1).cursor == Cursor(1, 1)
    assert tick(Cursor(), [], {}, Canvas()) == TickPlan(cursor=Cursor(), changed={})


def test_ledger_states_are_read_while_a_run_holds_the_write_lock(tmp_path):
    from pipeline.datadir import DataDir
    from pipeline.passback.ledger import Ledger
    from pipeline.passback_sensor import ledger_states

    data_dir = DataDir(root=str(tmp_path))
    assert ledger_states(data_dir, "fall") == {}
    with Ledger.for_term(data_dir.gradebook_dir("fall")) as ledger:
        ledger.mark_courses_synced({"c1": "2026-09-20T10:00:00+00:00", "c2": None}, "run-1")
        with ledger._transaction() as conn:  # a run mid-batch
            conn.execute("UPDATE courses SET run_id = 'run-2'")
            states = ledger_states(data_dir, "fall")
    assert states[("fall", "c1")].graded_through == dt.datetime(2026, 9, 20, 10, tzinfo=dt.timezone.utc)
    assert states[("fall", "c2")].graded_through is None
    assert NOW.year <= states[("fall", "c1")].synced_at.year and states[("fall", "c1")].rejections == 0


def test_concurrent_checks_give_the_same_plan():
    all_courses = courses(300)
    states = synced(all_courses)
    graded = {f"c{i:04d}" for i in range(0, 300, 7)}
    sequential = plan_tick(Cursor(position=250), all_courses, states, Canvas(graded), budget=200, now=NOW,
                           resync=24 * HOUR)
    concurrent = plan_tick(Cursor(position=250), all_courses, states, Canvas(graded), budget=200, now=NOW,
                           resync=24 * HOUR, concurrency=4)
    assert concurrent == sequential and concurrent.cursor == Cursor(position=150, rotation=1)
    assert concurrent.changed["fall"][:2] == ["c0252", "c0259"]  # in walk order, whatever finished first


# --- the sensor against the demo Canvas over real HTTP ------------------------------------------------
TERM = "as-2027-fall"
BAD_COURSE = "crs-bad"


def provision(data_dir, term: str, course_ids: list[str]) -> None:
    """The term's last successful SIS import lists these courses (what the sensor walks)."""
    from pipeline.canvas_data_set import DataSet

    path = DataSet.for_name(data_dir, term).last_imported_path("courses")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("course_id,short_name,long_name,status\n" + "".join(f"{c},{c},{c},active\n" for c in course_ids))


@contextlib.contextmanager
def sensor_setup(tmp_path, course_ids: list[str], synced_ids: list[str], passback_settings=None, rejected_ids=(),
                 **server_options):
    """A Dagster instance with the term, the demo Canvas (optionally faulty) and a ledger in which
    `synced_ids` were synced just now (`rejected_ids` with a SIS rejection); yields
    (tick(cursor) -> SensorResult, server, instance)."""
    from pipeline.datadir import DataDir
    from pipeline.demo.canvas_server import DEMO_CANVAS_TOKEN, DemoCanvasServer
    from pipeline.partitions import SCHOOL_TERM
    from pipeline.passback.config import PassbackSettings
    from pipeline.passback.ledger import Ledger, Rejected
    from pipeline.passback_sensor import grade_change_sensor
    from pipeline.resources.canvas import CanvasClient

    data_dir = DataDir(root=str(tmp_path / "data"))
    provision(data_dir, TERM, course_ids)
    with Ledger.for_term(data_dir.gradebook_dir(TERM)) as ledger:
        ledger.record(rejected=[Rejected(f"result-{c}", "result", c, "li", "h", 422, "no enrollment") for c in rejected_ids])
        ledger.mark_courses_synced({c: "2026-09-20T10:00:00.000+00:00" for c in synced_ids}, "earlier-run")
    with DemoCanvasServer(**server_options) as srv, dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(SCHOOL_TERM, [TERM])
        resources = {"canvas": CanvasClient(base_url=srv.base_url, access_token=DEMO_CANVAS_TOKEN, max_retries=5,
                                            backoff_base_seconds=0.01),
                     "data_dir": data_dir, "passback": passback_settings or PassbackSettings(sensor_courses_per_tick=10)}

        def tick(cursor: str | None) -> dg.SensorResult:
            return grade_change_sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources))

        yield tick, srv, instance


def requested(result: dg.SensorResult) -> list[str]:
    return [c for r in result.run_requests or [] for c in r.run_config["ops"]["gradebook__canvas_export"]["config"]["courses"]]


def test_a_course_canvas_fails_on_is_skipped_and_the_cursor_still_advances(tmp_path):
    from pipeline.demo.canvas_server import CanvasFaultPlan

    faults = CanvasFaultPlan(server_error_first_n=1_000, server_error_status=500, path_pattern=f"sis_course_id:{BAD_COURSE}")
    # Course ids sort so that the failing course is checked before the never-synced one.
    courses_ = ["crs-a", BAD_COURSE, "crs-c", "crs-new"]
    with sensor_setup(tmp_path, courses_, synced_ids=["crs-a", BAD_COURSE, "crs-c"], faults=faults) as (tick, srv, _):
        first = tick(None)
        assert requested(first) == ["crs-new"]  # the other courses go on
        assert Cursor.parse(first.cursor) == Cursor(position=0, rotation=1)  # the whole walk was done
        assert srv.fault_counts["server_error"] == 1  # one call, no retries inside a tick
        second = tick(first.cursor)
        assert requested(second) == ["crs-new"] and srv.fault_counts["server_error"] == 2


def test_a_tick_stops_on_its_time_budget_and_the_next_one_resumes_there(tmp_path):
    from pipeline.demo.canvas_server import DEMO_CANVAS_TOKEN, DemoCanvasServer
    from pipeline.passback_sensor import canvas_graded_since
    from pipeline.resources.canvas import CanvasClient

    all_courses = courses(40)
    states = synced(all_courses)
    with DemoCanvasServer(latency_ms=100) as srv:
        with CanvasClient(base_url=srv.base_url, access_token=DEMO_CANVAS_TOKEN).open() as session:
            check = canvas_graded_since(session)
            first = plan_tick(Cursor(), all_courses, states, check, budget=40, now=NOW, resync=24 * HOUR,
                              concurrency=4, time_budget=0.25)
            assert 4 <= first.checked < 40 and first.cursor == Cursor(position=first.checked, rotation=0)
            assert first.canvas_calls == first.checked
            rest = plan_tick(first.cursor, all_courses, states, check, budget=40 - first.checked, now=NOW,
                             resync=24 * HOUR, concurrency=4)
            assert rest.cursor == Cursor(position=0, rotation=1) and first.checked + rest.checked == 40


def test_a_term_with_a_passback_run_queued_or_running_is_not_requested_again(tmp_path):
    from dagster._core.utils import make_new_run_id

    with sensor_setup(tmp_path, ["crs-a", "crs-b"], synced_ids=[]) as (tick, _, instance):
        first = tick(None)
        assert requested(first) == ["crs-a", "crs-b"]
        assert first.run_requests[0].tags["rosterbridge/passback_term"] == TERM
        run = dg.DagsterRun(job_name="gradebook_passback", run_id=make_new_run_id(), status=dg.DagsterRunStatus.STARTED,
                            tags={"dagster/partition": TERM})
        instance.add_run(run)
        busy = tick(first.cursor)
        assert not busy.run_requests and "run is queued or running" in busy.skip_reason.skip_message
        instance.report_run_failed(run)  # the run ended: its courses are not marked synced, so they are due again
        assert requested(tick(busy.cursor)) == ["crs-a", "crs-b"]


def test_a_course_the_sis_keeps_rejecting_is_retried_at_most_every_rejection_retry_hours(tmp_path):
    from pipeline.passback.config import PassbackSettings

    settings = PassbackSettings(sensor_courses_per_tick=10, rejection_retry_hours=0.0003)  # about a second
    with sensor_setup(tmp_path, ["crs-a", "crs-b"], synced_ids=["crs-a", "crs-b"], rejected_ids=["crs-a"],
                      passback_settings=settings) as (tick, _, _):
        first = tick(None)  # just synced: no call to Canvas finds a new grade, the rejection waits
        assert not first.run_requests
        time.sleep(1.2)
        assert requested(tick(first.cursor)) == ["crs-a"]


def test_the_ledger_watermark_never_moves_back(tmp_path):
    from pipeline.passback.ledger import Ledger

    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ledger.mark_courses_synced({"c1": "2026-09-20T10:00:05.000+00:00", "c2": None}, "newer-run")
        # An older run (it gathered earlier) finishes last.
        ledger.mark_courses_synced({"c1": "2026-09-20T10:00:00.000+00:00", "c2": None}, "older-run")
        assert ledger.course_states()["c1"][0] == "2026-09-20T10:00:05.000+00:00"
        ledger.mark_courses_synced({"c1": "2026-09-20T11:00:00.000+00:00", "c2": "2026-09-20T09:00:00.000+00:00"}, "next")
        states = ledger.course_states()
        assert states["c1"][0] == "2026-09-20T11:00:00.000+00:00" and states["c2"][0] == "2026-09-20T09:00:00.000+00:00"


def test_run_keys_are_never_reused_when_the_list_shrinks_or_the_cursor_is_reset(tmp_path):
    """Dagster drops a RunRequest whose run key was used before: every tick's keys must be new."""
    from pipeline.datadir import DataDir
    from pipeline.passback.config import PassbackSettings

    with sensor_setup(tmp_path, [], synced_ids=[], passback_settings=PassbackSettings(sensor_courses_per_tick=5)) as (tick, _, _):
        data_dir = DataDir(root=str(tmp_path / "data"))
        keys: list[str] = []
        cursor = None
        for shown in (6, 4):  # two courses leave the term mid-pass
            provision(data_dir, TERM, [f"crs-{i:02d}" for i in range(shown)])
            result = tick(cursor)
            keys += [r.run_key for r in result.run_requests]
            cursor = result.cursor
        assert Cursor.parse(cursor).rotation == 2  # the wrap at the shrunk end counts as a pass
        keys += [r.run_key for r in tick(None).run_requests]  # the cursor was reset
        assert len(keys) == 3 and len(set(keys)) == 3
