"""``ragloop labeling``: push pairs to the labeling backends, pull labels back, agreement, the local UI.

The outbox delivers pairs on its own while the app runs; ``push`` is the manual way (a backfill,
or a backend configured after the pairs were made). Both are idempotent by pair id.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import typer

app = typer.Typer(help="Labeling backends (Argilla, Label Studio): push pairs, pull labels, agreement, UI.")

BACKENDS = ("argilla", "labelstudio")
BATCH = 500


def _fail(message: str) -> typer.Exit:
    typer.echo(f"Error: {' '.join(message.split())}", err=True)
    return typer.Exit(2)


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise _fail(
            f"--since must be an ISO date or time (2026-11-30 or 2026-11-30T12:00), not {value!r}"
        ) from None


def _backends(settings: Any, only: str | None) -> list[Any]:
    """The configured backends (optionally just one), or a one-line error naming what to set."""
    from labeling.argilla import ArgillaBackend
    from labeling.labelstudio import LabelStudioBackend

    if only is not None and only not in BACKENDS:
        raise _fail(f"--backend must be one of {', '.join(BACKENDS)}, not {only!r}")
    found = []
    try:
        for name, cls in (("argilla", ArgillaBackend), ("labelstudio", LabelStudioBackend)):
            if only in (None, name):
                backend = cls.from_settings(settings)
                if backend is not None:
                    found.append(backend)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if not found:
        want = {
            "argilla": "ARGILLA_API_URL and ARGILLA_API_KEY",
            "labelstudio": "LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY",
        }
        names = [want[only]] if only else list(want.values())
        raise _fail(f"no labeling backend is configured: set {' or '.join(names)} (or run `ragloop run`)")
    return found


def _store(settings: Any) -> Any:
    from chatlog import ChatLog
    from labeling._store import PairStore

    return PairStore(ChatLog(settings.chatlog_url))


@app.command("push")
def push(
    backend: str | None = typer.Option(
        None, "--backend", "-b", help="argilla or labelstudio (default: every configured one)."
    ),
    since: str | None = typer.Option(None, help="Only pairs updated at or after this ISO time."),
) -> None:
    """Push the chat log's pairs to the labeling backends (an update where a record exists; no duplicates).

    Exits 1 when any pair failed, naming how many and the first reason.
    """
    from ragloop.settings import Settings

    settings = Settings()
    start = _since(since)
    backends = _backends(settings, backend)
    store = _store(settings)
    any_failed = False
    for target in backends:
        pushed = failed = 0
        first_reason: str | None = None
        batch: list[dict[str, Any]] = []

        def send(batch: list[dict[str, Any]], target: Any = target) -> tuple[int, int, str | None]:
            ok = target.push(batch)
            reasons = getattr(target, "failures", None) or {}
            bad = [str(p.get("pair_id")) for p, good in zip(batch, ok, strict=True) if not good]
            reason = next((f"{pid}: {reasons[pid]}" for pid in bad if pid in reasons), None)
            return sum(ok), len(ok) - sum(ok), reason or (f"{bad[0]}: not stored" if bad else None)

        try:
            for pair in store.iter_pairs(since=start):
                batch.append(pair)
                if len(batch) == BATCH:
                    n_ok, n_bad, reason = send(batch)
                    pushed, failed, batch = pushed + n_ok, failed + n_bad, []
                    first_reason = first_reason or reason
            if batch:
                n_ok, n_bad, reason = send(batch)
                pushed, failed = pushed + n_ok, failed + n_bad
                first_reason = first_reason or reason
        except Exception as exc:  # noqa: BLE001 - a server that is down or refuses us: one line
            raise _fail(f"{target.name}: {type(exc).__name__}: {exc} ({pushed} pushed before)") from None
        finally:
            target.close()
        typer.echo(f"{target.name}: {pushed} pairs pushed, {failed} failed")
        if failed:
            any_failed = True
            typer.echo(
                f"Error: {target.name}: {failed} pairs failed; first: {' '.join(str(first_reason).split())}",
                err=True,
            )
    if any_failed:
        raise typer.Exit(1)


@app.command("pull")
def pull(
    backend: str | None = typer.Option(
        None, "--backend", "-b", help="argilla or labelstudio (default: every configured one)."
    ),
    since: str | None = typer.Option(None, help="Only answers submitted at or after this ISO time."),
) -> None:
    """Pull submitted answers into the chat log as label rows (one per pair, backend and annotator).

    Exits 1 when any answer was invalid (outside the schema), naming how many and the first reason;
    answers for pairs the chat log no longer holds (deleted conversations) are counted, not an error.
    """
    from labeling._backend import pull_labels
    from ragloop.settings import Settings

    settings = Settings()
    start = _since(since)
    backends = _backends(settings, backend)
    store = _store(settings)
    any_invalid = False
    for target in backends:
        try:
            report = pull_labels(store, target, since=start)
        except Exception as exc:  # noqa: BLE001 - a server that is down or refuses us: one line
            raise _fail(f"{target.name}: {type(exc).__name__}: {exc}") from None
        finally:
            target.close()
        # answers the backend itself skipped (outside the schema) count as invalid too
        skipped = [f"{pid}: {why}" for pid, why in (getattr(target, "failures", None) or {}).items()]
        invalid = skipped + report.invalid
        typer.echo(
            f"{target.name}: {report.pulled} answers pulled, {report.recorded} stored, "
            f"{len(report.unknown_pairs)} for pairs not in the chat log, {len(invalid)} invalid"
        )
        if invalid:
            any_invalid = True
            first = " ".join(invalid[0].split())
            typer.echo(f"Error: {target.name}: {len(invalid)} answers invalid; first: {first}", err=True)
    if any_invalid:
        raise typer.Exit(1)


@app.command("agreement")
def agreement(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Inter-annotator agreement on pairs two or more annotators labeled (percent and Cohen's kappa)."""
    from ragloop.settings import Settings

    result = _store(Settings()).agreement()
    if as_json:
        typer.echo(json.dumps(result))
        return
    if not result["records"]:
        typer.echo("no pair has labels from two annotators yet")
        return
    kappa = result["cohen_kappa"]
    typer.echo(
        f"{result['records']} pairs with two or more annotators: "
        f"percent agreement {result['percent_agreement']:.3f}, "
        f"Cohen's kappa {'undefined' if kappa is None else f'{kappa:.3f}'}"
    )


@app.command("ui")
def ui() -> None:
    """Start the local labeling UI (RAGLOOP_LABELING_UI: argilla or labelstudio) and serve until Ctrl-C."""
    from labeling._ui import start_labeling_ui
    from ragloop.settings import Settings

    try:
        server = start_labeling_ui(Settings())
    except (RuntimeError, ValueError, TimeoutError) as exc:
        raise _fail(str(exc).splitlines()[0]) from None
    if server is None:
        raise _fail(
            "nothing to start: RAGLOOP_LABELING_UI is 'none', or that backend's URL points at a server"
        )
    try:
        while server.alive:
            time.sleep(1)
        typer.echo(f"{server.name} stopped", err=True)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
