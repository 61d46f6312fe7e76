"""The demo Canvas's read APIs over its state: accounts, terms, courses, sections, enrollments,
assignments (v1 and the SIS integration API) and submissions, shaped like Canvas's JSON.

Handlers take the parsed request and return an `ApiResult`; lists come back whole and the server pages
them with Canvas `Link` headers.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from pipeline.demo.canvas_grades import course_scores
from pipeline.demo.canvas_state import ROOT_ACCOUNT_ID, CanvasDB

NOT_FOUND = {"errors": [{"message": "The specified resource does not exist."}]}
COURSE_STATES = {"created": "unpublished", "claimed": "unpublished", "available": "available",
                 "completed": "completed", "deleted": "deleted"}
_COURSE_STATE_FILTERS = {"unpublished": ("created", "claimed"), "available": ("available",)}
ROLE_IDS = {"StudentEnrollment": 3, "TeacherEnrollment": 4, "TaEnrollment": 5, "DesignerEnrollment": 6,
            "ObserverEnrollment": 7}


@dataclass
class ApiRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any
    body: bytes = b""
    form: dict[str, list[str]] = field(default_factory=dict)

    def param(self, name: str) -> str | None:
        for source in (self.form, self.query):
            if name in source and source[name]:
                return source[name][0]
        return None

    def params(self, name: str) -> list[str]:
        """`name[]=a&name[]=b` (Rails arrays) or repeated `name=`."""
        return self.query.get(f"{name}[]", []) + self.query.get(name, [])


@dataclass
class ApiResult:
    status: int
    body: Any
    paginate: bool = False
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    def __init__(self, status: int, body: Any):
        super().__init__(status)
        self.status, self.body = status, body


def parse_time(value: str | None, name: str) -> str | None:
    """An ISO 8601 parameter as a comparable UTC string; 400 naming the parameter when it is not one."""
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, {"errors": [{"message": f"Invalid datetime for {name}"}]}) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sis_ref(raw: str, prefix: str) -> str | None:
    raw = unquote(raw)
    return raw[len(prefix) + 1:] if raw.startswith(prefix + ":") else None


class ReadApi:
    def __init__(self, db: CanvasDB):
        self.db = db

    # --- id resolution -------------------------------------------------------------------------------
    def account_id(self, raw: str) -> int:
        if raw == "self":
            return ROOT_ACCOUNT_ID
        sis = _sis_ref(raw, "sis_account_id")
        found = self.db.scalar("SELECT id FROM accounts WHERE sis_id = ?", (sis,)) if sis is not None else (
            self.db.scalar("SELECT id FROM accounts WHERE id = ?", (int(raw),)) if raw.isdigit() else None)
        if found is None:
            raise ApiError(404, NOT_FOUND)
        return found

    def course(self, raw: str) -> dict:
        sis = _sis_ref(raw, "sis_course_id")
        if sis is not None:
            rows = self.db.query(_COURSE_SQL + " WHERE c.sis_id = ?", (sis,))
        elif raw.isdigit():
            rows = self.db.query(_COURSE_SQL + " WHERE c.id = ?", (int(raw),))
        else:
            rows = []
        if not rows or rows[0]["workflow_state"] == "deleted":
            raise ApiError(404, NOT_FOUND)
        return rows[0]

    def term_id(self, raw: str) -> int | None:
        sis = _sis_ref(raw, "sis_term_id")
        if sis is not None:
            return self.db.scalar("SELECT id FROM terms WHERE sis_id = ?", (sis,))
        return self.db.scalar("SELECT id FROM terms WHERE id = ?", (int(raw),)) if raw.isdigit() else None

    def user_id(self, raw: str) -> int | None:
        sis = _sis_ref(raw, "sis_user_id")
        if sis is not None:
            return self.db.scalar("SELECT id FROM users WHERE sis_id = ?", (sis,))
        return int(raw) if raw.isdigit() else None

    # --- accounts and terms --------------------------------------------------------------------------
    def get_account(self, req: ApiRequest, account: str) -> ApiResult:
        row = self.db.query("SELECT * FROM accounts WHERE id = ?", (self.account_id(account),))[0]
        return ApiResult(200, _account_json(row))

    def list_sub_accounts(self, req: ApiRequest, account: str) -> ApiResult:
        """Active sub-accounts: children, or the whole subtree with `recursive=true`."""
        account_id = self.account_id(account)
        if req.param("recursive") == "true":
            rows = self.db.query(
                "WITH RECURSIVE subtree(id) AS (SELECT id FROM accounts WHERE parent_id = ? AND workflow_state != "
                "'deleted' UNION SELECT a.id FROM accounts a JOIN subtree s ON a.parent_id = s.id WHERE "
                "a.workflow_state != 'deleted') SELECT * FROM accounts WHERE id IN (SELECT id FROM subtree) ORDER BY id",
                (account_id,))
        else:
            rows = self.db.query("SELECT * FROM accounts WHERE parent_id = ? AND workflow_state != 'deleted' "
                                 "ORDER BY id", (account_id,))
        return ApiResult(200, [_account_json(r) for r in rows], paginate=True)

    def list_terms(self, req: ApiRequest, account: str) -> ApiResult:
        """`{"enrollment_terms": [...]}`; `workflow_state[]` is active (default), deleted or all."""
        self.account_id(account)
        states = req.params("workflow_state") or ["active"]
        where = "" if "all" in states else f"WHERE workflow_state IN ({','.join('?' * len(states))})"
        rows = self.db.query(f"SELECT * FROM terms {where} ORDER BY id", [] if "all" in states else states)
        return ApiResult(200, {"enrollment_terms": [
            {"id": r["id"], "name": r["name"], "sis_term_id": r["sis_id"], "start_at": r["start_at"],
             "end_at": r["end_at"], "workflow_state": r["workflow_state"], "sis_import_id": r["sis_import_id"],
             "integration_id": r["integration_id"]} for r in rows]}, paginate=True)

    # --- courses and sections ------------------------------------------------------------------------
    def list_account_courses(self, req: ApiRequest, account: str) -> ApiResult:
        account_id = self.account_id(account)
        where, params = ["c.account_id IN (SELECT id FROM subtree)"], [account_id]
        states = [stored for s in req.params("state") for stored in _COURSE_STATE_FILTERS.get(s, (s,))]
        if not states:
            where.append("c.workflow_state != 'deleted'")
        elif "all" not in states:
            where.append(f"c.workflow_state IN ({','.join('?' * len(states))})")
            params += states
        term = req.param("enrollment_term_id")
        if term is not None:
            where.append("c.term_id = ?")
            params.append(self.term_id(term) or -1)
        published = req.param("published")
        if published is not None:
            where.append("c.workflow_state %s 'available'" % ("=" if published == "true" else "!="))
        if req.param("with_enrollments") == "true":
            where.append("EXISTS (SELECT 1 FROM enrollments e WHERE e.course_id = c.id AND e.workflow_state != 'deleted')")
        search = req.param("search_term")
        if search:
            where.append("(c.name LIKE ? OR c.course_code LIKE ? OR c.sis_id LIKE ?)")
            params += [f"%{search}%"] * 3
        sql = ("WITH RECURSIVE subtree(id) AS (SELECT ? UNION SELECT a.id FROM accounts a JOIN subtree s "
               "ON a.parent_id = s.id) " + _COURSE_SQL + " WHERE " + " AND ".join(where) + " ORDER BY c.id")
        include = set(req.params("include"))
        return ApiResult(200, [self._course_json(r, include) for r in self.db.query(sql, params)], paginate=True)

    def get_course(self, req: ApiRequest, course: str) -> ApiResult:
        return ApiResult(200, self._course_json(self.course(course), set(req.params("include"))))

    @staticmethod
    def _course_json(r: dict, include: set[str]) -> dict:
        result = {
            "id": r["id"], "name": r["name"], "course_code": r["course_code"],
            "workflow_state": COURSE_STATES[r["workflow_state"]], "account_id": r["account_id"],
            "root_account_id": ROOT_ACCOUNT_ID, "enrollment_term_id": r["term_id"], "sis_course_id": r["sis_id"],
            "integration_id": r["integration_id"], "sis_import_id": r["sis_import_id"], "start_at": r["start_at"],
            "end_at": r["end_at"], "course_format": r["course_format"],
            "grade_passback_setting": r["grade_passback_setting"],
            "apply_assignment_group_weights": bool(r["apply_assignment_group_weights"]),
            "default_view": "modules", "is_public": False, "time_zone": "Etc/UTC",
        }
        if "term" in include:
            result["term"] = {"id": r["term_id"], "name": r["term_name"], "sis_term_id": r["term_sis_id"],
                              "start_at": r["term_start"], "end_at": r["term_end"]}
        return result

    def list_sections(self, req: ApiRequest, course: str) -> ApiResult:
        row = self.course(course)
        sections = self.db.query(
            "SELECT s.*, (SELECT COUNT(*) FROM enrollments e WHERE e.section_id = s.id AND e.type = 'StudentEnrollment' "
            "AND e.workflow_state = 'active') AS students FROM sections s WHERE s.course_id = ? "
            "AND s.workflow_state != 'deleted' ORDER BY s.id", (row["id"],))
        include = set(req.params("include"))
        result = []
        for s in sections:
            item = {"id": s["id"], "name": s["name"], "course_id": row["id"], "sis_section_id": s["sis_id"],
                    "sis_course_id": row["sis_id"], "integration_id": s["integration_id"],
                    "sis_import_id": s["sis_import_id"], "start_at": s["start_at"], "end_at": s["end_at"],
                    "restrict_enrollments_to_section_dates": bool(s["start_at"] or s["end_at"]),
                    "nonxlist_course_id": None}
            if "total_students" in include:
                item["total_students"] = s["students"]
            result.append(item)
        return ApiResult(200, result, paginate=True)

    # --- enrollments ---------------------------------------------------------------------------------
    def list_enrollments(self, req: ApiRequest, course: str) -> ApiResult:
        row = self.course(course)
        where, params = ["e.course_id = ?"], [row["id"]]
        for column, values in (("e.type", req.params("type")), ("e.role", req.params("role"))):
            if values:
                where.append(f"{column} IN ({','.join('?' * len(values))})")
                params += values
        states = _enrollment_states(req.params("state"))
        where.append(f"e.workflow_state IN ({','.join('?' * len(states))})")
        params += states
        if req.param("user_id"):
            where.append("e.user_id = ?")
            params.append(self.user_id(req.param("user_id")) or -1)
        for column, values in (("u.sis_id", req.params("sis_user_id")), ("s.sis_id", req.params("sis_section_id"))):
            if values:
                where.append(f"{column} IN ({','.join('?' * len(values))})")
                params += values
        rows = self.db.query(_ENROLLMENT_SQL + " WHERE " + " AND ".join(where) + " ORDER BY e.id", params)
        scores = course_scores_for(self.db, row["id"]) if any(r["type"] == "StudentEnrollment" for r in rows) else {}
        return ApiResult(200, [self._enrollment_json(r, row, scores) for r in rows], paginate=True)

    @staticmethod
    def _enrollment_json(r: dict, course: dict, scores: dict) -> dict:
        result = {
            "id": r["id"], "user_id": r["user_id"], "course_id": course["id"], "course_section_id": r["section_id"],
            "type": r["type"], "role": r["role"], "role_id": ROLE_IDS.get(r["role"]),
            "enrollment_state": r["workflow_state"], "associated_user_id": r["associated_user_id"] or None,
            "root_account_id": ROOT_ACCOUNT_ID, "sis_user_id": r["user_sis_id"], "sis_course_id": course["sis_id"],
            "sis_section_id": r["section_sis_id"], "sis_account_id": course["account_sis_id"],
            "course_integration_id": course["integration_id"], "section_integration_id": r["section_integration_id"],
            "sis_import_id": r["sis_import_id"], "start_at": r["start_at"], "end_at": r["end_at"],
            "limit_privileges_to_course_section": False, "html_url": f"/courses/{course['id']}/users/{r['user_id']}",
            "user": {"id": r["user_id"], "name": r["user_name"], "sortable_name": r["sortable_name"],
                     "short_name": r["short_name"], "sis_user_id": r["user_sis_id"],
                     "integration_id": r["user_integration_id"], "login_id": r["login_id"]},
        }
        if r["type"] == "StudentEnrollment":
            s = scores.get(r["user_id"], {})
            result["grades"] = {
                "html_url": f"/courses/{course['id']}/grades/{r['user_id']}",
                "current_score": s.get("current_score"), "final_score": s.get("final_score"),
                "current_grade": None, "final_grade": None,
                "unposted_current_score": s.get("unposted_current_score"),
                "unposted_final_score": s.get("unposted_final_score"),
                "unposted_current_grade": None, "unposted_final_grade": None,
                "current_points": s.get("current_points"), "unposted_current_points": s.get("unposted_current_points"),
            }
        return result

    # --- assignments ---------------------------------------------------------------------------------
    def list_assignment_groups(self, req: ApiRequest, course: str) -> ApiResult:
        row = self.course(course)
        groups = self.db.query("SELECT * FROM assignment_groups WHERE course_id = ? ORDER BY position, id", (row["id"],))
        include = set(req.params("include"))
        assignments = self._assignments(row["id"]) if "assignments" in include else []
        result = []
        for g in groups:
            item = _group_json(g)
            item["rules"] = {}
            if "assignments" in include:
                item["assignments"] = [a for a in assignments if a["assignment_group_id"] == g["id"]]
            result.append(item)
        return ApiResult(200, result, paginate=True)

    def list_assignments(self, req: ApiRequest, course: str) -> ApiResult:
        row = self.course(course)
        return ApiResult(200, self._assignments(row["id"], "overrides" in set(req.params("include"))), paginate=True)

    def _assignments(self, course_id: int, with_overrides: bool = False) -> list[dict]:
        rows = self.db.query("SELECT * FROM assignments WHERE course_id = ? ORDER BY position, id", (course_id,))
        overrides = self._overrides(course_id)
        result = []
        for a in rows:
            item = {
                "id": a["id"], "name": a["name"], "description": None, "course_id": course_id,
                "assignment_group_id": a["assignment_group_id"], "position": a["position"],
                "points_possible": a["points_possible"], "grading_type": a["grading_type"],
                "submission_types": json.loads(a["submission_types"]), "due_at": a["due_at"], "lock_at": None,
                "unlock_at": None, "published": bool(a["published"]), "post_to_sis": bool(a["post_to_sis"]),
                "integration_id": a["integration_id"], "integration_data": {},
                "omit_from_final_grade": bool(a["omit_from_final_grade"]), "post_manually": bool(a["post_manually"]),
                "has_overrides": a["id"] in overrides, "only_visible_to_overrides": False, "created_at": a["created_at"],
                "html_url": f"/courses/{course_id}/assignments/{a['id']}",
            }
            if with_overrides:
                item["overrides"] = [{"id": o["id"], "assignment_id": a["id"], "course_section_id": o["section_id"],
                                      "due_at": o["due_at"], "title": o["title"]} for o in overrides.get(a["id"], [])]
            result.append(item)
        return result

    def _overrides(self, course_id: int) -> dict[int, list[dict]]:
        result: dict[int, list[dict]] = {}
        for o in self.db.query("SELECT o.* FROM assignment_overrides o JOIN assignments a ON a.id = o.assignment_id "
                               "WHERE a.course_id = ? ORDER BY o.id", (course_id,)):
            result.setdefault(o["assignment_id"], []).append(o)
        return result

    def list_sis_assignments(self, req: ApiRequest, course: str) -> ApiResult:
        """`/api/sis/courses/:id/assignments`: published post_to_sis assignments with group and sections."""
        row = self.course(course)
        if row["workflow_state"] != "available":
            raise ApiError(400, {"code": "unpublished_course",
                                 "error": "Grade data is not available for non-published courses"})
        groups = {g["id"]: g for g in self.db.query("SELECT * FROM assignment_groups WHERE course_id = ?", (row["id"],))}
        sections = self.db.query("SELECT * FROM sections WHERE course_id = ? AND workflow_state != 'deleted' "
                                 "ORDER BY id", (row["id"],))
        overrides = self._overrides(row["id"])
        result = []
        for a in self.db.query("SELECT * FROM assignments WHERE course_id = ? AND published = 1 AND post_to_sis = 1 "
                               "ORDER BY position, id", (row["id"],)):
            by_section = {o["section_id"]: o for o in overrides.get(a["id"], [])}
            item_sections = []
            for s in sections:
                section = {"id": s["id"], "name": s["name"], "sis_id": s["sis_id"], "integration_id": s["integration_id"],
                           "origin_course": {"id": row["id"], "sis_id": row["sis_id"],
                                             "integration_id": row["integration_id"]},
                           "xlist_course": None}
                if s["id"] in by_section:
                    section["override"] = {"override_title": by_section[s["id"]]["title"],
                                           "due_at": by_section[s["id"]]["due_at"]}
                item_sections.append(section)
            item = {"id": a["id"], "course_id": row["id"], "name": a["name"], "created_at": a["created_at"],
                    "due_at": a["due_at"], "points_possible": a["points_possible"],
                    "integration_id": a["integration_id"], "integration_data": {},
                    "include_in_final_grade": not a["omit_from_final_grade"],
                    "submission_types": json.loads(a["submission_types"]),
                    "assignment_group": _group_json(groups[a["assignment_group_id"]]), "sections": item_sections}
            if "student_overrides" in set(req.params("include")):
                item["user_overrides"] = []
            result.append(item)
        return ApiResult(200, result, paginate=True)

    # --- submissions ---------------------------------------------------------------------------------
    def list_student_submissions(self, req: ApiRequest, course: str) -> ApiResult:
        row = self.course(course)
        graded_since = parse_time(req.param("graded_since"), "graded_since")
        submitted_since = parse_time(req.param("submitted_since"), "submitted_since")
        student_ids = req.params("student_ids")
        if not student_ids:
            return ApiResult(200, [], paginate=True)  # "the calling user": the admin token has no submissions
        where, params = ["a.course_id = ?", "a.published = 1", "e.type = 'StudentEnrollment'"], [row["id"]]
        if "all" not in student_ids:
            if len(student_ids) > 100:
                raise ApiError(400, {"error": "too many students"})
            ids = [self.user_id(s) or -1 for s in student_ids]
            where.append(f"s.user_id IN ({','.join('?' * len(ids))})")
            params += ids
        assignment_ids = req.params("assignment_ids")
        if assignment_ids:
            where.append(f"a.id IN ({','.join('?' * len(assignment_ids))})")
            params += [int(a) if a.isdigit() else -1 for a in assignment_ids]
        enrollment_state = req.param("enrollment_state")
        where.append({"active": "e.workflow_state = 'active'", "concluded": "e.workflow_state = 'completed'"}.get(
            enrollment_state or "", "e.workflow_state != 'deleted'"))
        if req.param("post_to_sis") == "true":
            where.append("a.post_to_sis = 1 AND e.created_by_sis = 1")
        if graded_since:
            where.append("s.graded_at > ?")
            params.append(graded_since)
        if submitted_since:
            where.append("s.submitted_at > ?")
            params.append(submitted_since)
        state = req.param("workflow_state")
        if state:
            where.append("s.workflow_state = ?")
            params.append(state)
        order = "s.graded_at" if req.param("order") == "graded_at" else "s.id"
        direction = "DESC" if req.param("order_direction") == "descending" else "ASC"
        rows = self.db.query(
            "SELECT s.*, a.due_at, a.post_to_sis, e.section_id, u.sis_id AS user_sis_id, "
            "u.integration_id AS user_integration_id FROM submissions s JOIN assignments a ON a.id = s.assignment_id "
            "JOIN enrollments e ON e.user_id = s.user_id AND e.course_id = a.course_id JOIN users u ON u.id = s.user_id "
            f"WHERE {' AND '.join(where)} GROUP BY s.id ORDER BY {order} {direction}, s.id", params)
        submissions = [_submission_json(r) for r in rows]
        if req.param("grouped") not in ("1", "true"):
            return ApiResult(200, submissions, paginate=True)
        with_totals = "total_scores" in set(req.params("include"))
        scores = course_scores_for(self.db, row["id"]) if with_totals else {}
        students: dict[int, dict] = {}
        for r, submission in zip(rows, submissions):
            student = students.setdefault(r["user_id"], {
                "user_id": r["user_id"], "section_id": r["section_id"], "sis_user_id": r["user_sis_id"],
                "integration_id": r["user_integration_id"], "submissions": []})
            student["submissions"].append(submission)
        if with_totals:
            for user_id, student in students.items():
                s = scores.get(user_id, {})
                student.update(computed_current_score=s.get("current_score"), computed_final_score=s.get("final_score"),
                               computed_current_grade=None, computed_final_grade=None,
                               unposted_current_score=s.get("unposted_current_score"),
                               unposted_final_score=s.get("unposted_final_score"))
        return ApiResult(200, list(students.values()), paginate=True)


def course_scores_for(db: CanvasDB, course_id: int) -> dict:
    with db.connection() as conn:
        return course_scores(conn, course_id)


def _enrollment_states(requested: list[str]) -> list[str]:
    aliases = {"current_and_invited": ["active", "invited"], "current_and_future": ["active", "invited"],
               "current_and_concluded": ["active", "completed"]}
    states = [s for r in requested for s in aliases.get(r, [r])]
    return states or ["active", "invited", "creation_pending"]


def _account_json(row: dict) -> dict:
    return {"id": row["id"], "name": row["name"], "parent_account_id": row["parent_id"],
            "root_account_id": None if row["id"] == ROOT_ACCOUNT_ID else ROOT_ACCOUNT_ID,
            "sis_account_id": row["sis_id"], "integration_id": row["integration_id"],
            "sis_import_id": row["sis_import_id"], "workflow_state": row["workflow_state"],
            "default_time_zone": "Etc/UTC"}


def _group_json(g: dict) -> dict:
    return {"id": g["id"], "name": g["name"], "position": g["position"], "group_weight": g["group_weight"],
            "sis_source_id": g["sis_source_id"], "integration_data": {}}


def _submission_json(r: dict) -> dict:
    late_policy = "missing" if r["missing"] else "late" if r["late"] else None
    return {
        "id": r["id"], "assignment_id": r["assignment_id"], "user_id": r["user_id"], "score": r["score"],
        "grade": r["grade"], "entered_score": r["score"], "entered_grade": r["grade"], "excused": bool(r["excused"]),
        "missing": bool(r["missing"]), "late": bool(r["late"]), "late_policy_status": late_policy,
        "points_deducted": 0.0 if r["late"] else None, "workflow_state": r["workflow_state"],
        "graded_at": r["graded_at"], "posted_at": r["posted_at"], "submitted_at": r["submitted_at"],
        "grader_id": 1 if r["graded_at"] else None, "attempt": r["attempt"], "cached_due_date": r["due_at"],
        "grade_matches_current_submission": True, "submission_type": None,
    }


_COURSE_SQL = (
    "SELECT c.*, a.sis_id AS account_sis_id, t.sis_id AS term_sis_id, t.name AS term_name, t.start_at AS term_start, "
    "t.end_at AS term_end FROM courses c JOIN accounts a ON a.id = c.account_id JOIN terms t ON t.id = c.term_id")
_ENROLLMENT_SQL = (
    "SELECT e.*, u.sis_id AS user_sis_id, u.name AS user_name, u.sortable_name, u.short_name, "
    "u.integration_id AS user_integration_id, u.login_id, s.sis_id AS section_sis_id, "
    "s.integration_id AS section_integration_id FROM enrollments e JOIN users u ON u.id = e.user_id "
    "JOIN sections s ON s.id = e.section_id")

Route = tuple[str, re.Pattern[str], Callable[..., ApiResult]]


def read_routes(api: ReadApi) -> list[Route]:
    segment = r"([^/]+)"
    return [
        ("GET", re.compile(rf"/api/v1/accounts/{segment}"), api.get_account),
        ("GET", re.compile(rf"/api/v1/accounts/{segment}/sub_accounts"), api.list_sub_accounts),
        ("GET", re.compile(rf"/api/v1/accounts/{segment}/terms"), api.list_terms),
        ("GET", re.compile(rf"/api/v1/accounts/{segment}/courses"), api.list_account_courses),
        ("GET", re.compile(rf"/api/v1/courses/{segment}"), api.get_course),
        ("GET", re.compile(rf"/api/v1/courses/{segment}/sections"), api.list_sections),
        ("GET", re.compile(rf"/api/v1/courses/{segment}/enrollments"), api.list_enrollments),
        ("GET", re.compile(rf"/api/v1/courses/{segment}/assignment_groups"), api.list_assignment_groups),
        ("GET", re.compile(rf"/api/v1/courses/{segment}/assignments"), api.list_assignments),
        ("GET", re.compile(rf"/api/sis/courses/{segment}/assignments"), api.list_sis_assignments),
        ("GET", re.compile(rf"/api/v1/courses/{segment}/students/submissions"), api.list_student_submissions),
    ]
