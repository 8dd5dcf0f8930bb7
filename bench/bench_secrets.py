"""Secrets never logged: configure every secret, run real turns, scan logs, spans and exports for them.

End to end: a small corpus is ingested, ``ragloop serve`` runs as a subprocess with every secret
setting given a unique marker value (LLM key, LangSmith, Arize, Argilla and Label Studio keys, the
candidate/judge keys, the OTLP headers, sign-in passwords, API tokens and the session secret),
in front of a real OpenAI-compatible server (InstantLLM). Spans, metrics and logs go over OTLP
(http/protobuf) to a local receiver that keeps every body, as does the LangSmith endpoint; the
labeling backends point at addresses where nothing listens (their failures are logged). Turns go
through the API with a bearer token and a browser sign-in with the password; a thumbs-down, then
``ragloop labeling export`` (DPO) and ``ragloop labeling export --format kto``.

Scanned for every marker: the app's stdout and stderr, every text file under the data dir except
the chat-log database and the index, every body the receiver got, and the export folders.
Request headers are not scanned (an API key in an ``Authorization`` header is how it is meant to
travel). The count is ``secrets_found_in_logs_spans_exports`` in
``bench/results/reliability.json`` (must be 0); a count does not depend on load.

    nice -n 19 .venv/bin/python bench/bench_secrets.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import Run, table  # noqa: E402


def secret_env(tag: str = "Qx7") -> dict[str, str]:
    """Every secret setting with a marker value; ``tag`` keeps markers apart between runs."""
    m = {
        "OPENAI_API_KEY": f"llmkey{tag}Marker01",
        "LANGSMITH_API_KEY": f"lskey{tag}Marker02",
        "ARIZE_API_KEY": f"arizekey{tag}Marker03",
        "ARGILLA_API_KEY": f"argillakey{tag}Marker04",
        "LABEL_STUDIO_API_KEY": f"lstoken{tag}Marker05",
        "RAGLOOP_LOOP_CANDIDATE_API_KEY": f"candkey{tag}Marker06",
        "RAGLOOP_LOOP_JUDGE_API_KEY": f"judgekey{tag}Marker07",
        "RAGLOOP_AUTH_SECRET": f"sessionsecret{tag}Marker08",
    }
    env = dict(m)
    env["RAGLOOP_AUTH_USERS"] = f"alice:pw{tag}Marker09"
    env["RAGLOOP_AUTH_TOKENS"] = f"alice:tok{tag}Marker10"
    env["OTEL_EXPORTER_OTLP_HEADERS"] = f"signoz-ingestion-key=otlp{tag}Marker11"
    return env


def markers(env: dict[str, str]) -> dict[str, str]:
    """The secret part of each variable (after ``name:`` or ``k=``) -> the variable."""
    out = {}
    for name, value in env.items():
        out[value.split(":", 1)[-1].split("=", 1)[-1]] = name
    return out


class Receiver:
    """An HTTP endpoint that answers 200 ``{}`` and keeps every request body (OTLP, LangSmith)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _ok(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                receiver.bodies.append(self.rfile.read(n) if n else b"")
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            do_POST = do_PATCH = do_GET = do_PUT = _ok  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()


def scan(texts: dict[str, bytes], secret_markers: dict[str, str]) -> list[tuple[str, str]]:
    """(where, variable) for every marker found in ``texts`` (name -> bytes)."""
    found = []
    for where, blob in texts.items():
        for marker, var in secret_markers.items():
            if marker.encode() in blob:
                found.append((where, var))
    return found


def collect_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but the chat-log database and the index (binary stores of content)."""
    out = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if (
            not path.is_file()
            or rel.parts[0] in ("chroma", "index")
            or path.suffix in (".db", ".sqlite3", ".bin")
        ):
            continue
        if path.name.startswith("chatlog") or path.stat().st_size > 50_000_000:
            continue
        out[f"file:{rel}"] = path.read_bytes()
    return out


DOCS = {
    "files.md": "# Files\n\n## How do I copy a file?\n\nUse `shutil.copy(src, dst)` to copy a file.\n",
    "lists.md": "# Lists\n\n## How do I sort a list?\n\nUse `sorted(xs)` or `xs.sort()`.\n",
}


def run_scan(work: Path, turns: int = 3, tag: str = "Qx7") -> dict[str, Any]:
    """The whole scenario in ``work``; the findings and what was scanned."""
    import httpx

    from monitoring._instant_llm import InstantLLM
    from ragloop.process import free_port

    secrets = secret_env(tag)
    data, corpus = work / "data", work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for name, text in DOCS.items():
        (corpus / name).write_text(text)
    receiver = Receiver()
    port = free_port()
    with InstantLLM() as llm:
        env = {
            **os.environ,
            **secrets,
            "RAGLOOP_DATA_DIR": str(data),
            "OPENAI_BASE_URL": llm.base_url,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "LANGSMITH_ENDPOINT": receiver.url,
            "LANGSMITH_TRACING": "true",
            "ARIZE_SPACE_ID": "space-1",
            "ARGILLA_API_URL": f"http://127.0.0.1:{free_port()}",
            "LABEL_STUDIO_URL": f"http://127.0.0.1:{free_port()}",
            "RAGLOOP_OUTBOX_BACKOFF_S": "0.5",
        }
        exe = str(ROOT / ".venv" / "bin" / "ragloop")
        ingest = subprocess.run([exe, "ingest", str(corpus)], env=env, capture_output=True, timeout=900)
        out_path, err_path = work / "app.stdout", work / "app.stderr"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            app = subprocess.Popen([exe, "serve", "--port", str(port)], env=env, stdout=out, stderr=err)
            try:
                base = f"http://127.0.0.1:{port}"
                deadline = time.monotonic() + 600
                while time.monotonic() < deadline:
                    try:
                        if httpx.get(f"{base}/healthz", timeout=5).status_code < 500:
                            break
                    except httpx.HTTPError:
                        time.sleep(1)
                token = secrets["RAGLOOP_AUTH_TOKENS"].split(":", 1)[1]
                auth = {"Authorization": f"Bearer {token}"}
                statuses = []
                for i in range(turns):
                    r = httpx.post(
                        f"{base}/api/chat",
                        json={"message": f"How do I copy a file? ({i})"},
                        headers=auth,
                        timeout=300,
                    )
                    statuses.append(r.status_code)
                    if r.status_code == 200:
                        fb = {"turn_id": r.json()["turn_id"], "value": -1, "comment": "wrong"}
                        httpx.post(f"{base}/api/feedback", json=fb, headers=auth, timeout=60)
                password = secrets["RAGLOOP_AUTH_USERS"].split(":", 1)[1]
                httpx.post(f"{base}/login", data={"username": "alice", "password": password}, timeout=60)
                httpx.post(f"{base}/login", data={"username": "alice", "password": "wrong"}, timeout=60)
                time.sleep(8)  # batch span and log exports, outbox tries against the dead backends
            finally:
                app.terminate()
                try:
                    app.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    app.kill()
        exports = []
        for fmt in ("dpo", "kto"):
            target = work / "exports" / fmt
            done = subprocess.run(
                [exe, "labeling", "export", "--format", fmt, "--out", str(target)],
                env=env,
                capture_output=True,
                timeout=600,
            )
            exports.append((fmt, done))
    receiver.close()
    texts = {"ingest stdout+stderr": ingest.stdout + ingest.stderr}
    texts["app stdout"], texts["app stderr"] = out_path.read_bytes(), err_path.read_bytes()
    for fmt, done in exports:
        texts[f"export {fmt} stdout+stderr"] = done.stdout + done.stderr
    texts.update(collect_files(data))
    texts.update(collect_files(work / "exports"))
    texts.update({f"receiver body {i}": b for i, b in enumerate(receiver.bodies)})
    found = scan(texts, markers(secrets))
    return {
        "found": found,
        "secrets": len(secrets),
        "statuses": statuses,
        "scanned": {"sources": len(texts), "bytes": sum(len(b) for b in texts.values())},
        "receiver_bodies": len(receiver.bodies),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the scenario and merge the count into bench/results/reliability.json."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--turns", type=int, default=3, help="chat turns to run (each with a thumbs-down)")
    ap.add_argument("--scratch", action="store_true", help="write under bench/results/tmp/")
    args = ap.parse_args(argv)
    run = Run("secrets", timing=False, scratch=args.scratch)
    with tempfile.TemporaryDirectory(prefix="ragloop-secrets-") as tmp:
        result = run_scan(Path(tmp), turns=args.turns)
    rows = [{"found in": where, "secret": var} for where, var in result["found"]]
    print(table(rows or [{"found in": "(none)", "secret": "-"}]))
    print(
        f"{result['secrets']} secrets, {result['scanned']['sources']} sources "
        f"({result['scanned']['bytes']} bytes, {result['receiver_bodies']} OTLP/LangSmith bodies); "
        f"turn statuses {result['statuses']}"
    )
    run.merge(
        {
            "secrets_found_in_logs_spans_exports": len(result["found"]),
            "secrets_scan": {
                "secrets": result["secrets"],
                "found": [f"{w}: {v}" for w, v in result["found"]],
                "turn_statuses": result["statuses"],
                "sources_scanned": result["scanned"]["sources"],
                "bytes_scanned": result["scanned"]["bytes"],
                "receiver_bodies": result["receiver_bodies"],
            },
        },
        name="reliability",
    )
    return 0 if not result["found"] and 200 in result["statuses"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
