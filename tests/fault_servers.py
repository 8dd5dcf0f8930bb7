"""Dependencies that a fault test kills (SIGKILL) and starts again on the same port and data.

Shared by tests/chatbot/test_faults.py and bench/bench_faults.py. The session fixtures of
tests/conftest.py cannot be killed (other tests use them): these are private servers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from ragloop.process import free_port, port_open
from tests.conftest import _pg_bin


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every descendant at once (a crash, not a shutdown); wait for them."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = [root, *root.children(recursive=True)]
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


class RestartablePostgres:
    """A real PostgreSQL (initdb + pg_ctl, as tests.conftest.postgres_server) that can crash and restart.

    :meth:`kill` SIGKILLs the postmaster and its backends (no shutdown checkpoint: crash
    recovery runs at the next :meth:`start`, on the same port and data directory).
    """

    def __init__(self) -> None:
        """Make the data directory (``initdb``); :meth:`start` serves it."""
        # Not under pytest's tmp dir: that is private to root, and the server runs as 'postgres'.
        self.root = Path(tempfile.mkdtemp(prefix="ragloop-pg-fault-"))
        self.data, sock = self.root / "data", self.root / "sock"
        sock.mkdir()
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the server as the Debian 'postgres' user
            shutil.chown(self.root, "postgres")
            shutil.chown(sock, "postgres")
            os.chmod(self.root, 0o755)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        subprocess.run(
            [
                *self.as_user,
                _pg_bin("initdb"),
                "-D",
                str(self.data),
                "-U",
                "ragloop",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
        )
        self.opts = f"-p {self.port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.url = f"postgresql+psycopg2://ragloop@127.0.0.1:{self.port}/postgres"

    def start(self) -> RestartablePostgres:
        """Start the server and wait until it accepts connections."""
        log = str(self.root / "pg.log")
        cmd = [
            *self.as_user,
            _pg_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            self.opts,
            "-l",
            log,
            "-w",
            "start",
        ]
        subprocess.run(cmd, check=True, capture_output=True)
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"PostgreSQL did not come back: {(self.root / 'pg.log').read_text()[-2000:]}"
                )
            time.sleep(0.1)
        return self

    @property
    def pid(self) -> int | None:
        """The postmaster's pid, or None when it is not running."""
        pidfile = self.data / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if psutil.pid_exists(pid) else None

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends."""
        if self.pid is not None:
            kill_tree(self.pid)

    def stop(self) -> None:
        """Stop for good and remove the data directory."""
        subprocess.run(
            [*self.as_user, _pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> RestartablePostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
