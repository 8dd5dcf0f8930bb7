"""The Gradio chat UI: streaming answers, a sources panel, thumbs up/down and comments per turn.

Per browser session the UI keeps the conversation id, the visible messages and, for each assistant
message, the turn id that produced it: a thumbs click on message ``i`` is stored for that turn.
Rendering (sources panel, error text) is pure and lives in small functions; the handlers only call
the :class:`~chatbot.ChatService`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

import gradio as gr

from chatbot._service import ChatError, ChatService
from chatbot._ui_assets import ui_mount_kwargs

__all__ = ["build_ui", "ui_mount_kwargs"]

log = logging.getLogger(__name__)

SOURCES_PLACEHOLDER = "*The passages behind the last answer appear here.*"
_EXCERPT_CHARS = 280


def render_sources(sources: list[dict[str, Any]]) -> str:
    """Markdown for the sources panel; cited passages are marked.

    Args:
        sources: ``Source`` fields as dicts (index, title, source, score, text, cited).

    Returns:
        The panel's Markdown.
    """
    if not sources:
        return "*No relevant passage was found for the last question.*"
    lines = ["### Sources"]
    for s in sources:
        mark = "✅ cited" if s.get("cited") else "not cited"
        title = s.get("title") or s.get("source") or "untitled"
        excerpt = " ".join(str(s.get("text", "")).split())
        if len(excerpt) > _EXCERPT_CHARS:
            excerpt = excerpt[:_EXCERPT_CHARS].rstrip() + "…"
        lines.append(
            f"**[{s.get('index')}] {title}** ({mark}; score {float(s.get('score', 0.0)):.2f})  \n"
            f"`{s.get('source', '')}`\n\n> {excerpt}\n"
        )
    return "\n".join(lines)


#: How the chat shows each failure: an icon and a short title before the message.
_ERROR_LOOK: dict[str, tuple[str, str]] = {
    "llm_rate_limited": ("⏳", "The model is busy"),
    "llm_auth_failed": ("🔑", "The model refused our credentials"),
    "context_too_long": ("✂️", "Too long for the model"),
    "llm_timeout": ("⌛", "The model took too long"),
    "llm_unavailable": ("🔌", "The model is unreachable"),
    "llm_error": ("⚠️", "The model failed"),
    "empty_index": ("📭", "Nothing is indexed"),
    "turn_cancelled": ("⏹️", "Answer cut short"),
    "internal_error": ("🐞", "Something went wrong"),
}


def error_text(err: ChatError) -> str:
    """What the chat shows in place of an answer that failed: its own look per error code."""
    return error_markdown(err.code, err.message, err.retry_after_s)


def error_markdown(code: str, message: str, retry_after_s: int | None = None) -> str:
    """Markdown for a failure with ``code`` (also for a failure after part of the answer streamed)."""
    icon, title = _ERROR_LOOK.get(code, ("⚠️", ""))
    text = f"{icon} **{title}:** {message}" if title else f"{icon} {message}"
    if retry_after_s is not None and f"{retry_after_s} s" not in message:
        text += f" (retry in {retry_after_s} s)"
    return text


def _user(text: Any) -> dict[str, str]:
    shown = text if isinstance(text, str) and text.strip() else "(empty message)"
    return {"role": "user", "content": shown}


def _like_value(liked: Any) -> int | None:
    """+1/-1 for a Like/Dislike click; None when the user only cleared the thumbs."""
    if liked is True:
        return 1
    if liked is False:
        return -1
    return None


class _Session:
    """Handlers bound to one service; per-user state travels in ``gr.State`` values."""

    def __init__(self, service: ChatService) -> None:
        self.service = service

    async def respond(
        self, message: str, messages: list[dict[str, Any]], conv_id: str | None, turns: dict[int, str]
    ) -> AsyncIterator[tuple[Any, ...]]:
        """Stream one turn into the chat; yields (chat, textbox, sources, conv, turns, messages).

        Only the first update clears the question box: later ones leave it alone, so a question
        typed while this answer streams is not wiped. The answer's turn becomes rateable (enters
        ``turns``) when it has finished, not while it is still streaming.
        """
        messages = [*(messages or []), _user(message), {"role": "assistant", "content": "…"}]
        turns = dict(turns or {})
        idx = len(messages) - 1
        sources_md: Any = gr.skip()
        yield messages, "", sources_md, conv_id, turns, messages
        keep = gr.skip()  # the question box from here on
        answer, turn_id = "", None
        try:
            async for event in self.service.stream_turn(message, conv_id):
                if event.kind == "started":
                    conv_id, turn_id = event.data["conversation_id"], event.data["turn_id"]
                    continue
                if event.kind == "sources":
                    sources_md = render_sources(event.data["sources"])
                elif event.kind == "token":
                    answer += event.data["text"]
                    messages[idx] = {"role": "assistant", "content": answer}
                elif event.kind == "error":
                    err = event.data["error"]
                    gr.Warning(err["message"])
                    shown = error_markdown(err["code"], err["message"], err.get("retry_after_s"))
                    messages[idx] = {"role": "assistant", "content": f"{answer}\n\n{shown}"}
                elif event.kind == "done":
                    sources_md = render_sources([asdict(s) for s in event.data["result"].sources])
                    turns[idx] = turn_id or event.data["result"].turn_id
                yield messages, keep, sources_md, conv_id, turns, messages
        except ChatError as err:
            if err.turn_id:
                turns[idx] = err.turn_id
            if err.code == "unknown_conversation":
                conv_id = None  # the next message starts a fresh conversation
            gr.Warning(err.message)
            messages[idx] = {"role": "assistant", "content": error_text(err)}
            yield messages, keep, sources_md, conv_id, turns, messages

    async def like(
        self, data: gr.LikeData, turns: dict[int, str], comment: str, request: gr.Request | None = None
    ) -> tuple[str, dict[str, Any] | None, str]:
        """Store a thumbs click for the turn of the clicked message; returns (status, last, comment).

        The rater is the browser session: clicking again, toggling or adding a comment updates
        that session's one feedback row of the turn.
        """
        index = data.index if isinstance(data.index, int) else data.index[0]
        turn_id = (turns or {}).get(index)
        value = _like_value(data.liked)
        if turn_id is None:
            return "Rate an answer once it has finished (answers of this session only).", None, comment
        if value is None:
            return "Thumbs cleared (earlier feedback stays recorded).", None, comment
        try:
            await asyncio.to_thread(
                functools.partial(
                    self.service.add_feedback, turn_id, value, comment or None, "ui", rater=ui_rater(request)
                )
            )
        except ChatError as err:
            gr.Warning(err.message)
            return error_text(err), None, comment
        thumb = "👍" if value > 0 else "👎"
        note = " with your comment" if comment else ""
        return f"Thanks: {thumb} recorded{note}.", {"turn_id": turn_id, "value": value}, ""

    async def comment(
        self, text: str, last: dict[str, Any] | None, request: gr.Request | None = None
    ) -> tuple[str, str]:
        """Attach a comment to this session's rating of the last rated answer; returns (status, box)."""
        if not text or not text.strip():
            return "Type a comment first.", text
        if not last:
            return "Click 👍 or 👎 on an answer first; the comment goes with it.", text
        try:
            await asyncio.to_thread(
                functools.partial(
                    self.service.add_feedback,
                    last["turn_id"],
                    last["value"],
                    text,
                    "ui",
                    rater=ui_rater(request),
                )
            )
        except ChatError as err:
            gr.Warning(err.message)
            return error_text(err), text
        return "Thanks: comment recorded.", ""


