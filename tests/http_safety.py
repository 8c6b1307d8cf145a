"""What a cache must never store or reveal, written once and run against every adapter.

Each adapter's `test_*_safety.py` builds an app with the routes below on a real uvicorn
server and runs each scenario (HTTP.md 0.1, 1.3, 2.1, 2.2). Handlers count their calls
in `calls[name]` and put the count in the body.

- GET /hidden/{item_id}: ttl=60, statuses 200 and 404, behind a check (a dependency, a
  guard) answering 404 unless `X-Staff: yes` -> "hidden"
- GET /login-first: ttl=60, statuses 200 and 302, behind a check that redirects to
  /login unless `X-Staff: yes` (a decorator above `@cached`, a `before_request`)
  -> "login-first"
- GET /form: ttl=60 -> "form", writes a CSRF token into the visitor's session (the
  framework's session middleware) unless one is there, and shows it
- GET /form/keyed: the same, with vary_on_cookies=("session",)
- GET /shared: ttl=60 -> "shared"
- GET /csrf-form: ttl=60 -> "csrf-form", shows the CSRF token that a double-submit
  middleware outside the cache (`DoubleSubmitCsrf`, on paths under /csrf) put in the
  request's state and in a cookie for a new visitor
- GET /csrf-form/themed: the same, with vary_on_cookies=("theme",)
- GET /warm: ttl=60, refresh_ahead=True -> "warm"
- GET /obs-etag: ttl=60 -> "obs-etag", with its own ETag `"café"` sent as ISO-8859-1
  (a byte above 0x7F)
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from atomcache_core import Cache
from atomcache_core.http import parse_cache_control
from support.servers import serve_asgi

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping

    Message = MutableMapping[str, Any]
    ASGIApp = Callable[
        [
            MutableMapping[str, Any],
            Callable[[], Awaitable[Message]],
            Callable[[Message], Awaitable[None]],
        ],
        Awaitable[None],
    ]

#: Where each adapter's test module declares the routes: on the app, or on a router
#: included at a prefix.
LAYOUTS = {"app": "", "router": "/api"}
STAFF = {"x-staff": "yes"}
ONLY_IF_CACHED = {"cache-control": "only-if-cached"}


class DoubleSubmitCsrf:
    """ASGI middleware: a CSRF token for each new visitor of .../csrf..., in state and a cookie."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap `app`."""
        self.app = app

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        """Give the request the visitor's token (a new one, sent as a cookie, if none)."""
        if scope["type"] != "http" or "/csrf" not in scope["path"]:
            await self.app(scope, receive, send)
            return
        cookies = dict(scope["headers"]).get(b"cookie", b"").decode()
        sent = [
            part.split("=", 1)[1] for part in cookies.split("; ") if part.startswith("csrftoken=")
        ]
        token = sent[0] if sent else secrets.token_hex(8)
        scope.setdefault("state", {})["csrf"] = token

        async def sending(message: Message) -> None:
            if not sent and message["type"] == "http.response.start":
                cookie = (b"set-cookie", f"csrftoken={token}; Path=/".encode())
                message = {**message, "headers": [*message.get("headers", ()), cookie]}
            await send(message)

        await self.app(scope, receive, sending)


class HeldRefusal:
    """Holds a refusal of the checks open (a request with `X-Hold`) until the test says."""

    def __init__(self) -> None:
        """Nothing held yet."""
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    def reset(self) -> None:
        """Hold the next refusal again (events of the running loop)."""
        self.started, self.release = asyncio.Event(), asyncio.Event()

    async def held(self, headers: Any) -> None:
        """In a check about to refuse: wait for the release if the request asks to be held."""
        if headers.get("x-hold"):
            self.started.set()
            await self.release.wait()


#: The refusal the apps' checks hold open (`a_refused_leader_holds_back_no_one`).
REFUSAL = HeldRefusal()


def status_of(response: httpx.Response) -> str:
    """The response's `Cache-Status`."""
    return str(response.headers.get("cache-status", ""))


def looks(response: httpx.Response) -> tuple[int, str, bytes, str | None]:
    """What a client can see of a response, but for its date."""
    return (
        response.status_code,
        status_of(response),
        response.content,
        response.headers.get("location"),
    )


async def refusals_are_never_stored(client: httpx.AsyncClient, calls: Counter[str]) -> None:
    """A check's 404 or login redirect is never stored as the route's entry (HTTP.md 1.3)."""
    for path, refusal in (("/hidden/1", 404), ("/login-first", 302)):
        for _ in range(2):
            refused = await client.get(path)
            assert refused.status_code == refusal, path
            assert "calls" not in refused.text
        admitted = await client.get(path, headers=STAFF)
        assert admitted.status_code == 200, path
        assert admitted.json()["calls"] == 1
        assert status_of(admitted).startswith("atomcache; fwd=miss; stored"), path
        hit = await client.get(path, headers=STAFF)
        assert status_of(hit).startswith("atomcache; hit"), path
        assert (await client.get(path)).status_code == refusal
    assert calls == {"hidden": 1, "login-first": 1}


