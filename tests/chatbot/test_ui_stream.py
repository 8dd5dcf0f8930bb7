"""The chat UI's handlers while an answer streams: nothing the user typed is lost, and only a
finished answer can be rated. Real chat service, real retrieval, the instant OpenAI-compatible
server streaming slowly."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import gradio as gr

from chatbot import build_service
from chatbot._ui import _Session
from monitoring._instant_llm import Behaviour, InstantLLM
from tests.chatbot.conftest import _app_settings


def _collect(session: _Session, message: str) -> list[tuple[Any, ...]]:
    async def run() -> list[tuple[Any, ...]]:
        # Snapshot the turns dict: the handler yields the same (mutated) dict each time.
        return [(*out[:4], dict(out[4]), *out[5:]) async for out in session.respond(message, [], None)]

    return asyncio.run(run())


def test_streaming_never_wipes_what_the_user_is_typing_and_a_pending_answer_cannot_be_rated(
    indexed_dir: Path, tmp_path: Path
) -> None:
    with InstantLLM(Behaviour(token_delay_s=0.01)) as llm:
        settings = _app_settings(
            indexed_dir, openai_base_url=llm.base_url, database_url=f"sqlite:///{tmp_path / 'c.db'}"
        )
        service = build_service(settings)
        session = _Session(service)
        outs = _collect(session, "How do I sort a list?")
        service.chatlog.close()
    assert len(outs) > 3
    # Only the first update clears the question box; while tokens stream, what the user types next
    # (the box) is left alone.
    assert outs[0][1] == ""
    assert all(isinstance(o[1], type(gr.skip())) or o[1] is None for o in outs[1:]), [o[1] for o in outs]
    # While the answer streams, the message has no turn to rate; once done, it has (outputs:
    # chat, box, view, conversation, index of rateable messages, pending turn).
    pending_turns = [o[4] for o in outs[1:-1]]
    assert all(1 not in t for t in pending_turns)
    assert 1 in outs[-1][4]
