"""`<NAME>_FILE` names a file whose content is the setting, for secrets mounted as files."""

from pathlib import Path

import pytest
from pydantic_settings import SettingsError

from servicekit.settings import ServiceSettings


class WithAList(ServiceSettings):
    origins: tuple[str, ...] = ()


def test_a_setting_comes_from_the_file_its_file_variable_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "postgresql+asyncpg://stack:s3cret@db.internal:5432/stack"
    (tmp_path / "url").write_text(url + "\n")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path / "url"))
    assert ServiceSettings().database_url == url


def test_a_json_setting_from_a_file_is_parsed_as_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "origins").write_text('["https://a.example", "https://b.example"]\n')
    monkeypatch.setenv("ORIGINS_FILE", str(tmp_path / "origins"))
    assert WithAList().origins == ("https://a.example", "https://b.example")


def test_a_value_and_a_file_for_one_setting_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "url").write_text("postgresql+asyncpg://a@b/c")
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://x@y/z")
    monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path / "url"))
    with pytest.raises(SettingsError, match="DATABASE_URL or DATABASE_URL_FILE, not both"):
        ServiceSettings()


def test_a_missing_file_or_bad_json_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path / "absent"))
    with pytest.raises(SettingsError, match="DATABASE_URL_FILE: No such file"):
        ServiceSettings()
    monkeypatch.delenv("DATABASE_URL_FILE")
    (tmp_path / "origins").write_text("not json")
    monkeypatch.setenv("ORIGINS_FILE", str(tmp_path / "origins"))
    with pytest.raises(SettingsError, match="ORIGINS_FILE: not JSON"):
        WithAList()


def test_without_a_file_variable_the_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOG_LEVEL_FILE", raising=False)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    assert ServiceSettings().log_level == "WARNING"
