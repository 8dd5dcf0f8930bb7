"""A LangSmith endpoint for bench/bench_faults.py: its own process, so it can be SIGKILLed.

It speaks what tests/monitoring/test_langsmith.py's recorder speaks (``/info``, ``/runs/batch``,
``/runs``, ``POST /feedback``, ``PATCH /feedback/{id}``) and, like LangSmith, refuses a second
feedback with an id it already holds (409). Every accepted feedback and every refused repeat is
appended to ``--store`` (one JSON line each, written before the answer), and the store is read
back at start: a restart after a kill keeps what was received.

Usage: ``python bench/_langsmith_receiver.py --port P --store FILE``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo's packages
from tests.langsmith_info import INFO  # noqa: E402


def build(store: Path) -> Any:
    """The receiver's FastAPI app, keeping its state in ``store`` (JSON lines)."""
    held: set[str] = set()
    if store.exists():
        for line in store.read_text().splitlines():
            event = json.loads(line)
            if event["event"] == "feedback":
                held.add(event["id"])
    lock = threading.Lock()
    out = store.open("a")

    def record(event: dict[str, Any]) -> None:
        out.write(json.dumps(event) + "\n")
        out.flush()

    app = FastAPI()

    @app.get("/info")
    async def info() -> dict[str, Any]:
        return INFO

    @app.post("/feedback")
    async def feedback(request: Request) -> Any:
        body = json.loads(await request.body())
        fid = str(body["id"])
        with lock:
            if fid in held:
                record({"event": "repeat", "id": fid})
                return JSONResponse({"detail": "feedback already exists"}, status_code=409)
            held.add(fid)
            record({"event": "feedback", "id": fid, "key": body.get("key"), "score": body.get("score")})
        return body

    @app.patch("/feedback/{feedback_id}")
    async def patch(feedback_id: str, request: Request) -> Any:
        body = json.loads(await request.body())
        with lock:
            if feedback_id not in held:
                return JSONResponse({"detail": "not found"}, status_code=404)
            record({"event": "patch", "id": feedback_id})
        return {**body, "id": feedback_id}

    @app.api_route("/{path:path}", methods=["GET", "POST", "PATCH", "PUT"])
    async def anything(path: str) -> dict[str, Any]:
        return {}  # runs (traces): accepted, not counted here

    return app


def read_store(store: Path) -> dict[str, Any]:
    """What the receiver holds: feedback ids (each once), how often an id was stored, repeats refused."""
    stored: dict[str, int] = {}
    repeats = 0
    if store.exists():
        for line in store.read_text().splitlines():
            event = json.loads(line)
            if event["event"] == "feedback":
                stored[event["id"]] = stored.get(event["id"], 0) + 1
            elif event["event"] == "repeat":
                repeats += 1
    return {"ids": set(stored), "stored_twice": sum(1 for n in stored.values() if n > 1), "repeats": repeats}


def main() -> None:
    """Serve until killed."""
    import uvicorn

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True, help="Port on 127.0.0.1.")
    parser.add_argument("--store", type=Path, required=True, help="JSON-lines file of what was received.")
    args = parser.parse_args()
    uvicorn.run(build(args.store), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
