"""Writing one entity's snapshot from pages: rejects, snapshot rules, atomicity (no provider needed)."""

import json

import pyarrow.parquet as pq
import pytest

from assets import extract
from assets.extract import UpstreamNotExtracted, write_snapshot
from pipeline.oneroster import checks
from pipeline.oneroster.records import PageConverter
from pipeline.oneroster.schema import ENTITIES, REJECTS

NIGHT = "2026-11-26"


def ref(kind, sourced_id):
    return {"href": f"/{kind}s/{sourced_id}", "sourcedId": sourced_id, "type": kind}


def base(sourced_id, **fields):
    return {"sourcedId": sourced_id, "status": "active", "dateLastModified": "2026-11-25T02:00:00Z"} | fields


def org(sourced_id, **fields):
    return base(sourced_id, name=f"School {sourced_id}", type="school") | fields


def user(sourced_id, *org_ids, **fields):
    record = base(
        sourced_id, username=sourced_id, enabledUser="true", givenName="Zoë", familyName="Ng",
        role="student", orgs=[ref("org", o) for o in org_ids], password="s3cret",
    )
    return record | fields


def rejects_of(report):
    return pq.read_table(report.rejects_path).to_pylist()


def test_good_records_flow_and_bad_ones_go_to_rejects_with_their_rule(data_dir):
    pages = [[org("o1"), org("o2", status="archived")], [org("o1", name="again"), org("o3")], []]
    report = write_snapshot(ENTITIES["orgs"], pages, data_dir, NIGHT)

    table = pq.read_table(report.path)
    assert table.schema == ENTITIES["orgs"].schema
    assert table.column("sourcedId").to_pylist() == ["o1", "o3"]
    assert table.column("name").to_pylist()[0] == "School o1"  # the first of two duplicates is kept
    assert (report.rows, report.rejected_records) == (2, 2)
    assert report.rejects_by_rule == {("enum", "status"): 1, ("duplicate_sourcedId", "sourcedId"): 1}
    rejects = rejects_of(report)
    assert pq.read_schema(report.rejects_path) == REJECTS
    assert [(r["sourcedId"], r["rule"], r["field"]) for r in rejects] == [
        ("o2", "enum", "status"),
        ("o1", "duplicate_sourcedId", "sourcedId"),
    ]


def test_enum_values_are_respelled_or_kept_as_sent_and_counted_as_warnings(data_dir):
    pages = [
        [org("o1", type="School"), org("o2", type=" district", status="Active"), org("o3", type="campus")],
        [org("o4", status="inactive"), org("o5", type="School", status="archived"), org("o6")],
    ]
    report = write_snapshot(ENTITIES["orgs"], pages, data_dir, NIGHT)

    table = pq.read_table(report.path)
    assert table.select(["sourcedId", "type", "status"]).to_pylist() == [
        {"sourcedId": "o1", "type": "school", "status": "active"},
        {"sourcedId": "o2", "type": "district", "status": "active"},
        {"sourcedId": "o3", "type": "campus", "status": "active"},  # unknown: kept as sent
        {"sourcedId": "o4", "type": "school", "status": "inactive"},  # 1.0's status: the transform deletes it
        {"sourcedId": "o6", "type": "school", "status": "active"},
    ]
    assert report.rejects_by_rule == {("enum", "status"): 1}
    # o5 is rejected (its status is unknown), so its respelled type is no warning of a kept record.
    assert report.warnings_by_rule == {
        ("enum_normalised", "type"): 2, ("enum_normalised", "status"): 1,
        ("enum_unknown", "type"): 1, ("enum_unknown", "status"): 1,
    }


