"""Start a callcue server (or a Redis) in a subprocess for a test or a benchmark, and stop it."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READY = re.compile(r"callcue ready on (https?)://([\d.]+):(\d+)")


class ServerProcess:
    """`python server.py --port 0 ...`; waits for the ready line and keeps its log.

    Unless `env` names CALLCUE_DATABASE_URL, the server gets a store of its own in a temporary
    folder (removed by `stop`), so tests and benchmarks never touch the user's call store."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, timeout: float = 180) -> None:
        self.log: list[str] = []
        env = dict(env or {})
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if "CALLCUE_DATABASE_URL" not in env and not any(
            a.startswith("--database-url") for a in args
        ):
            self._tmp = tempfile.TemporaryDirectory(prefix="callcue-store-")
            env["CALLCUE_DATABASE_URL"] = f"sqlite:///{self._tmp.name}/callcue.db"
            env.setdefault("CALLCUE_RECORDINGS_DIR", f"{self._tmp.name}/recordings")
        self.database_url = env["CALLCUE_DATABASE_URL"]
        self.proc = subprocess.Popen(
            [sys.executable, "-u", str(ROOT / "server.py"), "--port", "0", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **env},
        )
        self.pid = self.proc.pid
        self.url = ""
        ready = threading.Event()

        def pump() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.log.append(line.rstrip())
                match = READY.search(line)
                if match:
                    scheme, host, port = match.groups()
                    self.url = f"{'wss' if scheme == 'https' else 'ws'}://{host}:{port}"
                    self.http = f"{scheme}://{host}:{port}"
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("callcue server did not start:\n" + "\n".join(self.log[-30:]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def kill9(self) -> None:
        """SIGKILL: the process gets no chance to flush or close anything."""
        self.proc.kill()
        self.proc.wait()


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisProcess:
    """A private `redis-server` on 127.0.0.1 (Debian's package) keeping nothing on disk, for
    tests and benchmarks; returns once it answers PING. `stop` ends it."""

    def __init__(self, port: int = 0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.TemporaryDirectory(prefix="callcue-redis-")
        options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), *options],
            cwd=self._dir.name,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._dir.cleanup()