async def refusals_look_the_same_cold_or_warm(
    client: httpx.AsyncClient, calls: Counter[str]
) -> None:
    """A refused request cannot tell whether an entry is stored, `only-if-cached` or not."""
    path = "/hidden/2"
    cold = [looks(await client.get(path, headers=headers)) for headers in ({}, ONLY_IF_CACHED)]
    assert cold[0][0] == cold[1][0] == 404
    assert (await client.get(path, headers={**STAFF, **ONLY_IF_CACHED})).status_code == 504
    assert (await client.get(path, headers=STAFF)).status_code == 200
    warm = [looks(await client.get(path, headers=headers)) for headers in ({}, ONLY_IF_CACHED)]
    assert warm == cold
    assert cold[0][1] == 'atomcache; fwd=bypass; detail="refused"'
    hit = await client.get(path, headers={**STAFF, **ONLY_IF_CACHED})
    assert hit.status_code == 200
    assert status_of(hit).startswith("atomcache; hit")
    assert calls["hidden"] == 1


async def a_refused_leader_holds_back_no_one(
    client: httpx.AsyncClient, calls: Counter[str]
) -> None:
    """A refused request computing a cold entry does not stop admitted ones storing it.

    They were waiting for it: one of them computes and stores the page, once.
    """
    REFUSAL.reset()
    refused = asyncio.create_task(client.get("/hidden/3", headers={"x-hold": "yes"}))
    await REFUSAL.started.wait()  # it holds the entry's computation, inside the check
    admitted = [asyncio.create_task(client.get("/hidden/3", headers=STAFF)) for _ in range(4)]
    await asyncio.sleep(0.1)  # no event says that they joined it: give them the time
    REFUSAL.release.set()
    assert (await refused).status_code == 404
    assert [(await task).status_code for task in admitted] == [200] * 4
    assert status_of(await client.get("/hidden/3", headers=STAFF)).startswith("atomcache; hit")
    assert calls["hidden"] == 1


async def session_writes_are_never_stored(base_url: str, calls: Counter[str]) -> None:
    """A page whose request wrote to the visitor's session is never stored (HTTP.md 1.3).

    Each new visitor gets a token of their own, in the page and in their session
    cookie, with or without `vary_on_cookies`.
    """
    for path in ("/form", "/form/keyed"):
        tokens = []
        for _ in range(3):
            async with httpx.AsyncClient(base_url=base_url) as visitor:
                page = await visitor.get(path)
                assert page.status_code == 200
                assert "set-cookie" in page.headers, path
                assert status_of(page) == 'atomcache; fwd=miss; detail="session"', path
                token = page.json()["csrf"]
                again = await visitor.get(path)  # their cookie: their own token
                assert again.json()["csrf"] == token, path
                tokens.append(token)
        assert len(set(tokens)) == len(tokens), path
    assert calls["form"] >= 6


async def bypassed_personal_responses_are_private(
    client: httpx.AsyncClient, calls: Counter[str]
) -> None:
    """A response computed on the credential bypass is `private`, with `Vary` naming the field.

    So a cache in front (a CDN caching by extension) cannot hand it to someone else
    (HTTP.md 2.2).
    """
    for field, value in (("cookie", "sid=abc"), ("authorization", "Bearer t")):
        response = await client.get("/shared", headers={field: value})
        assert status_of(response) == f'atomcache; fwd=bypass; detail="{field}"'
        assert "private" in parse_cache_control(response.headers.get("cache-control")), field
        vary = {part.strip().lower() for part in response.headers.get("vary", "").split(",")}
        assert field in vary, field
    assert calls["shared"] == 2


async def validators_with_obs_text_are_stored(
    client: httpx.AsyncClient, calls: Counter[str]
) -> None:
    """A handler's ETag with obs-text (RFC 9110 section 8.8.3) is stored, sent and matched."""
    etag = b'"caf\xe9"'
    first = await client.get("/obs-etag")
    assert status_of(first).startswith("atomcache; fwd=miss; stored")
    hit = await client.get("/obs-etag")
    assert status_of(hit).startswith("atomcache; hit")
    assert (b"etag", etag) in hit.headers.raw
    matched = await client.get("/obs-etag", headers=[(b"if-none-match", etag)])
    assert matched.status_code == 304
    assert calls["obs-etag"] == 1


