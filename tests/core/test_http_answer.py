"""The pure HTTP decision: a request's plan and what single flight found, in; the answer, out.

No cache, no app, no clock: `plan_request` and `answer_for` take plain data (and `now`),
so each row of a table is one request and its answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atomcache_core.http import (
    Answer,
    HttpPlan,
    StoredResponse,
    answer_for,
    make_etag,
    parse_cache_control,
    plan_request,
)
from atomcache_core.http.request import RequestInfo
from atomcache_core.http.route import CREDENTIAL_FIELDS, RouteOptions, RoutePlan
from support.scopes import http_scope

NOW = 1_000_000.0
BODY = b'{"items": []}'
ETAG = make_etag(BODY)


@dataclass(frozen=True)
class Entry:
    """A stored entry as an answer reads it: when it stops being fresh."""

    fresh_until: float


@dataclass(frozen=True)
class Found:
    """What single flight found, as `Outcome` carries it."""

    value: StoredResponse
    source: str = "hit"
    entry: Entry | None = field(default_factory=lambda: Entry(NOW + 42.7))
    reason: str = ""


def stored(status: int = 200, *headers: tuple[bytes, bytes]) -> StoredResponse:
    """A stored response with `BODY`, its ETag and `headers` after the usual ones."""
    fields = ((b"content-type", b"application/json"), (b"content-length", b"13"), *headers)
    return StoredResponse(status, fields, BODY, ETAG)


def planned(
    options: RouteOptions | None = None,
    headers: dict[str, str] | None = None,
    *,
    method: str = "GET",
    checked: bool = False,
) -> HttpPlan:
    """The plan of a request with `headers` to `/items`, a route with `options`."""
    route = RoutePlan("/items", options or RouteOptions(), checked=checked)
    fields = [(name.encode(), value.encode("latin-1")) for name, value in (headers or {}).items()]
    scope = {**http_scope(headers=fields), "method": method}
    plan = plan_request(route, RequestInfo.from_scope(scope, route.template, {}))
    assert isinstance(plan, HttpPlan), plan
    return plan


def field_of(answer: Answer, name: bytes) -> bytes | None:
    """The value of field `name` in `answer`, which must carry it at most once."""
    values = [value for key, value in answer.headers if key == name]
    assert len(values) <= 1, answer.headers
    return values[0] if values else None


ROWS: list[tuple[str, HttpPlan, Found, int, bytes, bytes]] = [
    (
        "a hit: max-age is the whole seconds left, and so is Cache-Status's ttl",
        planned(),
        Found(stored()),
        200,
        b"max-age=42",
        b"atomcache; hit; ttl=42",
    ),
    (
        "a hit revalidated with the ETag it has: 304",
        planned(headers={"if-none-match": ETAG}),
        Found(stored()),
        304,
        b"max-age=42",
        b"atomcache; hit; ttl=42",
    ),
    (
        "a weak tag matches too (weak comparison)",
        planned(headers={"if-none-match": f'"other", W/{ETAG}'}),
        Found(stored()),
        304,
        b"max-age=42",
        b"atomcache; hit; ttl=42",
    ),
    (
        "another ETag: the whole 200",
        planned(headers={"if-none-match": '"other"'}),
        Found(stored()),
        200,
        b"max-age=42",
        b"atomcache; hit; ttl=42",
    ),
    (
        "a failing If-Match: 412",
        planned(headers={"if-match": '"other"'}),
        Found(stored()),
        412,
        b"",
        b"atomcache; hit; ttl=42",
    ),
    (
        "If-Match is checked before If-None-Match (RFC 9110 13.2.2)",
        planned(headers={"if-match": '"other"', "if-none-match": ETAG}),
        Found(stored()),
        412,
        b"",
        b"atomcache; hit; ttl=42",
    ),
    (
        "a stale entry is sent whole to a revalidation: a 304 with max-age=0 renews nothing",
        planned(headers={"if-none-match": ETAG}),
        Found(stored(), "stale", Entry(NOW - 5)),
        200,
        b"max-age=0",
        b"atomcache; hit; fwd=stale; ttl=0",
    ),
    (
        "a computation after no-cache",
        planned(headers={"cache-control": "no-cache"}),
        Found(stored(), "computed", Entry(NOW + 60)),
        200,
        b"max-age=60",
        b"atomcache; fwd=request; stored; ttl=60",
    ),
    (
        "another request's computation",
        planned(),
        Found(stored(), "waited", Entry(NOW + 59.5)),
        200,
        b"max-age=59",
        b'atomcache; fwd=miss; ttl=59; detail="coalesced"',
    ),
    (
        "computed and not stored (no-store): no freshness to give",
        planned(headers={"cache-control": "no-store"}),
        Found(stored(), "uncached", None),
        200,
        b"max-age=0",
        b'atomcache; fwd=miss; detail="not stored"',
    ),
    (
        "a stored 404 with a matching ETag: the status wins (HTTP.md 4.3)",
        planned(RouteOptions(statuses=frozenset({200, 404})), {"if-none-match": ETAG}),
        Found(stored(404)),
        404,
        b"max-age=42",
        b"atomcache; hit; ttl=42",
    ),
    (
        "an entry keyed on Authorization goes out private (HTTP.md 2.2)",
        planned(RouteOptions(vary_on=("authorization",)), {"authorization": "Bearer a"}),
        Found(stored()),
        200,
        b"private, max-age=42",
        b"atomcache; hit; ttl=42",
    ),
    (
        "the route's cache_control is the policy, capped at what is left (HTTP.md 5.2)",
        planned(RouteOptions(cache_control="public, s-maxage=600, max-age=600")),
        Found(stored()),
        200,
        b"public, s-maxage=42, max-age=42",
        b"atomcache; hit; ttl=42",
    ),
    (
        "the handler's own Cache-Control is the policy, capped",
        planned(),
        Found(stored(200, (b"cache-control", b"public, max-age=3600, must-revalidate"))),
        200,
        b"public, max-age=42, must-revalidate",
        b"atomcache; hit; ttl=42",
    ),
    (
        "a route with checks goes out private: a cache in front would skip them",
        planned(checked=True),
        Found(stored()),
        200,
        b"private, max-age=42",
        b"atomcache; hit; ttl=42",
    ),
    (
        "unless its cache_control says a shared cache may keep it",
        planned(RouteOptions(cache_control="s-maxage=30"), checked=True),
        Found(stored()),
        200,
        b"s-maxage=30, max-age=42",
        b"atomcache; hit; ttl=42",
    ),
]


@pytest.mark.parametrize(
    ("plan", "found", "status", "control", "cache_status"),
    [row[1:] for row in ROWS],
    ids=[row[0] for row in ROWS],
)
def test_the_answer_of_each_request(
    plan: HttpPlan, found: Found, status: int, control: bytes, cache_status: bytes
) -> None:
    """Each row: a request and what was found give this status, Cache-Control and Cache-Status."""
    answer = answer_for(plan, found, now=NOW)
    assert answer.status == status
    assert field_of(answer, b"cache-control") == (control or None)
    assert field_of(answer, b"cache-status") == cache_status
    assert field_of(answer, b"age") is None  # max-age counts what is left (HTTP.md 5.1)


def test_a_200_sends_the_stored_fields_validators_and_body() -> None:
    """The stored fields, then ETag, Cache-Control, Cache-Status, then the request's own."""
    own = (b"x-request-id", b"r-1")
    answer = answer_for(planned(), Found(stored()), now=NOW, fields=[own])
    assert answer == Answer(
        200,
        [
            (b"content-type", b"application/json"),
            (b"content-length", b"13"),
            (b"etag", ETAG.encode()),
            (b"cache-control", b"max-age=42"),
            (b"cache-status", b"atomcache; hit; ttl=42"),
            own,
        ],
        BODY,
    )