def test_every_later_copy_of_a_sourced_id_names_where_the_kept_one_is(data_dir):
    pages = [[org("o1"), org("o2"), org("o1", name="twice")], [org("o3"), org("o2", name="again"), org("o1", name="thrice")]]
    report = write_snapshot(ENTITIES["orgs"], pages, data_dir, NIGHT)

    table = pq.read_table(report.path)
    assert table.column("sourcedId").to_pylist() == ["o1", "o2", "o3"]
    assert table.column("name").to_pylist() == ["School o1", "School o2", "School o3"]
    assert report.rejects_by_rule == {("duplicate_sourcedId", "sourcedId"): 3}
    assert [(r["sourcedId"], r["message"]) for r in rejects_of(report)] == [
        ("o1", "sourcedId o1 already appeared at record 1; the first one is kept"),
        ("o2", "sourcedId o2 already appeared at record 2; the first one is kept"),
        ("o1", "sourcedId o1 already appeared at record 1; the first one is kept"),
    ]


def test_decoded_pages_give_the_same_snapshot_and_rejects_as_pages_of_records(data_dir, tmp_path):
    from pipeline.datadir import DataDir

    pages = [[org("o1"), org("o2", type="School")], [org("o1", name="again"), org("o3", status="archived")], [org("o4", status="inactive")]]
    bodies = [json.dumps({"orgs": page}).encode() for page in pages]
    decoded = [PageConverter(ENTITIES["orgs"]).decode(body) for body in bodies]
    assert all(page is not None for page in decoded)

    as_records = write_snapshot(ENTITIES["orgs"], pages, data_dir, NIGHT)
    other = DataDir(root=str(tmp_path / "decoded"))
    as_decoded = write_snapshot(ENTITIES["orgs"], [decoded[0], pages[1], decoded[2]], other, NIGHT)  # mixed, too
    only_decoded = write_snapshot(ENTITIES["orgs"], decoded, other, NIGHT)

    for report in (as_decoded, only_decoded):
        assert pq.read_table(report.path).equals(pq.read_table(as_records.path))
        assert rejects_of(report) == rejects_of(as_records)  # the records as received, parsed for the rejects
        assert (report.rows, report.rejected_records) == (as_records.rows, as_records.rejected_records) == (3, 2)
        assert report.warnings_by_rule == as_records.warnings_by_rule == {("enum_normalised", "type"): 1, ("enum_unknown", "status"): 1}


def test_references_resolve_against_the_same_snapshot_and_rejects_hold_no_personal_data(data_dir):
    write_snapshot(ENTITIES["orgs"], [[org("o1"), org("o2")]], data_dir, NIGHT)
    pages = [[user("u1", "o1"), user("u2", "o1", "o404"), user("u3", "o2")], [user("u4", "o9", givenName=None)]]
    report = write_snapshot(ENTITIES["users"], pages, data_dir, NIGHT)

    assert pq.read_table(report.path).column("sourcedId").to_pylist() == ["u1", "u3"]
    rejects = rejects_of(report)
    assert sorted((r["sourcedId"], r["rule"], r["field"]) for r in rejects) == [
        ("u2", checks.MISSING_REFERENCE, "orgs"),
        ("u4", checks.REQUIRED, "givenName"),
    ]
    assert "o404" in next(r["message"] for r in rejects if r["sourcedId"] == "u2")
    text = str(rejects)
    assert "Zoë" not in text and "Ng" not in text and "s3cret" not in text and "username" not in text
    assert report.rejected_records == 2


def test_a_missing_upstream_entity_fails_before_anything_is_written(data_dir):
    with pytest.raises(UpstreamNotExtracted, match="materialize oneroster/classes, oneroster/orgs, oneroster/users first"):
        write_snapshot(ENTITIES["enrollments"], [[]], data_dir, NIGHT)
    assert not data_dir.entity_path(NIGHT, "enrollments").exists()


