"""Real caches in front of each adapter keep to the freshness, validators and variants it sends.

Three downstream caches, each in front of its own uvicorn serving the adapter's app (an
in-memory `Cache()`) in the test's loop: nginx (`proxy_cache` with
`proxy_cache_revalidate on`), Varnish (its builtin VCL only) and hishel (an RFC 9111
client cache over httpx, private, stored in a temporary directory). nginx and Varnish
are Debian's packages, installed when missing; the module is skipped, saying why, only
where they cannot be. The three run side by side, each with its own origin.

The adapters send `Cache-Control: max-age=<whole seconds left>` and no `Age`
(HTTP.md 5.1), strong ETags answering `If-None-Match` with 304, their own `Vary` plus
`Cookie, Authorization`, and `private` for per-user entries. The app is the witness: a
tiny ASGI wrapper notes every request reaching it (arrival, end of its response, status,
`If-None-Match`) apart from the handlers, which note each run and the body it returned.

Timing. An origin entry computed by a request that arrived at `a` and whose response
ended at `f` expires between `a + ttl` and `f + ttl`: it is stored before its response is
sent, and its clock cannot start before the request arrived. A downstream counting
`max-age` from the moment it receives the response expires its copy no later than the
origin's, as `max-age` is floored. nginx keeps expiry times in whole seconds of its
cached clock (`valid_sec` is `ngx_time()` + `max-age`, and an entry is served while
`valid_sec >= ngx_time()`), so its copy may outlive the origin's by less than a second;
Varnish serves an expired object once more (grace) while it refreshes it, to the first
request after its copy expired, at most a polling interval (0.2 s) after the origin's.
Hence `TOLERANCE`: a downstream may serve an entry for at most 1 s after the origin
dropped it. The other way, the floor costs a downstream less than a second of its copy
and a whole-second clock less than another, hence `MARGIN`: while the origin's entry
has 2 s or more left, the downstream must answer from its own copy. hishel counts age
from `Date` (RFC 9111 section 4.2.3's apparent age; whole seconds, its second clock)
and ignores `Age`, and uvicorn refreshes the `Date` it adds once a second: the `Date`
a response arrives with may be older than its one-second resolution explains. That
extra age comes from the server, not the adapter, and is measured on the responses and
added to hishel's margin.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import pytest
from fastapi import FastAPI, Header
from fastapi.responses import PlainTextResponse
from hishel import AsyncSqliteStorage, CacheOptions
from hishel.httpx import AsyncCacheTransport
from litestar import Litestar, Response, get
from litestar.params import HeaderParameter

import atomcache_fastapi
import atomcache_litestar
from atomcache_core import Cache
from support.nginx import nginx_cache, nginx_or_skip
from support.servers import serve_asgi
from support.varnish import varnish_cache, varnish_hit, varnish_or_skip

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable, Sequence
    from pathlib import Path

    from hishel import CacheStatus

    from atomcache_core.asgi import ASGIApp, Message, Receive, Scope, Send

# Each test is bounded below this (the fixture may install nginx and Varnish first).
pytestmark = pytest.mark.timeout(60, func_only=True)

TTL = 4  # seconds: the entries of `/counter`, `/greeting` and `/me`
VERSION_TTL = 2  # seconds: the entries of `/version`
POLL_INTERVAL = 0.2  # seconds between two requests of one client
FRESHNESS_POLLS = 30  # 6 s of requests
TOLERANCE = 1.0  # seconds a downstream may serve an entry after the origin dropped it
MARGIN = 2.0  # seconds left on the origin's entry from which the downstream must hit
DATE_RESOLUTION = 1.0  # seconds: `Date` is truncated to the second
REVALIDATION_WAIT = VERSION_TTL + 3.0  # seconds for a first revalidation of `/version`
REVALIDATION_POLLS = int((REVALIDATION_WAIT + VERSION_TTL + TOLERANCE + 1) / POLL_INTERVAL)
ROUNDS = 4  # of each language, or each user, in turn
DOWNSTREAMS = ("nginx", "varnish", "hishel")
DATE_BASED = frozenset({"hishel"})  # downstreams counting age from `Date`
GREETINGS = {"fr": "bonjour", "de": "hallo"}
USERS = ("Bearer alice", "Bearer bob", None)
SHOWN = ("cache-control", "age", "date", "etag", "vary", "x-nginx-cache", "x-varnish")


@dataclass
class Arrival:
    """A request that reached the app, as the counting wrapper saw it."""

    path: str
    arrived: float
    if_none_match: str | None
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    finished: float = float("inf")  # when the last body message was sent


@dataclass(frozen=True)
class Run:
    """One run of a handler: when it started and the body it returned."""

    path: str
    at: float
    body: str


@dataclass(frozen=True)
class Entry:
    """An origin entry: its body, the request that computed it, its earliest and latest expiry."""

    body: str
    computed_by: Arrival
    earliest_expiry: float
    latest_expiry: float


class Origin:
    """What the app did and saw; `version` is what `/version` returns."""

    def __init__(self) -> None:
        """Nothing seen yet, version 1."""
        self.arrivals: list[Arrival] = []
        self.runs: list[Run] = []
        self.version = 1

    def run(self, path: str, body: str) -> str:
        """Note a run of the handler of `path` returning `body`; return it."""
        self.runs.append(Run(path, time.monotonic(), body))
        return body

    def counter(self) -> str:
        """The body of `/counter`: how many times its handler ran, this time included."""
        return self.run("/counter", f"call {sum(run.path == '/counter' for run in self.runs) + 1}")

    def versioned(self) -> str:
        """The body of `/version`: the current version."""
        return self.run("/version", f"version {self.version}")

    def counting(self, app: Any) -> ASGIApp:
        """`app` behind a wrapper noting every HTTP request that reaches it."""

        async def counted(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            condition = dict(scope["headers"]).get(b"if-none-match")
            arrival = Arrival(scope["path"], time.monotonic(), condition and condition.decode())
            self.arrivals.append(arrival)

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    arrival.status = message["status"]
                    arrival.headers = {
                        name.decode(): value.decode() for name, value in message["headers"]
                    }
                elif not message.get("more_body", False):
                    arrival.finished = time.monotonic()
                await send(message)

            await app(scope, receive, sending)

        return counted

    def entries(self, path: str, ttl: float) -> list[Entry]:
        """The entries of `path` the origin computed, in order."""
        found = []
        for run in self.runs:
            if run.path == path:
                by = next(a for a in self.arrivals if a.arrived <= run.at <= a.finished)
                found.append(Entry(run.body, by, by.arrived + ttl, by.finished + ttl))
        return found


def greeting(language: str | None) -> str:
    """The greeting in `language`, else in English."""
    return GREETINGS.get(language or "", "hello")


def fastapi_app(origin: Origin) -> ASGIApp:
    """The origin as a FastAPI app, behind the counting wrapper."""
    app = FastAPI()
    atomcache_fastapi.setup_cache(app, Cache())
    cached = atomcache_fastapi.cached

    @app.get("/counter")
    @cached(ttl=TTL)
    async def counter() -> PlainTextResponse:
        return PlainTextResponse(origin.counter())

    @app.get("/version")
    @cached(ttl=VERSION_TTL)
    async def version() -> PlainTextResponse:
        return PlainTextResponse(origin.versioned())

    @app.get("/greeting")
    @cached(ttl=TTL)
    async def greet(accept_language: Annotated[str, Header()] = "") -> PlainTextResponse:
        return PlainTextResponse(greeting(accept_language), headers={"vary": "Accept-Language"})

    @app.get("/me")
    @cached(ttl=TTL, vary_on=("authorization",))
    async def me(authorization: Annotated[str, Header()] = "") -> PlainTextResponse:
        return PlainTextResponse(f"user {authorization or 'anonymous'}")

    return origin.counting(app)


def litestar_app(origin: Origin) -> ASGIApp:
    """The origin as a Litestar app, behind the counting wrapper."""
    cached = atomcache_litestar.cached

    @get("/counter")
    @cached(ttl=TTL)
    async def counter() -> str:
        return origin.counter()

    @get("/version")
    @cached(ttl=VERSION_TTL)
    async def version() -> str:
        return origin.versioned()

    @get("/greeting")
    @cached(ttl=TTL)
    async def greet(
        accept_language: Annotated[str, HeaderParameter(name="accept-language")] = "",
    ) -> Response[str]:
        return Response(greeting(accept_language), headers={"vary": "Accept-Language"})

    @get("/me")
    @cached(ttl=TTL, vary_on=("authorization",))
    async def me(
        authorization: Annotated[str, HeaderParameter(name="authorization")] = "",
    ) -> str:
        return f"user {authorization or 'anonymous'}"

    plugin = atomcache_litestar.AtomCachePlugin(Cache())
    return origin.counting(Litestar([counter, version, greet, me], plugins=[plugin]))


FRAMEWORKS = pytest.mark.parametrize(
    "build", [fastapi_app, litestar_app], ids=["fastapi", "litestar"]
)


@dataclass(frozen=True)
class Seen:
    """A response a client got through a downstream cache."""

    sent: float
    received: float
    wall: float  # `time.time()` when it was received
    status: int
    body: str
    hit: bool  # served from the downstream's own copy, without asking the origin
    headers: dict[str, str]

    def describe(self, start: float) -> str:
        """One line: when, status, body and the caching headers."""
        shown = {name: self.headers[name] for name in SHOWN if name in self.headers}
        return f"{self.sent - start:5.2f} s: {self.status} {self.body!r} hit={self.hit} {shown}"


@dataclass
class Downstream:
    """A client going through one downstream cache, in front of its own origin."""

    name: str
    origin: Origin
    client: httpx.AsyncClient
    is_hit: Callable[[httpx.Response], bool]

    async def get(self, path: str, headers: dict[str, str] | None = None) -> Seen:
        """GET `path` through the downstream cache."""
        sent = time.monotonic()
        response = await self.client.get(path, headers=headers)
        return Seen(
            sent=sent,
            received=time.monotonic(),
            wall=time.time(),
            status=response.status_code,
            body=response.text,
            hit=self.is_hit(response),
            headers=dict(response.headers),
        )


def _nginx_hit(response: httpx.Response) -> bool:
    return bool(response.headers.get("x-nginx-cache") == "HIT")


def _varnish_hit(response: httpx.Response) -> bool:
    return varnish_hit(response.headers)


def _hishel_hit(response: httpx.Response) -> bool:
    status: CacheStatus | None = response.extensions.get("caching")
    return status is not None and status["from_cache"] and not status["revalidated"]


@contextlib.asynccontextmanager
async def downstream(
    name: str, build: Callable[[Origin], ASGIApp], directory: Path
) -> AsyncIterator[Downstream]:
    """Serve a new origin built by `build` behind the downstream cache `name`; yield its client."""
    origin = Origin()
    async with contextlib.AsyncExitStack() as stack:
        upstream = await stack.enter_async_context(serve_asgi(build(origin)))
        if name == "hishel":
            storage = AsyncSqliteStorage(database_path=directory / "hishel.db")
            stack.push_async_callback(storage.close)
            transport = AsyncCacheTransport(
                httpx.AsyncHTTPTransport(), storage=storage, rfc=CacheOptions(shared=False)
            )
            client = httpx.AsyncClient(base_url=upstream, transport=transport, timeout=10)
            hit = _hishel_hit
        else:
            proxy = (
                nginx_cache(upstream, revalidate=True)
                if name == "nginx"
                else varnish_cache(upstream)
            )
            client = httpx.AsyncClient(base_url=stack.enter_context(proxy), timeout=10)
            hit = _nginx_hit if name == "nginx" else _varnish_hit
        await stack.enter_async_context(client)
        yield Downstream(name, origin, client, hit)


@contextlib.asynccontextmanager
async def downstreams(
    build: Callable[[Origin], ASGIApp], directory: Path
) -> AsyncIterator[list[Downstream]]:
    """One downstream of each kind, each with its own origin, all started before any is used."""
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(downstream(name, build, directory / name))
            for name in DOWNSTREAMS
        ]


@pytest.fixture(scope="module", autouse=True)
def caches_in_front() -> None:
    """Install nginx and Varnish if missing; skip the module, saying why, if they cannot be."""
    nginx_or_skip()
    varnish_or_skip()


def _fail_on(problems: dict[str, list[str]]) -> None:
    """Fail listing each downstream's problems, if any."""
    report = [f"{name}:\n  " + "\n  ".join(found) for name, found in problems.items() if found]
    assert not report, "\n".join(report)


