"""Span attribute keys, span names and metric names: one constant each, no literals at call sites.

OpenTelemetry GenAI and OpenInference names are reused where they exist, so SigNoz, Phoenix and
any other OpenTelemetry backend show them without configuration; ``ragloop.*`` names fill the gaps.

Metric labels are bounded; none takes its value from user input (audited, issue 9 fault 10):
``http.route`` is a route template or :data:`HTTP_ROUTE_UNMATCHED`; the method a standard one or
``_OTHER``; the status and ``error.type`` the status code the app sent; the turn status, token type,
feedback value, score name, export signal, outbox sink/status come from fixed sets in the code; the
model is the configured one (or the one the endpoint reports); job gauges and drift targets are
named by the jobs. Ids, paths, query strings and texts go on spans only, never on metrics.
"""

from __future__ import annotations

# --- resource ----------------------------------------------------------------------------------
SERVICE_NAME = "service.name"
"""OpenTelemetry resource: the service (``OTEL_SERVICE_NAME``)."""
SERVICE_VERSION = "service.version"
"""OpenTelemetry resource: the ragloop version."""
DEPLOYMENT_ENVIRONMENT = "deployment.environment.name"
"""OpenTelemetry resource: dev, staging, prod (``RAGLOOP_ENVIRONMENT``)."""
DEPLOYMENT_ENVIRONMENT_LEGACY = "deployment.environment"
"""The pre-1.27 name of the environment attribute, still what SigNoz filters on."""
RAGLOOP_MODEL = "ragloop.model"
"""Resource: the chat model the app is configured with."""
RAGLOOP_PROMPT_VERSION = "ragloop.prompt.version"
"""Resource and span: version of the prompt templates."""
RAGLOOP_INDEX_VERSION = "ragloop.index.version"
"""Resource and span: version of the retrieval index."""

# --- span names --------------------------------------------------------------------------------
SPAN_TURN = "chat.turn"
"""The whole chat turn (child of the HTTP server span, parent of the LangChain spans)."""
SPAN_CHATLOG = "chatlog.{operation}"
"""A chat-log write; formatted with the operation (``start_turn``, ``finish_turn``)."""
SPAN_RETRIEVAL = "retrieval.documents"
"""A RETRIEVER span of our own, only when the chain's retrieve step has no span to annotate (the
documents normally go on OpenLLMetry's ``execute_task retrieve`` span)."""
SPAN_FEEDBACK = "chat.feedback"
"""User feedback, a child of the turn's root span in the turn's trace, linked to the turn span."""
SPAN_SCORE = "eval.score"
"""An evaluation score attached to a turn's trace."""

# --- OpenInference ------------------------------------------------------------------------------
OPENINFERENCE_SPAN_KIND = "openinference.span.kind"
"""OpenInference: CHAIN, LLM, RETRIEVER, EVALUATOR ... (Phoenix's span type)."""
INPUT_VALUE = "input.value"
"""OpenInference: the span's input text."""
OUTPUT_VALUE = "output.value"
"""OpenInference: the span's output text."""
SESSION_ID = "session.id"
"""OpenInference: groups a conversation's traces in Phoenix (the conversation id)."""
RETRIEVAL_DOCUMENTS = "retrieval.documents"
"""OpenInference: prefix of the flattened retrieved documents list."""
DOCUMENT_ID = "document.id"
"""OpenInference: a retrieved document's id (under ``retrieval.documents.N.``)."""
DOCUMENT_SCORE = "document.score"
"""OpenInference: a retrieved document's score."""
DOCUMENT_CONTENT = "document.content"
"""OpenInference: a retrieved document's text (content tracing only)."""

# --- OpenTelemetry GenAI -----------------------------------------------------------------------
GEN_AI_SYSTEM = "gen_ai.system"
"""GenAI: the provider family (``openai`` for any OpenAI-compatible endpoint)."""
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
"""GenAI: model requested."""
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
"""GenAI: model that answered."""
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
"""GenAI: prompt tokens."""
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
"""GenAI: completion tokens."""
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
"""GenAI: why generation stopped."""
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"
"""GenAI metric attribute: ``input`` or ``output``."""
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
"""GenAI: the conversation id."""
GEN_AI_SERVER_TTFT = "gen_ai.server.time_to_first_token"
"""GenAI: seconds to the first token (span attribute here, measured by the client)."""

