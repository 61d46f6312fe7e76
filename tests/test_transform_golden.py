"""End to end from the demo provider: extract over real HTTP, then the Canvas CSVs.

A fixed demo district must give byte-identical files run after run, equal to the golden files in
tests/golden/demo_district/ (regenerate them deliberately with ROSTERBRIDGE_UPDATE_GOLDEN=1 after a
mapping change, and review the diff). The public OneRoster samples must give files Canvas's importer
rules accept: the rows the extract step rejected are simply not there.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from assets import extract, transform
from pipeline.datadir import DataDir
from pipeline.demo.oneroster_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DemoOneRosterServer
from pipeline.demo.samples import load_samples
from pipeline.partitions import SCHOOL_TERM
from pipeline.resources.mapping import MappingSettings
from pipeline.resources.oneroster import OneRosterClient

GOLDEN = Path(__file__).parent / "golden" / "demo_district"
SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "samples" / "oneroster-1.1"
NIGHTLY_EXTRACT = [a for a in extract.extract_assets if a.key != extract.asset_key("demographics")]


def run_pipeline(server: DemoOneRosterServer, root: Path, mapping: MappingSettings | None = None) -> dict:
    """Extract from `server` into `root`, then build and check every Canvas data set.

    Returns the CSV bytes by path relative to canvas/, and every import-rule check evaluation.
    """
    data_dir = DataDir(root=str(root))
    client = OneRosterClient(
        base_url=server.base_url, token_url=server.token_url, client_id=DEMO_CLIENT_ID, client_secret=DEMO_CLIENT_SECRET
    )
    resources = {"oneroster": client, "data_dir": data_dir, "mapping": mapping or MappingSettings()}
    everything = [*NIGHTLY_EXTRACT, *extract.record_checks, *transform.defs.assets, *transform.defs.asset_checks]
    with dg.instance_for_test() as instance:
        # The record checks may fail on the samples' deliberately bad rows; the snapshot is still written.
        dg.materialize(everything, selection=dg.AssetSelection.assets(*NIGHTLY_EXTRACT),
                       instance=instance, resources=resources, raise_on_error=False)
        district = dg.materialize(everything, selection=dg.AssetSelection.assets(transform.canvas_district_csvs),
                                  instance=instance, resources=resources, raise_on_error=False)
        checks = list(district.get_asset_check_evaluations())
        for key in sorted(instance.get_dynamic_partitions(SCHOOL_TERM)):
            term = dg.materialize(everything, selection=dg.AssetSelection.assets(transform.canvas_term_csvs),
                                  partition_key=key, instance=instance, resources=resources, raise_on_error=False)
            checks += term.get_asset_check_evaluations()
    canvas = data_dir.path / "canvas"
    files = {p.relative_to(canvas).as_posix(): p.read_bytes() for p in sorted(canvas.rglob("*.csv"))}
    return {"files": files, "checks": checks}


def failed(checks) -> list[str]:
    return [f"{c.asset_key.to_user_string()}: {c.metadata['violations']}" for c in checks if not c.passed]


def test_demo_district_is_byte_identical_run_after_run_and_matches_golden(tmp_path):
    runs = []
    for attempt in ("first", "second"):
        with DemoOneRosterServer(students=40, seed=11) as server:
            runs.append(run_pipeline(server, tmp_path / attempt))
    first, second = runs
    assert first["files"] == second["files"]
    assert failed(first["checks"]) == [] and len(first["checks"]) == 4 + 3 * len(
        [f for f in first["files"] if f.endswith("/courses.csv")])
    assert set(first["files"]) >= {
        "district/accounts.csv", "district/terms.csv", "district/users.csv", "district/user_observers.csv"}
    if os.environ.get("ROSTERBRIDGE_UPDATE_GOLDEN") == "1":
        for name, data in first["files"].items():
            (GOLDEN / name).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / name).write_bytes(data)
    golden = {p.relative_to(GOLDEN).as_posix(): p.read_bytes() for p in sorted(GOLDEN.rglob("*.csv"))}
    assert sorted(golden) == sorted(first["files"])
    for name, data in first["files"].items():
        assert data == golden[name], f"{name} differs from tests/golden/demo_district/{name}"


def test_demo_district_with_observers_and_per_course_terms_passes_canvas_rules(tmp_path):
    mapping = MappingSettings(observers=True, course_mode="per_course_term", login_id_from="email")
    with DemoOneRosterServer(students=40, seed=11) as server:
        run = run_pipeline(server, tmp_path, mapping)
    assert failed(run["checks"]) == []
    observers = run["files"]["district/user_observers.csv"].decode().splitlines()
    assert len(observers) > 40  # every student has one or two guardians


@pytest.mark.parametrize(
    "sample", ["moodle_Test_full_data_set.zip", "moodle_Test_minimal_data_set.zip", "ms_provider_demo_seed.db"]
)
def test_public_samples_give_files_canvas_accepts(tmp_path, monkeypatch, sample):
    path = SAMPLES / sample
    if not path.exists():
        pytest.skip(f"{path} is not here (shared samples live beside the project)")
    # The samples are tiny and bad on purpose: let the extract go on whatever share it rejects.
    monkeypatch.setenv("ROSTERBRIDGE_MAX_REJECT_SHARE", "1")
    with DemoOneRosterServer(source=load_samples(path), state_path=tmp_path / "demo.sqlite") as server:
        run = run_pipeline(server, tmp_path / "data", MappingSettings(observers=True))
    assert failed(run["checks"]) == []
    # Exactly the users the extract kept (all have a username, guardians included with observers on).
    data_dir = DataDir(root=str(tmp_path / "data"))
    (kept,) = duckdb.execute(
        "SELECT count(*) FROM read_parquet(?) WHERE trim(username) <> ''", [str(data_dir.snapshot_paths(["users"])["users"])]
    ).fetchone()
    assert run["files"]["district/users.csv"].count(b"\n") == 1 + kept
