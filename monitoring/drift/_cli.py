"""``ragloop drift run | ui | reference | show``: the drift pipeline for people without Dagster."""

from __future__ import annotations

import json
import logging
import time

import typer

from ragloop.process import parse_port

log = logging.getLogger(__name__)


def _check_windows(window: str, reference: str) -> None:
    """Raise a user error naming the option when ``--window``/``--reference`` cannot be parsed.

    One line: the option, the value, what is wrong and (once) the accepted forms.
    """
    from datetime import UTC, datetime

    from monitoring.drift._windows import (
        REFERENCE_FORMS,
        WINDOW_FORMS,
        UnknownWindowError,
        parse_window,
        reference_spec,
    )
    from ragloop.errors import UserError

    try:
        current = parse_window(window, datetime.now(UTC))
    except UnknownWindowError:
        raise UserError(f"--window {window!r} is not a window: use {WINDOW_FORMS}") from None
    except ValueError as exc:
        raise UserError(f"--window {window!r}: {exc}; use {WINDOW_FORMS}") from None
    try:
        reference_spec(reference, current)
    except UnknownWindowError:
        raise UserError(f"--reference {reference!r} is not a reference: use {REFERENCE_FORMS}") from None
    except ValueError as exc:
        raise UserError(f"--reference {reference!r}: {exc}; use {REFERENCE_FORMS}") from None


def run(
    window: str = typer.Option(
        None, "--window", "-w", help="hour, day, week or START/END (ISO); default setting."
    ),
    reference: str = typer.Option(
        None,
        "--reference",
        "-r",
        help="previous, START/END (ISO) or saved:NAME; default RAGLOOP_DRIFT_REFERENCE.",
    ),
    evidently: bool = typer.Option(True, help="Also write the Evidently snapshot and HTML report."),
    fail_on_alarm: bool = typer.Option(
        False, help="Exit with status 2 when an alarm is raised (for cron/CI)."
    ),
) -> None:
    """Compare the current window of turns with the reference; print decisions and top clusters."""
    from monitoring.drift import run_drift
    from ragloop.settings import get_settings

    settings = get_settings()
    _check_windows(window or settings.drift_window, reference or settings.drift_reference)
    report, explanation = run_drift(settings, window=window, reference=reference, evidently=evidently)
    typer.echo(f"drift run {report.run_id}: {report.current_label} vs {report.reference_label}")
    typer.echo(
        f"{'test':<18}{'statistic':>10}{'threshold':>10}{'p-value':>9}{'n_ref':>7}{'n_cur':>7}  decision"
    )
    for t in report.tests:
        decision = "ALARM" if t.alarm else "ok"
        run_p = t.p_value if t.run_p_value is None else t.run_p_value
        typer.echo(
            f"{t.name:<18}{t.statistic:>10.3f}{t.threshold:>10.3f}{run_p:>9.4f}"
            f"{t.n_reference:>7}{t.n_current:>7}  {decision}"
        )
    for name, reason in report.insufficient.items():
        typer.echo(f"{name:<18}{'':>10}{'':>10}{'':>9}{'':>7}{'':>7}  {reason}")
    typer.echo(
        f"run: {'ALARM' if report.alarm else 'no alarm'} (false-alarm rate {settings.drift_alpha} "
        f"for the run; p-values corrected across its {len(report.tests)} test(s))"
    )
    for c in explanation.clusters[:3]:
        typer.echo(
            f"cluster {c.rank}: {c.size} turns, {c.current_share:.1%} now vs {c.reference_share:.1%} before"
        )
        for example in c.examples[:3]:
            typer.echo(f"    - {example}")
    if report.report_path:
        typer.echo(f"report: {report.report_path}")
    if explanation.plot_path:
        typer.echo(f"plot:   {explanation.plot_path}")
    if fail_on_alarm and report.alarm:
        raise typer.Exit(2)


def ui(
    port: int = typer.Option(None, parser=parse_port, help="Port, 1-65535; default RAGLOOP_DRIFT_UI_PORT."),
) -> None:
    """Serve the Evidently workspace holding the drift snapshots (`evidently ui`), until Ctrl-C."""
    from monitoring.drift._ui import start_evidently_ui
    from ragloop.settings import get_settings

    settings = get_settings()
    proc = start_evidently_ui(settings, port=port)
    workspace = settings.drift_workspace or settings.data_dir / "evidently"
    typer.echo(f"Evidently UI: {getattr(proc, 'url', '')} (workspace {workspace})")
    try:
        while proc.alive:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        proc.stop()


def reference(
    name: str = typer.Argument(..., help="Name of the saved set (use it as --reference saved:NAME)."),
    source: str = typer.Option(
        "python-faq",
        "--from",
        help="python-faq, halueval-qa, halueval-dialogue, file:PATH (a question a line) or index (Chroma).",
    ),
    limit: int = typer.Option(5000, help="At most this many questions (random sample above)."),
) -> None:
    """Build a reference set before any traffic exists, from the FAQ, an evaluation set or a file."""
    import numpy as np

    from monitoring.drift._sources import load_questions
    from monitoring.drift._windows import save_reference
    from ragloop.settings import get_settings

    settings = get_settings()
    if source == "index":
        from monitoring.drift._windows import index_vectors, save_reference_vectors

        texts, vectors = index_vectors(settings, limit)
        path = save_reference_vectors(name, texts, vectors, settings)
        typer.echo(f"saved {len(texts)} indexed chunks as reference {name!r}: {path}")
        return
    questions, answers = load_questions(settings, source)
    if len(questions) > limit:
        idx = np.sort(np.random.default_rng(settings.drift_seed).choice(len(questions), limit, replace=False))
        questions, answers = [questions[i] for i in idx], [answers[i] for i in idx]
    kept = [str(a) for a in answers if a] if all(answers) else None
    path = save_reference(name, questions, settings, answers=kept)
    typer.echo(f"saved {len(questions)} questions from {source} as reference {name!r}: {path}")


def show(limit: int = typer.Option(5, help="Runs to list.")) -> None:
    """List the latest drift runs and the clusters of the newest one, as JSON lines."""
    from chatlog import ChatLog
    from monitoring.drift import clusters_of, latest_runs
    from ragloop.settings import get_settings

    log_ = ChatLog(get_settings().chatlog_url)
    try:
        runs = latest_runs(log_.engine, limit)
        for r in runs:
            r.pop("tests", None)
            typer.echo(json.dumps(r, default=str))
        if runs:
            for c in clusters_of(log_.engine, runs[0]["run_id"]):
                c.pop("turn_ids", None)
                typer.echo(json.dumps(c, default=str))
    finally:
        log_.close()


def register(app: typer.Typer) -> None:
    """Add the drift commands to ``app`` (the ``ragloop drift`` group)."""
    app.command("run")(run)
    app.command("ui")(ui)
    app.command("reference")(reference)
    app.command("show")(show)
