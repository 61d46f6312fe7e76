"""Shared fixtures: a throwaway data dir and Dagster instance per test."""

from __future__ import annotations

import dagster as dg
import pytest

from pipeline.datadir import DataDir


@pytest.fixture
def data_dir(tmp_path) -> DataDir:
    return DataDir(root=str(tmp_path / "data"))


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst
