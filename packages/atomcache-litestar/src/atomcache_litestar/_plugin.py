"""`AtomCachePlugin`: wires atomcache into a Litestar app's config and lifespan."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.plugins import InitPlugin, ReceiveRoutePlugin
from litestar.response import Response
from litestar.routes import HTTPRoute, WebSocketRoute
from litestar.utils import normalize_path
from litestar.utils.sync import AsyncCallable

from atomcache_core import Cache  # noqa: TC001 - Litestar reads the provider's annotation
from atomcache_core.asgi import (
    PLACEHOLDER_FIELD,
    HttpCache,
    RoutePlan,
    find_cached,
    refuse_misplaced,
    refuse_websocket,
    route_options,
)
from atomcache_core.exceptions import ConfigurationError
from atomcache_core.http import with_vary

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from litestar import Litestar
    from litestar.config.app import AppConfig
    from litestar.routes import BaseRoute

    # Plain ASGI types: Litestar's own TypedDicts do not admit the keys read here.
    from atomcache_core.asgi import ASGIApp, Message, Receive, Scope, Send

__all__ = ["AtomCachePlugin"]

_HEAD_OF_GET = "atomcache.head"


class AtomCachePlugin(InitPlugin, ReceiveRoutePlugin):
    """Serve `@cached` route handlers from `cache`, like litestar's `ChannelsPlugin`.

    The cache's route middleware is the innermost of the app's middleware, whatever the
    order of `plugins=[...]`: middleware that other plugins add after this one runs on
    hits as on misses (HTTP.md 0.3); router, controller and handler middleware stays
    inside it (it runs before a hit of a route that has it, as the route's checks).

    Args:
        cache: The cache; opened with the app and closed on shutdown.
        dependency_key: Name under which handlers receive the cache by dependency
            injection (`async def handler(cache: Cache) -> ...`).
        check: Run `cache.check()` first thing at startup (before the app's other
            `on_startup` hooks): if Redis cannot be used (unreachable, credentials
            refused, ACL denial) the startup fails with that error instead of the app
            serving every request uncached. Off by default: the cache fails open.
    """

    def __init__(self, cache: Cache, *, dependency_key: str = "cache", check: bool = False) -> None:
        """Use `cache` for the app's cached routes."""
        self.cache = cache
        self.dependency_key = dependency_key
        self.check = check
        self.http_cache = HttpCache(cache, placeholder=_placeholder)
        self._app: Litestar | None = None
        self._plans: dict[tuple[int, str], RoutePlan] = {}
        self._middleware = DefineMiddleware(_CachedRoutes, plugin=self)  # type: ignore[arg-type]

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Add the route middleware, the dependency and the lifespan hooks."""
        app_config.middleware.append(self._middleware)
        app_config.dependencies[self.dependency_key] = Provide(self._provide, sync_to_thread=False)
        if self.check:
            app_config.on_startup.insert(0, self.cache.check)
        app_config.on_startup.append(self._started)
        app_config.on_shutdown.append(self._stopping)
        return app_config

    def receive_route(self, route: BaseRoute) -> None:
        """Make the route middleware the app's innermost before `route`'s stack is built.

        Litestar runs the plugins' `on_app_init` in their order, so a plugin listed
        after this one adds its middleware after (inside) the cache's; each route's
        middleware stack is built once its route is received, from the app's list.
        """
        handlers = getattr(route, "route_handlers", None) or [getattr(route, "route_handler", None)]
        for layer in getattr(handlers[0], "ownership_layers", ())[:1]:  # the app
            middleware = layer.middleware
            if self._middleware in middleware and middleware[-1] is not self._middleware:
                middleware.remove(self._middleware)
                middleware.append(self._middleware)

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
        With `path_params` and/or `query`, the entries those select are dropped, for
        every host and `Vary` variant; with neither, every entry of the route. With
        `headers` (`{"authorization": ...}`), on a route keyed on request fields
        (`vary_on`, `vary_on_cookies`, declared header and cookie parameters), one
        caller's entries only: naming one keyed field and no parameters, every entry
        with that value of it; else those of a request carrying exactly those values.
        Returns how many entries were dropped.
        """
        if self._app is None:
            msg = "the app has not started: invalidate after startup (e.g. from a handler)"
            raise ConfigurationError(msg)
        return await self.http_cache.invalidate_route(
            self._plans.values(), route, path_params=path_params, query=query, headers=headers
        )

    def plan_of(self, scope: Scope) -> RoutePlan | None:
        """The plan of the cached handler a routed request goes to, else `None`."""
        if self._app is None:  # an app whose lifespan did not run (mounted elsewhere)
            self._started(scope["app"])
        route_handler = scope.get("route_handler")
        return self._plans.get((id(route_handler), scope.get("path_template", "")))

    def _provide(self) -> Cache:
        return self.cache

    def _started(self, app: Litestar) -> None:
        """Plan the cached routes; let HEAD requests reach cached GET handlers."""
        self._app = app
        self._plans = with_declared_inputs(app, dict(_plan_routes(app)))
        handler: ASGIApp = _HeadOfGet(app.asgi_handler, app)  # type: ignore[arg-type]
        if len(app.middleware) > 1 or app.csrf_config is not None:  # middleware outside ours
            handler = self.http_cache.observe(handler)
        app.asgi_handler = handler  # type: ignore[assignment]

    async def _stopping(self) -> None:
        await self.cache.close()


class _Placeholder(Response[None]):
    """What a cached handler returns once the checks have passed: replaced on the way out.

    It skips Litestar's response building (encoding, headers, cookies): its one message
    only tells the flow to send the stored response instead.
    """

    def to_asgi_response(self, *_: Any, **__: Any) -> Any:
        return _send_placeholder


async def _send_placeholder(scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG001 - ASGI
    await send({"type": "http.response.start", "status": 200, "headers": [PLACEHOLDER_FIELD]})
    await send({"type": "http.response.body", "body": b""})


def _placeholder() -> Response[None]:
    return _Placeholder(None)


def _plan_routes(app: Litestar) -> Iterator[tuple[tuple[int, str], RoutePlan]]:
    """Decide, once, how each cached handler of `app` is served.

    A handler is `checked` when Litestar runs something of the app's before it:
    guards or `before_request` at any layer, dependencies it asks for, middleware of
    its router, controller or own layer, decorators above `@cached`.
    """
    app_middleware = {id(middleware) for middleware in app.middleware}
    for route, route_handler, kwargs_model in _http_handlers(app):
        found = find_cached(_endpoint(route_handler))
        if found is None:
            refuse_misplaced(_endpoint(route_handler), route.path_format)
            continue
        options, decorated = found
        own_middleware = [
            middleware
            for middleware in route_handler.resolve_middleware()
            if id(middleware) not in app_middleware
        ]
        checked = bool(
            decorated
            or route_handler.resolve_guards()
            or route_handler.resolve_before_request()
            or kwargs_model.dependency_batches
            or own_middleware
        )
        yield (
            (id(route_handler), route.path_format),
            RoutePlan(route.path_format, options, checked),
        )


def _http_handlers(app: Litestar) -> Iterator[tuple[HTTPRoute, Any, Any]]:
    """Each HTTP handler of `app` with its route and signature model.

    A `@cached` websocket handler is refused (`refuse_websocket`).
    """
    for route in app.routes:
        if isinstance(route, WebSocketRoute):
            refuse_websocket(_endpoint(route.route_handler), route.path_format)
        elif isinstance(route, HTTPRoute):
            for route_handler, kwargs_model in route.route_handler_map.values():
                yield route, route_handler, kwargs_model


def _endpoint(route_handler: Any) -> Any:
    """The handler's function as declared (Litestar wraps sync ones to run in a thread)."""
    fn = getattr(route_handler, "fn", None)
    return fn.func if isinstance(fn, AsyncCallable) else fn


class _CachedRoutes:
    """Route middleware (runs after routing): serves `@cached` handlers' requests.

    Litestar's `compression_config` compresses inside it (each route's stack puts the
    compression next to the handler): entries are the bytes of one content coding, so
    with compression on, every response of a cached handler names `Accept-Encoding` in
    `Vary`, which keys its entries on it (HTTP.md 3.1), and tells caches in front.
    """

    def __init__(self, app: ASGIApp, plugin: AtomCachePlugin) -> None:
        self.app = app
        self.plugin = plugin
        self.compressed = _varying_on_coding(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        plan = self.plugin.plan_of(scope) if scope["type"] == "http" else None
        if plan is None:
            await self.app(scope, receive, send)
            return
        if scope.get(_HEAD_OF_GET):
            scope["method"] = "HEAD"
        litestar = scope.get("app")
        await self.plugin.http_cache.serve(
            scope,
            receive,
            send,
            self.compressed if getattr(litestar, "compression_config", None) else self.app,
            route=plan,
            path_params=scope.get("path_params", {}),
        )


def _varying_on_coding(app: ASGIApp) -> ASGIApp:
    """`app`, whose responses name `Accept-Encoding` in `Vary` (once, in its first field)."""

    async def varying(scope: Scope, receive: Receive, send: Send) -> None:
        async def named(message: Message) -> None:
            if message["type"] == "http.response.start":
                fields = [(bytes(k).lower(), bytes(v)) for k, v in message.get("headers", ())]
                message = {**message, "headers": with_vary(fields, b"Accept-Encoding")}
            await send(message)

        await app(scope, receive, named)

    return varying


class _HeadOfGet:
    """Routes a HEAD request of a cached GET handler to it, marked as HEAD.

    Only where the app has no handler of its own for that HEAD (`@head`): then the
    app's handler, and its checks, answer as without the cache.
    """

    def __init__(self, app: ASGIApp, litestar: Litestar) -> None:
        self.app = app
        self.litestar = litestar

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            path = scope["path"]
            if root_path := scope.get("root_path", ""):
                path = path.split(root_path, maxsplit=1)[-1]
            if self._cached_get(normalize_path(path)):
                # A copy: the server keeps its own scope, and must still see a HEAD.
                scope = {**scope, "method": "GET", _HEAD_OF_GET: True}
        await self.app(scope, receive, send)

    def _cached_get(self, path: str) -> bool:
        """Whether a HEAD of `path` has no handler but a cached GET handler."""
        return not _routable(self.litestar, path, "HEAD") and (
            (routed := _routable(self.litestar, path, "GET")) is not None
            and route_options(_endpoint(routed[1])) is not None
        )


def _routable(litestar: Litestar, path: str, method: str) -> Any:
    """What Litestar's router gives a request of `path` and `method`, else `None`."""
    try:
        return litestar.asgi_router.handle_routing(path=path, method=method)
    except Exception:  # noqa: BLE001 - not routable: Litestar answers as usual
        return None


def with_declared_inputs(
    app: Litestar, plans: dict[tuple[int, str], RoutePlan]
) -> dict[tuple[int, str], RoutePlan]:
    """`plans` with what each handler declares it reads, found once (HTTP.md 2.3).

    Litestar's signature model of a handler holds its `Parameter(header=...)` and
    `Parameter(cookie=...)` parameters and those of every dependency it asks for, at
    any layer: the headers are keyed and sent in `Vary`, the cookies keyed.
    """
    declared = dict(plans)
    for route, route_handler, kwargs_model in _http_handlers(app):
        found = declared.get((id(route_handler), route.path_format))
        if found is None:
            continue
        headers = sorted(param.field_alias for param in kwargs_model.expected_header_params)
        cookies = sorted(param.field_alias for param in kwargs_model.expected_cookie_params)
        declared[(id(route_handler), route.path_format)] = replace(
            found, headers=(*found.headers, *headers), cookies=(*found.cookies, *cookies)
        )
    return declared
