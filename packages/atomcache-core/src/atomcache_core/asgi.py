"""HTTP response caching at the ASGI level, shared by the framework adapters.

An adapter finds the route of a request (its path template, path parameters and
`RouteOptions`) and hands the ASGI call to `HttpCache.serve`. Everything else, from the
key to the 304, happens here, in one place for every framework: the adapters stay
thin translators. This module imports no web framework; ASGI is only dicts and
callables.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from atomcache_core._singleflight import (
    UNAVAILABLE,
    FlightOptions,
    Outcome,
    Uncacheable,
    warn_failed_open,
)
from atomcache_core.exceptions import AtomCacheError, ConfigurationError, SerializationError
from atomcache_core.http import (
    ResponseSerializer,
    StoredResponse,
    cache_status,
    get_header,
    make_etag,
    not_modified_headers,
    parse_cache_control,
    parse_vary,
    personal_headers,
    precondition_status,
    private_unless_set,
    render_cache_control,
    response_storable,
    selecting_fields,
    storable_headers,
    varies,
)
from atomcache_core.http_request import (
    RequestInfo,
    invalidation_tag,
    request_key,
    request_tags,
)
from atomcache_core.http_route import (
    DEFAULT_MAX_BODY_SIZE,
    GATE,
    PASSING,
    Gate,
    RouteOptions,
    RoutePlan,
    cached,
    find_cached,
    refuse_misplaced,
    refuse_websocket,
    route_options,
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
    "PLACEHOLDER_FIELD",
    "REFUSED",
    "SET_COOKIE",
    "HttpCache",
    "RequestInfo",
    "RequestPlan",
    "ResponseCapture",
    "RouteOptions",
    "RoutePlan",
    "cached",
    "find_cached",
    "passing",
    "refuse_misplaced",
    "refuse_websocket",
    "route_options",
]

logger = logging.getLogger("atomcache")

_SERIALIZER = ResponseSerializer()
_CACHEABLE_METHODS = frozenset(("GET", "HEAD"))
_REPLACED_ON_SERVE = frozenset((b"cache-control", b"age", b"cache-status", b"etag"))
_SERVER_ERROR = 500
#: A revalidation (a conditional request) of an entry with less than this many seconds
#: left renews the entry: its 304 would carry `max-age=0`, which refreshes nothing in a
#: cache in front (nginx then keeps its old copy for as long again).
_REVALIDATION_MARGIN = 1.0
_CONDITIONS = frozenset(("if-match", "if-none-match", "if-modified-since", "if-unmodified-since"))
_BLOCK_LIMIT = 512
#: The `outcome` of an HTTP response in metrics, by the single-flight outcome it sent.
_REPORTED_SOURCES = {"hit": "hit", "stale": "stale", "computed": "computed", "waited": "coalesced"}
#: The `Cache-Status` detail of a response that the app made before the route's endpoint
#: (a check refused the request): the same whatever the cache holds (HTTP.md 0.1).
REFUSED = "refused"
#: The field that marks the placeholder response of a `@cached` endpoint whose checks
#: have passed (its value is drawn per process): only that response is replaced by the
#: stored one, never another that the app made after reaching the endpoint.
PLACEHOLDER_FIELD = (b"x-atomcache-placeholder", secrets.token_hex(16).encode())
#: The `Cache-Status` detail of requests of a route whose pages a middleware outside the
#: cache gives new visitors a cookie with (`HttpCache.observe`).
SET_COOKIE = "set-cookie"
#: The scope key through which the outermost layer (`HttpCache.observe`) learns what the
#: cache sent for a request.
SERVED = "atomcache.served"
#: The scope's state key marking a refresh-ahead replay: the margin, in seconds.
REFRESH = "atomcache_refresh"
#: Where `respond` notes, for a replay, the seconds of freshness its entry has left.
REFRESHED = "atomcache_refreshed"


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
    `decided` is set as soon as either is known: the complete body, or the first
    chunk of a stream (what the app does after, such as background tasks, is not
    waited for).
    """

    __slots__ = ("_send", "body", "decided", "headers", "reason", "status", "streamed")

    def __init__(self, send: Send) -> None:
        """Capture what would go to `send`."""
        self._send = send
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.streamed = False
        self.reason = ""
        self.decided = asyncio.Event()

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
                    "headers": [*self.headers, (b"cache-status", _STREAMED_STATUS)],
                }
                await self._send(start)
                self.decided.set()
            await self._send(message)
        else:
            self.body = message.get("body", b"")
            self.decided.set()

    def result(
        self, route: RoutePlan, request_headers: Mapping[str, str]
    ) -> StoredResponse | Uncacheable[ResponseCapture]:
        """What to store, or `Uncacheable(self)` with the reason it is not stored.

        `request_headers` are the fields of the request it answers (lower-case names):
        the response's own `Vary` selects among them its secondary key.
        """
        options = route.options
        if self.streamed:
            self.reason = "streamed"
        elif not response_storable(self.status, self.headers, options.statuses):
            self.reason = "not storable"
        elif len(self.body) > options.max_body_size:
            self.reason = "too large"
        else:
            return _stored_response(self, route, request_headers)
        return Uncacheable(self)


