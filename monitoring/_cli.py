"""``ragloop monitoring ...`` (local monitoring stack) and ``ragloop drift ...``."""

from __future__ import annotations

import typer

app = typer.Typer(help="Tracing, metrics and the local monitoring stack.", no_args_is_help=True)
drift_app = typer.Typer(help="Drift of queries and answers.", no_args_is_help=True)


@app.command("stack")
def stack() -> None:
    """Start the local collector (rotel) and Phoenix as settings say, print their URLs, wait for Ctrl-C."""
    import time

    from monitoring._stack import start_local_stack
    from ragloop.settings import Settings

    procs = start_local_stack(Settings())
    for proc in procs:
        typer.echo(f"  {proc.name}: {proc.url}")
    try:
        while all(p.alive for p in procs):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for proc in reversed(procs):
            proc.stop()


@app.command("outbox", hidden=True)
def outbox(deliver: bool = typer.Option(False, help="(moved)")) -> None:
    """Moved to `ragloop outbox status` / `ragloop outbox retry` (every sink, not only LangSmith)."""
    from ragloop.errors import UserError

    raise UserError("moved: run `ragloop outbox status` (and `ragloop outbox retry`)")


# The drift commands live with the drift package (imports stay lazy inside each command).
from monitoring.drift._cli import register as _register_drift  # noqa: E402

_register_drift(drift_app)
