"""Exactly-once delivery across OS processes: a real HTTP receiver, an HTTP sink, worker processes.

- :class:`Receiver` is a real HTTP server on loopback (FastAPI under uvicorn) that records every
  item it receives, with the sending process;
- :class:`HttpSink` implements :class:`chatlog.outbox.Sink` by POSTing batches to it;
- ``python -m tests.chatlog.outbox_harness DB_URL RECEIVER_URL BARRIER_DIR [naive]`` runs one
  :class:`~chatlog.outbox.OutboxWorker` process until the outbox has nothing left for it;
- :func:`run_processes` enqueues items, starts the processes together (a file barrier: each
  reports ready, then all get "go") and counts duplicates and losses at the receiver.

Used by tests/chatlog/test_outbox.py and bench/bench_seams_store.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from chatlog.outbox import OutboxItem

ROOT = Path(__file__).resolve().parents[2]
SINK = "http"


#: How long the first request of a process waits for the other processes' first ones: below
#: :class:`HttpSink`'s 10 s client timeout, so a held request is never retried by its sender.
MEET_TIMEOUT_S = 8.0


class Receiver:
    """Records ``POST /items`` bodies; ``fail_next`` makes that many requests answer 503."""

    def __init__(self, delay_s: float = 0.005, meet: int = 0) -> None:
        """``delay_s`` per request widens the window in which two workers could race.

        ``meet``: the first request of each sending process is held (up to :data:`MEET_TIMEOUT_S`)
        until ``meet`` different processes have sent one, so every worker is really mid-delivery at
        the same moment, however the OS schedules them (a busy machine could otherwise run one
        process's whole share before the other's first claim).
        """
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.fail_next = 0
        self.delay_s = delay_s
        self.meet = meet
        self.senders: set[int] = set()
        self.server: Any = None

    async def _meet(self, pid: int) -> None:
        with self.lock:
            first = pid not in self.senders
            self.senders.add(pid)
        deadline = time.monotonic() + MEET_TIMEOUT_S
        while first and len(self.senders) < self.meet and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def app(self) -> Any:
        """The ASGI app."""
        app = FastAPI()

        @app.get("/healthz")
        async def healthz() -> dict[str, str]:
            return {"status": "ok"}

        @app.post("/items")
        async def items(request: Request) -> Any:
            body = await request.json()
            await self._meet(int(body["pid"]))
            await asyncio.sleep(self.delay_s)
            with self.lock:
                if self.fail_next > 0:
                    self.fail_next -= 1
                    return JSONResponse({"detail": "unavailable"}, status_code=503)
                for item in body["items"]:
                    self.received.append({**item, "pid": body["pid"]})
            return {"ok": len(body["items"])}

        return app

    def __enter__(self) -> Receiver:
        from ragloop.process import ThreadedServer

        self.server = ThreadedServer(self.app(), "/healthz", name="outbox-receiver").start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        """Base URL."""
        return str(self.server.base)

    def counts(self) -> Counter[str]:
        """Receipts per item key."""
        with self.lock:
            return Counter(r["key"] for r in self.received)


class HttpSink:
    """A :class:`chatlog.outbox.Sink` that POSTs each batch to a :class:`Receiver`."""

    kinds = frozenset({"feedback", "evaluation", "test"})

    def __init__(self, url: str, name: str = SINK) -> None:
        """Send to ``url`` (the receiver's base URL)."""
        self.name = name
        self.client = httpx.Client(base_url=url, timeout=10)
        self.last_error: str | None = None
        self.sent: list[OutboxItem] = []

    def send(self, items: Sequence[OutboxItem]) -> list[bool]:
        """One request per batch; all True or all False."""
        body = {
            "pid": os.getpid(),
            "items": [{"key": i.key, "version": i.version, "payload": i.payload} for i in items],
        }
        try:
            self.client.post("/items", json=body).raise_for_status()
        except httpx.HTTPError as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            return [False] * len(items)
        self.sent.extend(items)
        return [True] * len(items)

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Close the HTTP client."""
        self.client.close()


def enqueue_items(db_url: str, n: int, kind: str = "test") -> None:
    """Enqueue ``n`` items for the HTTP sink (keys ``item-0000``...) in one transaction."""
    import chatlog as cl
    from chatlog.outbox import enqueue

    log = cl.ChatLog(db_url)
    try:
        with log.engine.begin() as conn:
            for i in range(n):
                enqueue(conn, kind=kind, key=f"item-{i:04d}", payload={"i": i}, sinks=[SINK])
    finally:
        log.close()


def _naive_worker_class() -> Any:
    """A worker that claims without row locks or leases (what the outbox must not do): the control."""
    from sqlalchemy import select, update

    from chatlog import outbox as ob

    class NaiveWorker(ob.OutboxWorker):
        def _claim(self) -> list[OutboxItem]:
            with self.engine.begin() as conn:
                rows = list(
                    conn.execute(
                        select(ob.outbox)
                        .where(ob.outbox.c.status == ob.PENDING)
                        .order_by(ob.outbox.c.outbox_id)
                        .limit(self.batch_size)
                    ).mappings()
                )
                ids = [r["outbox_id"] for r in rows]
                conn.execute(
                    update(ob.outbox).where(ob.outbox.c.outbox_id.in_(ids)).values(leased_by=self.worker_id)
                )
            return [
                OutboxItem(
                    r["outbox_id"],
                    r["sink"],
                    r["kind"],
                    r["key"],
                    dict(r["payload"]),
                    r["attempts"],
                    None,
                    r["version"],
                )
                for r in rows
            ]

        def _record(self, outcomes: Any, report: Any) -> None:
            with self.engine.begin() as conn:
                for item, ok, _ in outcomes:
                    if ok:
                        conn.execute(
                            update(ob.outbox)
                            .where(ob.outbox.c.outbox_id == item.id)
                            .values(status=ob.DELIVERED)
                        )
                        report.delivered += 1

    return NaiveWorker


def worker_main(db_url: str, receiver_url: str, barrier: str, naive: bool = False) -> dict[str, Any]:
    """One worker process: report ready, wait for the common go, deliver until nothing is due."""
    import chatlog as cl
    from chatlog.outbox import OutboxWorker

    engine = cl.make_engine(db_url)
    sink = HttpSink(receiver_url)
    cls = _naive_worker_class() if naive else OutboxWorker
    worker = cls(engine, [sink], batch_size=5, lease_s=60, backoff_initial_s=0.05, backoff_max_s=0.2)
    Path(barrier, f"ready-{os.getpid()}").touch()
    while not Path(barrier, "go").exists():  # every process is imported and connected: start together
        time.sleep(0.01)
    passes = claimed = 0
    idle = 0
    while idle < 3:  # a few empty passes: the other process may still release superseded items
        report = worker.deliver_once()
        passes += 1
        claimed += report.claimed
        idle = idle + 1 if report.claimed == 0 else 0
        if report.claimed == 0:
            time.sleep(0.05)
    sink.shutdown()
    engine.dispose()
    return {"pid": os.getpid(), "passes": passes, "claimed": claimed, "sent": len(sink.sent)}


def run_processes(
    db_url: str, n_items: int, processes: int = 2, timeout_s: float = 180, naive: bool = False
) -> dict[str, Any]:
    """Enqueue ``n_items``, deliver them with ``processes`` worker processes, count at the receiver.

    ``naive=True`` runs the control: workers that claim without locks or leases.

    Returns:
        ``duplicates`` (receipts beyond the first per key), ``lost`` (keys never received),
        ``received``, ``per_process`` (items each process sent) and ``left`` (items not
        ``delivered`` in the outbox afterwards).
    """
    import tempfile

    import chatlog as cl
    from chatlog import outbox as ob

    enqueue_items(db_url, n_items)
    barrier = tempfile.mkdtemp(prefix="outbox-barrier-")
    with Receiver(meet=processes) as receiver:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.chatlog.outbox_harness",
                    db_url,
                    receiver.url,
                    barrier,
                    *(["naive"] if naive else []),
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(processes)
        ]
        deadline = time.monotonic() + timeout_s
        while len(list(Path(barrier).glob("ready-*"))) < processes:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                for p in procs:
                    p.kill()
                raise RuntimeError(f"worker processes did not start: {[p.poll() for p in procs]}")
            time.sleep(0.02)
        Path(barrier, "go").touch()
        outputs = []
        for proc in procs:
            out, err = proc.communicate(timeout=timeout_s)
            if proc.returncode != 0:
                raise RuntimeError(f"worker process failed ({proc.returncode}): {err[-2000:]}")
            outputs.append(json.loads(out.strip().splitlines()[-1]))
        counts = receiver.counts()
        by_pid = Counter(r["pid"] for r in receiver.received)
    shutil.rmtree(barrier, ignore_errors=True)
    engine = cl.make_engine(db_url)
    try:
        left = sum(n for (sink, st), n in ob.counts(engine).items() if sink == SINK and st != ob.DELIVERED)
    finally:
        engine.dispose()
    expected = {f"item-{i:04d}" for i in range(n_items)}
    return {
        "items": n_items,
        "processes": processes,
        "received": sum(counts.values()),
        "duplicates": sum(c - 1 for c in counts.values() if c > 1),
        "lost": len(expected - set(counts)),
        "unexpected": len(set(counts) - expected),
        "per_process": sorted(by_pid.values()),
        "workers": outputs,
        "left": left,
    }


if __name__ == "__main__":
    print(json.dumps(worker_main(sys.argv[1], sys.argv[2], sys.argv[3], naive="naive" in sys.argv[4:])))
