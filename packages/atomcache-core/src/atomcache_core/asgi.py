"""HTTP response caching at the ASGI level, shared by the framework adapters.

An adapter finds the route of a request (its path template, path parameters and
`RouteOptions`) and hands the ASGI call to `HttpCache.serve`. Everything else, from the
key to the 304, happens here, in one place for every framework: the adapters stay
thin translators. This module imports no web framework; ASGI is only dicts and
callables.

It holds `HttpCache`'s flow (plan, serve, respond, bypass, invalidate) and is the one
module adapters import. Running the app (`_asgi_run`), refresh-ahead replays
(`_asgi_replay`) and the watch for cookies set outside the cache (`_asgi_observe`) are
private modules; what adapters use of them is imported here.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from atomcache_core._asgi_observe import SERVED, note_served, observing
from atomcache_core._asgi_replay import REFRESH as REFRESH  # noqa: PLC0414 - for adapters
from atomcache_core._asgi_replay import REFRESHED as REFRESHED  # noqa: PLC0414
from atomcache_core._asgi_replay import keep_warm
from atomcache_core._asgi_replay import replayer as replayer  # noqa: PLC0414
from atomcache_core._asgi_replay import replaying as replaying  # noqa: PLC0414
from atomcache_core._asgi_run import (
    PLACEHOLDER_FIELD,
    RequestPlan,
    ResponseCapture,
    Run,
    ServerError,
    as_get,
    dropping_body,
    passing,
    run_to_endpoint,
    send_answer,
)
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
from atomcache_core.http.answer import Block as _Block
from atomcache_core.http.answer import (
    answer_for,
    bypass_headers,
    gateway_timeout_answer,
    uncached_answer,
)
from atomcache_core.http.endpoint import (
    cached,
    find_cached,
    refuse_misplaced,
    refuse_websocket,
    route_options,
)
from atomcache_core.http.keying import request_key
from atomcache_core.http.request import RequestInfo
from atomcache_core.http.route import DEFAULT_MAX_BODY_SIZE, RouteOptions, RoutePlan
from atomcache_core.http.status import REFUSED, SET_COOKIE
from atomcache_core.http.stored import ResponseSerializer, StoredResponse
from atomcache_core.http.tags import entry_tags, invalidation_tag
from atomcache_core.http.vary import varies

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from atomcache_core._asgi_run import ASGIApp as ASGIApp  # noqa: PLC0414 - for adapters
    from atomcache_core._asgi_run import Message as Message  # noqa: PLC0414
    from atomcache_core._asgi_run import Receive as Receive  # noqa: PLC0414
    from atomcache_core._asgi_run import Scope as Scope  # noqa: PLC0414
    from atomcache_core._asgi_run import Send as Send  # noqa: PLC0414
    from atomcache_core.cache import Cache
    from atomcache_core.http.plan import HttpPlan

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
        self._telemetry = cache.telemetry  # read on every response
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
            run = Run(plan, app, scope, receive, send, endpoint=self.placeholder is not None)
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

    async def _serve(self, run: Run) -> tuple[str, ...] | None:
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
        except ServerError as error:
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
                await send_answer(send, gateway_timeout_answer())
            return None
        if run.answered(outcome):  # its own per-request fields, which the entry does not keep
            fields = [f for f in run.ran[-1].headers if f[0].lower() in plan.route.per_request]
            await self.respond(send, scope, plan, outcome, fields)
            return None
        return await self._answer_from(run, outcome)

    async def _answer_from(self, run: Run, outcome: Outcome) -> tuple[str, ...] | None:
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

    async def _answer_without_cache(self, run: Run, reason: str = UNAVAILABLE) -> None:
        """Fail open: the handler's own answer, marked; never for `only-if-cached`."""
        if run.plan.only_if_cached:  # nothing stored can be shown: the handler must not run
            await send_answer(run.send, gateway_timeout_answer())
        elif run.ran and run.ran[0].status:
            await self.send_uncached(run.send, run.scope, run.ran[0], reason)
        else:
            await self.bypass(
                run.scope, run.receive, run.send, run.app, reason, route=run.plan.route
            )

    async def _respond_after_checks(self, run: Run, outcome: Outcome | None) -> None:
        """Run the app up to the endpoint; send the entry only if it got there.

        What the app sends instead of the endpoint's placeholder (a 401 from a
        dependency, a guard's 403, a redirect from a decorator, a route class's answer
        after the endpoint) goes to the client as it is, with the same `Cache-Status`
        whether or not an entry is stored (HTTP.md 0.1); the placeholder is replaced by
        the stored response, or by a 504 when `outcome` is `None` (`only-if-cached`).
        """
        plan, scope, send = run.plan, run.scope, run.send

        async def answer() -> None:
            if outcome is None:
                await send_answer(send, gateway_timeout_answer())
            else:
                await self.respond(send, scope, plan, outcome)

        refused = functools.partial(self.report, plan.route.template, "bypass", REFUSED)
        await run_to_endpoint(run, self.placeholder, answer, refused)

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
            note_served(scope, plan.route)
        now = time.time()
        entry = outcome.entry
        # `flight.background`: a replay (`_flight_options`), read without a call per hit
        if entry is not None and (plan.replay is not None or plan.flight.background):
            keep_warm(self.cache.refresher, scope, plan, outcome, entry.fresh_until - now)
        answer = answer_for(plan, outcome, now=now, block=self._block(value), fields=fields)
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
        )
        await send({"type": "http.response.body", "body": answer.body})

    def observe(self, app: ASGIApp) -> ASGIApp:
        """Wrap `app` (the whole application, outside every middleware) to watch for cookies.

        A page of the cache to which a middleware outside the cache added a cookie the
        request did not carry (a double-submit CSRF token, a new session: state of that
        one visitor, which the page may show) makes the route's entries dropped and the
        route not cached any more in this process (`Cache-Status` detail `set-cookie`),
        unless it is `public`. A cookie the request carried, set again (a session's
        renewal), is no new state. Adapters install it.
        """
        return observing(app, self._learn_stateful)

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
        self._telemetry.http_response(template, outcome, reason)

    def _report_outcome(self, route: RoutePlan, outcome: Outcome) -> None:
        """Count a response sent from a single-flight outcome, by where it came from."""
        if self._telemetry.observer is None:
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
        await send_answer(send, answer)

    async def gateway_timeout(self, send: Send) -> None:
        """Answer 504: `only-if-cached` and nothing stored (RFC 9111 section 5.2.1.7)."""
        await send_answer(send, gateway_timeout_answer())

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

        await passing(app, as_get(scope), receive, dropping_body(scope, tagged), route)


def _bare_template(template: str) -> str:
    """A path template without its parameters' converters: `{id:int}` is `{id}`."""
    return _CONVERTER.sub(r"{\1}", template)


_CONVERTER = re.compile(r"\{([^{}:]+):[^{}]*\}")


def _etag_of(response: StoredResponse) -> str:
    return response.etag
