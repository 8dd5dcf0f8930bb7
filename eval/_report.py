"""Write a harness report as JSON, Markdown and a PNG plot (matplotlib, headless)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write ``<dataset>.json``, ``<dataset>.md`` and ``<dataset>.png`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = report["dataset"]
    paths = {"json": out_dir / f"{name}.json", "md": out_dir / f"{name}.md", "png": out_dir / f"{name}.png"}
    paths["json"].write_text(json.dumps(report, indent=2, default=str) + "\n")
    plot(report, paths["png"])
    paths["md"].write_text(markdown(report, paths["png"].name))
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths


def markdown(report: dict[str, Any], plot_name: str) -> str:
    """The Markdown summary of a report."""
    mt, cfg = report["metrics"], report["config"]
    lines = [
        f"# Evaluation run: {report['dataset']}",
        "",
        f"{report['created_at']} · {mt['n']} questions ({mt['n_answered']} answered) · seed {cfg['seed']} · "
        f"model `{cfg['model']}` · prompt `{cfg['prompt_version']}` · index `{cfg['index_version']}` · "
        f"commit `{(cfg.get('git_commit') or '')[:10]}`",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for key, value in mt["retrieval"].items():
        lines.append(f"| retrieval {key} | {value:.3f} |")
    for key, value in mt["correctness"].items():
        lines.append(f"| correctness {key} | {_fmt(value)} |")
    f = mt["faithfulness"]
    lines.append(
        f"| faithfulness mean / p10 / p50 | {_fmt(f['mean'])} / {_fmt(f['p10'])} / {_fmt(f['p50'])} |"
    )
    for key, d in mt["latency_ms"].items():
        lines.append(f"| {key} p50 / p90 | {_fmt(d['p50'])} / {_fmt(d['p90'])} |")
    for key, d in mt["tokens"].items():
        lines.append(f"| {key} mean | {_fmt(d['mean'])} |")
    lines += ["", f"![faithfulness and latency]({plot_name})", ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """Faithfulness histogram and total-latency histogram side by side."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    import matplotlib.pyplot as plt

    rows = report["rows"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    faith = [r["faithfulness"] for r in rows if r.get("faithfulness") is not None]
    ax1.hist(faith, bins=10, range=(0, 1), color="#4c72b0")
    ax1.set(title="local faithfulness", xlabel="score", ylabel="answers")
    total = [r["total_ms"] / 1000 for r in rows if r.get("total_ms") is not None]
    ax2.hist(total, bins=10, color="#dd8452")
    ax2.set(title="turn latency", xlabel="seconds", ylabel="answers")
    fig.suptitle(f"{report['dataset']} (n={len(rows)})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)