def test_a_failure_mid_stream_keeps_the_previous_file_and_leaves_no_temporary_files(data_dir):
    first = write_snapshot(ENTITIES["orgs"], [[org("o1")]], data_dir, NIGHT)
    before = first.path.read_bytes()

    def pages():
        yield [org("o2")]
        raise ConnectionError("provider went away")

    with pytest.raises(ConnectionError):
        write_snapshot(ENTITIES["orgs"], pages(), data_dir, NIGHT)
    assert first.path.read_bytes() == before
    snapshot = first.path.parent
    assert sorted(str(p.relative_to(snapshot)) for p in snapshot.rglob("*")) == [
        "orgs.parquet", "rejects", "rejects/orgs.parquet",
    ]


def test_many_pages_become_row_groups_and_the_rewrite_keeps_order(data_dir, monkeypatch):
    monkeypatch.setattr(extract, "ROW_GROUP_ROWS", 100)
    orgs = [org(f"o{i:04d}") for i in range(450)]
    orgs[10] = org("o0003")  # a duplicate to force the rewrite
    pages = [orgs[i : i + 30] for i in range(0, len(orgs), 30)]
    report = write_snapshot(ENTITIES["orgs"], pages, data_dir, NIGHT)

    parquet = pq.ParquetFile(report.path)
    assert parquet.metadata.num_row_groups > 1
    ids = parquet.read().column("sourcedId").to_pylist()
    assert ids == [o["sourcedId"] for i, o in enumerate(orgs) if i != 10]
    assert report.rows == 449


# --- carrying forward last night's version of a record rejected tonight ---------------------------

LAST_NIGHT = "2026-11-25"


def session(sourced_id, **fields):
    return base(sourced_id, title=sourced_id, type="term", startDate="2026-08-01", endDate="2026-12-20", schoolYear="2027") | fields


def course(sourced_id, org_id="o1", **fields):
    return base(sourced_id, title=sourced_id, courseCode=sourced_id.upper(), org=ref("org", org_id)) | fields


def a_class(sourced_id, course_id, **fields):
    record = base(
        sourced_id, title=f"Class {sourced_id}", classType="scheduled", course=ref("course", course_id),
        school=ref("org", "o1"), terms=[ref("academicSession", "t1")],
    )
    return record | fields


def enrollment(sourced_id, user_id, class_id, **fields):
    return base(sourced_id, user=ref("user", user_id), school=ref("org", "o1"), role="student") | {"class": ref("class", class_id)} | fields


def night(data_dir, snapshot, feeds):
    """Extract every entity of `feeds` ({entity: records}) into `snapshot`, upstream entities first."""
    return {name: write_snapshot(ENTITIES[name], [records], data_dir, snapshot) for name, records in feeds.items()}


def ids(report):
    return pq.read_table(report.path).column("sourcedId").to_pylist()


