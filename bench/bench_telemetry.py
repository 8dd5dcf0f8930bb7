"""Per-turn overhead of the full instrumentation vs the same service with monitoring off.

"On" is the whole :class:`monitoring.Telemetry`: OpenLLMetry spans (LangChain, OpenAI, Chroma),
our turn/retrieval/chat-log spans, the privacy filter with redaction, metrics (Prometheus + OTLP
push), logs over OTLP, exported to a real rotel collector. "Off" is the no-op observer. Both write
the chat log (it is the product, not monitoring). Off and on turns alternate in one worker process
(off turns run with every instrumentation suppressed), so the machine's load, shared with other
work, hits both sides alike; the paired difference (each on turn minus its neighbouring off turn)
is reported too.

Endpoints: a zero-latency OpenAI-compatible server (exposes the fixed cost) and the real local LLM
(temperature 0, the same question each turn, so both sides generate the same tokens).
Also: RSS growth over 500 turns with the collector stopped (bounded queues), and the cost per
HTTP request of the request instrumentation: no middleware, ours (``monitoring._http``: bounded
labels, one deferred measurement), and OpenTelemetry's maintained ASGI middleware
(``opentelemetry-instrumentation-asgi``, when importable) recording into the same MeterProvider.

Protocol (``bench/_common.py``): every cell warms up, runs ``--repeat`` times (at least 3; each
interleaved repeat is a fresh worker process), and reports the median with each repeat's figure and
the load average. When the machine was busy before the run (1-minute load > 1.5 on 2 cores), the
results go to bench/results/tmp/telemetry.json and the committed figures stay.

Writes bench/results/telemetry.json: added_ms_p50, added_ms_p95 (zero-latency endpoint),
overhead_ratio_p50 (on / off, real LLM), rss_growth_mb_collector_down, http_added_us_per_request,
with details and load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench._common import Run  # noqa: E402
from ragloop.process import ManagedProcess, free_port, http_ok  # noqa: E402
from ragloop.settings import Settings  # noqa: E402

QUESTION = "How do I copy a file?"
DOC = """# Working with files

## How do I copy a file?

