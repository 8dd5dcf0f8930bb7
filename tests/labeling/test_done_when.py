"""The loop's "done when", end to end on real servers: thumbs-down -> Argilla -> label -> DPO row.

One application assembled by the composition root (``ragloop.app.create_asgi_app``, as ``ragloop
serve`` and ``ragloop run`` assemble it) with the shipped sinks, the real local LLM, a real Chroma
index and the real argilla-server 2.8 that ``ragloop run`` starts:

1. a user asks a question and gives the answer a thumbs-down (``POST /api/feedback``, the call the
   chat UI's thumb makes);
2. within a minute the pair is in Argilla: record id = turn id, responses A and B, the judge's
   verdict pre-filled as a suggestion (the loop sink made the alternative answer and judged it, the
   Argilla sink delivered it, both through the outbox);
3. an annotator labels it in Argilla (the REST flow the Argilla UI uses);
4. ``ragloop labeling pull`` then ``ragloop loop export --format dpo`` write a row that
   ``datasets.load_dataset`` reads, with the annotator's choice as ``chosen``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ragloop.process import ThreadedServer
from ragloop.settings import Settings
from tests.labeling.conftest import ArgillaAnnotator

DOCS = {
    "magazines.md": (
        "# Arthur's Magazine\n\nArthur's Magazine (1844-1846) was an American literary periodical "
        "published in Philadelphia in the 19th century. Edited by Timothy Shay Arthur, it featured "
        "work by Edgar A. Poe.\n"
    ),
    "lists.md": "# Lists\n\n`sorted(xs)` returns a new sorted list; `xs.sort()` sorts in place.\n",
}
QUESTION = "Where was Arthur's Magazine published?"


@pytest.mark.llm
def test_a_thumbs_down_becomes_a_labeled_dpo_row(
    llm_server: str,
    argilla_server: Any,
    unique: str,
    tmp_path: Path,
    index_docs: Callable[..., Path],
) -> None:
    from ragloop.app import create_asgi_app

    root = tmp_path / "app"
    overrides: dict[str, Any] = {
        "data_dir": root / "data",
        "openai_base_url": llm_server,
        "max_tokens": 48,
        "top_k": 2,
        "collection": "done-when",
        "telemetry": False,
        "eval_online": False,
        "outbox_poll_s": 0.5,
        "argilla_workspace": unique,
        "argilla_dataset": unique,
        **argilla_server.settings_update(),
    }
    settings = Settings(**overrides)
    index_docs(root, DOCS, settings)
    with ThreadedServer(create_asgi_app(settings), "/healthz", name="done-when-app") as server:
        chat = httpx.post(f"{server.base}/api/chat", json={"message": QUESTION}, timeout=300)
        assert chat.status_code == 200, chat.text
        turn_id = chat.json()["turn_id"]
        clicked = time.monotonic()
        fb = httpx.post(f"{server.base}/api/feedback", json={"turn_id": turn_id, "value": -1}, timeout=30)
        assert fb.status_code == 201, fb.text

        from labeling.argilla import ArgillaBackend

        backend = ArgillaBackend(argilla_server.url, argilla_server.api_key, workspace=unique, dataset=unique)
        record = None
        annotator = None
        while time.monotonic() - clicked < 60:
            try:
                dataset = backend.dataset()
            except Exception:  # noqa: BLE001 - not created until the first pair is delivered
                dataset = None
            if dataset is not None:
                annotator = annotator or ArgillaAnnotator(
                    argilla_server, f"ann-{unique}", str(dataset.workspace.id)
                )
                record = annotator.records(str(dataset.id)).get(turn_id)
                if record is not None:
                    break
            time.sleep(1)
        reached_s = time.monotonic() - clicked
        assert record is not None, f"no Argilla record for the thumbs-down turn after {reached_s:.0f} s"
        assert reached_s < 60
        suggestion = record["suggestions"][0]
        assert suggestion["value"] in ("A", "B", "tie") and suggestion["agent"]
        assert record["fields"]["question"].startswith("Where was Arthur")

    # The annotator prefers the alternative answer (which side it is, the chat log knows; Argilla
    # shows A and B blind); then pull and export as a user would.
    from chatlog import ChatLog
    from labeling import PairStore

    log = ChatLog(settings.chatlog_url)
    pair = PairStore(log).get(turn_id)
    log.close()
    from labeling.argilla import argilla_agent

    assert pair is not None and argilla_agent(pair["judge"]["agent"]) == suggestion["agent"]
    alternative, original = ("B", pair["response_a"]) if pair["a_is_original"] else ("A", pair["response_b"])
    assert annotator is not None
    annotator.answer(record["id"], alternative, "hallucination")
    env = {
        **os.environ,
        "RAGLOOP_DATA_DIR": str(settings.data_dir),
        "ARGILLA_API_URL": argilla_server.url,
        "ARGILLA_API_KEY": argilla_server.api_key,
        "ARGILLA_WORKSPACE": unique,
        "RAGLOOP_ARGILLA_DATASET": unique,
    }

    def ragloop(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ragloop.cli", *args], env=env, capture_output=True, text=True, timeout=300
        )

    pulled = ragloop("labeling", "pull", "--backend", "argilla")
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    out = tmp_path / "export"
    exported = ragloop("loop", "export", "--format", "dpo", "--out", str(out))
    assert exported.returncode == 0, exported.stdout + exported.stderr

    from datasets import load_dataset

    std = load_dataset(str(out), "standard", cache_dir=str(tmp_path / "hf"))["train"]
    rows = [r for r in std if r["turn_id"] == turn_id]
    assert len(rows) == 1
    row = rows[0]
    assert row["rejected"] == original and row["chosen"] != original and row["chosen"]
    assert "Arthur" in row["prompt"] and QUESTION in row["prompt"]
