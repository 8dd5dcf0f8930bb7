"""Faults under load: SIGKILL each dependency of a running app, restart it, count what was lost.

The app (``ragloop serve``, a process of its own) runs on 127.0.0.1 with every dependency as a
real server on a free port: PostgreSQL (chat log + outbox), a Chroma server, the rotel OTLP
collector forwarding to Phoenix, a LangSmith endpoint (bench/_langsmith_receiver.py: a process
that persists what it receives), Label Studio (the labeling backend, fed by the event-driven
labeling loop from thumbs-down feedback) and an OpenAI-compatible LLM: the zero-latency
:class:`monitoring._instant_llm.InstantLLM` for every fault but the LLM's own, where the real
local model (``ragloop llm serve``) is killed while it streams.

A few concurrent conversations keep asking (server-sent events); every answered turn gets
feedback (every third a thumbs-down, which makes a labeling pair). A refused turn or feedback
(429/503 + Retry-After) is retried as told, like a client would. Per dependency: warm-up, SIGKILL
of the dependency's whole process tree, ``--down`` seconds of outage under load, restart, then
wait for recovery (``/readyz`` green and the outbox and chat-log spool drained).

One row per dependency: what was killed, for how long, which LLM served, turns accepted / lost /
duplicated (client-accepted turns against chat-log rows), feedback acknowledged / lost, outbox
deliveries at the receivers (LangSmith feedback ids, Label Studio tasks by pair id) lost and
duplicated, time to recover, whether ``/readyz`` named the dependency while it was down, max app
RSS, and the error codes users saw. Writes ``faults`` into bench/results/reliability.json
(counts: written whatever the load; ``--quick`` goes to bench/results/tmp/).

Example: ``nice -n 19 .venv/bin/python bench/bench_faults.py --only postgres,collector --quick``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench._common import Run, table  # noqa: E402
from bench._langsmith_receiver import read_store  # noqa: E402
from bench.bench_load import DOCS, QUESTIONS  # noqa: E402 - the same corpus and questions as the load bench
from ragloop.process import ManagedProcess, free_port, http_ok, port_open  # noqa: E402

ORDER = ("collector", "phoenix", "langsmith", "labeling", "postgres", "chroma", "llm")
#: The /readyz probe that must name each dependency while it is down.
PROBE = {
    "collector": "collector",
    "phoenix": "traces",
    "langsmith": "langsmith",
    "labeling": "labeling",
    "postgres": "chatlog",
    "chroma": "chroma",
    "llm": "llm",
}
LS_TOKEN = "ls-faults-token-0123456789"


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(ORDER), help="Dependencies to kill, comma-separated.")
    p.add_argument("--conversations", type=int, default=3, help="Concurrent conversations.")
    p.add_argument("--down", type=float, default=15.0, help="Seconds each dependency stays down.")
    p.add_argument("--warm", type=float, default=5.0, help="Seconds of load before each kill.")
    p.add_argument("--recover-timeout", type=float, default=240.0, help="Longest wait for recovery, s.")
    p.add_argument("--quick", action="store_true", help="5 s outages; results to bench/results/tmp/.")
    return p.parse_args()


# --- dependencies ------------------------------------------------------------------------------
@dataclass
class Dep:
    """A dependency the bench can kill and start again (same port, same data)."""

    name: str
    killed: str  # what is killed, for the row
    start: Callable[[], object]
    pid: Callable[[], int | None]


def _managed(
    name: str,
    argv: list[str],
    log: Path,
    ready: Callable[[], bool],
    env: dict[str, str] | None = None,
    timeout: float = 240.0,
) -> tuple[Callable[[], None], Callable[[], int | None], list[ManagedProcess]]:
    """start/pid callables for a ManagedProcess that is started anew each time."""
    procs: list[ManagedProcess] = []

    def start() -> None:
        proc = ManagedProcess(name, argv, log, env=env).start()
        procs.append(proc)
        proc.wait_ready(ready, timeout=timeout, interval=0.5)

    def pid() -> int | None:
        return procs[-1].proc.pid if procs and procs[-1].proc and procs[-1].alive else None

    return start, pid, procs


class Stack:
    """Every dependency of the app, started once; :meth:`deps` says how to kill and restart each."""

    def __init__(self, root: Path, args: argparse.Namespace) -> None:
        """Start PostgreSQL, Chroma (indexed), Phoenix, rotel, the LangSmith receiver, Label Studio."""
        from tests.fault_servers import RestartablePostgres

        self.root = root
        self.started: list[list[ManagedProcess]] = []
        self.deps: dict[str, Dep] = {}
        self.pg = RestartablePostgres().start()
        self.deps["postgres"] = Dep(
            "postgres", "postgres (postmaster + backends)", self.pg.start, lambda: self.pg.pid
        )
        try:
            self._chroma()
            self._phoenix_and_collector()
            self._langsmith()
            self.label_studio_url: str | None = None
            if "labeling" in args.only.split(","):  # the slowest to start (minutes on a busy machine)
                self._label_studio()
        except BaseException:
            self.stop()
            raise

    def _add(self, name: str, killed: str, argv: list[str], ready: Callable[[], bool],
             env: dict[str, str] | None = None, timeout: float = 240.0) -> None:  # fmt: skip
        start, pid, procs = _managed(name, argv, self.root / f"{name}.log", ready, env, timeout)
        start()
        self.started.append(procs)  # every start of every dependency, stopped at the end
        self.deps[name] = Dep(name, killed, start, pid)

    def _chroma(self) -> None:
        import retrieval
        from ragloop.settings import Settings
        from retrieval._server import chroma_binary

        self.chroma_port = free_port()
        argv = [str(chroma_binary()), "run", "--host", "127.0.0.1", "--port", str(self.chroma_port)]
        argv += ["--path", str(self.root / "chroma")]
        self._add("chroma", "chroma run", argv, lambda: port_open("127.0.0.1", self.chroma_port))
        self.chroma_url = f"http://127.0.0.1:{self.chroma_port}"
        corpus = self.root / "corpus"
        corpus.mkdir(parents=True, exist_ok=True)
        for name, text in DOCS.items():
            (corpus / name).write_text(text)
        settings = Settings(data_dir=self.root / "data", collection="faults", chroma_url=self.chroma_url)
        retrieval.ingest([corpus], settings, progress=False)

    def _phoenix_and_collector(self) -> None:
        from monitoring._stack import phoenix_binary, rotel_command
        from ragloop.settings import Settings

        self.phoenix_port, self.phoenix_grpc = free_port(), free_port()
        env = {
            "PHOENIX_HOST": "127.0.0.1", "PHOENIX_PORT": str(self.phoenix_port),
            "PHOENIX_GRPC_PORT": str(self.phoenix_grpc), "PHOENIX_WORKING_DIR": str(self.root / "phoenix"),
            "PHOENIX_TELEMETRY_ENABLED": "false",
        }  # fmt: skip
        argv = [str(phoenix_binary(Settings())), "serve"]
        url = f"http://127.0.0.1:{self.phoenix_port}"
        self._add("phoenix", "phoenix serve", argv, lambda: http_ok(f"{url}/healthz"), env)
        self.grpc, self.http = free_port(), free_port()
        self.traces_to = f"http://127.0.0.1:{self.phoenix_grpc}"
        argv, env = rotel_command(self.grpc, self.http, self.traces_to, self.root / "rotel.pid")
        self._add("collector", "rotel-agent", argv, lambda: port_open("127.0.0.1", self.grpc), env)

    def _langsmith(self) -> None:
        self.ls_port = free_port()
        self.ls_store = self.root / "langsmith.jsonl"
        argv = [sys.executable, str(ROOT / "bench" / "_langsmith_receiver.py"), "--port", str(self.ls_port)]
        argv += ["--store", str(self.ls_store)]
        url = f"http://127.0.0.1:{self.ls_port}"
        self._add("langsmith", "LangSmith endpoint (bench/_langsmith_receiver.py)", argv,
                  lambda: http_ok(f"{url}/info"))  # fmt: skip

    def _label_studio(self) -> None:
        self.ls_ui_port = free_port()
        exe = ROOT / ".venv-tools" / "label-studio" / "bin" / "label-studio"
        data = self.root / "label-studio"
        argv = [
            str(exe), "start", "--internal-host", "127.0.0.1", "-p", str(self.ls_ui_port), "--no-browser",
            "--data-dir", str(data), "--username", "admin@faults.local", "--password", "faults-pass-123",
            "--user-token", LS_TOKEN, "--enable-legacy-api-token",
        ]  # fmt: skip
        env = {"LABEL_STUDIO_BASE_DATA_DIR": str(data), "COLLECT_ANALYTICS": "false"}
        self.label_studio_url = f"http://127.0.0.1:{self.ls_ui_port}"
        url = self.label_studio_url
        self._add("labeling", "label-studio", argv, lambda: http_ok(f"{url}/health"), env, timeout=900)

    def app_env(self, llm_url: str) -> dict[str, str]:
        """The app's environment: every dependency above, short outbox and readiness periods."""
        labeling = {"LABEL_STUDIO_URL": self.label_studio_url or "", "LABEL_STUDIO_API_KEY": LS_TOKEN}
        return {
            **(labeling if self.label_studio_url else {}),
            "RAGLOOP_DATA_DIR": str(self.root / "data"),
            "RAGLOOP_COLLECTION": "faults",
            "RAGLOOP_CHROMA_URL": self.chroma_url,
            "RAGLOOP_DATABASE_URL": self.pg.url,
            "OPENAI_BASE_URL": llm_url,
            "RAGLOOP_TELEMETRY": "true",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self.grpc}",
            "RAGLOOP_TRACES_FORWARD": self.traces_to,
            "LANGSMITH_API_KEY": "lsv2_pt_faults",
            "LANGSMITH_ENDPOINT": f"http://127.0.0.1:{self.ls_port}",
            "LANGSMITH_PROJECT": "faults",
            "RAGLOOP_LOOP_EVENT_DRIVEN": "true",
            "RAGLOOP_EVAL_ONLINE": "false",
            "RAGLOOP_OUTBOX_POLL_S": "0.5",
            "RAGLOOP_OUTBOX_BACKOFF_MAX_S": "2",
            "RAGLOOP_OUTBOX_MAX_ATTEMPTS": "1000",
            "RAGLOOP_READY_CACHE": "0.5",
            "RAGLOOP_READY_TIMEOUT": "2",
            "RAGLOOP_MAX_TOKENS": "48",
            "RAGLOOP_LLM_TIMEOUT": "120",
        }

    def stop(self) -> None:
        """Stop everything started."""
        for procs in self.started:
            for proc in procs:
                proc.stop()
        self.pg.stop()


