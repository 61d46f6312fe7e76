"""The transform reads one night's snapshot, never entities of different nights together."""

from __future__ import annotations

from assets import transform
from pipeline.canvas_data_set import DISTRICT
from pipeline.resources.mapping import MappingSettings
from tests.test_transform_fixtures import SNAPSHOT, read_csv, small_district, write_snapshot

NEXT_NIGHT = "2026-09-16"


def build_users(data_dir) -> list[dict[str, str]]:
    mapping = MappingSettings()
    with mapping.open_roster_db(data_dir) as conn:
        list(transform.build_district(conn, data_dir, mapping))
    return read_csv(data_dir.canvas_dir(DISTRICT) / "users.csv")


def test_a_night_whose_extract_stopped_half_way_is_passed_over_whole(data_dir, caplog):
    district = small_district()
    write_snapshot(data_dir, **district)
    renamed = [dict(u, givenName="Renamed") for u in district["users"]]
    write_snapshot(data_dir, NEXT_NIGHT, users=renamed, orgs=district["orgs"])  # stopped before enrollments

    users = build_users(data_dir)
    assert users and not any(u["first_name"] == "Renamed" for u in users)
    assert f"using OneRoster snapshot {SNAPSHOT}: the newer {NEXT_NIGHT} (no academicSessions, classes, enrollments)" \
        in caplog.text

    write_snapshot(data_dir, NEXT_NIGHT, **{k: v for k, v in district.items() if k not in ("users", "orgs")})
    assert {u["first_name"] for u in build_users(data_dir)} == {"Renamed"}
