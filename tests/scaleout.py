"""Several ``ragloop serve`` processes behind nginx, a load that kills one, and the checks.

Shared by ``tests/test_scaleout.py`` (short) and ``bench/bench_scaleout.py`` (longer):

- :func:`render_nginx_conf` turns the shipped ``deploy/nginx/nginx.conf`` into one for local ports
  (only the ``server`` lines of the upstreams, the ``listen`` port and the temp paths change), and
  :class:`Nginx` runs it with Debian's nginx;
- :class:`FeedbackReceiver` is a real HTTP server speaking the part of LangSmith's API that the
  LangSmith sink uses for feedback (``POST /feedback``, ``PATCH /feedback/{id}``); like LangSmith
  it refuses a second create with an id it holds (409), and it counts every create per id;
- :class:`AppProcess` is ``ragloop serve`` in its own process group (so it can be SIGKILLed);
- :func:`run_load` keeps conversations going through nginx (streamed turns, each question unique,
  thumbs for each answered turn) and calls ``kill`` once, mid-load;
- :func:`check` compares what the client saw with the chat log, the feedback rows and the
  receiver: lost and duplicated turns, misplaced feedback, outbox deliveries.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ragloop.process import ManagedProcess, ThreadedServer, free_port, http_ok, port_open
from tests.langsmith_info import INFO

ROOT = Path(__file__).resolve().parents[1]
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
#: The header nginx adds naming the process that answered (``host:port``).
UPSTREAM_HEADER = "x-ragloop-upstream"

QUESTIONS = (
    "How do I copy a file?",
    "How do I delete a file?",
    "How do I sort a list?",
    "How do I remove duplicates from a list?",
    "How do I convert a string to a number?",
)


def served_by(headers: Any) -> str | None:
    """The process that answered: the last address of :data:`UPSTREAM_HEADER`.

    nginx lists every upstream it tried (``"127.0.0.1:A, 127.0.0.1:B"`` when A refused the
    connection and B answered).
    """
    value = headers.get(UPSTREAM_HEADER)
    return value.split(",")[-1].strip() if value else None


def nginx_binary() -> str:
    """Debian's nginx (``/usr/sbin`` is not on every PATH).

    Raises:
        RuntimeError: nginx is not installed (``make system-deps`` installs it).
    """
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError("nginx is missing: run `make system-deps` (Debian package nginx-light)")


def render_nginx_conf(text: str, app_ports: list[int], port: int, workdir: Path) -> str:
    """The shipped nginx configuration with local upstreams, a local port and private temp paths.

    Args:
        text: ``deploy/nginx/nginx.conf``.
        app_ports: the app processes' ports on 127.0.0.1 (one ``server`` line each, per upstream).
        port: where nginx listens on 127.0.0.1.
        workdir: a writable folder for nginx's temp files.

    Returns:
        The configuration text.

    Raises:
        AssertionError: the shipped file no longer has the lines this replaces.
    """
    servers = re.findall(r"^(\s*)server app[\w-]*:7860( [^;]*)?;\n", text, flags=re.M)
    assert servers, "deploy/nginx/nginx.conf has no `server app:7860` lines"

    def upstream(match: re.Match[str]) -> str:
        body = re.sub(r"^\s*server app[\w-]*:7860[^;]*;\n", "", match.group(2), flags=re.M)
        indent, options = servers[0][0], servers[0][1] or ""
        lines = "".join(f"{indent}server 127.0.0.1:{p}{options};\n" for p in app_ports)
        return match.group(1) + lines + body

    out = re.sub(r"(upstream \w+ \{\n)(.*?\})", upstream, text, flags=re.S)
    out, n = re.subn(r"listen 7860;", f"listen 127.0.0.1:{port};", out)
    assert n == 1, "deploy/nginx/nginx.conf has no `listen 7860;`"
    temps = "".join(
        f"    {name}_temp_path {workdir / name};\n"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return out.replace("http {\n", "http {\n" + temps, 1)


class Nginx:
    """Debian's nginx running :func:`render_nginx_conf` in the foreground on a free port."""

    def __init__(self, app_ports: list[int], workdir: Path, conf: Path = NGINX_CONF) -> None:
        """Write the configuration into ``workdir``; :meth:`start` serves it."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(workdir, 0o777)  # the workers run as nobody when the master is root
        self.conf = workdir / "nginx.conf"
        self.conf.write_text(render_nginx_conf(conf.read_text(), app_ports, self.port, workdir))
        main = f"daemon off; pid {workdir / 'nginx.pid'}; error_log {workdir / 'error.log'} warn;"
        argv = [nginx_binary(), "-c", str(self.conf), "-g", main]
        self.proc = ManagedProcess("nginx", argv, workdir / "nginx.out")

    def start(self) -> Nginx:
        """Start nginx and wait for its port."""
        self.proc.start()
        self.proc.wait_ready(lambda: port_open("127.0.0.1", self.port), timeout=30)
        return self

    def stop(self) -> None:
        """Stop nginx."""
        self.proc.stop()

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class FeedbackReceiver:
    """A real HTTP server speaking LangSmith's feedback API; counts every create per feedback id."""

    creates: Counter[str] = field(default_factory=Counter)  # POST /feedback attempts per id
    store: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> current feedback
    patches: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadedServer | None = None

    def _app(self) -> Any:
        app = FastAPI()

        @app.get("/info")
        async def info() -> dict[str, Any]:
            return INFO

        @app.post("/feedback")
        async def create(request: Request) -> Any:
            body = json.loads(await request.body())
            fid = str(body["id"])
            with self.lock:
                self.creates[fid] += 1
                if fid in self.store:
                    return JSONResponse({"detail": "feedback already exists"}, status_code=409)
                self.store[fid] = dict(body)
            return body

        @app.patch("/feedback/{fid}")
        async def patch(fid: str, request: Request) -> Any:
            body = json.loads(await request.body())
            with self.lock:
                if fid not in self.store:
                    return JSONResponse({"detail": "not found"}, status_code=404)
                self.patches += 1
                self.store[fid].update(body)
                return self.store[fid]

        @app.api_route("/{path:path}", methods=["GET", "POST", "PATCH", "PUT"])
        async def anything(path: str) -> dict[str, Any]:
            return {}

        return app

    def start(self) -> FeedbackReceiver:
        """Serve on a free port."""
        self.server = ThreadedServer(self._app(), "/info", name="feedback-receiver").start()
        return self

    @property
    def url(self) -> str:
        """The base URL (``LANGSMITH_ENDPOINT``)."""
        assert self.server is not None
        return self.server.base

    def stop(self) -> None:
        """Stop serving."""
        if self.server is not None:
            self.server.stop(timeout_s=10)


