"""Dagster resources: the clients of the two peers, mapping settings and the data directory."""

from __future__ import annotations

from typing import Any

from pipeline import settings
from pipeline.datadir import DataDir
from pipeline.passback.config import passback_settings_from_env
from pipeline.resources.canvas import canvas_from_env, upload_policy_from_env
from pipeline.resources.mapping import MappingSettings
from pipeline.resources.oneroster import oneroster_from_env


def build_resources() -> dict[str, Any]:
    """The resources every run gets, configured from the environment (see pipeline/settings.py)."""
    return {
        "data_dir": DataDir(root=settings.get("ROSTERBRIDGE_DATA_DIR")),
        "oneroster": oneroster_from_env(),
        "mapping": MappingSettings.from_env(),
        "passback": passback_settings_from_env(),
        "canvas": canvas_from_env(),
        "canvas_upload": upload_policy_from_env(),
    }
