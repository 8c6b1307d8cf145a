"""`AtomCachePlugin`: wires atomcache into a Litestar app's config and lifespan."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.plugins import InitPlugin
from litestar.utils import normalize_path

from atomcache_core import Cache  # noqa: TC001 - Litestar reads the provider's annotation
from atomcache_core.asgi import HttpCache, route_options
from atomcache_core.exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from litestar import Litestar
    from litestar.config.app import AppConfig

    # Plain ASGI types: Litestar's own TypedDicts do not admit the keys read here.
    from atomcache_core.asgi import ASGIApp, Receive, Scope, Send

__all__ = ["AtomCachePlugin"]

_HEAD_OF_GET = "atomcache.head"


class AtomCachePlugin(InitPlugin):
    """Serve `@cached` route handlers from `cache`, like litestar's `ChannelsPlugin`.

    Args:
        cache: The cache; opened with the app and closed on shutdown.
        dependency_key: Name under which handlers receive the cache by dependency
            injection (`async def handler(cache: Cache) -> ...`).
    """

    def __init__(self, cache: Cache, *, dependency_key: str = "cache") -> None:
        """Use `cache` for the app's cached routes."""
        self.cache = cache
        self.dependency_key = dependency_key
        self.http_cache = HttpCache(cache)
        self._app: Litestar | None = None

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Add the route middleware, the dependency and the lifespan hooks."""
        route_middleware = DefineMiddleware(_CachedRoutes, http_cache=self.http_cache)  # type: ignore[arg-type]
        app_config.middleware.append(route_middleware)
        app_config.dependencies[self.dependency_key] = Provide(self._provide, sync_to_thread=False)
        app_config.on_startup.append(self._started)
        app_config.on_shutdown.append(self._stopping)
        return app_config

    async def invalidate(
        self,
        route: str | Callable[..., Any],
        *,
        path_params: dict[str, Any] | None = None,
        query: dict[str, Any] | Iterable[tuple[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> int:
        """Drop the cached response of one request of a route, or all of the route's.

        `route` is the path template (`"/items/{item_id}"`) or the handler function.
        With `path_params` and/or `query`, only the entry those select is dropped (give
        the `vary_on` request `headers` too); with neither, every entry of the route.
        Returns how many entries were dropped.
        """
        if self._app is None:
            msg = "the app has not started: invalidate after startup (e.g. from a handler)"
            raise ConfigurationError(msg)
        routes = (
            (_template(path), getattr(route_handler, "fn", None))
            for handlers in self._app.route_handler_method_map.values()
            for route_handler in handlers.values()
            for path in getattr(route_handler, "paths", ())
        )
        return await self.http_cache.invalidate_route(
            routes, route, path_params=path_params, query=query, headers=headers
        )

    def _provide(self) -> Cache:
        return self.cache

    def _started(self, app: Litestar) -> None:
        """Let HEAD requests reach cached GET handlers (Litestar would answer 405)."""
        self._app = app
        app.asgi_handler = _HeadOfGet(app.asgi_handler, app)  # type: ignore[assignment,arg-type]

    async def _stopping(self) -> None:
        await self.cache.close()


class _CachedRoutes:
    """Route middleware (runs after routing): serves `@cached` handlers' requests."""

    def __init__(self, app: ASGIApp, http_cache: HttpCache) -> None:
        self.app = app
        self.http_cache = http_cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route_handler = scope.get("route_handler")
        options = route_options(getattr(route_handler, "fn", None))
        if options is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get(_HEAD_OF_GET):
            scope["method"] = "HEAD"
        await self.http_cache.serve(
            scope,
            receive,
            send,
            self.app,
            options=options,
            route=scope.get("path_template", scope["path"]),
            path_params=scope.get("path_params", {}),
        )


class _HeadOfGet:
    """Routes a HEAD request of a cached GET handler to it, marked as HEAD."""

    def __init__(self, app: ASGIApp, litestar: Litestar) -> None:
        self.app = app
        self.litestar = litestar

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            path = scope["path"]
            if root_path := scope.get("root_path", ""):
                path = path.split(root_path, maxsplit=1)[-1]
            try:
                routed = self.litestar.asgi_router.handle_routing(
                    path=normalize_path(path), method="GET"
                )
            except Exception:  # noqa: BLE001 - not routable as GET: Litestar answers as usual
                routed = None
            if routed is not None and route_options(getattr(routed[1], "fn", None)) is not None:
                scope["method"] = "GET"
                scope[_HEAD_OF_GET] = True
        await self.app(scope, receive, send)


def _template(path: str) -> str:
    """`/items/{item_id:int}` -> `/items/{item_id}`: the form `path_template` has."""
    parts = []
    for part in path.split("/"):
        if part.startswith("{") and part.endswith("}") and ":" in part:
            part = part.split(":", 1)[0] + "}"  # noqa: PLW2901
        parts.append(part)
    return "/".join(parts)
