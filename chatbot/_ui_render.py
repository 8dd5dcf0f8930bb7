"""Pure rendering for the chat UI: answers, per-answer source blocks, small print, errors, history.

Answers get linked ``[n]`` markers. Plain data in, Gradio message dicts or Markdown out.

No colour emoji anywhere: marks are words or plain typographic characters, so labels render on a
machine without an emoji font.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

_EXCERPT_CHARS = 280
_MARKER = re.compile(r"\[(\d{1,3})\]")
_CODE = re.compile(r"(^(?:> ?)*```.*?^(?:> ?)*```[^\n]*$|`[^`\n]+`)", re.MULTILINE | re.DOTALL)

#: How the chat shows each failure: a short title before the message (text only, no emoji).
ERROR_TITLES: dict[str, str] = {
    "llm_rate_limited": "The model is busy",
    "llm_auth_failed": "The model refused our credentials",
    "context_too_long": "Too long for the model",
    "llm_timeout": "The model took too long",
    "llm_unavailable": "The model is unreachable",
    "llm_error": "The model failed",
    "empty_index": "Nothing is indexed",
    "turn_cancelled": "Answer cut short",
    "internal_error": "Something went wrong",
    "server_busy": "Too many questions at once",
    "queue_timeout": "The model is busy",
}


#: The page adds no note of its own under a gated answer: the grounding gate writes its notice
#: (the quote's label, the warning, the cut-off note) into the answer itself, in the user's
#: language (``chatbot._gate_text``), and that answer is what the chat log stores. A second,
#: English note here showed every notice twice, live and when the conversation was reopened.


def display_path(source: str) -> str:
    """A document's path as users see it: relative to its corpus root, never a cache path.

    Relative paths pass through. An absolute path under a ``corpora/<name>/`` folder (the cache
    layout) keeps the part below it; any other absolute path keeps its file name only.

    Args:
        source: a chunk's ``source`` field.
    """
    if not source or not source.startswith(("/", "~")) and not re.match(r"^[A-Za-z]:[\\/]", source):
        return source
    parts = PurePosixPath(source.replace("\\", "/")).parts
    if "corpora" in parts:
        below = parts[parts.index("corpora") + 2 :]
        if below:
            return "/".join(below)
    return parts[-1] if parts else source


def source_path(source: Mapping[str, Any]) -> str:
    """A source's document as users see it: its id ``root/path`` (``uploads/notes.pdf``).

    Sources logged before the id was recorded fall back to :func:`display_path` of ``source``.
    """
    return str(source.get("doc_id") or "") or display_path(str(source.get("source", "")))


def document_url(source: str, doc_id: str | None = None) -> str:
    """The read-only ``/documents/<root/path>`` link of a source (served by the documents module).

    Args:
        source: the chunk's ``source`` (used only when ``doc_id`` is unknown).
        doc_id: the document's id ``root/path`` (``Source.doc_id``).
    """
    return "/documents/" + quote(doc_id or display_path(source))


def passage_url(turn_id: str, index: int) -> str:
    """The page that shows passage ``index`` of a turn in full."""
    return f"/ui/passage/{quote(turn_id)}/{index}"


def link_markers(answer: str, turn_id: str | None, n_sources: int) -> str:
    """``[n]`` markers in an answer turned into links to their passage (only n within 1..n_sources).

    Markers inside code (a fenced block, also in a quote, or inline code) are left as written.
    """
    if not turn_id or not n_sources:
        return answer

    def link(m: re.Match[str]) -> str:
        n = int(m.group(1))
        return f"[\\[{n}\\]]({passage_url(turn_id, n)})" if 1 <= n <= n_sources else m.group(0)

    # Code (fenced, also inside a quote, or inline) is shown as written: ``mylist[1]`` is no marker.
    parts = _CODE.split(answer)
    return "".join(p if k % 2 else _MARKER.sub(link, p) for k, p in enumerate(parts))


def _excerpt(text: str) -> str:
    excerpt = " ".join(str(text).split())
    return excerpt if len(excerpt) <= _EXCERPT_CHARS else excerpt[:_EXCERPT_CHARS].rstrip() + "..."


def _verified_by_index(citations: Sequence[Mapping[str, Any]] | None) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for c in citations or []:
        try:
            n = int(c.get("source", c.get("index", 0)))
        except (TypeError, ValueError):
            continue
        if c.get("sentence"):
            out.setdefault(n, []).append(str(c["sentence"]))
    return out


def sources_markdown(
    sources: Sequence[Mapping[str, Any]],
    turn_id: str | None,
    citations: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """The body of an answer's sources block: one entry per passage, cited ones marked.

    Args:
        sources: ``Source`` fields as dicts (index, title, source, score, text, cited).
        turn_id: the turn, for the links to the full passages.
        citations: verified citations ``[{"sentence", "source": n, "score"}]`` when the turn has them.
    """
    if not sources:
        return "No relevant passage was found for this question."
    verified = _verified_by_index(citations)
    lines = []
    for s in sources:
        n = int(s.get("index", 0))
        path = source_path(s)
        title = s.get("title") or path or "untitled"
        cited = bool(s.get("cited")) or n in verified
        mark = "**CITED**" if cited else "not cited"
        head = f"**[{n}] {title}** - `{path}` - {mark}"
        head += f" - score {float(s.get('score') or 0.0):.2f}"
        links = ""
        if turn_id:
            links = f"[Open passage]({passage_url(turn_id, n)}) | "
        links += f"[Document]({document_url(str(s.get('source', '')), s.get('doc_id'))})"
        entry = f"{head}\n\n> {_excerpt(str(s.get('text', '')))}\n\n{links}"
        for sentence in verified.get(n, [])[:3]:
            entry += f'\n\n*Supports:* "{_excerpt(sentence)}"'
        lines.append(entry)
    return "\n\n---\n\n".join(lines)


def sources_title(sources: Sequence[Mapping[str, Any]], citations: Any = None) -> str:
    """The collapsed block's title, e.g. ``Sources: 3 passages, 2 cited``."""
    verified = _verified_by_index(citations)
    cited = sum(1 for s in sources if s.get("cited") or int(s.get("index", 0)) in verified)
    noun = "passage" if len(sources) == 1 else "passages"
    return f"Sources: {len(sources)} {noun}, {cited} cited"