def test_a_304_carries_the_validators_and_nothing_of_the_body() -> None:
    """RFC 9110 15.4.5: ETag, Cache-Control, Vary; no Content-Type, no Content-Length, no body."""
    response = stored(200, (b"vary", b"Accept-Language"), (b"x-extra", b"1"))
    plan = planned(headers={"if-none-match": ETAG})
    answer = answer_for(plan, Found(response), now=NOW, fields=[(b"x-request-id", b"r-1")])
    assert answer.status == 304
    assert answer.body == b""
    assert {name for name, _ in answer.headers} == {
        b"vary",
        b"etag",
        b"cache-control",
        b"cache-status",
    }


def test_a_412_says_only_its_length_and_cache_status() -> None:
    """A failed precondition sends an empty body and no validator of the entry."""
    answer = answer_for(planned(headers={"if-match": '"other"'}), Found(stored()), now=NOW)
    assert answer == Answer(
        412, [(b"content-length", b"0"), (b"cache-status", b"atomcache; hit; ttl=42")]
    )


def test_a_head_gets_the_fields_of_the_get_and_no_body() -> None:
    """HEAD uses the GET entry and sends no body (RFC 9110 9.3.2)."""
    get = answer_for(planned(), Found(stored()), now=NOW)
    head = answer_for(planned(method="HEAD"), Found(stored()), now=NOW)
    assert head == Answer(get.status, get.headers, b"")


