"""Bad input in the chat box: checked before anything is created, and nothing the user typed is lost.

The chat UI asks :func:`check_input` before it starts a turn:

- an empty or blank message does nothing (no bubble, no conversation, no chat-log row);
- a message the service would refuse (too long, control characters) creates no conversation
  (so no history entry); the service still logs its ``rejected`` turn row, the error is shown in
  the conversation, and the question box keeps the text so the user can shorten it.

The service's own :func:`chatbot._service.validate_message` decides, so the UI and the API
refuse the same messages with the same words.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from chatbot._service import ChatError, ChatService, validate_message

__all__ = ["check_input", "is_blank"]


def is_blank(message: Any) -> bool:
    """True for a message with nothing to send (None, empty or only blanks)."""
    return not isinstance(message, str) or not message.strip()


async def _log_rejection(service: ChatService, message: Any, conv_id: str | None) -> ChatError | None:
    """Let the service refuse ``message`` (it logs the ``rejected`` row); its error, or None if accepted."""
    stream = service.stream_turn(message, conv_id)
    try:
        await stream.__anext__()
    except ChatError as err:
        return err
    except StopAsyncIteration:
        return None
    await stream.aclose()  # not reached for a message validate_message refused
    return None


async def check_input(
    service: ChatService,
    message: Any,
    view: list[dict[str, Any]],
    conv_id: str | None,
    to_messages: Callable[[list[dict[str, Any]]], tuple[list[dict[str, Any]], dict[int, str]]],
    error_text: Callable[[ChatError], str],
) -> tuple[Any, ...] | None:
    """The chat outputs for a message that must not start a turn, or None for one that may.

    Args:
        service: the chat service (its settings' RAGLOOP_MAX_MESSAGE_CHARS; it logs the rejection).
        message: the question box's text.
        view: the session's turns shown.
        conv_id: the open conversation (None: none yet; none is created for bad input).
        to_messages: the UI's ``view -> (messages, index)``.
        error_text: the UI's ``ChatError -> Markdown``.

    Returns:
        None when the message is acceptable; else the 6 outputs of a send (chat, question box,
        view, conversation, index, pending turn): all unchanged for a blank message, and for a
        refused one the conversation plus the error (not kept in ``view``), the box untouched.
    """
    if is_blank(message):
        return (gr.skip(),) * 6
    try:
        validate_message(message, service.settings.max_message_chars)
    except ChatError as err:
        logged = await _log_rejection(service, message, conv_id)
        err = logged or err
        messages, index = to_messages(view)
        note = f"{error_text(err)}\n\n*Your text is still in the box below: shorten it and send again.*"
        messages = [*messages, {"role": "assistant", "content": note}]
        return messages, gr.skip(), view, conv_id, index, None
    return None