async def _at(start: float, index: int) -> None:
    """Sleep until the `index`-th polling instant after `start`."""
    await asyncio.sleep(max(0.0, start + index * POLL_INTERVAL - time.monotonic()))


@FRAMEWORKS
async def test_downstream_copies_expire_with_the_origin_entry(
    build: Callable[[Origin], ASGIApp], tmp_path: Path
) -> None:
    """A body is served at most 1 s after the origin drops it; from the copy while 2 s are left."""

    async def poll(through: Downstream) -> list[Seen]:
        seen = []
        for index in range(FRESHNESS_POLLS):
            await _at(start, index)
            seen.append(await through.get("/counter"))
        return seen

    async with downstreams(build, tmp_path) as clients:
        start = time.monotonic()
        polls = await asyncio.gather(*(poll(client) for client in clients))
    _fail_on(
        {
            client.name: _freshness(
                client.origin, seen, start, date_based=client.name in DATE_BASED
            )
            for client, seen in zip(clients, polls, strict=True)
        }
    )


def _freshness(
    origin: Origin, seen: Sequence[Seen], start: float, *, date_based: bool
) -> list[str]:
    """What breaks the freshness rules in `seen`, one downstream's responses of `/counter`."""
    entries = origin.entries("/counter", TTL)
    bodies = {entry.body: entry for entry in entries}
    problems = []
    for response in seen:
        entry = bodies.get(response.body)
        if response.status != 200 or entry is None:
            problems.append(f"not an origin entry: {response.describe(start)}")
        elif response.sent > entry.latest_expiry + TOLERANCE:
            problems.append(
                f"served {response.sent - entry.latest_expiry:.2f} s after the origin dropped"
                f" it at {entry.latest_expiry - start:.2f} s: {response.describe(start)}"
            )
        current = _current(entries, response.sent)
        margin = _margin(seen, response.sent, date_based=date_based)
        left = current.earliest_expiry - response.received if current else 0.0
        if left >= margin and not response.hit:
            problems.append(
                f"not served from the downstream's copy with {left:.2f} s left on the origin's"
                f" entry: {response.describe(start)}"
            )
    for arrival in origin.arrivals:
        current = _current(entries, arrival.arrived)
        margin = _margin(seen, arrival.arrived, date_based=date_based)
        if current is not None and arrival.arrived <= current.earliest_expiry - margin:
            problems.append(
                f"reached the origin at {arrival.arrived - start:.2f} s, with"
                f" {current.earliest_expiry - arrival.arrived:.2f} s left on {current.body!r}:"
                f" {arrival.status} {arrival.headers}"
            )
    return problems


