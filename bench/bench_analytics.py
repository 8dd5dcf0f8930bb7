"""How long the analytics tab takes to render with 100,000 turns in the chat log.

``analytics_render_s_100k``: the tab's full load, as one "Refresh" runs it (every SQL aggregate of
the 30-day window in one read transaction, the pandas frames, and each Gradio component's
``postprocess``, i.e. the JSON the browser receives), over a SQLite chat log of ``--turns`` turns.
Warm-up + >= 3 repeats, median (bench/_common.py); merged into ``bench/results/first_run.json``.

The log: the labeling benchmark's generator (``bench_loop_core.build_log``: 5-turn conversations,
a local-faithfulness score per turn, thumbs-down on 4% of turns; ``fill_pairs``: labeled pairs),
then spread over the 30 days before now and given what the tab reads: outcomes (3% no context,
1% refusal, 1% error, 0.5% rejected, 0.5% cancelled), latency and time to first token (log-normal),
token counts of two models (2% without usage), faithfulness scores from a beta distribution,
thumbs-up, comments, three drift runs with their clusters, and pairs still waiting for a label.

Usage:
    python bench/bench_analytics.py [--turns 100000] [--repeat 3] [--keep PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from _common import Run, table  # noqa: E402
from bench_loop_core import build_log, fill_pairs  # noqa: E402
from sqlalchemy import bindparam, insert, select, text, update  # noqa: E402
from tqdm import tqdm  # noqa: E402

from chatlog import ChatLog, feedback, now, turns  # noqa: E402
from ragloop.settings import Settings  # noqa: E402

DAYS = 30
STATUSES = (
    ("no_context", 0.03),
    ("refusal", 0.01),
    ("error", 0.01),
    ("rejected", 0.005),
    ("cancelled", 0.005),
)
COMMENTS = (
    "missing an example",
    "wrong version of Python",
    "great, thanks",
    "too long",
    "cites the wrong page",
)


def _batches(n: int, size: int = 5000) -> list[range]:
    return [range(s, min(s + size, n)) for s in range(0, n, size)]


def enrich(log: ChatLog, n: int, seed: int = 1) -> None:
    """Give the generated turns what the analytics tab reads (see the module docstring)."""
    rng = np.random.default_rng(seed)
    end = now()
    start = end - timedelta(days=DAYS)
    step = (end - start) / n
    u = rng.random(n)
    status = np.full(n, "ok", dtype=object)
    edge = 0.0
    for name, share in STATUSES:
        status[(u >= edge) & (u < edge + share)] = name
        edge += share
    total = rng.lognormal(np.log(2500), 0.5, n)
    ttft = total * rng.uniform(0.1, 0.3, n)
    inp, out = rng.integers(300, 1500, n), rng.integers(20, 300, n)
    no_usage = rng.random(n) < 0.02
    faith = rng.beta(5, 2, n)
    stmt = (
        update(turns)
        .where(turns.c.turn_id == bindparam("tid"))
        .values(
            created_at=bindparam("at"),
            completed_at=bindparam("at"),
            status=bindparam("st"),
            total_ms=bindparam("tot"),
            ttft_ms=bindparam("tt"),
            input_tokens=bindparam("inp"),
            output_tokens=bindparam("out"),
            model=bindparam("model"),
        )
    )
    ev = text("UPDATE evaluations SET score = :score, flagged = :low WHERE turn_id = :tid")
    for part in tqdm(_batches(n), desc="enrich turns", unit="batch"):
        rows, scores = [], []
        for i in part:
            ok = status[i] == "ok"
            rows.append(
                {
                    "tid": f"t{i:07d}",
                    "at": start + step * i,
                    "st": status[i],
                    "tot": float(total[i]) if ok else None,
                    "tt": float(ttft[i]) if ok else None,
                    "inp": None if no_usage[i] or status[i] == "rejected" else int(inp[i]),
                    "out": None if no_usage[i] or status[i] == "rejected" else int(out[i]) * ok,
                    "model": "gpt-4o-mini" if i % 3 else "qwen2.5-0.5b-instruct",
                }
            )
            scores.append({"tid": f"t{i:07d}", "score": float(faith[i]), "low": bool(faith[i] < 0.5)})
        with log.engine.begin() as conn:
            conn.execute(stmt, rows)
            conn.execute(ev, scores)
    with log.engine.begin() as conn:
        # Feedback and scores happen when their turn does (build_log stamps them all at one time).
        for tbl in ("feedback", "evaluations"):
            conn.execute(
                text(
                    f"UPDATE {tbl} SET created_at = "
                    f"(SELECT t.created_at FROM turns t WHERE t.turn_id = {tbl}.turn_id)"
                )
            )
        conn.execute(text("UPDATE feedback SET updated_at = created_at"))
        ups = [
            {"turn_id": f"t{i:07d}", "value": 1, "rater": "u", "created_at": start + step * i}
            for i in rng.choice(n, n // 25, replace=False)
            if i % 10 != 0  # a few turns only: keep clear of build_log's thumbs-down turns
        ]
        have = {r[0] for r in conn.execute(text("SELECT turn_id FROM feedback"))}
        ups = [{**r, "updated_at": r["created_at"]} for r in ups if r["turn_id"] not in have]
        conn.execute(insert(feedback), ups)
        conn.execute(
            text("UPDATE feedback SET comment = :c WHERE feedback_id % 7 = :k"),
            [{"c": c, "k": k} for k, c in enumerate(COMMENTS)],
        )


def add_drift_and_pairs(log: ChatLog, n_labeled: int, n_pending: int) -> None:
    """Three drift runs (the newest alarmed, 8 clusters) and pairs with and without labels."""
    from labeling._store import pairs
    from monitoring.drift._store import save_run

    for k in range(3):
        at = now() - timedelta(days=2 - k)
        run = {
            "run_id": f"drift{k}",
            "created_at": at,
            "alarm": k == 2,
            "n_reference": 3300,
            "n_current": 3400,
        }
        run |= {
            "query_p_value": 0.001 if k == 2 else 0.4,
            "tests": [{"name": "query_embedding", "status": "decided"}],
        }
        clusters = [
            {
                "rank": r + 1,
                "size": 400 - 40 * r,
                "current_share": 0.12 - 0.01 * r,
                "reference_share": 0.05,
                "excess": 0.07 - 0.01 * r,
                "examples": [f"example question {r}.{j}?" for j in range(5)],
                "turn_ids": [f"t{j:07d}" for j in range(400 - 40 * r)],
            }
            for r in range(8)
        ]
        save_run(log.engine, run, clusters)
    fill_pairs(log, n_labeled)
    at = now()
    with log.engine.begin() as conn:
        conn.execute(
            insert(pairs),
            [
                {
                    "pair_id": f"pending{j}",
                    "question": "q?",
                    "context": [],
                    "response_a": "a",
                    "response_b": "b",
                    "a_is_original": True,
                    "strategy": "strict",
                    "created_at": at,
                    "updated_at": at,
                }
                for j in range(n_pending)
            ],
        )


COPIED = ("conversations", "turns", "feedback", "evaluations", "drift_runs", "drift_clusters")
COPIED += ("selections", "pairs", "labels")


def copy_to_postgres(log: ChatLog, base_url: str) -> ChatLog:
    """The same rows in a fresh chat log on a real PostgreSQL server (migrated by ``ChatLog``)."""
    from chatlog import metadata
    from tests.chatlog.conftest import fresh_postgres_url

    target = ChatLog(fresh_postgres_url(base_url), auto_upgrade=True)
    for name in tqdm(COPIED, desc="copy to PostgreSQL", unit="table"):
        tbl = metadata.tables[name]
        with log.engine.connect() as src:
            rows = src.execute(select(tbl)).mappings()
            while batch := rows.fetchmany(5000):
                with target.engine.begin() as dst:
                    dst.execute(insert(tbl), [dict(r) for r in batch])
    with target.engine.begin() as conn:
        conn.execute(text("ANALYZE"))  # what autovacuum does soon after a bulk load
    return target


def _postprocess(component: Any, value: Any) -> Any:
    """What Gradio does with a handler's return value, as the page would get it.

    A component returned as an update (new props, e.g. column widths) has its ``value``
    post-processed, like a plain value.
    """
    import gradio as gr

    if isinstance(value, gr.blocks.Block):
        value = value.constructor_args.get("value")
    elif isinstance(value, dict) and value.get("__type__") == "update":
        value = value.get("value")
    return component.postprocess(value)


def render_once(log: ChatLog, settings: Settings) -> dict[str, Any]:
    """What one "Refresh" of the tab does: load, build the frames, post-process every component."""
    import gradio as gr

    from chatbot._analytics import build_analytics_tab

    with gr.Blocks(), gr.Tabs():
        tab = build_analytics_tab(log, settings)

    cpu: list[float] = []

    def render() -> list[Any]:
        start = time.process_time()
        values = tab.load(30, None)
        out = [_postprocess(c, v) for c, v in zip(tab.outputs, values, strict=True)]
        cpu.append(time.process_time() - start)
        return out

    summary = render()[1]
    return {"render": render, "summary": summary, "cpu": cpu}


def timed(run: Run, tab: dict[str, Any], repeat: int) -> dict[str, Any]:
    """``run.time`` of one render, plus the median CPU seconds of this process over the repeats.

    CPU time is what the render costs when the machine is not shared; on a busy machine the wall
    time (the figure) also holds the waits for a core.
    """
    timing = run.time(tab["render"], repeat=repeat)
    timing["cpu_median_s"] = round(statistics.median(tab["cpu"][-repeat:]), 4)
    return timing


def main() -> None:
    """Build the log, time the render, print a table, merge into bench/results/first_run.json."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turns", type=int, default=100_000, help="turns in the generated chat log")
    ap.add_argument("--repeat", type=int, default=3, help="timed repeats after one warm-up (>= 3)")
    ap.add_argument("--keep", type=Path, help="write the chat log here (kept) instead of a temp dir")
    ap.add_argument(
        "--postgres", action="store_true", help="also time it on a real PostgreSQL server (the same rows)"
    )
    args = ap.parse_args()
    if args.turns < 100:
        ap.error("--turns must be at least 100")
    if args.repeat < 3:
        ap.error("--repeat must be at least 3 (the benchmark protocol)")
    run = Run("first_run", scratch=args.turns != 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "chatlog.db"
        if path.exists():
            ap.error(f"{path} exists: pass a new path to --keep")
        print(f"building a {args.turns:,}-turn chat log in {path} ...")
        log = build_log(path, args.turns, n_flagged=args.turns // 10)
        enrich(log, args.turns)
        add_drift_and_pairs(log, n_labeled=min(2000, args.turns), n_pending=300)
        settings = Settings(prices="gpt-4o-mini=0.15:0.6,*=0:0")
        tab = render_once(log, settings)
        timings = {"sqlite": timed(run, tab, args.repeat)}
        summary = tab["summary"]
        if args.postgres:
            from tests.conftest import postgres_server

            with postgres_server(prefix="ragloop-bench-pg-") as base:
                pg = copy_to_postgres(log, base)
                tab = render_once(pg, settings)
                timings["postgres"] = timed(run, tab, args.repeat)
                if tab["summary"] != summary:
                    raise SystemExit("PostgreSQL shows other figures than SQLite for the same rows")
                pg.close()
        log.close()
    rows = [
        {"backend": b, "turns": args.turns, **{k: v for k, v in t.items() if k != "times_s"}}
        for b, t in timings.items()
    ]
    print(table(rows))
    print(summary)
    key = "analytics_render_s_100k" if args.turns == 100_000 else f"analytics_render_s_{args.turns}"
    keys: dict[str, Any] = {key: round(timings["sqlite"]["median_s"], 4)}
    if "postgres" in timings:
        keys[f"{key}_postgres"] = round(timings["postgres"]["median_s"], 4)
    keys[f"{key}_detail"] = {
        "turns": args.turns,
        "days": DAYS,
        "timings": timings,
        "what": "one Refresh of the analytics tab, 30-day window: queries, frames, component postprocess",
    }
    out = run.merge(keys, name="first_run")
    timing = timings["sqlite"]
    print(f"wrote {key} = {timing['median_s']:.3f} s to {out}")


if __name__ == "__main__":
    main()
