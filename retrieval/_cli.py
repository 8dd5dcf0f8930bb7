"""``ragloop ingest`` and ``ragloop corpus ...``."""

from __future__ import annotations

from pathlib import Path

import typer

corpus_app = typer.Typer(help="Fetch and index the default corpus.", no_args_is_help=True)


def ingest(paths: list[Path] = typer.Argument(..., help="Files or folders to index.")) -> None:
    """Load, split, embed and store documents in Chroma (incremental: unchanged files are skipped)."""
    raise typer.Exit(code=2)  # filled in by the retrieval work