def _current(entries: Iterable[Entry], moment: float) -> Entry | None:
    """The origin's entry at `moment`: the last one computed before it, unless expired by then."""
    before = [entry for entry in entries if entry.computed_by.finished < moment]
    return before[-1] if before and moment < before[-1].earliest_expiry else None


def _margin(seen: Sequence[Seen], moment: float, *, date_based: bool) -> float:
    """`MARGIN`, plus, for a downstream counting age from `Date`, how stale its copy's `Date` was.

    Its copy at `moment` is the last response it got from the origin before then. Its
    `Date` may be older than `DATE_RESOLUTION` explains (uvicorn refreshes it once a
    second): that much more age is the server's, not the adapter's.
    """
    fetched = [r for r in seen if not r.hit and r.received < moment and "date" in r.headers]
    if not date_based or not fetched:
        return MARGIN
    copy = fetched[-1]
    age = copy.wall - parsedate_to_datetime(copy.headers["date"]).timestamp()
    return MARGIN + max(0.0, age - DATE_RESOLUTION)


@FRAMEWORKS
async def test_downstream_revalidates_and_follows_a_new_body(
    build: Callable[[Origin], ASGIApp], tmp_path: Path
) -> None:
    """An expired copy is revalidated (304 while unchanged); a new body is served within 1 s."""
    async with downstreams(build, tmp_path) as clients:
        start = time.monotonic()
        runs = await asyncio.gather(*(_follow_versions(client, start) for client in clients))
    _fail_on(
        {
            client.name: _revalidation(client.origin, seen, changed, start)
            for client, (seen, changed) in zip(clients, runs, strict=True)
        }
    )