class App:
    """``ragloop serve`` in its own process."""

    def __init__(self, root: Path, env: dict[str, str], tag: str) -> None:
        """Describe it; enter to start."""
        self.port = free_port()
        argv = [sys.executable, "-m", "ragloop.cli", "serve", "--port", str(self.port)]
        self.proc = ManagedProcess(f"app-{tag}", argv, root / f"app-{tag}.log", env=env)
        self.base = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> App:
        self.proc.start()
        self.proc.wait_ready(lambda: http_ok(f"{self.base}/healthz"), timeout=300)
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.stop()

    def rss_mb(self) -> float:
        """Resident memory of the app process, MiB."""
        import psutil

        return float(psutil.Process(self.proc.proc.pid).memory_info().rss / 2**20)  # type: ignore[union-attr]


# --- load --------------------------------------------------------------------------------------
@dataclass
class Seen:
    """What the clients saw during one phase."""

    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)  # turn id -> result
    feedback: set[tuple[str, str]] = field(default_factory=set)  # (turn id, rater) acknowledged
    codes: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    streaming: int = 0  # turns with tokens flowing right now


async def _turn(
    client: Any, seen: Seen, question: str, cid: str | None
) -> tuple[dict[str, Any] | None, float]:
    """One streamed turn: (result or None, seconds to wait before the next try)."""
    body = {"message": question, "conversation_id": cid, "stream": True}
    async with client.stream("POST", "/api/chat", json=body) as response:
        if response.status_code != 200:
            error = json.loads(await response.aread()).get("error", {})
            seen.codes[f"{response.status_code} {error.get('code')}"] += 1
            seen.refused += 1
            return None, min(float(response.headers.get("retry-after", "1")), 5.0)
        kind, turn_id, result, tokens = None, None, None, False
        try:
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                    continue
                if not line.startswith("data: "):
                    continue
                data = json.loads(line[6:])
                if kind == "started":
                    turn_id = data["turn_id"]
                    seen.accepted[turn_id] = {"status": "in_flight"}
                elif kind == "token" and not tokens:
                    tokens = True
                    seen.streaming += 1
                elif kind == "error":
                    seen.codes[f"sse {data['error'].get('code')}"] += 1
                elif kind == "done":
                    result = data["result"]
                    seen.accepted[result["turn_id"]] = result
        finally:
            if tokens:
                seen.streaming -= 1
    return result, 0.0


