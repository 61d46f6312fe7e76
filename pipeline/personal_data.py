"""What in a Canvas SIS-import CSV identifies or describes a person, and how such a value is shown
outside the data dir. Every place that shows CSV rows in metadata (the CSV assets' previews, the
dry run's and the mass-delete guard's samples) masks through here, so they all hide the same things.
Findings about one record (a broken import rule, Canvas's own messages) still name it by its id: the
data engineer has to find it.
"""

from __future__ import annotations

from collections.abc import Mapping

# Ids of a person, in whichever file they appear: shown only as much as lets someone who knows the
# record recognise it (a data engineer checking which user a change touches), never enough to learn it:
# the first and last two characters of an id of at least 10, nothing of a shorter one (a student
# number of 7 or 8 digits would be half shown).
PERSON_ID_COLUMNS = frozenset({
    "user_id", "integration_id", "user_integration_id", "associated_user_id", "observer_id", "student_id",
    "existing_user_id", "existing_integration_id", "existing_canvas_user_id",
})
# What a users.csv (or logins.csv) row says about the person: never shown. Not applied to other files,
# where a column of the same name (courses' short_name) describes no one.
PERSON_DETAIL_COLUMNS = frozenset({
    "login_id", "password", "ssha_password", "first_name", "last_name", "full_name", "sortable_name", "short_name",
    "email", "pronouns",
})
_FILES_DESCRIBING_PEOPLE = frozenset({"users", "logins"})
HIDDEN = "***"
_SHOWN_FROM_LENGTH = 10


def personal_columns(file: str) -> frozenset[str]:
    """The columns of a Canvas file type (`users`, `enrollments`, ...) that are masked outside the data dir."""
    return PERSON_ID_COLUMNS | (PERSON_DETAIL_COLUMNS if file in _FILES_DESCRIBING_PEOPLE else frozenset())


def mask_value(column: str, value: str | None) -> str | None:
    """`value` of a personal `column` as it may be shown (see PERSON_ID_COLUMNS)."""
    if not value:
        return value
    if column in PERSON_ID_COLUMNS and len(value) >= _SHOWN_FROM_LENGTH:
        return f"{value[:2]}{HIDDEN}{value[-2:]}"
    return HIDDEN


def mask_record(file: str, record: Mapping[str, str | None]) -> dict[str, str | None]:
    """A row of `file` (column → value) with its personal values masked."""
    personal = personal_columns(file)
    return {column: mask_value(column, value) if column in personal else value for column, value in record.items()}
