"""Assignments, submissions and computed course scores in the demo Canvas.

`seed_courses` gives every course that has students (and no assignments yet) a realistic gradebook,
deterministic per (seed, course SIS id): weighted or points-based assignment groups; plain assignments,
graded discussions and graded quizzes; some not `post_to_sis`, one unpublished; due dates inside the
course's (or term's) dates; graded, unposted (manual posting), excused, missing and late submissions.
Course scores follow Canvas's rules: current = graded work only, final = ungraded counts as zero; the
unposted_* variants include grades the students cannot see yet.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import random
import sqlite3
from dataclasses import dataclass



@dataclass(frozen=True)
class _AssignmentPlan:
    name: str
    group: str
    points: float
    submission_types: tuple[str, ...]
    term_fraction: float  # where in the term it is due
    post_to_sis: bool = True
    published: bool = True
    post_manually: bool = False
    section_override: bool = False


GROUPS = (("Assignments", 40.0), ("Quizzes", 25.0), ("Discussions", 10.0), ("Tests", 25.0))
PLANS = (
    _AssignmentPlan("Homework 1", "Assignments", 10, ("online_text_entry",), 0.10),
    _AssignmentPlan("Reading discussion", "Discussions", 5, ("discussion_topic",), 0.18),
    _AssignmentPlan("Quiz 1", "Quizzes", 20, ("online_quiz",), 0.25),
    _AssignmentPlan("Practice worksheet", "Assignments", 5, ("online_text_entry",), 0.30, post_to_sis=False),
    _AssignmentPlan("Homework 2", "Assignments", 10, ("online_upload",), 0.40, section_override=True),
    _AssignmentPlan("Unit test", "Tests", 100, ("on_paper",), 0.50, post_manually=True),
    _AssignmentPlan("Quiz 2", "Quizzes", 20, ("online_quiz",), 0.60, published=False),
    _AssignmentPlan("Final project", "Assignments", 50, ("online_upload",), 0.90),
)


def _utc(text: str | None) -> dt.datetime | None:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc) if text else None


@functools.lru_cache(maxsize=65536)  # seeding formats the same few hundred instants per assignment
def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def grade_text(score: float | None) -> str | None:
    """A points grade as Canvas shows it: "8.5", "10"."""
    return None if score is None else f"{score:g}"


def add_submission_placeholders(conn: sqlite3.Connection) -> None:
    """Canvas keeps an (unsubmitted) submission for every student of every assignment."""
    conn.execute(
        "INSERT OR IGNORE INTO submissions (assignment_id, user_id, workflow_state) SELECT a.id, e.user_id, "
        "'unsubmitted' FROM assignments a JOIN enrollments e ON e.course_id = a.course_id "
        "AND e.type = 'StudentEnrollment' AND e.workflow_state != 'deleted'")


def seed_courses(conn: sqlite3.Connection, *, seed: int, course_sis_ids: list[str] | None = None,
                 now: dt.datetime | None = None) -> dict[str, int]:
    """Seed gradebooks for courses with students and no assignments; returns what was created."""
    now = now or dt.datetime.now(dt.timezone.utc)
    sql = ("SELECT c.id, c.sis_id, c.start_at, c.end_at, t.start_at AS term_start, t.end_at AS term_end "
           "FROM courses c JOIN terms t ON t.id = c.term_id WHERE c.workflow_state != 'deleted' "
           "AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.course_id = c.id) "
           "AND EXISTS (SELECT 1 FROM enrollments e WHERE e.course_id = c.id AND e.type = 'StudentEnrollment' "
           "AND e.workflow_state != 'deleted')")
    courses = conn.execute(sql).fetchall()
    if course_sis_ids is not None:
        wanted = set(course_sis_ids)
        courses = [c for c in courses if c["sis_id"] in wanted]
    created = {"courses": 0, "assignment_groups": 0, "assignments": 0, "graded_submissions": 0}
    for course in courses:
        _seed_course(conn, course, seed, now, created)
    add_submission_placeholders(conn)
    return created


def _seed_course(conn: sqlite3.Connection, course: sqlite3.Row, seed: int, now: dt.datetime,
                 created: dict[str, int]) -> None:
    digest = hashlib.sha256(f"{seed}:{course['sis_id'] or course['id']}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    start = _utc(course["start_at"]) or _utc(course["term_start"]) or now - dt.timedelta(days=60)
    end = _utc(course["end_at"]) or _utc(course["term_end"]) or now + dt.timedelta(days=60)
    if end <= start:
        end = start + dt.timedelta(days=90)
    weighted = rng.random() < 0.5
    conn.execute("UPDATE courses SET apply_assignment_group_weights = ? WHERE id = ?", (int(weighted), course["id"]))
    group_ids = {}
    for position, (name, weight) in enumerate(GROUPS, start=1):
        group_ids[name] = conn.execute(
            "INSERT INTO assignment_groups (course_id, name, position, group_weight) VALUES (?, ?, ?, ?)",
            (course["id"], name, position, weight)).lastrowid
    sections = [r[0] for r in conn.execute("SELECT id FROM sections WHERE course_id = ? AND workflow_state = 'active' "
                                           "ORDER BY id", (course["id"],))]
    students = [r[0] for r in conn.execute(
        "SELECT DISTINCT user_id FROM enrollments WHERE course_id = ? AND type = 'StudentEnrollment' "
        "AND workflow_state != 'deleted' ORDER BY user_id", (course["id"],))]
    for position, plan in enumerate(PLANS, start=1):
        due = start + (end - start) * plan.term_fraction
        due = due.replace(hour=23, minute=59, second=0, microsecond=0)
        assignment_id = conn.execute(
            "INSERT INTO assignments (course_id, assignment_group_id, name, position, points_possible, grading_type, "
            "submission_types, due_at, published, post_to_sis, post_manually, created_at) "
            "VALUES (?, ?, ?, ?, ?, 'points', ?, ?, ?, ?, ?, ?)",
            (course["id"], group_ids[plan.group], plan.name, position, plan.points,
             json.dumps(list(plan.submission_types)), _iso(due), int(plan.published), int(plan.post_to_sis),
             int(plan.post_manually), _iso(min(start, now)))).lastrowid
        created["assignments"] += 1
        if plan.section_override and sections:
            conn.execute("INSERT INTO assignment_overrides (assignment_id, section_id, due_at, title) "
                         "SELECT ?, id, ?, name FROM sections WHERE id = ?",
                         (assignment_id, _iso(due + dt.timedelta(days=2)), sections[0]))
        if not plan.published or due > now:
            continue
        rows = [_graded_submission(rng, plan, due, now, assignment_id, student) for student in students]
        conn.executemany(
            "INSERT OR REPLACE INTO submissions (assignment_id, user_id, score, grade, excused, missing, late, "
            "workflow_state, graded_at, posted_at, submitted_at, attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows)
        created["graded_submissions"] += sum(1 for r in rows if r[7] == "graded")
    created["courses"] += 1
    created["assignment_groups"] += len(GROUPS)


def _graded_submission(rng: random.Random, plan: _AssignmentPlan, due: dt.datetime, now: dt.datetime,
                       assignment_id: int, student: int) -> tuple:
    graded_at = min(due + dt.timedelta(hours=2 + int(rng.random() * 95)), now - dt.timedelta(minutes=1))
    posted_at = None if plan.post_manually else _iso(graded_at)
    roll = rng.random()
    if roll < 0.04:  # excused
        return (assignment_id, student, None, None, 1, 0, 0, "graded", _iso(graded_at), posted_at, None, None)
    if roll < 0.10:  # missing: nothing turned in; half the teachers enter a zero
        score = 0.0 if rng.random() < 0.5 else None
        return (assignment_id, student, score, grade_text(score), 0, 1, 0, "graded" if score is not None else "unsubmitted",
                _iso(graded_at) if score is not None else None, posted_at if score is not None else None, None, None)
    late = roll < 0.18
    submitted = due + dt.timedelta(hours=1 + int(rng.random() * 48)) if late else due - dt.timedelta(hours=1 + int(rng.random() * 72))
    submitted = min(submitted, graded_at - dt.timedelta(minutes=5))
    fraction = min(1.0, max(0.0, rng.gauss(0.82, 0.12)))
    score = round(plan.points * fraction * 2) / 2
    return (assignment_id, student, score, grade_text(score), 0, 0, int(late), "graded", _iso(graded_at),
            posted_at, _iso(submitted), 1)


class GradeError(LookupError):
    """set_grade named a course, assignment or student the demo Canvas does not have."""


def set_grade(conn: sqlite3.Connection, course_sis_id: str, assignment_id: int, user_sis_id: str, *,
              score: float | None = None, excused: bool | None = None, posted: bool | None = None) -> dict:
    """Grade one submission as a teacher would; graded_at moves past every earlier grade."""
    course = conn.execute("SELECT id FROM courses WHERE sis_id = ?", (course_sis_id,)).fetchone()
    if course is None:
        raise GradeError(f"no course with SIS id {course_sis_id!r}")
    assignment = conn.execute("SELECT id, post_manually FROM assignments WHERE id = ? AND course_id = ?",
                              (assignment_id, course["id"])).fetchone()
    if assignment is None:
        raise GradeError(f"no assignment {assignment_id} in course {course_sis_id!r}")
    user = conn.execute("SELECT id FROM users WHERE sis_id = ?", (user_sis_id,)).fetchone()
    if user is None:
        raise GradeError(f"no user with SIS id {user_sis_id!r}")
    current = conn.execute("SELECT * FROM submissions WHERE assignment_id = ? AND user_id = ?",
                           (assignment_id, user["id"])).fetchone()
    latest = conn.execute("SELECT MAX(graded_at) FROM submissions").fetchone()[0]
    graded_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    if latest and _utc(latest[:19] + "Z") >= graded_at:
        graded_at = _utc(latest[:19] + "Z") + dt.timedelta(seconds=1)
    is_excused = bool(excused) if excused is not None else bool(current and current["excused"])
    new_score = None if is_excused else (score if score is not None else (current["score"] if current else None))
    if posted is True:
        posted_at = _iso(graded_at)
    elif posted is False:
        posted_at = None
    elif assignment["post_manually"]:
        posted_at = current["posted_at"] if current else None
    else:
        posted_at = _iso(graded_at)
    conn.execute(
        "INSERT INTO submissions (assignment_id, user_id, score, grade, excused, missing, late, workflow_state, "
        "graded_at, posted_at) VALUES (?, ?, ?, ?, ?, 0, 0, 'graded', ?, ?) ON CONFLICT (assignment_id, user_id) "
        "DO UPDATE SET score = excluded.score, grade = excluded.grade, excused = excluded.excused, missing = 0, "
        "workflow_state = 'graded', graded_at = excluded.graded_at, posted_at = excluded.posted_at",
        (assignment_id, user["id"], new_score, grade_text(new_score), int(is_excused), _iso(graded_at), posted_at))
    return dict(conn.execute("SELECT * FROM submissions WHERE assignment_id = ? AND user_id = ?",
                             (assignment_id, user["id"])).fetchone())


def course_scores(conn: sqlite3.Connection, course_id: int) -> dict[int, dict[str, float | None]]:
    """Per student: current/final score and their unposted variants, plus current points."""
    weighted = bool(conn.execute("SELECT apply_assignment_group_weights FROM courses WHERE id = ?",
                                 (course_id,)).fetchone()[0])
    rows = conn.execute(
        "SELECT s.user_id, a.assignment_group_id AS grp, g.group_weight, a.points_possible, s.score, s.excused, "
        "s.posted_at FROM submissions s JOIN assignments a ON a.id = s.assignment_id "
        "JOIN assignment_groups g ON g.id = a.assignment_group_id WHERE a.course_id = ? AND a.published = 1 "
        "AND a.omit_from_final_grade = 0 AND a.points_possible > 0", (course_id,)).fetchall()
    by_user: dict[int, list[sqlite3.Row]] = {}
    for row in rows:
        by_user.setdefault(row["user_id"], []).append(row)
    result = {}
    for user_id, subs in by_user.items():
        scores: dict[str, float | None] = {}
        for prefix, include_unposted in (("", False), ("unposted_", True)):
            visible = [(r, r["score"] if (include_unposted or r["posted_at"]) else None) for r in subs if not r["excused"]]
            scores[f"{prefix}current_score"] = _score(visible, weighted, count_ungraded=False)
            scores[f"{prefix}final_score"] = _score(visible, weighted, count_ungraded=True)
            scores[f"{prefix}current_points"] = sum(s for _, s in visible if s is not None) if visible else None
        result[user_id] = scores
    return result


def _score(visible: list[tuple[sqlite3.Row, float | None]], weighted: bool, *, count_ungraded: bool) -> float | None:
    groups: dict[int, list[float]] = {}
    weights: dict[int, float] = {}
    for row, score in visible:
        if score is None and not count_ungraded:
            continue
        earned_possible = groups.setdefault(row["grp"], [0.0, 0.0])
        earned_possible[0] += score or 0.0
        earned_possible[1] += row["points_possible"]
        weights[row["grp"]] = row["group_weight"]
    if not groups:
        return None
    if weighted:
        total_weight = sum(weights[g] for g, (_, possible) in groups.items() if possible)
        if not total_weight:
            return None
        value = sum(weights[g] * earned / possible for g, (earned, possible) in groups.items() if possible) / total_weight
        return round(value * 100, 2)
    earned = sum(e for e, _ in groups.values())
    possible = sum(p for _, p in groups.values())
    return round(earned / possible * 100, 2) if possible else None

