"""Load and backpressure: N concurrent conversations against the app, for a bounded time.

The app (``ragloop serve``, a process of its own so its RSS is its own) runs on 127.0.0.1 in front
of the real local LLM (``ragloop llm serve --parallel SLOTS``), with its admission queue
(RAGLOOP_LLM_CONCURRENCY = SLOTS, RAGLOOP_QUEUE_DEPTH, RAGLOOP_QUEUE_MAX_WAIT). An asyncio + httpx
client keeps N conversations going: each asks a question (streamed, server-sent events), reads
the answer, asks the next; a refused turn (429/503 with Retry-After) waits what it was told. New
turns stop at ``--duration``; turns in flight then finish.

Per N: throughput (accepted turns/s), time to first token and turn time at p50/p95/p99, queue
wait (the result's ``queue_ms``) p50/p95, rejections by code, errors, the app's RSS (max), and
the check that the chat log's accepted rows (status other than ``rejected``) equal the accepted
turns the client saw.

``app_only_rps_p95_100ms``: the same app in front of a zero-latency OpenAI-compatible endpoint
(:class:`monitoring._instant_llm.InstantLLM`); concurrency doubles from 1 while a step's p95
stays under 100 ms; the figure is the highest requests/s whose p95 was under 100 ms.

Writes ``load`` (keyed by N) and ``app_only_rps_p95_100ms`` into bench/results/reliability.json
(``Run.merge``; to bench/results/tmp/ when the machine is busy, or with ``--quick``).

Example: ``nice -n 19 .venv/bin/python bench/bench_load.py --quick`` (N = 1, 4; 15 s each).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench._common import Run, table  # noqa: E402
from ragloop.process import ManagedProcess, free_port, http_ok  # noqa: E402

QUESTIONS = [
    "How do I copy a file?",
    "How do I delete a file?",
    "How do I sort a list?",
    "How do I remove duplicates from a list?",
    "How do I convert a string to a number?",
]
DOCS = {
    "files.md": "# Files\n\n## How do I copy a file?\n\nUse `shutil.copy(src, dst)`; `shutil.copy2` keeps "
    "metadata.\n\n## How do I delete a file?\n\nCall `os.remove(path)` or `Path.unlink()`.\n",
    "lists.md": "# Lists\n\n## How do I sort a list?\n\n`sorted(xs)` returns a new list; `xs.sort()` sorts "
    "in place.\n\n## How do I remove duplicates from a list?\n\n`list(dict.fromkeys(xs))` keeps order.\n",
    "strings.md": "# Strings\n\n## How do I convert a string to a number?\n\n`int('42')`, `float('3.1')`.\n",
}


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", default="1,4,16,64", help="Concurrent conversations, comma-separated.")
    p.add_argument("--duration", type=float, default=120.0, help="Seconds of new turns per N.")
    p.add_argument("--slots", type=int, default=2, help="LLM server slots (= app concurrency).")
    p.add_argument("--depth", type=int, default=16, help="Admission queue depth.")
    p.add_argument("--max-wait", type=float, default=30.0, help="Admission queue wait limit, s.")
    p.add_argument("--max-tokens", type=int, default=48, help="Answer cap.")
    p.add_argument(
        "--app-only-seconds", type=float, default=10.0, help="Seconds per app-only step (0 skips)."
    )
    p.add_argument("--llm-url", help="Use this OpenAI-compatible /v1 URL instead of starting the local LLM.")
    p.add_argument("--quick", action="store_true", help="N = 1, 4 for 15 s, app-only 4 s (scratch results).")
    return p.parse_args()


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 1)


class App:
    """``ragloop serve`` in its own process on a free port, over a small indexed corpus."""

    def __init__(self, root: Path, llm_url: str, args: argparse.Namespace, tag: str) -> None:
        self.port = free_port()
        self.db = root / f"chatlog-{tag}.db"
        self.env = {
            "RAGLOOP_DATA_DIR": str(root / "data"),
            "RAGLOOP_COLLECTION": "load",
            "OPENAI_BASE_URL": llm_url,
            "RAGLOOP_DATABASE_URL": f"sqlite:///{self.db}",
            "RAGLOOP_TELEMETRY": "false",
            "RAGLOOP_EVAL_ONLINE": "false",
            "RAGLOOP_MAX_TOKENS": str(args.max_tokens),
            "RAGLOOP_LLM_CONCURRENCY": str(args.slots),
            "RAGLOOP_QUEUE_DEPTH": str(args.depth),
            "RAGLOOP_QUEUE_MAX_WAIT": str(args.max_wait),
            "RAGLOOP_LLM_TIMEOUT": "300",
        }
        argv = [sys.executable, "-m", "ragloop.cli", "serve", "--port", str(self.port)]
        self.proc = ManagedProcess(f"app-{tag}", argv, root / f"app-{tag}.log", env=self.env)
        self.base = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> App:
        self.proc.start()
        self.proc.wait_ready(lambda: http_ok(f"{self.base}/healthz"), timeout=300)
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.stop()

    def rss_mb(self) -> float:
        """The app process's resident memory, MiB."""
        import psutil

        return float(psutil.Process(self.proc.proc.pid).memory_info().rss / 2**20)  # type: ignore[union-attr]

    def accepted_rows(self) -> dict[str, int]:
        """Chat-log turns by status."""
        from sqlalchemy import create_engine, text

        engine = create_engine(f"sqlite:///{self.db}")
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT status, count(*) FROM turns GROUP BY status")).all()
        engine.dispose()
        return {str(s): int(n) for s, n in rows}


