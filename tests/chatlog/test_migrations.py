"""Schema migrations on real SQLite and real PostgreSQL (Phoenix's up-and-down shape).

- the history is linear with the fixed ids the other packages build on;
- every revision goes up and down, twice, and the head schema is exactly the tables the code
  defines;
- a database built by the pre-issue code (tables from ``create_all``, no ``alembic_version``,
  duplicate feedback clicks, LangSmith outbox rows) upgrades with every row intact, and down again;
- ``auto_upgrade=False`` refuses an old schema with the command to run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, inspect, select

import chatlog as cl
from chatlog.outbox import outbox
from tests.chatlog.legacy_data import build_legacy, lost_rows, snapshot

REVISIONS = ["0001", "0002", "0003", "0004", "0005"]
BASELINE = {
    "conversations",
    "turns",
    "feedback",
    "evaluations",
    "drift_runs",
    "drift_clusters",
    "langsmith_outbox",
}


def _tables(engine: Any) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_history_is_linear_with_fixed_ids() -> None:
    revs = cl.history()
    ids = [r.revision for r in revs]
    assert ids[: len(REVISIONS)] == REVISIONS
    assert revs[0].down_revision is None
    for prev, rev in zip(revs, revs[1:], strict=False):
        assert rev.down_revision == prev.revision  # one chain, no branches
    assert cl.head() == ids[-1]


def test_every_revision_goes_up_and_down_twice(db_url: str) -> None:
    engine = cl.make_engine(db_url)
    try:
        ids = [r.revision for r in cl.history()]
        seen: dict[str, set[str]] = {}
        for _ in range(2):
            prev = "base"
            for rev in ids:
                assert cl.upgrade(engine, rev) == rev
                seen.setdefault(rev, _tables(engine))
                assert _tables(engine) == seen[rev]  # the same schema on each pass
                assert cl.downgrade(engine, prev) == (None if prev == "base" else prev)
                assert cl.upgrade(engine, rev) == rev
                prev = rev
            assert cl.downgrade(engine, "base") is None
            assert _tables(engine) == set()
        assert seen["0001"] == BASELINE
        assert "outbox" in seen["0002"] and "langsmith_outbox" not in seen["0002"]
    finally:
        engine.dispose()


def test_head_schema_is_what_the_code_defines(db_url: str) -> None:
    """Every table on chatlog.metadata exists at head with the same columns (and nothing else)."""
    import eval._store  # noqa: F401 - registers evaluations
    import monitoring.drift._store  # noqa: F401 - registers drift_runs, drift_clusters

    log = cl.ChatLog(db_url)
    try:
        reflected = MetaData()
        reflected.reflect(log.engine)
        code_tables = {n for n in cl.metadata.tables}
        ours = {"conversations", "turns", "feedback", "evaluations", "drift_runs", "drift_clusters", "outbox"}
        assert ours <= code_tables
        for name in ours:
            want = {c.name: c.nullable for c in cl.metadata.tables[name].columns}
            got = {c.name: c.nullable for c in reflected.tables[name].columns}
            assert got == want, name
        uniques = {tuple(u["column_names"]) for u in inspect(log.engine).get_unique_constraints("feedback")}
        assert ("turn_id", "rater") in uniques
    finally:
        log.close()


@pytest.mark.parametrize("tables", [None, ["conversations", "turns", "feedback"]], ids=["all", "chat-only"])
def test_a_pre_issue_database_upgrades_with_every_row_intact(db_url: str, tables: list[str] | None) -> None:
    engine = cl.make_engine(db_url)
    before = build_legacy(engine, n_turns=6, tables=tables)
    assert cl.current(engine) is None  # the old code never versioned its schema
    engine.dispose()

    log = cl.ChatLog(db_url)  # upgrades at start-up
    try:
        assert cl.current(log.engine) == cl.head()
        assert lost_rows(before, log.engine) == []
        assert sum(len(v) for v in before.values()) == (21 if tables is None else 12)  # rows were there
        # The duplicate clicks stay distinct rows, each with its own legacy rater.
        t1 = before["turns"][0]["turn_id"]
        assert [(r["rater"], r["value"]) for r in log.feedback_for(t1)] == [
            ("legacy:1", -1),
            ("legacy:2", -1),
            ("legacy:3", 1),
        ]
        # The new code works on the upgraded rows: a new rater adds one row, a repeat updates it.
        log.add_feedback(t1, 1, rater="u1")
        log.add_feedback(t1, -1, "meh", rater="u1")
        assert len(log.feedback_for(t1)) == 4
        if tables is None:
            with log.engine.connect() as conn:
                pending = conn.execute(select(outbox.c.key).where(outbox.c.status == "pending")).all()
            assert len(pending) == 2  # the two undelivered LangSmith items wait in the new outbox
    finally:
        log.close()


def test_downgrade_to_the_baseline_gives_the_old_rows_back(db_url: str) -> None:
    engine = cl.make_engine(db_url)
    try:
        before = build_legacy(engine)
        cl.upgrade(engine)
        assert cl.downgrade(engine, "0001") == "0001"
        after = snapshot(engine)
        assert {k: len(v) for k, v in after.items()} == {k: len(v) for k, v in before.items()}
        for name in before:
            if name == "langsmith_outbox":  # re-created: ids renumbered, everything else equal
                strip = [{k: v for k, v in r.items() if k != "outbox_id"} for r in before[name]]
                assert [{k: v for k, v in r.items() if k != "outbox_id"} for r in after[name]] == strip
            else:
                assert after[name] == before[name], name
    finally:
        engine.dispose()


def test_auto_upgrade_off_refuses_an_old_schema_and_names_the_command(db_url: str) -> None:
    engine = cl.make_engine(db_url)
    build_legacy(engine, tables=["conversations", "turns", "feedback"])
    cl.upgrade(engine, "0002")
    engine.dispose()
    with pytest.raises(cl.SchemaError, match=r"ragloop db upgrade") as info:
        cl.ChatLog(db_url, auto_upgrade=False)
    assert "0002" in str(info.value) and cl.head() in str(info.value)
    cl.ChatLog(db_url).close()  # auto-upgrade (the default) brings it to head
    log = cl.ChatLog(db_url, auto_upgrade=False)  # and now it starts
    log.close()


def test_a_database_from_a_newer_ragloop_is_refused(db_url: str) -> None:
    log = cl.ChatLog(db_url)
    with log.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    log.close()
    for auto in (True, False):
        with pytest.raises(cl.SchemaError, match="newer than this ragloop knows"):
            cl.ChatLog(db_url, auto_upgrade=auto)


def test_db_commands_upgrade_report_and_fail_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = cl.make_engine(url)
    build_legacy(engine)
    engine.dispose()
    env = {**os.environ, "RAGLOOP_DATABASE_URL": url}

    def ragloop(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ragloop.cli", *args], env=env, capture_output=True, text=True, timeout=120
        )

    current = ragloop("db", "current")
    assert current.returncode == 0 and "ragloop db upgrade" in current.stdout
    up = ragloop("db", "upgrade")
    assert up.returncode == 0 and f"(empty) -> {cl.head()}" in up.stdout, up.stderr
    assert ragloop("db", "current").stdout.startswith(f"{cl.head()} (head)")
    history = ragloop("db", "history").stdout.splitlines()
    assert [line.split()[0] for line in history][: len(REVISIONS)] == REVISIONS
    bad = ragloop("db", "upgrade", "nope")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "nope" in bad.stderr


def test_the_setting_reaches_every_chat_log_opened_without_the_argument(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = cl.make_engine(db_url)
    cl.upgrade(engine, "0002")
    engine.dispose()
    monkeypatch.setenv("RAGLOOP_DB_AUTO_UPGRADE", "false")
    with pytest.raises(cl.SchemaError, match="ragloop db upgrade"):
        cl.ChatLog(db_url)  # as the drift, labeling and eval commands open it
    monkeypatch.setenv("RAGLOOP_DB_AUTO_UPGRADE", "true")
    cl.ChatLog(db_url).close()
    assert cl.current(db_url) == cl.head()


def test_processes_starting_together_migrate_once(db_url: str, tmp_path: Path) -> None:
    """Three app processes open one empty chat log at the same moment: all start, at head."""
    go = tmp_path / "go"
    script = (
        "import os, sys, time, pathlib\n"
        "import chatlog as cl\n"
        "go = pathlib.Path(sys.argv[2])\n"
        "go.with_name(f'ready-{os.getpid()}').touch()\n"
        "while not go.exists(): time.sleep(0.01)\n"
        "log = cl.ChatLog(sys.argv[1]); print(cl.current(log.engine)); log.close()\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, db_url, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    # Every process has imported and waits on the file (a fixed 3 s was not always enough for
    # three imports on a busy machine: they then did not start together).
    deadline = time.monotonic() + 180
    while len(list(tmp_path.glob("ready-*"))) < 3 and time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            break  # one failed: its stderr is in the assertion below
        time.sleep(0.05)
    go.touch()
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-800:] for _, err in outs]
    assert [out.strip() for out, _ in outs] == [cl.head()] * 3
    assert cl.current(db_url) == cl.head()