def test_a_record_rejected_tonight_is_kept_at_last_nights_version_and_so_is_all_that_hangs_off_it(data_dir):
    night(data_dir, LAST_NIGHT, {
        "orgs": [org("o1")],
        "academicSessions": [session("t1")],
        "courses": [course("k1"), course("k2")],
        "classes": [a_class("c1", "k1"), a_class("c2", "k2")],
        "users": [user("u1", "o1"), user("u2", "o1")],
        "enrollments": [enrollment("e1", "u1", "c1"), enrollment("e2", "u2", "c2")],
    })
    tonight = night(data_dir, NIGHT, {
        "orgs": [org("o1")],
        "academicSessions": [session("t1")],
        "courses": [course("k1", courseCode=""), course("k2")],  # k1 breaks a rule tonight
        "classes": [a_class("c1", "k1"), a_class("c2", "k2", status="archived")],  # c1 is fine, c2 is not
        "users": [user("u1", "o1", givenName="Zoe", enabledUser="maybe"), user("u2", "o1"), user("u3", "o1", status="pending")],
        "enrollments": [enrollment("e1", "u1", "c1"), enrollment("e2", "u2", "c2", role="")],
    })

    # Every record the SIS still sends is in tonight's files: the rejected ones at last night's version.
    assert ids(tonight["courses"]) == ["k2", "k1"]
    assert pq.read_table(tonight["courses"].path).to_pylist()[1]["courseCode"] == "K1"
    assert ids(tonight["classes"]) == ["c1", "c2"]  # c1's course k1 resolves: it was carried forward
    users = pq.read_table(tonight["users"].path).to_pylist()
    assert [(u["sourcedId"], u["givenName"], u["enabledUser"]) for u in users] == [("u2", "Zoë", True), ("u1", "Zoë", True)]
    assert ids(tonight["enrollments"]) == ["e1", "e2"]  # e1's user u1, e2's class c2: both carried forward
    # u3 is new tonight, with a status nobody knows: nothing to carry, it stays out.
    assert "u3" not in ids(tonight["users"])

    for name, carried in {"courses": 1, "classes": 1, "users": 1, "enrollments": 1}.items():
        report = tonight[name]
        assert report.carried_forward == carried and report.carried_forward_from == LAST_NIGHT
        assert report.rows == pq.ParquetFile(report.path).metadata.num_rows
    assert tonight["users"].rejected_records == 2
    # The rejects still name each record and its rule.
    assert {(r["sourcedId"], r["rule"], r["field"]) for r in rejects_of(tonight["users"])} == {
        ("u1", checks.BOOLEAN_FORMAT, "enabledUser"), ("u3", checks.ENUM, "status"),
    }
    assert [(r["sourcedId"], r["rule"]) for r in rejects_of(tonight["classes"])] == [("c2", checks.ENUM)]
    for report in tonight.values():
        assert pq.read_schema(report.path) == ENTITIES[report.path.stem].schema
    assert tonight["orgs"].carried_forward == 0 and tonight["orgs"].carried_forward_from is None


@pytest.mark.parametrize("deleted", ["tobedeleted", " Inactive"])
def test_a_record_the_sis_sends_as_deleted_is_never_carried_forward_even_when_rejected(data_dir, deleted):
    feeds = lambda u2, e2: {"orgs": [org("o1")], "academicSessions": [session("t1")], "courses": [course("k1")],
                            "classes": [a_class("c1", "k1")], "users": [user("u1", "o1"), u2],
                            "enrollments": [enrollment("e1", "u1", "c1"), e2]}
    night(data_dir, LAST_NIGHT, feeds(user("u2", "o1"), enrollment("e2", "u2", "c1")))
    # The SIS deletes u2 and its enrollment, and the deleted user also breaks a rule (no username, no role).
    for snapshot in (NIGHT, "2026-11-27"):
        tonight = night(data_dir, snapshot, feeds(user("u2", "o1", status=deleted, role=""),
                                                  enrollment("e2", "u2", "c1", status=deleted, role="")))
        # Last night's live versions would bring the student back every night: they stay out.
        assert ids(tonight["users"]) == ["u1"] and ids(tonight["enrollments"]) == ["e1"]
        assert tonight["users"].carried_forward == 0 and tonight["enrollments"].carried_forward == 0


def test_a_carried_forward_record_must_still_resolve_its_references_tonight(data_dir):
    night(data_dir, LAST_NIGHT, {
        "orgs": [org("o1")],
        "academicSessions": [session("t1")],
        "courses": [course("k1"), course("k2")],
        "classes": [a_class("c1", "k1"), a_class("c2", "k2")],
    })
    tonight = night(data_dir, NIGHT, {
        "orgs": [org("o1")],
        "academicSessions": [session("t1")],
        "courses": [course("k1")],  # the SIS no longer sends k2
        # c2 is rejected tonight, and last night's version points at k2, which tonight's snapshot lacks.
        "classes": [a_class("c1", "k1"), a_class("c2", "k1", title="")],
    })
    assert ids(tonight["classes"]) == ["c1"]
    assert tonight["classes"].carried_forward == 0
    rejects = rejects_of(tonight["classes"])
    assert [(r["sourcedId"], r["rule"], r["field"]) for r in rejects] == [
        ("c2", checks.REQUIRED, "title"), ("c2", checks.MISSING_REFERENCE, "course"),
    ]
    assert rejects[1]["message"] == f"last night's version (snapshot {LAST_NIGHT}) not carried forward: course k2 is not in courses"
    assert json.loads(rejects[1]["record"])["courseSourcedId"] == "k2"  # the record as stored last night
    assert tonight["classes"].rejected_records == 1  # one record, two reasons


