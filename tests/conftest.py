"""Session fixtures shared by every package's tests: real servers on free 127.0.0.1 ports.

Package-specific fixtures live in ``tests/<package>/conftest.py``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ragloop.process import ManagedProcess, free_port, http_ok, port_open
from ragloop.settings import Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

with contextlib.suppress(ImportError):  # hypothesis is a dev dependency (the property tests)
    from hypothesis import HealthCheck
    from hypothesis import settings as hypothesis_settings

    # Property tests check properties, not speed: no per-example deadline (Hypothesis's default is
    # 200 ms, and an example stalled on a busy 2-core machine failed the test as "Unreliable test
    # timings"), and no failure because generating examples was slow there (too_slow).
    hypothesis_settings.register_profile(
        "ragloop", deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    hypothesis_settings.load_profile("ragloop")


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where fixture servers write their logs."""
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    """Settings with a private data dir; the model cache stays shared."""
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture(scope="session")
def index_docs() -> Callable[[Path, dict[str, str], Settings], Path]:
    """Write ``docs`` (file name -> text) into ``root/corpus``, ingest them, return ``root/data``.

    ``settings`` must point at ``root/data``; the packages' fixtures index their small corpora
    with it so every test index is built the same way.
    """

    def index(root: Path, docs: dict[str, str], settings: Settings) -> Path:
        import retrieval

        corpus = root / "corpus"
        corpus.mkdir(parents=True, exist_ok=True)
        for name, text in docs.items():
            (corpus / name).write_text(text)
        report = retrieval.ingest([corpus], settings, progress=False)
        assert report.chunks_added > 0 and not report.files_failed, report.summary()
        return settings.data_dir

    return index


@pytest.fixture(scope="session")
def llm_server(logs_dir: Path) -> Iterator[str]:
    """The real local LLM (xllamacpp serving the default GGUF); yields its OpenAI base URL."""
    base = Settings()
    port = free_port()
    argv = [sys.executable, "-m", "ragloop.cli", "llm", "serve", "--port", str(port), "--parallel", "2"]
    proc = ManagedProcess("llm", argv, logs_dir / "llm.log").start()
    try:
        proc.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/v1/models"), timeout=180)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.stop()
    del base


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory, logs_dir: Path) -> Iterator[str]:
    """A real Chroma server (`chroma run`); yields its URL."""
    port = free_port()
    chroma = Path(sys.executable).parent / "chroma"
    path = tmp_path_factory.mktemp("chroma-server")
    argv = [str(chroma), "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(path)]
    proc = ManagedProcess("chroma", argv, logs_dir / "chroma.log").start()
    try:
        proc.wait_ready(lambda: port_open("127.0.0.1", port), timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


def _pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if found:
        return str(found[-1])
    exe = shutil.which(name)
    if exe is None:
        raise RuntimeError(
            f"PostgreSQL's {name} is missing: run `make system-deps` (Debian package postgresql)"
        )
    return exe


@contextlib.contextmanager
def postgres_server(prefix: str = "ragloop-pg-") -> Iterator[str]:
    """A real PostgreSQL server in a temp dir (initdb + pg_ctl); yields a SQLAlchemy URL.

    Shared by the ``postgres_url`` fixture and the benchmarks that need a real server.
    """
    # Not under pytest's tmp dir: that is private to root, and the server runs as 'postgres'.
    root = Path(tempfile.mkdtemp(prefix=prefix))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    port = free_port()
    # initdb refuses to run as root: run the server as the Debian 'postgres' user then.
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
        os.chmod(root, 0o755)
        as_user = ["runuser", "-u", "postgres", "--"]
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-U", "ragloop", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*as_user, pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "pg.log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg2://ragloop@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the session (see :func:`postgres_server`)."""
    with postgres_server() as url:
        yield url
