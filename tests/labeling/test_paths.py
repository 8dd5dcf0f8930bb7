"""Paths the labeling commands use do not depend on the current directory; the local keys are printed."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragloop.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_export_defaults_to_the_data_dirs_exports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ragloop.cli import app

    data = tmp_path / "data"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("RAGLOOP_DATA_DIR", str(data))
    monkeypatch.delenv("RAGLOOP_DATABASE_URL", raising=False)
    monkeypatch.delenv("RAGLOOP_LOOP_EXPORT_DIR", raising=False)
    assert Settings().loop_export_dir is None
    res = CliRunner().invoke(app, ["loop", "export", "--format", "dpo"])
    assert res.exit_code == 0, res.output
    assert (data / "exports" / "dpo" / "README.md").exists()
    assert not (elsewhere / "data").exists()


def test_tool_venvs_resolve_from_the_repository_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labeling._ui import tool_venv

    monkeypatch.chdir(tmp_path)
    settings = Settings(data_dir=tmp_path)
    assert settings.argilla_venv is None and settings.label_studio_venv is None
    assert tool_venv(settings.argilla_venv, "argilla") == ROOT / ".venv-tools" / "argilla"
    assert tool_venv(settings.label_studio_venv, "label-studio") == ROOT / ".venv-tools" / "label-studio"
    assert tool_venv(tmp_path / "mine", "argilla") == tmp_path / "mine"


def test_the_login_line_names_the_local_api_key(tmp_path: Path) -> None:
    from labeling._ui import LOCAL_ARGILLA_API_KEY, LocalArgilla, LocalLabelStudio, login_line

    argilla = LocalArgilla(tmp_path / "venv", tmp_path / "a", port=6999)
    assert login_line(argilla) == (
        "labeling UI (argilla): http://127.0.0.1:6999  "
        f"(user ragloop, password ragloop-local, API key {LOCAL_ARGILLA_API_KEY})"
    )
    studio = LocalLabelStudio(tmp_path / "venv", tmp_path / "l", port=8999, api_key="tok-1")
    assert login_line(studio).endswith("API token tok-1)")
    description = Settings.model_fields["argilla_api_key"].description or ""
    assert LOCAL_ARGILLA_API_KEY in description