#: Attribute keys (and prefixes) that carry prompt or completion text: dropped when content
#: tracing is off, redacted when it is on. Prefixes end with a dot.
CONTENT_KEYS = (
    INPUT_VALUE,
    OUTPUT_VALUE,
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.prompt.",
    "gen_ai.completion.",
    "traceloop.entity.input",
    "traceloop.entity.output",
    "gen_ai.task.input",
    "gen_ai.task.output",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "db.query.result.document",
    "db.query.text",
    "llm.prompts",
    "llm.input_messages.",
    "llm.output_messages.",
    "ragloop.user_message",
    "ragloop.feedback.comment",
    "ragloop.turn.standalone_question",
)
#: Key suffixes that carry text wherever they appear (``retrieval.documents.N.document.content``).
CONTENT_SUFFIXES = ("." + "document.content",)

# --- ragloop span attributes -------------------------------------------------------------------
TURN_ID = "ragloop.turn.id"
"""The chat-log turn id: find the trace of a chat-log row, and the row of a trace."""
CONVERSATION_ID = "ragloop.conversation.id"
"""The chat-log conversation id."""
TURN_STATUS = "ragloop.turn.status"
"""ok, no_context, error, rejected."""
TURN_STANDALONE_QUESTION = "ragloop.turn.standalone_question"
"""The condensed question (content tracing only)."""
USER_MESSAGE = "ragloop.user_message"
"""The user's message (content tracing only, redacted)."""
RETRIEVAL_TOP_SCORE = "ragloop.retrieval.top_score"
"""Best similarity score of the retrieval."""
RETRIEVAL_MS = "ragloop.retrieval.ms"
"""Retrieval latency in milliseconds."""
CHATLOG_OPERATION = "ragloop.chatlog.operation"
"""The chat-log write."""
FEEDBACK_VALUE = "ragloop.feedback.value"
"""+1 thumbs up, -1 thumbs down."""
FEEDBACK_COMMENT = "ragloop.feedback.comment"
"""The feedback comment (content tracing only, redacted)."""
SCORE_NAME = "ragloop.score.name"
"""Name of an evaluation score."""
SCORE_VALUE = "ragloop.score.value"
"""Value of an evaluation score."""
LINKED_TRACE_ID = "ragloop.linked.trace_id"
"""Hex trace id of the turn that feedback or a score belongs to."""
COST_USD = "ragloop.cost.usd"
"""Estimated cost of the turn from the price table."""
EVENT_FEEDBACK = "ragloop.feedback"
"""Span event name: feedback recorded (also on the turn-side span when it is still open)."""

# --- HTTP (OpenTelemetry HTTP semantic conventions) ---------------------------------------------
HTTP_ROUTE = "http.route"
"""The matched route template."""
HTTP_METHOD = "http.request.method"
"""GET, POST ..."""
HTTP_STATUS = "http.response.status_code"
"""The response status code."""
URL_PATH = "url.path"
"""Request path."""
ERROR_TYPE = "error.type"
"""Error class or status code of a failed request or turn."""

