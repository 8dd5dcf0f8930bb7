"""The chatbot: a LangChain RAG chain, the chat service that runs and logs turns, and the web app.

Public API:
    build_service: settings -> ChatService (chat log, retriever, ChatOpenAI, chain, observer).
    ChatService, TurnResult, TurnEvent, Source, ChatError: running turns and their outcomes.
    TurnObserver: the hook points monitoring implements.
    build_rag_chain, build_chat_model: the LCEL chain and its model.
    create_app: the FastAPI app with the Gradio UI mounted at ``/``.
"""

from chatbot._chain import build_chat_model, build_rag_chain
from chatbot._factory import build_service
from chatbot._observer import TurnObserver, dont_throw
from chatbot._prompts import PROMPT_VERSION
from chatbot._service import ChatError, ChatService, Source, TurnEvent, TurnResult, validate_message

__all__ = [
    "PROMPT_VERSION",
    "ChatError",
    "ChatService",
    "Source",
    "TurnEvent",
    "TurnObserver",
    "TurnResult",
    "build_chat_model",
    "build_rag_chain",
    "build_service",
    "create_app",
    "dont_throw",
    "validate_message",
]


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    # The web app pulls in FastAPI and Gradio: import it only when asked for.
    if name == "create_app":
        from chatbot._app import create_app

        return create_app
    raise AttributeError(name)