async def _turn(client: Any, question: str, cid: str | None) -> dict[str, Any]:
    """One streamed turn; returns what the client saw."""
    t0 = time.perf_counter()
    out: dict[str, Any] = {"status": None, "ttft_ms": None}
    body = {"message": question, "conversation_id": cid, "stream": True}
    async with client.stream("POST", "/api/chat", json=body) as response:
        out["status"] = response.status_code
        if response.status_code != 200:
            data = json.loads(await response.aread())
            out["code"] = data.get("error", {}).get("code")
            out["retry_after_s"] = float(response.headers.get("retry-after", "1"))
            return out
        event = None
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "token" and out["ttft_ms"] is None:
                out["ttft_ms"] = (time.perf_counter() - t0) * 1000
            elif line.startswith("data: ") and event == "done":
                result = json.loads(line[6:])["result"]
                out.update(result=result.get("status"), queue_ms=result.get("queue_ms"))
                out["cid"] = result.get("conversation_id")
            elif line.startswith("data: ") and event == "error":
                out["late_error"] = json.loads(line[6:]).get("error", {}).get("code")
    out["turn_ms"] = (time.perf_counter() - t0) * 1000
    return out


async def _load(base: str, n: int, duration: float, app: App) -> dict[str, Any]:
    import httpx

    seen: list[dict[str, Any]] = []
    rss: list[float] = []
    stop_at = time.monotonic() + duration

    async def conversation(i: int) -> None:
        cid: str | None = None
        k = i
        async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(600.0)) as client:
            while time.monotonic() < stop_at:
                try:
                    out = await _turn(client, QUESTIONS[k % len(QUESTIONS)], cid)
                except httpx.HTTPError as exc:
                    out = {"status": "transport", "code": type(exc).__name__}
                seen.append(out)
                k += 1
                if out["status"] == 200:
                    cid = out.get("cid", cid)
                elif out["status"] in (429, 503):
                    await asyncio.sleep(
                        min(out.get("retry_after_s", 1.0), max(0.0, stop_at - time.monotonic()))
                    )

    async def sample_rss() -> None:
        while time.monotonic() < stop_at + 600:
            rss.append(app.rss_mb())
            await asyncio.sleep(1.0)

    sampler = asyncio.create_task(sample_rss())
    started = time.perf_counter()
    with tqdm(total=int(duration), desc=f"N={n}", unit="s", leave=False) as bar:
        workers = [asyncio.create_task(conversation(i)) for i in range(n)]
        while not all(w.done() for w in workers):
            await asyncio.sleep(1.0)
            bar.n = min(int(duration), int(time.perf_counter() - started))
            bar.refresh()
        await asyncio.gather(*workers)
    elapsed = time.perf_counter() - started
    sampler.cancel()
    return {"seen": seen, "elapsed_s": elapsed, "rss": rss}


def _summarise(n: int, raw: dict[str, Any], rows: dict[str, int]) -> dict[str, Any]:
    seen = raw["seen"]
    ok = [s for s in seen if s["status"] == 200]
    refused: dict[str, int] = {}
    for s in seen:
        if s["status"] in (429, 503) and s.get("code") in ("server_busy", "queue_timeout", "shutting_down"):
            refused[s["code"]] = refused.get(s["code"], 0) + 1
    errors = [s for s in seen if s["status"] != 200 and s.get("code") not in refused] + [
        s for s in ok if s.get("result") not in ("ok", "no_context")
    ]
    accepted_rows = sum(v for k, v in rows.items() if k != "rejected")
    ttft = [s["ttft_ms"] for s in ok if s["ttft_ms"] is not None]
    turn = [s["turn_ms"] for s in ok]
    queue = [s["queue_ms"] for s in ok if s.get("queue_ms") is not None]
    return {
        "n": n,
        "turns_accepted": len(ok),
        "throughput_turns_s": round(len(ok) / raw["elapsed_s"], 3),
        "ttft_ms_p50": _pct(ttft, 0.5),
        "ttft_ms_p95": _pct(ttft, 0.95),
        "ttft_ms_p99": _pct(ttft, 0.99),
        "turn_ms_p50": _pct(turn, 0.5),
        "turn_ms_p95": _pct(turn, 0.95),
        "turn_ms_p99": _pct(turn, 0.99),
        "queue_ms_p50": _pct(queue, 0.5),
        "queue_ms_p95": _pct(queue, 0.95),
        "rejected": sum(refused.values()),
        "rejected_by_code": refused,
        "errors": len(errors),
        "rss_mb_max": round(max(raw["rss"]), 1) if raw["rss"] else None,
        "chatlog_accepted_rows": accepted_rows,
        "chatlog_rejected_rows": rows.get("rejected", 0),
        "rows_match_accepted": accepted_rows == len(ok),
        "elapsed_s": round(raw["elapsed_s"], 1),
    }


