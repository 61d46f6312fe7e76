"""Validation of gradebook PUT bodies, strict about what the OneRoster 1.1 spec requires.

A failure is a 422 whose statusInfoSet description starts with the offending field
(`lineItem.gradingPeriod: ...`), so the client's error names the record and the rule.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from pipeline.demo.oneroster_query import ProviderError
from pipeline.demo.oneroster_store import DemoStore
from pipeline.demo.source import guid_ref, ref_id

WRAPPERS = {"categories": "category", "lineItems": "lineItem", "results": "result"}
STATUSES = ("active", "tobedeleted")
SCORE_STATUSES = ("exempt", "fully graded", "not submitted", "partially graded", "submitted")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _invalid(field: str, message: str) -> ProviderError:
    return ProviderError(422, "invaliddata", f"{field}: {message}")


class _Body:
    """Reads fields of one wrapped object, raising a 422 that names the field."""

    def __init__(self, wrapper: str, obj: dict[str, Any]):
        self.wrapper = wrapper
        self.obj = obj

    def name(self, field: str) -> str:
        return f"{self.wrapper}.{field}"

    def required(self, field: str) -> Any:
        value = self.obj.get(field)
        if value is None or value == "":
            raise _invalid(self.name(field), "is required")
        return value

    def text(self, field: str, *, required: bool = True) -> str | None:
        value = self.required(field) if required else self.obj.get(field)
        if value is not None and not isinstance(value, str):
            raise _invalid(self.name(field), f"must be a string, got {type(value).__name__}")
        return value

    def choice(self, field: str, allowed: tuple[str, ...]) -> str:
        value = self.text(field)
        if value not in allowed:
            raise _invalid(self.name(field), f"must be one of {', '.join(allowed)}; got {value!r}")
        return value

    def number(self, field: str) -> float | int:
        value = self.required(field)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _invalid(self.name(field), f"must be a number, got {value!r}")
        return value

    def date_time(self, field: str) -> str:
        value = self.text(field)
        if not _DATE_TIME.match(value) or _parse(dt.datetime.fromisoformat, value.replace("Z", "+00:00")) is None:
            raise _invalid(self.name(field), f"must be an ISO 8601 date-time with a zone (2026-09-01T00:00:00Z); got {value!r}")
        return value

    def date(self, field: str) -> str:
        value = self.text(field)
        if not _DATE.match(value) or _parse(dt.date.fromisoformat, value) is None:
            raise _invalid(self.name(field), f"must be a date YYYY-MM-DD; got {value!r}")
        return value

    def ref(self, field: str, ref_type: str) -> str:
        value = self.required(field)
        sourced_id = ref_id({field: value}, field)
        if not sourced_id:
            raise _invalid(self.name(field), "must be a GUIDRef object with a sourcedId")
        if value.get("type") not in (None, ref_type):
            raise _invalid(self.name(field), f"type must be {ref_type!r}, got {value.get('type')!r}")
        return sourced_id


def _parse(parser, value):
    try:
        return parser(value)
    except ValueError:
        return None


def validate_put(entity: str, path_id: str, body: Any, store: DemoStore) -> dict[str, Any]:
    """The record to store for `PUT /{entity}/{path_id}`, or a ProviderError (422) naming the field."""
    wrapper = WRAPPERS[entity]
    if not isinstance(body, dict) or not isinstance(body.get(wrapper), dict):
        raise _invalid(wrapper, f'the body must be a JSON object {{"{wrapper}": {{...}}}}')
    fields = _Body(wrapper, body[wrapper])
    given_id = fields.obj.get("sourcedId")
    if given_id is not None and given_id != path_id:
        raise _invalid(fields.name("sourcedId"), f"{given_id!r} does not match the sourcedId in the path {path_id!r}")
    record: dict[str, Any] = {"sourcedId": path_id, "status": fields.choice("status", STATUSES)}
    if isinstance(fields.obj.get("metadata"), dict):
        record["metadata"] = fields.obj["metadata"]
    return {**record, **_VALIDATORS[entity](fields, store)}


def _category(fields: _Body, store: DemoStore) -> dict[str, Any]:
    return {"title": fields.text("title")}


def _line_item(fields: _Body, store: DemoStore) -> dict[str, Any]:
    out: dict[str, Any] = {"title": fields.text("title")}
    description = fields.text("description", required=False)
    if description is not None:
        out["description"] = description
    out["assignDate"] = fields.date_time("assignDate")
    out["dueDate"] = fields.date_time("dueDate")
    class_id = fields.ref("class", "class")
    if store.get("classes", class_id) is None:
        raise _invalid(fields.name("class"), f"no class {class_id!r}")
    category_id = fields.ref("category", "category")
    if store.get("categories", category_id) is None:
        raise _invalid(fields.name("category"), f"no category {category_id!r}")
    period_id = fields.ref("gradingPeriod", "academicSession")
    period = store.get("academicSessions", period_id)
    if period is None or period.get("type") != "gradingPeriod":
        raise _invalid(fields.name("gradingPeriod"), f"{period_id!r} is not an academicSession of type gradingPeriod")
    low, high = fields.number("resultValueMin"), fields.number("resultValueMax")
    if low > high:
        raise _invalid(fields.name("resultValueMax"), f"{high} is below resultValueMin {low}")
    href = store.href_base
    out["class"] = guid_ref(href, "classes", class_id)
    out["category"] = guid_ref(href, "categories", category_id)
    out["gradingPeriod"] = guid_ref(href, "academicSessions", period_id)
    out["resultValueMin"], out["resultValueMax"] = low, high
    return out


def _result(fields: _Body, store: DemoStore) -> dict[str, Any]:
    line_item_id = fields.ref("lineItem", "lineItem")
    line_item = store.get("lineItems", line_item_id)
    if line_item is None:
        raise _invalid(fields.name("lineItem"), f"no lineItem {line_item_id!r}")
    student_id = fields.ref("student", "user")
    student = store.get("users", student_id)
    if student is None or student.get("role") != "student":
        raise _invalid(fields.name("student"), f"{student_id!r} is not a student")
    class_id = ref_id(line_item, "class")
    enrolled = any(
        ref_id(e, "user") == student_id and e.get("role") == "student" and e.get("status") == "active"
        for e in store.class_enrollments(class_id or "")
    )
    if not enrolled:
        raise _invalid(fields.name("student"), f"{student_id!r} has no active student enrollment in class {class_id!r}")
    out: dict[str, Any] = {
        "lineItem": guid_ref(store.href_base, "lineItems", line_item_id),
        "student": guid_ref(store.href_base, "users", student_id),
        "scoreStatus": fields.choice("scoreStatus", SCORE_STATUSES),
        "score": fields.number("score"),
        "scoreDate": fields.date("scoreDate"),
    }
    comment = fields.text("comment", required=False)
    if comment is not None:
        out["comment"] = comment
    return out


_VALIDATORS = {"categories": _category, "lineItems": _line_item, "results": _result}
