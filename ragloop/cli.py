"""The ``ragloop`` command line. Each package contributes its own commands from a ``_cli`` module.

Heavy libraries (torch, chromadb, gradio, evidently, dagster) are imported inside the commands,
so ``ragloop --help`` answers at once.
"""

from __future__ import annotations

import logging

import typer

from chatbot import _cli as chatbot_cli
from eval import _cli as eval_cli
from labeling import _backends_cli as labeling_cli
from labeling import _cli as loop_cli
from monitoring import _arize_cli as arize_cli
from monitoring import _cli as monitoring_cli
from ragloop import _db_cli as db_cli
from retrieval import _cli as retrieval_cli

app = typer.Typer(
    help="ragloop: a RAG chatbot with a closed LLMOps loop (trace, measure, evaluate, detect drift, label).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


app.command("ingest")(retrieval_cli.ingest)
app.add_typer(retrieval_cli.corpus_app, name="corpus")
app.add_typer(chatbot_cli.llm_app, name="llm")
app.command("serve")(chatbot_cli.serve)
app.command("run")(chatbot_cli.run)
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
    from ragloop.settings import Settings

    settings = Settings()
    if markdown:
        typer.echo("| variable | meaning | default |\n|---|---|---|")
    for name, field in Settings.model_fields.items():
        variable, _, meaning = (field.description or name).partition(": ")
        if markdown:
            default = field.default if not callable(field.default_factory) else "(computed)"
            typer.echo(f"| `{variable}` | {meaning or name} | `{default}` |")
        else:
            typer.echo(f"{variable:32} {getattr(settings, name)!s:50} {meaning}")


def main() -> None:
    """Entry point of the ``ragloop`` script."""
    app()


if __name__ == "__main__":
    main()
