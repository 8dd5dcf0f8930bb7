"""``ragloop monitoring ...`` (local monitoring stack) and ``ragloop drift ...``."""

from __future__ import annotations

import typer

app = typer.Typer(help="Tracing, metrics and the local monitoring stack.", no_args_is_help=True)
drift_app = typer.Typer(help="Drift of queries and answers.", no_args_is_help=True)
