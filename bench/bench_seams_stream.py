"""Does a slow database write stall other users' streams? Inter-token latency with a 2 s write lock.

Eight users stream answers at once from one chat service (one event loop, as in the app), each
asking again as soon as its answer ends, for ``--window`` seconds. The LLM is the instant
OpenAI-compatible server streaming ``--tokens`` pieces ``--token-delay-ms`` apart; retrieval is the
real embedded index, the chat log a real SQLite file. In the "with lock" run another connection
holds SQLite's write lock (``BEGIN IMMEDIATE``) for ``--lock-s`` seconds in the middle of the
window, so every turn that starts or ends meanwhile has to wait for its chat-log write.

Measured at the consumer, as a client sees it: the gaps between consecutive tokens of the answers
that were streaming while the lock was held (an answer's first to last token overlaps the lock
interval; without the lock, the same interval of the window). If chat-log writes ran on the event
loop, one waiting write would freeze every stream for the lock's duration: each of those answers
gets one gap as long as the lock. Off the loop, only the turn whose write waits is held (between
its answer and the next question, where no token is due). The bound: p95 with the lock must not
exceed p95 without it by more than the lock time (and should not grow at all). The p95 over all
answers of the window is reported too, as ``all_p95_ms``.

Each cell is warmed up once and repeated ``--repeat`` times (>= 3); the median of the per-run p95
is reported with the load average. Writes ``stream_p95_inter_token_ms_with_db_lock``,
``stream_p95_inter_token_ms_without_lock`` and their ratio into ``bench/results/seams.json``
(under ``bench/results/tmp/`` when the machine was busy or with ``--scratch``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench._common import Run, load_average, table  # noqa: E402
from ragloop.settings import Settings  # noqa: E402

DOCS = {
    "files.md": "# Files\n\n## How do I copy a file?\n\nUse `shutil.copy(src, dst)`; `shutil.copy2` also "
    "keeps metadata.\n\n## How do I delete a file?\n\nCall `os.remove(path)`.\n",
    "lists.md": "# Lists\n\n## How do I sort a list?\n\n`sorted(xs)` returns a new list; `xs.sort()` sorts "
    "in place.\n",
}
QUESTIONS = ("How do I copy a file?", "How do I sort a list?", "How do I delete a file?")


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=8, help="Concurrent streams (default 8).")
    p.add_argument("--tokens", type=int, default=12, help="Pieces per answer (default 12).")
    p.add_argument("--token-delay-ms", type=float, default=20.0, help="Delay between pieces (default 20).")
    p.add_argument("--lock-s", type=float, default=2.0, help="How long the write lock is held (default 2).")
    p.add_argument("--window", type=float, default=5.0, help="Seconds of streaming per run (default 5).")
    p.add_argument("--repeat", type=int, default=3, help="Runs per cell after one warm-up (>= 3).")
    p.add_argument("--scratch", action="store_true", help="A smoke run: results go to bench/results/tmp/.")
    args = p.parse_args()
    if args.repeat < 3:
        p.error("--repeat must be at least 3")
    if args.lock_s >= args.window:
        p.error("--lock-s must be shorter than --window")
    return args


class WriteLock:
    """Another connection holding SQLite's write lock for ``hold_s`` seconds, in a thread."""

    def __init__(self, path: Path, delay_s: float, hold_s: float) -> None:
        self.path, self.delay_s, self.hold_s = path, delay_s, hold_s
        self.held_s = 0.0
        self.interval = (0.0, 0.0)  # perf_counter() when taken and released
        self._thread = threading.Thread(target=self._run, name="write-lock", daemon=True)

    def _run(self) -> None:
        time.sleep(self.delay_s)
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            t0 = time.perf_counter()
            time.sleep(self.hold_s)
            conn.execute("ROLLBACK")
            t1 = time.perf_counter()
            self.held_s, self.interval = t1 - t0, (t0, t1)
        finally:
            conn.close()

    def start(self) -> None:
        """Take the lock after ``delay_s`` (in the background)."""
        self._thread.start()

    def join(self) -> None:
        """Wait until the lock was released."""
        self._thread.join()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


#: One answer as a client saw it: (first token time, last token time, inter-token gaps in ms).
Answer = tuple[float, float, list[float]]


async def _user(service: Any, n: int, until: float, answers: list[Answer]) -> None:
    """One user: ask, stream the answer (recording inter-token gaps), ask again, until ``until``."""
    i = n
    while time.perf_counter() < until:
        times: list[float] = []
        async for event in service.stream_turn(QUESTIONS[i % len(QUESTIONS)]):
            if event.kind == "token":
                times.append(time.perf_counter())
        if times:
            answers.append((times[0], times[-1], [(b - a) * 1000 for a, b in itertools.pairwise(times)]))
        i += 1


