"""``ragloop loop run | select | export | status``: the labeling loop from the command line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NoReturn

import typer

app = typer.Typer(
    help="The labeling loop: flagged chats become judged preference pairs, labels, and TRL datasets.",
    no_args_is_help=True,
)


def _fail(message: str) -> NoReturn:
    """A user error: ``ragloop.cli.main`` prints it as one ``Error: ...`` line, exit code 2."""
    from ragloop.errors import UserError

    raise UserError(message)


def _since(days: float | None) -> datetime | None:
    if days is None:
        return None
    if days < 0:
        _fail("--since-days must be >= 0")
    return datetime.now(UTC) - timedelta(days=days) if days else datetime(1970, 1, 1, tzinfo=UTC)


def _open_log():  # type: ignore[no-untyped-def]
    from chatlog import ChatLog
    from ragloop.settings import get_settings

    settings = get_settings()
    try:
        return settings, ChatLog(settings.chatlog_url)
    except Exception as exc:  # noqa: BLE001 - one clear line, never a traceback
        from ragloop.errors import clean_message, user_message

        _fail(f"cannot open the chat log: {user_message(exc) or clean_message(exc)}")
        raise


@app.command("run")
def run(
    since_days: float = typer.Option(
        None,
        "--since-days",
        help="Look at turns this many days old (0: all); default RAGLOOP_LOOP_LOOKBACK_DAYS.",
    ),
    limit: int = typer.Option(None, "--limit", min=1, help="Pair at most this many turns (default setting)."),
    llm_judge: bool = typer.Option(
        None, "--llm-judge/--no-llm-judge", help="Ask the LLM judge (default setting)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Select flagged turns, make an alternative answer, judge each pair, save it for labeling."""
    from labeling._loop import LabelingLoop

    settings, chatlog = _open_log()
    try:
        try:
            loop = LabelingLoop.from_settings(settings, chatlog, llm_judge=llm_judge)
        except ValueError as exc:
            _fail(str(exc))
        report = loop.run(since=_since(since_days), limit=limit, progress=progress)
    finally:
        chatlog.close()
    typer.echo(report.summary())
    for err in report.errors[:10]:
        typer.echo(f"  failed: {err}", err=True)


@app.command("select")
def select_cmd(
    since_days: float = typer.Option(None, "--since-days", help="Look at turns this many days old (0: all)."),
    limit: int = typer.Option(None, "--limit", min=1, help="At most this many turns (default setting)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show which turns a run would select and why, without saving anything."""
    from labeling._loop import LabelingLoop

    settings, chatlog = _open_log()
    try:
        loop = LabelingLoop.selection_only(settings, chatlog)
        sel = loop.select(_since(since_days), limit)
    finally:
        chatlog.close()
    if as_json:
        typer.echo(
            json.dumps({"selected": sel.selected, "counts": sel.counts, "positives": len(sel.positives)})
        )
        return
    typer.echo(f"{sel.flagged} flagged, {sel.duplicates} near-duplicates, {len(sel.selected)} selected")
    for turn_id, reasons in sel.selected.items():
        typer.echo(f"{turn_id}  {', '.join(reasons)}")


@app.command("export")
def export_cmd(
    fmt: str = typer.Option("dpo", "--format", "-f", help="dpo, kto or sft."),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Output folder (default: <RAGLOOP_LOOP_EXPORT_DIR, else the data dir's exports>/<format>).",
    ),
    include_ai: bool = typer.Option(
        False, "--include-ai", help="Also write AI-judged pairs nobody labeled, as the 'rlaif' split."
    ),
    since_days: float = typer.Option(None, "--since-days", help="Only pairs from the last N days."),
) -> None:
    """Write TRL-format JSONL (standard and conversational) plus a dataset card that `datasets` loads."""
    from labeling._export import FORMATS, export
    from labeling._store import PairStore

    if fmt not in FORMATS:
        _fail(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    settings, chatlog = _open_log()
    target = out or (settings.loop_export_dir or settings.data_dir / "exports") / fmt
    if target.exists() and not target.is_dir():
        _fail(f"{target} exists and is not a folder")
    try:
        report = export(
            PairStore(chatlog),
            fmt,
            target,
            include_ai=include_ai,
            license_id=settings.loop_export_license,
            since=_since(since_days) if since_days is not None else None,
            redact=settings.redact,
        )
    finally:
        chatlog.close()
    typer.echo(report.summary())


@app.command("status")
def status() -> None:
    """Pairs, labels and inter-annotator agreement in the chat log."""
    from labeling._store import PairStore

    _, chatlog = _open_log()
    try:
        store = PairStore(chatlog)
        labels = store.all_labels()
        typer.echo(f"pairs: {store.count_pairs()}, selected turns: {len(store.selected_ids())}")
        typer.echo(f"labeled pairs: {len(labels)}, labels: {sum(len(v) for v in labels.values())}")
        typer.echo(f"agreement: {json.dumps(store.agreement())}")
    finally:
        chatlog.close()
