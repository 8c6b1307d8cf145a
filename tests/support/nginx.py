"""A real nginx as a caching reverse proxy (`proxy_cache`) in front of a test's server.

nginx is Debian's package, installed with apt-get when missing (`nginx_or_skip`).
`nginx_cache` runs one nginx of its own: its config, cache, temp files, PID file and
logs in a fresh temporary directory, listening on a free loopback port (never the system
nginx's port 80), in the foreground as a child of the test. It caches only as the
upstream's `Cache-Control` and `Expires` allow (no `proxy_cache_valid`, no
`proxy_ignore_headers`) and says what its cache did in `X-Nginx-Cache` (`HIT`, `MISS`,
`BYPASS`, `EXPIRED`, `REVALIDATED`...). With `revalidate=True` it refreshes an expired
entry with a conditional request (`proxy_cache_revalidate on`: `If-None-Match`,
`If-Modified-Since`). The master and its workers are stopped by PID on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from support.apt import server_binary, server_or_skip
from support.processes import log_tails, start_listening, stop

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
LOGS = ("error.log", "output.log")


def nginx_or_skip() -> str:
    """The nginx binary, installed first if need be; skip the test, saying why, if it can't."""
    return server_or_skip("nginx", PACKAGE, NGINX)


@contextlib.contextmanager
def nginx_cache(upstream: str, *, revalidate: bool = False) -> Iterator[str]:
    """Run nginx caching `upstream` (a base URL); yield its own base URL; stop it after.

    With `revalidate`, an expired entry is refreshed with a conditional request
    (`proxy_cache_revalidate on`) instead of a plain one. Raises `RuntimeError`, with
    nginx's logs, if it exits or does not accept connections within `START_TIMEOUT`. On
    exit the master gets SIGTERM (SIGKILL after `STOP_TIMEOUT`), its workers are waited
    for (and killed if they linger), and the directory is removed. Starting and stopping
    block for a moment and never ask the upstream, so an async test may use it around an
    upstream served in its own loop.
    """
    binary = server_binary("nginx", NGINX)
    if binary is None:
        raise RuntimeError("nginx is not installed: call nginx_or_skip() first")
    directory = Path(tempfile.mkdtemp(prefix="atomcache-nginx-"))
    try:
        process, port = _start(binary, directory, upstream, revalidate=revalidate)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(process, STOP_TIMEOUT)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _config(directory: Path, port: int, upstream: str, *, revalidate: bool) -> str:
    """nginx.conf: everything in `directory`, one server on 127.0.0.1:`port`."""
    # Workers run as `nobody` by default, which may not write in a root-owned directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    revalidation = "\n            proxy_cache_revalidate on;" if revalidate else ""
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
            proxy_cache {CACHE_ZONE};{revalidation}
            proxy_pass {upstream};
            proxy_set_header Host $http_host;
            add_header X-Nginx-Cache $upstream_cache_status always;
        }}
    }}
}}
"""


def _start(
    binary: str, directory: Path, upstream: str, *, revalidate: bool
) -> tuple[subprocess.Popen[bytes], int]:
    """Start nginx in `directory` on a free port; return it and the port once it listens."""
    config = directory / "nginx.conf"

    def launch(port: int) -> subprocess.Popen[bytes]:
        config.write_text(_config(directory, port, upstream, revalidate=revalidate))
        (directory / "error.log").unlink(missing_ok=True)
        with (directory / "output.log").open("wb") as output:
            return subprocess.Popen(
                [binary, "-p", str(directory), "-c", str(config),
                 "-g", "daemon off; master_process on;"],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    return start_listening(
        f"nginx (upstream {upstream})",
        launch,
        lambda: log_tails(directory, LOGS),
        start_timeout=START_TIMEOUT,
        stop_timeout=STOP_TIMEOUT,
        attempts=START_ATTEMPTS,
    )
