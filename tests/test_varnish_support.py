"""`support.varnish`: a real Varnish, builtin VCL, in front of a tiny upstream, stopped by PID.

The upstream is a raw ASGI app served by uvicorn in the test's event loop, so requests
to Varnish (a child process) go through an async client, letting the loop serve
Varnish's requests to the upstream meanwhile. Varnish is installed with apt-get when
missing; the tests are skipped, saying why, only where it cannot be.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from support.processes import alive, descendants
from support.redis_server import is_port_free
from support.servers import serve_asgi
from support.varnish import varnish_cache, varnish_hit, varnish_or_skip

if TYPE_CHECKING:
    from starlette.requests import Request

# The body is bounded; the fixture bounds its own wait (it may install Varnish).
pytestmark = pytest.mark.timeout(30, func_only=True)

CACHE_CONTROL = {
    "/cacheable": "max-age=60",
    "/private": "private, max-age=60",
    "/short": "max-age=1",
}
ETAG = '"v1"'


class Upstream:
    """A Starlette app (`app`): `/cacheable`, `/private`, `/short` answer `call <n>`, `ETag: "v1"`.

    It notes each request's path and `If-None-Match`, and answers a matching
    `If-None-Match` with a 304.
    """

    def __init__(self) -> None:
        """No request yet."""
        self.requests: list[tuple[str, str | None]] = []
        self.app = Starlette(routes=[Route("/{name}", self.respond)])

    async def respond(self, request: Request) -> Response:
        """Answer one request, noting it."""
        path, condition = request.url.path, request.headers.get("if-none-match")
        self.requests.append((path, condition))
        if path not in CACHE_CONTROL:
            return Response(status_code=404, headers={"cache-control": "no-store"})
        headers = {"etag": ETAG, "cache-control": CACHE_CONTROL[path]}
        if condition == ETAG:
            return Response(status_code=304, headers=headers)
        calls = sum(seen == path for seen, _ in self.requests)
        return Response(f"call {calls}", headers=headers, media_type="text/plain")


@pytest.fixture(scope="module", autouse=True)
def varnish() -> str:
    """The varnishd binary, installed first if need be; the tests are skipped if it cannot be."""
    return varnish_or_skip()


@pytest.mark.parametrize(
    ("path", "headers", "texts", "hits"),
    [
        ("/cacheable", {}, ["call 1", "call 1"], [False, True]),
        ("/private", {}, ["call 1", "call 2"], [False, False]),
        ("/cacheable", {"authorization": "Bearer alice"}, ["call 1", "call 2"], [False, False]),
    ],
    ids=["max-age", "private", "authorization"],
)
async def test_varnish_caches_what_its_builtin_vcl_allows(
    path: str, headers: dict[str, str], texts: list[str], hits: list[bool]
) -> None:
    """`max-age=60` is served from Varnish the second time; `private` or with credentials, never."""
    upstream = Upstream()
    async with serve_asgi(upstream.app) as upstream_url:
        with varnish_cache(upstream_url) as url:
            async with httpx.AsyncClient(base_url=url, headers=headers) as client:
                responses = [await client.get(path) for _ in range(2)]
    assert [response.status_code for response in responses] == [200, 200]
    assert [response.text for response in responses] == texts
    assert [varnish_hit(response.headers) for response in responses] == hits
    assert len(upstream.requests) == len(set(texts))


async def test_varnish_serves_an_expired_object_once_and_revalidates_it() -> None:
    """An expired object is served once more while a fetch with `If-None-Match` refreshes it."""
    upstream = Upstream()
    async with serve_asgi(upstream.app) as upstream_url:
        with varnish_cache(upstream_url) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                first = await client.get("/short")
                await asyncio.sleep(1.2)
                stale = await client.get("/short")
                for _ in range(50):  # the refresh runs in the background
                    if len(upstream.requests) == 2:
                        break
                    await asyncio.sleep(0.02)
                refreshed = await client.get("/short")
    assert [first.text, stale.text, refreshed.text] == ["call 1"] * 3
    assert [varnish_hit(response.headers) for response in (first, stale, refreshed)] == [
        False,
        True,
        True,
    ]
    assert int(stale.headers["age"]) >= 1
    assert upstream.requests == [("/short", None), ("/short", ETAG)]


async def test_varnish_and_its_child_are_stopped_even_on_error() -> None:
    """An error inside `varnish_cache` still stops the manager and its child and frees the port."""
    urls: list[str] = []
    started: list[tuple[int, str]] = []
    async with serve_asgi(Upstream().app) as upstream_url:
        with pytest.raises(LookupError, match="the test's own error"):
            _fail_behind_varnish(upstream_url, urls, started)
    assert len(started) >= 2  # the manager and its child
    assert alive(started) == []
    assert is_port_free(urlsplit(urls[0]).port or 0)


def _fail_behind_varnish(upstream: str, urls: list[str], started: list[tuple[int, str]]) -> None:
    """Raise inside `varnish_cache`, having noted its URL and the processes it started."""
    before = set(descendants(os.getpid()))
    with varnish_cache(upstream) as url:
        urls.append(url)
        started.extend(process for process in descendants(os.getpid()) if process not in before)
        raise LookupError("the test's own error")