# --- metrics -----------------------------------------------------------------------------------
M_HTTP_DURATION = "http.server.request.duration"
"""Histogram (s): HTTP requests by route, method and status; its count is the request rate."""
M_TURN_DURATION = "ragloop.turn.duration"
"""Histogram (s): whole turn latency by status."""
M_TTFT = "ragloop.turn.time_to_first_token"
"""Histogram (s): time to the first answer token."""
M_RETRIEVAL_DURATION = "ragloop.retrieval.duration"
"""Histogram (s): retrieval latency."""
M_TOKEN_USAGE = "gen_ai.client.token.usage"
"""GenAI histogram ({token}): input/output tokens per call, by model."""
M_COST = "ragloop.llm.cost"
"""Counter (USD): estimated LLM cost from the price table, by model."""
M_FEEDBACK = "ragloop.feedback"
"""Counter: ratings given, by value; counts raters, not clicks. A rater's first rating adds one to
its value; repeating the same rating or adding a comment to it adds nothing; changing it adds one to
the new value (and one to :data:`M_FEEDBACK_RETRACTED` for the old). Ratings standing in a window
are ``increase(given) - increase(retracted)`` per value."""
M_FEEDBACK_RETRACTED = "ragloop.feedback.retracted"
"""Counter: ratings withdrawn (changed or removed) by their rater, by the value they had."""
M_TOP_SCORE = "ragloop.retrieval.top_score"
"""Histogram: best retrieval score per turn."""
M_SCORE = "ragloop.eval.score"
"""Histogram: evaluation scores attached to turns, by score name."""
M_GAUGE = "ragloop.job.value"
"""Gauge family set by drift and evaluation jobs; the ``ragloop.gauge.name`` attribute names it."""
GAUGE_NAME = "ragloop.gauge.name"
"""Attribute naming a member of the gauge family."""
M_EXPORT_ERRORS = "ragloop.telemetry.export.errors"
"""Counter: failed exports by signal (traces, metrics, logs, langsmith)."""
SIGNAL = "ragloop.telemetry.signal"
"""Attribute: traces, metrics, logs or langsmith."""
M_TELEMETRY_DROPPED = "ragloop.telemetry.dropped"
"""Counter: telemetry items the app gave up on, by :data:`SIGNAL` and :data:`DROP_REASON`: spans and
log records of a failed or skipped export batch, metric data points of a failed export, spans and
deferred measurements pushed out of a full queue. The exporters never retry (the chat log is the
source of truth), so each count is lost for the backend."""
DROP_REASON = "ragloop.telemetry.reason"
"""Attribute of :data:`M_TELEMETRY_DROPPED`: one of :data:`DROP_REASONS`."""
DROP_EXPORT_FAILED = "export_failed"
"""The collector refused the batch or could not be reached (the circuit breaker opens)."""
DROP_CIRCUIT_OPEN = "circuit_open"
"""The batch was dropped without a connection attempt while the circuit breaker was open."""
DROP_QUEUE_FULL = "queue_full"
"""The bounded queue was full: the oldest item made room for the new one."""
#: Every value of :data:`DROP_REASON`.
DROP_REASONS = (DROP_EXPORT_FAILED, DROP_CIRCUIT_OPEN, DROP_QUEUE_FULL)
#: The signals :data:`M_TELEMETRY_DROPPED` counts.
DROP_SIGNALS = ("traces", "metrics", "logs")
FEEDBACK_VALUE_ATTR = "value"
"""Metric attribute of :data:`M_FEEDBACK`: ``up`` or ``down``."""
FEEDBACK_UP = "up"
"""Value of :data:`FEEDBACK_VALUE_ATTR` for a thumbs up (+1)."""
FEEDBACK_DOWN = "down"
"""Value of :data:`FEEDBACK_VALUE_ATTR` for a thumbs down (-1)."""
HTTP_ROUTE_UNMATCHED = "unmatched"
"""The one :data:`HTTP_ROUTE` value of every request no route template matched (404s, scanners):
a label never takes its value from the request path."""
M_OUTBOX_ITEMS = "ragloop.outbox.items"
"""Observable gauge: outbox items by :data:`OUTBOX_SINK` and :data:`OUTBOX_STATUS` (pending, dead ...)."""
OUTBOX_SINK = "sink"
"""Attribute of :data:`M_OUTBOX_ITEMS`: the sink's registered name (langsmith, arize ...)."""
OUTBOX_STATUS = "status"
"""Attribute of :data:`M_OUTBOX_ITEMS`: the delivery state of the items."""

