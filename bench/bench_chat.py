"""Time to first token and turn time through the app vs calling the LLM server directly.

Same run, same server, same prompt: for each Python FAQ question the app answers over HTTP
(server-sent events), then the exact prompt the app built (from the chat log's retrieved chunks)
is sent straight to the LLM server. The server runs one slot, and a short "flush" request goes
before every measured call, so both sides meet the same prompt cache: the stable system prefix
cached, the rest not, as in normal use. The order (app first / direct first) alternates.
Temperature 0, so both sides generate the same tokens and total times compare.

Protocol (bench/_common.py): one app turn and one direct call warm up the server first; then every
question is asked ``--repeat`` (>= 3) times on each side (the order alternating) and its median
times give its ratios; the figures are the medians over the questions, with the load beside them.
When the 1-minute load average was above 1.5 at the start, the figures go to bench/results/tmp/.

Writes ``ttft_overhead_ratio_p50``, ``turn_overhead_ratio_p50`` and ``ttft_p50_s_default`` (and
details) into bench/results/foundation.json, keeping the keys other benchmarks wrote there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench._common import Run  # noqa: E402
from chatbot import _prompts as prompts  # noqa: E402
from ragloop.process import ManagedProcess, free_port, http_ok  # noqa: E402
from ragloop.settings import Settings  # noqa: E402


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--questions", type=int, default=12, help="FAQ questions to ask (default 12).")
    p.add_argument("--repeat", type=int, default=3, help="times each question is asked per side (>= 3).")
    p.add_argument("--scratch", action="store_true", help="a smoke run: write under bench/results/tmp/")
    p.add_argument("--max-tokens", type=int, default=96, help="Answer cap for both sides (default 96).")
    p.add_argument("--data-dir", type=Path, default=ROOT / "data", help="Data dir holding the default index.")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    if args.repeat < 3:
        p.error("--repeat must be at least 3")
    return args


def _start_llm(settings: Settings, logs: Path) -> tuple[ManagedProcess, str]:
    port = free_port()
    argv = [sys.executable, "-m", "ragloop.cli", "llm", "serve", "--port", str(port), "--parallel", "1"]
    proc = ManagedProcess("llm", argv, logs / "bench-llm.log").start()
    proc.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/v1/models"), timeout=180)
    return proc, f"http://127.0.0.1:{port}/v1"


def _start_app(settings: Settings) -> tuple[Any, str]:
    import uvicorn

    from chatbot import create_app

    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 60
    while not http_ok(f"http://127.0.0.1:{port}/healthz") and time.monotonic() < deadline:
        time.sleep(0.2)
    return server, f"http://127.0.0.1:{port}"


def _sse_turn(client: httpx.Client, app_url: str, question: str) -> tuple[float, float, str]:
    """(ttft_s, total_s, turn_id) measured by the client over HTTP."""
    t0 = time.perf_counter()
    ttft, turn_id, event = None, "", ""
    body = {"message": question, "stream": True}
    with client.stream("POST", f"{app_url}/api/chat", json=body) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "started":
                turn_id = json.loads(line[5:])["turn_id"]
            elif line.startswith("data:") and event == "token" and ttft is None:
                ttft = time.perf_counter() - t0
    total = time.perf_counter() - t0
    return (ttft if ttft is not None else total), total, turn_id


def _direct(
    client: httpx.Client, llm_url: str, model: str, messages: list[dict[str, str]], max_tokens: int
) -> tuple[float, float]:
    """(ttft_s, total_s) of the same prompt sent straight to the server, streaming."""
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    t0 = time.perf_counter()
    ttft = None
    with client.stream("POST", f"{llm_url}/chat/completions", json=body) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if (
                ttft is None
                and line.startswith("data:")
                and '"content":"' in line
                and '"content":""' not in line
            ):
                ttft = time.perf_counter() - t0
    total = time.perf_counter() - t0
    return (ttft if ttft is not None else total), total


def _flush(client: httpx.Client, llm_url: str, model: str) -> None:
    """Leave the slot holding only the system prefix (plus a few tokens), as between real users."""
    msgs = [
        {"role": "system", "content": prompts.SYSTEM_PROMPT},
        {"role": "user", "content": f"Sources:\n[1]\nflush {random.random()}\n\nQuestion: ok?"},
    ]
    client.post(
        f"{llm_url}/chat/completions", json={"model": model, "messages": msgs, "max_tokens": 1}
    ).raise_for_status()


def _prompt_of(retriever: Any, question: str, threshold: float) -> list[dict[str, str]] | None:
    relevant = [c for c in retriever.search(question).chunks if c.score >= threshold]
    if not relevant:
        return None
    user = prompts.user_prompt(question, prompts.format_sources(relevant))
    return [{"role": "system", "content": prompts.SYSTEM_PROMPT}, {"role": "user", "content": user}]


def _ensure_index(settings: Settings) -> None:
    from retrieval import Retriever, fetch_corpus, ingest

    if Retriever(settings).count() == 0:
        print("indexing the default corpus (first run only) ...")
        ingest([fetch_corpus(settings)], settings, progress=True)


def _p(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]
    )


def main() -> None:
    """Start the LLM server and the app, measure, and write the figures."""
    args = _parse()
    run = Run("chat", scratch=args.scratch)
    logs = ROOT / "bench" / "results" / "tmp"
    base = Settings(data_dir=args.data_dir)
    _ensure_index(base)
    llm, llm_url = _start_llm(base, logs)
    try:
        settings = Settings(
            data_dir=args.data_dir, openai_base_url=llm_url, temperature=0.0, max_tokens=args.max_tokens
        )
        rows = _measure(settings, llm_url, args)
    finally:
        llm.stop()
    _report(rows, settings, args, run)


def _measure(settings: Settings, llm_url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    from chatlog import ChatLog
    from retrieval import Retriever, load_python_faq

    faq = load_python_faq(settings)
    questions = random.Random(args.seed).sample([f.question for f in faq], k=min(args.questions, len(faq)))
    retriever = Retriever(settings)
    server, app_url = _start_app(settings)
    log = ChatLog(settings.chatlog_url)
    rows = []
    # No keep-alive: the llama.cpp server may close a connection after a streamed reply, and a
    # retry on a stale pooled connection would be timed as part of the next call.
    with httpx.Client(timeout=300, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        _flush(client, llm_url, settings.llm_model)  # warm-up: load the system prefix once
        _warm_up(client, app_url, llm_url, settings, retriever, questions, args.max_tokens)
        for i, q in enumerate(tqdm(questions, desc="questions")):
            # First turn of a conversation: the standalone question is the message, so the same
            # retrieval gives the direct call exactly the prompt the app builds.
            messages = _prompt_of(retriever, q, settings.score_threshold)
            if messages is None:
                continue
            times: dict[str, list[float]] = {}
            turn_id = ""
            for r in range(args.repeat):
                for side in ("app", "direct") if (i + r) % 2 == 0 else ("direct", "app"):
                    _flush(client, llm_url, settings.llm_model)
                    if side == "app":
                        ttft, total, turn_id = _sse_turn(client, app_url, q)
                    else:
                        ttft, total = _direct(client, llm_url, settings.llm_model, messages, args.max_tokens)
                    times.setdefault(f"{side}_ttft_s", []).append(ttft)
                    times.setdefault(f"{side}_total_s", []).append(total)
            turn = log.get_turn(turn_id)
            if turn is None or turn["status"] != "ok":
                continue
            row: dict[str, Any] = {"question": q, **{k: statistics.median(v) for k, v in times.items()}}
            row.update(
                input_tokens=turn["input_tokens"],
                output_tokens=turn["output_tokens"],
                retrieval_ms=turn["retrieval_ms"],
                repeats=times,
                load=os.getloadavg()[0],
            )
            rows.append(row)
    server.should_exit = True
    return rows


def _warm_up(
    client: httpx.Client,
    app_url: str,
    llm_url: str,
    settings: Settings,
    retriever: Any,
    questions: list[str],
    max_tokens: int,
) -> None:
    """One app turn and one direct call, not timed: model, index and app paths loaded."""
    _sse_turn(client, app_url, questions[0])
    messages = _prompt_of(retriever, questions[0], settings.score_threshold)
    if messages is not None:
        _flush(client, llm_url, settings.llm_model)
        _direct(client, llm_url, settings.llm_model, messages, max_tokens)


def _report(rows: list[dict[str, Any]], settings: Settings, args: argparse.Namespace, run: Run) -> None:
    if not rows:
        raise SystemExit("no successful turns: nothing to report")
    skip = ("question", "repeats")
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k not in skip}
    ttft_ratio = statistics.median(r["app_ttft_s"] / r["direct_ttft_s"] for r in rows)
    turn_ratio = statistics.median(r["app_total_s"] / r["direct_total_s"] for r in rows)
    header = f"\n{'metric':30} {'app':>9} {'direct':>9} {'ratio p50':>9}"
    ttft_line = f"{'time to first token p50 (s)':30} {med['app_ttft_s']:9.3f} {med['direct_ttft_s']:9.3f}"
    turn_line = f"{'turn time p50 (s)':30} {med['app_total_s']:9.3f} {med['direct_total_s']:9.3f}"
    print(header)
    print(f"{ttft_line} {ttft_ratio:9.3f}")
    print(f"{turn_line} {turn_ratio:9.3f}")
    print(f"{'prompt tokens p50':34} {med['input_tokens']:10.0f}")
    print(f"{'retrieval p50 (ms)':34} {med['retrieval_ms']:10.1f}")
    keys = {
        "ttft_overhead_ratio_p50": ttft_ratio,
        "turn_overhead_ratio_p50": turn_ratio,
        "ttft_p50_s_default": med["app_ttft_s"],
        "ttft_p95_s_default": _p([r["app_ttft_s"] for r in rows], 95),
        "chat_bench": {
            "questions": len(rows),
            "repeat": args.repeat,
            "max_tokens": args.max_tokens,
            "top_k": settings.top_k,
            "chunk_size": settings.chunk_size,
            "prompt_tokens_p50": med["input_tokens"],
            "medians_s": {k: v for k, v in med.items() if k.endswith("_s")},
            "per_question": rows,
            "method": (
                "same prompt, one slot, flushed before each call, temperature 0, alternating order; "
                f"each question asked {args.repeat} times per side after a warm-up turn, its median "
                "times give its ratios, the figures are the medians over the questions"
            ),
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "loadavg": os.getloadavg(),
            },
        },
    }
    path = run.merge(keys, name="foundation")  # locked read-modify-write: other benchmarks' keys stay
    kept = " (busy machine or --scratch: the committed figures stay)" if path.parent.name == "tmp" else ""
    print(f"wrote {path}{kept}")


if __name__ == "__main__":
    main()
