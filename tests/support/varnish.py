"""A real Varnish caching in front of a test's server, with Varnish's builtin VCL only.

Varnish is Debian's package, installed with apt-get when missing (`varnish_or_skip`).
`varnish_cache` runs one `varnishd` of its own: its working directory (`-n`) and what it
prints in a fresh temporary directory, listening on a free loopback port, in the
foreground (`-F`) as a child of the test, with the upstream as its only backend (`-b`).
With `-b` there is no VCL of ours: the builtin one decides, as in a default install. It

- caches what the upstream's `Cache-Control` (`s-maxage`, `max-age`) or `Expires`
  allows, else for `default_ttl` (120 s); honours `Vary` (not `Vary: *`);
- never caches a response that is `private`, `no-cache` or `no-store`, has
  `Set-Cookie`, or is already expired (`max-age=0`): it marks the object hit-for-miss
  for 120 s instead, and requests go to the upstream until a cacheable response
  replaces it;
- passes requests with `Authorization` or `Cookie` to the upstream, never caching them;
- keeps an expired object for `default_grace` (10 s): the first request after it expires
  gets it while one background fetch refreshes it, with `If-None-Match` /
  `If-Modified-Since` when the object has an `ETag` / `Last-Modified`.

A response served from Varnish's cache has two transaction ids in `X-Varnish` (the
request's and the one that fetched the object: `varnish_hit`) and its age in `Age`.
`varnishd` runs without privilege separation (`-j none`: its jail would need users and
permissions on the working directory that a test's temporary directory lacks) and
without management interface (`-T none`). The manager and its child are stopped by PID
on exit.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from support.apt import server_binary, server_or_skip
from support.processes import log_tails, start_listening, stop

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

VARNISHD = "/usr/sbin/varnishd"
PACKAGE = "varnish"
STORAGE = "malloc,32m"
SHARED_LOG = "2m"  # the shared memory log (`-l`): 80 MiB of disk by default
START_TIMEOUT = 20.0  # seconds until Varnish answers: it compiles the VCL with cc first
STOP_TIMEOUT = 5.0  # seconds for the manager, then for its child, to exit after SIGTERM
START_ATTEMPTS = 3  # a new port each: another process may take the free one first
PROBE_TIMEOUT = 1.0
OUTPUT = "output.log"
# An HTTP/1.1 request without Host: the builtin VCL answers it with a 400 itself
# (`vcl_req_host`), so the probe never reaches the upstream.
PROBE = b"GET / HTTP/1.1\r\n\r\n"


def varnish_or_skip() -> str:
    """The varnishd binary, installed first if need be; skip the test, saying why, if it can't."""
    return server_or_skip("varnishd", PACKAGE, VARNISHD)


def varnish_hit(headers: Mapping[str, str]) -> bool:
    """Whether Varnish served the response from its cache: two transaction ids in `X-Varnish`."""
    return len(headers.get("x-varnish", "").split()) == 2


@contextlib.contextmanager
def varnish_cache(upstream: str) -> Iterator[str]:
    """Run Varnish caching `upstream` (a base URL); yield its own base URL; stop it after.

    Raises `RuntimeError`, with what varnishd printed, if it exits or does not answer
    within `START_TIMEOUT`. On exit the manager gets SIGTERM (SIGKILL after
    `STOP_TIMEOUT`), its child is waited for (and killed if it lingers), and the
    directory is removed. Starting and stopping block for a moment and never ask the
    upstream, so an async test may use it around an upstream served in its own loop.
    """
    binary = server_binary("varnishd", VARNISHD)
    if binary is None:
        raise RuntimeError("Varnish is not installed: call varnish_or_skip() first")
    parts = urlsplit(upstream)
    backend = f"{parts.hostname}:{parts.port or 80}"
    directory = Path(tempfile.mkdtemp(prefix="atomcache-varnish-"))
    try:
        process, port = _start(binary, directory, backend)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(process, STOP_TIMEOUT)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _start(binary: str, directory: Path, backend: str) -> tuple[subprocess.Popen[bytes], int]:
    """Start varnishd in `directory` on a free port; return it and the port once it answers."""

    def launch(port: int) -> subprocess.Popen[bytes]:
        with (directory / OUTPUT).open("wb") as output:
            return subprocess.Popen(
                [binary, "-F", "-j", "none", "-T", "none",
                 "-a", f"127.0.0.1:{port}", "-b", backend, "-n", str(directory),
                 "-s", STORAGE, "-l", SHARED_LOG],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    return start_listening(
        f"varnishd (backend {backend})",
        launch,
        lambda: log_tails(directory, (OUTPUT,)),
        answers=_answers,
        start_timeout=START_TIMEOUT,
        stop_timeout=STOP_TIMEOUT,
        attempts=START_ATTEMPTS,
    )


def _answers(port: int) -> bool:
    """Whether Varnish itself answers on `port`: its synthetic 400 to a request without Host."""
    reply = b""
    with (
        contextlib.suppress(OSError),
        socket.create_connection(("127.0.0.1", port), PROBE_TIMEOUT) as connection,
    ):
        connection.settimeout(PROBE_TIMEOUT)
        connection.sendall(PROBE)
        while b"\r\n\r\n" not in reply and (chunk := connection.recv(4096)):
            reply += chunk
    return reply.startswith(b"HTTP/1.1 400") and b"\r\nx-varnish:" in reply.lower()
