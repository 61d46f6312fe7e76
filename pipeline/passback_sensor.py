"""The grade-change sensor: notices new grades in Canvas for provisioned courses and requests passback runs.

Cost per tick is bounded: the sensor walks the provisioned courses of every term in a fixed order and
checks at most `PASSBACK_SENSOR_COURSES_PER_TICK` of them per tick, resuming where the last tick
stopped (the cursor). Checking a course is at most one Canvas call,
`GET /courses/sis_course_id:<id>/students/submissions?student_ids[]=all&graded_since=<t>&per_page=1`,
where `t` comes from the term's ledger: the instant up to which the course's grades are in the SIS.
So the ledger, not the cursor, decides what is sent: when a run fails, the ledger does not advance
and the next pass over the course requests it again. A course is requested without asking Canvas when
it was never synced, when the SIS rejected some of its objects (retry), or when its last sync is older
than `PASSBACK_RESYNC_HOURS` (posting hidden grades and editing assignments do not change graded_at).

With 5,000 courses, 200 per tick and a 60 s interval: 200 Canvas calls per tick at most, every course
checked every 25 ticks (about 25 minutes).
"""


import datetime as dt
import json
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from assets.passback import EXPORT, OBJECTS, PASSBACK, active_runs, passback_job
from pipeline import settings
from pipeline.datadir import DataDir
from pipeline.partitions import SCHOOL_TERM
from pipeline.passback.config import PassbackSettings
from pipeline.passback.export import newest_graded_at, provisioned_courses
from pipeline.passback.ledger import LEDGER_FILE, Ledger
from pipeline.resources.canvas import CanvasClient, CanvasError

EXPORT_OP = "gradebook__canvas_export"
# Canvas calls in flight during a tick: a few at once keep a tick of 200 checks well inside Dagster's
# sensor timeout without tripping Canvas's penalty for parallel requests.
CHECK_CONCURRENCY = 4
# Dagster fails a sensor evaluation after 60 s, and a failed tick does not save its cursor: a tick stops
# checking after this long (checks in flight finish, each bounded by the timeout below).
TICK_BUDGET_SECONDS = 30.0
# The sensor's Canvas calls fail fast instead of retrying: a course Canvas cannot answer now is checked
# again on the next pass (or requested by the resync, so its run reports the error).
CHECK_TIMEOUT_SECONDS = 10.0
CHECK_RETRIES = 0
NOT_CHECKED = "not checked"  # the tick's time budget ran out before the course's turn
CHECK_FAILED = "check failed"
RUN_IN_PROGRESS = "run in progress"
TERM_TAG = "rosterbridge/passback_term"
GRADEBOOK_KEYS = frozenset({EXPORT, OBJECTS, PASSBACK})
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class Cursor:
    position: int = 0  # index of the next (term, course) to check
    rotation: int = 0  # completed passes over all courses

    @classmethod
    def parse(cls, text: str | None) -> "Cursor":
        if not text:
            return cls()
        data = json.loads(text)
        return cls(position=int(data.get("position", 0)), rotation=int(data.get("rotation", 0)))

    def dump(self) -> str:
        return json.dumps({"position": self.position, "rotation": self.rotation}, sort_keys=True)


@dataclass(frozen=True)
class CourseState:
    graded_through: dt.datetime | None  # Canvas graded_at up to which the SIS has the course's grades
    synced_at: dt.datetime | None  # when a run last finished the course (None: never)
    rejections: int


@dataclass
class TickPlan:
    cursor: Cursor
    changed: dict[str, list[str]]  # term → courses to request
    checked: int = 0
    canvas_calls: int = 0
    reasons: dict[str, int] | None = None
    failures: list[str] = field(default_factory=list)  # courses whose Canvas check failed: skipped this pass


def _local_reason(state: CourseState | None, now: dt.datetime, resync: dt.timedelta,
                  rejection_retry: dt.timedelta) -> str | None:
    """Why a course is due without asking Canvas; None when only Canvas can tell. A course the SIS keeps
    rejecting is retried at most every `rejection_retry` (its runs end by marking it synced)."""
    if state is None or state.synced_at is None:
        return "never synced"
    since_sync = now - state.synced_at
    if state.rejections and since_sync >= rejection_retry:
        return "rejections to retry"
    if since_sync >= resync:
        return "resync due"
    return None