async def _feedback(client: Any, seen: Seen, turn_id: str, value: int, deadline: float) -> None:
    rater = "faults"
    while time.monotonic() < deadline:
        try:
            r = await client.post("/api/feedback", json={"turn_id": turn_id, "value": value, "rater": rater})
        except Exception as exc:  # noqa: BLE001 - a transport failure is what users see; retried
            seen.codes[f"feedback transport {type(exc).__name__}"] += 1
            await asyncio.sleep(1.0)
            continue
        if r.status_code == 201:
            seen.feedback.add((turn_id, rater))
            return
        seen.codes[f"feedback {r.status_code} {r.json().get('error', {}).get('code')}"] += 1
        await asyncio.sleep(min(float(r.headers.get("retry-after", "1")), 5.0))


async def _conversation(base: str, i: int, seen: Seen, stop: asyncio.Event) -> None:
    import httpx

    cid: str | None = None
    k = i
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(300.0)) as client:
        while not stop.is_set():
            try:
                result, wait = await _turn(client, seen, QUESTIONS[k % len(QUESTIONS)], cid)
            except Exception as exc:  # noqa: BLE001 - counted, then the client tries again
                seen.codes[f"transport {type(exc).__name__}"] += 1
                result, wait = None, 1.0
            if result is None:
                await asyncio.sleep(wait)
                continue
            k += 1
            cid = result.get("conversation_id", cid)
            if result.get("status") in ("ok", "no_context"):
                value = -1 if k % 3 == 0 else 1
                await _feedback(client, seen, result["turn_id"], value, time.monotonic() + 120)


