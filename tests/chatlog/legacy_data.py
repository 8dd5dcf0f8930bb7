"""Rows for a pre-issue database, and the check that an upgrade kept every one of them.

Used by tests/chatlog/test_migrations.py and bench/bench_seams_store.py (``upgrade_rows_lost``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Integer, insert, select
from sqlalchemy.engine import Engine

from tests.chatlog import legacy_schema as old

T0 = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def _t(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def legacy_rows(n_turns: int = 4) -> dict[str, list[dict[str, Any]]]:
    """Rows for every legacy table: turns of each status, duplicate feedback clicks, scores, drift.

    Feedback holds what the old code wrote for one user: a 👎, the same 👎 again with the comment
    ("Send comment"), then a toggle to 👍, so three rows for one rating.
    """
    rng = np.random.default_rng(7)
    conversations = [
        {"conversation_id": "c1", "created_at": _t(0), "deleted_at": None},
        {"conversation_id": "c2", "created_at": _t(1), "deleted_at": _t(50)},
    ]
    statuses = ["ok", "ok", "error", "in_progress", "no_context", "rejected"]
    turns = []
    for i in range(n_turns):
        turns.append(
            {
                "turn_id": uuid.UUID(int=i + 1).hex,
                "conversation_id": "c1" if i % 2 == 0 else "c2",
                "created_at": _t(2 + i),
                "completed_at": None if statuses[i % 6] == "in_progress" else _t(2.5 + i),
                "status": statuses[i % 6],
                "user_message": f"How do I sort a list? ({i}) ünïcode ✓",
                "standalone_question": f"How do I sort a Python list? ({i})",
                "query_embedding": rng.standard_normal(384).astype("<f4").tobytes(),
                "answer_embedding": None if i % 3 == 2 else rng.standard_normal(384).astype("<f4").tobytes(),
                "embedding_model": "all-MiniLM-L6-v2",
                "retrieved": [
                    {"chunk_id": f"k{i}", "score": 0.5 + i / 100, "text": "sorted()", "source": "a.rst"}
                ],
                "cited": [1],
                "prompt_version": "v3",
                "model": "qwen2.5-coder-0.5b-instruct",
                "index_version": "idx-1",
                "answer": None if statuses[i % 6] == "error" else f"Use sorted() [1]. ({i})",
                "input_tokens": 120 + i,
                "output_tokens": None if i % 2 else 9 + i,
                "retrieval_ms": 12.5,
                "ttft_ms": 250.0 + i,
                "total_ms": 900.0 + i,
                "error_type": "llm_error" if statuses[i % 6] == "error" else None,
                "error": "boom" if statuses[i % 6] == "error" else None,
                "trace_id": f"{i + 1:032x}",
                "span_id": f"{i + 1:016x}",
                "extra": {"client": "ui", "n": i},
            }
        )
    t1, t2 = turns[0]["turn_id"], turns[1]["turn_id"]
    feedback = [
        {"feedback_id": 1, "turn_id": t1, "created_at": _t(10), "value": -1, "comment": None, "source": "ui"},
        {
            "feedback_id": 2,
            "turn_id": t1,
            "created_at": _t(11),
            "value": -1,
            "comment": "too vague",
            "source": "ui",
        },
        {"feedback_id": 3, "turn_id": t1, "created_at": _t(12), "value": 1, "comment": None, "source": "ui"},
        {
            "feedback_id": 4,
            "turn_id": t2,
            "created_at": _t(13),
            "value": 1,
            "comment": "great",
            "source": "api",
        },
    ]
    for row in feedback:
        row["exported"] = row["feedback_id"] == 4
    evaluations = [
        {
            "evaluation_id": 1,
            "turn_id": t1,
            "evaluator": "faithfulness_local",
            "score": 0.4,
            "details": {"sentences": [{"text": "Use sorted()", "supported": False}], "version": "5"},
            "error": None,
            "flagged": True,
            "needs_judge": True,
            "created_at": _t(20),
        },
        {
            "evaluation_id": 2,
            "turn_id": t1,
            "evaluator": "faithfulness_judge",
            "score": None,
            "details": None,
            "error": "TimeoutError: judge",
            "flagged": False,
            "needs_judge": False,
            "created_at": _t(21),
        },
        {
            "evaluation_id": 3,
            "turn_id": t2,
            "evaluator": "faithfulness_local",
            "score": 0.9,
            "details": {"sentences": [], "version": "5"},
            "error": None,
            "flagged": False,
            "needs_judge": False,
            "created_at": _t(22),
        },
    ]
    drift_runs = [
        {
            "run_id": "r1",
            "created_at": _t(30),
            "window_start": _t(0),
            "window_end": _t(29),
            "reference": "previous:2026-11-19..2026-11-20",
            "n_reference": 40,
            "n_current": 38,
            "alarm": True,
            "query_p_value": 0.001,
            "answer_p_value": 0.2,
            "features_p_value": None,
            "tests": [{"name": "query_mmd", "p_value": 0.001}],
            "snapshot_id": "s1",
            "report_path": "/tmp/r1.html",
            "plot_path": None,
        }
    ]
    drift_clusters = [
        {
            "cluster_id": k + 1,
            "run_id": "r1",
            "rank": k,
            "size": 5 - k,
            "current_share": 0.3,
            "reference_share": 0.1,
            "excess": 0.2,
            "examples": ["How do I sort?"],
            "turn_ids": [t1, t2],
        }
        for k in range(2)
    ]
    langsmith_outbox = [
        {
            "outbox_id": 1,
            "feedback_uuid": str(uuid.UUID(int=101)),
            "turn_id": t1,
            "run_id": str(uuid.UUID(hex=t1)),
            "key": "user_score",
            "score": 0.0,
            "comment": "wrong",
            "created_at": _t(10),
            "attempts": 2,
            "next_attempt_at": _t(40),
            "delivered_at": None,
            "last_error": "ConnectError: refused",
        },
        {
            "outbox_id": 2,
            "feedback_uuid": str(uuid.UUID(int=102)),
            "turn_id": t1,
            "run_id": str(uuid.UUID(hex=t1)),
            "key": "faithfulness",
            "score": 0.75,
            "comment": None,
            "created_at": _t(20),
            "attempts": 0,
            "next_attempt_at": _t(20),
            "delivered_at": None,
            "last_error": None,
        },
        {
            "outbox_id": 3,
            "feedback_uuid": str(uuid.UUID(int=103)),
            "turn_id": t2,
            "run_id": str(uuid.UUID(hex=t2)),
            "key": "user_score",
            "score": 1.0,
            "comment": "great",
            "created_at": _t(13),
            "attempts": 1,
            "next_attempt_at": _t(13),
            "delivered_at": _t(14),
            "last_error": None,
        },
    ]
    return {
        "conversations": conversations,
        "turns": turns,
        "feedback": feedback,
        "evaluations": evaluations,
        "drift_runs": drift_runs,
        "drift_clusters": drift_clusters,
        "langsmith_outbox": langsmith_outbox,
    }


def build_legacy(
    engine: Engine, n_turns: int = 4, tables: list[str] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Create the pre-issue schema (all tables, or those named) and fill it; returns what was read back.

    The rows are read back through the legacy tables, so the returned values are what the
    database holds (SQLite drops time zones, for example): compare the upgrade against these.
    """
    chosen = [t for t in old.TABLES if tables is None or t.name in tables]
    old.create_legacy(engine, chosen)
    rows = legacy_rows(n_turns)
    with engine.begin() as conn:
        for table in chosen:
            # Integer keys come from the database, as with the old code (and PostgreSQL's
            # sequences stay in step); one row at a time keeps them in list order.
            auto = {c.name for c in table.primary_key.columns if isinstance(c.type, Integer)}
            for row in rows[table.name]:
                conn.execute(insert(table).values({k: v for k, v in row.items() if k not in auto}))
    return snapshot(engine, chosen)