def test_a_rejected_duplicate_is_not_carried_forward_over_its_kept_first_copy(data_dir):
    night(data_dir, LAST_NIGHT, {"orgs": [org("o1", name="Old name"), org("o2")]})
    report = write_snapshot(ENTITIES["orgs"], [[org("o1"), org("o1", name="again"), org("o2", status="archived")]], data_dir, NIGHT)
    table = pq.read_table(report.path)
    assert table.column("sourcedId").to_pylist() == ["o1", "o2"]
    assert table.column("name").to_pylist() == ["School o1", "School o2"]  # o1 tonight's first copy, o2 last night's
    assert (report.rows, report.rejected_records, report.carried_forward) == (2, 2, 1)


def test_carrying_forward_reads_the_newest_earlier_snapshot_that_has_the_entity(data_dir):
    night(data_dir, "2026-11-23", {"orgs": [org("o1", name="Oldest")]})
    night(data_dir, "2026-11-24", {"orgs": [org("o1", name="Newest")]})
    data_dir.snapshot_dir(LAST_NIGHT).mkdir(parents=True)  # a night whose extract never got to orgs
    night(data_dir, "2026-11-27", {"orgs": [org("o1", name="Tomorrow")]})  # not earlier: never used
    report = write_snapshot(ENTITIES["orgs"], [[org("o1", status="archived")]], data_dir, NIGHT)
    assert pq.read_table(report.path).column("name").to_pylist() == ["Newest"]
    assert report.carried_forward_from == "2026-11-24"


def test_a_night_without_rejects_does_not_look_at_last_night(data_dir):
    night(data_dir, LAST_NIGHT, {"orgs": [org("o1"), org("o2")]})
    report = write_snapshot(ENTITIES["orgs"], [[org("o1")]], data_dir, NIGHT)
    assert ids(report) == ["o1"]  # o2 is no longer sent: it goes, as the SIS means
    assert (report.carried_forward, report.carried_forward_from) == (0, None)


def test_carried_rows_are_copied_from_the_row_groups_that_hold_them_in_last_nights_order(data_dir, monkeypatch):
    monkeypatch.setattr(extract, "ROW_GROUP_ROWS", 100)
    monkeypatch.setattr(extract, "CONVERT_BATCH_ROWS", 100)
    orgs = [org(f"o{i:04d}", name=f"Last night {i}") for i in range(450)]
    write_snapshot(ENTITIES["orgs"], [orgs[i : i + 100] for i in range(0, 450, 100)], data_dir, LAST_NIGHT)
    assert pq.ParquetFile(data_dir.entity_path(LAST_NIGHT, "orgs")).metadata.num_row_groups == 5
    tonight_orgs = [org(f"o{i:04d}") for i in range(450)]
    for i in (320, 5, 449):
        tonight_orgs[i] = org(f"o{i:04d}", status="archived")
    report = write_snapshot(ENTITIES["orgs"], [tonight_orgs[i : i + 30] for i in range(0, 450, 30)], data_dir, NIGHT)
    table = pq.read_table(report.path)
    assert table.column("sourcedId").to_pylist() == [o["sourcedId"] for i, o in enumerate(tonight_orgs) if i not in (5, 320, 449)] + [
        "o0005", "o0320", "o0449"]
    assert table.column("name").to_pylist()[-3:] == ["Last night 5", "Last night 320", "Last night 449"]
    assert (report.rows, report.rejected_records, report.carried_forward) == (450, 3, 3)
