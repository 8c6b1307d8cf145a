"""HTTP response caching at the ASGI level, shared by the framework adapters.

An adapter finds the route of a request (its path template, path parameters and
`RouteOptions`) and hands the ASGI call to `HttpCache.serve`. Everything else, from the
key to the 304, happens here, in one place for every framework: the adapters stay
thin translators. This module imports no web framework; ASGI is only dicts and
callables.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import parse_qsl

from atomcache_core._singleflight import FlightOptions, Outcome, Uncacheable
from atomcache_core.exceptions import AtomCacheError, ConfigurationError
from atomcache_core.http import (
    ResponseSerializer,
    StoredResponse,
    cache_status,
    get_header,
    if_none_match,
    make_etag,
    not_modified_headers,
    parse_cache_control,
    render_cache_control,
    response_storable,
    storable_headers,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, MutableMapping

    from atomcache_core.cache import Cache

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]
    ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "HttpCache",
    "RequestInfo",
    "RequestPlan",
    "ResponseCapture",
    "RouteOptions",
    "cached",
    "route_options",
]

logger = logging.getLogger("atomcache")

DEFAULT_MAX_BODY_SIZE = 16 * 1024 * 1024
_SERIALIZER = ResponseSerializer()
_CACHEABLE_METHODS = frozenset(("GET", "HEAD"))
_REPLACED_ON_SERVE = frozenset((b"cache-control", b"age", b"cache-status", b"etag"))
_OPTIONS_ATTRIBUTE = "__atomcache__"
_SERVER_ERROR = 500
_MEMO_LIMIT = 4096
EndpointT = TypeVar("EndpointT", bound="Callable[..., Any]")


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What a cache key may depend on: the request, as the route saw it.

    Attributes:
        method: `GET` or `HEAD`.
        route: The route's path template, e.g. `/items/{item_id}`.
        path_params: The path parameters, by name.
        query: The query parameters in request order, repeated names kept.
        headers: Request fields, lower-case names, repeated fields joined by commas.
    """

    method: str
    route: str
    path_params: Mapping[str, Any]
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]

    @classmethod
    def from_scope(cls, scope: Scope, route: str, path_params: Mapping[str, Any]) -> RequestInfo:
        """Build it from an ASGI HTTP scope."""
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers", ()):
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        query = tuple(
            parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        )
        return cls(scope["method"], route, path_params, query, headers)