Use `shutil.copy(src, dst)` to copy a file's contents and permission bits, or `shutil.copy2` to
also keep metadata such as modification times.
"""


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--turns", type=int, default=300, help="Turns per side, zero-latency endpoint.")
    p.add_argument("--llm-turns", type=int, default=10, help="Turns per side, real LLM (0 skips).")
    p.add_argument("--outage-turns", type=int, default=500, help="Turns with the collector stopped.")
    p.add_argument("--max-tokens", type=int, default=32, help="Answer cap with the real LLM.")
    p.add_argument("--repeat", type=int, default=3, help="Repeats of each cell (at least 3).")
    p.add_argument("--http-requests", type=int, default=2000, help="Requests per HTTP cell repeat.")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p.parse_args()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _rss_mb() -> float:
    import resource

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


# --- workers -----------------------------------------------------------------------------------
def _suppressed() -> Any:
    """Attach a context in which OpenTelemetry instrumentations (OpenLLMetry included) do nothing."""
    from opentelemetry import context
    from opentelemetry.instrumentation.utils import _SUPPRESS_INSTRUMENTATION_KEY

    return context.attach(context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))


def _interleaved(spec: dict[str, Any]) -> dict[str, Any]:
    """Off and on turns alternate in one process, so machine load hits both sides alike.

    "Off" is the no-op observer with every instrumentation suppressed for the turn (what is left
    is OpenLLMetry's early-return check, microseconds); "on" is the full Telemetry.
    """
    from opentelemetry import context

    from chatbot import TurnObserver, build_service
    from monitoring import Telemetry

    settings = Settings(**spec["settings"])
    tel = Telemetry(settings, prompt_version="bench")
    on = build_service(settings, observer=cast(Any, tel))  # structurally a TurnObserver
    off_settings = settings.model_copy(update={"database_url": spec["settings"]["database_url"] + ".off"})
    off = build_service(off_settings, observer=TurnObserver(), retriever=on.retriever)

    async def turn(mode: str) -> float:
        token = _suppressed() if mode == "off" else None
        try:
            t0 = time.perf_counter()
            result = await (off if mode == "off" else on).run_turn(QUESTION)
            elapsed = (time.perf_counter() - t0) * 1000
        finally:
            if token is not None:
                context.detach(token)
        assert result.status == "ok", result
        return elapsed

    async def run() -> dict[str, list[float]]:
        for _ in range(spec["warmup"]):
            await turn("off")
            await turn("on")
        times: dict[str, list[float]] = {"off": [], "on": []}
        for i in tqdm(range(spec["turns"]), desc=spec["label"], leave=False):
            order = ("off", "on") if i % 2 == 0 else ("on", "off")
            for mode in order:
                times[mode].append(await turn(mode))
        return times

    out: dict[str, Any] = asyncio.run(run())
    out["export_failures"] = dict(tel.errors.counts)
    tel.shutdown()
    return out


def _rss(spec: dict[str, Any]) -> dict[str, Any]:
    """RSS growth over ``turns`` turns in a fresh process (monitoring on or off)."""
    from chatbot import TurnObserver, build_service
    from monitoring import Telemetry

    settings = Settings(**spec["settings"])
    observer: Any = Telemetry(settings, prompt_version="bench") if spec["mode"] == "on" else TurnObserver()
    service = build_service(settings, observer=observer)

    async def run() -> list[float]:
        for _ in range(spec["warmup"]):
            await service.run_turn(QUESTION)
        rss = [_rss_mb()]
        for i in tqdm(range(spec["turns"]), desc=f"rss {spec['mode']}", leave=False):
            assert (await service.run_turn(QUESTION)).status == "ok"
            if i + 1 == spec["turns"] // 2:
                rss.append(_rss_mb())
        return [*rss, _rss_mb()]

    rss = asyncio.run(run())
    failures = dict(observer.errors.counts) if isinstance(observer, Telemetry) else {}
    observer.shutdown()
    # The second half shows whether growth stops once the bounded export queues are full.
    return {
        "rss_growth_mb": rss[-1] - rss[0],
        "rss_growth_mb_second_half": rss[-1] - rss[1],
        "rss_mb": rss,
        "export_failures": failures,
    }


def _spawn(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps({**spec, "kind": kind})],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# --- orchestration ----------------------------------------------------------------------------
def _index(data_dir: Path) -> None:
    import retrieval

    corpus = data_dir.parent / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    (corpus / "files.md").write_text(DOC)
    retrieval.ingest([corpus], Settings(data_dir=data_dir, collection="bench"), progress=False)


def _stats(times: dict[str, list[float]]) -> dict[str, Any]:
    off, on = times["off"], times["on"]
    return {
        "turns_per_side": len(off),
        "off_ms_p50": statistics.median(off),
        "on_ms_p50": statistics.median(on),
        "off_ms_p95": _pct(off, 0.95),
        "on_ms_p95": _pct(on, 0.95),
        "added_ms_p50": statistics.median(on) - statistics.median(off),
        "added_ms_p95": _pct(on, 0.95) - _pct(off, 0.95),
        # Paired: turn i "on" minus its neighbour "off" (same moment, same load).
        "paired_added_ms_p50": statistics.median(b - a for a, b in zip(off, on, strict=True)),
        "ratio_p50": statistics.median(on) / statistics.median(off),
        "export_failures": times.get("export_failures", {}),
    }


def _start_llm(tmp: Path) -> tuple[ManagedProcess, str]:
    port = free_port()
    argv = [sys.executable, "-m", "ragloop.cli", "llm", "serve", "--port", str(port), "--parallel", "1"]
    proc = ManagedProcess("llm", argv, tmp / "llm.log").start()
    proc.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/v1/models"), timeout=300)
    return proc, f"http://127.0.0.1:{port}/v1"


def main() -> None:
    """Run the benchmark (or one worker when re-invoked with --worker)."""
    args = _parse()
    if args.worker:
        spec = json.loads(args.worker)
        work = {"interleaved": _interleaved, "rss": _rss, "http": _http}[spec["kind"]]
        print(json.dumps(work(spec)))
        return
    from monitoring._instant_llm import InstantLLM
    from monitoring._stack import start_collector

    tmp = Path(tempfile.mkdtemp(prefix="bench-telemetry-"))
    data_dir = tmp / "data"
    _index(data_dir)
    grpc, http = free_port(), free_port()
    collector = start_collector(
        Settings(data_dir=tmp, collector_grpc_port=grpc, collector_http_port=http), None, tmp
    )
    common = {
        "data_dir": str(data_dir),
        "collection": "bench",
        "otlp_endpoint": f"http://127.0.0.1:{grpc}",  # a real collector that drops what it gets
        "metrics_export_interval_s": 5.0,
        "temperature": 0.0,
    }
    run = Run("telemetry")
    if args.repeat < 3:
        raise SystemExit("error: --repeat must be at least 3")
    results: dict[str, Any] = {}
    with InstantLLM() as instant, tqdm(total=4 + (args.llm_turns > 0), desc="phases") as bar:
        results["http"] = _spawn("http", {"requests": args.http_requests, "repeat": args.repeat})
        bar.update(1)
        s = {**common, "openai_base_url": instant.base_url, "database_url": f"sqlite:///{tmp}/instant.db"}
        spec = {"settings": s, "warmup": 10, "turns": args.turns, "label": "instant"}
        results["instant"] = _repeated(
            [_stats(_spawn("interleaved", {**spec, "label": f"instant {i + 1}"})) for i in range(args.repeat)]
        )
        bar.update(1)
        if args.llm_turns > 0:
            llm, url = _start_llm(tmp)
            try:
                s = {
                    **common,
                    "openai_base_url": url,
                    "max_tokens": args.max_tokens,
                    "database_url": f"sqlite:///{tmp}/llm.db",
                }
                spec = {"settings": s, "warmup": 1, "turns": args.llm_turns, "label": "llm"}
                results["llm"] = _repeated([_stats(_spawn("interleaved", spec)) for _ in range(args.repeat)])
            finally:
                llm.stop()
            bar.update(1)
        collector.stop()
        down = {
            **common,
            "openai_base_url": instant.base_url,
            "otlp_endpoint": f"http://127.0.0.1:{free_port()}",
        }
        for mode in ("on", "off"):
            spec = {"settings": {**down, "database_url": f"sqlite:///{tmp}/rss-{mode}.db"}, "warmup": 30}
            results[f"rss_{mode}"] = _spawn("rss", {**spec, "mode": mode, "turns": args.outage_turns})
            bar.update(1)
    _report(results, args, run)


def _repeated(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each numeric statistic over repeats, with every repeat kept."""
    out: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, int | float):
            out[key] = statistics.median(r[key] for r in runs)
            out[f"{key}_repeats"] = [r[key] for r in runs]
    out["export_failures"] = [r.get("export_failures", {}) for r in runs]
    return out