# --- evaluation score names (values of :data:`SCORE_NAME`) ---------------------------------------
SCORE_FAITHFULNESS_LOCAL = "faithfulness_local"
"""Score: share of the answer supported by the retrieved context, by the local NLI/embedding scorer
(``eval.OnlineEvaluator``'s default; in [0, 1])."""
SCORE_FAITHFULNESS_LLM = "faithfulness_llm"
"""Score: faithfulness judged by an LLM (``eval`` judge; in [0, 1])."""
SCORE_ANSWER_RELEVANCE = "answer_relevance"
"""Score: how well the answer addresses the question (in [0, 1])."""
SCORE_CONTEXT_RELEVANCE = "context_relevance"
"""Score: how relevant the retrieved context is to the question (in [0, 1])."""
#: The faithfulness score the low-faithfulness alert and the quality dashboard's default use.
SCORE_FAITHFULNESS_ALERTED = SCORE_FAITHFULNESS_LOCAL
#: Every score name the evaluators emit.
SCORE_NAMES = (
    SCORE_FAITHFULNESS_LOCAL,
    SCORE_FAITHFULNESS_LLM,
    SCORE_ANSWER_RELEVANCE,
    SCORE_CONTEXT_RELEVANCE,
)

# --- Prometheus names (what the OpenTelemetry Prometheus exporter makes of the names above) --------
# Dots become underscores, the unit is appended and counters get ``_total``. The dashboards
# (grafana/build_dashboards.py) and alert rules (grafana/alerts/ragloop.rules.yml) use these; a test
# checks every query against the series the real code emits.
PROM_HTTP_DURATION = "http_server_request_duration_seconds"
"""Prometheus histogram of :data:`M_HTTP_DURATION`."""
PROM_TURN_DURATION = "ragloop_turn_duration_seconds"
"""Prometheus histogram of :data:`M_TURN_DURATION`."""
PROM_TTFT = "ragloop_turn_time_to_first_token_seconds"
"""Prometheus histogram of :data:`M_TTFT`."""
PROM_RETRIEVAL_DURATION = "ragloop_retrieval_duration_seconds"
"""Prometheus histogram of :data:`M_RETRIEVAL_DURATION`."""
PROM_TOKEN_USAGE = "gen_ai_client_token_usage"
"""Prometheus histogram of :data:`M_TOKEN_USAGE`."""
PROM_COST = "ragloop_llm_cost_USD_total"
"""Prometheus counter of :data:`M_COST`."""
PROM_FEEDBACK = "ragloop_feedback_total"
"""Prometheus counter of :data:`M_FEEDBACK`."""
PROM_FEEDBACK_RETRACTED = "ragloop_feedback_retracted_total"
"""Prometheus counter of :data:`M_FEEDBACK_RETRACTED`."""
PROM_TOP_SCORE = "ragloop_retrieval_top_score"
"""Prometheus histogram of :data:`M_TOP_SCORE`."""
PROM_SCORE = "ragloop_eval_score"
"""Prometheus histogram of :data:`M_SCORE`."""
PROM_JOB_GAUGE = "ragloop_job_value"
"""Prometheus gauge of :data:`M_GAUGE`."""
PROM_EXPORT_ERRORS = "ragloop_telemetry_export_errors_total"
"""Prometheus counter of :data:`M_EXPORT_ERRORS`."""
PROM_TELEMETRY_DROPPED = "ragloop_telemetry_dropped_total"
"""Prometheus counter of :data:`M_TELEMETRY_DROPPED`."""
PROM_LABEL_DROP_REASON = "ragloop_telemetry_reason"
"""Prometheus label of :data:`DROP_REASON`."""
PROM_OUTBOX_ITEMS = "ragloop_outbox_items"
"""Prometheus gauge of :data:`M_OUTBOX_ITEMS`."""
PROM_LABEL_ROUTE = "http_route"
"""Prometheus label of :data:`HTTP_ROUTE`."""
PROM_LABEL_METHOD = "http_request_method"
"""Prometheus label of :data:`HTTP_METHOD`."""
PROM_LABEL_STATUS = "http_response_status_code"
"""Prometheus label of :data:`HTTP_STATUS`."""
PROM_LABEL_SCORE_NAME = "ragloop_score_name"
"""Prometheus label of :data:`SCORE_NAME`."""
PROM_LABEL_FEEDBACK_VALUE = FEEDBACK_VALUE_ATTR
"""Prometheus label of :data:`FEEDBACK_VALUE_ATTR`."""
PROM_LABEL_SIGNAL = "ragloop_telemetry_signal"
"""Prometheus label of :data:`SIGNAL`."""
PROM_LABEL_MODEL = "gen_ai_request_model"
"""Prometheus label of :data:`GEN_AI_REQUEST_MODEL`."""
PROM_LABEL_TOKEN_TYPE = "gen_ai_token_type"
"""Prometheus label of :data:`GEN_AI_TOKEN_TYPE`."""
PROM_LABEL_TURN_STATUS = "ragloop_turn_status"
"""Prometheus label of :data:`TURN_STATUS`."""
PROM_LABEL_GAUGE_NAME = "ragloop_gauge_name"
"""Prometheus label of :data:`GAUGE_NAME`."""
PROM_DRIFT_ALARM = "ragloop_drift_alarm"
"""Prometheus gauge of :data:`M_DRIFT_ALARM` (the drift job's textfile: no unit suffix)."""
PROM_DRIFT_LAST_RUN = "ragloop_drift_last_run_timestamp"
"""Prometheus gauge of :data:`M_DRIFT_LAST_RUN`."""
PROM_LABEL_DRIFT_TARGET = "ragloop_drift_target"
"""Prometheus label of :data:`DRIFT_TARGET`."""