@dataclass(frozen=True, slots=True)
class RouteOptions:
    """How one route is cached: what `@cached(...)` accepts in every adapter.

    Attributes:
        ttl: Seconds a response stays fresh; `None` means the cache's default TTL.
        namespace: Groups the route's entries; default: the route's path template.
        vary_on: Request fields whose values are part of the key (`accept-language`).
            Naming `authorization` makes entries per user and lets authorized
            requests use the cache.
        tags: Tags of every entry, or a function of the `RequestInfo` returning them.
        stale_ttl: Serve an expired entry this many seconds while one refresh runs.
        stale_if_error: Serve an expired entry this long when its refresh fails.
        no_cache: `"honour"` a request's `no-cache` / `max-age=0` by recomputing (at most
            once per `min_refresh_interval`), or `"ignore"` it.
        min_refresh_interval: Seconds during which a just-computed entry answers
            `no-cache` requests instead of another recomputation.
        cache_control: `Cache-Control` to send instead of `max-age=<remaining>`, e.g.
            `"public, s-maxage=60"`; `max-age`/`s-maxage` are capped at what is left.
        statuses: Status codes that are stored.
        max_body_size: Larger bodies are sent but not stored.
        key: Builds the key from the `RequestInfo` instead of the default.
    """

    ttl: float | None = None
    namespace: str | None = None
    vary_on: tuple[str, ...] = ()
    tags: tuple[str, ...] | Callable[[RequestInfo], Iterable[str]] = ()
    stale_ttl: float = 0.0
    stale_if_error: float = 0.0
    no_cache: Literal["honour", "ignore"] = "honour"
    min_refresh_interval: float = 1.0
    cache_control: str | None = None
    statuses: frozenset[int] = field(default_factory=lambda: frozenset({200}))
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    key: Callable[[RequestInfo], str] | None = None

    def __post_init__(self) -> None:
        """Check the options once, when the route is declared."""
        if self.no_cache not in ("honour", "ignore"):
            msg = f"no_cache must be 'honour' or 'ignore', got {self.no_cache!r}"
            raise ConfigurationError(msg)
        for name in ("stale_ttl", "stale_if_error", "min_refresh_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                msg = f"{name} must be a number of seconds >= 0, got {value!r}"
                raise ConfigurationError(msg)
        ttl = self.ttl
        if ttl is not None and (
            isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl < math.inf
        ):
            msg = f"ttl must be a positive, finite number of seconds (or None), got {ttl!r}"
            raise ConfigurationError(msg)
        object.__setattr__(self, "vary_on", tuple(name.lower() for name in self.vary_on))
        object.__setattr__(self, "statuses", frozenset(self.statuses))

    @property
    def authorized(self) -> bool:
        """Whether requests with `Authorization` may use this route's cache."""
        return "authorization" in self.vary_on or self.key is not None


class _ServerError(Exception):
    """The handler answered 5xx: a failed computation (RFC 5861 stale-if-error)."""

    def __init__(self, capture: ResponseCapture) -> None:
        super().__init__(capture.status)
        self.capture = capture


class ResponseCapture:
    """An ASGI `send` that keeps a complete response, or forwards a streaming one.

    A response whose body comes in one message is kept (`status`, `headers`,
    `body`) for the cache to decide on. A body in several messages is a stream: it
    goes to the client's `send` as it comes, untouched, and `streamed` is set.
    """

    __slots__ = ("_send", "body", "headers", "reason", "status", "streamed")

    def __init__(self, send: Send) -> None:
        """Capture what would go to `send`."""
        self._send = send
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.streamed = False
        self.reason = ""

    async def __call__(self, message: Message) -> None:
        """Take one ASGI message."""
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", ()))
        elif kind != "http.response.body":
            await self._send(message)
        elif self.streamed or message.get("more_body", False):
            if not self.streamed:
                self.streamed = True
                start = {
                    "type": "http.response.start",
                    "status": self.status,
                    "headers": self.headers,
                }
                await self._send(start)
            await self._send(message)
        else:
            self.body = message.get("body", b"")

    def result(self, options: RouteOptions) -> StoredResponse | Uncacheable:
        """What to store, or `Uncacheable(self)` with the reason it is not stored."""
        if self.streamed:
            self.reason = "streamed"
        elif not response_storable(self.status, self.headers, options.statuses):
            self.reason = "not storable"
        elif len(self.body) > options.max_body_size:
            self.reason = "too large"
        else:
            return _stored_response(self, options)
        return Uncacheable(self)


@dataclass(frozen=True, slots=True)
class RequestPlan:
    """What the cache will do for one request of a cached route.

    Attributes:
        info: The request, as keys see it.
        options: The route's options.
        key: The entry's cache key.
        flight: The single-flight options (TTL, tags, freshness, store or not).
        directives: The request's `Cache-Control` directives.
        forced: Whether the request asked for a refresh (`no-cache`, honoured).
    """

    info: RequestInfo
    options: RouteOptions
    key: str
    flight: FlightOptions
    directives: Mapping[str, str | None]
    forced: bool

    @property
    def only_if_cached(self) -> bool:
        """Whether the request may only be answered from the cache."""
        return "only-if-cached" in self.directives


def cached(
    ttl: float | None = None,
    *,
    namespace: str | None = None,
    vary_on: Iterable[str] = (),
    tags: Iterable[str] | Callable[[RequestInfo], Iterable[str]] = (),
    stale_ttl: float = 0.0,
    stale_if_error: float = 0.0,
    no_cache: Literal["honour", "ignore"] = "honour",
    min_refresh_interval: float = 1.0,
    cache_control: str | None = None,
    statuses: Iterable[int] = (200,),
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    key: Callable[[RequestInfo], str] | None = None,
) -> Callable[[EndpointT], EndpointT]:
    """Cache a route's responses; place it directly under the route decorator.

    `@app.get(...)` (FastAPI) or `@get(...)` (Litestar) then registers the endpoint
    unchanged: it is only marked with its `RouteOptions` (see there for what each
    option does), which the adapter's middleware finds through the matched route.
    """
    options = RouteOptions(
        ttl=ttl,
        namespace=namespace,
        vary_on=tuple(vary_on),
        tags=tags if callable(tags) else tuple(tags),
        stale_ttl=stale_ttl,
        stale_if_error=stale_if_error,
        no_cache=no_cache,
        min_refresh_interval=min_refresh_interval,
        cache_control=cache_control,
        statuses=frozenset(statuses),
        max_body_size=max_body_size,
        key=key,
    )

    def mark(endpoint: EndpointT) -> EndpointT:
        setattr(endpoint, _OPTIONS_ATTRIBUTE, options)
        return endpoint

    return mark


def route_options(endpoint: object) -> RouteOptions | None:
    """The options `cached` marked an endpoint with, or `None` if it is not cached."""
    options = getattr(endpoint, _OPTIONS_ATTRIBUTE, None)
    return options if isinstance(options, RouteOptions) else None


class HttpCache:
    """Serves cached responses for the routes an adapter hands over."""

    def __init__(self, cache: Cache) -> None:
        """Cache HTTP responses in `cache`."""
        self.cache = cache
        self._static_tags: dict[tuple[str | None, str, tuple[str, ...]], tuple[str, ...]] = {}

    def key(self, options: RouteOptions, info: RequestInfo) -> str:
        """The cache key of a request: route namespace, path and query, `vary_on` values.

        Query parameters are sorted by name (repeated names keep their order); the
        method is not part of it, so `HEAD` uses the `GET` entry.
        """
        if options.key is not None:
            return f"http:{options.namespace or info.route}:{options.key(info)}"
        if not (info.path_params or info.query or options.vary_on):
            return f"http:{options.namespace or info.route}:[[],[],[]]"
        parts = [
            sorted((name, str(value)) for name, value in info.path_params.items()),
            sorted(info.query, key=lambda item: item[0]),
            [info.headers.get(name, "") for name in options.vary_on],
        ]
        encoded = json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
        return f"http:{options.namespace or info.route}:{encoded}"

    def route_tag(self, options: RouteOptions, route: str) -> str:
        """The tag every entry of a route carries, to drop them all at once."""
        return f"http-route:{options.namespace or route}"

    async def invalidate(
        self,
        options: RouteOptions,
        route: str,
        path_params: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> int:
        """Drop the entry of one request of a route, or every entry of it.

        With `path_params` or `query` given, the entry those parameters (and the
        `vary_on` `headers`) select is dropped; with neither, all of the route's entries.
        Returns how many entries were dropped.
        """
        if path_params is None and query is None:
            return await self.cache.invalidate_tags(self.route_tag(options, route))
        pairs = list(query.items()) if isinstance(query, Mapping) else list(query or ())
        info = RequestInfo(
            "GET",
            route,
            path_params or {},
            tuple((str(name), str(value)) for name, value in pairs),
            {name.lower(): value for name, value in (headers or {}).items()},
        )
        return int(await self.cache.delete(self.key(options, info)))

    def plan(
        self, scope: Scope, options: RouteOptions, route: str, path_params: Mapping[str, Any]
    ) -> RequestPlan | str:
        """Decide how to handle a request; a string says why the cache is bypassed."""
        if scope["method"] not in _CACHEABLE_METHODS:
            return "method"
        info = RequestInfo.from_scope(scope, route, path_params)
        if "authorization" in info.headers and not options.authorized:
            return "authorization"
        directives = parse_cache_control(info.headers.get("cache-control"))
        if not directives and "no-cache" in info.headers.get("pragma", "").lower():
            directives = {"no-cache": None}  # RFC 9111 section 5.4
        forced = options.no_cache == "honour" and (
            "no-cache" in directives or directives.get("max-age") == "0"
        )
        flight = self._flight_options(options, info, directives, forced=forced)
        return RequestPlan(info, options, self.key(options, info), flight, directives, forced)

    async def invalidate_route(
        self,
        routes: Iterable[tuple[str, object]],
        route: str | Callable[..., Any],
        *,
        path_params: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> int:
        """Invalidate `route`, found by path template or endpoint among an app's routes.

        `routes` are the app's `(path template, endpoint)` pairs. Returns how many
        entries were dropped (see `invalidate`).

        Raises:
            ConfigurationError: no `@cached` route matches `route`.
        """
        for template, endpoint in routes:
            options = route_options(endpoint)
            if options is not None and route in (template, endpoint):
                return await self.invalidate(options, template, path_params, query, headers)
        msg = f"no @cached route {route!r} in this app; pass its path template or endpoint"
        raise ConfigurationError(msg)

    async def serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        app: ASGIApp,
        *,
        options: RouteOptions,
        route: str,
        path_params: Mapping[str, Any],
    ) -> None:
        """Answer one request of a cached route, running `app` only when needed."""
        plan = self.plan(scope, options, route, path_params)
        if isinstance(plan, str):
            if plan == "method":
                await app(scope, receive, send)
            else:
                await self.bypass(scope, receive, send, app, plan)
            return
        capture = ResponseCapture(send)  # filled only if the handler runs

        async def produce() -> StoredResponse | Uncacheable:
            await app({**scope, "method": "GET"}, receive, capture)
            if capture.status >= _SERVER_ERROR and not capture.streamed:
                raise _ServerError(capture)  # a failure, for stale_if_error and waiters
            return capture.result(options)

        try:
            if plan.only_if_cached:
                outcome = await self.cache.single_flight.peek(plan.key, plan.flight)
                if outcome is None:
                    await self.gateway_timeout(send)
                    return
            else:
                outcome = await self.cache.single_flight.get_or_set(plan.key, produce, plan.flight)
        except _ServerError as error:
            await self.send_uncached(send, scope, error.capture, "error")
            return
        except AtomCacheError:
            logger.warning("cache unavailable for %s; answering without it", route, exc_info=True)
            await self._answer_without_cache(scope, receive, send, app, plan=plan, capture=capture)
            return
        await self.respond(send, scope, plan, outcome)

    async def _answer_without_cache(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        app: ASGIApp,
        *,
        plan: RequestPlan,
        capture: ResponseCapture,
    ) -> None:
        """Fail open: the handler's own answer, marked; never for `only-if-cached`."""
        if plan.only_if_cached:  # nothing stored can be shown: the handler must not run
            await self.gateway_timeout(send)
        elif capture.status:
            await self.send_uncached(send, scope, capture, "backend unavailable")
        else:
            await self.bypass(scope, receive, send, app, "backend unavailable")

    def _tags(self, options: RouteOptions, route: str, tags: tuple[str, ...]) -> tuple[str, ...]:
        return (self.route_tag(options, route), *tags)

    def _flight_options(
        self,
        options: RouteOptions,
        info: RequestInfo,
        directives: Mapping[str, str | None],
        *,
        forced: bool,
    ) -> FlightOptions:
        cache = self.cache
        if callable(options.tags):
            tags = self._tags(options, info.route, tuple(options.tags(info)))
        else:
            memo = (options.namespace, info.route, options.tags)
            tags = self._static_tags.get(memo) or self._tags(options, info.route, options.tags)
            if len(self._static_tags) < _MEMO_LIMIT:
                self._static_tags[memo] = tags
        return FlightOptions(
            ttl=options.ttl if options.ttl is not None else cache.default_ttl,
            tags=tags,
            stale_ttl=0.0 if forced else options.stale_ttl,
            stale_if_error=options.stale_if_error,
            fresh_after=time.time() - options.min_refresh_interval if forced else 0.0,
            store="no-store" not in directives,
            serializer=_SERIALIZER,
            etag=_etag_of,
            reuse_decoded=True,
        )

    async def respond(self, send: Send, scope: Scope, plan: RequestPlan, outcome: Outcome) -> None:
        """Send what a request of the plan gets: the entry (200/304) or its own response."""
        info, options = plan.info, plan.options
        value = outcome.value
        if isinstance(value, ResponseCapture):
            if not value.streamed:
                await self.send_uncached(send, scope, value, value.reason)
            return
        response: StoredResponse = value
        entry = outcome.entry
        now = time.time()
        remaining = max(0, int(entry.fresh_until - now)) if entry is not None else 0
        validators = [
            (b"etag", response.etag.encode("ascii")),
            (b"cache-control", _cache_control(options, remaining).encode("latin-1")),
        ]
        if entry is not None and outcome.source in ("hit", "stale", "waited"):
            validators.append((b"age", str(max(0, int(now - entry.created_at))).encode()))
        status = _status_of(outcome, remaining, forced=plan.forced).encode("latin-1")
        validators.append((b"cache-status", status))
        inm = info.headers.get("if-none-match")
        if inm and 200 <= response.status < 300 and if_none_match(inm, response.etag):  # noqa: PLR2004
            kept = not_modified_headers(response.headers)
            headers = [*kept, *validators]  # the server adds Date, as to every response
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        stored = [(name, val) for name, val in response.headers if name not in _REPLACED_ON_SERVE]
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": stored + validators,
            }
        )
        body = b"" if scope["method"] == "HEAD" else response.body
        await send({"type": "http.response.body", "body": body})

    async def send_uncached(
        self, send: Send, scope: Scope, captured: ResponseCapture, reason: str
    ) -> None:
        """Send a captured response that was not stored, saying why in `Cache-Status`."""
        status = cache_status(hit=False, forward="miss", detail=reason)
        headers = [*captured.headers, (b"cache-status", status.encode("latin-1"))]
        await send({"type": "http.response.start", "status": captured.status, "headers": headers})
        body = b"" if scope["method"] == "HEAD" else captured.body
        await send({"type": "http.response.body", "body": body})

    async def gateway_timeout(self, send: Send) -> None:
        """Answer 504: `only-if-cached` and nothing stored (RFC 9111 section 5.2.1.7)."""
        await _send_gateway_timeout(send)

    async def bypass(
        self, scope: Scope, receive: Receive, send: Send, app: ASGIApp, reason: str
    ) -> None:
        """Run the handler untouched but for a `Cache-Status` saying why."""
        status = cache_status(hit=False, forward="bypass", detail=reason).encode("latin-1")

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [*message.get("headers", ()), (b"cache-status", status)],
                }
            await send(message)

        await app(scope, receive, tagged)


