"""The ``ragloop`` command line. Each package contributes its own commands from a ``_cli`` module.

Heavy libraries (torch, chromadb, gradio, evidently, dagster) are imported inside the commands,
so ``ragloop --help`` answers at once.

Errors: a user error (:class:`ragloop.errors.UserError`, and the standard exceptions that
:func:`ragloop.errors.user_message` maps: missing files, bad values and settings, refused
connections, missing extras) is printed as ONE line, ``Error: ...``, on stderr, with exit code 2;
``--verbose`` adds the traceback. Anything else is a bug and keeps its traceback.

Logging: the long-running commands (``serve``, ``run``, servers) log at INFO; one-shot commands
log warnings only, so their output is their result; ``--verbose`` logs everything (DEBUG).
"""

from __future__ import annotations

import logging
import sys

import typer

try:  # typer >= 0.2x carries its own copy of click; its usage errors derive from TyperException
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer on click
    from click import ClickException  # type: ignore[assignment]

from chatbot import _cli as chatbot_cli
from eval import _cli as eval_cli
from labeling import _backends_cli as labeling_cli
from labeling import _cli as loop_cli
from monitoring import _arize_cli as arize_cli
from monitoring import _cli as monitoring_cli
from ragloop import _db_cli as db_cli
from ragloop.process import parse_port
from retrieval import _cli as retrieval_cli

app = typer.Typer(
    help="ragloop: a RAG chatbot with a closed LLMOps loop (trace, measure, evaluate, detect drift, label).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


#: Commands (first word, or "group sub") that run until stopped: they log at INFO.
_SERVER_COMMANDS = ("serve", "run", "llm serve", "monitoring stack", "drift ui")


def _is_server_command(argv: list[str]) -> bool:
    words = " ".join(a for a in argv if not a.startswith("-"))
    return any(words == c or words.startswith(c + " ") for c in _SERVER_COMMANDS)


@app.callback()
def _main(
    ctx: typer.Context,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging, and tracebacks of errors."),
) -> None:
    """Configure logging and hand the composition root's factories to the commands (``ctx.obj``)."""
    level = logging.INFO if _is_server_command(sys.argv[1:]) else logging.WARNING
    logging.basicConfig(
        level=logging.DEBUG if verbose else level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from ragloop import app as composition

    # Commands of lower layers that need the chat layer (``eval run``) get it from here.
    ctx.obj = {"build_service": composition.build_chat_service, "prompt_version": composition.prompt_version}


app.command("ingest")(retrieval_cli.ingest)
app.add_typer(retrieval_cli.corpus_app, name="corpus")
app.add_typer(retrieval_cli.embeddings_app, name="embeddings")
app.add_typer(chatbot_cli.llm_app, name="llm")
app.add_typer(monitoring_cli.app, name="monitoring")
app.add_typer(monitoring_cli.drift_app, name="drift")
app.add_typer(eval_cli.app, name="eval")
app.add_typer(labeling_cli.app, name="labeling")
app.add_typer(loop_cli.app, name="loop")
app.add_typer(arize_cli.app, name="arize")
app.add_typer(db_cli.db_app, name="db")
app.add_typer(db_cli.outbox_app, name="outbox")


@app.command("config")
def config(
    markdown: bool = typer.Option(False, "--markdown", help="Print a Markdown table for docs."),
) -> None:
    """Show every setting, the environment variable that sets it, and its current value."""
    from ragloop.settings import Settings, display_value

    if markdown:
        typer.echo("| variable | meaning | default |\n|---|---|---|")
        defaults = Settings.model_construct()  # the defaults, not this machine's environment
    else:
        settings = Settings()
    for name, field in Settings.model_fields.items():
        variable, _, meaning = (field.description or name).partition(": ")
        if markdown:
            default = display_value(defaults, name) if not callable(field.default_factory) else "(computed)"
            typer.echo(f"| `{variable}` | {meaning or name} | `{default}` |")
        else:
            typer.echo(f"{variable:32} {display_value(settings, name):50} {meaning}")


def _app_settings(host: str | None, port: int | None) -> object:
    from ragloop.settings import Settings

    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    return Settings(**overrides)  # type: ignore[arg-type]


@app.command("serve")
def serve(
    host: str | None = typer.Option(None, help="Host to bind (default RAGLOOP_HOST)."),
    port: int | None = typer.Option(None, parser=parse_port, help="Port, 1-65535 (default RAGLOOP_PORT)."),
) -> None:
    """Serve the chat app against the configured LLM: API, UI, telemetry, online evaluation, sinks."""
    from ragloop.app import serve as serve_app
    from ragloop.run import check_app_port
    from retrieval import check_index_variant

    settings = _app_settings(host, port)
    check_app_port(settings)  # type: ignore[arg-type]  # a port in use: one line now, not after loading
    check_index_variant(settings)  # type: ignore[arg-type]  # another embedding variant: one line, exit 2
    serve_app(settings)  # type: ignore[arg-type]


@app.command("run")
def run(
    host: str | None = typer.Option(None, help="Host to bind (default RAGLOOP_HOST)."),
    port: int | None = typer.Option(None, parser=parse_port, help="Port, 1-65535 (default RAGLOOP_PORT)."),
) -> None:
    """Fetch model and corpus, index, start the local LLM, Chroma, monitoring and labeling, then serve."""
    from ragloop.run import run as run_all

    run_all(_app_settings(host, port))  # type: ignore[arg-type]


def _wants_verbose(args: list[str]) -> bool:
    """True when ``--verbose``/``-v`` comes before the command (where the root option lives)."""
    for arg in args:
        if not arg.startswith("-"):
            return False
        if arg in ("--verbose", "-v"):
            return True
    return False


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``ragloop`` script: user errors become one line and exit code 2."""
    from ragloop.errors import EXIT_USER_ERROR, user_message

    args = list(sys.argv[1:] if argv is None else argv)
    verbose = _wants_verbose(args)
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="ragloop", standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("Aborted.\n")
        sys.exit(130)
    except ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            sys.stdout.write(ctx.get_help() + "\n")  # a group without a command: its help
            sys.exit(exc.exit_code)
        # Usage errors: one line naming the problem, and where to read the usage.
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        sys.stderr.write(f"Error: {_one_line(exc.format_message())}{hint}\n")
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the boundary: map user errors, re-raise bugs
        message = user_message(exc)
        if message is None:
            raise
        if verbose:
            import traceback

            traceback.print_exc()
        sys.stderr.write(f"Error: {message}\n")
        sys.exit(EXIT_USER_ERROR)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