def ui_rater(request: gr.Request | None) -> str:
    """The rater id of a UI session: ``ui:<Gradio session hash>`` (``ui:anonymous`` without one)."""
    session = getattr(request, "session_hash", None) if request is not None else None
    return f"ui:{session}" if session else "ui:anonymous"


def _reset() -> tuple[Any, ...]:
    """Clear the chat and forget the conversation: the next message starts a new one."""
    return [], "", SOURCES_PLACEHOLDER, None, {}, [], None, ""


def build_ui(service: ChatService) -> gr.Blocks:
    """The Gradio Blocks app for ``service``.

    Args:
        service: the chat service that runs, logs and rates turns.

    Returns:
        Blocks, to be mounted with ``gr.mount_gradio_app``.
    """
    session = _Session(service)
    with gr.Blocks(title="ragloop", analytics_enabled=False) as demo:
        gr.Markdown("## ragloop\nAsk about the indexed documents. Rate answers with 👍 / 👎.")
        conv_id, turns, messages = gr.State(None), gr.State({}), gr.State([])
        last_rated = gr.State(None)
        with gr.Row():
            with gr.Column(scale=3):
                chat = gr.Chatbot(label="Chat", height=460, elem_id="chat", buttons=["copy"])
                question = gr.Textbox(
                    label="Your question", placeholder="Ask a question and press Enter", elem_id="question"
                )
                with gr.Row():
                    send = gr.Button("Send", variant="primary", elem_id="send")
                    new = gr.Button("New conversation", elem_id="new-conversation")
            with gr.Column(scale=2):
                sources = gr.Markdown(SOURCES_PLACEHOLDER, elem_id="sources")
                comment = gr.Textbox(label="Comment on the answer you rate", lines=2, elem_id="comment")
                comment_btn = gr.Button("Send comment", elem_id="send-comment")
                status = gr.Markdown("", elem_id="feedback-status")
        outputs = [chat, question, sources, conv_id, turns, messages]
        inputs = [question, messages, conv_id, turns]
        # No per-event concurrency cap: the LLM server queues requests in its own slots.
        question.submit(session.respond, inputs, outputs, concurrency_limit=None)
        send.click(session.respond, inputs, outputs, concurrency_limit=None)
        chat.like(session.like, [turns, comment], [status, last_rated, comment])
        comment_btn.click(session.comment, [comment, last_rated], [status, comment])
        new.click(_reset, None, [*outputs, last_rated, status])
    return demo
