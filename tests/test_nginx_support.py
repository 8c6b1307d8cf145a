"""`support.nginx`: a real nginx caching in front of a tiny upstream, stopped by PID.

The upstream is a raw ASGI app served by uvicorn in the test's event loop, so requests
to nginx (a child process) go through an async client, letting the loop serve nginx's
requests to the upstream meanwhile. nginx is installed with apt-get when missing; the
tests are skipped, saying why, only where it cannot be.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import pytest

from support.nginx import nginx_cache, nginx_or_skip
from support.processes import alive, descendants
from support.redis_server import is_port_free
from support.servers import serve_asgi

if TYPE_CHECKING:
    from atomcache_core.asgi import Receive, Scope, Send

# The body is bounded; the fixture bounds its own wait (it may install nginx).
pytestmark = pytest.mark.timeout(30, func_only=True)

CACHE_CONTROL = {"/cacheable": b"max-age=60", "/private": b"private, max-age=60"}


class Upstream:
    """ASGI app answering `GET /cacheable` and `GET /private` with how often each was called."""

    def __init__(self) -> None:
        """Count from zero."""
        self.calls: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the lifespan and HTTP requests."""
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        if path not in CACHE_CONTROL:
            await _respond(send, 404, b"no-store", b"not found")
            return
        self.calls[path] += 1
        await _respond(send, 200, CACHE_CONTROL[path], f"call {self.calls[path]}".encode())


async def _respond(send: Send, status: int, cache_control: bytes, body: bytes) -> None:
    headers = [
        (b"content-type", b"text/plain"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", cache_control),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module", autouse=True)
def nginx() -> str:
    """The nginx binary, installed first if need be; the tests are skipped if it cannot be."""
    return nginx_or_skip()


@pytest.mark.parametrize(
    ("path", "texts", "statuses"),
    [
        ("/cacheable", ["call 1", "call 1"], ["MISS", "HIT"]),
        ("/private", ["call 1", "call 2"], ["MISS", "MISS"]),
    ],
)
async def test_nginx_caches_what_cache_control_allows(
    path: str, texts: list[str], statuses: list[str]
) -> None:
    """`max-age=60` is served from nginx's cache the second time; `private` never is."""
    upstream = Upstream()
    async with serve_asgi(upstream) as upstream_url:
        with nginx_cache(upstream_url) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                responses = [await client.get(path) for _ in range(2)]
    assert [response.status_code for response in responses] == [200, 200]
    assert [response.text for response in responses] == texts
    assert [response.headers["x-nginx-cache"] for response in responses] == statuses
    assert upstream.calls[path] == len(set(texts))


async def test_nginx_and_its_workers_are_stopped_even_on_error() -> None:
    """An error inside `nginx_cache` still stops the master and workers and frees the port."""
    urls: list[str] = []
    started: list[tuple[int, str]] = []
    async with serve_asgi(Upstream()) as upstream_url:
        with pytest.raises(LookupError, match="the test's own error"):
            _fail_behind_nginx(upstream_url, urls, started)
    assert len(started) >= 2  # the master and at least one worker
    assert alive(started) == []
    assert is_port_free(urlsplit(urls[0]).port or 0)


def _fail_behind_nginx(upstream: str, urls: list[str], started: list[tuple[int, str]]) -> None:
    """Raise inside `nginx_cache`, having noted its URL and the processes it started."""
    before = set(descendants(os.getpid()))
    with nginx_cache(upstream) as url:
        urls.append(url)
        started.extend(process for process in descendants(os.getpid()) if process not in before)
        raise LookupError("the test's own error")
