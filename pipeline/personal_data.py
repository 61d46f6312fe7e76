"""What in a Canvas SIS-import CSV identifies or describes a person, and how such a value is shown
outside the data dir. Every place that shows CSV rows in metadata (the CSV assets' previews, the
dry run's and the mass-delete guard's samples) masks through here, and so do Canvas's own import
messages before they reach logs, metadata or failure text, so they all hide the same things. Findings
about one record still name its file and row: the data engineer finds it there (or in the import's
result file, which keeps Canvas's raw messages in the data dir).
"""

from __future__ import annotations

import re
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


# Canvas's SIS-import messages that name a person, with the slots that hold personal values: `{id}` a
# user's SIS id (shown as mask_value shows ids), `{detail}` a login, e-mail or name (never shown). The
# raw messages stay only in the import's result file in the data dir.
_MESSAGE_TEMPLATES = (
    "The email address associated with user '{id}' is invalid (email: '{detail}')",
    "Could not save the user with user_id: '{id}'. Invalid login_id: '{detail}'",
    "Attempted enrolling with deleted sis login {detail}",
    "No login_id given for user {id}",
    "No status given for user {id}",
    "Improper status for user {id}",
    "An existing Canvas user with the SIS ID {id} has already claimed {id}'s user_id requested login information, skipping",
    "An existing Canvas user with the SIS ID {id} has already claimed {id}'s requested integration_id, skipping",
    "unrecognized authentication provider {any} for {id}, skipping",
    "Can't remove yourself user_id '{id}'",
    "User not found for enrollment (User ID: {id}, Course ID: {any}, Section ID: {any})",
    "Neither course nor section existed for user enrollment (Course ID: {any}, Section ID: {any}, User ID: {id})",
    "An enrollment listed a section ({any}) and a course ({any}) that are unrelated for user ({id})",
    'Student enrollment for "{id}" not allowed in blueprint course "{any}"',
    "An enrollment referenced a non-existent associated user {id}",
    "Attempted enrolling of deleted user {id} in course {any}",
    "Can't observe yourself user {id}",
    "An observer referenced a non-existent user {id}",
    "A student referenced a non-existent user {id}",
    "Invalid or unknown user_id '{id}' for admin",
)
_SLOT = re.compile(r"\{(id|detail|any)\}")
# Any other message: e-mail addresses and quoted logins are hidden wherever they appear.
_LOOSE_PERSONAL = (
    re.compile(r"[^\s'\"(),;<>]+@[^\s'\"(),;<>]*"),
    re.compile(r"(?<=login_id: ')[^']*(?=')|(?<=login_id ')[^']*(?=')|(?<=email: ')[^']*(?=')", re.IGNORECASE),
)


def _compile(template: str) -> tuple[re.Pattern[str], list[str]]:
    slots, parts, position = [], [], 0
    for match in _SLOT.finditer(template):
        parts.append(re.escape(template[position:match.start()]))
        parts.append("(.*?)")
        slots.append(match.group(1))
        position = match.end()
    parts.append(re.escape(template[position:]))
    return re.compile("".join(parts) + r"\Z", re.DOTALL), slots


_MESSAGE_PATTERNS = tuple(_compile(template) for template in _MESSAGE_TEMPLATES)


def mask_message(message: str) -> str:
    """Canvas's `message` as it may be shown in logs, metadata and failure text: the person's ids masked
    like PERSON_ID_COLUMNS, logins, e-mails and names hidden."""
    for pattern, slots in _MESSAGE_PATTERNS:
        match = pattern.match(message)
        if match:
            pieces, position = [], 0
            for index, slot in enumerate(slots, start=1):
                pieces.append(message[position:match.start(index)])
                value = match.group(index)
                pieces.append(value if slot == "any" else mask_value("user_id" if slot == "id" else "login_id", value))
                position = match.end(index)
            return "".join(pieces) + message[position:]
    for pattern in _LOOSE_PERSONAL:
        message = pattern.sub(HIDDEN, message)
    return message