async def _app_only_step(base: str, conc: int, seconds: float) -> tuple[float, float | None]:
    import httpx

    times: list[float] = []
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                r = await client.post("/api/chat", json={"message": "How do I copy a file?"})
                if r.status_code == 200:
                    times.append((time.perf_counter() - t0) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    return len(times) / (time.perf_counter() - started), _pct(times, 0.95)


def _app_only(root: Path, args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    from monitoring._instant_llm import InstantLLM

    steps = []
    best = 0.0
    with InstantLLM() as llm:
        a = argparse.Namespace(**{**vars(args), "slots": 64, "depth": 256})
        with App(root, llm.base_url, a, "instant") as app:
            conc = 1
            while conc <= 64:
                rps, p95 = asyncio.run(_app_only_step(app.base, conc, seconds))
                steps.append({"concurrency": conc, "rps": round(rps, 1), "p95_ms": p95})
                print(f"app-only: concurrency {conc}: {rps:.1f} req/s, p95 {p95} ms")
                if p95 is None or p95 >= 100:
                    break
                best = max(best, rps)
                conc *= 2
    return {"app_only_rps_p95_100ms": round(best, 1), "app_only_steps": steps}


def _index(root: Path) -> None:
    import retrieval
    from ragloop.settings import Settings

    corpus = root / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for name, text in DOCS.items():
        (corpus / name).write_text(text)
    retrieval.ingest([corpus], Settings(data_dir=root / "data", collection="load"), progress=False)


def main() -> None:
    """Run the load steps and the app-only step; print a table; merge the figures."""
    args = _parse()
    ns = [1, 4] if args.quick else [int(x) for x in args.n.split(",") if x.strip()]
    duration = 15.0 if args.quick else args.duration
    app_only_s = min(args.app_only_seconds, 4.0) if args.quick else args.app_only_seconds
    run = Run("reliability", scratch=args.quick)
    root = Path(tempfile.mkdtemp(prefix="ragloop-load-"))
    _index(root)
    llm: ManagedProcess | None = None
    llm_url = args.llm_url
    if llm_url is None:
        port = free_port()
        argv = [sys.executable, "-m", "ragloop.cli", "llm", "serve", "--port", str(port)]
        llm = ManagedProcess("llm", [*argv, "--parallel", str(args.slots)], root / "llm.log").start()
        llm.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/v1/models"), timeout=300)
        llm_url = f"http://127.0.0.1:{port}/v1"
    load: dict[str, Any] = {}
    try:
        for n in ns:
            with App(root, llm_url, args, f"n{n}") as app:
                raw = asyncio.run(_load(app.base, n, duration, app))
                load[str(n)] = _summarise(n, raw, app.accepted_rows())
    finally:
        if llm is not None:
            llm.stop()
    keys: dict[str, Any] = {
        "load": {
            **load,
            "config": {"slots": args.slots, "depth": args.depth, "max_wait_s": args.max_wait,
                       "duration_s": duration, "max_tokens": args.max_tokens},
        }
    }  # fmt: skip
    if app_only_s > 0:
        keys.update(_app_only(root, args, app_only_s))
    cols = ("n", "turns_accepted", "throughput_turns_s", "ttft_ms_p50", "turn_ms_p95", "queue_ms_p95",
            "rejected", "errors", "rss_mb_max", "rows_match_accepted")  # fmt: skip
    print(table([{c: row[c] for c in cols} for row in load.values()]))
    if "app_only_rps_p95_100ms" in keys:
        print(f"app_only_rps_p95_100ms: {keys['app_only_rps_p95_100ms']}")
    print(f"written: {run.merge(keys, nested=['load'])}")  # a run of some N (--n) keeps the others
    bad = [n for n, row in load.items() if not row["rows_match_accepted"]]
    if bad:
        raise SystemExit(f"chat-log accepted rows differ from accepted turns for N = {', '.join(bad)}")


if __name__ == "__main__":
    main()