async def _window(service: Any, users: int, window_s: float) -> tuple[float, list[Answer]]:
    answers: list[Answer] = []
    start = time.perf_counter()
    await asyncio.gather(*(_user(service, n, start + window_s, answers) for n in range(users)))
    return start, answers


def _one_run(
    runner: asyncio.Runner, service: Any, db: Path, args: argparse.Namespace, with_lock: bool
) -> dict[str, Any]:
    lock = WriteLock(db, delay_s=(args.window - args.lock_s) / 2, hold_s=args.lock_s) if with_lock else None
    if lock is not None:
        lock.start()
    start, answers = runner.run(_window(service, args.users, args.window))
    if lock is not None:
        lock.join()
        lo, hi = lock.interval
    else:  # the same interval of the window, for comparison
        lo = start + (args.window - args.lock_s) / 2
        hi = lo + args.lock_s
    during = [g for first, last, gaps in answers if first <= hi and last >= lo for g in gaps]
    every = [g for _, _, gaps in answers for g in gaps]
    return {
        "p50_ms": statistics.median(during),
        "p95_ms": _percentile(during, 0.95),
        "p99_ms": _percentile(during, 0.99),
        "max_ms": max(during),
        "all_p95_ms": _percentile(every, 0.95),
        "answers": len(answers),
        "answers_during_lock_interval": sum(1 for first, last, _ in answers if first <= hi and last >= lo),
        "lock_held_s": round(lock.held_s, 3) if lock is not None else 0.0,
        "load": load_average(),
    }


def _cell(
    runner: asyncio.Runner, service: Any, db: Path, args: argparse.Namespace, with_lock: bool
) -> dict[str, Any]:
    _one_run(runner, service, db, args, with_lock)  # warm-up
    runs = [_one_run(runner, service, db, args, with_lock) for _ in range(args.repeat)]
    return {
        "p95_ms": statistics.median(r["p95_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "max_ms": statistics.median(r["max_ms"] for r in runs),
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "all_p95_ms": statistics.median(r["all_p95_ms"] for r in runs),
        "runs": runs,
    }


def main() -> None:
    """Index a tiny corpus, start the instant LLM, measure both cells, print and write the figures."""
    args = _parse()
    run = Run("seams", scratch=args.scratch)
    import retrieval
    from chatbot import build_service
    from monitoring._instant_llm import Behaviour, InstantLLM

    with tempfile.TemporaryDirectory(prefix="bench-seams-") as tmp:
        root = Path(tmp)
        corpus = root / "corpus"
        corpus.mkdir()
        for name, text in DOCS.items():
            (corpus / name).write_text(text)
        data = root / "data"
        retrieval.ingest([corpus], Settings(data_dir=data), progress=False)
        db = root / "chatlog.db"
        pieces = tuple(f"t{i} " for i in range(args.tokens))
        with InstantLLM(Behaviour(pieces=pieces, token_delay_s=args.token_delay_ms / 1000)) as llm:
            settings = Settings(
                data_dir=data, openai_base_url=llm.base_url, database_url=f"sqlite:///{db}", telemetry=False
            )  # type: ignore[call-arg]
            service = build_service(settings)
            # One loop for all runs: the chat model's pooled connections belong to it.
            with asyncio.Runner() as runner:
                without = _cell(runner, service, db, args, with_lock=False)
                with_lock = _cell(runner, service, db, args, with_lock=True)
            service.chatlog.close()

    growth = with_lock["p95_ms"] - without["p95_ms"]
    rows = [
        {"cell": "without lock", **{k: v for k, v in without.items() if k != "runs"}},
        {"cell": f"with {args.lock_s:g} s write lock", **{k: v for k, v in with_lock.items() if k != "runs"}},
    ]
    print(table(rows))
    bound_ok = growth <= args.lock_s * 1000
    print(
        f"p95 growth with the lock: {growth:.1f} ms (bound: {args.lock_s * 1000:.0f} ms): "
        f"{'within' if bound_ok else 'OVER'} the bound; load {load_average()}"
    )
    keys = {
        "stream_p95_inter_token_ms_with_db_lock": round(with_lock["p95_ms"], 2),
        "stream_p95_inter_token_ms_without_lock": round(without["p95_ms"], 2),
        "stream_p95_inter_token_ratio_with_lock": round(with_lock["p95_ms"] / without["p95_ms"], 3),
        "stream_inter_token_details": {
            "users": args.users,
            "tokens_per_answer": args.tokens,
            "token_delay_ms": args.token_delay_ms,
            "lock_s": args.lock_s,
            "window_s": args.window,
            "repeat": args.repeat,
            "p95_growth_ms": round(growth, 2),
            "p95_growth_within_lock_time": bound_ok,
            "with_db_lock": with_lock,
            "without_lock": without,
        },
    }
    print(f"wrote {run.merge(keys, name='seams')}")


if __name__ == "__main__":
    main()
