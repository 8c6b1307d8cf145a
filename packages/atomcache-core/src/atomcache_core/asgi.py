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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from atomcache_core._background import BackgroundTasks
from atomcache_core._flight.lease import Lease
from atomcache_core._flight.options import (
    UNAVAILABLE,
    FlightOptions,
    Outcome,
    Uncacheable,
    WaitPolicy,
)
from atomcache_core._seconds import checked_seconds
from atomcache_core._telemetry import warn_failed_open
from atomcache_core.exceptions import AtomCacheError, ConfigurationError, SerializationError
from atomcache_core.http.answer import (
    Answer,
    answer_for,
    bypass_headers,
    gateway_timeout_answer,
    sets_a_new_cookie,
    uncached_answer,
    visitors_own,
)
from atomcache_core.http.answer import Block as _Block
from atomcache_core.http.endpoint import (
    GATE,
    PASSING,
    Gate,
    cached,
    find_cached,
    refuse_misplaced,
    refuse_websocket,
    route_options,
)
from atomcache_core.http.keying import request_key
from atomcache_core.http.plan import HttpPlan
from atomcache_core.http.request import RequestInfo
from atomcache_core.http.route import DEFAULT_MAX_BODY_SIZE, RouteOptions, RoutePlan
from atomcache_core.http.status import REFUSED, REFUSED_STATUS, SET_COOKIE, STREAMED_STATUS
from atomcache_core.http.stored import ResponseSerializer, StoredResponse
from atomcache_core.http.storing import stored_response, unstored_reason
from atomcache_core.http.tags import entry_tags, invalidation_tag
from atomcache_core.http.vary import varies

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
    "BackgroundTasks",
    "FlightOptions",
    "HttpCache",
    "Lease",
    "RequestInfo",
    "RequestPlan",
    "ResponseCapture",
    "RouteOptions",
    "RoutePlan",
    "Uncacheable",
    "WaitPolicy",
    "cached",
    "checked_seconds",
    "find_cached",
    "passing",
    "refuse_misplaced",
    "refuse_websocket",
    "route_options",
]

logger = logging.getLogger("atomcache")

_SERIALIZER = ResponseSerializer()
_SERVER_ERROR = 500
_BLOCK_LIMIT = 512
#: The `outcome` of an HTTP response in metrics, by the single-flight outcome it sent.
_REPORTED_SOURCES = {"hit": "hit", "stale": "stale", "computed": "computed", "waited": "coalesced"}
#: The field that marks the placeholder response of a `@cached` endpoint whose checks
#: have passed (its value is drawn per process): only that response is replaced by the
#: stored one, never another that the app made after reaching the endpoint.
PLACEHOLDER_FIELD = (b"x-atomcache-placeholder", secrets.token_hex(16).encode())
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
                    "headers": [*self.headers, (b"cache-status", STREAMED_STATUS)],
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
        reason = unstored_reason(
            route, self.status, self.headers, self.body, streamed=self.streamed
        )
        if reason is None:
            return stored_response(route, self.status, self.headers, self.body, request_headers)
        self.reason = reason
        return Uncacheable(self)