async def one_off_urls_are_not_kept_warm(client: httpx.AsyncClient, cache: Cache) -> None:
    """Refresh ahead renews only entries read more than once: junk URLs are left to expire."""
    for index in range(30):
        assert (await client.get(f"/warm?junk={index}")).status_code == 200
    assert len(cache.refresher) == 0
    await client.get("/warm?page=1")
    assert len(cache.refresher) == 0
    assert status_of(await client.get("/warm?page=1")).startswith("atomcache; hit")
    assert len(cache.refresher) == 1


async def cookies_set_outside_are_never_shared(base_url: str, calls: Counter[str]) -> None:
    """A page a middleware outside the cache gives a new visitor's cookie is never shared.

    Each new visitor's page shows the token of their own cookie, for concurrent visitors
    of a cold entry too (HTTP.md 1.3).
    """

    async def visit(path: str) -> tuple[str, str]:
        async with httpx.AsyncClient(base_url=base_url) as visitor:
            page = await visitor.get(path)
            assert page.status_code == 200
            assert page.headers["cache-control"] == "private"
            assert "stored" not in status_of(page)
            return page.json()["csrf"], visitor.cookies["csrftoken"]

    for path in ("/csrf-form", "/csrf-form?page=2"):
        visits = await asyncio.gather(*(visit(path) for _ in range(8)))
        visits += [await visit(path) for _ in range(3)]
        assert all(shown == cookie for shown, cookie in visits), visits
        assert len({shown for shown, _ in visits}) == len(visits)
    assert calls["csrf-form"] == 22
    themed = {"cookie": "theme=dark"}  # another cookie, which the route keys on
    for _ in range(2):
        async with httpx.AsyncClient(base_url=base_url, headers=themed) as visitor:
            page = await visitor.get("/csrf-form/themed")
            assert page.json()["csrf"] == visitor.cookies["csrftoken"]


#: The scenarios above that take a client of the app and its call counts.
CLIENT_SCENARIOS = (
    refusals_are_never_stored,
    a_refused_leader_holds_back_no_one,
    refusals_look_the_same_cold_or_warm,
    bypassed_personal_responses_are_private,
    validators_with_obs_text_are_stored,
)
#: Those that take the routes' base URL (each visitor a client of its own) and the counts.
VISITOR_SCENARIOS = (session_writes_are_never_stored, cookies_set_outside_are_never_shared)


def safety_tests(
    build: Callable[[Cache, Counter[str], str], Any], framework: str
) -> tuple[Any, ...]:
    """The fixture and tests an adapter's module exposes, given how it builds the app.

    `build(cache, calls, prefix)` returns the ASGI app with the routes above, on the app
    (`prefix` empty) or on a router at `prefix`. Use as `served, test_safety,
    test_visitors, test_one_off_urls_are_not_kept_warm = safety_tests(build, "X")`.
    """

    @pytest.fixture(params=list(LAYOUTS))
    async def served(
        request: pytest.FixtureRequest, namespace: str
    ) -> AsyncIterator[tuple[str, Counter[str]]]:
        """The app on the memory backend, served by uvicorn; its routes' URL and calls."""
        calls: Counter[str] = Counter()
        prefix = LAYOUTS[request.param]
        app = build(Cache.from_url("memory://", namespace=namespace), calls, prefix)
        async with serve_asgi(app) as url:
            yield url + prefix, calls

    @pytest.mark.parametrize("scenario", CLIENT_SCENARIOS, ids=lambda scenario: scenario.__name__)
    async def test_safety(
        served: tuple[str, Counter[str]],
        scenario: Callable[[httpx.AsyncClient, Counter[str]], Awaitable[None]],
    ) -> None:
        url, calls = served
        async with httpx.AsyncClient(base_url=url) as client:
            await scenario(client, calls)

    @pytest.mark.parametrize("scenario", VISITOR_SCENARIOS, ids=lambda scenario: scenario.__name__)
    async def test_visitors(
        served: tuple[str, Counter[str]],
        scenario: Callable[[str, Counter[str]], Awaitable[None]],
    ) -> None:
        await scenario(*served)

    async def test_one_off_urls_are_not_kept_warm(namespace: str) -> None:
        cache = Cache.from_url("memory://", namespace=namespace)
        async with (
            serve_asgi(build(cache, Counter(), "")) as url,
            httpx.AsyncClient(base_url=url) as client,
        ):
            await one_off_urls_are_not_kept_warm(client, cache)

    test_safety.__doc__ = f"Each scenario holds for {framework} (its docstring says which)."
    test_visitors.__doc__ = f"{framework}: each new visitor's state stays their own."
    test_one_off_urls_are_not_kept_warm.__doc__ = one_off_urls_are_not_kept_warm.__doc__
    return served, test_safety, test_visitors, test_one_off_urls_are_not_kept_warm
