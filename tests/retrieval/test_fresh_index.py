"""Issue 9, fault 11: an embedded index written by another process is seen by an open Retriever.

The app holds an embedded Chroma client; ``ragloop ingest`` is another OS process writing the same
folder. Before the fix a new collection failed every search ("Error creating hnsw segment
reader: Nothing found on disk") and an existing one never showed the new documents until restart.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from ragloop.settings import Settings
from retrieval import Embedder, Retriever

ZORBLAX = (
    "# The zorblax protocol\n\nThe zorblax handshake of the zorblax protocol is called the purple wobble.\n"
)
SETS = "# Sets\n\nA set holds unique items; `set.add(x)` inserts one.\n"
QUESTION = "What is the zorblax handshake called?"


def _ingest_in_another_process(settings: Settings, folder: Path) -> None:
    env = {**os.environ, "RAGLOOP_DATA_DIR": str(settings.data_dir), "HF_HUB_OFFLINE": "1"}
    env.pop("RAGLOOP_CHROMA_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "ragloop.cli", "ingest", "-q", str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr


def _found_within(retriever: Retriever, seconds: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        hits = retriever.search(QUESTION).chunks  # must not raise, whatever the writer does
        if hits and "zorblax" in hits[0].source:
            return time.monotonic() - start
        time.sleep(0.2)
    return None


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder


def test_a_new_collection_written_by_another_process(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    retriever = Retriever(settings, embedder=embedder)  # the app starts first: its collection is empty
    assert retriever.search(QUESTION).chunks == []
    _ingest_in_another_process(settings, _write(tmp_path / "new", "zorblax.md", ZORBLAX))
    assert _found_within(retriever, 5.0) is not None
    assert retriever.count() >= 1


def test_an_existing_collection_updated_by_another_process(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    _ingest_in_another_process(settings, _write(tmp_path / "old", "sets.md", SETS))
    retriever = Retriever(settings, embedder=embedder)
    assert retriever.search("How do I add to a set?").chunks  # the app serves the old index
    _ingest_in_another_process(settings, _write(tmp_path / "new", "zorblax.md", ZORBLAX))
    assert _found_within(retriever, 5.0) is not None
