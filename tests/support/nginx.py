"""A real nginx as a caching reverse proxy (`proxy_cache`) in front of a test's server.

nginx is Debian's package, installed with apt-get when missing (`install_nginx`,
`nginx_or_skip`). `nginx_cache` runs one nginx of its own: its config, cache, temp
files, PID file and logs in a fresh temporary directory, listening on a free loopback
port (never the system nginx's port 80), in the foreground as a child of the test. It
caches only as the upstream's `Cache-Control` and `Expires` allow (no `proxy_cache_valid`,
no `proxy_ignore_headers`) and says what its cache did in `X-Nginx-Cache` (`HIT`, `MISS`,
`BYPASS`, `EXPIRED`...). The master and its workers are stopped by PID on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from support.apt import apt_install
from support.processes import alive, descendants, kill, listens
from support.redis_server import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

NGINX = "/usr/sbin/nginx"
# `nginx` is the package holding the binary since Debian 12 (`nginx-light` only adds the
# echo module to it there) and the metapackage that pulls one in before: right on both.
PACKAGE = "nginx"
CACHE_ZONE = "atomcache_test"
START_TIMEOUT = 10.0  # seconds until nginx accepts connections
STOP_TIMEOUT = 5.0  # seconds for the master, then for its workers, to exit after SIGTERM
START_ATTEMPTS = 3  # a new port each: another process may take the free one first
POLL_INTERVAL = 0.02
LOG_LINES = 30


def nginx_binary() -> str | None:
    """The nginx binary: `nginx` on PATH, else Debian's /usr/sbin/nginx; `None` if neither."""
    return shutil.which("nginx") or (NGINX if os.access(NGINX, os.X_OK) else None)


def install_nginx() -> str | None:
    """Install nginx with apt-get if missing; `None` once it is there, else why it cannot be.

    The package may try to start the system's nginx, which fails in many containers and
    makes apt-get fail: the binary is all the tests need, so it counts, whatever apt-get
    said, as soon as it is there.
    """
    if nginx_binary() is not None:
        return None
    failure = apt_install((PACKAGE,), (NGINX,))
    if failure is not None and nginx_binary() is None:
        return failure
    return None


def nginx_or_skip() -> str:
    """The nginx binary, installed first if need be; skip the test, saying why, if it cannot be."""
    reason = install_nginx()
    binary = nginx_binary()
    if reason is not None or binary is None:
        pytest.skip(f"NO NGINX TEST: nginx cannot be installed here: {reason}")
    return binary


@contextlib.contextmanager
def nginx_cache(upstream: str) -> Iterator[str]:
    """Run nginx caching `upstream` (a base URL); yield its own base URL; stop it after.

    Raises `RuntimeError`, with nginx's logs, if it exits or does not accept connections
    within `START_TIMEOUT`. On exit the master gets SIGTERM (SIGKILL after
    `STOP_TIMEOUT`), its workers are waited for (and killed if they linger), and the
    directory is removed. Starting and stopping block for a moment and never ask the
    upstream, so an async test may use it around an upstream served in its own loop.
    """
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed: call nginx_or_skip() or install_nginx()")
    directory = Path(tempfile.mkdtemp(prefix="atomcache-nginx-"))
    try:
        process, port = _start(binary, directory, upstream)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            _stop(process)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _config(directory: Path, port: int, upstream: str) -> str:
    """nginx.conf: everything in `directory`, one server on 127.0.0.1:`port`."""
    # Workers run as `nobody` by default, which may not write in a root-owned directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""\
{user}worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log notice;

events {{
    worker_connections 64;
}}

http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    proxy_cache_path {directory}/cache keys_zone={CACHE_ZONE}:1m;

    server {{
        listen 127.0.0.1:{port};

        location / {{
            proxy_cache {CACHE_ZONE};
            proxy_pass {upstream};
            proxy_set_header Host $http_host;
            add_header X-Nginx-Cache $upstream_cache_status always;
        }}
    }}
}}
"""


def _start(binary: str, directory: Path, upstream: str) -> tuple[subprocess.Popen[bytes], int]:
    """Start nginx in `directory` on a free port; return it and the port once it listens."""
    config = directory / "nginx.conf"
    for attempt in range(1, START_ATTEMPTS + 1):
        port = free_port()
        config.write_text(_config(directory, port, upstream))
        (directory / "error.log").unlink(missing_ok=True)
        with (directory / "output.log").open("wb") as output:
            process = subprocess.Popen(
                [binary, "-p", str(directory), "-c", str(config),
                 "-g", "daemon off; master_process on;"],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            listening = _wait_listening(process, port)
        except BaseException:
            _stop(process)
            raise
        if listening:
            return process, port
        running = process.poll() is None
        _stop(process)
        logs = _logs(directory)
        if running or "Address already in use" not in logs or attempt == START_ATTEMPTS:
            state = f"did not listen within {START_TIMEOUT:.0f} s" if running else "exited"
            msg = f"nginx {state} (127.0.0.1:{port}, upstream {upstream}):\n{logs}"
            raise RuntimeError(msg)
    raise AssertionError  # pragma: no cover - the last attempt returns or raises


def _wait_listening(process: subprocess.Popen[bytes], port: int) -> bool:
    """Wait until nginx accepts connections on `port`: `False` if it exits or times out.

    The port counts once nginx's master holds its listening socket: another process that
    took the port first would accept connections too while nginx retries to bind it.
    """
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        if listens(process.pid, port):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return process.poll() is None
        time.sleep(POLL_INTERVAL)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the master by PID (SIGTERM, SIGKILL after a while), then make sure its workers are gone.

    The master stops its workers before it exits; any still there after `STOP_TIMEOUT`
    (say, because the master had to be killed) are killed.
    """
    workers = descendants(process.pid)
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            workers += descendants(process.pid)
            process.kill()
            process.wait()
    deadline = time.monotonic() + STOP_TIMEOUT
    while alive(workers) and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)
    kill(workers)


def _logs(directory: Path) -> str:
    """The end of nginx's error log and of what it wrote on stdout and stderr."""
    parts = []
    for name in ("error.log", "output.log"):
        path = directory / name
        text = path.read_text(errors="replace") if path.exists() else ""
        lines = text.strip().splitlines()[-LOG_LINES:] or ["(empty)"]
        parts.append(f"--- {name}:\n" + "\n".join(lines))
    return "\n".join(parts)
