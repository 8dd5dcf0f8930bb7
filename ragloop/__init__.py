"""ragloop: a RAG chatbot with a closed LLMOps loop.

Public API: :class:`Settings` and :func:`get_settings`. The product's packages are ``chatbot``,
``retrieval``, ``monitoring`` and ``eval``; this package holds what they share (settings, the
command line, process management).
"""

from ragloop.settings import Settings, get_settings

__version__ = "0.1.0"
__all__ = ["Settings", "get_settings", "__version__"]