#: Histogram buckets (seconds) for LLM-scale latencies: tens of milliseconds to a minute.
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
#: Token count buckets.
TOKEN_BUCKETS = (1, 4, 16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
#: Score buckets (similarity and evaluation scores in [0, 1]).
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

# --- drift -------------------------------------------------------------------------------------
M_DRIFT_P_VALUE = "ragloop.drift.p_value"
"""Gauge: permutation p-value of the last drift run, by :data:`DRIFT_TARGET` (small = drift)."""
M_DRIFT_STATISTIC = "ragloop.drift.statistic"
"""Gauge: drift evidence (-log10 min-p) of the last run, by :data:`DRIFT_TARGET`."""
M_DRIFT_THRESHOLD = "ragloop.drift.threshold"
"""Gauge: the statistic's calibrated threshold (its 1 - alpha permutation-null quantile)."""
M_DRIFT_ALARM = "ragloop.drift.alarm"
"""Gauge: 1 when the last run raised a drift alarm for :data:`DRIFT_TARGET`, else 0."""
M_DRIFT_INSUFFICIENT_DATA = "ragloop.drift.insufficient_data"
"""Gauge: 1 when the last run had too few turns to decide :data:`DRIFT_TARGET` (then no alarm), else 0."""
M_DRIFT_WINDOW_ROWS = "ragloop.drift.window.rows"
"""Gauge: turns in the compared windows, by :data:`DRIFT_SIDE`."""
M_DRIFT_TOP_CLUSTER_EXCESS = "ragloop.drift.top_cluster.excess"
"""Gauge: current-minus-reference share of the most over-represented query cluster."""
M_DRIFT_LAST_RUN = "ragloop.drift.last_run.timestamp"
"""Gauge (unix seconds): when the last drift run finished (alert when stale)."""
DRIFT_TARGET = "ragloop.drift.target"
"""Attribute: query_embedding, answer_embedding, features, or ``feature:<name>``."""
DRIFT_SIDE = "ragloop.drift.side"
"""Attribute: reference or current."""
DRIFT_RUN_ID = "ragloop.drift.run_id"
"""Span attribute: the drift run id (row of the ``drift_runs`` table)."""
DRIFT_REFERENCE = "ragloop.drift.reference"
"""Span attribute: how the reference window was chosen."""
SPAN_DRIFT_RUN = "drift.run"
"""Span of one drift run; carries the decisions as ``ragloop.drift.<target>.<field>`` attributes."""
