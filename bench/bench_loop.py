"""Labeling-backend benchmark: push, re-push, pull and a server killed mid-push, against the real servers.

For each backend (the real argilla-server 2.8 with noida-db standing in for Elasticsearch and Redis,
and the real Label Studio 1.23, both started as ``ragloop run`` starts them):

- ``push_s_10k``: seconds to push N pairs (default 10,000) read from a chat log into a fresh
  dataset/project, in bulks of 500 as ``ragloop labeling push`` does; median of 3 repeats after
  one warm-up push;
- ``repush_duplicates``: records/tasks beyond N after pushing the same N pairs again from a fresh
  client (no state but the server's): must be 0;
- ``pull_s``: seconds to pull the submitted answers (``--labeled`` records answered by an annotator)
  out of the N-record dataset; median of 3 after a warm-up;
- ``lost_with_backend_killed_midway``: pairs missing at the server, plus outbox items dead, after
  SIGKILLing the server while the outbox worker delivers ``--kill-n`` pairs and restarting it
  (must be 0); ``duplicates_with_backend_killed_midway`` counts extra copies (must be 0);
- ``client_peak_rss_mb``: this (client) process's peak RSS; ``server_peak_rss_mb``: the server's
  (``peak_rss_mb`` is bench_loop_core.py's: selection and export over the 100k-turn log).

Timings follow bench/_common.py (load recorded, figures refused when the machine is busy); the
counts do not depend on load and are always written. Results merge into bench/results/loop.json.

Usage: ``.venv/bin/python bench/bench_loop.py [--n 10000] [--backends argilla labelstudio] [--quick]``
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench._common import Run, table  # noqa: E402
from chatlog import ChatLog  # noqa: E402
from chatlog.outbox import OutboxWorker, counts  # noqa: E402
from labeling._backend import BackendSink  # noqa: E402
from labeling._store import PairStore  # noqa: E402
from labeling._ui import LocalArgilla, LocalLabelStudio  # noqa: E402
from labeling.argilla import ArgillaBackend  # noqa: E402
from labeling.labelstudio import LabelStudioBackend  # noqa: E402
from ragloop.process import free_port  # noqa: E402

BULK = 500


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10_000, help="pairs pushed (default 10,000)")
    p.add_argument(
        "--backends", nargs="+", default=["argilla", "labelstudio"], choices=["argilla", "labelstudio"]
    )
    p.add_argument("--labeled", type=int, default=200, help="records answered before timing the pull")
    p.add_argument("--kill-n", type=int, default=2000, help="pairs delivered while the server is killed")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument(
        "--quick", action="store_true", help="smoke run: n=300, labeled=20, kill-n=200, nothing committed"
    )
    args = p.parse_args()
    if args.quick:
        args.n, args.labeled, args.kill_n = 300, 20, 200
    return args


def make_pair(i: int) -> dict[str, Any]:
    return {
        "pair_id": f"bench-{i:06d}",
        "question": f"How do I read a file line by line in Python? (variant {i})",
        "context": [
            "for line in f: iterates over the lines of a file object.",
            {
                "text": "open() returns a file object; use it in a with statement.",
                "source": "library/functions",
            },
        ],
        "response_a": f"Iterate over the file object: `for line in open(path):` (answer {i})",
        "response_b": f"Call f.readlines() and loop over the list. (answer {i})",
        "a_is_original": True,
        "strategy": "strict_grounded",
        "judge": {
            "preferred": ("A", "B", "tie")[i % 3],
            "score": (0.85, 0.2, 0.5)[i % 3],
            "reasoning": "A streams the file; B loads it all into memory.",
            "agent": "judge:bench",
            "order_consistent": True,
        },
    }


def chatlog_with_pairs(
    root: Path, n: int, prefix: str = ""
) -> tuple[ChatLog, PairStore, list[dict[str, Any]]]:
    log = ChatLog(f"sqlite:///{root / f'chatlog-{uuid.uuid4().hex[:6]}.db'}")
    store = PairStore(log)
    for i in range(n):
        pair = make_pair(i)
        pair["pair_id"] = prefix + pair["pair_id"]
        store.save_pair(pair)
    return log, store, list(store.iter_pairs())


def push_all(backend: Any, pairs: list[dict[str, Any]]) -> int:
    ok = 0
    for start in range(0, len(pairs), BULK):
        ok += sum(backend.push(pairs[start : start + BULK]))
    backend.close()
    return ok


# --- per backend ----------------------------------------------------------------------------------
class Target:
    """One backend under test: how to make a fresh client, count, answer, list ids."""

    def __init__(self, name: str, server: Any) -> None:
        self.name = name
        self.server = server

    def backend(self, space: str) -> Any:
        """A fresh client on dataset/project ``space``."""
        if self.name == "argilla":
            return ArgillaBackend(self.server.url, self.server.api_key, workspace="bench", dataset=space)
        return LabelStudioBackend(self.server.url, self.server.api_key, project=space)

    def ids(self, space: str) -> list[str]:
        """The pair id of every record/task in ``space``, duplicates included."""
        backend = self.backend(space)
        if isinstance(backend, ArgillaBackend):
            out: list[str] = []
            offset = 0
            while True:
                resp = backend.http.get(
                    f"/api/v1/datasets/{backend.dataset().id}/records",
                    params={"offset": offset, "limit": 1000},
                )
                resp.raise_for_status()
                items = resp.json()["items"]
                out += [r["external_id"] for r in items]
                if len(items) < 1000:
                    return out
                offset += len(items)
        assert isinstance(backend, LabelStudioBackend)
        backend._tasks = None
        pager = backend.client.tasks.list(project=backend.project_id(), fields="task_only", page_size=1000)
        return [str((t.data or {}).get("pair_id")) for t in pager]

    def answer(self, space: str, k: int) -> None:
        """Submit ``k`` answers as an annotator would (Argilla: the UI's REST flow; LS: the admin)."""
        backend = self.backend(space)
        if isinstance(backend, ArgillaBackend):
            dataset = backend.dataset()
            owner = backend.http
            name = f"annotator-{uuid.uuid4().hex[:6]}"
            user = owner.post(
                "/api/v1/users",
                json={"first_name": name, "username": name, "password": "bench-pass-1", "role": "annotator"},
            ).json()
            owner.post(f"/api/v1/workspaces/{dataset.workspace.id}/users", json={"user_id": user["id"]})
            token = httpx.post(
                f"{self.server.url}/api/v1/token", data={"username": name, "password": "bench-pass-1"}
            )
            http = httpx.Client(
                base_url=self.server.url, headers={"Authorization": f"Bearer {token.json()['access_token']}"}
            )
            found = http.post(
                f"/api/v1/me/datasets/{dataset.id}/records/search", params={"limit": k}, json={}
            ).json()
            for item in found["items"][:k]:
                values = {"preferred": {"value": "A"}, "failure_type": {"value": "hallucination"}}
                http.post(
                    f"/api/v1/records/{item['record']['id']}/responses",
                    json={"values": values, "status": "submitted"},
                )
            return
        assert isinstance(backend, LabelStudioBackend)
        result = [
            {
                "from_name": "preferred",
                "to_name": "preferred",
                "type": "pairwise",
                "value": {"selected": "left"},
            },
            {
                "from_name": "failure_type",
                "to_name": "question",
                "type": "choices",
                "value": {"choices": ["none"]},
            },
        ]
        with httpx.Client(
            base_url=self.server.url, headers={"Authorization": f"Token {self.server.api_key}"}
        ) as http:
            for task_id, _ in list(backend.task_ids().values())[:k]:
                http.post(f"/api/tasks/{task_id}/annotations", json={"result": result})


def server_peak_rss_mb(server: Any) -> float | None:
    proc = server.server.proc if server.server is not None else None
    if proc is None:
        return None
    try:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def kill_midway(target: Target, root: Path, n: int) -> dict[str, int]:
    """Deliver ``n`` pairs through the outbox, SIGKILL the server midway, restart it, count what arrived."""
    space = f"kill-{uuid.uuid4().hex[:8]}"
    log, store, pairs = chatlog_with_pairs(root, 0)
    sink = BackendSink(target.backend(space), store)
    log.set_routes({"pair": [sink.name]})
    for i in range(n):
        store.save_pair(make_pair(i))
    worker = OutboxWorker(
        log.engine,
        [sink],
        batch_size=25,
        poll_s=0.2,
        backoff_initial_s=0.2,
        backoff_max_s=2.0,
        max_attempts=10_000,
    ).start()

    def status() -> dict[str, int]:
        return {s: c for (name, s), c in counts(log.engine).items() if name == sink.name}

    deadline = time.monotonic() + 900
    while status().get("delivered", 0) < max(50, n // 5) and time.monotonic() < deadline:
        time.sleep(0.05)
    target.server.kill_server()
    at_kill = status()
    time.sleep(3)
    target.server.start_server()
    while status().get("delivered", 0) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    worker.stop()
    final = status()
    ids = Counter(target.ids(space))
    expected = {make_pair(i)["pair_id"] for i in range(n)}
    return {
        "n": n,
        "delivered_before_kill": at_kill.get("delivered", 0),
        "lost": len(expected - set(ids)) + final.get("dead", 0),
        "duplicates": sum(c - 1 for c in ids.values() if c > 1),
        "pending_after": final.get("pending", 0),
    }


def bench_backend(
    target: Target, args: argparse.Namespace, run: Run, counts_run: Run, root: Path
) -> dict[str, Any]:
    _, _, pairs = chatlog_with_pairs(root, args.n)
    spaces: list[str] = []

    def push_fresh() -> None:
        space = f"push-{uuid.uuid4().hex[:8]}"
        spaces.append(space)
        assert push_all(target.backend(space), pairs) == len(pairs)

    push = run.time(push_fresh, repeat=args.repeat, warmup=1)
    space = spaces[-1]
    t0 = time.perf_counter()
    push_all(target.backend(space), pairs)  # a fresh client: only the server knows the records
    repush_s = time.perf_counter() - t0
    ids = Counter(target.ids(space))
    duplicates = sum(ids.values()) - len(pairs)
    target.answer(space, args.labeled)
    pulled: list[int] = []

    def pull() -> None:
        backend = target.backend(space)
        pulled.append(len(backend.pull()))
        backend.close()

    pull_t = run.time(pull, repeat=args.repeat, warmup=1)
    killed = kill_midway(target, root, args.kill_n)
    return {
        "push": push,
        "repush_s": round(repush_s, 3),
        "repush_duplicates": duplicates,
        "records_after_repush": sum(ids.values()),
        "pull": pull_t,
        "pulled_labels": pulled[-1],
        "killed": killed,
        "server_peak_rss_mb": server_peak_rss_mb(target.server),
    }


def main() -> None:
    args = _parse()
    # A SIGTERM (a stopped run) still stops the servers this run started: the finally blocks run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run = Run("loop", timing=True)
    counts_run = Run("loop", timing=False)
    if args.quick:
        run.busy = counts_run.busy = True  # a smoke run never lands as a figure
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        root = Path(tmp)
        for name in args.backends:
            if name == "argilla":
                server: Any = LocalArgilla(
                    ROOT / ".venv-tools" / "argilla", root / "argilla", port=free_port()
                )
            else:
                server = LocalLabelStudio(
                    ROOT / ".venv-tools" / "label-studio", root / "label-studio", port=free_port()
                )
            server.start()
            try:
                out[name] = bench_backend(Target(name, server), args, run, counts_run, root)
            finally:
                server.stop()
            print(f"{name}: {out[name]}", flush=True)
            write(out, args, run, counts_run)  # after each backend: a partial run still records


def write(out: dict[str, Any], args: argparse.Namespace, run: Run, counts_run: Run) -> None:
    """Print the table and merge every backend measured so far into bench/results/loop.json."""
    rows = [
        {
            "backend": name,
            "n": args.n,
            "push_s": r["push"]["median_s"],
            "repush_dup": r["repush_duplicates"],
            "pull_s": r["pull"]["median_s"],
            "labels": r["pulled_labels"],
            "lost": r["killed"]["lost"],
            "dup_kill": r["killed"]["duplicates"],
        }
        for name, r in out.items()
    ]
    print(table(rows))
    peak = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    timings = {
        # Only 10,000-pair runs fill push_s_10k; a smaller run goes under push_s with its n.
        "push_s_10k": {name: round(r["push"]["median_s"], 3) for name, r in out.items() if args.n == 10_000},
        "push_s": {
            name: {"n": args.n, "median_s": round(r["push"]["median_s"], 3)} for name, r in out.items()
        },
        "push_n": {name: args.n for name in out},
        "push_timings": {name: r["push"] for name, r in out.items()},
        "pull_s": {name: round(r["pull"]["median_s"], 3) for name, r in out.items()},
        "pull_labels": {name: r["pulled_labels"] for name, r in out.items()},
        "pull_timings": {name: r["pull"] for name, r in out.items()},
        "repush_s": {name: r["repush_s"] for name, r in out.items()},
        "client_peak_rss_mb": peak,
        "server_peak_rss_mb": {name: r["server_peak_rss_mb"] for name, r in out.items()},
    }
    tallies = {
        "repush_duplicates": sum(r["repush_duplicates"] for r in out.values()),
        "repush_duplicates_by_backend": {name: r["repush_duplicates"] for name, r in out.items()},
        "repush_n": {name: args.n for name in out},
        "lost_with_backend_killed_midway": sum(r["killed"]["lost"] for r in out.values()),
        "duplicates_with_backend_killed_midway": sum(r["killed"]["duplicates"] for r in out.values()),
        "killed_midway": {name: r["killed"] for name, r in out.items()},
    }
    print("timings ->", run.merge(_per_backend(run, timings), name="loop"))
    print("counts  ->", counts_run.merge(_per_backend(counts_run, tallies), name="loop"))


def _per_backend(run: Run, keys: dict[str, Any]) -> dict[str, Any]:
    """Keep other backends' entries of per-backend dicts (each backend may be measured in its own run)."""
    path = run.path("loop")
    current = json.loads(path.read_text()) if path.exists() else {}
    merged = dict(keys)
    for key, value in keys.items():
        if isinstance(value, dict) and isinstance(current.get(key), dict):
            merged[key] = {**current[key], **value}
    if "killed_midway" in merged:
        merged["lost_with_backend_killed_midway"] = sum(k["lost"] for k in merged["killed_midway"].values())
        merged["duplicates_with_backend_killed_midway"] = sum(
            k["duplicates"] for k in merged["killed_midway"].values()
        )
    if "repush_duplicates_by_backend" in merged:
        merged["repush_duplicates"] = sum(merged["repush_duplicates_by_backend"].values())
    return merged


if __name__ == "__main__":
    main()
