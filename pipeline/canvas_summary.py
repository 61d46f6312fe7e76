"""What Canvas holds after a sync, read back through Canvas's own read APIs (not from our files).

Accounts, terms and courses come from account-level lists; sections and enrollments from each
course's lists (two paginated requests per course, so only up to `course_limit` courses are walked:
a large district would otherwise spend an hour on a summary), users from the enrollments' users.
Endpoints a Canvas does not serve are reported as such rather than guessed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pipeline.resources.canvas import CanvasClient, CanvasError, CanvasSession

ENROLLMENT_STATES = ("active", "invited", "creation_pending", "completed", "inactive", "deleted", "rejected")
DEFAULT_COURSE_LIMIT = 500


@dataclass
class CanvasHoldings:
    by_kind: dict[str, Counter] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # kind -> why it could not be read


def _states(items, key: str = "workflow_state") -> Counter:
    return Counter(str(item.get(key) or "unknown") for item in items)


def read_holdings(session: CanvasSession, course_limit: int = DEFAULT_COURSE_LIMIT) -> CanvasHoldings:
    """`course_limit` 0 walks every course."""
    holdings = CanvasHoldings()
    try:
        root = session.get(session.account_path())
        subs = list(session.get_paginated(session.account_path("sub_accounts"), {"recursive": "true"}))
        holdings.by_kind["accounts"] = _states([root, *subs])
    except CanvasError as exc:
        holdings.unavailable["accounts"] = f"not served by this Canvas: {exc.path}: HTTP {exc.status_code}"
    terms = [t for t in session.get_paginated(session.account_path("terms"), {"workflow_state[]": "all"})
             if t.get("sis_term_id")]
    holdings.by_kind["terms"] = _states(terms)
    courses = list(session.get_paginated(session.account_path("courses"), [("state[]", "all")]))
    holdings.by_kind["courses"] = _states(courses)
    if course_limit and len(courses) > course_limit:
        why = f"{len(courses)} courses, more than the {course_limit} walked per summary (--summary-course-limit)"
        for kind in ("sections", "enrollments", "users (enrolled)"):
            holdings.unavailable[kind] = why
        return holdings
    sections: Counter = Counter()
    enrollments: Counter = Counter()
    users: set[int] = set()
    for course in courses:
        course_path = f"/api/v1/courses/{course['id']}"
        sections["active"] += sum(1 for _ in session.get_paginated(f"{course_path}/sections"))
        for enrollment in session.get_paginated(f"{course_path}/enrollments",
                                                [("state[]", s) for s in ENROLLMENT_STATES]):
            enrollments[str(enrollment.get("enrollment_state"))] += 1
            users.add(enrollment.get("user_id"))
    holdings.by_kind["sections"] = sections
    holdings.by_kind["enrollments"] = enrollments
    holdings.by_kind["users (enrolled)"] = Counter({"distinct": len(users)})
    return holdings


def canvas_holdings(client: CanvasClient, course_limit: int = DEFAULT_COURSE_LIMIT) -> CanvasHoldings:
    """Open `client` outside a run (dg.EnvVar fields resolved) and read what Canvas holds."""
    with client.process_config_and_initialize().open() as session:
        return read_holdings(session, course_limit)


def format_holdings(holdings: CanvasHoldings) -> str:
    lines = ["Canvas now holds:"]
    for kind, counts in holdings.by_kind.items():
        detail = ", ".join(f"{state} {n}" for state, n in sorted(counts.items())) or "none"
        lines.append(f"  {kind:<18} {sum(counts.values()):>8}  ({detail})")
    for kind, why in holdings.unavailable.items():
        lines.append(f"  {kind:<18} {'n/a':>8}  ({why})")
    return "\n".join(lines)
