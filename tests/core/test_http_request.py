"""The request side of HTTP caching: keys from the target URI, credentials, bypasses."""

from __future__ import annotations

from typing import Any

import pytest

import atomcache_fastapi
import atomcache_litestar
from atomcache_core import ConfigurationError
from atomcache_core.asgi import RequestInfo, ResponseCapture, RouteOptions, RoutePlan, cached
from atomcache_core.http import StoredResponse
from atomcache_core.http_request import full_path, request_key


def scope(path: str = "/items", query: bytes = b"", **headers: str) -> dict[str, Any]:
    """An ASGI HTTP scope of a GET to `http://Shop.Example` unless `host` says otherwise."""
    headers.setdefault("host", "Shop.Example")
    fields = [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    return {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "query_string": query,
        "headers": fields,
        "server": ("127.0.0.1", 8000),
    }


def key(route: RoutePlan, request: dict[str, Any]) -> str:
    """The key of `request` for `route`."""
    return request_key(route, RequestInfo.from_scope(request, route.template, {}))


def test_the_key_is_the_target_uri() -> None:
    """Scheme, host as sent, full path and the query as sent each make another key."""
    route = RoutePlan("/items", RouteOptions())
    base = key(route, scope())
    assert key(route, scope(host="Shop.Example")) == base
    assert key(route, {**scope(), "scheme": "https"}) != base
    assert key(route, scope(host="evil.test")) != base
    assert key(route, {**scope(), "root_path": "/v2"}) != base
    assert key(route, scope(query=b"a=1&b=2")) != key(route, scope(query=b"b=2&a=1"))
    assert key(route, scope(x_forwarded_host="evil.test")) != base
    assert key(RoutePlan("/other", RouteOptions()), scope()) != base


def test_sort_query_is_an_opt_in() -> None:
    """With sort_query the parameters' order no longer matters; their values do."""
    route = RoutePlan("/items", RouteOptions(sort_query=True))
    assert key(route, scope(query=b"a=1&b=2")) == key(route, scope(query=b"b=2&a=1"))
    assert key(route, scope(query=b"a=1&b=2")) != key(route, scope(query=b"a=1&b=3"))


def test_credentials_never_appear_in_clear() -> None:
    """Authorization, Cookie and named cookies are hashed in the key, one entry per value."""
    by_auth = RoutePlan("/me", RouteOptions(vary_on=("authorization",)))
    alice = key(by_auth, scope(authorization="Bearer alice-secret"))
    assert "alice-secret" not in alice
    assert alice != key(by_auth, scope(authorization="Bearer bob-secret"))
    by_cookie = RoutePlan("/me", RouteOptions(vary_on_cookies=("session",)))
    session = key(by_cookie, scope(cookie="session=s3cret; _ga=1"))
    assert "s3cret" not in session
    assert session == key(by_cookie, scope(cookie="_ga=2; session=s3cret"))
    assert session != key(by_cookie, scope(cookie="session=other"))


@pytest.mark.parametrize(
    ("options", "headers", "reason"),
    [
        (RouteOptions(), {"authorization": "Bearer a"}, "authorization"),
        (RouteOptions(), {"cookie": "a=1"}, "cookie"),
        (RouteOptions(), {"x-api-key": "k"}, "x-api-key"),
        (RouteOptions(key=lambda _: "k"), {"cookie": "a=1"}, "cookie"),
        (RouteOptions(vary_on=("authorization",)), {"cookie": "a=1"}, "cookie"),
        (RouteOptions(vary_on=("authorization",)), {"authorization": "Bearer a"}, None),
        (RouteOptions(vary_on_cookies=("session",)), {"cookie": "_ga=1"}, None),
        (RouteOptions(public=True), {"cookie": "a=1", "authorization": "Bearer a"}, None),
        (RouteOptions(public=True), {"content-length": "2"}, "request body"),
        (RouteOptions(), {"transfer-encoding": "chunked"}, "request body"),
        (RouteOptions(), {"content-length": "0"}, None),
        (RouteOptions(), {"range": "bytes=0-1"}, "range"),
    ],
)
def test_bypass_reasons(options: RouteOptions, headers: dict[str, str], reason: str | None) -> None:
    """Credentials bypass unless keyed or public (a custom key does not lift it); bodies too."""
    assert RoutePlan("/r", options).bypass_reason(headers) == reason


def test_entries_say_downstream_who_they_are_for() -> None:
    """Credential-keyed entries are personal; all but public ones vary on credentials."""
    personal = RoutePlan("/me", RouteOptions(vary_on=("authorization", "accept-language")))
    assert personal.personal
    assert personal.vary == b"Authorization, Accept-Language, Cookie"
    shared = RoutePlan("/items", RouteOptions())
    assert not shared.personal
    assert shared.vary == b"Cookie, Authorization"
    public = RoutePlan("/items", RouteOptions(public=True, vary_on=("accept-language",)))
    assert (public.personal, public.vary) == (False, b"Accept-Language")


@pytest.mark.parametrize(
    ("path", "root_path", "full"),
    [("/items", "", "/items"), ("/a/items", "/a", "/a/items"), ("/items", "/a", "/a/items")],
)
def test_full_path_includes_the_mount_point(path: str, root_path: str, full: str) -> None:
    """Whether or not the server left the mount point in `path`, it is in the key."""
    assert full_path({"path": path, "root_path": root_path}) == full


@pytest.mark.parametrize("option", ["vary_on", "vary_on_cookies", "tags"])
@pytest.mark.parametrize("adapter", ["core", "fastapi", "litestar"])
def test_a_single_name_must_be_a_list(option: str, adapter: str) -> None:
    """`vary_on="session"` would key on the letters: refused, saying how to write it.

    `tags="products"` would tag each entry with one tag per letter, and
    `invalidate_tags("products")` would remove nothing: refused the same way.
    """
    decorator = {
        "core": cached,
        "fastapi": atomcache_fastapi.cached,
        "litestar": atomcache_litestar.cached,
    }[adapter]
    options: dict[str, Any] = {option: "session"}
    with pytest.raises(ConfigurationError, match=r"\['session'\]"):
        decorator(**options)


def test_cookies_are_read_as_the_frameworks_read_them() -> None:
    """Values a strict parser rejects (JSON, bare words) never hide the named cookie."""
    route = RoutePlan("/me", RouteOptions(vary_on_cookies=("session",)))
    alice = key(route, scope(cookie='prefs={"theme":"dark"}; seen; session=s-alice'))
    bob = key(route, scope(cookie='prefs={"theme":"dark"}; seen; session=s-bob'))
    assert alice != bob
    assert alice != key(route, scope())
    assert key(route, scope(cookie="session=a; session=b")) != key(route, scope(cookie="session=b"))


async def test_per_request_fields_are_configurable() -> None:
    """`per_request_headers` replaces the default list of fields that are never stored."""
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    for names, kept in ((None, {b"x-trace"}), (("X-Trace",), {b"x-request-id"})):
        capture = ResponseCapture(send)
        fields = [(b"x-trace", b"t"), (b"x-request-id", b"r"), (b"content-type", b"text/plain")]
        await capture({"type": "http.response.start", "status": 200, "headers": fields})
        await capture({"type": "http.response.body", "body": b"ok"})
        stored = capture.result(RoutePlan("/r", RouteOptions(per_request_headers=names)), {})
        assert isinstance(stored, StoredResponse)
        assert {name for name, _ in stored.headers} & {b"x-trace", b"x-request-id"} == kept
    assert sent == []  # a complete response is kept, not sent
