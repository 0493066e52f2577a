"""A throwaway PostgreSQL server for tests: Debian's server binaries (installed with apt-get when
missing), a fresh cluster in a temporary directory, listening on 127.0.0.1 on a free port with its
unix socket in that directory too. Durability is off: nothing here needs to survive a crash.

As root, initdb and postgres refuse to run: they run as the ``postgres`` system user (which
Debian's package creates), in a directory that user owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_bin() -> Path | None:
    """The newest installed server's bin directory (the one with initdb and pg_ctl)."""
    found = [Path(d) for d in glob.glob(_BIN_GLOB) if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists()]
    return max(found, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0, default=None)


def ensure_postgres(log: Path) -> str | None:
    """Debian's ``postgresql`` server, installed with apt-get when missing. Returns why it cannot be
    had, or None when initdb and pg_ctl are there."""
    if server_bin() is not None:
        return None
    apt = shutil.which("apt-get")
    if apt is None:
        return "PostgreSQL's server is not installed and this machine has no apt-get to install Debian's postgresql"
    sudo: list[str] = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else [])
    if os.geteuid() != 0 and not sudo:
        return "PostgreSQL's server is not installed and installing it needs root (no sudo here)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with log.open("a") as out:
        for cmd in ([*sudo, apt, "update", "-qq"], [*sudo, apt, "install", "-y", "-qq", "postgresql"]):
            done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=900, check=False)
            if done.returncode != 0:
                return f"`{' '.join(cmd)}` failed (exit {done.returncode}); see {log}"
    return None if server_bin() is not None else f"apt-get installed postgresql but no {_BIN_GLOB}/initdb; see {log}"


class PostgresServer:
    """One cluster, started by :meth:`start` and removed by :meth:`stop`. Databases are made per test
    (:meth:`create_database`): a fresh one costs a few tens of milliseconds."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="flywheel-pg-"))  # short: the socket path must fit
        self.data, self.log = self.root / "data", self.root / "server.log"
        self.port = free_port()
        self.as_postgres: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            self.as_postgres = ["runuser", "-u", "postgres", "--"]
        self._count = 0

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self.as_postgres, *args], capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}"
                + (self.log.read_text() if self.log.exists() else "")
            )

    def start(self) -> PostgresServer:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale",
            "C",
        )
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c shared_buffers=16MB -c max_connections=60"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def url(self, database: str = "postgres", scheme: str = "postgresql") -> str:
        return f"{scheme}://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database; returns its name."""
        self._count += 1
        name = f"t{os.getpid()}_{self._count}_{time.monotonic_ns() % 10**6}"
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [*self.as_postgres, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(self.root, ignore_errors=True)
