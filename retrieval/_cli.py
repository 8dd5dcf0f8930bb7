"""``ragloop ingest`` and ``ragloop corpus ...``.

Exit codes of ``ragloop ingest``: 0 when every file went in; 1 when some files failed but the
others went in (the summary lists each failure with its reason); 2 when there was no usable input
(nothing found, or every file failed).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from retrieval._ingest import IngestReport

corpus_app = typer.Typer(help="Fetch and index the default corpus.", no_args_is_help=True)
embeddings_app = typer.Typer(help="Embedding model variants (ONNX, OpenVINO, int8).", no_args_is_help=True)


def _report_exit(report: IngestReport) -> None:
    """Print the summary and exit with the documented code."""
    typer.echo(report.summary())
    if report.files_ok == 0:
        raise typer.Exit(code=2)
    if report.files_failed:
        raise typer.Exit(code=1)


def ingest(
    paths: list[Path] = typer.Argument(..., help="Files or folders to index (md, rst, txt, html, pdf)."),
    collection: str | None = typer.Option(None, help="Chroma collection (default: RAGLOOP_COLLECTION)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Load, split, embed and store documents in Chroma (incremental: unchanged files are skipped).

    Exit code 0: all files went in; 1: some files failed, the others went in; 2: no usable input.
    """
    from ragloop.errors import UserError
    from ragloop.settings import Settings
    from retrieval._ingest import ingest as run_ingest
    from retrieval._store import chroma_url, open_client

    missing = [str(p) for p in paths if not p.exists()]
    if len(missing) == len(paths):
        raise UserError(f"no such file or folder: {', '.join(missing)}")
    settings = Settings(collection=collection) if collection else Settings()
    open_client(settings)  # a bad or unreachable RAGLOOP_CHROMA_URL fails here, before the model loads
    server = chroma_url(settings)
    if server and not quiet:
        typer.echo(f"indexing through the Chroma server at {server}", err=True)
    _report_exit(run_ingest(paths, settings, progress=not quiet))


@corpus_app.command("fetch")
def corpus_fetch() -> None:
    """Download the default corpus (RAGLOOP_CORPUS) into the cache; a second run does nothing."""
    from ragloop.settings import Settings
    from retrieval._corpus import fetch_corpus

    typer.echo(str(fetch_corpus(Settings())))


@corpus_app.command("index")
def corpus_index(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    rebuild: bool = typer.Option(
        False, "--rebuild", help="Drop the collection first and re-embed everything (e.g. another variant)."
    ),
) -> None:
    """Fetch the default corpus, then ingest it into the configured collection (incremental)."""
    from ragloop.settings import Settings
    from retrieval._corpus import fetch_corpus
    from retrieval._ingest import ingest as run_ingest
    from retrieval._sources import uploads_dir
    from retrieval._store import open_client

    settings = Settings()
    corpus = fetch_corpus(settings, progress=not quiet)
    if rebuild:
        client = open_client(settings)
        if settings.collection in [c.name for c in client.list_collections()]:
            client.delete_collection(settings.collection)
    report = run_ingest([corpus], settings, progress=not quiet, root=corpus)
    uploads = uploads_dir(settings)
    if rebuild and uploads.is_dir():
        typer.echo(run_ingest([uploads], settings, progress=not quiet, root=uploads).summary())
    _report_exit(report)


@embeddings_app.command("export")
def embeddings_export(
    backend: list[str] = typer.Option(
        ["auto"], "--backend", "-b", help="Variant(s): onnx, onnx-int8, openvino, openvino-int8, all, auto."
    ),
) -> None:
    """Make the exported embedding variants from the installed model, on this machine (no download).

    'auto' exports what RAGLOOP_EMBEDDING_BACKEND=auto uses; a second run does nothing.
    """
    from ragloop.errors import UserError
    from ragloop.settings import Settings
    from retrieval._embedding import BACKENDS, resolve_backend
    from retrieval._export import export_variant

    settings = Settings()
    wanted: list[str] = []
    for name in backend:
        if name == "all":
            wanted += [b for b in BACKENDS if b != "torch"]
        elif name == "auto":
            wanted.append(resolve_backend(settings.model_copy(update={"embedding_backend": "auto"})))
        elif name in BACKENDS:
            wanted.append(name)
        else:
            raise UserError(f"unknown embedding backend {name!r} (one of: auto, all, {', '.join(BACKENDS)})")
    for name in dict.fromkeys(wanted):
        if name == "torch":
            typer.echo("torch: nothing to export (sentence-transformers loads the model folder)")
            continue
        try:
            typer.echo(f"{name}: {export_variant(settings, name)}")
        except RuntimeError as exc:  # a missing extra: the message names the pip command
            raise UserError(str(exc)) from exc


@corpus_app.command("faq")
def corpus_faq(sample: int = typer.Option(3, help="Questions to print.")) -> None:
    """Print how many Python FAQ questions were parsed, and a few of them."""
    from ragloop.settings import Settings
    from retrieval._corpus import load_python_faq

    items = load_python_faq(Settings())
    typer.echo(f"{len(items)} FAQ questions")
    for item in items[:sample]:
        typer.echo(f"- {item.question}  [{Path(item.source).name}]\n  {item.answer[:160]!r}")