def plan_tick(
    cursor: Cursor,
    courses: list[tuple[str, str]],
    states: dict[tuple[str, str], CourseState],
    graded_since: Callable[[str, dt.datetime], bool],
    *,
    budget: int,
    now: dt.datetime,
    resync: dt.timedelta,
    concurrency: int = 1,
    time_budget: float | None = None,
    rejection_retry: dt.timedelta = dt.timedelta(hours=1),
    busy_terms: frozenset[str] = frozenset(),
) -> TickPlan:
    """Check the next `budget` (term, course) pairs; `graded_since(course, t)` asks Canvas (one call),
    up to `concurrency` calls at once. A course whose call fails is skipped this pass (listed in
    `failures`); once `time_budget` seconds have passed no new call starts and the cursor stops at the
    first course not checked. Courses of `busy_terms` (a passback run of the term is queued or running)
    are passed over without a call: two runs of a term would send the same objects twice, and the
    older one finishing last could overwrite a newer grade."""
    if not courses:
        return TickPlan(cursor=cursor, changed={})
    deadline = None if time_budget is None else time.monotonic() + time_budget
    if cursor.position >= len(courses):  # the list shrank below the cursor: that pass is over
        cursor = Cursor(position=0, rotation=cursor.rotation + 1)
    start = cursor.position
    count = min(budget, len(courses))
    window = [courses[(start + i) % len(courses)] for i in range(count)]
    reasons = {pair: RUN_IN_PROGRESS if pair[0] in busy_terms else _local_reason(states.get(pair), now, resync, rejection_retry)
               for pair in window}
    ask = [pair for pair in window if reasons[pair] is None]
    failures: dict[tuple[str, str], str] = {}

    def canvas_says(pair: tuple[str, str]) -> str | None:
        if deadline is not None and time.monotonic() >= deadline:
            return NOT_CHECKED
        try:
            return "new grades" if graded_since(pair[1], states[pair].graded_through or EPOCH) else None
        except CanvasError as exc:
            failures[pair] = f"{pair[0]}/{pair[1]}: {exc}"
            return CHECK_FAILED

    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="grade-check") as pool:
        for pair, outcome in zip(ask, pool.map(canvas_says, ask)):
            reasons[pair] = outcome
    done = next((i for i, pair in enumerate(window) if reasons[pair] == NOT_CHECKED), count)
    window = window[:done]
    plan = TickPlan(
        cursor=Cursor(position=(start + done) % len(courses), rotation=cursor.rotation + (start + done) // len(courses)),
        changed={}, checked=done, canvas_calls=sum(1 for pair in ask if reasons[pair] != NOT_CHECKED),
        reasons={"never synced": 0, "rejections to retry": 0, "resync due": 0, "new grades": 0, CHECK_FAILED: 0,
                 RUN_IN_PROGRESS: 0},
        failures=[failures[pair] for pair in window if pair in failures],
    )
    for term, course in window:
        reason = reasons[(term, course)]
        if reason:
            plan.reasons[reason] += 1
            if reason not in (CHECK_FAILED, RUN_IN_PROGRESS):
                plan.changed.setdefault(term, []).append(course)
    return plan


def _parse_instant(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


def ledger_states(data_dir: DataDir, term: str) -> dict[tuple[str, str], CourseState]:
    path = data_dir.gradebook_dir(term) / LEDGER_FILE
    if not path.exists():
        return {}
    with Ledger(path, read_only=True) as ledger:
        return {
            (term, course): CourseState(_parse_instant(through), _parse_instant(synced_at), rejections)
            for course, (through, synced_at, rejections) in ledger.course_states().items()
        }


def canvas_graded_since(session) -> Callable[[str, dt.datetime], bool]:
    """One Canvas call: the course's latest submission graded after `since`.

    Canvas compares graded_since with its stored (sub-second) graded_at but shows whole seconds, so
    the newest grade is asked for and compared in what Canvas shows: the grade the watermark came
    from never counts as new again.
    """

    def graded_since(course: str, since: dt.datetime) -> bool:
        try:
            newest = newest_graded_at(session, f"/api/v1/courses/sis_course_id:{course}", since)
        except CanvasError as exc:
            if exc.status_code == 404:  # gone from Canvas: nothing to pass back
                return False
            raise
        return newest is not None and newest > since

    return graded_since


def busy_terms(instance: dg.DagsterInstance) -> frozenset[str]:
    """Terms with a gradebook run queued or running: the passback job's, or gradebook assets
    materialized on their own."""
    busy = set()
    for run in active_runs(instance):
        term = run.tags.get("dagster/partition")
        if term and (run.job_name == passback_job.name or GRADEBOOK_KEYS & set(run.asset_selection or ())):
            busy.add(term)
    return frozenset(busy)


def run_requests(plan: TickPlan, now: dt.datetime) -> list[dg.RunRequest]:
    """One run per term. The run key names the tick's time: Dagster silently drops a request whose key
    was used before, and positions and rotations repeat (the course list changes, the cursor is reset);
    the sensor itself keeps runs of a term from overlapping."""
    tick = now.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    return [
        dg.RunRequest(
            run_key=f"passback:{term}:{tick}:{plan.cursor.rotation}:{plan.cursor.position}",
            partition_key=term,
            run_config={"ops": {EXPORT_OP: {"config": {"courses": courses}}}},
            tags={"rosterbridge/passback_courses": str(len(courses)), TERM_TAG: term},
        )
        for term, courses in sorted(plan.changed.items())
    ]


@dg.sensor(
    name="grade_change_sensor",
    target=passback_job,
    minimum_interval_seconds=settings.get_int("PASSBACK_SENSOR_INTERVAL_SECONDS", minimum=1),
    description="Requests gradebook_passback runs (per term, naming the courses) for Canvas courses with new "
    "grades, unsynced courses, courses with SIS rejections to retry and courses due a periodic resync. "
    "At most PASSBACK_SENSOR_COURSES_PER_TICK Canvas calls per tick.",
)
def grade_change_sensor(context: dg.SensorEvaluationContext, canvas: CanvasClient, data_dir: DataDir,
                        passback: PassbackSettings) -> dg.SensorResult:
    cursor = Cursor.parse(context.cursor)
    terms = sorted(context.instance.get_dynamic_partitions(SCHOOL_TERM))
    courses = [(term, course) for term in terms for course in provisioned_courses(data_dir, term)]
    if not courses:
        return dg.SensorResult(skip_reason="no provisioned Canvas courses yet (run the nightly sync first)", cursor=cursor.dump())
    states: dict[tuple[str, str], CourseState] = {}
    for term in terms:
        states.update(ledger_states(data_dir, term))
    now = dt.datetime.now(dt.timezone.utc)
    checker = canvas.model_copy(update={"timeout_seconds": min(canvas.timeout_seconds, CHECK_TIMEOUT_SECONDS),
                                        "max_retries": CHECK_RETRIES})
    with checker.open() as session:
        plan = plan_tick(cursor, courses, states, canvas_graded_since(session), budget=passback.sensor_courses_per_tick,
                         now=now, resync=dt.timedelta(hours=passback.resync_hours), concurrency=CHECK_CONCURRENCY,
                         time_budget=TICK_BUDGET_SECONDS, busy_terms=busy_terms(context.instance),
                         rejection_retry=dt.timedelta(hours=passback.rejection_retry_hours))
    summary = f"checked {plan.checked} of {len(courses)} courses with {plan.canvas_calls} Canvas calls"
    if plan.reasons and plan.reasons[RUN_IN_PROGRESS]:
        summary += f"; {plan.reasons[RUN_IN_PROGRESS]} passed over (their term's passback run is queued or running)"
    if plan.failures:
        summary += f"; {len(plan.failures)} Canvas checks failed (checked again next pass), first: {plan.failures[0]}"
        context.log.warning(summary)
    if not plan.changed:
        return dg.SensorResult(skip_reason=f"no grade changes: {summary}", cursor=plan.cursor.dump())
    context.log.info(f"{summary}; requesting {sum(map(len, plan.changed.values()))} courses: {plan.reasons}")
    return dg.SensorResult(run_requests=run_requests(plan, now), cursor=plan.cursor.dump())


defs = dg.Definitions(sensors=[grade_change_sensor])