def _http(spec: dict[str, Any]) -> dict[str, Any]:
    """Microseconds per request through each request instrumentation (in-process ASGI calls)."""
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider

    from monitoring._http import TelemetryMiddleware, mount_prefixes
    from monitoring._metrics import Metrics
    from monitoring._tracing import ErrorCounter

    def app() -> Any:
        a = FastAPI()
        a.get("/api/conversations/{conversation_id}")(lambda conversation_id: {"id": conversation_id})
        return a

    metrics = Metrics(None, None, 60.0, ErrorCounter())
    tracer = TracerProvider().get_tracer("bench")  # spans made, none exported: the middleware's cost
    record = metrics.http_duration.record
    plain = app()
    ours = app()
    ours.add_middleware(
        TelemetryMiddleware,
        tracer=tracer,
        record=lambda sec, attrs: metrics.defer((record, sec, attrs)),
        mounts=lambda: mount_prefixes(ours),
    )
    cells: dict[str, Any] = {"none": plain, "ragloop": ours}
    try:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        otel = app()
        otel.add_middleware(
            OpenTelemetryMiddleware, tracer_provider=TracerProvider(), meter_provider=metrics.provider
        )
        cells["opentelemetry_asgi"] = otel
    except ImportError:
        cells["opentelemetry_asgi"] = None

    async def hit(a: Any, n: int) -> None:
        import httpx

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://b") as c:
            for i in range(n):
                (await c.get(f"/api/conversations/c{i}")).raise_for_status()

    from bench._common import load_average

    n, repeat = int(spec["requests"]), int(spec["repeat"])
    out: dict[str, Any] = {"requests_per_repeat": n}
    live = {name: a for name, a in cells.items() if a is not None}
    times: dict[str, list[float]] = {name: [] for name in live}
    for a in live.values():  # warm-up
        asyncio.run(hit(a, n))
    # Cells take turns within each repeat (rotating order), so load drifts hit all of them alike.
    for r in range(repeat):
        names = list(live)
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            asyncio.run(hit(live[name], n))
            times[name].append(time.perf_counter() - t0)
            metrics.deferred.drain()
    for name in cells:
        if name not in live:
            out[name] = "not installed (pip install opentelemetry-instrumentation-asgi)"
            continue
        median = statistics.median(times[name])
        out[name] = {
            "median_s": median,
            "times_s": [round(t, 6) for t in times[name]],
            "load": load_average(),
            "us_per_request": median / n * 1e6,
        }
    for name in ("ragloop", "opentelemetry_asgi"):
        if isinstance(out[name], dict):
            out[f"{name}_added_us_per_request"] = out[name]["us_per_request"] - out["none"]["us_per_request"]
    return out


