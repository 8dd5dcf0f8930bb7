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


@app.command("outbox")
def outbox(deliver: bool = typer.Option(False, help="Try to deliver due items now.")) -> None:
    """Show LangSmith feedback still waiting in the chat log's outbox (and optionally deliver it)."""
    from monitoring._langsmith import LangSmithReporter
    from ragloop.settings import Settings

    reporter = LangSmithReporter(Settings())
    try:
        if deliver:
            typer.echo(f"delivered {reporter.deliver_due()}")
        for row in reporter.pending():
            status = f"attempts={row['attempts']} {row['last_error'] or ''}"
            typer.echo(f"{row['turn_id']} {row['key']}={row['score']} {status}")
    finally:
        reporter.shutdown()


# The drift commands live with the drift package (imports stay lazy inside each command).
from monitoring.drift._cli import register as _register_drift  # noqa: E402

_register_drift(drift_app)
