"""School terms as Dagster partitions: `school_term` keys and their discovery from the snapshot.

A partition key is the term's academicSession sourcedId, made safe for Dagster by escaping every
character outside `A-Z a-z 0-9 - _ .` as `~XX` (UTF-8 bytes in hex; `..` is escaped too because Dagster
forbids `...`). The escaping is reversible, so `term_sourced_id(key)` needs no snapshot: a term that has
ended and left the SIS still maps back to its sourcedId, and the same term gets the same key every night.
Keys are only ever added, never removed, so finished terms stay in the UI's history.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import dagster as dg
import duckdb

from pipeline.datadir import DataDir
from pipeline.resources.mapping import MappingSettings, sql_text

SCHOOL_TERM = "school_term"
school_term_partitions = dg.DynamicPartitionsDefinition(name=SCHOOL_TERM)

_KEEP = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
_ESCAPE = re.compile(r"~([0-9A-F]{2})")


def term_key(sourced_id: str) -> str:
    """The partition key of the term whose academicSession sourcedId is `sourced_id`."""
    if not sourced_id:
        raise ValueError("an academicSession sourcedId cannot be empty")
    out: list[str] = []
    previous = ""
    for char in sourced_id:
        if char in _KEEP and not (char == "." and previous == "."):
            out.append(char)
        else:
            out.extend(f"~{byte:02X}" for byte in char.encode("utf-8"))
        previous = char
    return "".join(out)


def term_sourced_id(key: str) -> str:
    """The academicSession sourcedId of partition `key` (the inverse of `term_key`)."""
    raw = bytearray()
    position = 0
    for match in _ESCAPE.finditer(key):
        raw += key[position : match.start()].encode("ascii")
        raw.append(int(match.group(1), 16))
        position = match.end()
    raw += key[position:].encode("ascii", errors="strict")
    sourced_id = raw.decode("utf-8")
    if term_key(sourced_id) != key:
        raise ValueError(f"{key!r} is not a school_term partition key")
    return sourced_id


@dataclass(frozen=True)
class TermPartition:
    """A Canvas term that classes are scheduled in."""

    key: str
    sourced_id: str
    title: str | None
    type: str | None
    start_date: dt.date | None
    end_date: dt.date | None
    deleted: bool  # the academicSession is tobedeleted (or OneRoster 1.0's inactive)
    classes: int  # classes whose Canvas course lives in this term


def discover_term_keys(data_dir: DataDir, mapping: MappingSettings | None = None) -> list[TermPartition]:
    """The terms of the latest snapshot that classes live in, earliest start first.

    Which academicSession types are terms is `MAPPING_TERM_TYPES`; a class scheduled in several
    terms lives in the closest term containing them all, else the earliest (see docs/transform.md).
    """
    mapping = mapping or MappingSettings.from_env()
    with mapping.open_roster_db(data_dir) as conn:
        return term_partitions(conn)


def term_partitions(conn: duckdb.DuckDBPyConnection) -> list[TermPartition]:
    """`discover_term_keys` on a session `MappingSettings.open_roster_db` opened."""
    return [
        TermPartition(
            key=term_key(session_id),
            sourced_id=session_id,
            title=title,
            type=type_,
            start_date=start,
            end_date=end,
            deleted=deleted,
            classes=classes,
        )
        for session_id, title, type_, start, end, deleted, classes in conn.execute(
            sql_text("canvas_term_partitions")
        ).fetchall()
    ]


def add_new_terms(instance: dg.DagsterInstance, terms: list[TermPartition]) -> list[str]:
    """Add the keys of `terms` the instance does not know yet; returns the added keys."""
    known = set(instance.get_dynamic_partitions(SCHOOL_TERM))
    new = [t.key for t in terms if t.key not in known]
    if new:
        instance.add_dynamic_partitions(SCHOOL_TERM, new)
    return new