async def _follow_versions(through: Downstream, start: float) -> tuple[list[Seen], float]:
    """GET `/version` every `POLL_INTERVAL`; switch the origin to version 2 once it was revalidated.

    Returns the responses and when the version changed. The switch waits for the answer
    to the first conditional request (`REVALIDATION_WAIT` at most: a revalidation in the
    entry's last second renews it, running the handler); the requests go on until 1 s past
    the expiry of the last entry holding version 1, and a few polls more.
    """
    origin = through.origin
    seen: list[Seen] = []
    changed = float("inf")
    for index in range(REVALIDATION_POLLS):
        await _at(start, index)
        seen.append(await through.get("/version"))
        now = time.monotonic()
        answered = (a.if_none_match and a.finished <= now for a in origin.arrivals)
        if origin.version == 1 and (any(answered) or now > start + REVALIDATION_WAIT):
            origin.version, changed = 2, now
        old = [
            entry for entry in origin.entries("/version", VERSION_TTL) if entry.body == "version 1"
        ]
        if now > changed and now > old[-1].latest_expiry + TOLERANCE + 3 * POLL_INTERVAL:
            break
    return seen, changed


def _revalidation(origin: Origin, seen: Sequence[Seen], changed: float, start: float) -> list[str]:
    """What breaks the revalidation rules in `seen`, one downstream's responses of `/version`."""
    old = [entry for entry in origin.entries("/version", VERSION_TTL) if entry.body == "version 1"]
    etags = {entry.computed_by.headers.get("etag") for entry in old}
    conditional = [a for a in origin.arrivals if a.if_none_match and a.arrived < changed]
    problems = [] if conditional else ["never revalidated its copy of version 1"]
    problems += [
        f"revalidated at {a.arrived - start:.2f} s with the current ETag {a.if_none_match}"
        f" and got {a.status}, not 304: {a.headers}"
        for a in conditional
        if a.if_none_match in etags and a.status != 304
    ]
    dropped = old[-1].latest_expiry  # the origin answers version 2 from then on
    late = [response for response in seen if response.sent > dropped + TOLERANCE]
    problems += [
        f"served {response.body!r} {response.sent - dropped:.2f} s after the origin dropped"
        f" version 1: {response.describe(start)}"
        for response in late
        if response.body != "version 2"
    ]
    if not late:
        problems.append(f"no request later than {dropped - start:.2f} s + {TOLERANCE} s")
    problems += [
        f"not an origin entry: {response.describe(start)}"
        for response in seen
        if response.status != 200 or response.body not in {"version 1", "version 2"}
    ]
    return problems


