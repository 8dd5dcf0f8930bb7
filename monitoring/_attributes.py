"""Pure attribute logic: redaction, price table, resource and span attributes as plain data.

Nothing here touches OpenTelemetry objects or I/O, so every rule is tested on small inputs.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from chatlog import redact
from monitoring import semconv as sc

# ``redact`` (imported above) is the chat log's: every exporting package applies the same rules.


@functools.lru_cache(maxsize=4096)
def is_content_key(key: str) -> bool:
    """True when an attribute key carries prompt, completion or document text.

    Cached: span attribute keys are a small vocabulary, and the check runs for every attribute of
    every exported span.
    """
    if key.endswith(sc.CONTENT_SUFFIXES):
        return True
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in sc.CONTENT_KEYS)


def filter_attributes(
    attributes: Mapping[str, Any], trace_content: bool, redaction: bool
) -> dict[str, Any] | None:
    """Apply the privacy settings to span attributes; None when nothing changes.

    Content off drops every content key; content on with redaction masks strings in content keys.
    """
    changed = False
    out: dict[str, Any] = {}
    # OpenLLMetry writes each input/output twice (traceloop.entity.* and gen_ai.*): redact once.
    seen: dict[str, str] = {}
    for key, value in attributes.items():
        if is_content_key(key):
            if not trace_content:
                changed = True
                continue
            if redaction:
                new = _redact_value(value, seen)
                changed = changed or new != value
                value = new
        out[key] = value
    return out if changed else None


def _redact_value(value: Any, seen: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _redact_once(value, seen)
    if isinstance(value, tuple | list):
        return type(value)(_redact_once(v, seen) if isinstance(v, str) else v for v in value)
    return value


def _redact_once(text: str, seen: dict[str, str]) -> str:
    if text not in seen:
        seen[text] = redact(text)
    return seen[text]


def parse_kv(text: str | None) -> dict[str, str]:
    """Parse ``k=v,k2=v2`` (OTEL_EXPORTER_OTLP_HEADERS, OTEL_RESOURCE_ATTRIBUTES); blanks ignored."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if "=" in part:
            key, value = part.split("=", 1)
            if key.strip():
                out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class Price:
    """USD per million input and output tokens."""

    input_per_m: float
    output_per_m: float


def parse_prices(text: str) -> dict[str, Price]:
    """Parse ``model=in:out,*=in:out`` into a price table; ``*`` is the fallback model.

    Raises:
        ValueError: an entry is not ``name=number:number``.
    """
    table: dict[str, Price] = {}
    for entry in filter(None, (p.strip() for p in text.split(","))):
        name, sep, rate = entry.partition("=")
        inp, sep2, outp = rate.partition(":")
        if not sep or not sep2:
            raise ValueError(f"price entry {entry!r} is not 'model=input:output'")
        table[name.strip()] = Price(float(inp), float(outp))
    return table


def estimate_cost(
    prices: Mapping[str, Price], model: str | None, input_tokens: int | None, output_tokens: int | None
) -> float | None:
    """Estimated USD of one turn's calls.

    Returns:
        The cost; 0.0 when the model has no price (and no ``*`` fallback); None when a token count
        is unknown (None: the endpoint returned no usage), since an unknown count is not zero.
    """
    price = prices.get(model or "") or prices.get("*")
    if price is None:
        return 0.0
    if input_tokens is None or output_tokens is None:
        return None
    return (input_tokens * price.input_per_m + output_tokens * price.output_per_m) / 1e6


def resource_attributes(
    service_name: str,
    version: str,
    environment: str,
    model: str,
    prompt_version: str,
    index_version: str | None,
    extra: Mapping[str, str],
) -> dict[str, str]:
    """Resource attributes of every signal; OTEL_RESOURCE_ATTRIBUTES entries (``extra``) win."""
    attrs = {
        sc.SERVICE_NAME: service_name,
        sc.SERVICE_VERSION: version,
        sc.DEPLOYMENT_ENVIRONMENT: environment,
        sc.DEPLOYMENT_ENVIRONMENT_LEGACY: environment,
        sc.RAGLOOP_MODEL: model,
        sc.RAGLOOP_PROMPT_VERSION: prompt_version,
    }
    if index_version:
        attrs[sc.RAGLOOP_INDEX_VERSION] = index_version
    return {**attrs, **extra}


def retrieval_attributes(chunks: Iterable[Any], trace_content: bool) -> Iterator[tuple[str, Any]]:
    """OpenInference ``retrieval.documents.N.document.*`` pairs for retrieved chunks."""
    top: float | None = None
    for i, chunk in enumerate(chunks):
        prefix = f"{sc.RETRIEVAL_DOCUMENTS}.{i}."
        score = float(chunk.score)
        top = score if top is None else max(top, score)
        yield prefix + sc.DOCUMENT_ID, str(chunk.chunk_id)
        yield prefix + sc.DOCUMENT_SCORE, score
        if trace_content:
            yield prefix + sc.DOCUMENT_CONTENT, str(chunk.text)
    if top is not None:
        yield sc.RETRIEVAL_TOP_SCORE, top


def turn_end_attributes(record: Mapping[str, Any], cost: float | None) -> Iterator[tuple[str, Any]]:
    """Span attributes of a finished turn from its chat-log row (no text: that is content)."""
    yield sc.TURN_STATUS, str(record.get("status"))
    for key, attr in (
        ("input_tokens", sc.GEN_AI_USAGE_INPUT_TOKENS),
        ("output_tokens", sc.GEN_AI_USAGE_OUTPUT_TOKENS),
    ):
        if record.get(key) is not None:
            yield attr, int(record[key])
    if record.get("ttft_ms") is not None:
        yield sc.GEN_AI_SERVER_TTFT, float(record["ttft_ms"]) / 1000
    if record.get("retrieval_ms") is not None:
        yield sc.RETRIEVAL_MS, float(record["retrieval_ms"])
    if record.get("error_type"):
        yield sc.ERROR_TYPE, str(record["error_type"])
    if cost:
        yield sc.COST_USD, cost


def feedback_label(value: int) -> str:
    """``up`` for +1, ``down`` otherwise (the metric attribute value)."""
    return sc.FEEDBACK_UP if value > 0 else sc.FEEDBACK_DOWN


def feedback_moves(previous: int | None, value: int | None) -> list[tuple[str, str]]:
    """Counter moves of one rater's feedback event: ``[("given" | "retracted", "up" | "down"), ...]``.

    Counters count raters, not clicks: the same rating again (or a comment added to it) moves
    nothing; a first rating adds one ``given``; a changed rating retracts the old value and gives
    the new one; a withdrawn rating (value None or 0) only retracts.
    """
    old = feedback_label(previous) if previous else None
    new = feedback_label(value) if value else None
    if old == new:
        return []
    moves = []
    if old is not None:
        moves.append(("retracted", old))
    if new is not None:
        moves.append(("given", new))
    return moves
