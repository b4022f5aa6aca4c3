"""A throwaway PostgreSQL server for the tests: `initdb` + `pg_ctl` in a temporary directory.

The server binaries come from the system packages (`.ci/run` installs them when missing): a
missing server fails the tests that need it, it never skips them. `initdb` refuses to run as
root, so as root the server runs as the unprivileged `postgres` user the packages create. It
listens on 127.0.0.1 on a free port (and a Unix socket in its directory), trusts local
connections, and is stopped with `pg_ctl -m immediate stop` (a crash, as `kill -9` would).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    # Debian keeps them out of the PATH, under the server's version.
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if candidates:
        return candidates[-1]
    raise RuntimeError(
        f"PostgreSQL's {name} is not installed: the PostgreSQL tests need the server packages"
        " (Debian: apt-get install postgresql; .ci/run installs them)"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    directory: Path
    port: int

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run([*as_user, *args], check=True, capture_output=True, text=True, timeout=60)

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
            # A test server: a crash of the process (not of the machine) loses nothing without
            # fsync, and commits still wait for the WAL write.
            " -c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(_binary("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.directory / "log"), "-w",
                  "start")

    def stop(self) -> None:
        """Stop at once, as a crash would (no shutdown checkpoint)."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(_binary("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def new_database(self) -> str:
        """The DSN of a fresh, empty schema of its own (its search_path): as good as a new
        database for the store, in milliseconds instead of a second."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        return f"{self.dsn()}?options=-csearch_path%3D{name}"


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    initdb = _binary("initdb")
    directory = Path(tempfile.mkdtemp(prefix="spanmeter-pg-"))
    try:
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(directory, user.pw_uid, user.pw_gid)
        server = PostgresServer(directory, _free_port())
        server._run(initdb, "-D", str(server.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
