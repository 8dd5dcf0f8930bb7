"""The RAG chain as one LangChain LCEL runnable.

Input: ``{"message": str, "history": [(question, answer), ...]}``. Streaming the chain yields dict
chunks: first the keys ``question`` (the standalone question, checked by :mod:`chatbot._rewrite`),
``language`` (the turn's ``LanguageGuess``) and ``rewrite`` (the ``RewriteCheck``), then
``retrieval`` (a :class:`Retrieval`), then ``injection`` (a ``retrieval.PassageCheck``, only when
a passage holds instructions to the model), then ``answer`` chunks (``AIMessageChunk``), then
``flags`` (``{"truncated": True}`` when the model stopped at its length limit, for ``turns.flags``;
ungated, a last ``answer`` chunk then says so in the turn's language), then ``answer_text`` (the
whole answer, unless the chain refused). Token usage of every LLM call
(condense and answer) reaches the caller through LangChain callbacks (``on_llm_end``), which the
chat service sums. Because it is one runnable, LangChain tracers (LangSmith, OpenLLMetry) see one
run tree per turn: rag_chain -> condense_question, retrieve, ChatOpenAI.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from pydantic import SecretStr

from chatbot import _gate_text as gate_text
from chatbot import _prompts as prompts
from chatbot import _rewrite as rewrite
from chatbot._fusion import search_queries

if TYPE_CHECKING:
    import httpx


class ChunkLike(prompts.SourceLike, Protocol):
    """A retrieved chunk as the retrieval package returns it (read-only): a source with id and score."""

    @property
    def chunk_id(self) -> str: ...  # noqa: D102
    @property
    def score(self) -> float: ...  # noqa: D102


class SearchResultLike(Protocol):
    """The result of one retrieval (read-only)."""

    @property
    def query_embedding(self) -> Any: ...  # noqa: D102
    @property
    def chunks(self) -> Sequence[ChunkLike]: ...  # noqa: D102
    @property
    def retrieval_ms(self) -> float: ...  # noqa: D102


class RetrieverLike(Protocol):
    """What the chain needs of a retriever."""

    def search(self, query: str, k: int | None = None) -> SearchResultLike:
        """Top-k chunks for ``query``."""
        ...


class Retrieval:
    """What the retrieve step found: all chunks with scores, and those relevant enough to use.

    A plain class with ``to_json`` (LangChain's convention, which tracers honour) rather than a
    dataclass: tracers deep-copied a dataclass with ``asdict`` and serialised every chunk's text
    and the query vector into the retrieve run's output, the costliest step of tracing a turn.
    The documents themselves are traced once, by the retrieval span.
    """

    __slots__ = ("query_embedding", "relevant", "retrieval_ms", "retrieved")

    def __init__(
        self, query_embedding: Any, retrieved: list[ChunkLike], relevant: list[ChunkLike], retrieval_ms: float
    ) -> None:
        """Hold one retrieval's results."""
        self.query_embedding = query_embedding
        self.retrieved = retrieved
        self.relevant = relevant
        self.retrieval_ms = retrieval_ms

    def to_json(self) -> dict[str, Any]:
        """A compact summary for traces: chunk ids and scores, how many were relevant, the time."""
        return {
            "chunk_ids": [c.chunk_id for c in self.retrieved],
            "scores": [round(float(c.score), 4) for c in self.retrieved],
            "relevant": len(self.relevant),
            "retrieval_ms": round(self.retrieval_ms, 2),
        }

    def __repr__(self) -> str:
        """The compact summary (also what a tracer that falls back to ``repr`` shows)."""
        return f"Retrieval({self.to_json()})"


def _condense_step(llm: BaseChatModel) -> Runnable:
    async def condense(inputs: dict[str, Any], config: RunnableConfig) -> str:
        history = inputs.get("history") or []
        message = inputs["message"]
        if not history:
            # First turn: the message is already standalone; skip an LLM round trip.
            return str(message)
        reply = await llm.ainvoke(
            [
                SystemMessage(prompts.CONDENSE_SYSTEM_PROMPT),
                HumanMessage(prompts.condense_prompt(history, message)),
            ],
            config,
            max_tokens=64,
        )
        return prompts.clean_condensed(str(reply.content), fallback=message)

    return RunnableLambda(condense, name="condense_question")


class IndexUnavailableError(RuntimeError):
    """The index (the Chroma server) cannot be reached: the turn fails with 503 ``index_unavailable``."""


def _unreachable(exc: BaseException) -> bool:
    """A connection failure to the index server (HTTP client or Chroma's own error), not a bug."""
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    return type(exc).__module__.split(".")[0] in ("httpx", "httpcore", "chromadb", "requests", "urllib3")


def _retrieve_step(
    retriever: RetrieverLike, k: int, threshold: float, on_retrieved: Callable[[Retrieval], None] | None
) -> Runnable:
    # A sync function on purpose: under ``ainvoke``/``astream`` LangChain runs it in the config's
    # executor (a worker thread), so the embedding and the index query never block the event loop.
    def retrieve(question: str | Sequence[str]) -> Retrieval:
        # Several queries after a rejected rewrite: each searched, the rankings fused (chatbot/_fusion.py).
        queries = [question] if isinstance(question, str) else list(question)
        try:
            vector, chunks, ms = search_queries(retriever, queries, k)
        except Exception as exc:
            if _unreachable(exc):  # the Chroma server down: say so, not "the language model"
                raise IndexUnavailableError(f"{type(exc).__name__}: {exc}") from exc
            raise
        relevant = [c for c in chunks if c.score >= threshold]
        retrieval = Retrieval(vector, chunks, relevant, ms)
        if on_retrieved is not None:
            on_retrieved(retrieval)
        return retrieval

    return RunnableLambda(retrieve, name="retrieve")


def _answer_messages(
    question: str,
    chunks: Sequence[prompts.SourceLike],
    language: str | None = None,
    system_prompt: str = prompts.SYSTEM_PROMPT,
) -> list[Any]:
    block = prompts.format_sources(chunks)
    return [SystemMessage(system_prompt), HumanMessage(prompts.user_prompt(question, block, language))]


class _Passage:
    """A retrieved chunk with its text replaced (the injected sentences cut); the rest as retrieved."""

    __slots__ = ("chunk_id", "score", "source", "text", "title")

    def __init__(self, chunk: ChunkLike, text: str) -> None:
        """Copy ``chunk`` with ``text`` instead of its own."""
        self.chunk_id, self.score, self.source, self.title = (
            chunk.chunk_id,
            chunk.score,
            chunk.source,
            chunk.title,
        )
        self.text = text


def guard_passages(chunks: Sequence[ChunkLike]) -> tuple[list[Any], Any]:
    """The passages for the prompt with instructions to the model cut, and the check (its ``flags()``).

    A passage whose sentences tell the model what to do ("ignore previous instructions and ...") is
    data, not an order: those sentences become ``[instruction removed]`` (``retrieval._injection``).
    Clean passages are returned as they are.
    """
    from retrieval import check_passages

    check = check_passages([c.text for c in chunks])
    if not check.injected:
        return list(chunks), check
    flagged = set(check.flagged)
    out = [
        _Passage(c, t) if n in flagged else c
        for n, (c, t) in enumerate(zip(chunks, check.texts, strict=True), 1)
    ]
    return out, check


def build_rag_chain(
    llm: BaseChatModel,
    retriever: RetrieverLike,
    k: int,
    threshold: float,
    on_retrieved: Callable[[Retrieval], None] | None = None,
    gate: Any | None = None,
    injection_guard: bool = True,
    system_prompt: str = prompts.SYSTEM_PROMPT,
) -> Runnable:
    """Compose condense -> retrieve -> answer as one LCEL runnable named ``rag_chain``.

    ``injection_guard`` (``RAGLOOP_INJECTION_GUARD``) scans the relevant passages for instructions
    addressed to the model: when one has some, the chain yields ``{"injection": PassageCheck}``
    (the service puts its ``flags()`` into ``turns.flags``) and the model and the gate see the
    passages with those sentences cut. ``system_prompt`` is the answer step's system message (a
    benchmark passes an older one to measure what changed).

    ``gate`` (a :class:`chatbot._gate.GroundingGate`) checks the finished answer and yields
    ``gate_checking`` / ``gate`` chunks after ``answer_text`` (its retry, if any, nests here too).

    ``on_retrieved`` is called inside the retrieve step, while its run is the current one, so a
    tracer can put the documents on the step's own span. It must not raise.

    Why one runnable with three children rather than ``RunnablePassthrough.assign`` pipes: every
    LCEL runnable is a run for each tracer, and the pipes added nine plumbing runs per turn
    (assign, parallel, route, prompt) that tracers serialised for nothing. Now a turn's run tree
    is exactly rag_chain -> condense_question, retrieve, ChatOpenAI.
    """
    condense = _condense_step(llm)
    retrieve = _retrieve_step(retriever, k, threshold, on_retrieved)
    # Load the language detector's models (seconds) in the background, not on the first turn.
    threading.Thread(target=rewrite.warm_up_language, name="language-warm-up", daemon=True).start()

    async def rag_chain(inputs: dict[str, Any], config: RunnableConfig) -> AsyncIterator[dict[str, Any]]:
        # ``config`` carries this run's child callbacks, so the steps nest under rag_chain.
        message, history = str(inputs["message"]), inputs.get("history") or []
        guess = await asyncio.to_thread(rewrite.turn_language, message, history)
        language = guess.language
        condensed = await condense.ainvoke(inputs, config)
        # A rewrite that answered, lost the question or changed language falls back (chatbot/_rewrite.py).
        check = await asyncio.to_thread(rewrite.guard_rewrite, condensed, message, history, language)
        question = check.question
        yield {"question": question, "language": guess, "rewrite": check}
        retrieval = await retrieve.ainvoke(
            check.queries[0] if len(check.queries) == 1 else check.queries, config
        )
        yield {"retrieval": retrieval}
        if not retrieval.relevant:
            # Nothing relevant: refuse rather than let the model invent an answer.
            yield {"answer": AIMessage(prompts.no_context_answer(language))}
            return
        passages: Sequence[ChunkLike] = retrieval.relevant
        if injection_guard:  # instructions inside retrieved documents are data (retrieval._injection)
            passages, injected = await asyncio.to_thread(guard_passages, passages)
            if injected.injected:
                yield {"injection": injected}
        text, finish = [], None
        messages = _answer_messages(question, passages, language, system_prompt)
        async for piece in llm.astream(messages, config):
            text.append(str(piece.content or ""))
            finish = (getattr(piece, "response_metadata", None) or {}).get("finish_reason") or finish
            yield {"answer": piece}
        cut = finish == "length"  # stopped at max_tokens: the turn records it, the user is told
        if cut:
            yield {"flags": {"truncated": True}}
            if gate is None:  # ungated, the note streams as the answer's end (the gate adds its own)
                yield {"answer": AIMessage("\n\n" + gate_text.localized(gate_text.CUT_NOTES, language))}
        # Last, the whole answer as text: tracers record a streamed run's last chunk as its output,
        # and the text reads better (and serialises faster) than the final usage-only chunk.
        yield {"answer_text": "".join(text)}
        if gate is not None:  # the grounding gate (chatbot/_gate.py): verified citations, retry/quote
            async for checked in gate.run("".join(text), question, passages, llm, config, language, cut):
                yield checked

    return RunnableLambda(rag_chain, name="rag_chain")


#: Retries the OpenAI client makes by itself. None: with retries, a 429 is slept on for up to the
#: endpoint's Retry-After (the client honours up to 120 s per retry) and a timeout is waited out
#: twice before the user hears anything. The user gets the failure at once instead (503 with
#: Retry-After, 504), and the one request is all the endpoint sees.
LLM_CLIENT_RETRIES = 0


def _resend_unanswered() -> httpx.AsyncBaseTransport:
    """A transport that sends a request again, once, when the endpoint sent nothing back.

    An endpoint may close a kept-alive connection just as the pool reuses it (llama.cpp's server
    drops idle ones after 5 s, httpx keeps them 5 s): the request then fails with "Server
    disconnected without sending a response" (``httpx.RemoteProtocolError``) though the endpoint is
    up. That, and a refused connection, are sent again once on a new connection (httpx-retries).
    Nothing else is: no status code (a 429/503 goes to the user with its Retry-After, see
    :data:`LLM_CLIENT_RETRIES`), no timeout, no failure mid-stream (the response had begun).
    """
    import httpx
    from httpx_retries import Retry, RetryTransport

    class _Unanswered(Retry):
        def is_retryable_status_code(self, status_code: int) -> bool:
            return False

    retry = _Unanswered(
        total=1,
        allowed_methods=["POST", "GET"],
        retry_on_exceptions=[httpx.RemoteProtocolError, httpx.ConnectError],
        backoff_factor=0.0,
    )
    return RetryTransport(retry=retry)


def build_chat_model(
    base_url: str,
    api_key: str | SecretStr,
    model: str,
    temperature: float,
    max_tokens: int,
    timeout_s: float,
) -> BaseChatModel:
    """ChatOpenAI on any OpenAI-compatible endpoint, streaming with token usage in the last chunk.

    Failures surface as the OpenAI client's exceptions (``RateLimitError``, ``APITimeoutError``...),
    which the chat service maps to statuses and codes; the client does not retry
    (:data:`LLM_CLIENT_RETRIES`).
    """
    import httpx
    from langchain_openai import ChatOpenAI

    # Our own client rather than langchain-openai's process-wide cached one: its pooled connections
    # belong to the event loop that opened them, and each service owns its loop's connections.
    return ChatOpenAI(
        http_async_client=httpx.AsyncClient(timeout=timeout_s, transport=_resend_unanswered()),
        base_url=base_url,
        api_key=api_key if isinstance(api_key, SecretStr) else SecretStr(api_key),
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,  # type: ignore[call-arg]
        timeout=timeout_s,
        max_retries=LLM_CLIENT_RETRIES,
        streaming=True,
        stream_usage=True,
    )
