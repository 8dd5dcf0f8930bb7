"""The evaluation encoder: int8 + traced, close to the full-precision model; the context cache."""

from __future__ import annotations

import numpy as np

from eval import get_encoder
from eval._embed import CachedEmbedder
from ragloop.settings import Settings

TEXTS = [
    "The Oberoi Group has its head office in Delhi.",
    "The Oberoi family is an Indian family famous for its hotels.",
    "Quantum chromodynamics describes the strong interaction.",
]


def test_fast_encoder_is_traced_and_close_to_full_precision(encoder):
    import torch

    assert encoder.quantized and isinstance(encoder._model, torch.jit.ScriptModule)
    full = get_encoder(Settings(), quantize=False)
    q, f = encoder.embed_documents(TEXTS), full.embed_documents(TEXTS)
    assert q.shape == (3, 384) and np.allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    # Quantization moves cosines a little (most for unrelated texts) and keeps their order.
    assert abs(q[0] @ q[1] - f[0] @ f[1]) < 0.01
    assert np.abs(q @ q.T - f @ f.T).max() < 0.1
    assert (q[0] @ q[1]) > (q[0] @ q[2]) + 0.3
    # Each text is encoded on its own: its vector does not depend on its batch-mates (fault 9).
    alone = encoder.embed_documents(TEXTS[:1])[0]
    assert np.array_equal(alone, q[0])


def test_cached_embedder_keeps_only_rows_marked_for_caching(encoder):
    cache = CachedEmbedder(encoder, size=2)
    cache.embed(TEXTS, cache=[False, True, True])
    assert list(cache._cache) == TEXTS[1:]
    cache.clear()
    assert not cache._cache
