"""The BM25 file is shared by every app process on one data dir (scale-out: one volume, N replicas).

Each process keeps its own in-memory BM25 index in step with the shared Chroma collection and
saves it to ``DATA_DIR/bm25/<collection>/bm25.npz``. Two processes catching up at the same moment
both save: each must write its own temporary file, or one's rename finds the file gone (or
publishes a file the other is still writing).
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from retrieval._bm25 import Bm25Index

SAVES = 60


def _save_many(path: str, tag: int, errors: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    index = Bm25Index(Path(path))
    texts = {f"{tag}-{i}": f"chunk {i} about files and lists, written by process {tag}" for i in range(200)}
    index.update(texts, [], version=f"v{tag}")
    for _ in range(SAVES):
        try:
            index.save()
        except Exception as exc:  # noqa: BLE001 - reported to the test
            errors.put(f"{type(exc).__name__}: {exc}")
            return


def test_two_processes_saving_the_same_bm25_file_do_not_collide(tmp_path: Path) -> None:
    path = tmp_path / "bm25" / "docs" / "bm25.npz"
    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    procs = [ctx.Process(target=_save_many, args=(str(path), tag, errors)) for tag in (1, 2, 3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []
    loaded = Bm25Index.load(path)
    assert loaded.count == 200 and loaded.version in {"v1", "v2", "v3"}
    assert [p.name for p in path.parent.iterdir()] == ["bm25.npz"]  # no temporary file left behind
