"""A Chroma server over the data dir's index, as ``ragloop run`` starts it (``chroma run``).

The server serves the same folder the embedded client uses (``DATA_DIR/chroma``), so an index
built embedded is served as it is. While it runs, ``DATA_DIR/chroma-server.json`` names its URL:
:func:`retrieval._store.chroma_url` finds it there, so ``ragloop ingest`` run beside ``ragloop run``
writes through the server the app reads (issue 9, fault 11) without any setting.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from ragloop.process import ManagedProcess, free_port, port_open
from ragloop.settings import Settings
from retrieval._store import SERVER_FILE

log = logging.getLogger(__name__)

#: Port tried first; a free one is used when it is taken.
DEFAULT_PORT = 8000


class ChromaServer(ManagedProcess):
    """``chroma run`` as a child process; :meth:`stop` also removes the discovery file."""

    def __init__(self, argv: list[str], log_path: Path, url: str, marker: Path) -> None:
        """Describe the server; :meth:`start` launches it."""
        super().__init__("chroma", argv, log_path)
        self.url = url
        self.marker = marker

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and forget its URL."""
        try:
            self.marker.unlink(missing_ok=True)
        finally:
            super().stop(timeout)


def chroma_binary() -> Path:
    """The ``chroma`` command of this environment (installed with chromadb)."""
    return Path(sys.executable).parent / "chroma"


def start_chroma_server(settings: Settings, port: int | None = None, timeout: float = 60.0) -> ChromaServer:
    """Start ``chroma run`` on 127.0.0.1 over ``settings.chroma_path`` and wait until it answers.

    Args:
        settings: ``data_dir`` (index folder, log, discovery file).
        port: the port; default 8000, or a free one when 8000 is taken.
        timeout: seconds to wait for the server.

    Returns:
        The running server; its ``url`` is what ``RAGLOOP_CHROMA_URL`` would be.

    Raises:
        RuntimeError, TimeoutError: the server exited or did not answer (the message has its log).
    """
    if port is None:
        port = DEFAULT_PORT if not port_open("127.0.0.1", DEFAULT_PORT) else free_port()
    settings.chroma_path.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    argv = [str(chroma_binary()), "run", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--path", str(settings.chroma_path.resolve())]
    marker = settings.data_dir / SERVER_FILE
    server = ChromaServer(argv, settings.data_dir / "logs" / "chroma.log", url, marker)
    server.start()
    try:
        server.wait_ready(lambda: port_open("127.0.0.1", port), timeout=timeout)
    except BaseException:
        server.stop()
        raise
    marker.write_text(json.dumps({"url": url, "pid": server.proc.pid if server.proc else None}))
    log.info("chroma server on %s serves %s", url, settings.chroma_path)
    return server
