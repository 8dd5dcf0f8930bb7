"""Readiness: which dependency is down, cheaply (``GET /readyz``, also ``GET /healthz?ready=1``).

``/healthz`` stays liveness (the process answers). Readiness probes each dependency the app uses:

==============  ========  ===============================================================
probe           required  how
==============  ========  ===============================================================
``llm``         yes       ``GET {base_url}/models`` on the OpenAI-compatible endpoint
``chatlog``     yes       ``SELECT 1`` on the chat-log database
``chroma``      yes       the index's chunk count (embedded Chroma or the Chroma server)
``collector``   no        a TCP connection to the OTLP endpoint, when telemetry exports
``labeling``    no        an HTTP request to the Argilla / Label Studio URL, when configured
``langsmith``   no        ``GET {LANGSMITH_ENDPOINT}/info``, when a LangSmith key is set and the
                          endpoint is not the public default (no probe leaves the machine
                          unasked: the hosted API is only probed once the sink sends to it)
``traces``      no        a TCP connection to the collector's upstream (Phoenix, SigNoz:
                          ``RAGLOOP_TRACES_FORWARD``), when set: down, spans wait in the collector
==============  ========  ===============================================================

A required probe down makes the app ``not_ready`` (HTTP 503: a load balancer should send turns
elsewhere); an optional one down makes it ``degraded`` (HTTP 200: chats still work, exports wait
in the outbox). Each probe runs in a worker thread, bounded by ``RAGLOOP_READY_TIMEOUT``, and its
answer is reused for ``RAGLOOP_READY_CACHE`` seconds, so polling readiness costs the dependencies
at most one probe each per period; a probe still running is not started again.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ragloop.settings import Settings, secret_value


@dataclass
class Probe:
    """One dependency check: ``fn`` returns a short detail or raises when the dependency is down."""

    name: str
    fn: Callable[[], str]
    required: bool = True


@dataclass
class _Result:
    ok: bool
    detail: str
    ms: float
    at: float


class Readiness:
    """Runs :class:`Probe` s with a timeout and caches their answers."""

    def __init__(self, probes: list[Probe], *, cache_s: float = 5.0, timeout_s: float = 2.0) -> None:
        """Args: probes to run; cache_s seconds an answer is reused; timeout_s per probe."""
        self.probes = probes
        self.cache_s = cache_s
        self.timeout_s = timeout_s
        self._results: dict[str, _Result] = {}
        self._running: dict[str, asyncio.Future[Any]] = {}
        self.probe_runs = 0  # probes actually run (not answered from the cache), for tests

    async def _run(self, probe: Probe) -> _Result:
        cached = self._results.get(probe.name)
        now = time.monotonic()
        if cached is not None and now - cached.at < self.cache_s:
            return cached
        fut = self._running.get(probe.name)
        if fut is None or fut.done():
            self.probe_runs += 1
            fut = asyncio.ensure_future(asyncio.to_thread(probe.fn))
            self._running[probe.name] = fut
        started = time.perf_counter()
        try:
            detail = await asyncio.wait_for(asyncio.shield(fut), self.timeout_s)
            result = _Result(True, str(detail), 0.0, now)
        except TimeoutError:
            result = _Result(False, f"no answer within {self.timeout_s:g} s", 0.0, now)
        except Exception as exc:  # noqa: BLE001 - a probe reports, never raises
            result = _Result(False, _describe(exc), 0.0, now)
        result.ms = round((time.perf_counter() - started) * 1000, 1)
        self._results[probe.name] = result
        return result

    async def check(self) -> dict[str, Any]:
        """Run (or reuse) every probe.

        Returns:
            ``{"status": "ready"|"degraded"|"not_ready", "down": [names], "checks": {name: {...}}}``
            where each check has ``ok``, ``required``, ``detail`` and ``ms`` (probe time).
        """
        results = await asyncio.gather(*(self._run(p) for p in self.probes))
        checks = {
            p.name: {"ok": r.ok, "required": p.required, "detail": r.detail, "ms": r.ms}
            for p, r in zip(self.probes, results, strict=True)
        }
        down = [name for name, c in checks.items() if not c["ok"]]
        if any(checks[n]["required"] for n in down):
            status = "not_ready"
        else:
            status = "degraded" if down else "ready"
        return {"status": status, "down": down, "checks": checks}


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:200]}"


def _http_probe(url: str, timeout_s: float, headers: dict[str, str] | None = None) -> Callable[[], str]:
    def probe() -> str:
        import httpx

        response = httpx.get(url, timeout=timeout_s, headers=headers or {})
        if response.status_code >= 500:
            raise RuntimeError(f"HTTP {response.status_code} from {url}")
        return f"HTTP {response.status_code}"

    return probe


def _tcp_probe(endpoint: str, timeout_s: float) -> Callable[[], str]:
    parts = urlsplit(endpoint if "//" in endpoint else f"http://{endpoint}")
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 4317)

    def probe() -> str:
        with socket.create_connection((host, port), timeout=timeout_s):
            return f"{host}:{port} accepts connections"

    return probe


def _collector_endpoint(settings: Settings) -> str | None:
    if not settings.telemetry:
        return None
    try:
        from monitoring._otlp import resolve_endpoint
    except ImportError:
        return settings.otlp_endpoint
    return resolve_endpoint(settings)


def default_probes(settings: Settings, service: Any) -> list[Probe]:
    """The probes of an app built from ``settings`` around ``service`` (its chat log and retriever)."""
    timeout = settings.ready_timeout_s
    key = secret_value(settings.openai_api_key) or ""
    llm = _http_probe(
        settings.llm_base_url.rstrip("/") + "/models", timeout, {"Authorization": f"Bearer {key}"}
    )

    def chatlog() -> str:
        from sqlalchemy import text

        with service.chatlog.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return service.chatlog.engine.dialect.name

    def chroma() -> str:
        return f"{int(service.retriever.count())} chunks"

    probes = [Probe("llm", llm), Probe("chatlog", chatlog), Probe("chroma", chroma)]
    endpoint = _collector_endpoint(settings)
    if endpoint:
        probes.append(Probe("collector", _tcp_probe(endpoint, timeout), required=False))
    labeling = settings.argilla_api_url or settings.label_studio_url
    if labeling:
        probes.append(Probe("labeling", _http_probe(labeling, timeout), required=False))
    langsmith = settings.langsmith_endpoint.rstrip("/")
    if secret_value(settings.langsmith_api_key) and langsmith != _LANGSMITH_DEFAULT:
        probes.append(Probe("langsmith", _http_probe(f"{langsmith}/info", timeout), required=False))
    if settings.traces_endpoint:
        probes.append(Probe("traces", _tcp_probe(settings.traces_endpoint, timeout), required=False))
    return probes


#: The hosted LangSmith API (the setting's default): not probed, see the table above.
_LANGSMITH_DEFAULT = "https://api.smith.langchain.com"


def readiness_from(settings: Settings, service: Any) -> Readiness:
    """The readiness view of an app: :func:`default_probes`, cached and bounded per the settings."""
    return Readiness(
        default_probes(settings, service), cache_s=settings.ready_cache_s, timeout_s=settings.ready_timeout_s
    )
