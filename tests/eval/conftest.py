"""Fixtures of the evaluation tests: one shared evaluation encoder (real all-MiniLM-L6-v2)."""

from __future__ import annotations

import pytest

from eval import get_encoder
from ragloop.settings import Settings


@pytest.fixture(scope="session")
def encoder():  # type: ignore[no-untyped-def]
    """The real evaluation encoder, loaded once per session."""
    return get_encoder(Settings())
