"""The passback benchmark at a tiny scale: its synthetic export follows the export contract and one
changed grade still means exactly one write."""

from __future__ import annotations

import pyarrow.parquet as pq

from benchmarks.passback import _synthetic_export, changed_set_at_scale
from pipeline.passback.export import SCHEMAS, export_path


def test_synthetic_export_has_every_export_column(tmp_path):
    _synthetic_export(tmp_path / "export", tmp_path / "snapshot", students=50, items=2, changed_student=None)
    for name, schema in SCHEMAS.items():
        assert pq.read_schema(export_path(tmp_path / "export", name)).names == schema.names, name


def test_changed_set_at_small_scale(capsys):
    changed_set_at_scale(students=500, items=3)  # asserts exactly one pending write itself
    assert "one changed grade -> exactly 1 write" in capsys.readouterr().out
