"""Every server command's port, as users hit it: a bad or busy port is ONE line and exit 2, at once.

The class of fault (new-user report): ``ragloop llm serve --port -1`` (or a port in use) ended in
llama.cpp's traceback, ``--port 99999`` was accepted, and ``ragloop serve`` on a port in use loaded
everything for ~90 s before uvicorn's "address already in use" and exit 3. The rule for every
command with a port (``serve``, ``run``, ``llm serve``, ``drift ui``, ``monitoring stack``,
``labeling ui``): the option itself takes only 1-65535, and a port in use is found before any slow
start, in one line naming the port and the option or variable that sets it.

Every case runs the real command line in a subprocess against a real listening socket.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragloop.process import free_port

#: Variables of the developer's shell that would point a command at a running server.
_UNSET = ("ARGILLA_API_URL", "LABEL_STUDIO_URL", "OPENAI_BASE_URL", "RAGLOOP_CHROMA_URL")


def _ragloop(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 90) -> tuple[int, str, float]:
    """(exit code, stderr, seconds) of ``ragloop ARGS``."""
    full = {k: v for k, v in os.environ.items() if k not in _UNSET}
    full.update({"HF_HUB_OFFLINE": "1", "RAGLOOP_TELEMETRY": "false", **env})
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "ragloop.cli", *args],
        env=full,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return result.returncode, result.stderr + result.stdout, time.monotonic() - started


def _ragloop_here(
    args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    """(exit code, output) of ``ragloop.cli.main(ARGS)`` in this process: the same code, no start-up.

    For errors found before anything starts (an option's value); a subprocess would spend most of
    its time importing.
    """
    from ragloop.cli import main

    for name in _UNSET:
        monkeypatch.delenv(name, raising=False)
    for name, value in {"RAGLOOP_TELEMETRY": "false", **env}.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.err + captured.out


def _one_error_line(code: int, output: str) -> str:
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip() and " INFO " not in line]
    assert len(lines) == 1, f"expected one line, got:\n{output}"
    assert lines[0].startswith("Error: "), lines[0]
    assert code == 2, f"exit {code}: {lines[0]}"
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something listens on (127.0.0.1), for the length of the test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "data").mkdir()
    return {"RAGLOOP_DATA_DIR": str(tmp_path / "data"), "RAGLOOP_LLM_PORT": str(free_port())}


@pytest.mark.parametrize(
    "argv",
    [
        ["llm", "serve", "--port", "-1"],
        ["llm", "serve", "--port", "99999"],
        ["llm", "serve", "--port", "0"],
        ["serve", "--port", "70000"],
        ["serve", "--port", "-1"],
        ["run", "--port", "65536"],
        ["drift", "ui", "--port", "100000"],
    ],
    ids=" ".join,
)
def test_a_port_out_of_range_is_refused_by_the_option(
    env: dict[str, str], argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = _ragloop_here(argv, env, monkeypatch, capsys)
    line = _one_error_line(code, output)
    assert "--port" in line and argv[-1] in line and "65535" in line, line


def _junk_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "junk.gguf"
    path.write_bytes(b"not a gguf file" * 64)
    return path


def _cases(tmp_path: Path, port: int) -> dict[str, tuple[list[str], dict[str, str], str]]:
    """name -> (argv, extra env, the option or variable the message must name)."""
    gguf = str(_junk_gguf(tmp_path))
    return {
        "llm serve --port": (["llm", "serve", "--port", str(port), "--gguf", gguf], {}, "--port"),
        "llm serve RAGLOOP_LLM_PORT": (
            ["llm", "serve", "--gguf", gguf],
            {"RAGLOOP_LLM_PORT": str(port)},
            "RAGLOOP_LLM_PORT",
        ),
        "serve --port": (["serve", "--port", str(port)], {}, "--port"),
        "serve RAGLOOP_PORT": (["serve"], {"RAGLOOP_PORT": str(port)}, "RAGLOOP_PORT"),
        "run --port": (["run", "--port", str(port)], {}, "--port"),
        "drift ui --port": (["drift", "ui", "--port", str(port)], {}, "--port"),
        "drift ui RAGLOOP_DRIFT_UI_PORT": (
            ["drift", "ui"],
            {"RAGLOOP_DRIFT_UI_PORT": str(port)},
            "RAGLOOP_DRIFT_UI_PORT",
        ),
        "monitoring stack collector": (
            ["monitoring", "stack"],
            {
                "RAGLOOP_PHOENIX": "false",
                "RAGLOOP_COLLECTOR": "true",
                "RAGLOOP_COLLECTOR_HTTP_PORT": str(port),
            },
            "RAGLOOP_COLLECTOR_HTTP_PORT",
        ),
        "monitoring stack phoenix": (
            ["monitoring", "stack"],
            {"RAGLOOP_PHOENIX": "true", "RAGLOOP_COLLECTOR": "false", "RAGLOOP_PHOENIX_PORT": str(port)},
            "RAGLOOP_PHOENIX_PORT",
        ),
        "labeling ui argilla": (
            ["labeling", "ui"],
            {"RAGLOOP_LABELING_UI": "argilla", "RAGLOOP_ARGILLA_PORT": str(port)},
            "RAGLOOP_ARGILLA_PORT",
        ),
        "labeling ui labelstudio": (
            ["labeling", "ui"],
            {"RAGLOOP_LABELING_UI": "labelstudio", "RAGLOOP_LABEL_STUDIO_PORT": str(port)},
            "RAGLOOP_LABEL_STUDIO_PORT",
        ),
    }


@pytest.mark.parametrize("case", list(_cases(Path("/tmp"), 1)))
def test_a_port_in_use_is_one_line_before_any_slow_start(
    tmp_path: Path, env: dict[str, str], busy_port: int, case: str
) -> None:
    argv, extra, setting = _cases(tmp_path, busy_port)[case]
    code, output, seconds = _ragloop(argv, {**env, **extra}, tmp_path)
    line = _one_error_line(code, output)
    assert str(busy_port) in line and "in use" in line, line
    assert setting in line, line
    # Found before the slow start (the app took ~90 s to load, then failed): the CLI's own start-up
    # (imports) is the rest.
    assert seconds < 30, f"{case}: {seconds:.0f} s before the error"


def test_llama_cpp_refusing_to_start_is_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    """A model llama.cpp cannot load: its RuntimeError (no detail) becomes one line naming the file."""
    gguf = _junk_gguf(tmp_path)
    code, output, _ = _ragloop(["llm", "serve", "--gguf", str(gguf)], env, tmp_path, timeout=60)
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and code == 2, output
    assert "junk.gguf" in errors[0] and env["RAGLOOP_LLM_PORT"] in errors[0], errors[0]


@pytest.mark.parametrize(
    ("option", "value"),
    [("--window", "xyz"), ("--reference", "xyz"), ("--window", "2026-13-45/2026-14-01")],
)
def test_a_drift_window_error_says_its_hint_once(
    env: dict[str, str],
    option: str,
    value: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, output = _ragloop_here(["drift", "run", option, value], env, monkeypatch, capsys)
    line = _one_error_line(code, output)
    assert option in line and line.count(repr(value)) == 1, line
    assert line.count("START/END") == 1 and line.count("week") == 1, line
    if option == "--reference":
        assert "saved:NAME" in line and "previous" in line, line
