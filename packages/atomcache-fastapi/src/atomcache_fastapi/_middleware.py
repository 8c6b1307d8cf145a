"""The pure ASGI middleware that serves FastAPI's cached routes."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from fastapi import Request  # noqa: TC002 - FastAPI reads get_cache's annotation at run time
from fastapi.dependencies import utils as dependency_utils
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from fastapi.security.base import SecurityBase
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.routing import Host, Match, Mount, Router, WebSocketRoute

from atomcache_core import Cache
from atomcache_core.asgi import (
    PLACEHOLDER_FIELD,
    HttpCache,
    ResponseCapture,
    RoutePlan,
    Uncacheable,
    cached,
    find_cached,
    passing,
    refuse_misplaced,
    refuse_websocket,
)
from atomcache_core.exceptions import AtomCacheError
from atomcache_core.http import cache_status
from atomcache_core.http_route import CREDENTIAL_FIELDS
from atomcache_fastapi._claims import (
    BYPASS,
    CLAIM,
    CachedResponse,
    Claim,
    http_cache_of,
    serve_cached_response,
)
from atomcache_fastapi._compression import GZipAround

try:  # FastAPI >= 0.165 keeps included routers apart and resolves their routes lazily
    from fastapi.routing import iter_route_contexts as _route_contexts
except ImportError:  # pragma: no cover - older FastAPI: included routes are plain routes
    _route_contexts = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from fastapi import FastAPI
    from starlette.types import ASGIApp, Message, Receive, Scope, Send


__all__ = [
    "AtomCacheMiddleware",
    "cached",
    "get_cache",
    "invalidate",
    "setup_cache",
]  # cached: from the core

_LOOKUP_LIMIT = 4096
#: FastAPI's own reading of a parameter's names (each alias a request may use) and of
#: parameter models; older versions have neither, and the alias alone is read.
_PARAM_ALIASES: Any = getattr(dependency_utils, "_get_param_aliases", None)
_PARAM_MODEL: Any = getattr(dependency_utils, "_get_param_model", None)
_DEPTH_LIMIT = 64

#: One route of the app, in the router's order: what matches requests, its plan when
#: it is a `@cached` route, and the entries of the routes under it when it is a `Mount`
#: or `Host` of a router (`None` for any other route).
RouteEntry = tuple[Any, RoutePlan | None, "list[RouteEntry] | None"]


def setup_cache(app: FastAPI, cache: Cache, *, check: bool = False) -> None:
    """Serve `app`'s `@cached` routes from `cache`; the cache closes with the app.

    Adds `AtomCacheMiddleware` innermost, whatever the order in which the app adds its
    own middleware: every middleware of the app (authentication, CORS, compression,
    sessions) runs on hits as on misses, and what is stored is the router's response
    before they transform it (HTTP.md 0.3). Keeps the cache in `app.state.atomcache`,
    where `get_cache` (a dependency) finds it.

    With `check`, the app's startup (its lifespan) first runs `cache.check()`: if Redis
    cannot be used (unreachable, credentials refused, ACL denial) the startup fails
    with that error, before the app's own startup runs, instead of the app serving
    every request uncached. Off by default: the cache fails open.

    Raises:
        RuntimeError: the app has already started (Starlette's own rule).
    """
    if app.middleware_stack is not None:
        msg = "call setup_cache(app, cache) before the app starts serving"
        raise RuntimeError(msg)
    install(app, cache, check=check)


def install(app: FastAPI, cache: Cache, *, refresh: bool = True, check: bool = False) -> None:
    """What `setup_cache` and `ResponseCache.init` put in place, once per app.

    When the app has already built its middleware stack (`ResponseCache.init` called
    from a startup handler, as the original documented), the stack is dropped so
    Starlette builds it again, with the cache, before the next request. `refresh`:
    keep the routes of `ResponseCache(auto_refresh=True)` warm; `check`: see
    `setup_cache`.
    """
    if isinstance(getattr(app.state, "atomcache", None), Cache):
        return
    app.state.atomcache = cache
    app.state.atomcache_refresh = refresh
    http_cache = HttpCache(cache, placeholder=_placeholder)
    app.state.atomcache_http = http_cache  # one per app: what it learns is kept
    app.user_middleware.append(
        Middleware(
            AtomCacheMiddleware, cache=cache, routes_of=app, http_cache=http_cache, check=check
        )
    )
    build = app.build_middleware_stack

    def observed() -> ASGIApp:  # outside every middleware the app added: HttpCache.observe
        stack = build()
        return http_cache.observe(stack) if len(app.user_middleware) > 1 else stack

    app.build_middleware_stack = observed  # type: ignore[method-assign]
    app.exception_handlers[CachedResponse] = serve_cached_response
    app.middleware_stack = None  # built again, with the cache, at the next call


def get_cache(request: Request) -> Cache:
    """FastAPI dependency giving the cache set up for the app: `Depends(get_cache)`."""
    cache: Cache = request.app.state.atomcache
    return cache


def route_table(app: FastAPI) -> list[RouteEntry]:
    """Every route of `app` in matching order, included routers' routes in place.

    Each `@cached` route gets its `RoutePlan`, decided here once: its full path
    template (router prefixes and mount points included), whether anything runs
    between the router and its handler (HTTP.md 0.1, 0.2), and the request fields its
    security schemes read credentials from (an `APIKeyHeader`'s header). The routes
    of a router under a `Mount` or `Host` are planned in place; a mounted application
    (with a middleware stack of its own) is left to its own `setup_cache`.
    """
    return _table(app.router.routes, prefix="", nested=False)


def _table(routes: Iterable[Any], *, prefix: str, nested: bool) -> list[RouteEntry]:
    if _route_contexts is not None:
        routes = _route_contexts(list(routes))
    table: list[RouteEntry] = []
    for route in routes:
        original = getattr(route, "original_route", route)
        if isinstance(original, (Mount, Host)):
            router = getattr(original, "_base_app", getattr(original, "app", None))
            if isinstance(router, Router):
                inner = f"{prefix}{original.path}" if isinstance(original, Mount) else prefix
                table.append((route, None, _table(router.routes, prefix=inner, nested=True)))
                continue
        endpoint = getattr(route, "endpoint", None)
        if isinstance(original, WebSocketRoute):
            refuse_websocket(endpoint, prefix + str(getattr(route, "path", "")))
        found = find_cached(endpoint)
        if found is None:
            refuse_misplaced(endpoint, prefix + str(getattr(route, "path", "")))
            table.append((route, None, None))
            continue
        options, decorated = found
        dependant = getattr(route, "dependant", None)
        dependencies = list(getattr(dependant, "dependencies", ()))
        credentials = (*CREDENTIAL_FIELDS, *_credential_headers(dependencies))
        template = prefix + str(getattr(route, "path", ""))
        checked = bool(dependencies) or decorated or nested or type(original) is not APIRoute
        plan = with_declared_inputs(RoutePlan(template, options, checked, credentials), dependant)
        table.append((route, plan, None))
    return table


def plans_of(app: FastAPI) -> list[RoutePlan]:
    """The plans of every `@cached` route of `app` (`route_table`), in matching order."""
    return list(_plans(route_table(app)))


def _plans(table: list[RouteEntry]) -> Iterator[RoutePlan]:
    for _, plan, children in table:
        if plan is not None:
            yield plan
        if children is not None:
            yield from _plans(children)


def _routes_on_host(table: list[RouteEntry]) -> bool:
    """Whether any route of `table` is chosen by the request's `Host`."""
    return any(
        isinstance(getattr(route, "original_route", route), Host)
        or (children is not None and _routes_on_host(children))
        for route, _, children in table
    )


def _credential_headers(dependencies: list[Any], depth: int = 0) -> Iterator[str]:
    """The headers that `APIKeyHeader` security schemes among `dependencies` read."""
    for dependency in dependencies:
        if isinstance(dependency.call, APIKeyHeader):
            yield str(dependency.call.model.name).lower()
        if depth < _DEPTH_LIMIT:
            yield from _credential_headers(list(dependency.dependencies), depth + 1)


async def invalidate(
    app: FastAPI,
    route: str | Callable[..., Any],
    *,
    path_params: dict[str, Any] | None = None,
    query: dict[str, Any] | Iterable[tuple[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> int:
    """Drop the cached responses of one request's parameters, or all of the route's.

    `route` is the path template (`"/items/{item_id}"`, router prefix included) or the
    endpoint function. With `path_params` and/or `query`, the entries those select
    are dropped, for every host and `Vary` variant; with neither, every entry of the
    route. With `headers` (`{"authorization": ...}`), on a route keyed on request
    fields (`vary_on`, `vary_on_cookies`, declared `Header()`/`Cookie()`), one caller's
    entries only: naming one keyed field and no parameters, every entry with that value
    of it; else those of a request carrying exactly those values. Returns how many
    entries were dropped.

    Raises:
        ConfigurationError: no `@cached` route of `app` is `route`.
    """
    plans = plans_of(app)
    http_cache = http_cache_of(app, app.state.atomcache)
    return await http_cache.invalidate_route(
        plans, route, path_params=path_params, query=query, headers=headers
    )


class AtomCacheMiddleware:
    """Pure ASGI middleware: answers requests of `@cached` routes through the cache.

    Requests of routes with nothing before the handler are answered before routing
    (the fast path); for the others, a stored response is sent only once the app's
    dependencies have let the request through. Behind Starlette's `GZipMiddleware`,
    each content coding of a cached route's response gets its own `ETag` and every
    response names `Accept-Encoding` in `Vary` (`GZipAround`). Other requests pass
    through, unless
    their handler claimed an entry through `ResponseCache.raise_try`: then their final
    response is stored (and sent the way `@cached` routes send it). On lifespan
    startup it checks the cache first if `check` (`setup_cache`); on shutdown it closes
    the cache.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        cache: Cache,
        routes_of: FastAPI,
        http_cache: HttpCache | None = None,
        check: bool = False,
    ) -> None:
        """Wrap `app`; look routes up in `routes_of`; serve through `http_cache` if given."""
        self.app = app
        self.cache = cache
        self.check = check
        self.http_cache = http_cache or HttpCache(cache, placeholder=_placeholder)
        self._routes_of = routes_of
        self._compression = GZipAround.of(routes_of)  # the stack is built: the list is final
        self._table: list[RouteEntry] | None = None
        self._on_host = False
        self._lookups: dict[tuple[str, str, str, str], tuple[RoutePlan, dict[str, Any]] | None] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve cached routes; pass everything else on."""
        if scope["type"] == "http":
            found = self._lookup(scope)
            if found is not None:
                plan, path_params = found
                if self._compression is not None:
                    scope, send = self._compression.wrap(scope, send)
                await self.http_cache.serve(
                    scope, receive, send, self.app, route=plan, path_params=path_params
                )
                return
            await self._storing_claims(scope, receive, send)
            return
        if scope["type"] == "lifespan":
            await self._serve_lifespan(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _lookup(self, scope: Scope) -> tuple[RoutePlan, dict[str, Any]] | None:
        """The cached route a request goes to, as the router would choose it.

        Remembered by method, mount point and path, and by `Host` too when a route is
        chosen by it (HTTP.md 0.2: whatever the router matches on decides the plan).
        """
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            return None
        if self._table is None:
            self._plan_routes()
        host = _host_of(scope) if self._on_host else ""
        memo = (method, scope.get("root_path", ""), scope["path"], host)
        if memo in self._lookups:
            return self._lookups[memo]
        found = _match(self._table or [], scope, method)
        if len(self._lookups) >= _LOOKUP_LIMIT:
            self._lookups.clear()
        self._lookups[memo] = found
        return found

    def _plan_routes(self) -> None:
        self._table = route_table(self._routes_of)
        self._on_host = _routes_on_host(self._table)
        self._lookups.clear()

    async def _storing_claims(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; if its handler claimed an entry, store the final response."""
        state: dict[str, Any] = scope.setdefault("state", {})
        capture: ResponseCapture | None = None

        async def watch(message: Message) -> None:
            nonlocal capture
            if message["type"] == "http.response.start":
                if capture is None and CLAIM in state:
                    capture = ResponseCapture(send)
                elif BYPASS in state:  # raise_try did not use the cache: say why
                    forward, detail = state.pop(BYPASS)
                    self.http_cache.report(_template(scope), "bypass", detail)
                    message = _with_bypass_status(message, forward, detail)
            await (capture or send)(message)

        try:
            await passing(self.app, scope, receive, watch)
        except BaseException:
            claim = state.pop(CLAIM, None)
            if isinstance(claim, Claim):
                await _abandon(claim, failed=True)
            raise
        claim = state.pop(CLAIM, None)
        if isinstance(claim, Claim):
            if capture is not None:
                await self._settle(claim, capture, scope, send)
            else:  # no response went out: nothing to store
                await _abandon(claim, failed=False)

    async def _settle(
        self, claim: Claim, capture: ResponseCapture, scope: Scope, send: Send
    ) -> None:
        """Store a claimed response if its handler called `set` (else release it); send it."""
        try:
            await self._store_claimed(claim, capture, scope, send)
        finally:
            if claim.release is not None:
                await claim.release.release()

    async def _store_claimed(
        self, claim: Claim, capture: ResponseCapture, scope: Scope, send: Send
    ) -> None:
        result = capture.result(claim.plan.route, claim.plan.info.headers)
        if not claim.requested:  # the original stores nothing unless set is called
            capture.reason = "not set"
            result = Uncacheable(capture)
        if isinstance(result, Uncacheable):
            if claim.lease is not None:
                await claim.lease.skip()
            self.http_cache.report(claim.plan.route.template, "uncached", capture.reason)
            if not capture.streamed:
                await self.http_cache.send_uncached(send, scope, capture, capture.reason)
            return
        flight = self.cache.single_flight
        try:
            if claim.lease is not None:
                outcome = await claim.lease.fulfil(result)
            else:
                outcome = await flight.store(claim.plan.key, result, claim.plan.flight)
        except AtomCacheError:
            self.http_cache.report(claim.plan.route.template, "uncached", "backend unavailable")
            await self.http_cache.send_uncached(send, scope, capture, "backend unavailable")
            return
        await self.http_cache.respond(send, scope, claim.plan, outcome)

    async def _serve_lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app's lifespan; with `check`, fail its startup if the cache cannot work.

        The check runs when the server asks for the startup, before the app's own
        startup: on failure the cache is closed, the server told why, and the app's
        lifespan never starts.
        """
        if self.check:
            startup = await receive()
            try:
                await self.cache.check()
            except AtomCacheError as error:
                await self.cache.close()
                await send({"type": "lifespan.startup.failed", "message": str(error)})
                return
            receive = _replaying(startup, receive)
        await self.app(scope, receive, self._lifespan(send))

    def _lifespan(self, send: Send) -> Send:
        """Plan the routes once the app has started; close the cache when it stops."""

        async def watching(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                self._plan_routes()
            elif message["type"] == "lifespan.shutdown.complete":
                await self.cache.close()
            await send(message)

        return watching


def _replaying(first: Message, receive: Receive) -> Receive:
    """`receive`, giving `first` (already received) once before the messages to come."""
    pending = [first]

    async def replaying() -> Message:
        return pending.pop() if pending else await receive()

    return replaying


def _match(
    table: list[RouteEntry], scope: Scope, method: str
) -> tuple[RoutePlan, dict[str, Any]] | None:
    """The plan and path parameters of the route the router chooses in `table`, if cached.

    A `Mount` or `Host` of a router that matches is entered, as Starlette does, with
    the scope its match gives (mount point, path parameters).
    """
    for route, plan, children in table:
        match, child = route.matches(scope)
        head_of_get = (
            match is Match.PARTIAL
            and method == "HEAD"
            and "GET" in (getattr(route, "methods", None) or ())
        )
        if match is Match.FULL and children is not None:
            return _match(children, {**scope, **child}, method)
        if match is Match.FULL or head_of_get:
            if plan is not None:
                return plan, dict(child.get("path_params", {}))
            return None
    return None


def _host_of(scope: Scope) -> str:
    """The `Host` field of a request, as Starlette's `Host` route reads it."""
    for name, value in scope.get("headers", ()):
        if name == b"host":
            return str(value.decode("latin-1"))
    return ""


def _placeholder() -> Response:
    """What a cached endpoint returns once the checks have passed: replaced on the way out."""
    return Response(headers={PLACEHOLDER_FIELD[0].decode(): PLACEHOLDER_FIELD[1].decode()})


def _template(scope: Scope) -> str:
    """The path template of the route the router chose (`ResponseCache` routes)."""
    route = scope.get("route")
    return str(getattr(route, "path", "")) or str(scope.get("path", ""))


def _with_bypass_status(message: Message, forward: str, detail: str) -> Message:
    """A response start with a `Cache-Status` saying why the cache was not used."""
    status = cache_status(hit=False, forward=forward, detail=detail).encode("latin-1")
    return {**message, "headers": [*message.get("headers", ()), (b"cache-status", status)]}


async def _abandon(claim: Claim, *, failed: bool) -> None:
    """Store nothing for a claim: release its lease (failed or skipped) and its lock."""
    if claim.lease is not None:
        await (claim.lease.fail() if failed else claim.lease.skip())
    if claim.release is not None:
        await claim.release.release()


def with_declared_inputs(plan: RoutePlan, dependant: Any) -> RoutePlan:
    """`plan` with what its route declares it reads, found once (HTTP.md 2.3).

    Walks the route's dependant and every dependency's, at any depth: each `Header()`
    and `Cookie()` (fields of a parameter model included), and each security scheme:
    an `APIKeyHeader`'s header is a credential field, an `APIKeyCookie`'s cookie a
    credential cookie, an `APIKeyQuery`'s parameter a credential query parameter; the
    HTTP and OAuth2 schemes read `Authorization`, a credential already.
    """
    headers: list[str] = []
    cookies: list[str] = []
    found: dict[str, list[str]] = {"header": [], "cookie": [], "query": []}
    pending, seen = [(dependant, 0)], 0
    while pending and seen < _LOOKUP_LIMIT:
        current, depth = pending.pop()
        seen += 1
        if current is None:
            continue
        for field in getattr(current, "header_params", ()):
            headers.extend(_request_names(field, header=True))
        for field in getattr(current, "cookie_params", ()):
            cookies.extend(_request_names(field, header=False))
        scheme = getattr(current, "call", None)
        if isinstance(scheme, SecurityBase):
            location = str(getattr(getattr(scheme.model, "in_", None), "value", ""))
            name = getattr(scheme.model, "name", None)
            if location in found and isinstance(name, str):
                found[location].append(name)
        if depth < _DEPTH_LIMIT:
            pending.extend((child, depth + 1) for child in getattr(current, "dependencies", ()))
    return replace(
        plan,
        credentials=(*plan.credentials, *(name.lower() for name in found["header"])),
        headers=(*plan.headers, *headers),
        cookies=(*plan.cookies, *cookies),
        credential_cookies=(*plan.credential_cookies, *found["cookie"]),
        credential_query=(*plan.credential_query, *found["query"]),
    )


def _request_names(field: Any, *, header: bool) -> list[str]:
    """The request field or cookie names a `Header()`/`Cookie()` parameter reads.

    A parameter model (`Annotated[Model, Header()]`) reads one per model field.
    """
    model = _PARAM_MODEL(field) if _PARAM_MODEL is not None else None
    if model is None:
        return [str(name).lower() if header else str(name) for name in _aliases(field)]
    convert = header and getattr(field.field_info, "convert_underscores", True)
    names: list[str] = []
    for name, info in model.model_fields.items():
        alias = info.alias or name
        if convert and getattr(info, "convert_underscores", True) and alias == name:
            alias = alias.replace("_", "-")
        names.append(alias.lower() if header else alias)
    return names


def _aliases(field: Any) -> list[str]:
    """The names a plain parameter is read under (its alias, or each of its choices)."""
    if _PARAM_ALIASES is not None:
        return [str(request) for _, request in _PARAM_ALIASES(field)]
    return [str(getattr(field, "alias", "") or field.name)]  # pragma: no cover - older FastAPI
