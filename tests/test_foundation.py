import os
import stat

import pytest

from pipeline.datadir import DataDir, atomic_path, tonight
from pipeline.http import RetryPolicy, parse_retry_after


def test_atomic_path_leaves_no_partial_file_on_failure(tmp_path):
    target = tmp_path / "out" / "file.csv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_atomic_path_replaces_whole_file(tmp_path):
    target = tmp_path / "file.csv"
    target.write_text("old")
    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert target.read_text() == "old"
    assert target.read_text() == "new"


def test_snapshot_paths_come_from_the_newest_night_holding_every_entity(tmp_path):
    data = DataDir(root=str(tmp_path))
    written = {"2026-11-23": ("users", "orgs", "courses"), "2026-11-24": ("users", "orgs"), "2026-11-25": ("users",)}
    for night, entities in written.items():
        for entity in entities:
            path = data.entity_path(night, entity)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
    assert data.snapshot_paths(["users"])["users"].parent.name == "2026-11-25"
    # The 25th stopped after users: both entities come from the 24th, never users of one night and orgs of another.
    paths = data.snapshot_paths(["users", "orgs"], optional=["courses"])
    assert {e: p.parent.name for e, p in paths.items()} == {"users": "2026-11-24", "orgs": "2026-11-24"}
    assert "courses" not in data.snapshot_paths(["orgs"], optional=["courses"])  # not the 23rd's courses either
    assert data.snapshot_paths(["courses"])["courses"].parent.name == "2026-11-23"
    with pytest.raises(FileNotFoundError, match="materialize oneroster/classes first"):
        data.snapshot_paths(["users", "classes"])
    with pytest.raises(ValueError):
        data.snapshot_dir("../etc")
    assert len(tonight()) == 10


def test_retry_policy_honours_retry_after_and_caps_backoff():
    policy = RetryPolicy(backoff_base_seconds=1, backoff_max_seconds=8)
    assert policy.delay(1, "3") == 3
    assert policy.delay(1, "120") == 8
    for attempt in range(1, 10):
        assert 0 < policy.delay(attempt) <= 8
    assert parse_retry_after("garbage") is None
    assert parse_retry_after(None) is None
