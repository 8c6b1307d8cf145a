"""Running the app for the cache: capturing its response, and the checks it passes.

`HttpCache` (`atomcache_core.asgi`) decides; this module runs the application for it.
`Run` is the factory single flight calls: it runs the app in a task of its own, into a
`ResponseCapture`, and tells what to store. `passing` lets a request through with its
route's gate set (`@cached` endpoints learn whether the cache serves them).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from atomcache_core._flight.options import FlightOptions, Outcome, Uncacheable
from atomcache_core.http.endpoint import GATE, PASSING, Gate
from atomcache_core.http.plan import HttpPlan
from atomcache_core.http.status import REFUSED, REFUSED_STATUS, STREAMED_STATUS
from atomcache_core.http.storing import stored_response, unstored_reason

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, MutableMapping

    from atomcache_core.http.answer import Answer
    from atomcache_core.http.route import RoutePlan
    from atomcache_core.http.stored import StoredResponse

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]
    ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = [
    "PLACEHOLDER_FIELD",
    "RequestPlan",
    "ResponseCapture",
    "Run",
    "ServerError",
    "as_get",
    "dropping_body",
    "passing",
    "run_to_endpoint",
    "send_answer",
]

logger = logging.getLogger("atomcache")

_SERVER_ERROR = 500
#: The field that marks the placeholder response of a `@cached` endpoint whose checks
#: have passed (its value is drawn per process): only that response is replaced by the
#: stored one, never another that the app made after reaching the endpoint.
PLACEHOLDER_FIELD = (b"x-atomcache-placeholder", secrets.token_hex(16).encode())


class ServerError(Exception):
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


class Run:
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
        """Run the handler; raise `ServerError` on 5xx, else what to store.

        Stored is only what the endpoint answered (a check that refused the request
        before it, or another route, answered nothing of the route's), and only when
        the request left the visitor's session as it found it (a CSRF token, a cart
        id written there belong to one visitor).
        """
        capture = ResponseCapture(dropping_body(self.scope, self.send))
        self.ran.append(capture)
        witness = Gate(self.plan.route.options, None)
        scope = as_get(self.scope)
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
            raise ServerError(capture)  # a failure, for stale_if_error and waiters
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


def as_get(scope: Scope) -> Scope:
    """The scope to run the handler with: a `HEAD` runs the `GET` handler."""
    return {**scope, "method": "GET"} if scope["method"] == "HEAD" else scope


def dropping_body(scope: Scope, send: Send) -> Send:
    """`send`, sending no body bytes for a `HEAD` request (its fields stay)."""
    if scope["method"] != "HEAD":
        return send

    async def headless(message: Message) -> None:
        if message["type"] != "http.response.body":
            await send(message)
        elif not message.get("more_body", False):
            await send({"type": "http.response.body", "body": b""})

    return headless


async def send_answer(send: Send, answer: Answer) -> None:
    """Send `answer`: its start, then its whole body."""
    await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
    await send({"type": "http.response.body", "body": answer.body})


async def run_to_endpoint(
    run: Run,
    placeholder: Callable[[], Any] | None,
    answer: Callable[[], Awaitable[None]],
    refused: Callable[[], None],
) -> None:
    """Run the app up to the endpoint; `answer` in place of its placeholder, if it got there.

    `placeholder` is `HttpCache.placeholder`. What the app sends instead of the
    placeholder goes to the client as it is, marked `REFUSED_STATUS`, after `refused`
    is called (`HttpCache._respond_after_checks`).
    """
    scope, send = run.scope, run.send
    gate = Gate(run.plan.route.options, placeholder)
    replacing = False

    async def gated(message: Message) -> None:
        nonlocal replacing
        if message["type"] == "http.response.start":
            replacing = gate.passed and PLACEHOLDER_FIELD in message.get("headers", ())
            if replacing:
                await answer()
                return
            refused()
            headers = [*message.get("headers", ()), (b"cache-status", REFUSED_STATUS)]
            message = {**message, "headers": headers}
        if not replacing:
            await send(message)

    token = GATE.set(gate)
    try:
        await run.app(as_get(scope), run.receive, dropping_body(scope, gated))
    finally:
        GATE.reset(token)
