"""``ragloop db`` (schema migrations) and ``ragloop outbox`` (deliveries to vendor sinks).

Both work on the chat log named by RAGLOOP_DATABASE_URL (default: SQLite in the data dir).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer

from ragloop.errors import UserError, clean_message, is_connection_error

db_app = typer.Typer(help="The chat log's schema: upgrade it, show its revision and the history.")
outbox_app = typer.Typer(help="Items waiting for vendor sinks (LangSmith, Argilla, ...): status, retry.")


def _fail(message: str) -> NoReturn:
    """A user error: ``ragloop.cli.main`` prints it as one ``Error: ...`` line, exit code 2."""
    raise UserError(message)


def _missing_sqlite(url: str) -> str | None:
    """For a SQLite URL whose file does not exist: the message saying so, else None."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - make_engine reports a bad URL below
        return None
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    if str(parsed.database).startswith("file:"):
        return None
    path = Path(str(parsed.database))
    if not path.parent.is_dir():
        return f"the database {path} does not exist (no folder {path.parent})"
    if not path.exists():
        return f"the database {path} does not exist: create it with `ragloop db upgrade`"
    return None


@contextmanager
def _engine(url: str | None, must_exist: bool = True) -> Iterator[Any]:
    import chatlog as cl
    from ragloop.settings import Settings

    target = url or Settings().chatlog_url
    missing = _missing_sqlite(target) if must_exist else None
    if missing:
        _fail(missing)
    try:
        engine = cl.make_engine(target)
    except Exception as exc:  # noqa: BLE001 - a bad URL is a user error; the URL may hold a password
        _fail(f"cannot open the chat log ({type(exc).__name__}): check RAGLOOP_DATABASE_URL / --url")
    try:
        yield engine
    finally:
        engine.dispose()


_URL = typer.Option(None, "--url", help="Database URL (default: RAGLOOP_DATABASE_URL / the data dir).")


def _db_error(action: str, exc: Exception) -> str:
    first = clean_message(exc)
    if is_connection_error(exc):
        return f"cannot {action}: cannot connect to the database: {first}"
    if "no such table" in first or "does not exist" in first:
        return f"cannot {action}: the outbox table is missing: run `ragloop db upgrade` ({first})"
    return f"cannot {action}: {first}"


def _safe(engine: Any) -> str:
    return str(engine.url.render_as_string(hide_password=True))


@db_app.command("upgrade")
def db_upgrade(
    revision: str = typer.Argument("head", help="Target revision (default: the newest)."),
    url: str | None = _URL,
) -> None:
    """Migrate the chat log to REVISION (a database made before migrations is adopted as-is)."""
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    import chatlog as cl

    with _engine(url, must_exist=False) as engine:
        try:
            before = cl.current(engine)
            after = cl.upgrade(engine, revision)
        except SQLAlchemyError as exc:
            _fail(_db_error("upgrade the chat log", exc))
        except (cl.SchemaError, CommandError) as exc:  # CommandError: an unknown revision
            _fail(f"cannot upgrade to {revision!r}: {clean_message(exc)} (see `ragloop db history`)")
        if before == after:
            typer.echo(f"{_safe(engine)}: already at {after}")
        else:
            typer.echo(f"{_safe(engine)}: upgraded {before or '(empty)'} -> {after}")


@db_app.command("current")
def db_current(url: str | None = _URL) -> None:
    """Print the chat log's revision, and whether it is the newest this ragloop knows."""
    from sqlalchemy.exc import SQLAlchemyError

    import chatlog as cl

    with _engine(url) as engine:
        try:
            rev = cl.current(engine)
        except SQLAlchemyError as exc:
            _fail(_db_error("read the chat log", exc))
        head = cl.head()
        if rev is None:
            note = "no revision: empty, or made before migrations; run `ragloop db upgrade`"
        elif rev == head:
            note = "head"
        else:
            note = f"behind head {head}: run `ragloop db upgrade`"
        typer.echo(f"{rev or '-'} ({note})")


@db_app.command("history")
def db_history() -> None:
    """List the schema revisions, oldest first."""
    import chatlog as cl

    for rev in cl.history():
        typer.echo(f"{rev.revision}  <- {rev.down_revision or '-':5}  {rev.doc}")


@outbox_app.command("status")
def outbox_status(
    url: str | None = _URL,
    dead: bool = typer.Option(False, "--dead", help="Also list each dead item."),
) -> None:
    """Items per sink and status (pending, delivered, dead) with the newest error."""
    from sqlalchemy.exc import SQLAlchemyError

    from chatlog import outbox as ob

    with _engine(url) as engine:
        try:
            rows = ob.status(engine)
            dead_items = ob.items(engine, status_=ob.DEAD, limit=1000) if dead else []
        except SQLAlchemyError as exc:
            _fail(_db_error("read the outbox", exc))
    if not rows:
        typer.echo("the outbox is empty")
        return
    typer.echo(f"{'sink':14} {'status':10} {'items':>7}  {'oldest':25}  last error")
    for r in rows:
        oldest = r["oldest"].isoformat(timespec="seconds") if r["oldest"] else "-"
        error = (r["last_error"] or "").replace("\n", " ")[:80]
        typer.echo(f"{r['sink']:14} {r['status']:10} {r['items']:>7}  {oldest:25}  {error}")
    for item in dead_items:
        where = f"{item['sink']}/{item['kind']}/{item['key']}"
        typer.echo(f"dead #{item['outbox_id']} {where}: {item['last_error']}")


@outbox_app.command("retry")
def outbox_retry(
    sink: str | None = typer.Option(None, "--sink", help="Only this sink's items."),
    ids: list[int] | None = typer.Option(None, "--id", help="Only this outbox id (repeatable)."),
    url: str | None = _URL,
) -> None:
    """Queue dead items again (fresh attempts); a running app delivers them on its next pass."""
    from sqlalchemy.exc import SQLAlchemyError

    from chatlog import outbox as ob

    with _engine(url) as engine:
        try:
            n = ob.retry(engine, sink=sink, ids=ids or None)
        except SQLAlchemyError as exc:
            _fail(_db_error("update the outbox", exc))
    typer.echo(f"{n} dead item{'s' if n != 1 else ''} queued again")
