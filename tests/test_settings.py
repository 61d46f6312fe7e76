"""The README's configuration table, `.env.example` and pipeline/settings.py list the same variables."""

import re
from pathlib import Path

import pytest

from pipeline import settings

ROOT = Path(__file__).resolve().parents[1]


def test_env_example_is_generated_from_the_settings():
    assert (ROOT / ".env.example").read_text() == settings.render_env_example()


def test_readme_documents_every_setting():
    readme = (ROOT / "README.md").read_text()
    missing = [s.name for s in settings.SETTINGS if f"`{s.name}`" not in readme]
    assert missing == []


def test_env_example_never_carries_a_secret_value():
    secret_values = {}
    for line in settings.render_env_example().splitlines():
        match = re.match(r"^([A-Z_0-9]+)=(.*)$", line)
        if match and settings.BY_NAME[match.group(1)].secret:
            secret_values[match.group(1)] = match.group(2)
    assert secret_values == {s.name: "" for s in settings.SETTINGS if s.secret}
    assert "CANVAS_ACCESS_TOKEN" in secret_values and "ONEROSTER_CLIENT_SECRET" in secret_values


def test_secrets_cannot_be_read_as_plain_settings(monkeypatch):
    monkeypatch.setenv("ONEROSTER_CLIENT_SECRET", "s3cret")
    with pytest.raises(KeyError) as excinfo:
        settings.get("ONEROSTER_CLIENT_SECRET")
    assert "s3cret" not in str(excinfo.value)


def test_numbers_are_checked_with_the_variable_named(monkeypatch):
    monkeypatch.setenv("ONEROSTER_PAGE_SIZE", "lots")
    with pytest.raises(ValueError, match="ONEROSTER_PAGE_SIZE must be a whole number"):
        settings.get_int("ONEROSTER_PAGE_SIZE", minimum=1)


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_non_finite_numbers_are_refused_with_the_variable_named(monkeypatch, value):
    """nan passes every comparison as false: ROSTERBRIDGE_MAX_REJECT_SHARE=nan would never block a run."""
    monkeypatch.setenv("ROSTERBRIDGE_MAX_REJECT_SHARE", value)
    with pytest.raises(ValueError, match="ROSTERBRIDGE_MAX_REJECT_SHARE must be a finite number"):
        settings.get_float("ROSTERBRIDGE_MAX_REJECT_SHARE")
