"""Grade passback settings (PASSBACK_* environment variables, see pipeline/settings.py)."""

from __future__ import annotations

import zoneinfo
from typing import Literal

import dagster as dg
from pydantic import Field, field_validator

from pipeline import settings
from pipeline.passback import ids


class PassbackSettings(dg.ConfigurableResource):
    """What grade passback sends and how; every field but rejection_retry_hours has a PASSBACK_* environment variable."""

    id_namespace: str = Field(default="rosterbridge", description="Namespace of the deterministic sourcedIds.")
    course_score: Literal["current", "final"] = Field(
        default="current", description="Canvas course score sent as the course grade: current (graded work) or final (ungraded counts as 0)."
    )
    course_grades: bool = Field(default=True, description="Send course grades (one lineItem per class and grading period).")
    course_grade_title: str = Field(default="Course Grade ({grading_period})", description="Title of course-grade lineItems.")
    course_grade_category: str = Field(default="Course Grade", description="Category title of course-grade lineItems.")
    category_mode: Literal["create", "match"] = Field(
        default="create", description="create: PUT one category per assignment-group title; match: use the SIS's category of that title."
    )
    fallback_category: str = Field(default="", description="match mode: sourcedId of the SIS category used when no title matches.")
    missing: Literal["not_submitted", "skip"] = Field(
        default="not_submitted", description="Ungraded submissions Canvas flags missing: send as 'not submitted' (score 0) or skip."
    )
    undated_items: Literal["last_grading_period", "skip"] = Field(
        default="last_grading_period", description="Assignments without a due date: due at the end of the class's last grading period, or skipped."
    )
    send_comments: bool = Field(
        default=False, description="Send the teacher's latest Canvas submission comment as the result's comment."
    )
    timezone: str = Field(default="UTC", description="The district's time zone: which calendar day a due date or grade falls on.")
    delete_line_items: bool = Field(
        default=False, description="Delete lineItems this pipeline created when their assignment leaves Canvas or 'Sync to SIS'."
    )
    sensor_courses_per_tick: int = Field(default=200, ge=1, description="Courses the sensor checks in Canvas per tick.")
    resync_hours: float = Field(default=24.0, gt=0, description="A course is gathered again after this long even without a new grade.")
    # Resource config only (no environment variable yet: adding one needs a README row, which the lead owns).
    rejection_retry_hours: float = Field(
        default=1.0, ge=0, description="A course with SIS rejections is requested again (without a new grade) at most this often."
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"PASSBACK_TIMEZONE {value!r} is not an IANA time zone (e.g. America/New_York)") from None
        return value

    @field_validator("id_namespace")
    @classmethod
    def _namespace_not_empty(cls, value: str) -> str:
        ids.namespace(value)
        return value

    @property
    def namespace_hex(self) -> str:
        return ids.namespace(self.id_namespace).hex


def _bool(name: str) -> bool:
    value = settings.get(name).strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value in ("true", "1", "yes")


def passback_settings_from_env() -> PassbackSettings:
    return PassbackSettings(
        id_namespace=settings.get("PASSBACK_ID_NAMESPACE"),
        course_score=settings.get("PASSBACK_COURSE_SCORE"),
        course_grades=_bool("PASSBACK_COURSE_GRADES"),
        course_grade_title=settings.get("PASSBACK_COURSE_GRADE_TITLE"),
        course_grade_category=settings.get("PASSBACK_COURSE_GRADE_CATEGORY"),
        category_mode=settings.get("PASSBACK_CATEGORY_MODE"),
        fallback_category=settings.get("PASSBACK_FALLBACK_CATEGORY"),
        missing=settings.get("PASSBACK_MISSING"),
        undated_items=settings.get("PASSBACK_UNDATED_ITEMS"),
        send_comments=_bool("PASSBACK_SEND_COMMENTS"),
        timezone=settings.get("PASSBACK_TIMEZONE"),
        delete_line_items=_bool("PASSBACK_DELETE_LINE_ITEMS"),
        sensor_courses_per_tick=settings.get_int("PASSBACK_SENSOR_COURSES_PER_TICK", minimum=1),
        resync_hours=settings.get_float("PASSBACK_RESYNC_HOURS", minimum=0.01),
    )