def _etag_of(response: StoredResponse) -> str:
    return response.etag


def _stored_response(captured: ResponseCapture, options: RouteOptions) -> StoredResponse:
    """The entry to store: final body, storable fields, Content-Length, Vary, ETag."""
    headers = [
        (name, value)
        for name, value in storable_headers(captured.headers)
        if name not in (b"content-length", b"etag")
    ]
    headers.append((b"content-length", str(len(captured.body)).encode()))
    if options.vary_on:
        varied = get_header(headers, b"vary")
        names = ", ".join(name.title() for name in options.vary_on if name != "authorization")
        merged = ", ".join(
            part for part in (varied.decode("latin-1") if varied else "", names) if part
        )
        headers = [(name, value) for name, value in headers if name != b"vary"]
        if merged:
            headers.append((b"vary", merged.encode("latin-1")))
    return StoredResponse(captured.status, tuple(headers), captured.body, make_etag(captured.body))


def _cache_control(options: RouteOptions, remaining: int) -> str:
    """The `Cache-Control` to send: never more freshness than the entry has left."""
    if options.cache_control is None:
        return render_cache_control({"max-age": remaining})
    directives: dict[str, str | int | None] = dict(parse_cache_control(options.cache_control))
    for name in ("max-age", "s-maxage"):
        argument = directives.get(name)
        if isinstance(argument, str) and argument.isdigit():
            directives[name] = min(int(argument), remaining)
    return render_cache_control(directives)


def _status_of(outcome: Outcome, remaining: int, *, forced: bool) -> str:
    """The `Cache-Status` of a served entry (RFC 9211)."""
    if outcome.source == "hit":
        return cache_status(hit=True, ttl=remaining)
    if outcome.source == "stale":
        return cache_status(hit=True, forward="stale", ttl=0)
    forward = "request" if forced else "miss"
    if outcome.source == "computed":
        return cache_status(hit=False, forward=forward, stored=True, ttl=remaining)
    if outcome.source == "waited":
        return cache_status(hit=False, forward=forward, ttl=remaining, detail="coalesced")
    return cache_status(hit=False, forward=forward, detail=outcome.reason or "not stored")


async def _send_gateway_timeout(send: Send) -> None:
    status = cache_status(hit=False, forward="miss", detail="only-if-cached")
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"0"),
        (b"cache-status", status.encode("latin-1")),
    ]
    await send({"type": "http.response.start", "status": 504, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
