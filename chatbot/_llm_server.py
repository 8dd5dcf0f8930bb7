"""Serve a GGUF as an OpenAI-compatible API on 127.0.0.1 with xllamacpp (prebuilt llama.cpp)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

from ragloop.settings import Settings

log = logging.getLogger(__name__)


def _import_xllamacpp():  # type: ignore[no-untyped-def]
    try:
        import xllamacpp
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("the local LLM server needs: pip install 'ragloop[llm]'") from exc
    return xllamacpp


def build_params(settings: Settings, model_path: Path, port: int):  # type: ignore[no-untyped-def]
    """llama.cpp server parameters for this machine (CPU threads, slots, prompt cache)."""
    xl = _import_xllamacpp()
    params = xl.CommonParams()
    params.model.path = str(model_path)
    params.model_alias = {settings.llm_model}
    params.n_ctx = settings.llm_ctx
    params.n_parallel = settings.llm_parallel
    params.cpuparams.n_threads = settings.llm_threads
    params.cpuparams_batch.n_threads = settings.llm_threads
    params.hostnames = [settings.llm_host]
    params.port = port
    # Reuse the KV cache of the stable system-prompt prefix across requests.
    params.cache_prompt = True
    return params


def serve_forever(settings: Settings, model_path: Path, port: int) -> None:
    """Start the server and block until SIGINT/SIGTERM.

    Raises:
        UserError: llama.cpp refused to start (a port taken since the caller checked it, a bad
            model file or parameter); its own log lines above say which.
    """
    from ragloop.errors import UserError

    xl = _import_xllamacpp()
    try:
        server = xl.Server(build_params(settings, model_path, port))
    except RuntimeError as exc:  # llama.cpp's "Failed to init server, please check the input params."
        raise UserError(
            f"the LLM server did not start on {settings.llm_host}:{port} with {model_path.name} "
            f"(llama.cpp: {str(exc).strip() or 'init failed'}); its log above names the cause"
        ) from exc
    log.info(
        "LLM server on http://%s:%d/v1 (model %s from %s)",
        settings.llm_host,
        port,
        settings.llm_model,
        model_path,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    del server
