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
        # Issue 9 fault #12: commands that printed their own `error:` line with exit code 1.
        ("loop export: unknown format", ["loop", "export", "--format", "nope", "--out", str(tmp / "o")], {}),
        ("loop select: negative since", ["loop", "select", "--since-days", "-1"], {}),
        ("db upgrade: unknown revision", ["db", "upgrade", "nope-revision"], {}),
        ("db current: bad url", ["db", "current", "--url", "nosuchdb://x"], {}),
        ("arize backfill: bad date", ["arize", "backfill", "--since", "notadate"], {}),
        ("arize backfill: not configured", ["arize", "backfill", "--since", "7d"], {}),
        ("outbox status: folder missing", ["outbox", "status", "--url", f"sqlite:///{tmp}/nodir/x.db"], {}),
        ("outbox retry: folder missing", ["outbox", "retry", "--url", f"sqlite:///{tmp}/nodir/x.db"], {}),
        ("outbox status: no table", ["outbox", "status", "--url", f"sqlite:///{tmp}/empty.db"], {}),
        ("drift: impossible window", ["drift", "run", "--window", "2026-13-45/2026-14-01"], {}),
        ("drift: impossible reference", ["drift", "run", "--reference", "2026-13-45/2026-14-01"], {}),
        ("monitoring outbox: moved", ["monitoring", "outbox"], {}),
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
    assert lines[0].startswith("Error: "), lines[0]
    assert result.returncode == 2, f"{what}: exit {result.returncode}: {lines[0]}"
    assert "pw@" not in lines[0] and ":pw" not in lines[0]  # a database URL's password never shows
    # No Python class names: the user reads what is wrong, not which exception said it.
    for name in ("Error:", "Exception", "psycopg2", "sqlalchemy"):
        assert name not in lines[0][len("Error: ") :], f"{what}: {lines[0]}"
    if what.startswith("drift: impossible"):
        assert "--window" in lines[0] or "--reference" in lines[0], lines[0]
    if what.startswith("outbox") and "folder missing" in what:
        assert "does not exist" in lines[0] and "db upgrade" not in lines[0], lines[0]


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


def test_unreachable_postgres_is_one_line_without_password_or_driver(tmp_path: Path) -> None:
    env = {
        "RAGLOOP_DATA_DIR": str(tmp_path / "data"),
        "RAGLOOP_DATABASE_URL": f"postgresql+psycopg2://bob:secret-zq@127.0.0.1:{free_port()}/rl",
    }
    result = _ragloop(["db", "current"], env, tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for word in ("secret-zq", "psycopg2", "OperationalError", "(Background"):
        assert word not in lines[0], lines[0]
    assert "127.0.0.1" in lines[0], lines[0]  # still says which server


def test_every_setting_description_names_its_variable_then_its_meaning() -> None:
    import re

    for name, field in Settings.model_fields.items():
        text = field.description or ""
        assert re.match(r"^[A-Z][A-Z0-9_]+: \S", text), f"{name}: {text!r} is not 'VAR: meaning'"
        variable = text.partition(":")[0]
        alias = field.validation_alias
        choices = [str(c) for c in getattr(alias, "choices", [alias])] if alias else [name.upper()]
        assert variable in choices, f"{name}: description names {variable}, env is {choices}"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg2://bob@db.example/rl?password=hunter2pw",
        "postgresql+psycopg2://bob@db.example/rl?sslmode=require&PASSWORD=hunter2pw",
        "postgresql+psycopg2://db.example/rl?user=bob&pwd=hunter2pw",
        "postgresql+psycopg2://bob:hunter2pw@db.example/rl?password=hunter2pw",
    ],
)
def test_config_masks_a_password_given_as_a_query_parameter(tmp_path: Path, url: str) -> None:
    from ragloop.settings import mask_url

    assert "hunter2pw" not in mask_url(url)
    assert "db.example" in mask_url(url)
    env = {"RAGLOOP_DATA_DIR": str(tmp_path / "data"), "RAGLOOP_DATABASE_URL": url}
    result = _ragloop(["config"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "hunter2pw" not in result.stdout + result.stderr
    assert "db.example" in result.stdout


@pytest.mark.parametrize("command", [["db", "current"], ["drift", "show"], ["loop", "status"]])
def test_a_database_that_does_not_exist_on_the_server_is_one_line(
    postgres_url: str, tmp_path: Path, command: list[str]
) -> None:
    url = postgres_url.rsplit("/", 1)[0] + "/no_such_db_zq"
    env = {"RAGLOOP_DATA_DIR": str(tmp_path / "data"), "RAGLOOP_DATABASE_URL": url}
    result = _ragloop(command, env, tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("Error: ") and "no_such_db_zq" in lines[0], lines[0]
    assert "psycopg2" not in lines[0] and "OperationalError" not in lines[0], lines[0]
