"""Metric series growth from hostile traffic: 300 random requests against the real app.

The real chat app (``chatbot`` service and web app, instrumented by ``monitoring.Telemetry``) is
served over HTTP against the zero-latency OpenAI-compatible endpoint. First one request of each
kind is sent (a chat turn, feedback, a conversation created and deleted, a 404, an unknown method),
as any running app will have seen them; then the ``/metrics`` series are counted, 300 random
requests are sent (random 404 paths, random query strings, random conversation ids, random
methods), and the series are counted again. The difference is
``metric_series_growth_after_300_random_requests`` (target: at most 20); no metric label may take
its value from the request.

Writes it into bench/results/seams.json (``Run("seams", timing=False)``: a count, not a timing,
so the machine's load does not hold it back).

Usage: ``python bench/bench_seams_metrics.py [--requests 300]``
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DOC = """# Working with files

## How do I copy a file?

Use `shutil.copy(src, dst)` to copy a file's contents and permission bits.
"""


def series(metrics_text: str) -> set[str]:
    """The series of a Prometheus text exposition: one per sample line (name and labels)."""
    out = set()
    for line in metrics_text.splitlines():
        if line and not line.startswith("#"):
            out.add(line.rsplit(" ", 1)[0])
    return out


def _hex(rng: random.Random, n: int = 8) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def request_kinds(rng: random.Random) -> list[Callable[[Any], Any]]:
    """One callable per kind of hostile request; each takes an ``httpx.Client`` on the app."""

    def nope(c: Any) -> Any:  # a random unmatched path, sometimes nested, with a query string
        return c.get(f"/nope-{_hex(rng)}/{_hex(rng, 4)}?{_hex(rng, 3)}={_hex(rng)}")

    def api_nope(c: Any) -> Any:  # a random unknown API path
        return c.post(f"/api/{_hex(rng)}", json={})

    def query(c: Any) -> Any:  # a real route with a random query string
        return c.get(f"/api/nope?{_hex(rng, 4)}={_hex(rng)}&utm_{_hex(rng, 2)}=1")

    def conversation(c: Any) -> Any:  # a random conversation id in the path
        return c.delete(f"/api/conversations/{_hex(rng, 32)}")

    def chat_unknown_conversation(c: Any) -> Any:  # a random conversation id in the body
        return c.post("/api/chat", json={"message": "", "conversation_id": _hex(rng, 32)})

    def feedback(c: Any) -> Any:  # feedback on a random turn id
        return c.post("/api/feedback", json={"turn_id": _hex(rng, 32), "value": rng.choice([1, -1])})

    def method(c: Any) -> Any:  # a random method
        letters = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
        return c.request(rng.choice(["PROPFIND", "FOO", "PURGE"]) + letters, "/api/chat")

    return [nope, api_nope, query, conversation, chat_unknown_conversation, feedback, method]


def measure(base_url: str, n: int, seed: int = 0) -> dict[str, Any]:
    """Warm up one request per kind, then count series before and after ``n`` random requests."""
    import httpx

    rng = random.Random(seed)
    kinds = request_kinds(rng)
    with httpx.Client(base_url=base_url, timeout=60) as c:
        turn = c.post("/api/chat", json={"message": "How do I copy a file?"})
        turn.raise_for_status()
        c.post("/api/feedback", json={"turn_id": turn.json()["turn_id"], "value": 1})
        conv = c.post("/api/conversations").json()["conversation_id"]
        c.delete(f"/api/conversations/{conv}")
        for kind in kinds:
            kind(c)
        before = series(c.get("/metrics").text)
        statuses: dict[int, int] = {}
        for _ in range(n):
            code = rng.choice(kinds)(c).status_code
            statuses[code] = statuses.get(code, 0) + 1
        after = series(c.get("/metrics").text)
    new = sorted(after - before)
    return {
        "series_before": len(before),
        "series_after": len(after),
        "growth": len(after) - len(before),
        "new_series_sample": new[:20],
        "statuses": statuses,
    }


def serve(n: int) -> dict[str, Any]:
    """Index a one-document corpus, serve the instrumented app, and :func:`measure` it."""
    import retrieval
    from chatbot import build_service, create_app
    from monitoring import Telemetry
    from monitoring._instant_llm import InstantLLM
    from ragloop.process import ThreadedServer
    from ragloop.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="bench-seams-metrics-"))
    (tmp / "corpus").mkdir()
    (tmp / "corpus" / "files.md").write_text(DOC)
    with InstantLLM() as llm:
        settings = Settings(
            data_dir=tmp / "data",
            collection="bench",
            openai_base_url=llm.base_url,
            database_url=f"sqlite:///{tmp / 'chat.db'}",
            collector=False,
            phoenix=False,
            otlp_endpoint=None,
            langsmith_api_key=None,
            langsmith_tracing=False,
        )
        retrieval.ingest([tmp / "corpus"], settings, progress=False)
        telemetry = Telemetry(settings)
        service = build_service(settings, observer=cast(Any, telemetry))  # structurally a TurnObserver
        app = create_app(settings, service=service, observer=telemetry)
        try:
            with ThreadedServer(app, "/healthz", name="chat-app") as server:
                return measure(server.base, n)
        finally:
            service.chatlog.close()
            telemetry.shutdown()


def main() -> None:
    """Run the count and merge it into bench/results/seams.json."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=300, help="Random requests to send.")
    args = p.parse_args()
    from bench._common import Run

    run = Run("seams", timing=False)
    result = serve(args.requests)
    print(f"series before {result['series_before']}, after {result['series_after']}: +{result['growth']}")
    print(f"statuses {result['statuses']}")
    for s in result["new_series_sample"]:
        print("  new:", s)
    if args.requests == 300:
        out = run.merge(
            {
                "metric_series_growth_after_300_random_requests": result["growth"],
                "metric_series_growth_details": {k: v for k, v in result.items() if k != "growth"},
            },
            name="seams",
        )
        print(f"written to {out}")
    else:
        print("not written (only --requests 300 is the recorded figure)")


if __name__ == "__main__":
    main()
