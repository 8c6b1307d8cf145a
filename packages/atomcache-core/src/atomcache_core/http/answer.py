"""The answer: the status, fields and body a request gets, decided without I/O.

`answer_for` turns a request's plan and what single flight found (a hit, a stale
entry, a computation) into the 200, 304 or 412 to send, with the `Cache-Control`
(never more freshness than the entry has left), `Cache-Status` and validators of
HTTP.md 4 and 5; the other functions do the same for the answers that come from no
entry (a response not stored, a bypass, a 504). `atomcache_core.asgi` only sends them.
Time is an argument (`now`): a decision is tested with no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from atomcache_core.http.conditional import CONDITION_FIELDS, precondition_status
from atomcache_core.http.directives import (
    parse_cache_control,
    personal_headers,
    private_unless_set,
    render_cache_control,
)
from atomcache_core.http.fields import get_header, not_modified_headers
from atomcache_core.http.status import (
    REFUSED,
    SET_COOKIE,
    SET_COOKIE_STATUS,
    encoded_status,
    hit_status,
    status_of,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from atomcache_core.http.plan import HttpPlan
    from atomcache_core.http.route import RoutePlan
    from atomcache_core.http.stored import StoredResponse

__all__ = [
    "Answer",
    "Block",
    "Found",
    "answer_for",
    "bypass_headers",
    "cache_control_for",
    "gateway_timeout_answer",
    "sets_a_new_cookie",
    "uncached_answer",
    "visitors_own",
]

#: Stored fields that every answer sets itself, never replayed from the entry.
_REPLACED_ON_SERVE = frozenset((b"cache-control", b"age", b"cache-status", b"etag"))


@dataclass(slots=True)
class Answer:
    """What to send: a status, its fields and its body (empty for a `HEAD`, a 304, a 412)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""


class Fresh(Protocol):
    """A stored entry, as an answer sees it: when it stops being fresh (Unix time)."""

    @property
    def fresh_until(self) -> float:
        """The Unix time at which the entry expires."""
        ...


class Found(Protocol):
    """What single flight found for a request (`atomcache_core._flight.options.Outcome`)."""

    @property
    def value(self) -> Any:
        """The response: a `StoredResponse` for `answer_for`."""
        ...

    @property
    def source(self) -> str:
        """`hit`, `stale`, `computed`, `waited` or `uncached`."""
        ...

    @property
    def entry(self) -> Fresh | None:
        """The entry it was read from or stored as; `None` if not stored."""
        ...

    @property
    def reason(self) -> str:
        """Why an `uncached` value was not stored."""
        ...


@dataclass(frozen=True, slots=True)
class Block:
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

    @classmethod
    def of(cls, response: StoredResponse) -> Block:
        """The block of `response` (callers keep it: every answer from it shares it)."""
        headers = [(name, val) for name, val in response.headers if name not in _REPLACED_ON_SERVE]
        return cls(
            headers,
            not_modified_headers(headers),
            get_header(response.headers, b"cache-control"),
            get_header(response.headers, b"last-modified"),
            response.etag.encode("latin-1"),
        )


def answer_for(
    plan: HttpPlan,
    outcome: Found,
    *,
    now: float,
    block: Block | None = None,
    fields: Iterable[tuple[bytes, bytes]] = (),
) -> Answer:
    """The answer a request of `plan` gets from the stored response `outcome.value`.

    A 2xx with a condition the entry meets or fails gives a 304 or 412 (RFC 9110
    section 13.2.2; `conditional_answer`); else the stored status, fields and body (none
    for a `HEAD`), with `fields` added (the computing request's per-request fields).
    Every answer carries the `ETag`, a `Cache-Control` capped at the whole seconds the
    entry has left at `now` (`cache_control_for`), and a `Cache-Status`; no `Age`:
    `max-age` already counts what is left (HTTP.md 5.1). `block`: `Block.of` the
    response, if the caller keeps it.
    """
    response: StoredResponse = outcome.value
    if block is None:
        block = Block.of(response)
    entry = outcome.entry
    remaining = max(0, int(entry.fresh_until - now)) if entry is not None else 0
    source, route = outcome.source, plan.route
    if (
        route.options.cache_control is None
        and block.control is None
        and not (route.personal or route.checked)
    ):
        control = b"max-age=%d" % remaining  # `cache_control_for`, without parsing anything
    else:
        control = cache_control_for(route, remaining, block.control)
    if source == "hit":  # `status_of`, one call fewer on the path every hit takes
        status = hit_status(remaining)
    else:
        status = status_of(source, remaining, forced=plan.forced, reason=outcome.reason)
    validators = [(b"etag", block.etag), (b"cache-control", control), (b"cache-status", status)]
    if 200 <= response.status < 300 and not CONDITION_FIELDS.isdisjoint(plan.info.headers):  # noqa: PLR2004 - the status wins (HTTP.md 4.3)
        stale = remaining == 0 and source == "stale"
        conditional = conditional_answer(plan, response, block, validators, stale=stale)
        if conditional is not None:
            return conditional
    body = b"" if plan.info.method == "HEAD" else response.body
    return Answer(response.status, [*block.headers, *validators, *fields], body)


