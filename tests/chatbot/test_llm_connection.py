"""The chat's LLM client survives an endpoint that closes a kept-alive connection as it is reused.

llama.cpp's server (cpp-httplib) closes idle keep-alive connections after 5 s, the same as httpx's
pool expiry: a request sent on such a connection as the server closes it fails with "Server
disconnected without sending a response" (seen in ``bench_answers_language.py`` after a few
hundred calls; a user's turn failed the same way). Nothing was sent back, so the request is sent
again, once, on a new connection. A real TCP server here answers the first request of each
connection and closes the connection when a second request arrives on it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from chatbot import build_chat_model


def _sse_body(text: str) -> bytes:
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}],
    }
    end = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    events = [json.dumps(chunk), json.dumps(end), "[DONE]"]
    return "".join(f"data: {e}\n\n" for e in events).encode()


class OneRequestPerConnection:
    """An OpenAI-compatible endpoint that closes a connection when a second request arrives on it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.answered = 0
        self.dropped = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            for n in range(2):
                data = b""
                while b"\r\n\r\n" not in data:
                    got = conn.recv(65536)
                    if not got:
                        return
                    data += got
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(h.split(b":")[1])
                        for h in head.split(b"\r\n")
                        if h.lower().startswith(b"content-length")
                    ),
                    0,
                )
                while len(body) < length:
                    body += conn.recv(65536)
                if n == 1:  # the kept-alive connection is reused: close it, nothing sent back
                    self.dropped += 1
                    return
                payload = _sse_body(f"answer {self.answered + 1}")
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: keep-alive\r\n"
                    + f"content-length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                self.answered += 1

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close alone does not
        except OSError:
            pass
        self.sock.close()


@pytest.fixture
def endpoint() -> Iterator[OneRequestPerConnection]:
    server = OneRequestPerConnection()
    yield server
    server.close()


def test_a_request_on_a_connection_the_server_closed_is_sent_again(endpoint: OneRequestPerConnection) -> None:
    llm = build_chat_model(f"http://127.0.0.1:{endpoint.port}/v1", "k", "m", 0.0, 16, 10.0)

    async def ask_three_times() -> list[str]:
        return [str((await llm.ainvoke(f"question {i}")).content) for i in range(3)]

    answers = asyncio.run(ask_three_times())
    assert answers == ["answer 1", "answer 2", "answer 3"]
    # Each reuse of the pooled connection was dropped by the server, then sent again on a new one.
    assert endpoint.dropped == 2 and endpoint.connections == 3


def test_a_dead_endpoint_still_fails_at_once(endpoint: OneRequestPerConnection) -> None:
    """Only a request the endpoint never answered is sent again, once: a dead endpoint is an error."""
    import openai

    endpoint.close()
    llm = build_chat_model(f"http://127.0.0.1:{endpoint.port}/v1", "k", "m", 0.0, 16, 10.0)
    with pytest.raises(openai.APIConnectionError) as raised:
        asyncio.run(llm.ainvoke("question"))
    chain = [raised.value]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)  # type: ignore[arg-type]
    assert any(isinstance(e, httpx.ConnectError) for e in chain), chain
