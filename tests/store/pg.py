"""A throwaway PostgreSQL server from the system's binaries, on a free loopback port in a temp directory.

Debian's ``postgresql`` package (``/usr/lib/postgresql/<v>/bin``; ``scripts/system-deps.sh``
installs it on a fresh machine). ``initdb`` refuses to run as root, so under root (CI) the
server runs as the ``postgres`` system user (or ``nobody``) through ``runuser``, in a
directory that user owns. Authentication is ``trust`` on 127.0.0.1 only: nothing else can
reach it, and it is deleted when the tests end.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def pg_bin() -> Path | None:
    """The directory of initdb/pg_ctl (newest version), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as() -> str | None:
    """The user to run the server as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists for initdb")


class PostgresServer:
    """``start()`` / ``stop()``; ``url`` is a ``postgresql://`` URL of its ``postgres`` database."""

    def __init__(self) -> None:
        bindir = pg_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL binaries not found (install Debian's 'postgresql': scripts/system-deps.sh)")
        self.bin = bindir
        self.user = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="activity-scorer-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.url = f"postgresql://activity@127.0.0.1:{self.port}/postgres"
        if self.user is not None:
            os.chmod(self.root, 0o755)
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def _cmd(self, *args: str) -> list[str]:
        cmd = [str(self.bin / args[0]), *args[1:]]
        return ["runuser", "-u", self.user, "--", *cmd] if self.user else cmd

    def start(self) -> PostgresServer:
        subprocess.run(self._cmd("initdb", "-D", str(self.data), "-U", "activity", "-A", "trust", "-E", "UTF8",
                                 "--no-instructions"), check=True, capture_output=True, timeout=120, cwd=self.root)
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=60"
        subprocess.run(self._cmd("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "server.log"),
                                 "-w", "-t", "60", "start"), check=True, capture_output=True, timeout=90, cwd=self.root)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"PostgreSQL did not listen on {self.port}: {self.log_tail()}")

    def kill(self) -> None:
        """Stop immediately (``pg_ctl stop -m immediate``: a crash, no checkpoint)."""
        subprocess.run(self._cmd("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop"), capture_output=True,
                       timeout=60, cwd=self.root)

    def stop(self) -> None:
        subprocess.run(self._cmd("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"), capture_output=True,
                       timeout=60, cwd=self.root)
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self) -> str:
        try:
            return (self.root / "server.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""
