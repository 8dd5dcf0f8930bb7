"""Scale-out: several app processes behind nginx, one of them SIGKILLed mid-load; nothing accepted is lost.

The setup of ``tests/test_scaleout.py``, run longer: a real PostgreSQL (the chat log and the
outbox), a Chroma server, one OpenAI-compatible LLM endpoint (the zero-latency
:class:`monitoring._instant_llm.InstantLLM` streaming with a delay per token, or ``--llm-url``),
``--apps`` ``ragloop serve`` processes behind Debian's nginx running ``deploy/nginx/nginx.conf``,
and a LangSmith-speaking receiver behind each process's outbox sink. An asyncio + httpx client
(:func:`tests.scaleout.run_load`) keeps ``--conversations`` conversations going through nginx for
``--duration`` seconds, rating each answer (and some answers again later, from whichever process
nginx picks then); the first app process is SIGKILLed at ``--kill-at``.

Checked against the chat log, the feedback rows and the receiver (:func:`tests.scaleout.check`):
accepted turns missing from the log (``scaleout_lost_turns``, must be 0), questions logged twice,
feedback on the wrong row, outbox items undelivered or delivered twice. Counts, not timings: they
are written whatever the load (``Run(timing=False)``), into bench/results/reliability.json
(``scaleout_lost_turns`` and ``scaleout``) with ``Run.merge``.

Example: ``nice -n 19 .venv/bin/python bench/bench_scaleout.py --duration 60``.
"""

from __future__ import annotations

import argparse
import asyncio
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
from ragloop.process import ManagedProcess, free_port, port_open  # noqa: E402


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--apps", type=int, default=2, help="App processes behind nginx (at least 2).")
    p.add_argument("--conversations", type=int, default=8, help="Concurrent conversations.")
    p.add_argument("--duration", type=float, default=60.0, help="Seconds during which new turns start.")
    p.add_argument(
        "--kill-at", type=float, help="Seconds into the load when app 1 is SIGKILLed (duration/3)."
    )
    p.add_argument(
        "--token-delay", type=float, default=0.1, help="Seconds between streamed tokens (InstantLLM)."
    )
    p.add_argument("--llm-url", help="Use this OpenAI-compatible /v1 URL instead of the zero-latency one.")
    p.add_argument("--quick", action="store_true", help="20 s, scratch results (bench/results/tmp/).")
    args = p.parse_args()
    if args.apps < 2:
        p.error("--apps must be at least 2")
    return args


def _chroma(root: Path) -> tuple[ManagedProcess, str]:
    port = free_port()
    chroma = Path(sys.executable).parent / "chroma"
    argv = [str(chroma), "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(root / "chroma")]
    proc = ManagedProcess("chroma", argv, root / "chroma.log").start()
    proc.wait_ready(lambda: port_open("127.0.0.1", port), timeout=120)
    return proc, f"http://127.0.0.1:{port}"


def _index(root: Path, chroma_url: str) -> Path:
    import retrieval
    from ragloop.settings import Settings
    from tests.chatbot.conftest import DOCS

    corpus = root / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for name, text in DOCS.items():
        (corpus / name).write_text(text)
    data = root / "data"
    retrieval.ingest(
        [corpus], Settings(data_dir=data, collection="scaleout", chroma_url=chroma_url), progress=False
    )
    return data


def _run(args: argparse.Namespace, root: Path, db: str, chroma_url: str, llm_url: str) -> dict[str, Any]:
    from tests.scaleout import (
        AppProcess,
        FeedbackReceiver,
        Nginx,
        app_env,
        check,
        leased_keys,
        run_load,
        wait_for_outbox,
    )

    data = _index(root, chroma_url)
    receiver = FeedbackReceiver().start()
    apps = [
        AppProcess(f"app-{i + 1}", app_env(db, chroma_url, llm_url, data, receiver.url), root)
        for i in range(args.apps)
    ]
    nginx: Nginx | None = None
    try:
        for app in apps:
            app.start()
        for app in apps:
            app.wait_ready(timeout=600)
        nginx = Nginx([a.port for a in apps], root / "nginx").start()
        victim = apps[0]
        leases: set[str] = set()
        killed_at: list[float] = []

        def kill() -> None:
            victim.kill()
            killed_at.append(time.monotonic())
            leases.update(leased_keys(db, victim.pid))

        duration = 20.0 if args.quick else args.duration
        kill_at = args.kill_at if args.kill_at is not None else duration / 3
        with tqdm(total=int(duration), desc="load", unit="s") as bar:

            def progress(elapsed: float) -> None:
                bar.n = min(int(duration), int(elapsed))
                bar.refresh()

            started = time.monotonic()
            seen = asyncio.run(run_load(nginx.base, args.conversations, duration, kill_at, kill, progress))
        outbox = wait_for_outbox(db, timeout_s=60)
        result = check(seen, db, receiver, killed=victim.upstream, killed_leases=leases)
        result.update(
            apps=args.apps,
            conversations=args.conversations,
            duration_s=duration,
            killed_at_s=round(killed_at[0] - started, 1) if killed_at else None,
            killed_process=victim.upstream,
            outbox_final=outbox,
            llm="instant" if args.llm_url is None else args.llm_url,
        )
        return result
    finally:
        if nginx is not None:
            nginx.stop()
        for app in apps:
            app.stop()
        receiver.stop()


def main() -> None:
    """Run the load, print a table, merge ``scaleout_lost_turns`` and ``scaleout``."""
    args = _parse()
    from monitoring._instant_llm import Behaviour, InstantLLM
    from tests.chatlog.conftest import fresh_postgres_url
    from tests.conftest import postgres_server

    run = Run("reliability", timing=False, scratch=args.quick)
    root = Path(tempfile.mkdtemp(prefix="ragloop-scaleout-"))
    chroma, chroma_url = _chroma(root)
    llm = None if args.llm_url else InstantLLM(Behaviour(token_delay_s=args.token_delay)).start()
    try:
        with postgres_server() as pg:
            llm_url = args.llm_url or (llm.base_url if llm is not None else "")
            result = _run(args, root, fresh_postgres_url(pg), chroma_url, llm_url)
    finally:
        if llm is not None:
            llm.stop()
        chroma.stop()
    rows = [
        {"what": k, "value": v}
        for k, v in result.items()
        if k
        not in ("examples", "refused_by_code", "chatlog_rows_by_status", "outbox_by_status", "outbox_final")
    ]
    print(table(rows))
    print(f"examples: {result['examples']}")
    keys = {"scaleout_lost_turns": result["lost_turns"], "scaleout": result}
    print(f"written: {run.merge(keys)}")
    bad = [k for k in ("lost_turns", "duplicated_turns", "feedback_misplaced", "feedback_lost",
                       "outbox_undelivered", "outbox_unexplained_duplicates") if result[k]]  # fmt: skip
    if bad:
        raise SystemExit(f"scale-out check failed: {', '.join(f'{k}={result[k]}' for k in bad)}")


if __name__ == "__main__":
    main()
