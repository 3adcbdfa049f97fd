"""Settings precedence, and every setting documented in docs/configuration.md."""

from __future__ import annotations

import pathlib

import pytest

from identity_hub.settings import SETTINGS, load_settings

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text()
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in text or s.env not in text]
    assert missing == []


def test_flags_beat_environment_beat_file(tmp_path: pathlib.Path) -> None:
    (tmp_path / "config.toml").write_text('port = 9000\nhost = "0.0.0.0"\npage_size = 7\n')
    env = {"IDENTITY_HUB_PORT": "9100", "IDENTITY_HUB_DATA_DIR": str(tmp_path)}
    s = load_settings({"port": 9200}, environ=env)
    assert (s.port, s.host, s.page_size) == (9200, "0.0.0.0", 7)
    assert load_settings({}, environ=env).port == 9100
    assert load_settings({"data_dir": str(tmp_path)}, environ={}).port == 9000
    assert load_settings({"data_dir": str(tmp_path)}, environ={}).db_url.endswith("hub.db")


def test_bad_values_are_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="IDENTITY_HUB_OPEN_TENANCY"):
        load_settings({"data_dir": str(tmp_path)}, environ={"IDENTITY_HUB_OPEN_TENANCY": "maybe"})
    (tmp_path / "config.toml").write_text("colour = 'blue'\n")
    with pytest.raises(ValueError, match="unknown setting"):
        load_settings({"data_dir": str(tmp_path)}, environ={})