# --- one fault ---------------------------------------------------------------------------------
def _outbox_pending(url: str, sinks: tuple[str, ...] = ("langsmith", "labelstudio")) -> int | None:
    """Pending outbox items of the vendor sinks (not the loop's: it pairs, it does not deliver)."""
    from sqlalchemy import bindparam, create_engine, text

    engine = create_engine(url, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as conn:
            query = text("SELECT count(*) FROM outbox WHERE status = 'pending' AND sink IN :sinks")
            query = query.bindparams(bindparam("sinks", expanding=True))
            return int(conn.execute(query, {"sinks": list(sinks)}).scalar_one())
    except Exception:  # noqa: BLE001 - the database itself may be the one down
        return None
    finally:
        engine.dispose()


async def _phase(app: App, stack: Stack, dep: Dep, args: argparse.Namespace, llm: str) -> dict[str, Any]:
    import httpx

    seen, stop, rss, down_seen = Seen(), asyncio.Event(), [], set()
    convs = [asyncio.create_task(_conversation(app.base, i, seen, stop)) for i in range(args.conversations)]
    ready = httpx.AsyncClient(base_url=app.base, timeout=10)

    async def readyz() -> dict[str, Any]:
        try:
            return dict((await ready.get("/readyz")).json())
        except Exception as exc:  # noqa: BLE001
            return {"status": f"unreachable: {type(exc).__name__}", "down": []}

    async def sample() -> None:
        while not stop.is_set():
            rss.append(app.rss_mb())
            await asyncio.sleep(1.0)

    sampler = asyncio.create_task(sample())
    await asyncio.sleep(args.warm)
    if dep.name == "llm":  # mid-stream: wait for a turn whose tokens are flowing
        deadline = time.monotonic() + 120
        while seen.streaming == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    from tests.fault_servers import kill_tree

    pid = dep.pid()
    assert pid is not None, f"{dep.name} is not running"
    kill_tree(pid)
    killed_at = time.monotonic()
    while time.monotonic() - killed_at < args.down:
        down_seen.update((await readyz()).get("down", []))
        await asyncio.sleep(0.5)
    await asyncio.to_thread(dep.start)
    restarted = time.monotonic()
    down_s = restarted - killed_at
    recovered = None
    while time.monotonic() - restarted < args.recover_timeout:
        state = await readyz()
        spool = state.get("chatlog_spool", {}).get("pending", 1)
        if state.get("status") == "ready" and spool == 0 and await asyncio.to_thread(
            _outbox_pending, stack.pg.url
        ) == 0:  # fmt: skip
            recovered = time.monotonic() - restarted
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(3.0)  # a little load after recovery
    stop.set()
    await asyncio.gather(*convs, return_exceptions=True)
    sampler.cancel()
    await ready.aclose()
    # Let the outbox deliver the last feedback before counting at the receivers.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and await asyncio.to_thread(_outbox_pending, stack.pg.url) != 0:
        await asyncio.sleep(0.5)
    return _row(stack, dep, seen, llm, down_s, recovered, down_seen, rss)


def _row(stack: Stack, dep: Dep, seen: Seen, llm: str, down_s: float, recovered: float | None,
         down_seen: set[str], rss: list[float]) -> dict[str, Any]:  # fmt: skip
    from sqlalchemy import create_engine, text

    from monitoring._langsmith import feedback_id_for

    engine = create_engine(stack.pg.url)
    with engine.connect() as conn:
        rows = {r[0]: r for r in conn.execute(text("SELECT turn_id, status, answer FROM turns")).all()}
        fb = {(r[0], r[1]) for r in conn.execute(text("SELECT turn_id, rater FROM feedback")).all()}
        dead = int(conn.execute(text("SELECT count(*) FROM outbox WHERE status = 'dead'")).scalar_one())
        by_sink = conn.execute(text("SELECT sink, status, count(*) FROM outbox GROUP BY sink, status")).all()
        pairs = [r[0] for r in conn.execute(text("SELECT pair_id FROM pairs")).all()]
    engine.dispose()
    lost_turns = [
        t for t, res in seen.accepted.items()
        if t not in rows or rows[t][1] == "in_progress"
        or (res.get("status") == "ok" and rows[t][2] != res.get("answer"))
    ]  # fmt: skip
    feedback_lost = [f for f in seen.feedback if f not in fb]
    ls = read_store(stack.ls_store)
    ls_lost = [
        f for f in seen.feedback if str(feedback_id_for("feedback", f"{f[0]}:{f[1]}")) not in ls["ids"]
    ]
    tasks = _label_studio_tasks(stack) if stack.label_studio_url else {}
    # Without Label Studio (not asked for) the pairs have no receiver: nothing to count as lost.
    labels_lost = [p for p in pairs if p not in tasks] if stack.label_studio_url else []
    labels_dup = sum(1 for n in tasks.values() if n > 1)
    lost = len(lost_turns) + len(feedback_lost) + len(ls_lost) + len(labels_lost)
    return {
        "dependency": dep.name,
        "killed": dep.killed,
        "llm": llm,
        "down_s": round(down_s, 1),
        "turns_accepted": len(seen.accepted),
        "turns_refused": seen.refused,
        "turns_lost": len(lost_turns),
        "feedback_acked": len(seen.feedback),
        "feedback_lost": len(feedback_lost),
        "langsmith_feedback_lost": len(ls_lost),
        "langsmith_stored_twice": ls["stored_twice"],
        "langsmith_repeats_refused": ls["repeats"],
        "label_pairs": len(pairs),
        "label_tasks_lost": len(labels_lost),
        "label_tasks_duplicated": labels_dup,
        "outbox_dead": dead,
        "outbox_by_sink": {f"{sink}/{status}": int(n) for sink, status, n in by_sink},
        "lost": lost,
        "duplicated": ls["stored_twice"] + labels_dup,
        "recover_s": round(recovered, 1) if recovered is not None else None,
        "readyz_named_it": PROBE[dep.name] in down_seen,
        "readyz_down_seen": sorted(down_seen),
        "rss_mb_max": round(max(rss), 1) if rss else None,
        "error_codes": dict(seen.codes),
    }


def _label_studio_tasks(stack: Stack) -> dict[str, int]:
    """Tasks per ``pair_id`` over every Label Studio project (the sink's idempotence, checked)."""
    import httpx

    headers = {"Authorization": f"Token {LS_TOKEN}"}
    counts: Counter[str] = Counter()
    base = stack.label_studio_url
    projects = httpx.get(f"{base}/api/projects", headers=headers, timeout=30).json()
    for project in projects.get("results", projects if isinstance(projects, list) else []):
        page = 1
        while True:
            params = {"project": project["id"], "page": page, "page_size": 500}
            r = httpx.get(f"{base}/api/tasks", params=params, headers=headers, timeout=60)
            if r.status_code != 200:
                break
            body = r.json()
            tasks = body.get("tasks", body if isinstance(body, list) else [])
            counts.update(str(t["data"].get("pair_id")) for t in tasks if t.get("data", {}).get("pair_id"))
            if len(tasks) < 500:
                break
            page += 1
    return dict(counts)


# --- main --------------------------------------------------------------------------------------
def _local_llm(root: Path) -> tuple[str, Dep]:
    port = free_port()
    argv = [sys.executable, "-m", "ragloop.cli", "llm", "serve", "--port", str(port), "--parallel", "2"]
    start, pid, _ = _managed(
        "llm", argv, root / "llm.log", lambda: http_ok(f"http://127.0.0.1:{port}/v1/models")
    )
    start()
    return f"http://127.0.0.1:{port}/v1", Dep("llm", "ragloop llm serve (xllamacpp), mid-stream", start, pid)


def main() -> None:
    """Start the stack, kill each dependency in turn under load, print and merge the rows."""
    args = _parse()
    if args.quick:
        args.down, args.warm = 5.0, 3.0
    only = [d.strip() for d in args.only.split(",") if d.strip()]
    unknown = set(only) - set(ORDER)
    if unknown:
        raise SystemExit(f"unknown dependency: {', '.join(sorted(unknown))} (choose from {', '.join(ORDER)})")
    run = Run("reliability", timing=False, scratch=args.quick)
    root = Path(tempfile.mkdtemp(prefix="ragloop-faults-"))
    from monitoring._instant_llm import InstantLLM

    rows: list[dict[str, Any]] = []
    stack = Stack(root, args)
    try:
        with InstantLLM() as instant:
            with App(root, stack.app_env(instant.base_url), "instant") as app:
                for name in tqdm([d for d in only if d != "llm"], desc="faults", unit="dep"):
                    rows.append(
                        asyncio.run(_phase(app, stack, stack.deps[name], args, "instant (InstantLLM)"))
                    )
                    print(json.dumps(rows[-1]), flush=True)
        if "llm" in only:
            url, dep = _local_llm(root)
            try:
                with App(root, stack.app_env(url), "local-llm") as app:
                    rows.append(asyncio.run(_phase(app, stack, dep, args, "local model (ragloop llm serve)")))
                    print(json.dumps(rows[-1]), flush=True)
            finally:
                from tests.fault_servers import kill_tree

                if dep.pid() is not None:
                    kill_tree(dep.pid())  # type: ignore[arg-type]
    finally:
        stack.stop()
    cols = ("dependency", "llm", "down_s", "turns_accepted", "turns_refused", "lost", "duplicated",
            "feedback_acked", "recover_s", "readyz_named_it", "rss_mb_max")  # fmt: skip
    print(table([{c: r[c] for c in cols} for r in rows]))
    # Each row says how it was made: a run of a few rows (--only) replaces only those rows.
    command = "nice -n 19 .venv/bin/python bench/bench_faults.py " + " ".join(sys.argv[1:])
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    config = {"conversations": args.conversations, "down_s": args.down, "warm_s": args.warm}
    rows = [{**r, "config": {**config, "command": command.strip(), "started": started}} for r in rows]
    print(f"written: {run.merge({'faults': rows}, rows_by={'faults': 'dependency'})}")
    bad = [r["dependency"] for r in rows if r["lost"] or r["duplicated"] or r["recover_s"] is None]
    if bad:
        raise SystemExit(f"lost, duplicated or not recovered: {', '.join(bad)}")


if __name__ == "__main__":
    main()
