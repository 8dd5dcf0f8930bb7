"""``ragloop eval ...``: offline evaluation harness."""

from __future__ import annotations

import typer

app = typer.Typer(help="Evaluate faithfulness, retrieval and answers.", no_args_is_help=True)
