"""The scenarios of http_transforms.py against the FastAPI adapter, in process."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi_app import build_compressed

from atomcache_core import Cache
from atomcache_fastapi import cached, setup_cache
from http_transforms import (
    each_content_coding_has_its_validator,
    method_handlers_are_ordinary_routes,
    middleware_added_after_the_cache_runs_on_hits,
)
from support.servers import in_process

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send


def require_session(request: Request) -> None:
    """A login check: 401 unless the session cookie is valid."""
    if request.cookies.get("session") != "valid":
        raise HTTPException(status_code=401)


class Views:
    """A class-based view: its bound methods are the endpoints."""

    def __init__(self, calls: Counter[str]) -> None:
        """Count calls in `calls`."""
        self.calls = calls

    @cached(ttl=60)
    async def open(self) -> dict[str, int]:
        """An async method, no check."""
        self.calls["open"] += 1
        return {"calls": self.calls["open"]}

    @cached(ttl=60)
    def open_sync(self) -> dict[str, int]:
        """A sync method, no check."""
        self.calls["open-sync"] += 1
        return {"calls": self.calls["open-sync"]}

    @cached(ttl=60, public=True)
    async def guarded(self) -> dict[str, int]:
        """A method behind a check."""
        self.calls["guarded"] += 1
        return {"calls": self.calls["guarded"]}


def build_methods(cache: Cache, calls: Counter[str]) -> FastAPI:
    """The routes of `method_handlers_are_ordinary_routes`, bound methods as endpoints."""
    app = FastAPI()
    setup_cache(app, cache)
    views = Views(calls)
    app.get("/methods/open")(views.open)
    app.get("/methods/open-sync")(views.open_sync)
    app.get("/methods/guarded", dependencies=[Depends(require_session)])(views.guarded)
    return app


class StaffOnly:
    """Middleware: 403 unless the request says `X-Staff: yes`."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap `app`."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI."""
        if scope["type"] == "http" and (b"x-staff", b"yes") not in scope["headers"]:
            await send({"type": "http.response.start", "status": 403, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await self.app(scope, receive, send)


class Stamping:
    """Middleware: the request's `X-Trace` goes back as the response's `X-Stamp`."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap `app`."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI."""
        trace = dict(scope.get("headers", ())).get(b"x-trace", b"")

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], (b"x-stamp", trace)]}
            await send(message)

        await self.app(scope, receive, stamped)


def build_later(cache: Cache, calls: Counter[str]) -> FastAPI:
    """The route of `middleware_added_after_the_cache_runs_on_hits`, middleware added last."""
    app = FastAPI()
    setup_cache(app, cache)
    app.add_middleware(Stamping)
    app.add_middleware(StaffOnly)

    @app.get("/later")
    @cached(ttl=60)
    async def later() -> dict[str, int]:
        calls["later"] += 1
        return {"calls": calls["later"]}

    return app


async def test_method_endpoints_are_ordinary_routes() -> None:
    """A bound method endpoint takes the fast path without checks; with one, it runs on hits."""
    calls: Counter[str] = Counter()
    async with in_process(build_methods(Cache(), calls)) as client:
        await method_handlers_are_ordinary_routes(client, calls)


async def test_middleware_added_after_setup_runs_on_hits() -> None:
    """Middleware added after `setup_cache` runs on hits."""
    calls: Counter[str] = Counter()
    async with in_process(build_later(Cache(), calls)) as client:
        await middleware_added_after_the_cache_runs_on_hits(client, calls)


async def test_gzip_around_the_cache_gives_each_coding_its_validator() -> None:
    """Behind `GZipMiddleware`, gzip and identity have their ETags, and 304s their `Vary`."""
    calls: Counter[str] = Counter()
    async with in_process(build_compressed(Cache(), calls)) as client:
        await each_content_coding_has_its_validator(client, calls)