def small_print(info: Mapping[str, Any]) -> str:
    """One line under an answer: model, latency, first token, tokens (unknown parts left out)."""
    parts = []
    if info.get("model"):
        parts.append(str(info["model"]))
    if info.get("total_ms") is not None:
        parts.append(f"{float(info['total_ms']) / 1000:.1f} s")
    if info.get("ttft_ms") is not None:
        parts.append(f"first token {float(info['ttft_ms']) / 1000:.1f} s")
    tin, tout = info.get("input_tokens"), info.get("output_tokens")
    parts.append(
        f"{tin} in / {tout} out tokens" if tin is not None and tout is not None else "tokens unknown"
    )
    if info.get("status") == "cancelled":
        parts.append("stopped")
    return "<small>" + " | ".join(parts) + "</small>"


def error_markdown(code: str, message: str, retry_after_s: int | None = None) -> str:
    """Markdown for a failure shown in the conversation (also after part of an answer)."""
    title = ERROR_TITLES.get(code)
    text = f"**Error - {title}:** {message}" if title else f"**Error:** {message}"
    if retry_after_s is not None and f"{retry_after_s} s" not in message:
        text += f" (retry in {retry_after_s} s)"
    return text


def answer_messages(
    turn: Mapping[str, Any], *, error: str | None = None, pending: bool = False
) -> list[dict[str, Any]]:
    """The assistant messages of one turn: the answer (linked markers, small print), then sources.

    Args:
        turn: ``turn_id``, ``answer``, ``sources`` (dicts), ``citations`` and small-print fields.
        error: Markdown of a failure to show after whatever was answered.
        pending: the answer is still streaming (no small print yet; the sources block is open).
    """
    sources = list(turn.get("sources") or [])
    body = link_markers(str(turn.get("answer") or ""), turn.get("turn_id"), len(sources))
    if error:
        body = f"{body}\n\n{error}" if body else error
    if not body:
        body = "..."
    if not pending and turn.get("turn_id") and not error:
        body += "\n\n" + small_print(turn)
    elif not pending and error and turn.get("total_ms") is not None:
        body += "\n\n" + small_print(turn)
    out: list[dict[str, Any]] = [{"role": "assistant", "content": body}]
    if sources:
        meta = {
            "title": sources_title(sources, turn.get("citations")),
            "status": "pending" if pending else "done",
        }
        content = sources_markdown(sources, turn.get("turn_id"), turn.get("citations"))
        out.append({"role": "assistant", "content": content, "metadata": meta})
    return out


def sources_from_row(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A logged turn's sources as ``Source`` dicts (the relevant passages the prompt numbered)."""
    cited = set(row.get("cited") or [])
    retrieved = list(row.get("retrieved") or [])
    out = []
    for i, c in enumerate(retrieved, start=1):
        out.append(
            {
                "index": i,
                "chunk_id": c.get("chunk_id"),
                "text": c.get("text", ""),
                "score": c.get("score", 0.0),
                "source": c.get("source", ""),
                "doc_id": c.get("doc_id", ""),
                "title": c.get("title", ""),
                "cited": i in cited,
            }
        )
    return out


def history_label(conv: Mapping[str, Any]) -> str:
    """A sidebar entry: the title and the date of the last update."""
    when = conv.get("updated_at") or conv.get("created_at")
    stamp = when.strftime("%Y-%m-%d %H:%M") if isinstance(when, datetime) else ""
    title = conv.get("title") or "Untitled conversation"
    return f"{title} ({stamp})" if stamp else str(title)


def deletion_question(title: str) -> str:
    """The confirm step's question before a conversation is deleted."""
    return (
        f"Delete **{title}** for good? Its questions, answers, feedback and labeling rows are removed "
        "from the chat log, and its traces from the trace store where the app can; this cannot be undone."
    )
