"""The scenarios of http_transforms.py against the Litestar adapter, in process."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from litestar import Controller, Litestar, get
from litestar.plugins import InitPlugin
from litestar_app import build_compressed, require_user

from atomcache_core import Cache
from atomcache_litestar import AtomCachePlugin, cached
from http_transforms import (
    each_content_coding_has_its_validator,
    method_handlers_are_ordinary_routes,
    middleware_added_after_the_cache_runs_on_hits,
)
from support.servers import in_process

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar.config.app import AppConfig

    from atomcache_core.asgi import ASGIApp, Message, Receive, Scope, Send


def build_methods(cache: Cache, calls: Counter[str]) -> Litestar:
    """The routes of `method_handlers_are_ordinary_routes`, on two controllers."""

    class Open(Controller):
        path = "/methods"

        @get("/open")
        @cached(ttl=60)
        async def open(self) -> dict[str, int]:
            calls["open"] += 1
            return {"calls": calls["open"]}

        @get("/open-sync", sync_to_thread=False)
        @cached(ttl=60)
        def open_sync(self) -> dict[str, int]:
            calls["open-sync"] += 1
            return {"calls": calls["open-sync"]}

    class Guarded(Controller):
        path = "/methods"
        guards = [require_user]  # noqa: RUF012 - Litestar's layer attribute

        @get("/guarded")
        @cached(ttl=60, public=True)
        async def guarded(self) -> dict[str, int]:
            calls["guarded"] += 1
            return {"calls": calls["guarded"]}

    return Litestar([Open, Guarded], plugins=[AtomCachePlugin(cache)])


def staff_only(app: ASGIApp) -> ASGIApp:
    """Middleware: 403 unless the request says `X-Staff: yes`."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (b"x-staff", b"yes") not in scope["headers"]:
            await send({"type": "http.response.start", "status": 403, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await app(scope, receive, send)

    return middleware


def stamping(app: ASGIApp) -> ASGIApp:
    """Middleware: the request's `X-Trace` goes back as the response's `X-Stamp`."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        trace = dict(scope.get("headers", ())).get(b"x-trace", b"")

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (b"x-stamp", trace)]
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, stamped)

    return middleware


class LaterPlugin(InitPlugin):
    """A plugin adding its middleware to the app, as many do."""

    def __init__(self, *middleware: Callable[[ASGIApp], ASGIApp]) -> None:
        """Add `middleware`."""
        self.middleware = middleware

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Add the middleware to the app's."""
        app_config.middleware.extend(self.middleware)  # type: ignore[arg-type]
        return app_config


def build_later(cache: Cache, calls: Counter[str], *, plugin_first: bool) -> Litestar:
    """The route of `middleware_added_after_the_cache_runs_on_hits`."""

    @get("/later")
    @cached(ttl=60)
    async def later() -> dict[str, int]:
        calls["later"] += 1
        return {"calls": calls["later"]}

    plugins: list[Any] = [AtomCachePlugin(cache), LaterPlugin(staff_only, stamping)]
    return Litestar([later], plugins=plugins[::-1] if plugin_first else plugins)


async def test_controller_methods_are_ordinary_routes() -> None:
    """A `Controller` method takes the fast path without checks; with a guard, it runs on hits."""
    calls: Counter[str] = Counter()
    async with in_process(build_methods(Cache(), calls)) as client:
        await method_handlers_are_ordinary_routes(client, calls)


async def test_plugin_middleware_runs_on_hits_whatever_the_plugin_order() -> None:
    """A plugin's middleware runs on hits, listed before or after `AtomCachePlugin`."""
    for plugin_first in (True, False):
        calls: Counter[str] = Counter()
        app = build_later(Cache(), calls, plugin_first=plugin_first)
        async with in_process(app) as client:
            await middleware_added_after_the_cache_runs_on_hits(client, calls)


async def test_compression_gives_each_coding_its_validator() -> None:
    """With `compression_config`, an identity first request keeps gzip for gzip clients."""
    calls: Counter[str] = Counter()
    async with in_process(build_compressed(Cache(), calls)) as client:
        await each_content_coding_has_its_validator(client, calls)
