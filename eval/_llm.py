"""Make sure the harness has an LLM to talk to: reuse the configured one or start the local server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ragloop.settings import Settings


@contextmanager
def ensure_llm(settings: Settings) -> Iterator[Settings]:
    """Yield settings whose endpoint answers; a local server started here is stopped on exit."""
    if not settings.uses_local_llm:
        yield settings
        return
    from ragloop.process import start_llm

    proc = start_llm(settings)
    try:
        yield settings
    finally:
        if proc is not None:
            proc.stop()
