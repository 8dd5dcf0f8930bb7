"""``ragloop llm ...``, ``ragloop serve`` and ``ragloop run``."""

from __future__ import annotations

import typer

llm_app = typer.Typer(help="The local LLM: fetch the model, serve it.", no_args_is_help=True)


def serve() -> None:
    """Serve the chat app (API + Gradio UI) against the configured LLM endpoint."""
    raise typer.Exit(code=2)


def run() -> None:
    """Fetch model and corpus, index, start the local LLM, monitoring and the chat app."""
    raise typer.Exit(code=2)