def test_a_request_that_may_not_use_the_cache_gets_its_reason() -> None:
    """plan_request says why it bypasses: the method, a credential, a body, a Range."""
    route = RoutePlan("/items", RouteOptions())

    def reason(method: str = "GET", **headers: str) -> HttpPlan | str:
        fields = [
            (name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()
        ]
        scope = {**http_scope(headers=fields), "method": method}
        return plan_request(route, RequestInfo.from_scope(scope, route.template, {}))

    assert reason("POST") == "method"
    assert reason(authorization="Bearer a") == "authorization"
    assert reason(cookie="session=1") == "cookie"
    assert reason(content_length="3") == "request body"
    assert reason(range="bytes=0-1") == "range"
    assert plan_request(
        route, RequestInfo.from_scope(http_scope(), "/items", {}), stateful=True
    ) == ("set-cookie")


# Properties over every route and request the strategies below can build.

DIRECTIVES = st.lists(
    st.one_of(
        st.sampled_from(["public", "private", "no-transform", "must-revalidate"]),
        st.builds("max-age={}".format, st.integers(0, 10**6)),
        st.builds("s-maxage={}".format, st.integers(0, 10**6)),
        st.sampled_from(["max-age=soon", 'max-age="5"', "s-maxage=-1"]),
    ),
    max_size=4,
).map(", ".join)
SOURCES = st.sampled_from(["hit", "stale", "computed", "waited", "uncached"])
CONDITIONS = st.dictionaries(
    st.sampled_from(["if-none-match", "if-match", "if-modified-since", "if-unmodified-since"]),
    st.sampled_from([ETAG, f"W/{ETAG}", '"other"', "*", "Sat, 01 Jan 2000 00:00:00 GMT"]),
)


@st.composite
def routes(draw: st.DrawFn) -> RouteOptions:
    """Route options: any policy, public or not, keyed on credentials or not."""
    return RouteOptions(
        cache_control=draw(st.none() | DIRECTIVES),
        public=draw(st.booleans()),
        vary_on=tuple(draw(st.lists(st.sampled_from(["authorization", "accept-language"])))),
        vary_on_cookies=tuple(draw(st.lists(st.sampled_from(["session"]), max_size=1))),
        statuses=frozenset({200, 203, 301, 404, 500}),
    )


@st.composite
def answers(draw: st.DrawFn) -> tuple[HttpPlan, Found, Answer]:
    """A plan, what was found for it, and the answer it gets."""
    options = draw(routes())
    route = RoutePlan("/items", options, checked=draw(st.booleans()))
    credentials = draw(st.dictionaries(st.sampled_from(CREDENTIAL_FIELDS), st.just("secret")))
    headers = {**draw(CONDITIONS), **credentials}
    scope = {
        **http_scope(headers=[(name.encode(), value.encode()) for name, value in headers.items()]),
        "method": draw(st.sampled_from(["GET", "HEAD"])),
    }
    plan = plan_request(route, RequestInfo.from_scope(scope, route.template, {}))
    if not isinstance(plan, HttpPlan):
        plan = planned(options, draw(CONDITIONS), checked=route.checked)
    own: list[tuple[bytes, bytes]] = []
    if draw(st.booleans()):
        own.append((b"cache-control", draw(DIRECTIVES).encode() or b"no-transform"))
    response = stored(draw(st.sampled_from([200, 203, 301, 404, 500])), *own)
    left = draw(st.floats(-100, 10**6, allow_nan=False))
    entry = draw(st.sampled_from([Entry(NOW + left), None]))
    found = Found(response, draw(SOURCES), entry)
    return plan, found, answer_for(plan, found, now=NOW)


def freshness(answer: Answer) -> dict[str, Any]:
    """The `Cache-Control` an answer carries, parsed."""
    return parse_cache_control(field_of(answer, b"cache-control"))


@given(answers())
def test_max_age_is_never_above_what_the_entry_has_left(
    case: tuple[HttpPlan, Found, Answer],
) -> None:
    """No cache downstream keeps an answer longer than the origin keeps its entry (HTTP.md 5.1)."""
    _, found, answer = case
    left = max(0, int(found.entry.fresh_until - NOW)) if found.entry is not None else 0
    for name in ("max-age", "s-maxage"):
        value = freshness(answer).get(name)
        assert value is None or int(value) <= left, (name, value, left)


@given(answers())
def test_an_entry_that_depends_on_credentials_is_always_private(
    case: tuple[HttpPlan, Found, Answer],
) -> None:
    """Personal entries go out private, never public or s-maxage (HTTP.md 2.2).

    A 412 carries no `Cache-Control` at all: it has nothing of the entry to keep.
    """
    plan, _, answer = case
    directives = freshness(answer)
    if plan.route.personal and answer.status != 412:
        assert "private" in directives
        assert not {"public", "s-maxage"} & directives.keys()


@given(answers())
def test_a_status_other_than_2xx_is_never_replaced(case: tuple[HttpPlan, Found, Answer]) -> None:
    """A non-2xx response never becomes a 304 or a 412: the status wins (HTTP.md 4.3)."""
    _, found, answer = case
    if not 200 <= found.value.status < 300:
        assert answer.status == found.value.status


@given(answers())
def test_only_a_full_get_answer_has_a_body(case: tuple[HttpPlan, Found, Answer]) -> None:
    """HEAD, 304 and 412 answers have no body; every answer says its Cache-Status once."""
    plan, found, answer = case
    full = plan.info.method == "GET" and answer.status == found.value.status
    assert answer.body == (BODY if full else b"")
    assert field_of(answer, b"cache-status") is not None
    if answer.status == 304:
        assert field_of(answer, b"etag") == ETAG.encode()


@given(
    st.dictionaries(st.sampled_from(CREDENTIAL_FIELDS), st.sampled_from(["a", "b"]), min_size=1),
    st.builds(
        RouteOptions,
        public=st.booleans(),
        vary_on=st.lists(st.sampled_from(CREDENTIAL_FIELDS), max_size=2).map(tuple),
    ),
)
def test_a_request_with_credentials_never_uses_a_shared_entry(
    credentials: dict[str, str], options: RouteOptions
) -> None:
    """A credential bypasses the cache unless the route is public or keys on it (HTTP.md 2.1).

    When it keys on it, another value of the credential gives another key.
    """
    route = RoutePlan("/items", options)

    def plan_with(values: dict[str, str]) -> HttpPlan | str:
        fields = [(name.encode(), value.encode()) for name, value in values.items()]
        return plan_request(route, RequestInfo.from_scope(http_scope(headers=fields), "/items", {}))

    plan = plan_with(credentials)
    if not isinstance(plan, HttpPlan):
        assert plan in credentials
        return
    assert options.public or set(credentials) <= set(options.vary_on)
    if not options.public:
        other = plan_with({name: value * 2 for name, value in credentials.items()})
        assert isinstance(other, HttpPlan)
        assert other.key != plan.key