def _report(results: dict[str, Any], args: argparse.Namespace, run: Any) -> None:
    inst, llm = results["instant"], results.get("llm")
    summary = {
        "added_ms_p50": round(inst["added_ms_p50"], 3),
        "added_ms_p95": round(inst["added_ms_p95"], 3),
        "overhead_ratio_p50": round(llm["ratio_p50"], 4) if llm else None,
        "rss_growth_mb_collector_down": round(results["rss_on"]["rss_growth_mb"], 2),
        "rss_growth_mb_collector_down_second_half": round(results["rss_on"]["rss_growth_mb_second_half"], 2),
        "rss_growth_mb_monitoring_off": round(results["rss_off"]["rss_growth_mb"], 2),
        "added_ms_p50_real_llm": round(llm["added_ms_p50"], 2) if llm else None,
        "overhead_ratio_p50_instant": round(inst["ratio_p50"], 4),
        "http_added_us_per_request": _round(results["http"].get("ragloop_added_us_per_request")),
        "http_added_us_per_request_opentelemetry_asgi": _round(
            results["http"].get("opentelemetry_asgi_added_us_per_request")
        ),
        "details": results,
        "args": {k: v for k, v in vars(args).items() if k != "worker"},
        "python": platform.python_version(),
    }
    path = run.write(summary)
    rows = [("zero-latency endpoint", inst)] + ([("real local LLM", llm)] if llm else [])
    print(
        f"\n{'endpoint':<24}{'turns':>7}{'off p50 ms':>12}{'on p50 ms':>12}{'added p50':>11}"
        f"{'added p95':>11}{'paired p50':>12}{'on/off':>8}"
    )
    for name, r in rows:
        print(
            f"{name:<24}{r['turns_per_side']:>7}{r['off_ms_p50']:>12.2f}{r['on_ms_p50']:>12.2f}"
            f"{r['added_ms_p50']:>11.2f}{r['added_ms_p95']:>11.2f}{r['paired_added_ms_p50']:>12.2f}"
            f"{r['ratio_p50']:>8.3f}"
        )
    print(
        f"RSS growth over {args.outage_turns} turns: collector down"
        f" {summary['rss_growth_mb_collector_down']} MiB,"
        f" monitoring off {summary['rss_growth_mb_monitoring_off']} MiB"
    )
    http = results["http"]
    for name in ("none", "ragloop", "opentelemetry_asgi"):
        cell = http[name]
        shown = f"{cell['us_per_request']:.1f} us/request" if isinstance(cell, dict) else cell
        print(f"HTTP instrumentation {name:<20} {shown}")
    print(f"load average {run.meta()['load_before']} -> {run.meta()['load_after']}; results in {path}")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


if __name__ == "__main__":
    main()
