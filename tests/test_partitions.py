"""school_term partition keys and term discovery."""

from __future__ import annotations

import dagster as dg
import pytest

from pipeline.partitions import (
    SCHOOL_TERM,
    add_new_terms,
    discover_term_keys,
    school_term_partitions,
    term_key,
    term_sourced_id,
)
from pipeline.resources.mapping import MappingSettings
from tests.test_transform_fixtures import klass, session, small_district, write_snapshot

HOSTILE_IDS = [
    "fall-2026",
    "6f1b2c3d-aaaa-4bbb-8ccc-0123456789ab",
    "term,2026",
    "district/term/2026",
    "a...b",
    "ends.",
    "2026 Fall ~ été",
    "~41",
    "tab\tand\nnewline",
    "日本語",
]


@pytest.mark.parametrize("sourced_id", HOSTILE_IDS)
def test_key_is_safe_for_dagster_and_maps_back(sourced_id):
    key = term_key(sourced_id)
    assert "," not in key and "/" not in key and "..." not in key
    assert all(ch.isascii() and ch.isprintable() and ch != " " for ch in key)
    assert term_sourced_id(key) == sourced_id
    assert term_key(sourced_id) == key  # stable: the same term gets the same key every night
    dg.DynamicPartitionsDefinition(name="probe").build_add_request([key])  # Dagster accepts it


def test_plain_ids_are_their_own_key_and_distinct_ids_get_distinct_keys():
    assert term_key("fall-2026") == "fall-2026"
    keys = {term_key(s) for s in HOSTILE_IDS}
    assert len(keys) == len(HOSTILE_IDS)


@pytest.mark.parametrize("key", ["a b", "~zz", "~4", "x,y", "~7e"])
def test_a_string_that_no_term_produces_is_refused(key):
    with pytest.raises(ValueError):
        term_sourced_id(key)


def test_partitions_definition_is_dynamic_school_term():
    assert isinstance(school_term_partitions, dg.DynamicPartitionsDefinition)
    assert school_term_partitions.name == SCHOOL_TERM == "school_term"


def test_discovery_finds_terms_classes_live_in(data_dir):
    write_snapshot(data_dir, **small_district())
    terms = discover_term_keys(data_dir, MappingSettings())
    # The Q1 class rolls up to fall; the class listed in both semesters lives in the school year.
    assert [(t.key, t.classes) for t in terms] == [("fall-2026", 3), ("sy-2026", 1), ("spring-2027", 1)]
    fall = terms[0]
    assert (fall.sourced_id, fall.title, fall.type, str(fall.start_date), fall.deleted) == (
        "fall-2026", "Fall 2026", "semester", "2026-08-20", False)


def test_which_session_types_are_terms_is_a_setting(data_dir):
    write_snapshot(data_dir, **small_district())
    terms = discover_term_keys(data_dir, MappingSettings(term_types=["schoolYear"]))
    assert [(t.key, t.classes) for t in terms] == [("sy-2026", 5)]


def test_hostile_session_ids_become_safe_keys(data_dir):
    snapshot = small_district()
    snapshot["academicSessions"] = [session("2026/27, fall", "Fall", "term", "2026-08-20", "2026-12-20")]
    snapshot["classes"] = [klass("cls-1", "A class", ["2026/27, fall"])]
    write_snapshot(data_dir, **snapshot)
    (term,) = discover_term_keys(data_dir, MappingSettings())
    assert term.key == "2026~2F27~2C~20fall"
    assert term_sourced_id(term.key) == "2026/27, fall"


def test_new_terms_are_added_once_and_old_ones_stay(data_dir, instance):
    write_snapshot(data_dir, **small_district())
    terms = discover_term_keys(data_dir, MappingSettings())
    instance.add_dynamic_partitions(SCHOOL_TERM, ["spring-2026"])  # an ended term from an earlier night
    assert add_new_terms(instance, terms) == ["fall-2026", "sy-2026", "spring-2027"]
    assert add_new_terms(instance, terms) == []
    assert sorted(instance.get_dynamic_partitions(SCHOOL_TERM)) == ["fall-2026", "spring-2026", "spring-2027", "sy-2026"]


def test_discovery_reads_the_latest_snapshot(data_dir):
    write_snapshot(data_dir, "2026-09-14", **small_district())
    newer = small_district()
    newer["academicSessions"].append(session("winter-2027", "Winter", "term", "2027-01-02", "2027-02-01"))
    newer["classes"].append(klass("cls-w", "Winter club", ["winter-2027"]))
    write_snapshot(data_dir, "2026-09-15", **newer)
    assert [t.key for t in discover_term_keys(data_dir, MappingSettings())] == ["fall-2026", "sy-2026", "winter-2027", "spring-2027"]