@dataclass(slots=True)  # not frozen: made on every request, and frozen costs per field
class RequestPlan:
    """What the cache will do for one request of a cached route.

    Attributes:
        info: The request, as keys see it.
        route: The route's plan.
        key: The entry's cache key.
        flight: The single-flight options (TTL, tags, freshness, store or not).
        directives: The request's `Cache-Control` directives.
        forced: Whether the request asked for a refresh (`no-cache`, honoured).
        replay: Renews the entry by replaying the request (refresh ahead), when the
            route keeps its entries warm; `None` otherwise, and for the replays.
    """

    info: RequestInfo
    route: RoutePlan
    key: str
    flight: FlightOptions
    directives: Mapping[str, str | None]
    forced: bool
    replay: Callable[[float], Awaitable[float | None]] | None = None

    @property
    def only_if_cached(self) -> bool:
        """Whether the request may only be answered from the cache."""
        return "only-if-cached" in self.directives


@dataclass(frozen=True, slots=True)
class _Block:
    """What every answer from one stored response sends: its fields, validators, policy.

    Attributes:
        headers: The stored fields a 200 sends (those replaced per answer left out).
        not_modified: Those of them a 304 sends (RFC 9110 section 15.4.5).
        control: The handler's own `Cache-Control`, if any.
        modified: Its `Last-Modified`, if any.
        etag: The entry's `ETag`.
    """

    headers: list[tuple[bytes, bytes]]
    not_modified: list[tuple[bytes, bytes]]
    control: bytes | None
    modified: bytes | None
    etag: bytes


class _Served:
    """Whether the cache sent one request an entry (computed or not), and of which route."""

    __slots__ = ("route",)

    def __init__(self) -> None:
        self.route: RoutePlan | None = None


