"""What the demo OneRoster provider serves from: a read-only roster source, addressed by index.

A source holds the provider's "as loaded" data (the synthetic district or a public sample set). The
provider's writable state (roster overlay, gradebook writes) lives on top of it in SQLite. Records are
addressed by a stable index per entity so that a page can be produced from `offset..offset+limit`
without scanning: the synthetic district computes record `i` from `i` alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# Every collection the provider stores, in the OneRoster 1.1 REST vocabulary.
ENTITIES = (
    "orgs",
    "academicSessions",
    "courses",
    "classes",
    "users",
    "enrollments",
    "demographics",
    "categories",
    "lineItems",
    "results",
)

# GUIDRef `type` and collection path of each entity.
REF_TYPES = {
    "orgs": "org",
    "academicSessions": "academicSession",
    "courses": "course",
    "classes": "class",
    "users": "user",
    "enrollments": "enrollment",
    "demographics": "demographics",
    "categories": "category",
    "lineItems": "lineItem",
    "results": "result",
}

# Record fields that hold a single GUIDRef the provider can select on (nested endpoints, validation).
REF_FIELDS = ("class", "lineItem", "student")


@dataclass(frozen=True)
class Selection:
    """A subset of one entity: optionally only some kinds (user role, org/session type) and only
    records whose GUIDRef `field` points at one of the given sourcedIds."""

    entity: str
    kinds: frozenset[str] | None = None
    refs: tuple[tuple[str, frozenset[str]], ...] = ()

    def matches(self, record: dict[str, Any]) -> bool:
        if self.kinds is not None and record_kind(record) not in self.kinds:
            return False
        return all(ref_id(record, field) in ids for field, ids in self.refs)


def record_kind(record: dict[str, Any]) -> str | None:
    """The value views select on: a user's role, an org's or academic session's type."""
    kind = record.get("role", record.get("type"))
    return kind if isinstance(kind, str) else None


def ref_id(record: dict[str, Any], field: str) -> str | None:
    ref = record.get(field)
    if isinstance(ref, dict):
        value = ref.get("sourcedId")
        return value if isinstance(value, str) else None
    return None


def guid_ref(href_base: str, entity: str, sourced_id: str) -> dict[str, str]:
    return {"href": f"{href_base}/{entity}/{sourced_id}", "sourcedId": sourced_id, "type": REF_TYPES[entity]}


class RosterSource(Protocol):
    """Read-only records by index. `href_base` is the provider's base URL, used in GUIDRef hrefs."""

    fingerprint: str  # names the data (kind, size, seed or file digest): state files remember it
    # Optional `uniform_fields: dict[str, Any]`: fields with one value in every record, so a filter on
    # them is decided once for all unchanged records (the district's dateLastModified).

    def count(self, entity: str) -> int: ...

    def record(self, entity: str, index: int, href_base: str) -> dict[str, Any]: ...

    def index_of(self, entity: str, sourced_id: str) -> int | None: ...

    def indexes(self, selection: Selection) -> Sequence[int] | None:
        """Ascending indexes of the records in `selection`, or None when only a scan can tell."""
        ...

    def enrollment_indexes_for_class(self, class_id: str) -> Sequence[int]:
        """Indexes of the source's enrollments in one class (any role, any status)."""
        ...
