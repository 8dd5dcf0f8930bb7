"""``ragloop eval ...``: offline evaluation harness."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

app = typer.Typer(help="Evaluate faithfulness, retrieval and answers.", no_args_is_help=True)
log = logging.getLogger(__name__)


@app.command("run")
def run(
    ctx: typer.Context,
    dataset: str = typer.Option(..., help="halueval-qa or python-faq."),
    limit: int = typer.Option(30, help="Questions in the fixed sample (0 = all)."),
    seed: int = typer.Option(0, help="Seed of the sample."),
    corpus_size: int = typer.Option(2000, help="HaluEval passages indexed (the sample plus distractors)."),
    out: Path | None = typer.Option(None, help="Report folder (default RAGLOOP_EVAL_REPORTS_DIR)."),
    max_tokens: int | None = typer.Option(None, help="Answer length cap for this run."),
    corpus: list[Path] | None = typer.Option(None, help="Index these paths instead of the dataset's corpus."),
) -> None:
    """Run a dataset through the real chain and write JSON, Markdown and PNG reports."""
    from eval._harness import run_dataset
    from eval._llm import ensure_llm
    from eval._report import write_report
    from ragloop.errors import UserError
    from ragloop.settings import Settings

    # The chat service comes from the composition root (eval sits below the chat layer).
    obj = ctx.obj or {}
    if "build_service" not in obj:
        raise UserError("`eval run` needs the chat service: run it as `ragloop eval run`")
    settings = Settings()
    if max_tokens is not None:
        settings = settings.model_copy(update={"max_tokens": max_tokens})
    with ensure_llm(settings) as live:
        report = run_dataset(
            dataset,
            live,
            limit or None,
            seed,
            corpus_size,
            corpus or None,
            service_factory=obj["build_service"],
            prompt_version=obj["prompt_version"](),
        )
    paths = write_report(report, out or settings.eval_reports_dir)
    typer.echo(json.dumps(report["metrics"]["retrieval"] | report["metrics"]["correctness"], indent=2))
    typer.echo(f"report: {paths['md']}")


@app.command("compare")
def compare(
    a: Path = typer.Argument(..., help="The earlier report (JSON)."),
    b: Path = typer.Argument(..., help="The later report (JSON)."),
) -> None:
    """Compare two harness reports metric by metric (B - A)."""
    from eval._harness import compare_reports

    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    if ra["dataset"] != rb["dataset"]:
        typer.echo(f"warning: different datasets ({ra['dataset']} vs {rb['dataset']})", err=True)
    for key in ("seed", "limit", "model", "prompt_version", "index_version"):
        if ra["config"].get(key) != rb["config"].get(key):
            typer.echo(f"note: {key} differs: {ra['config'].get(key)} -> {rb['config'].get(key)}")
    typer.echo(f"{'metric':<36} {'A':>10} {'B':>10} {'B-A':>10}")
    for key, va, vb, delta in compare_reports(ra, rb):
        typer.echo(f"{key:<36} {_f(va):>10} {_f(vb):>10} {_f(delta):>10}")


def _f(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"