def snapshot(engine: Engine, tables: list[Any] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every row of the legacy tables (as the legacy definitions read them), by table name."""
    out = {}
    with engine.connect() as conn:
        for table in tables or old.TABLES:
            pk = list(table.primary_key.columns)
            out[table.name] = [dict(r) for r in conn.execute(select(table).order_by(*pk)).mappings()]
    return out


def lost_rows(before: dict[str, list[dict[str, Any]]], engine: Engine) -> list[str]:
    """Legacy rows not found, with every value intact, after the upgrade (empty: nothing lost).

    Tables that kept their shape are compared column by column (new columns may be added);
    ``langsmith_outbox`` rows must be ``langsmith`` items of the generic outbox.

    Returns:
        One line per lost or altered row ("table pk: why").
    """
    from sqlalchemy import MetaData, Table

    from chatlog.outbox import outbox

    problems: list[str] = []
    with engine.connect() as conn:
        for name, rows in before.items():
            if name == "langsmith_outbox":
                items = {
                    r["key"]: r
                    for r in conn.execute(select(outbox).where(outbox.c.sink == "langsmith")).mappings()
                }
                for row in rows:
                    item = items.get(f"legacy:{row['feedback_uuid']}")
                    why = _outbox_mismatch(row, item)
                    if why:
                        problems.append(f"langsmith_outbox {row['outbox_id']}: {why}")
                continue
            table = Table(name, MetaData(), autoload_with=conn)  # the upgraded table as it is now
            pk = [c.name for c in table.primary_key.columns]
            now_rows = {tuple(r[k] for k in pk): dict(r) for r in conn.execute(select(table)).mappings()}
            for row in rows:
                key = tuple(row[k] for k in pk)
                got = now_rows.get(key)
                if got is None:
                    problems.append(f"{name} {key}: missing")
                    continue
                changed = [c for c, v in row.items() if got.get(c) != v]
                if changed:
                    problems.append(f"{name} {key}: changed {changed}")
    return problems


def _outbox_mismatch(row: dict[str, Any], item: dict[str, Any] | None) -> str | None:
    if item is None:
        return "missing from outbox"
    p = item["payload"]
    expected_kind = "feedback" if row["key"] == "user_score" else "evaluation"
    checks = {
        "kind": (item["kind"], expected_kind),
        "turn_id": (p.get("turn_id"), row["turn_id"]),
        "run_id": (p.get("run_id"), row["run_id"]),
        "feedback_id": (p.get("feedback_id"), row["feedback_uuid"]),
        "comment": (p.get("comment"), row["comment"]),
        "attempts": (item["attempts"], row["attempts"]),
        "last_error": (item["last_error"], row["last_error"]),
        "created_at": (item["created_at"], row["created_at"]),
        "delivered_at": (item["delivered_at"], row["delivered_at"]),
        "status": (item["status"], "pending" if row["delivered_at"] is None else "delivered"),
    }
    if expected_kind == "feedback":
        checks["value"] = (p.get("value"), 1 if (row["score"] or 0) > 0 else -1)
    else:
        checks["score"] = (p.get("score"), row["score"])
        checks["evaluator"] = (p.get("evaluator"), row["key"])
    bad = [k for k, (got, want) in checks.items() if got != want]
    return f"changed {bad}" if bad else None
