"""Start a callcue server in a subprocess for a benchmark or a test, and stop it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READY = re.compile(r"callcue ready on http://([\d.]+):(\d+)")


class ServerProcess:
    """`python server.py --port 0 ...`; waits for the ready line and keeps its log."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, timeout: float = 180) -> None:
        self.log: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-u", str(ROOT / "server.py"), "--port", "0", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
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
                    self.url = f"ws://{match.group(1)}:{match.group(2)}"
                    self.http = f"http://{match.group(1)}:{match.group(2)}"
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