class _Run:
    """One request's computation: the factory single flight calls to run the handler.

    Each call runs the app (a `HEAD` as `GET`) in a task of its own, into a fresh
    `ResponseCapture` kept in `ran` (empty when the answer came from elsewhere: a hit,
    another computation). The call returns as soon as the response is decided (its
    body complete, or a stream started), so background tasks the response carries run
    after it is stored and sent, and a stream's joiners start their own at once (HTTP.md
    1.4, 1.5); `finish` waits for the rest of the app's work. `endpoint`: the app
    reaches the route's `@cached` endpoint, and only what that answered is stored.
    """

    __slots__ = ("app", "endpoint", "plan", "produced", "ran", "receive", "scope", "send", "tasks")

    def __init__(
        self,
        plan: RequestPlan,
        app: ASGIApp,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        endpoint: bool = True,
    ) -> None:
        self.plan = plan
        self.endpoint = endpoint
        self.app = app
        self.scope = scope
        self.receive = receive
        self.send = send
        self.ran: list[ResponseCapture] = []
        self.produced: list[object] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def __call__(self) -> StoredResponse | Uncacheable[ResponseCapture]:
        """Run the handler; raise `_ServerError` on 5xx, else what to store.

        Stored is only what the endpoint answered (a check that refused the request
        before it, or another route, answered nothing of the route's), and only when
        the request left the visitor's session as it found it (a CSRF token, a cart
        id written there belong to one visitor).
        """
        capture = ResponseCapture(_dropping_body(self.scope, self.send))
        self.ran.append(capture)
        witness = Gate(self.plan.route.options, None)
        scope = _as_get(self.scope)
        session = _session_state(scope)
        token = GATE.set(witness)
        try:
            task = asyncio.create_task(_call(self.app, scope, self.receive, capture))
        finally:
            GATE.reset(token)
        self.tasks.append(task)
        task.add_done_callback(_log_late_failure)
        decided = asyncio.create_task(capture.decided.wait())
        try:
            await asyncio.wait((task, decided), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        finally:
            decided.cancel()
        if not capture.decided.is_set():
            task.result()  # the app failed (or ended) before answering: its exception
        if self.endpoint and not witness.passed:
            capture.reason = REFUSED
            result: StoredResponse | Uncacheable[ResponseCapture] = Uncacheable(
                capture, declined=True
            )
        elif capture.status >= _SERVER_ERROR and not capture.streamed:
            raise _ServerError(capture)  # a failure, for stale_if_error and waiters
        elif _session_state(scope) != session:
            capture.reason = "session"
            result = Uncacheable(capture)
        else:
            result = capture.result(self.plan.route, self.plan.info.headers)
        self.produced.append(result.value if isinstance(result, Uncacheable) else result)
        return result

    def answered(self, outcome: Outcome) -> bool:
        """Whether `outcome` is this request's own response (its checks have run)."""
        return bool(self.produced) and any(outcome.value is value for value in self.produced)

    async def finish(self) -> None:
        """Wait for what the app does after its response (background tasks, a stream).

        A failure there is logged: the response has been sent and stays as it was.
        """
        try:  # failures are logged by _log_late_failure
            await asyncio.shield(asyncio.gather(*self.tasks, return_exceptions=True))
        except asyncio.CancelledError:
            for task in self.tasks:
                task.cancel()
            raise


async def _call(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    await app(scope, receive, send)


def _session_state(scope: Scope) -> str | None:
    """The visitor's session as the request found it, to tell whether the app wrote to it.

    Starlette's `SessionMiddleware` and Litestar's session middleware keep it in
    `scope["session"]` (a dict of JSON values, or a value Litestar serialises).
    """
    session = scope.get("session")
    if not session:
        return None
    try:
        return json.dumps(session, sort_keys=True, default=repr)
    except (TypeError, ValueError):  # keys that do not sort, or a cycle: compare reprs
        return repr(session)


def _log_late_failure(task: asyncio.Task[None]) -> None:
    """Log what failed in the app after its response was decided (background tasks)."""
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.error("the app failed after its response was sent", exc_info=error)


class HttpCache:
    """Serves cached responses for the routes an adapter hands over.

    Args:
        cache: Where entries live.
        placeholder: Makes what a `@cached` endpoint returns instead of running its
            handler once the application's checks have passed (an empty response of
            the framework, carrying `PLACEHOLDER_FIELD`); the stored response is sent
            in its place. With one, the app's routes are `@cached` endpoints, and only
            what such an endpoint answered is stored. Without (`None`), the app handed
            to `serve` is the route's handler itself: every answer of it is the
            route's, and routes with checks cannot be served.
    """

    def __init__(self, cache: Cache, placeholder: Callable[[], Any] | None = None) -> None:
        """Cache HTTP responses in `cache`."""
        self.cache = cache
        self.placeholder = placeholder
        self._stateful: set[int] = set()
        self._blocks: dict[int, tuple[tuple[tuple[bytes, bytes], ...], str, _Block]] = {}

    def key(self, route: RoutePlan, info: RequestInfo, varied: tuple[str, ...] = ()) -> str:
        """The cache key of a request (`request_key`); `varied`: a stored entry's `Vary` fields."""
        return request_key(route, info, varied)

    async def invalidate(
        self,
        route: RoutePlan,
        path_params: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> int:
        """Drop the entries of one parameter set of a route, or every entry of it.

        With `path_params` and/or `query`, the entries those parameters select are
        dropped, for every host, header variant and (without `query`) query string;
        with neither, all of the route's entries (all of its `namespace`'s, if it
        has one). With `headers`, on a route keyed on request fields (`vary_on`,
        `vary_on_cookies`, declared headers and cookies), one caller's entries only
        (`invalidation_tag`). Returns how many entries were dropped.
        """
        pairs = list(query.items()) if isinstance(query, Mapping) else list(query or ())
        tag = invalidation_tag(route, path_params, pairs, headers)
        return await self.cache.invalidate_tags(tag)

    def plan(
        self,
        scope: Scope,
        route: RoutePlan,
        path_params: Mapping[str, Any],
        varied: tuple[str, ...] = (),
    ) -> RequestPlan | str:
        """Decide how to handle a request; a string says why the cache is bypassed.

        `varied`: the fields a stored entry of the same target varies on, whose values
        in this request key its own variant (RFC 9111 section 4.1).
        """
        if scope["method"] not in _CACHEABLE_METHODS:
            return "method"
        info = RequestInfo.from_scope(scope, route.template, path_params)
        reason = route.bypass_reason(info.headers)  # type: ignore[arg-type]
        if reason is not None:
            return reason
        if id(route.options) in self._stateful:
            return SET_COOKIE
        options = route.options
        directives = parse_cache_control(info.headers.get("cache-control"))
        if not directives and "no-cache" in info.headers.get("pragma", "").lower():
            directives = {"no-cache": None}  # RFC 9111 section 5.4
        forced = options.no_cache == "honour" and (
            "no-cache" in directives or directives.get("max-age") == "0"
        )
        flight = self._flight_options(route, info, directives, forced=forced)
        margin = scope.get("state", {}).get(REFRESH)
        if margin is not None:  # a refresh-ahead replay: renew an entry about to expire
            flight.fresh_margin = max(flight.fresh_margin, float(margin))
            flight.background = True
        return RequestPlan(info, route, self.key(route, info, varied), flight, directives, forced)

    async def invalidate_route(
        self,
        routes: Iterable[RoutePlan | tuple[str, object]],
        route: str | Callable[..., Any],
        *,
        path_params: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> int:
        """Invalidate `route`, found by path template or endpoint among an app's routes.

        `routes` are the app's route plans, or `(path template, endpoint)` pairs. A
        template matches as declared or without its parameters' converters
        (`/items/{item_id:int}` is `/items/{item_id}`); an endpoint served by several
        routes is invalidated on each of them. Returns how many entries were dropped
        (see `invalidate`, `headers` included).

        Raises:
            ConfigurationError: no `@cached` route matches `route`.
        """
        wanted = _bare_template(route) if isinstance(route, str) else None
        dropped, found = 0, False
        for candidate in routes:
            if isinstance(candidate, RoutePlan):
                plan, endpoint = candidate, None
            else:
                template, endpoint = candidate
                options = route_options(endpoint)
                if options is None:
                    continue
                plan = RoutePlan(template, options)
            if (
                wanted == _bare_template(plan.template)
                or (endpoint is not None and route is endpoint)
                or (wanted is None and endpoint is None and route_options(route) is plan.options)
            ):
                found = True
                dropped += await self.invalidate(plan, path_params, query, headers)
        if not found:
            msg = f"no @cached route {route!r} in this app; pass its path template or endpoint"
            raise ConfigurationError(msg)
        return dropped

    async def serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        app: ASGIApp,
        *,
        route: RoutePlan,
        path_params: Mapping[str, Any],
    ) -> None:
        """Answer one request of a cached route, running `app` only when needed.

        For a `checked` route, an answer that this request did not compute itself (a
        hit, a stale entry, another request's computation) is sent only after the app
        has run the route's checks and reached the endpoint (HTTP.md 0.1).
        """
        plan = self.plan(scope, route, path_params)
        if isinstance(plan, str):
            if plan == "method":
                await passing(app, scope, receive, send, route)
            else:
                self.report(route.template, "bypass", plan)
                personal = plan in route.credentials
                await self.bypass(scope, receive, send, app, plan, route=route, personal=personal)
            return
        for _ in range(2):  # a second time when the entry found varied (RFC 9111 4.1)
            if route.options.refresh_ahead and not route.personal and not replaying(scope):
                plan.replay = self._replayer(scope, app, route, path_params)
            run = _Run(plan, app, scope, receive, send, endpoint=self.placeholder is not None)
            try:
                varied = await self._serve(run)
            finally:
                if run.tasks:  # the app ran here: wait for what it does after answering
                    await run.finish()
            if varied is None:
                return
            plan = self.plan(scope, route, path_params, varied)
            if isinstance(plan, str):  # pragma: no cover - the same request, the same answer
                break
        self.report(route.template, "bypass", "variant")
        await self.bypass(scope, receive, send, app, "variant", route=route)

    def _replayer(
        self, scope: Scope, app: ASGIApp, route: RoutePlan, path_params: Mapping[str, Any]
    ) -> Callable[[float], Awaitable[float | None]]:
        """Renews the entry of this request by sending it again (`replayer`)."""

        async def call(replayed: Scope, receive: Receive, send: Send) -> None:
            await self.serve(replayed, receive, send, app, route=route, path_params=path_params)

        return replayer(call, scope, without=route.credentials)

    def _block(self, response: StoredResponse) -> _Block:
        """The parts of a stored response that every answer from it sends, made once.

        Kept by the identity of the response's field tuple (and its ETag), so the memo
        never holds a body: memory stays within the storage's bounds.
        """
        found = self._blocks.get(id(response.headers))
        if found is not None and found[0] is response.headers and found[1] == response.etag:
            return found[2]
        headers = [(name, val) for name, val in response.headers if name not in _REPLACED_ON_SERVE]
        block = _Block(
            headers,
            not_modified_headers(headers),
            get_header(response.headers, b"cache-control"),
            get_header(response.headers, b"last-modified"),
            response.etag.encode("latin-1"),
        )
        if len(self._blocks) >= _BLOCK_LIMIT:
            self._blocks.clear()
        self._blocks[id(response.headers)] = (response.headers, response.etag, block)
        return block

    async def _serve(self, run: _Run) -> tuple[str, ...] | None:
        """Answer from the cache or run the handler once (single flight).

        Returns the fields the entry found varies on, having sent nothing, when it was
        stored for a request with other values of them (RFC 9111 section 4.1): the
        caller asks again under the key of this request's values of those fields, where
        its own variant is kept. Else `None`, the request answered.
        """
        plan, scope, send = run.plan, run.scope, run.send
        try:
            if plan.only_if_cached:
                outcome = await self.cache.single_flight.peek(plan.key, plan.flight)
            else:
                outcome = await self.cache.single_flight.get_or_set(plan.key, run, plan.flight)
        except _ServerError as error:
            self.report(plan.route.template, "uncached", "error")
            await self.send_uncached(send, scope, error.capture, "error")
            return None
        except SerializationError as exc:  # this response cannot be stored: the backend is fine
            logger.warning("response for %s not stored: %s", plan.key, exc)
            self.report(plan.route.template, "uncached", "not storable")
            await self._answer_without_cache(run, "not storable")
            return None
        except AtomCacheError as exc:
            warn_failed_open("cache unavailable for %s; answering without it", plan.key, error=exc)
            self.report(plan.route.template, "uncached", "backend unavailable")
            await self._answer_without_cache(run)
            return None
        if outcome is None:  # behind checks, the 504 too is for admitted requests only
            self.report(plan.route.template, "uncached", "only-if-cached")
            if plan.route.checked:
                await self._respond_after_checks(run, None)
            else:
                await self.gateway_timeout(send)
            return None
        if run.answered(outcome):  # its own per-request fields, which the entry does not keep
            fields = [f for f in run.ran[-1].headers if f[0].lower() in plan.route.per_request]
            await self.respond(send, scope, plan, outcome, fields)
            return None
        return await self._answer_from(run, outcome)

    async def _answer_from(self, run: _Run, outcome: Outcome) -> tuple[str, ...] | None:
        """Answer with an outcome this request did not compute (see `_serve`)."""
        plan, value = run.plan, outcome.value
        if (
            isinstance(value, StoredResponse)
            and value.selecting
            and varies(value.selecting, plan.info.headers)
        ):
            return tuple(name for name, _ in value.selecting)
        if id(plan.route.options) in self._stateful:  # learnt while it was computed
            await self.bypass(
                run.scope, run.receive, run.send, run.app, SET_COOKIE, route=plan.route
            )
        elif plan.route.checked:
            await self._respond_after_checks(run, outcome)
        else:
            await self.respond(run.send, run.scope, plan, outcome)
        return None

    async def _answer_without_cache(self, run: _Run, reason: str = UNAVAILABLE) -> None:
        """Fail open: the handler's own answer, marked; never for `only-if-cached`."""
        if run.plan.only_if_cached:  # nothing stored can be shown: the handler must not run
            await self.gateway_timeout(run.send)
        elif run.ran and run.ran[0].status:
            await self.send_uncached(run.send, run.scope, run.ran[0], reason)
        else:
            await self.bypass(
                run.scope, run.receive, run.send, run.app, reason, route=run.plan.route
            )

    async def _respond_after_checks(self, run: _Run, outcome: Outcome | None) -> None:
        """Run the app up to the endpoint; send the entry only if it got there.

        What the app sends instead of the endpoint's placeholder (a 401 from a
        dependency, a guard's 403, a redirect from a decorator, a route class's answer
        after the endpoint) goes to the client as it is, with the same `Cache-Status`
        whether or not an entry is stored (HTTP.md 0.1); the placeholder is replaced by
        the stored response, or by a 504 when `outcome` is `None` (`only-if-cached`).
        """
        plan, scope, send = run.plan, run.scope, run.send
        gate = Gate(plan.route.options, self.placeholder)
        replacing = False

        async def gated(message: Message) -> None:
            nonlocal replacing
            if message["type"] == "http.response.start":
                replacing = gate.passed and PLACEHOLDER_FIELD in message.get("headers", ())
                if replacing:
                    if outcome is None:
                        await self.gateway_timeout(send)
                    else:
                        await self.respond(send, scope, plan, outcome)
                    return
                self.report(plan.route.template, "bypass", REFUSED)
                message = _with_cache_status(message, _REFUSED_STATUS)
            if not replacing:
                await send(message)

        token = GATE.set(gate)
        try:
            await run.app(_as_get(scope), run.receive, _dropping_body(scope, gated))
        finally:
            GATE.reset(token)

    def _flight_options(
        self,
        route: RoutePlan,
        info: RequestInfo,
        directives: Mapping[str, str | None],
        *,
        forced: bool,
    ) -> FlightOptions:
        options = route.options

        def tags() -> tuple[str, ...]:
            own = request_tags(route, info)
            if not options.tags:
                return own
            extra = options.tags(info) if callable(options.tags) else options.tags
            return (*own, *extra)

        return FlightOptions(
            ttl=options.ttl if options.ttl is not None else self.cache.default_ttl,
            tags=tags,
            stale_ttl=0.0 if forced else options.stale_ttl,
            stale_if_error=options.stale_if_error,
            fresh_after=time.time() - options.min_refresh_interval if forced else 0.0,
            fresh_margin=_REVALIDATION_MARGIN if _revalidates(info.headers) else 0.0,
            store="no-store" not in directives,
            serializer=_SERIALIZER,
            etag=_etag_of,
            reuse_decoded=True,
        )

    async def respond(
        self,
        send: Send,
        scope: Scope,
        plan: RequestPlan,
        outcome: Outcome,
        fields: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        """Send what a request of the plan gets: the entry (200/304/412) or its own response.

        `fields` are added to a 200 (the computing request's per-request fields).
        """
        info, route = plan.info, plan.route
        value = outcome.value
        self._report_outcome(route, outcome)
        if isinstance(value, ResponseCapture):
            if not value.streamed:
                await self.send_uncached(send, scope, value, value.reason)
            return
        response: StoredResponse = value
        if SERVED in scope:  # observed: a middleware outside may set cookies
            _note_served(scope, route)
        block = self._block(response)
        entry = outcome.entry
        fresh_for = entry.fresh_until - time.time() if entry is not None else 0.0
        remaining = max(0, int(fresh_for))
        if entry is not None and replaying(scope):  # tell the replay what it renewed
            scope["state"][REFRESHED] = fresh_for
        elif plan.replay is not None and entry is not None and outcome.source != "computed":
            # Read again after the request that computed it: kept warm from now on (a
            # URL asked once, junk included, is left to expire).
            self.cache.refresher.touch(
                plan.key,
                plan.replay,
                fresh_for=fresh_for,
                ttl=plan.flight.ttl,
                idle=plan.route.options.refresh_idle,
                compute_time=entry.compute_time,
            )
        if (
            route.options.cache_control is None
            and block.control is None
            and not (route.personal or route.checked)
        ):
            control = b"max-age=%d" % remaining
        else:
            control = _cache_control(route, remaining, block.control).encode("latin-1")
        status = _status_of(outcome, remaining, forced=plan.forced)
        validators = [
            (b"etag", block.etag),
            (b"cache-control", control),
            (b"cache-status", status),
        ]  # no Age: max-age already counts what is left (HTTP.md 5.1)
        if (
            200 <= response.status < 300  # noqa: PLR2004 - the status wins (HTTP.md 4.3)
            and not _CONDITIONS.isdisjoint(info.headers)
            and await _answered_conditionally(
                send,
                info,
                response,
                block,
                validators,
                stale=remaining == 0 and outcome.source == "stale",
            )
        ):
            return
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [*block.headers, *validators, *fields],
            }
        )
        body = b"" if scope["method"] == "HEAD" else response.body
        await send({"type": "http.response.body", "body": body})

    def observe(self, app: ASGIApp) -> ASGIApp:
        """Wrap `app` (the whole application, outside every middleware) to watch for cookies.

        A page of the cache to which a middleware outside the cache added a cookie the
        request did not carry (a double-submit CSRF token, a new session: state of that
        one visitor, which the page may show) makes the route's entries dropped and the
        route not cached any more in this process (`Cache-Status` detail `set-cookie`),
        unless it is `public`. A cookie the request carried, set again (a session's
        renewal), is no new state. Adapters install it.
        """

        async def observed(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            served = scope[SERVED] = _Served()

            async def watch(message: Message) -> None:
                if (
                    message["type"] == "http.response.start"
                    and served.route is not None
                    and _sets_a_new_cookie(scope, message)
                ):
                    await self._learn_stateful(served.route)
                    message = {**message, "headers": _visitors_own(message["headers"])}
                await send(message)

            await app(scope, receive, watch)

        return observed

    async def _learn_stateful(self, route: RoutePlan) -> None:
        """Stop caching `route`: its pages carry a visitor's new cookie."""
        if id(route.options) not in self._stateful:
            self._stateful.add(id(route.options))
            logger.warning(
                "a middleware outside the cache set a cookie on a page of %s for a new "
                "visitor: the route is not cached any more; if the page is the same for "
                "every visitor, declare it with @cached(public=True)",
                route.template,
            )
        try:
            await self.invalidate(route)
        except AtomCacheError as exc:
            warn_failed_open("could not drop the entries of %s", route.template, error=exc)

    def report(self, template: str, outcome: str, reason: str = "") -> None:
        """Count a response of the route `template` (`http.responses` in observability).

        `outcome` is `hit`, `stale`, `computed`, `coalesced`, `uncached` or `bypass`;
        `reason` what `Cache-Status` says of a bypass or an unstored response.
        """
        observer = self.cache.observer
        if observer is not None:
            attributes = (
                ("namespace", self.cache.namespace),
                ("http.route", template),
                ("outcome", outcome),
                ("reason", reason),
            )
            observer.add("http.responses", attributes)

    def _report_outcome(self, route: RoutePlan, outcome: Outcome) -> None:
        """Count a response sent from a single-flight outcome, by where it came from."""
        if self.cache.observer is None:
            return
        value = outcome.value
        if isinstance(value, ResponseCapture):
            self.report(route.template, "uncached", value.reason or "not stored")
        elif outcome.source == "uncached":
            self.report(route.template, "uncached", outcome.reason or "not stored")
        else:
            self.report(route.template, _REPORTED_SOURCES[outcome.source])

    async def send_uncached(
        self, send: Send, scope: Scope, captured: ResponseCapture, reason: str
    ) -> None:
        """Send a captured response that was not stored, saying why in `Cache-Status`.

        A refusal by the app's checks says the same as on a hit (`REFUSED`).
        """
        forward = "bypass" if reason == REFUSED else "miss"
        status = cache_status(hit=False, forward=forward, detail=reason)
        headers = [*captured.headers, (b"cache-status", status.encode("latin-1"))]
        await send({"type": "http.response.start", "status": captured.status, "headers": headers})
        body = b"" if scope["method"] == "HEAD" else captured.body
        await send({"type": "http.response.body", "body": body})

    async def gateway_timeout(self, send: Send) -> None:
        """Answer 504: `only-if-cached` and nothing stored (RFC 9111 section 5.2.1.7)."""
        await _send_gateway_timeout(send)

    async def bypass(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        app: ASGIApp,
        reason: str,
        *,
        route: RoutePlan | None = None,
        personal: bool = False,
    ) -> None:
        """Run the handler untouched but for a `Cache-Status` saying why.

        `route`: the cached route whose endpoint runs (`passing`). `personal`: `reason`
        is the credential field the response was computed for; it goes downstream
        marked so (`personal_headers`: `private`, `Vary`), as entries that depend on
        credentials do (HTTP.md 2.2). A `HEAD` runs the `GET` handler and its body is
        dropped (RFC 9110 section 9.3.2).
        """
        status = cache_status(hit=False, forward="bypass", detail=reason).encode("latin-1")

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", ())
                if personal:
                    message = {**message, "headers": personal_headers(headers, reason)}
                elif reason == SET_COOKIE:  # a page with a new visitor's cookie: theirs
                    message = {**message, "headers": private_unless_set(headers)}
                message = _with_cache_status(message, status)
            await send(message)

        await passing(app, _as_get(scope), receive, _dropping_body(scope, tagged), route)


async def passing(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, route: RoutePlan | None = None
) -> None:
    """Let a request through to `app` uncached: the endpoint of `route` runs as it is.

    Without `route` (a route that is not cached), any `@cached` function it reaches is
    not an endpoint the cache serves, and says so (`cached`'s warning).
    """
    token = GATE.set(PASSING if route is None else Gate(route.options, None))
    try:
        await app(scope, receive, send)
    finally:
        GATE.reset(token)


def replayer(
    app: ASGIApp, scope: Scope, without: Iterable[str] = ()
) -> Callable[[float], Awaitable[float | None]]:
    """Renews the entry of the request `scope` by sending it to `app` again, later.

    The replay is a `GET` with the request's fields but those named in `without`
    (lower-case: the route's credential fields, so that no replay ever acts as the
    caller who read the entry) and no body, marked with the margin under which its
    entry counts as expired (`REFRESH` in the scope's state: it takes the entry's lock
    and recomputes it, or waits for whoever does); its answer goes nowhere: `respond`
    notes in that state the seconds of freshness the entry has left after
    (`REFRESHED`), the value returned (`None`: nothing fresh).
    """
    dropped = frozenset(name.encode("latin-1") for name in without)
    headers = [
        (name, value) for name, value in scope.get("headers", ()) if name.lower() not in dropped
    ]
    snapshot = {**scope, "method": "GET", "headers": headers}

    async def replay(margin: float) -> float | None:
        state: dict[str, Any] = {REFRESH: margin}

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            pass

        await app({**snapshot, "state": state}, receive, send)
        left = state.get(REFRESHED)
        return float(left) if left is not None else None

    return replay


def replaying(scope: Scope) -> bool:
    """Whether the request is a refresh-ahead replay (not a read of the entry)."""
    state = scope.get("state")
    return state is not None and REFRESH in state


async def _answered_conditionally(
    send: Send,
    info: RequestInfo,
    response: StoredResponse,
    block: _Block,
    validators: list[tuple[bytes, bytes]],
    *,
    stale: bool,
) -> bool:
    """Send the 304 or 412 a conditional request gets (RFC 9110 section 13.2.2), if any.

    `validators` are the entry's `ETag`, `Cache-Control` and `Cache-Status` fields.
    Returns whether it sent one. A `stale` entry (no freshness left) is sent whole
    instead of a 304: a 304 with `max-age=0` refreshes nothing in a cache in front, and
    nginx then keeps its old copy as long again.
    """
    conditional = precondition_status(info.headers, response.etag, block.modified)
    if conditional == 304 and not stale:  # noqa: PLR2004
        headers = [*block.not_modified, *validators]  # the server adds Date, as to all
    elif conditional == 412:  # noqa: PLR2004
        headers = [(b"content-length", b"0"), validators[-1]]
    else:
        return False
    await send({"type": "http.response.start", "status": conditional, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
    return True


def _sets_a_new_cookie(scope: Scope, start: Message) -> bool:
    """Whether a response sets a cookie that its request did not carry (RFC 6265)."""
    set_names = {
        value.split(b"=", 1)[0].strip()
        for name, value in start.get("headers", ())
        if name.lower() == b"set-cookie"
    }
    if not set_names:
        return False
    sent = b"; ".join(value for name, value in scope["headers"] if name.lower() == b"cookie")
    carried = {chunk.split(b"=", 1)[0].strip() for chunk in sent.split(b";")}
    return not set_names <= carried


def _visitors_own(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The fields of a page that carries a new visitor's cookie: `private`, not stored."""
    fields = [
        (name, value)
        for name, value in headers
        if name.lower() not in (b"cache-control", b"cache-status")
    ]
    return [*fields, (b"cache-control", b"private"), (b"cache-status", _SET_COOKIE_STATUS)]


def _note_served(scope: Scope, route: RoutePlan) -> None:
    """Tell `HttpCache.observe` that a request is answered from an entry of `route`.

    Not for `public` routes, whose pages are the same for every visitor by declaration.
    """
    if not route.options.public and (served := scope.get(SERVED)) is not None:
        served.route = route


def _bare_template(template: str) -> str:
    """A path template without its parameters' converters: `{id:int}` is `{id}`."""
    return _CONVERTER.sub(r"{\1}", template)


def _with_cache_status(message: Message, status: bytes) -> Message:
    """A response start with `status` as its `Cache-Status` field."""
    return {**message, "headers": [*message.get("headers", ()), (b"cache-status", status)]}


_CONVERTER = re.compile(r"\{([^{}:]+):[^{}]*\}")
_SET_COOKIE_STATUS = cache_status(hit=False, forward="miss", detail=SET_COOKIE).encode("latin-1")
_STREAMED_STATUS = cache_status(hit=False, forward="miss", detail="streamed").encode("latin-1")
_REFUSED_STATUS = cache_status(hit=False, forward="bypass", detail=REFUSED).encode("latin-1")


def _revalidates(headers: Mapping[str, str]) -> bool:
    """Whether a request asks to validate a copy it holds (RFC 9110 section 13.1)."""
    return "if-none-match" in headers or "if-modified-since" in headers


def _as_get(scope: Scope) -> Scope:
    """The scope to run the handler with: a `HEAD` runs the `GET` handler."""
    return {**scope, "method": "GET"} if scope["method"] == "HEAD" else scope


def _dropping_body(scope: Scope, send: Send) -> Send:
    """`send`, sending no body bytes for a `HEAD` request (its fields stay)."""
    if scope["method"] != "HEAD":
        return send

    async def headless(message: Message) -> None:
        if message["type"] != "http.response.body":
            await send(message)
        elif not message.get("more_body", False):
            await send({"type": "http.response.body", "body": b""})

    return headless


def _etag_of(response: StoredResponse) -> str:
    return response.etag


def _stored_response(
    captured: ResponseCapture, route: RoutePlan, request_headers: Mapping[str, str]
) -> StoredResponse:
    """The entry to store: final body, storable fields, Content-Length, Vary, ETag.

    The handler's own `Vary` names its secondary key (RFC 9111 section 4.1); the
    route's `vary_on` fields, and `Cookie, Authorization` unless it is public, are
    added to what is sent.
    """
    own_etag = get_header(captured.headers, b"etag")
    headers = [
        (name, value)
        for name, value in storable_headers(captured.headers, route.per_request)
        if name not in (b"content-length", b"etag")
    ]
    headers.append((b"content-length", str(len(captured.body)).encode()))
    written = get_header(headers, b"vary")
    own = parse_vary(written)
    if route.vary:
        spelled = [part.strip() for part in (written or b"").split(b",") if part.strip()]
        spelled += [part.strip() for part in route.vary.split(b",")]
        merged = {part.lower(): part for part in reversed(spelled)}  # first spelling wins
        headers = [(name, value) for name, value in headers if name != b"vary"]
        headers.append((b"vary", b", ".join(reversed(merged.values()))))
    selecting = selecting_fields(own, request_headers)
    # The handler's own validator is kept (HTTP.md 4.1); else one from the body.
    etag = own_etag.decode("latin-1") if own_etag else make_etag(captured.body)
    return StoredResponse(captured.status, tuple(headers), captured.body, etag, selecting)


def _cache_control(route: RoutePlan, remaining: int, own: bytes | None = None) -> str:
    """The `Cache-Control` to send: never more freshness than the entry has left.

    The downstream policy is the route's `cache_control`, else the handler's own
    `Cache-Control` (`own`), else `max-age` alone (HTTP.md 5.2): `max-age`/`s-maxage`
    are capped at the whole seconds left.

    Entries that depend on credentials go out `private` (HTTP.md 2.2, RFC 9111 section
    5.2.2.7): no shared cache in front may keep them, whatever `cache_control` says. So
    do entries of routes with checks (a cache in front would serve them without the
    checks), unless the route's `cache_control` says `public` or `s-maxage`.
    """
    configured = route.options.cache_control
    policy = configured if configured is not None else own
    directives: dict[str, str | int | None] = dict(parse_cache_control(policy))
    directives.setdefault("max-age", remaining)
    for name in ("max-age", "s-maxage"):
        argument = directives.get(name)
        if isinstance(argument, str):
            directives[name] = min(int(argument), remaining) if argument.isdigit() else remaining
    shared = "public" in directives or "s-maxage" in directives
    if route.personal or (route.checked and not shared):
        for name in ("public", "s-maxage", "private"):
            directives.pop(name, None)
        directives = {"private": None, **directives}
    return render_cache_control(directives)


def _status_of(outcome: Outcome, remaining: int, *, forced: bool) -> bytes:
    """The `Cache-Status` of a served entry (RFC 9211)."""
    if outcome.source == "hit":
        return _hit_status(remaining)
    forward = "request" if forced else "miss"
    if outcome.source == "stale":
        status = cache_status(hit=True, forward="stale", ttl=0)
    elif outcome.source == "computed":
        status = cache_status(hit=False, forward=forward, stored=True, ttl=remaining)
    elif outcome.source == "waited":
        status = cache_status(hit=False, forward=forward, ttl=remaining, detail="coalesced")
    else:
        status = cache_status(hit=False, forward=forward, detail=outcome.reason or "not stored")
    return status.encode("latin-1")


@functools.lru_cache(maxsize=4096)
def _hit_status(remaining: int) -> bytes:
    """The `Cache-Status` of a hit with `remaining` seconds of freshness, made once."""
    return cache_status(hit=True, ttl=remaining).encode("latin-1")


async def _send_gateway_timeout(send: Send) -> None:
    status = cache_status(hit=False, forward="miss", detail="only-if-cached")
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"0"),
        (b"cache-status", status.encode("latin-1")),
    ]
    await send({"type": "http.response.start", "status": 504, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