@FRAMEWORKS
async def test_downstream_keeps_vary_variants_apart(
    build: Callable[[Origin], ASGIApp], tmp_path: Path
) -> None:
    """`fr` and `de` requests of a route sending `Vary: Accept-Language` each get their language."""
    async with downstreams(build, tmp_path) as clients:
        runs = await asyncio.gather(
            *(
                _alternate(client, "/greeting", "accept-language", ("fr", "de"))
                for client in clients
            )
        )
    problems = {}
    for client, run in zip(clients, runs, strict=True):
        problems[client.name] = [
            f"{language!r} got {response.describe(response.sent)}"
            for language, response in run
            if response.status != 200 or response.body != greeting(language)
        ]
        cached = {language for language, response in run if response.hit}
        if cached != set(GREETINGS):
            problems[client.name].append(f"only {sorted(map(str, cached))} served from its copy")
    _fail_on(problems)


@FRAMEWORKS
async def test_downstream_never_shares_a_per_user_entry(
    build: Callable[[Origin], ASGIApp], tmp_path: Path
) -> None:
    """Alice, bob and an anonymous client of a route keyed on `Authorization` get their own page."""
    async with downstreams(build, tmp_path) as clients:
        runs = await asyncio.gather(
            *(_alternate(client, "/me", "authorization", USERS) for client in clients)
        )
    _fail_on(
        {
            client.name: [
                f"{user!r} got {response.describe(response.sent)}"
                for user, response in run
                if response.status != 200 or response.body != f"user {user or 'anonymous'}"
            ]
            for client, run in zip(clients, runs, strict=True)
        }
    )


async def _alternate(
    through: Downstream, path: str, header: str, values: Sequence[str | None]
) -> list[tuple[str | None, Seen]]:
    """GET `path` with each of `values` in `header` in turn (`None`: without it), `ROUNDS` times."""
    return [
        (value, await through.get(path, {header: value} if value else {}))
        for _ in range(ROUNDS)
        for value in values
    ]
