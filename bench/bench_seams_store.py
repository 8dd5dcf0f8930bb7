"""The store's seams, counted: outbox exactly-once across processes, rows lost by an upgrade, feedback rows.

- ``outbox_duplicates_two_processes`` / ``outbox_lost_two_processes``: items enqueued in a real
  PostgreSQL chat log, delivered by two OS processes each running an ``OutboxWorker`` to a real
  HTTP receiver on loopback that records every receipt (tests/chatlog/outbox_harness.py); a
  duplicate is a receipt beyond the first for one item, a loss an item never received.
- ``upgrade_rows_lost``: a database built with the pre-issue schema (tests/chatlog/legacy_schema.py,
  ``create_all`` and no ``alembic_version``) and filled with turns, duplicate feedback clicks,
  evaluations, drift runs and LangSmith outbox rows, then opened by ``ChatLog`` (upgrade at
  start-up); every legacy row must be found with every value intact. SQLite and PostgreSQL.
- ``feedback_rows_per_rating``: rows one rater leaves on one turn by the UI's sequence (👎, then
  "Send comment", then a toggle to 👍). With ``--before REV`` the same sequence also runs on the
  pre-issue code in a git worktree, for comparison.

Counts, not timings: ``Run("seams", timing=False)``, so a busy machine does not hold them back.
Writes into bench/results/seams.json and prints a table.

Usage: ``python bench/bench_seams_store.py [--items 1000] [--turns 500] [--before 3e054ea]``
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import Run, table  # noqa: E402


def postgres_server() -> contextlib.AbstractContextManager[str]:
    """A real PostgreSQL server in a temp dir: the one tests/conftest.py starts for ``postgres_url``."""
    from tests.conftest import postgres_server as server

    return server(prefix="ragloop-bench-pg-")


def fresh_schema(base: str) -> str:
    """A new, empty schema on the server, as a URL."""
    from tests.chatlog.conftest import fresh_postgres_url

    return fresh_postgres_url(base)


def outbox_two_processes(pg: str, n_items: int) -> dict[str, Any]:
    """Two worker processes, one PostgreSQL outbox, a real receiver."""
    from tests.chatlog.outbox_harness import run_processes

    return run_processes(fresh_schema(pg), n_items=n_items, processes=2)


def upgrade_rows_lost(url: str, n_turns: int) -> dict[str, Any]:
    """Build a pre-issue database with ``n_turns`` turns, upgrade it, count lost or altered rows."""
    import chatlog as cl
    from tests.chatlog.legacy_data import build_legacy, lost_rows

    engine = cl.make_engine(url)
    before = build_legacy(engine, n_turns=n_turns)
    engine.dispose()
    log = cl.ChatLog(url)
    try:
        lost = lost_rows(before, log.engine)
        revision = cl.current(log.engine)
    finally:
        log.close()
    return {
        "rows": sum(len(v) for v in before.values()),
        "lost": len(lost),
        "examples": lost[:5],
        "revision": revision,
    }


SEQUENCE = """
import sys, tempfile
{imports}
d = tempfile.mkdtemp()
log = cl.ChatLog(f"sqlite:///{{d}}/f.db")
t = log.start_turn(user_message="q")
log.add_feedback(t, -1, None, source="ui")                   # thumbs down
log.add_feedback(t, -1, "missing an example", source="ui")   # "Send comment" (same rater)
log.add_feedback(t, 1, None, source="ui")                    # toggled to thumbs up
print(len(log.feedback_for(t)))
"""


def feedback_rows(code_root: Path, module: str) -> int:
    """Rows left by the UI's 👎 / comment / toggle sequence, running the code at ``code_root``."""
    imports = f"sys.path.insert(0, {str(code_root)!r})\nimport {module} as cl"
    out = subprocess.run(
        [sys.executable, "-c", SEQUENCE.format(imports=imports)],
        cwd=code_root,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return int(out.stdout.strip().splitlines()[-1])


def feedback_rows_before(rev: str) -> int | None:
    """The same sequence on the pre-issue code (a temporary git worktree at ``rev``)."""
    tree = Path(tempfile.mkdtemp(prefix="ragloop-before-")) / "tree"
    try:
        subprocess.run(
            ["git", "worktree", "add", "-f", "--detach", str(tree), rev],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        module = "chatlog" if (tree / "chatlog" / "__init__.py").exists() else "monitoring.chatlog"
        return feedback_rows(tree, module)
    except (subprocess.CalledProcessError, OSError) as exc:
        print(f"warning: could not run the pre-issue code at {rev}: {exc}")
        return None
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
        shutil.rmtree(tree.parent, ignore_errors=True)


def main() -> None:
    """Measure, print a table, merge the keys into bench/results/seams.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000, help="outbox items for the two processes")
    parser.add_argument("--turns", type=int, default=500, help="turns in the pre-issue database")
    parser.add_argument("--before", default="3e054ea", help="pre-issue git revision ('' to skip)")
    args = parser.parse_args()
    run = Run("seams", timing=False)

    with postgres_server() as pg:
        outbox = outbox_two_processes(pg, args.items)
        upgrade_pg = upgrade_rows_lost(fresh_schema(pg), args.turns)
    with tempfile.TemporaryDirectory() as tmp:
        upgrade_sqlite = upgrade_rows_lost(f"sqlite:///{tmp}/legacy.db", args.turns)
    rows_now = feedback_rows(ROOT, "chatlog")
    rows_before = feedback_rows_before(args.before) if args.before else None

    keys: dict[str, Any] = {
        "outbox_duplicates_two_processes": outbox["duplicates"],
        "outbox_lost_two_processes": outbox["lost"],
        "upgrade_rows_lost": upgrade_pg["lost"] + upgrade_sqlite["lost"],
        "feedback_rows_per_rating": rows_now,
        "store_seams_details": {
            "outbox_two_processes": {
                k: outbox[k] for k in ("items", "processes", "received", "per_process", "left")
            },
            "outbox_backend": "postgresql",
            "upgrade": {"postgresql": upgrade_pg, "sqlite": upgrade_sqlite},
            "feedback_sequence": "thumbs down, Send comment, toggle to thumbs up (one rater)",
            "feedback_rows_per_rating_before": rows_before,
            "before_revision": args.before or None,
        },
    }
    print(
        table(
            [
                {
                    "figure": "outbox_duplicates_two_processes",
                    "value": outbox["duplicates"],
                    "note": f"{outbox['items']} items, per process {outbox['per_process']}",
                },
                {
                    "figure": "outbox_lost_two_processes",
                    "value": outbox["lost"],
                    "note": f"left undelivered: {outbox['left']}",
                },
                {
                    "figure": "upgrade_rows_lost",
                    "value": keys["upgrade_rows_lost"],
                    "note": f"{upgrade_pg['rows']} rows on PostgreSQL + {upgrade_sqlite['rows']} on SQLite",
                },
                {
                    "figure": "feedback_rows_per_rating",
                    "value": rows_now,
                    "note": f"pre-issue code: {rows_before}",
                },
            ]
        )
    )
    print(f"wrote {run.merge(keys, name='seams')}")


if __name__ == "__main__":
    main()
