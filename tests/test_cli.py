"""The ``ragloop`` command line as users run it: real subprocesses, real exit codes, real output.

Two classes of fault are pinned here:

* ``ragloop config`` (and anything else that prints settings) must never show a secret in clear;
* a user error is ONE clear line on stderr and a non-zero exit code, never a Python traceback
  (``--verbose`` brings the traceback back for debugging).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from ragloop.process import free_port
from ragloop.settings import Settings


def _ragloop(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    return subprocess.run(
        [sys.executable, "-m", "ragloop.cli", *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


#: The secrets users set today; every other field typed SecretStr is added to them.
KNOWN_SECRETS = {
    "openai_api_key": "OPENAI_API_KEY",
    "langsmith_api_key": "LANGSMITH_API_KEY",
    "otlp_headers": "OTEL_EXPORTER_OTLP_HEADERS",
    "database_url": "RAGLOOP_DATABASE_URL",
}


def _secret_fields() -> dict[str, str]:
    """Every Settings field typed as a secret -> its first environment variable."""
    fields = dict(KNOWN_SECRETS)
    for name, field in Settings.model_fields.items():
        if "SecretStr" in str(field.annotation):
            alias = field.validation_alias
            choices = getattr(alias, "choices", [alias])
            fields[name] = str(choices[0])
    return fields


def test_the_known_secrets_are_secret_types() -> None:
    secrets = {name for name, field in Settings.model_fields.items() if "SecretStr" in str(field.annotation)}
    for name in KNOWN_SECRETS:
        assert name in secrets, f"{name} must be a SecretStr"
    # The class: any field whose name says it is a credential is a secret type.
    for name in Settings.model_fields:
        if name.endswith(("_api_key", "_token", "_password", "_secret", "_headers")):
            assert name in secrets, f"{name} looks like a credential but is not a SecretStr"


@pytest.mark.parametrize("markdown", [False, True])
def test_config_never_prints_a_secret(tmp_path: Path, markdown: bool) -> None:
    env = {"RAGLOOP_DATA_DIR": str(tmp_path / "data")}
    values = {}
    for i, (name, variable) in enumerate(sorted(_secret_fields().items())):
        value = f"s3cr3t-{name}-{i}-zq"
        if name == "database_url":
            value = f"postgresql+psycopg2://ragloop:{value}@db.example:5432/ragloop"
            values[name] = f"s3cr3t-{name}-{i}-zq"
        elif name == "otlp_headers":
            value = f"signoz-ingestion-key={value}"
            values[name] = value.split("=", 1)[1]
        else:
            values[name] = value
        env[variable] = value
    args = ["config", "--markdown"] if markdown else ["config"]
    result = _ragloop(args, env, tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    for name, secret in values.items():
        assert secret not in out, f"{name} printed in clear by `ragloop {' '.join(args)}`"
    if not markdown:
        # Still useful: the database URL keeps its host, only the password is hidden.
        assert "db.example" in out


def test_settings_repr_and_errors_hide_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-abc123zq")
    monkeypatch.setenv("RAGLOOP_DATABASE_URL", "postgresql+psycopg2://u:pw-zq-99@h/db")
    settings = Settings()
    text = repr(settings) + str(settings) + str(settings.model_dump())
    assert "sk-live-abc123zq" not in text and "pw-zq-99" not in text
    assert isinstance(settings.openai_api_key, SecretStr)
    # ... while the code that needs the value still gets it.
    assert settings.chatlog_url == "postgresql+psycopg2://u:pw-zq-99@h/db"
    assert settings.openai_api_key.get_secret_value() == "sk-live-abc123zq"


# --- user errors ------------------------------------------------------------------------------


def _bad_inputs(tmp: Path) -> list[tuple[str, list[str], dict[str, str]]]:
    """(what, argv, extra env): one bad input per command group, as a new user would type them."""
    closed = f"http://127.0.0.1:{free_port()}"
    closed_pg = f"postgresql+psycopg2://u:pw@127.0.0.1:{free_port()}/db"
    return [
        ("ingest: missing path", ["ingest", str(tmp / "no-such-folder")], {}),
        ("ingest: unreachable chroma", ["ingest", str(tmp)], {"RAGLOOP_CHROMA_URL": closed}),
        ("ingest: bad chroma url", ["ingest", str(tmp)], {"RAGLOOP_CHROMA_URL": "not a url"}),
        ("config: bad value", ["config"], {"RAGLOOP_PORT": "seventy"}),
        ("serve: bad port", ["serve", "--port", "99999999"], {}),
        ("llm serve: missing gguf", ["llm", "serve", "--gguf", str(tmp / "none.gguf")], {}),
        ("corpus: folder missing", ["corpus", "fetch"], {"RAGLOOP_CORPUS": str(tmp / "nowhere")}),
        ("drift: saved reference missing", ["drift", "run", "--reference", "saved:NOPE"], {}),
        ("drift: bad window", ["drift", "run", "--window", "fortnight"], {}),
        ("drift show: bad database", ["drift", "show"], {"RAGLOOP_DATABASE_URL": "nosuchdb://x"}),
        ("eval: unknown dataset", ["eval", "run", "--dataset", "no-such-dataset"], {}),
        ("eval compare: missing reports", ["eval", "compare", str(tmp / "a.json"), str(tmp / "b.json")], {}),
        ("db current: unreachable database", ["db", "current"], {"RAGLOOP_DATABASE_URL": closed_pg}),
        ("outbox status: unreachable database", ["outbox", "status"], {"RAGLOOP_DATABASE_URL": closed_pg}),
        ("drift show: unreachable database", ["drift", "show"], {"RAGLOOP_DATABASE_URL": closed_pg}),
        ("usage: unknown option", ["ingest", "--no-such-option", str(tmp)], {}),
        ("usage: missing argument", ["ingest"], {}),
        ("usage: unknown command", ["no-such-command"], {}),
        ("usage: bad option type", ["llm", "serve", "--port", "eighty"], {}),
    ]


def _cases() -> list[str]:
    return [what for what, _, _ in _bad_inputs(Path("/tmp"))]


@pytest.mark.parametrize("what", _cases())
def test_a_user_error_is_one_line_and_a_nonzero_exit(tmp_path: Path, what: str) -> None:
    (tmp_path / "data").mkdir()
    case = {w: (argv, env) for w, argv, env in _bad_inputs(tmp_path)}[what]
    argv, extra = case
    env = {"RAGLOOP_DATA_DIR": str(tmp_path / "data"), "RAGLOOP_TELEMETRY": "false", **extra}
    result = _ragloop(argv, env, tmp_path)
    assert result.returncode != 0, f"{what}: exit 0\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr + result.stdout, f"{what}:\n{result.stderr}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"{what}: expected one line on stderr, got:\n{result.stderr}"
    assert lines[0].lower().startswith("error"), lines[0]
    assert "pw@" not in lines[0]  # a database URL's password never shows in an error


def test_verbose_keeps_the_traceback(tmp_path: Path) -> None:
    env = {"RAGLOOP_DATA_DIR": str(tmp_path / "data"), "RAGLOOP_TELEMETRY": "false"}
    result = _ragloop(["--verbose", "drift", "run", "--reference", "saved:NOPE"], env, tmp_path)
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_every_command_has_help() -> None:
    from typer.main import get_command
    from typer.testing import CliRunner

    from ragloop.cli import app

    root = get_command(app)
    runner = CliRunner()

    def walk(command: object, path: list[str]) -> None:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        for name, sub in (getattr(command, "commands", None) or {}).items():
            walk(sub, [*path, name])

    walk(root, [])


@pytest.mark.parametrize("command", [["drift", "show"], ["db", "current"], ["outbox", "status"]])
def test_verbose_logs_and_tracebacks_never_show_a_secret(tmp_path: Path, command: list[str]) -> None:
    # Everything printed with --verbose (DEBUG logs, the traceback of a refused connection).
    secrets = {
        "OPENAI_API_KEY": "sk-zq-openai-1",
        "LANGSMITH_API_KEY": "lsv2-zq-langsmith-2",
        "OTEL_EXPORTER_OTLP_HEADERS": "signoz-ingestion-key=zq-header-3",
    }
    password = "zq-dbpass-4"
    env = {
        **secrets,
        "RAGLOOP_DATA_DIR": str(tmp_path / "data"),
        "RAGLOOP_DATABASE_URL": f"postgresql+psycopg2://ragloop:{password}@127.0.0.1:{free_port()}/db",
    }
    result = _ragloop(["--verbose", *command], env, tmp_path)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    for value in [*secrets.values(), password, "zq-header-3"]:
        assert value not in out, f"{value} shown by `ragloop --verbose {' '.join(command)}`"