class AppProcess:
    """``ragloop serve`` on a free port in its own process group (:meth:`kill` is a SIGKILL)."""

    def __init__(self, name: str, env: dict[str, str], logdir: Path) -> None:
        """Describe the process; :meth:`start` launches it."""
        self.name = name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "ragloop.cli", "serve", "--port", str(self.port)]
        self.proc = ManagedProcess(name, argv, logdir / f"{name}.log", env=env, cwd=ROOT)

    @property
    def upstream(self) -> str:
        """How nginx names this process in :data:`UPSTREAM_HEADER`."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The server's pid (also the prefix of its outbox worker's lease owner name)."""
        assert self.proc.proc is not None
        return self.proc.proc.pid

    def start(self) -> AppProcess:
        """Launch (call :meth:`wait_ready` afterwards; several can start at once)."""
        self.proc.start()
        return self

    def wait_ready(self, timeout: float = 240.0) -> None:
        """Wait for ``/healthz``."""
        self.proc.wait_ready(lambda: http_ok(f"{self.base}/healthz"), timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the process group: no drain, no shutdown hooks (a crash)."""
        assert self.proc.proc is not None
        os.killpg(self.proc.proc.pid, signal.SIGKILL)
        self.proc.proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL)."""
        self.proc.stop()


def app_env(
    database_url: str, chroma_url: str, llm_url: str, data_dir: Path, receiver_url: str
) -> dict[str, str]:
    """The environment every app process shares: one database, one Chroma, one LLM, one sink."""
    return {
        "RAGLOOP_DATA_DIR": str(data_dir),
        "RAGLOOP_COLLECTION": "scaleout",
        "RAGLOOP_DATABASE_URL": database_url,
        "RAGLOOP_CHROMA_URL": chroma_url,
        "OPENAI_BASE_URL": llm_url,
        "RAGLOOP_TELEMETRY": "false",
        "RAGLOOP_EVAL_ONLINE": "false",
        "RAGLOOP_GATE": "false",
        "RAGLOOP_LOOP_EVENT_DRIVEN": "false",  # the labeling loop's sink has its own tests
        "RAGLOOP_MAX_TOKENS": "32",
        "RAGLOOP_LLM_TIMEOUT": "60",
        "RAGLOOP_QUEUE_MAX_WAIT": "30",
        "RAGLOOP_LLM_CONCURRENCY": "8",
        # The outbox: feedback goes to the receiver through the LangSmith sink of each process.
        "LANGSMITH_API_KEY": "lsv2_pt_scaleout",
        "LANGSMITH_ENDPOINT": receiver_url,
        "LANGSMITH_PROJECT": "scaleout",
        "RAGLOOP_OUTBOX_POLL_S": "0.5",
        "RAGLOOP_OUTBOX_LEASE_S": "5",
        "RAGLOOP_OUTBOX_BACKOFF_S": "0.2",
        "RAGLOOP_OUTBOX_BACKOFF_MAX_S": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


# --- the load ---------------------------------------------------------------------------------
@dataclass
class Seen:
    """One turn as the client saw it."""

    message: str
    status: int | str | None = None  # HTTP status, or "transport" when the connection failed
    code: str | None = None  # error code of a refusal
    turn_id: str | None = None  # set once the ``started`` event arrived: the turn was accepted
    conversation_id: str | None = None
    upstream: str | None = None
    completed: bool = False  # the ``done`` event arrived
    feedback: list[dict[str, Any]] = field(default_factory=list)  # {value, rater, status, upstream}


async def _turn(client: Any, message: str, cid: str | None) -> Seen:
    seen = Seen(message)
    body = {"message": message, "conversation_id": cid, "stream": True}
    try:
        async with client.stream("POST", "/api/chat", json=body) as response:
            seen.status = response.status_code
            seen.upstream = served_by(response.headers)
            if response.status_code != 200:
                raw = await response.aread()
                try:
                    seen.code = json.loads(raw).get("error", {}).get("code")
                except ValueError:
                    seen.code = f"http_{response.status_code}"
                return seen
            event = None
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "started":
                    data = json.loads(line[6:])
                    seen.turn_id, seen.conversation_id = data["turn_id"], data["conversation_id"]
                elif line.startswith("data: ") and event == "done":
                    seen.completed = True
    except Exception as exc:  # noqa: BLE001 - the stream broke (the process died): recorded as seen
        seen.code = seen.code or type(exc).__name__
        if seen.status is None:
            seen.status = "transport"
    return seen


async def _feedback(client: Any, seen: Seen, value: int, rater: str) -> None:
    record: dict[str, Any] = {"value": value, "rater": rater}
    for _attempt in range(5):  # a connection to the dead process fails over in nginx; 502 is retried here
        try:
            r = await client.post(
                "/api/feedback", json={"turn_id": seen.turn_id, "value": value, "rater": rater}
            )
        except Exception as exc:  # noqa: BLE001
            record["status"] = type(exc).__name__
            await asyncio.sleep(0.2)
            continue
        record.update(status=r.status_code, upstream=served_by(r.headers))
        if r.status_code < 500:
            break
        await asyncio.sleep(0.2)
    seen.feedback.append(record)


async def run_load(
    base: str,
    conversations: int,
    duration_s: float,
    kill_at_s: float | None = None,
    kill: Callable[[], None] | None = None,
    progress: Callable[[float], None] | None = None,
    headers: dict[str, str] | None = None,
) -> list[Seen]:
    """Keep ``conversations`` going through ``base`` for ``duration_s``; call ``kill`` once at ``kill_at_s``.

    Each question is unique (it carries its conversation and turn number), so the chat log can be
    matched to what the client saw. After each answered turn the client sends thumbs (up for an
    even turn number, down for an odd one) as a rater of its own, and, for every third turn, a
    second rating of the same turn by another rater once the next turn has been answered (by
    whichever process nginx picks then). After the load (and the kill) a reviewer rates every
    answered turn once more: a killed process's turns are then rated through the survivor.

    Args:
        base: nginx's URL.
        conversations: concurrent conversations.
        duration_s: seconds during which new turns start.
        kill_at_s: when to call ``kill`` (seconds after the start).
        kill: called once, in a thread.
        progress: called about every second with the seconds elapsed.
        headers: sent with every request (a bearer token).

    Returns:
        Every turn the client tried, in no particular order.
    """
    import httpx

    seen: list[Seen] = []
    stop_at = time.monotonic() + duration_s
    started = time.monotonic()

    async def conversation(i: int) -> None:
        cid: str | None = None
        k = 0
        earlier: Seen | None = None
        limits = httpx.Limits(
            max_keepalive_connections=0
        )  # a new connection per request: nginx balances each
        async with httpx.AsyncClient(
            base_url=base, timeout=httpx.Timeout(60.0), limits=limits, headers=headers
        ) as client:
            while time.monotonic() < stop_at:
                message = f"{QUESTIONS[(i + k) % len(QUESTIONS)]} (conversation {i}, turn {k})"
                s = await _turn(client, message, cid)
                seen.append(s)
                if s.turn_id is not None and s.completed:
                    cid = s.conversation_id
                    await _feedback(client, s, 1 if k % 2 == 0 else -1, f"rater-{i}")
                    if earlier is not None:
                        await _feedback(client, earlier, -1, f"late-rater-{i}")
                    earlier = s if k % 3 == 0 else None
                elif s.turn_id is not None:
                    cid = None  # the stream broke: start a new conversation
                elif s.status in (429, 503):
                    await asyncio.sleep(1.0)
                else:
                    await asyncio.sleep(0.2)
                k += 1

    async def killer() -> None:
        if kill is None or kill_at_s is None:
            return
        await asyncio.sleep(kill_at_s)
        await asyncio.to_thread(kill)

    async def ticker() -> None:
        while progress is not None and time.monotonic() < stop_at:
            await asyncio.sleep(1.0)
            progress(time.monotonic() - started)

    async def review() -> None:
        # A reviewer rates every answered turn once more after the load (and after the kill):
        # each turn of the killed process is then rated through the survivor, whatever timing
        # the load had.
        async with httpx.AsyncClient(
            base_url=base,
            timeout=httpx.Timeout(60.0),
            limits=httpx.Limits(max_keepalive_connections=0),
            headers=headers,
        ) as client:
            for s in [s for s in seen if s.turn_id is not None and s.completed]:
                await _feedback(client, s, 1, "reviewer")

    await asyncio.gather(killer(), ticker(), *(conversation(i) for i in range(conversations)))
    await review()
    return seen


def leased_keys(database_url: str, pid: int) -> set[str]:
    """Outbox keys whose lease the outbox worker of process ``pid`` holds right now."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT key FROM outbox WHERE leased_by LIKE :owner"), {"owner": f"{pid}-%"}
            ).all()
    finally:
        engine.dispose()
    return {str(r[0]) for r in rows}


def wait_for_outbox(database_url: str, timeout_s: float = 30.0) -> dict[str, int]:
    """Wait until no outbox item is pending; returns the counts by status."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            with engine.connect() as conn:
                rows = conn.execute(text("SELECT status, count(*) FROM outbox GROUP BY status")).all()
            counts = {str(s): int(n) for s, n in rows}
            if not counts.get("pending") or time.monotonic() > deadline:
                return counts
            time.sleep(0.3)
    finally:
        engine.dispose()


def check(
    seen: list[Seen],
    database_url: str,
    receiver: FeedbackReceiver,
    killed: str | None = None,
    killed_leases: set[str] | frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Compare the client's view with the chat log, the feedback rows and the receiver.

    Args:
        seen: what :func:`run_load` returned.
        database_url: the shared chat log.
        receiver: the sink's receiver.
        killed: the upstream name (``host:port``) of the process that was killed.
        killed_leases: outbox keys the killed process's worker held when it died (a crash
            mid-send may deliver one of these twice; the LangSmith receiver then answers 409 and
            the sink updates instead, so the stored feedback is still one per key).

    Returns:
        The figures; ``lost_turns``, ``duplicated_turns``, ``feedback_misplaced``,
        ``feedback_lost``, ``outbox_undelivered``, ``outbox_duplicates`` and
        ``outbox_unexplained_duplicates`` must all be 0.
    """
    from sqlalchemy import create_engine, text

    from monitoring._langsmith import feedback_id_for

    engine = create_engine(database_url)
    with engine.connect() as conn:
        turn_rows = conn.execute(text("SELECT turn_id, user_message, status FROM turns")).all()
        fb_rows = conn.execute(text("SELECT turn_id, rater, value FROM feedback")).all()
        outbox_rows = conn.execute(text("SELECT key, status FROM outbox WHERE kind = 'feedback'")).all()
    engine.dispose()

    rows = {str(t): (str(m), str(st)) for t, m, st in turn_rows}
    accepted = [s for s in seen if s.turn_id is not None]
    accepted_ids = {s.turn_id for s in accepted}
    lost = [s for s in accepted if rows.get(str(s.turn_id), ("", ""))[0] != s.message]
    per_message = Counter(m for m, st in rows.values() if st != "rejected")
    duplicated = [m for m, n in per_message.items() if n > 1]  # one question, two accepted turns
    unseen = [t for t, (_m, st) in rows.items() if st != "rejected" and t not in accepted_ids]

    feedback_rows = {(str(t), str(r)): int(v) for t, r, v in fb_rows}
    sent = [(s, f) for s in accepted for f in s.feedback if f.get("status") == 201]
    missing = [f for s, f in sent if (str(s.turn_id), f["rater"]) not in feedback_rows]
    misplaced = [f for s, f in sent if feedback_rows.get((str(s.turn_id), f["rater"])) != f["value"]]
    cross = [f for s, f in sent if f.get("upstream") and s.upstream and f["upstream"] != s.upstream]
    on_killed = [
        f for s, f in sent if killed is not None and s.upstream == killed and f.get("upstream") != killed
    ]

    expected = {
        str(feedback_id_for("feedback", f"{t}:{r}")): (f"{t}:{r}", v) for (t, r), v in feedback_rows.items()
    }
    with receiver.lock:
        creates = dict(receiver.creates)
        stored = {fid: dict(v) for fid, v in receiver.store.items()}
    undelivered = [key for fid, (key, _v) in expected.items() if fid not in stored]
    wrong_score = [
        key
        for fid, (key, value) in expected.items()
        if fid in stored and stored[fid].get("score") != (1.0 if value > 0 else 0.0)
    ]
    duplicates = [expected.get(fid, (fid, 0))[0] for fid, n in creates.items() if n > 1]
    unexplained = [key for key in duplicates if key not in killed_leases]
    served = Counter(s.upstream or "?" for s in accepted)
    return {
        "turns_tried": len(seen),
        "turns_accepted": len(accepted),
        "turns_completed": sum(1 for s in accepted if s.completed),
        "turns_broken_by_the_kill": sum(1 for s in accepted if not s.completed),
        "turns_refused": sum(1 for s in seen if s.turn_id is None),
        "refused_by_code": dict(Counter(str(s.code or s.status) for s in seen if s.turn_id is None)),
        "served_per_process": dict(served),
        "chatlog_rows_by_status": dict(Counter(str(st) for _t, _m, st in turn_rows)),
        "lost_turns": len(lost),
        "duplicated_turns": len(duplicated),
        "accepted_rows_the_client_never_saw": len(unseen),
        "feedback_sent": len(sent),
        "feedback_rows": len(feedback_rows),
        "feedback_misplaced": len(misplaced),
        "feedback_lost": len(missing),
        "feedback_served_by_the_other_process": len(cross),
        "feedback_for_turns_of_the_killed_process": len(on_killed),
        "outbox_items": len(outbox_rows),
        "outbox_stray_deliveries": len(set(stored) - set(expected)),
        "outbox_by_status": dict(Counter(str(st) for _k, st in outbox_rows)),
        "outbox_undelivered": len(undelivered),
        "outbox_wrong_score": len(wrong_score),
        "outbox_creates": sum(creates.values()),
        "outbox_duplicates": len(duplicates),
        "outbox_unexplained_duplicates": len(unexplained),
        "killed_process_leases": len(killed_leases),
        "examples": {
            "lost": [s.message for s in lost[:3]],
            "duplicated": duplicated[:3],
            "misplaced": misplaced[:3],
            "undelivered": undelivered[:3],
        },
    }
