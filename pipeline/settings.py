"""Every environment variable rosterbridge reads: name, default and meaning.

The README's configuration table and `.env.example` list the same variables; `tests/test_settings.py`
keeps the three in step. Secrets are only ever passed to resources through `dg.EnvVar`, never read here.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("ROSTERBRIDGE_DATA_DIR", "./data", "Where snapshots, CSVs, ledgers and demo state are written."),
    # OneRoster provider (unset ONEROSTER_BASE_URL = embedded demo provider)
    Setting("ONEROSTER_BASE_URL", "", "Provider base URL ending in /ims/oneroster/v1p1; empty runs the embedded demo provider."),
    Setting("ONEROSTER_AUTH", "oauth2", "oauth2 (client credentials) or oauth1 (signed requests)."),
    Setting("ONEROSTER_CLIENT_ID", "", "OAuth client id / consumer key.", secret=True),
    Setting("ONEROSTER_CLIENT_SECRET", "", "OAuth client secret / consumer secret.", secret=True),
    Setting("ONEROSTER_TOKEN_URL", "", "OAuth 2 token endpoint (oauth2 only)."),
    Setting("ONEROSTER_SCOPE", "", "Space-separated OAuth 2 scopes; empty sends none."),
    Setting("ONEROSTER_OAUTH1_SIGNATURE_METHOD", "HMAC-SHA256", "HMAC-SHA256 or HMAC-SHA1 (oauth1 only)."),
    Setting("ONEROSTER_PAGE_SIZE", "1000", "limit= asked per page (providers may cap it)."),
    Setting("ONEROSTER_MAX_CONCURRENCY", "4", "Pages fetched at once when the total is known."),
    Setting("ONEROSTER_TOKEN_AUTH_METHOD", "basic", "How the token request sends the client id/secret: basic (HTTP Basic) or post (form body)."),
    Setting("ONEROSTER_EXTRA_HEADERS", "", 'JSON object of extra headers sent on every API request, e.g. {"x-vendor-authorization": "key:secret"}.', secret=True),
    Setting("ONEROSTER_TIMEOUT_SECONDS", "60", "Per-request timeout (connect, read, write) in seconds."),
    Setting("ONEROSTER_MAX_RETRIES", "5", "Retries per request on 429, 5xx, timeouts and connection errors."),
    Setting("ROSTERBRIDGE_DEMO_STUDENTS", "300", "Students in the embedded demo provider's synthetic district (used when ONEROSTER_BASE_URL is empty)."),
    # Canvas (unset CANVAS_BASE_URL = embedded demo Canvas)
    Setting("CANVAS_BASE_URL", "", "Canvas root URL, e.g. https://district.instructure.com; empty runs the embedded demo Canvas."),
    Setting("CANVAS_ACCESS_TOKEN", "", "API token of a Canvas admin allowed to run SIS imports.", secret=True),
    Setting("CANVAS_ACCOUNT_ID", "self", "Root account id for SIS imports; self = the token user's root account."),
    Setting("CANVAS_TIMEOUT_SECONDS", "60", "Per-request timeout to Canvas in seconds."),
    Setting("CANVAS_MAX_RETRIES", "5", "Retries per Canvas request on throttling (403 Rate Limit Exceeded, 429), 5xx and timeouts."),
    Setting("CANVAS_DIFFING_PREFIX", "rosterbridge", "Prefix of each data set's diffing_data_set_identifier (<prefix>:district, <prefix>:term:<key>); keep it stable."),
    Setting("CANVAS_CHANGE_THRESHOLD", "10", "change_threshold (1-100 %) sent with every diffed import."),
    Setting("ROSTERBRIDGE_MASS_DELETE_THRESHOLD_PERCENT", "10", "Block an upload when more than this % of users, courses, sections or enrollments would disappear or turn deleted."),
    # Nightly schedule
    Setting("ROSTERBRIDGE_SCHEDULE_CRON", "0 2 * * *", "Cron of the nightly sync schedule."),
    Setting("ROSTERBRIDGE_SCHEDULE_TIMEZONE", "America/New_York", "Timezone the nightly cron is read in."),
    # Extract
    Setting("ONEROSTER_EXTRACT_DEMOGRAPHICS", "false", "true also extracts oneroster/demographics (sensitive; Canvas does not need it)."),
    Setting("ROSTERBRIDGE_MAX_REJECT_SHARE", "0.05", "Share (0-1) of an entity's records that may be rejected before its record check blocks the run."),
    # OneRoster -> Canvas mapping (pipeline/resources/mapping.py, docs/transform.md)
    Setting("MAPPING_COURSE_MODE", "per_class", "per_class: each class is a Canvas course with one section; per_course_term: each course is one Canvas course per term, its classes are sections."),
    Setting("MAPPING_TERM_TYPES", "term,semester,schoolYear", "academicSession types that are Canvas terms and school_term partitions (comma-separated)."),
    Setting("MAPPING_ROLES", "student=student,teacher=teacher,aide=ta", "OneRoster enrollment role = Canvas role, comma-separated; roles not listed (administrator, proctor, ...) are skipped."),
    Setting("MAPPING_LOGIN_ID_FROM", "username", "Where a user's Canvas login_id comes from: username, email or identifier."),
    Setting("MAPPING_AUTHENTICATION_PROVIDER_ID", "", "authentication_provider_id for every user (e.g. google, saml, 7); empty = the account default."),
    Setting("MAPPING_NEW_COURSE_STATUS", "active", "Status of active courses: active (new courses unpublished) or published."),
    Setting("MAPPING_ENROLLMENT_DROP_STATUS", "inactive", "What an enrollment the SIS stops sending becomes (diffing_drop_status): deleted, inactive, completed or deleted_last_completed."),
    Setting("MAPPING_DISABLED_USER_STATUS", "suspended", "Status of users with enabledUser=false: suspended, deleted or active."),
    Setting("MAPPING_OBSERVERS", "false", "true adds guardians (parent, guardian, relative) to users.csv and their agents links to user_observers.csv."),
    Setting("MAPPING_ROOT_ACCOUNT_ID", "", "SIS id of the Canvas account the top-level orgs go under; empty = the root account."),
    Setting("MAPPING_ACCOUNT_ID_FROM", "sourcedId", "Canvas account_id of an org: sourcedId or identifier (falls back to sourcedId when blank)."),
    Setting("MAPPING_ACCOUNT_NAME_TEMPLATE", "{name}", "Canvas account name; placeholders {name}, {identifier}, {type}, {sourcedId}."),
    Setting("MAPPING_TERM_NAME_TEMPLATE", "{title}", "Canvas term name; placeholders {title}, {schoolYear}, {type}, {sourcedId}."),
    Setting("MAPPING_TIME_ZONE", "UTC", "IANA time zone of the district: Canvas terms run from 00:00:00 on their first day to 23:59:59 on their last day there."),
    # Grade passback (Canvas gradebook -> OneRoster lineItems/results); see docs/passback.md
    Setting("PASSBACK_ID_NAMESPACE", "rosterbridge", "Namespace of the deterministic (UUIDv5) sourcedIds of categories, lineItems and results; never change it once grades were sent."),
    Setting("PASSBACK_COURSE_SCORE", "current", "Course grade sent: current (Canvas current score: graded work only) or final (ungraded work counts as 0)."),
    Setting("PASSBACK_COURSE_GRADES", "true", "Send course grades: one lineItem per class and grading period, results carry the course score."),
    Setting("PASSBACK_COURSE_GRADE_TITLE", "Course Grade ({grading_period})", "Title of course-grade lineItems; {grading_period} is the grading period's title."),
    Setting("PASSBACK_COURSE_GRADE_CATEGORY", "Course Grade", "Category (title) of course-grade lineItems."),
    Setting("PASSBACK_CATEGORY_MODE", "create", "create: PUT one category per assignment-group title; match: use the SIS's existing category with that title (no category writes)."),
    Setting("PASSBACK_FALLBACK_CATEGORY", "", "match mode: sourcedId of the SIS category used when no title matches; empty = such items are reported, not sent."),
    Setting("PASSBACK_MISSING", "not_submitted", "Ungraded submissions Canvas marks missing: not_submitted (scoreStatus 'not submitted', score 0) or skip."),
    Setting("PASSBACK_UNDATED_ITEMS", "last_grading_period", "Assignments without a due date: last_grading_period (due at its end) or skip."),
    Setting("PASSBACK_SEND_COMMENTS", "false", "true sends the teacher's latest Canvas submission comment as the result's comment (posted grades only)."),
    Setting("PASSBACK_TIMEZONE", "UTC", "District time zone (IANA): decides the calendar day of due dates and scoreDates."),
    Setting("PASSBACK_DELETE_LINE_ITEMS", "false", "true deletes lineItems this pipeline created once their assignment is removed or unmarked for the SIS; false only reports them."),
    Setting("PASSBACK_SENSOR_COURSES_PER_TICK", "200", "Courses the grade-change sensor checks in Canvas per tick (one API call each): bounds each tick's cost."),
    Setting("PASSBACK_SENSOR_INTERVAL_SECONDS", "60", "Minimum seconds between grade-change sensor ticks."),
    Setting("PASSBACK_RESYNC_HOURS", "24", "A course is gathered again after this many hours even when Canvas reports no new grade (catches posting and assignment edits)."),
)

BY_NAME = {s.name: s for s in SETTINGS}


def get(name: str) -> str:
    """The value of a non-secret setting, or its documented default."""
    setting = BY_NAME[name]
    if setting.secret:
        raise KeyError(f"{name} is a secret: pass it to a resource with dg.EnvVar({name!r})")
    return os.environ.get(name, "") or setting.default


def get_int(name: str, *, minimum: int = 0) -> int:
    """A whole-number setting; a clear error naming the variable when it is not one."""
    return _get_number(name, int, "a whole number", minimum)


def get_float(name: str, *, minimum: float = 0.0) -> float:
    """A decimal setting; a clear error naming the variable when it is not one."""
    return _get_number(name, float, "a number", minimum)


def _get_number(name: str, parse, kind: str, minimum):
    value = get(name)
    try:
        number = parse(value)
    except ValueError:
        raise ValueError(f"{name} must be {kind}, got {value!r}") from None
    # nan compares false with everything, so it would slip past every bound (and disable a limit).
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {number}")
    return number


def is_set(name: str) -> bool:
    """Whether the environment sets `name` (secrets included: this never reads their value out)."""
    return bool(os.environ.get(name, ""))


def render_env_example() -> str:
    """The text of `.env.example`: every setting with its default, secrets left blank."""
    lines = ["# rosterbridge configuration: copy to .env (dagster dev loads it) or export these variables.",
             "# Generated by `python -m pipeline.settings`; leave a value empty for its default."]
    for setting in SETTINGS:
        lines.append("")
        lines.append(f"# {setting.help}" + (" (secret)" if setting.secret else ""))
        lines.append(f"{setting.name}=" + ("" if setting.secret else setting.default))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_env_example(), end="")