@dataclass(slots=True)  # not frozen: made on every request, and frozen costs per field
class RequestPlan(HttpPlan):
    """What the cache will do for one request of a cached route.

    The `HttpPlan` (the request, its route, key and directives, decided by
    `plan_request`), and how single flight carries it out.

    Attributes:
        flight: The single-flight options (TTL, tags, freshness, store or not).
        replay: Renews the entry by replaying the request (refresh ahead), when the
            route keeps its entries warm; `None` otherwise, and for the replays.
    """

    flight: FlightOptions = field(init=False)
    replay: Callable[[float], Awaitable[float | None]] | None = None


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
        info = RequestInfo.from_scope(scope, route.template, path_params)
        stateful = id(route.options) in self._stateful
        plan = RequestPlan.of(route, info, varied, stateful=stateful)
        if not isinstance(plan, str):
            plan.flight = self._flight_options(plan, scope)
        return plan

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
        block = _Block.of(response)
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
                await _send(send, gateway_timeout_answer())
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
            await _send(run.send, gateway_timeout_answer())
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
                        await _send(send, gateway_timeout_answer())
                    else:
                        await self.respond(send, scope, plan, outcome)
                    return
                self.report(plan.route.template, "bypass", REFUSED)
                headers = [*message.get("headers", ()), (b"cache-status", REFUSED_STATUS)]
                message = {**message, "headers": headers}
            if not replacing:
                await send(message)

        token = GATE.set(gate)
        try:
            await run.app(_as_get(scope), run.receive, _dropping_body(scope, gated))
        finally:
            GATE.reset(token)

    def _flight_options(self, plan: HttpPlan, scope: Scope) -> FlightOptions:
        """How single flight carries out `plan`; a refresh-ahead replay renews early."""
        options = plan.route.options
        forced = plan.forced
        flight = FlightOptions(
            ttl=options.ttl if options.ttl is not None else self.cache.default_ttl,
            tags=functools.partial(entry_tags, plan.route, plan.info),
            stale_ttl=0.0 if forced else options.stale_ttl,
            stale_if_error=options.stale_if_error,
            fresh_after=time.time() - options.min_refresh_interval if forced else 0.0,
            fresh_margin=plan.fresh_margin,
            store=plan.store,
            serializer=_SERIALIZER,
            etag=_etag_of,
            reuse_decoded=True,
        )
        margin = scope.get("state", {}).get(REFRESH)
        if margin is not None:  # a refresh-ahead replay: renew an entry about to expire
            flight.fresh_margin = max(flight.fresh_margin, float(margin))
            flight.background = True
        return flight

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
        value = outcome.value
        self._report_outcome(plan.route, outcome)
        if isinstance(value, ResponseCapture):
            if not value.streamed:
                await self.send_uncached(send, scope, value, value.reason)
            return
        if SERVED in scope:  # observed: a middleware outside may set cookies
            _note_served(scope, plan.route)
        now = time.time()
        entry = outcome.entry
        # `flight.background`: a replay (`_flight_options`), read without a call per hit
        if entry is not None and (plan.replay is not None or plan.flight.background):
            self._keep_warm(scope, plan, outcome, entry.fresh_until - now)
        answer = answer_for(plan, outcome, now=now, block=self._block(value), fields=fields)
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
        )
        await send({"type": "http.response.body", "body": answer.body})

    def _keep_warm(
        self, scope: Scope, plan: RequestPlan, outcome: Outcome, fresh_for: float
    ) -> None:
        """Tell a replay what it renewed; else keep an entry read again warm (refresh ahead)."""
        entry = outcome.entry
        if entry is None:
            return
        if replaying(scope):
            scope["state"][REFRESHED] = fresh_for
        elif plan.replay is not None and outcome.source != "computed":
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
                    and sets_a_new_cookie(scope["headers"], message.get("headers", ()))
                ):
                    await self._learn_stateful(served.route)
                    message = {**message, "headers": visitors_own(message["headers"])}
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
        self.cache.telemetry.http_response(template, outcome, reason)

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
        head = scope["method"] == "HEAD"
        answer = uncached_answer(
            captured.status, captured.headers, captured.body, reason, head=head
        )
        await _send(send, answer)

    async def gateway_timeout(self, send: Send) -> None:
        """Answer 504: `only-if-cached` and nothing stored (RFC 9111 section 5.2.1.7)."""
        await _send(send, gateway_timeout_answer())

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

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = bypass_headers(message.get("headers", ()), reason, personal=personal)
                message = {**message, "headers": headers}
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


def _note_served(scope: Scope, route: RoutePlan) -> None:
    """Tell `HttpCache.observe` that a request is answered from an entry of `route`.

    Not for `public` routes, whose pages are the same for every visitor by declaration.
    """
    if not route.options.public and (served := scope.get(SERVED)) is not None:
        served.route = route


def _bare_template(template: str) -> str:
    """A path template without its parameters' converters: `{id:int}` is `{id}`."""
    return _CONVERTER.sub(r"{\1}", template)


_CONVERTER = re.compile(r"\{([^{}:]+):[^{}]*\}")


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


async def _send(send: Send, answer: Answer) -> None:
    """Send `answer`: its start, then its whole body."""
    await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
    await send({"type": "http.response.body", "body": answer.body})
