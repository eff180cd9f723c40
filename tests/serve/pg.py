"""A real, throwaway PostgreSQL server for the store tests: ``initdb`` into a temp folder and ``pg_ctl start`` on a
free port (unix socket in the same folder), run as the ``postgres`` user when the tests run as root (the server
refuses root). Stopped with ``pg_ctl stop`` and deleted at teardown.

Import the fixtures into a test module: ``from serve import pg`` then ``pg_server, pg_url = pg.pg_server,
pg.pg_url``. The server is shared by every module in the session (started once, stopped when the last user is
done).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def pg_bin() -> Path | None:
    """The folder of ``initdb``/``pg_ctl`` (``TASKFIT_PG_BIN``, else the newest /usr/lib/postgresql/*/bin)."""
    env = os.environ.get("TASKFIT_PG_BIN")
    found = [Path(env)] if env else [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    found += [Path(p).parent for p in filter(None, [shutil.which("pg_ctl")])]
    return next((p for p in found if (p / "initdb").exists() and (p / "pg_ctl").exists()), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    """A running server: ``base`` folder, ``port``; :meth:`new_database` gives a URL to a fresh database."""

    bin: Path
    base: Path
    port: int
    as_user: list[str]
    users: int = 0

    @property
    def data(self) -> Path:
        return self.base / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def run(self, *args: str, timeout: int = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=timeout, check=False,
                              cwd=self.base)

    def new_database(self) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def start(self) -> None:
        sock = self.base / "sock"
        init = self.run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                        "--no-locale", "-E", "UTF8", "--no-sync")
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        opts = (f"-p {self.port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=50")
        start = self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l",
                         str(self.base / "server.log"), "-w", "-t", "60", "start")
        if start.returncode != 0:
            log = (self.base / "server.log").read_text(errors="replace") if (self.base / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed:\n{start.stdout}\n{start.stderr}\n{log}")

    def stop(self) -> None:
        if not self.base.exists():
            return
        stopped = self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        pid_file = self.data / "postmaster.pid"
        if stopped.returncode != 0 and pid_file.exists():  # pg_ctl failed: end the postmaster by its own pid
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(self.base, ignore_errors=True)


_server: PgServer | None = None


def _acquire() -> PgServer:
    global _server
    if _server is None:
        bindir = pg_bin()
        if bindir is None:
            pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or on "
                        "PATH, nor in TASKFIT_PG_BIN: install postgresql-15 to run the PostgreSQL store tests")
        # not under pytest's tmp_path: its parents are root-only (0700) and the postgres user must enter the folder
        base = Path(tempfile.mkdtemp(prefix="taskfit-pg-"))
        as_user: list[str] = []
        if os.geteuid() == 0:  # the server refuses to run as root
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(base, ignore_errors=True)
                pytest.skip("running as root and there is no 'postgres' user to run the PostgreSQL server as "
                            "(the server refuses root): create one (useradd postgres) or run as another user")
            shutil.chown(base, "postgres", "postgres")
            as_user = ["runuser", "-u", "postgres", "--"]
        (base / "sock").mkdir()
        if as_user:
            shutil.chown(base / "sock", "postgres", "postgres")
        server = PgServer(bin=bindir, base=base, port=_free_port(), as_user=as_user)
        try:
            server.start()
        except BaseException:
            server.stop()
            raise
        _server = server
        atexit.register(server.stop)  # also when the session dies before fixture teardown (idempotent)
    _server.users += 1
    return _server


def _release() -> None:
    global _server
    if _server is not None:
        _server.users -= 1
        if _server.users <= 0:
            _server.stop()
            _server = None


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server running for the whole session (skipped when the binaries are absent)."""
    server = _acquire()
    try:
        yield server
    finally:
        _release()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """URL of a fresh, empty database on the session's server."""
    return pg_server.new_database()
