"""What a key is made of: the target as routed, the host as sent, declared inputs, no secret."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from atomcache_core.asgi import RequestInfo, RouteOptions, RoutePlan
from atomcache_core.http_request import (
    invalidation_tag,
    request_key,
    request_tags,
    sorted_query,
)
from support.scopes import http_scope


def scope(
    path: str = "/items",
    query: bytes = b"",
    *,
    raw_path: bytes | None = None,
    root_path: str = "",
    **headers: str,
) -> dict[str, Any]:
    """An ASGI HTTP scope of a GET to `http://shop.example` unless `host` says otherwise."""
    fields = [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    return http_scope(path, query, headers=fields, raw_path=raw_path, root_path=root_path)


def key(route: RoutePlan, request: dict[str, Any], **path_params: str) -> str:
    """The key of `request` for `route`."""
    return request_key(route, RequestInfo.from_scope(request, route.template, path_params))


def test_the_host_is_keyed_as_sent() -> None:
    """Another spelling of the host is another entry: an app echoing it never mixes them."""
    route = RoutePlan("/items", RouteOptions())
    assert key(route, scope(host="Shop.Example")) != key(route, scope(host="shop.example"))
    assert RequestInfo.from_scope(scope(host="Shop.Example"), "/items", {}).host == "Shop.Example"


def test_the_key_follows_the_path_that_was_routed() -> None:
    """A path rewritten in the scope (X-Original-URL support) is keyed, not `raw_path`."""
    route = RoutePlan("/items/{item_id}", RouteOptions())
    rewritten = key(route, scope("/items/2", raw_path=b"/items/1"), item_id="2")
    assert rewritten != key(route, scope("/items/1"), item_id="1")
    # A Litestar mount (`is_mount`) takes its prefix off `path`, leaving `root_path`
    # empty: the path as received keeps two mounted apps apart.
    mounted = [key(route, scope("/items/1", raw_path=f"/{m}/items/1".encode())) for m in "ab"]
    assert mounted[0] != mounted[1]


def test_the_mount_point_is_keyed_whatever_the_server() -> None:
    """Hypercorn leaves `root_path` out of `path` and `raw_path`, uvicorn puts it in both."""
    route = RoutePlan("/items", RouteOptions())
    hypercorn = [key(route, scope("/items", root_path=root)) for root in ("/a", "/b", "")]
    assert len(set(hypercorn)) == 3
    uvicorn = [key(route, scope(f"{root}/items", root_path=root)) for root in ("/a", "/b")]
    assert uvicorn[0] != uvicorn[1]
    # A framework that strips the mount point after routing (Litestar): /api/api/x and
    # /api/x are two requests, though `root_path + path` would read the same.
    catch_all = RoutePlan("/{rest:path}", RouteOptions())
    assert key(catch_all, scope("/api/x", root_path="/api")) != key(
        catch_all, scope("/x", root_path="/api")
    )


def test_sort_query_keeps_each_parameter_as_sent() -> None:
    """Sorting reorders parameters and never decodes them: raw and encoded stay apart."""
    route = RoutePlan("/search", RouteOptions(sort_query=True))
    assert key(route, scope(query=b"b=2&a=1")) == key(route, scope(query=b"a=1&b=2"))
    for raw, encoded in (
        (b"q=<script>", b"q=%3Cscript%3E"),
        (b"q=%FF", b"q=%FE"),
        (b"q=%C0%BC", b"q=<"),  # overlong UTF-8 for "<"
        (b"q=a+b", b"q=a%20b"),
        (b"%71=1", b"q=1"),
        (b"a=2&a=1", b"a=1&a=2"),  # a repeated name keeps its values' order
    ):
        assert key(route, scope(query=raw)) != key(route, scope(query=encoded)), raw
    assert sorted_query("q=%3C&b=<&a") == "a&b=<&q=%3C"


@given(
    st.lists(st.from_regex(r"[a-c%<]{0,2}(=[a-c%<]{0,2})?", fullmatch=True), max_size=6).flatmap(
        lambda parameters: st.tuples(st.just(parameters), st.permutations(parameters))
    )
)
def test_sorting_only_reorders(sent: tuple[list[str], list[str]]) -> None:
    """The sorted query holds the same parameters, byte for byte, in any sent order."""
    parameters, shuffled = sent
    query = "&".join(parameters)
    result = sorted_query(query)
    assert sorted(result.split("&")) == sorted(query.split("&"))
    names = [parameter.partition("=")[0] for parameter in result.split("&")]
    assert names == sorted(names)
    if len({parameter.partition("=")[0] for parameter in parameters}) == len(parameters):
        assert sorted_query("&".join(shuffled)) == result


def test_no_path_or_query_value_reaches_a_key_name() -> None:
    """A reset token in the path and an API key in the query: hashed in keys and tags."""
    route = RoutePlan("/reset/{token}", RouteOptions(vary_on=("accept-language",)))
    request = scope(
        "/reset/s3cret-reset", b"api_key=k3y-secret", x_forwarded_host="f0rwarded.example"
    )
    info = RequestInfo.from_scope(request, route.template, {"token": "s3cret-reset"})
    names = [request_key(route, info), *request_tags(route, info)]
    for secret in ("s3cret-reset", "k3y-secret", "shop.example", "f0rwarded"):
        assert not any(secret in name for name in names), (secret, names)
    assert all("/reset/{token}" in name for name in names)
    assert invalidation_tag(route, {"token": "s3cret-reset"}, None) in names
    assert invalidation_tag(route, {"token": "s3cret-reset"}, [("api_key", "k3y-secret")]) in names


def test_declared_headers_are_keyed_and_sent_in_vary() -> None:
    """A header the route reads (`Header()`) keys the entry like `vary_on`: one per value."""
    route = RoutePlan("/tenant", RouteOptions(), headers=("X-Tenant",))
    assert route.key_headers == ("x-tenant",)
    assert b"X-Tenant" in route.vary
    assert not route.personal
    assert route.bypass_reason({"x-tenant": "a"}) is None
    assert key(route, scope(x_tenant="a")) != key(route, scope(x_tenant="b"))
    assert key(route, scope(x_tenant="a")) == key(route, scope(x_tenant="a", x_other="1"))


def test_declared_credential_headers_stay_credentials() -> None:
    """A declared header that carries credentials bypasses unless `vary_on` names it."""
    route = RoutePlan("/r", RouteOptions(), headers=("x-api-key", "authorization"))
    assert route.key_headers == ()
    assert route.bypass_reason({"x-api-key": "k"}) == "x-api-key"
    assert route.bypass_reason({"authorization": "Bearer a"}) == "authorization"
    named = RoutePlan("/r", RouteOptions(vary_on=("x-api-key",)), headers=("x-api-key",))
    assert named.bypass_reason({"x-api-key": "k"}) is None
    assert named.personal


def test_declared_cookies_are_keyed() -> None:
    """A cookie the route reads (`Cookie()`) keys the entry like `vary_on_cookies`."""
    route = RoutePlan("/theme", RouteOptions(), cookies=("theme",))
    assert route.key_cookies == ("theme",)
    assert route.bypass_reason({"cookie": "theme=dark; _ga=1"}) is None
    assert route.personal
    assert key(route, scope(cookie="theme=dark")) != key(route, scope(cookie="theme=light"))
    assert key(route, scope(cookie="theme=dark")) == key(route, scope(cookie="_ga=2; theme=dark"))


def test_fields_sent_on_several_lines_are_keyed_apart_from_one_line() -> None:
    """Two `X-Tenant` lines are not their values on one line: frameworks read them apart.

    FastAPI and Litestar read the first line of a repeated field, and the last of a
    cookie repeated on one `Cookie` line: the key tells the forms apart, for keyed
    fields, keyed cookies and forwarding fields.
    """
    route = RoutePlan("/tenant", RouteOptions(), headers=("x-tenant",), cookies=("theme",))

    def lines(*fields: tuple[bytes, bytes]) -> dict[str, Any]:
        request = scope()
        request["headers"] = [*request["headers"], *fields]
        return request

    two = lines((b"x-tenant", b"c"), (b"x-tenant", b"d"))
    assert key(route, two) != key(route, lines((b"x-tenant", b"c, d")))
    assert key(route, two) == key(route, lines((b"x-tenant", b"c"), (b"x-tenant", b"d")))
    split = lines((b"cookie", b"theme=light"), (b"cookie", b"theme=dark"))
    assert key(route, split) != key(route, lines((b"cookie", b"theme=light; theme=dark")))
    forwarded = lines((b"x-forwarded-host", b"evil.test"), (b"x-forwarded-host", b"shop.example"))
    joined = lines((b"x-forwarded-host", b"evil.test, shop.example"))
    assert key(route, forwarded) != key(route, joined)
    assert key(route, lines((b"x-forwarded-host", b"a"))) != key(route, scope())


def test_security_scheme_cookies_bypass_unless_keyed() -> None:
    """A cookie an `APIKeyCookie` reads is a credential, even next to declared cookies."""
    route = RoutePlan("/r", RouteOptions(), cookies=("theme",), credential_cookies=("token",))
    assert route.key_cookies == ("theme",)
    assert route.bypass_reason({"cookie": "theme=dark; token=t"}) == "cookie"
    assert route.bypass_reason({"cookie": "theme=dark"}) is None
    keyed = RoutePlan("/r", RouteOptions(vary_on_cookies=("token",)), credential_cookies=("token",))
    assert keyed.bypass_reason({"cookie": "token=t"}) is None
    public = RoutePlan("/r", RouteOptions(public=True), credential_cookies=("token",))
    assert public.bypass_reason({"cookie": "token=t"}) is None


def test_security_scheme_query_parameters_make_entries_private() -> None:
    """An `APIKeyQuery` route keys each key apart (the query) and sends entries private."""
    route = RoutePlan("/r", RouteOptions(), credential_query=("api_key",))
    assert route.personal
    assert not RoutePlan("/r", RouteOptions(public=True), credential_query=("api_key",)).personal
    positional = RoutePlan("/r", RouteOptions(), True, ("authorization",))  # noqa: FBT003
    assert positional.credentials == ("authorization",)  # the positional arguments are unchanged
    assert positional.checked
