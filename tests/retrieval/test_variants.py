"""Embedding variants: the exported ones agree with torch, and an index refuses another variant.

Real embedders (torch and ONNX int8, exported on this machine from the installed model), real
embedded Chroma.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragloop.errors import UserError
from ragloop.settings import Settings
from retrieval import Embedder, Retriever, VariantMismatch, ingest
from retrieval._background import reset_if_other_variant
from retrieval._embedding import get_embedder, mean_pool
from retrieval._ingest import META_EMBEDDING_VARIANT
from retrieval._store import open_collection

TEXTS = [
    "How do I copy a file in Python?",
    "Use shutil.copyfile(src, dst) to copy the contents of a file; shutil.copy2 keeps metadata too.",
    "Knead the dough for ten minutes, let it rise for an hour, then bake at 220 degrees.",
]


@pytest.fixture(scope="module")
def int8_embedder() -> Embedder:
    """The ONNX int8 variant (exported into the shared model cache once)."""
    return get_embedder(Settings(embedding_backend="onnx-int8"))


@pytest.fixture(scope="module")
def torch_embedder() -> Embedder:
    """The torch variant (what indexes before issue 11 hold)."""
    return get_embedder(Settings(embedding_backend="torch"))


def test_mean_pool_known_values() -> None:
    hidden = np.array([[[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]])
    assert mean_pool(hidden, mask) == pytest.approx(np.array([[0.70710677, 0.70710677]]))


def test_exported_variant_agrees_with_torch(int8_embedder: Embedder, torch_embedder: Embedder) -> None:
    assert int8_embedder.variant.startswith("onnx-int8:") and torch_embedder.variant == "torch"
    docs = int8_embedder.embed_documents(TEXTS)
    ref = torch_embedder.embed_documents(TEXTS)
    assert docs.shape == ref.shape == (3, 384)
    assert np.allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-4)
    assert float(np.min(np.sum(docs * ref, axis=1))) > 0.97
    # A query embeds nearly as the same text does in a batch (dynamic int8 scales activations
    # per batch, so not exactly).
    assert float(np.dot(int8_embedder.embed_query(TEXTS[0]), docs[0])) > 0.98
    # The ranking is the torch one: the copy answer is nearest to the copy question.
    assert int(np.argmax(docs[1:] @ int8_embedder.embed_query(TEXTS[0]))) == 0


def test_other_variant_refused_then_rebuilt(
    tmp_path: Path, docs_dir: Path, int8_embedder: Embedder, torch_embedder: Embedder
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    report = ingest([docs_dir], settings, progress=False, embedder=torch_embedder)
    assert report.chunks_added > 0
    assert open_collection(settings).metadata[META_EMBEDDING_VARIANT] == "torch"
    with pytest.raises(VariantMismatch) as refused:
        ingest([docs_dir], settings, progress=False, embedder=int8_embedder)
    message = str(refused.value)
    assert isinstance(refused.value, UserError) and "\n" not in message
    assert "'torch'" in message and int8_embedder.variant in message and "--rebuild" in message
    # Nothing was lost or mixed: the index still holds only the torch vectors.
    assert open_collection(settings).count() == report.chunks_added
    # `ragloop run`'s path: drop and re-embed with the new variant.
    assert reset_if_other_variant(settings, int8_embedder)
    again = ingest([docs_dir], settings, progress=False, embedder=int8_embedder)
    assert again.chunks_added == report.chunks_added
    assert open_collection(settings).metadata[META_EMBEDDING_VARIANT] == int8_embedder.variant
    hits = Retriever(settings, embedder=int8_embedder).search("Which planet is the largest?", k=1).chunks
    assert "Jupiter" in hits[0].text


def test_legacy_index_counts_as_torch(tmp_path: Path, docs_dir: Path, torch_embedder: Embedder) -> None:
    """An index stamped before variants existed holds torch vectors: the int8 variant is refused."""
    settings = Settings(data_dir=tmp_path / "data")
    ingest([docs_dir], settings, progress=False, embedder=torch_embedder)
    collection = open_collection(settings)
    meta = {k: v for k, v in (collection.metadata or {}).items() if k != META_EMBEDDING_VARIANT}
    collection.modify(metadata=meta)
    int8 = get_embedder(Settings(embedding_backend="onnx-int8"))
    with pytest.raises(VariantMismatch):
        ingest([docs_dir], settings, progress=False, embedder=int8)


def test_serve_refuses_an_index_of_another_variant(
    tmp_path: Path, docs_dir: Path, torch_embedder: Embedder
) -> None:
    """`ragloop serve` over a torch index with the int8 variant configured: one line, exit 2."""
    import os
    import subprocess
    import sys

    settings = Settings(data_dir=tmp_path / "data")
    ingest([docs_dir], settings, progress=False, embedder=torch_embedder)
    env = {**os.environ, "RAGLOOP_DATA_DIR": str(settings.data_dir), "RAGLOOP_EMBEDDING_BACKEND": "onnx-int8"}
    done = subprocess.run(
        [sys.executable, "-m", "ragloop.cli", "serve", "--port", "9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,  # ~20 s on a quiet machine; 200 s was seen at load average 17
    )
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "'torch'" in errors[0] and "RAGLOOP_EMBEDDING_BACKEND=torch" in errors[0]
    assert "Traceback" not in done.stderr
