"""Build a ready chat service from settings: chat log, retriever, chat model, chain, observer."""

from __future__ import annotations

from chatbot._chain import RetrieverLike, build_chat_model, build_rag_chain
from chatbot._gate import GroundingGate
from chatbot._observer import TurnObserver, dont_throw
from chatbot._service import ChatService
from chatlog import ChatLog
from ragloop.settings import Settings


def build_service(
    settings: Settings,
    *,
    observer: TurnObserver | None = None,
    retriever: RetrieverLike | None = None,
    chatlog: ChatLog | None = None,
) -> ChatService:
    """Assemble a :class:`ChatService`; pass ``retriever`` or ``chatlog`` to reuse existing ones."""
    if retriever is None:
        from retrieval import Retriever

        retriever = Retriever(settings)
    llm = build_chat_model(
        base_url=settings.llm_base_url,
        api_key=settings.openai_api_key.get_secret_value(),
        model=settings.llm_model,
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        timeout_s=settings.llm_timeout_s,
    )
    observer = observer or TurnObserver()
    chain = build_rag_chain(
        llm,
        retriever,
        k=settings.top_k,
        threshold=settings.score_threshold,
        on_retrieved=dont_throw(observer.annotate_retrieval),
        gate=GroundingGate.from_settings(settings) if settings.gate_enabled else None,
        injection_guard=settings.injection_guard,
    )
    return ChatService(settings, chatlog or ChatLog(settings.chatlog_url), chain, retriever, observer)
