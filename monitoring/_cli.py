"""``ragloop monitoring ...`` (local monitoring stack) and ``ragloop drift ...``."""

from __future__ import annotations

import typer

app = typer.Typer(help="Tracing, metrics and the local monitoring stack.", no_args_is_help=True)
drift_app = typer.Typer(help="Drift of queries and answers.", no_args_is_help=True)

# The drift commands live with the drift package (imports stay lazy inside each command).
from monitoring.drift._cli import register as _register_drift  # noqa: E402

_register_drift(drift_app)