def conditional_answer(
    plan: HttpPlan,
    response: StoredResponse,
    block: Block,
    validators: list[tuple[bytes, bytes]],
    *,
    stale: bool,
) -> Answer | None:
    """The 304 or 412 a conditional request gets (RFC 9110 section 13.2.2), if any.

    `validators` are the entry's `ETag`, `Cache-Control` and `Cache-Status` fields. A
    `stale` entry (no freshness left) is sent whole instead of a 304: a 304 with
    `max-age=0` refreshes nothing in a cache in front, and nginx then keeps its old copy
    as long again. A 304 has no `Date` here: the server adds it, as to every answer.
    """
    status = precondition_status(plan.info.headers, response.etag, block.modified)
    if status == 304 and not stale:  # noqa: PLR2004
        return Answer(status, [*block.not_modified, *validators])
    if status == 412:  # noqa: PLR2004
        return Answer(status, [(b"content-length", b"0"), validators[-1]])
    return None


def cache_control_for(route: RoutePlan, remaining: int, own: bytes | None = None) -> bytes:
    """The `Cache-Control` to send: never more freshness than the entry has left.

    The downstream policy is the route's `cache_control`, else the handler's own
    `Cache-Control` (`own`), else `max-age` alone (HTTP.md 5.2): `max-age`/`s-maxage`
    are capped at the whole seconds left (`remaining`).

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
    return render_cache_control(directives).encode("latin-1")


def uncached_answer(
    status: int,
    headers: Iterable[tuple[bytes, bytes]],
    body: bytes,
    reason: str,
    *,
    head: bool = False,
) -> Answer:
    """A handler's response that was not stored, saying why in `Cache-Status`.

    A refusal by the app's checks says the same as on a hit (`REFUSED`, a bypass);
    anything else is a miss with `reason` as its detail. No body for a `HEAD`.
    """
    forward = "bypass" if reason == REFUSED else "miss"
    fields = [*headers, (b"cache-status", encoded_status(forward=forward, detail=reason))]
    return Answer(status, fields, b"" if head else body)


def gateway_timeout_answer() -> Answer:
    """The 504 of `only-if-cached` when nothing is stored (RFC 9111 section 5.2.1.7)."""
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"0"),
        (b"cache-status", encoded_status(forward="miss", detail="only-if-cached")),
    ]
    return Answer(504, headers)


def bypass_headers(
    headers: Iterable[tuple[bytes, bytes]], reason: str, *, personal: bool = False
) -> list[tuple[bytes, bytes]]:
    """The fields of a response that bypassed the cache, with a `Cache-Status` saying why.

    `personal`: `reason` is the credential field the response was computed for; it goes
    downstream marked so (`personal_headers`: `private`, `Vary`), as entries that depend
    on credentials do (HTTP.md 2.2). A page with a new visitor's cookie (`SET_COOKIE`)
    is that visitor's: `private` unless it says otherwise.
    """
    if personal:
        headers = personal_headers(headers, reason)
    elif reason == SET_COOKIE:
        headers = private_unless_set(headers)
    return [*headers, (b"cache-status", encoded_status(forward="bypass", detail=reason))]


def sets_a_new_cookie(
    request_headers: Iterable[tuple[bytes, bytes]], response_headers: Iterable[tuple[bytes, bytes]]
) -> bool:
    """Whether a response sets a cookie that its request did not carry (RFC 6265)."""
    set_names = {
        value.split(b"=", 1)[0].strip()
        for name, value in response_headers
        if name.lower() == b"set-cookie"
    }
    if not set_names:
        return False
    sent = b"; ".join(value for name, value in request_headers if name.lower() == b"cookie")
    carried = {chunk.split(b"=", 1)[0].strip() for chunk in sent.split(b";")}
    return not set_names <= carried


def visitors_own(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The fields of a page that carries a new visitor's cookie: `private`, not stored."""
    fields = [
        (name, value)
        for name, value in headers
        if name.lower() not in (b"cache-control", b"cache-status")
    ]
    return [*fields, (b"cache-control", b"private"), (b"cache-status", SET_COOKIE_STATUS)]
