"""Route plans: what a cached route declares, and what is decided about it once.

An adapter turns each cached route of an app into a `RoutePlan` when the app starts:
its path template, its options, whether the application runs checks before the
handler (then a stored response is served only once they have let the request
through, HTTP.md 0.1), which request fields carry credentials, and the header block
its entries carry downstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from atomcache_core._seconds import checked_seconds
from atomcache_core.exceptions import ConfigurationError
from atomcache_core.http.fields import PER_REQUEST_HEADERS, field_title
from atomcache_core.http.request import cookie_values

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from atomcache_core.http.request import RequestInfo

__all__ = ["CREDENTIAL_FIELDS", "DEFAULT_MAX_BODY_SIZE", "RouteOptions", "RoutePlan"]

DEFAULT_MAX_BODY_SIZE = 16 * 1024 * 1024
#: Request fields that carry a caller's credentials: `Authorization` (RFC 9110 section
#: 11.6.2), `Cookie` (RFC 6265) and the usual API key fields. Adapters add the fields
#: an app's security schemes read (FastAPI's `APIKeyHeader`).
CREDENTIAL_FIELDS = (
    "authorization",
    "cookie",
    "x-api-key",
    "api-key",
    "x-auth-token",
    "x-access-token",
)


@dataclass(frozen=True, slots=True)
class RouteOptions:
    """How one route is cached: what `@cached(...)` accepts in every adapter.

    Attributes:
        ttl: Seconds a response stays fresh; `None` means the cache's default TTL.
        namespace: Groups the route's entries for invalidation (`invalidate` drops a
            namespace's entries at once); it never makes two routes share an entry.
            Default: the route's path template.
        vary_on: Request fields whose values are part of the key (`accept-language`)
            and are sent in `Vary`. Naming `authorization` or `cookie` gives one entry
            per value (hashed in the key) and lets requests carrying it use the cache;
            such entries go downstream as `private`.
        vary_on_cookies: Cookie names whose values are part of the key (hashed): the
            route's response depends on these cookies only, so requests carrying other
            cookies (analytics, consent) share entries instead of bypassing the cache.
            Entries go downstream as `private` with `Vary: Cookie`.
        public: The response is the same for every caller: requests carrying
            `Authorization` or `Cookie` may share it. The application's checks still
            run on every request (HTTP.md 2.1).
        sort_query: Sort query parameters by name before keying, so `?a=1&b=2` and
            `?b=2&a=1` share an entry (by default the query is keyed as sent).
        tags: Tags of every entry, or a function of the `RequestInfo` returning them.
        stale_ttl: Serve an expired entry this many seconds while one refresh runs.
        stale_if_error: Serve an expired entry this long when its refresh fails.
        no_cache: `"honour"` a request's `no-cache` / `max-age=0` by recomputing (at most
            once per `min_refresh_interval`), or `"ignore"` it.
        min_refresh_interval: Seconds during which a just-computed entry answers
            `no-cache` requests instead of another recomputation.
        cache_control: `Cache-Control` to send instead of `max-age=<remaining>`, e.g.
            `"public, s-maxage=60"`; `max-age`/`s-maxage` are capped at what is left.
        statuses: Status codes that are stored.
        max_body_size: Larger bodies (bytes) are sent but not stored.
        per_request_headers: Response fields that describe one exchange and are never
            stored (the request that computed the response still gets them); `None`
            means `atomcache_core.http.PER_REQUEST_HEADERS` (`X-Request-ID`,
            `traceparent`, `Server-Timing`...), else these names instead (HTTP.md 1.3).
        key: Builds the key from the `RequestInfo` instead of the target URI. It does
            not lift the credentials rule: requests with `Authorization` or `Cookie`
            still bypass unless `vary_on` names them or `public` is set.
        refresh_ahead: Keep entries warm (HTTP.md 7.4): shortly before an entry expires
            (a tenth of its TTL, 1 s to half of it, or 1.5 times its computation if
            longer), the request that made it is
            replayed in the background by one instance of the fleet (the entry's
            lock), while readers get the stored entry. Entries keyed on credentials
            are not replayed (no credential is kept for it); they expire as usual.
        refresh_idle: With `refresh_ahead`, seconds without a read (in this process)
            after which an entry is left to expire; `None`: 5 times the TTL.
    """

    ttl: float | None = None
    namespace: str | None = None
    vary_on: tuple[str, ...] = ()
    vary_on_cookies: tuple[str, ...] = ()
    public: bool = False
    sort_query: bool = False
    tags: tuple[str, ...] | Callable[[RequestInfo], Iterable[str]] = ()
    stale_ttl: float = 0.0
    stale_if_error: float = 0.0
    no_cache: Literal["honour", "ignore"] = "honour"
    min_refresh_interval: float = 1.0
    cache_control: str | None = None
    statuses: frozenset[int] = field(default_factory=lambda: frozenset({200}))
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    per_request_headers: tuple[str, ...] | None = None
    key: Callable[[RequestInfo], str] | None = None
    refresh_ahead: bool = False
    refresh_idle: float | None = None

    def __post_init__(self) -> None:
        """Check the options once, when the route is declared."""
        if self.no_cache not in ("honour", "ignore"):
            msg = f"no_cache must be 'honour' or 'ignore', got {self.no_cache!r}"
            raise ConfigurationError(msg)
        for name in ("stale_ttl", "stale_if_error", "min_refresh_interval"):
            checked_seconds(getattr(self, name), name, zero=True)
        if self.ttl is not None:
            checked_seconds(self.ttl, "ttl")
        if self.refresh_idle is not None:
            checked_seconds(self.refresh_idle, "refresh_idle")
        for name in ("vary_on", "vary_on_cookies"):
            values = getattr(self, name)
            if isinstance(values, str) or not all(isinstance(item, str) for item in values):
                msg = f'{name} must be a list of names, e.g. ["accept-language"], got {values!r}'
                raise ConfigurationError(msg)
        object.__setattr__(self, "vary_on", tuple(name.lower() for name in self.vary_on))
        object.__setattr__(self, "vary_on_cookies", tuple(self.vary_on_cookies))
        object.__setattr__(self, "statuses", frozenset(self.statuses))


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """What is decided once per cached route, when the app starts.

    Attributes:
        template: The route's path template as the app declares it, mount point and
            router prefixes excluded (`/items/{item_id}`): the route's identity.
        options: The route's `RouteOptions`.
        checked: The application runs something before the handler (dependencies,
            guards, route-level middleware, decorators above `@cached`): a stored
            response is served only after that has let the request through.
        credentials: Request fields (lower-case) whose presence means the caller
            identified itself: `CREDENTIAL_FIELDS`, plus any the adapter found (the
            header of a FastAPI `APIKeyHeader`).
        headers: Request fields the route declares it reads (a FastAPI `Header()`, a
            Litestar `Parameter(header=...)`, in the handler or its dependencies), as
            the adapter found them. Those that are not credentials are keyed and sent
            in `Vary`, as if `vary_on` named them.
        cookies: Cookies the route declares it reads (`Cookie()`,
            `Parameter(cookie=...)`): keyed, as if `vary_on_cookies` named them.
        credential_cookies: Cookies a security scheme reads (FastAPI's `APIKeyCookie`):
            a request carrying one bypasses shared entries unless `vary_on_cookies`
            names it or the route is `public`.
        credential_query: Query parameters a security scheme reads (FastAPI's
            `APIKeyQuery`): the query is keyed already, so such entries are one per
            key; they go downstream `private` unless the route is `public`.
        key_headers: The request fields whose values are keyed: `vary_on`, then the
            declared `headers` that are not credentials.
        key_cookies: The cookies whose values are keyed: `vary_on_cookies`, then the
            declared `cookies` that are not `credential_cookies`.
        guarded_cookies: `credential_cookies` a request may not carry and use a shared
            entry.
        shared_fields: Credential fields a request may carry and still use the cache.
        personal: Entries depend on credentials: sent `private` (HTTP.md 2.2).
        per_request: The response fields never stored (`per_request_headers`), bytes.
        vary: The `Vary` entries carry: the keyed fields, and unless `public`,
            `Cookie` and `Authorization` (an entry is for the callers that sent the
            same values, or none), so a cache in front never gives a page stored for
            anonymous callers to a signed-in one, nor the reverse.
    """

    template: str
    options: RouteOptions
    checked: bool = False
    credentials: tuple[str, ...] = CREDENTIAL_FIELDS
    headers: tuple[str, ...] = ()
    cookies: tuple[str, ...] = ()
    credential_cookies: tuple[str, ...] = ()
    credential_query: tuple[str, ...] = ()
    key_headers: tuple[str, ...] = field(init=False)
    key_cookies: tuple[str, ...] = field(init=False)
    guarded_cookies: tuple[str, ...] = field(init=False)
    shared_fields: frozenset[str] = field(init=False)
    personal: bool = field(init=False)
    per_request: frozenset[bytes] = field(init=False)
    vary: bytes = field(init=False)

    def __post_init__(self) -> None:
        """Derive what requests and entries of this route share."""
        options = self.options
        credentials = _unique(name.lower() for name in self.credentials)
        declared = _unique(name.lower() for name in self.headers)
        key_headers = _unique(
            (*options.vary_on, *(name for name in declared if name not in credentials))
        )
        credential_cookies = _unique(self.credential_cookies)
        key_cookies = _unique(
            (
                *options.vary_on_cookies,
                *(name for name in self.cookies if name not in credential_cookies),
            )
        )
        guarded = (
            ()
            if options.public
            else tuple(name for name in credential_cookies if name not in options.vary_on_cookies)
        )
        shared = set(key_headers)
        if key_cookies:
            shared.add("cookie")
        if options.public:
            shared.update(credentials)
        for name, value in (
            ("credentials", credentials),
            ("headers", declared),
            ("cookies", _unique(self.cookies)),
            ("credential_cookies", credential_cookies),
            ("credential_query", _unique(self.credential_query)),
            ("key_headers", key_headers),
            ("key_cookies", key_cookies),
            ("guarded_cookies", guarded),
            ("shared_fields", frozenset(shared)),
        ):
            object.__setattr__(self, name, value)
        personal = not options.public and (
            any(name in shared for name in credentials) or bool(self.credential_query)
        )
        object.__setattr__(self, "personal", personal)
        names = options.per_request_headers
        per_request = (
            PER_REQUEST_HEADERS
            if names is None
            else frozenset(name.lower().encode("latin-1") for name in names)
        )
        object.__setattr__(self, "per_request", per_request)
        varied = dict.fromkeys(key_headers)
        if key_cookies or not options.public:
            varied["cookie"] = None
        if not options.public:  # selected by their absence: say so downstream
            varied["authorization"] = None
        object.__setattr__(self, "vary", ", ".join(field_title(name) for name in varied).encode())

    def bypass_reason(self, headers: Mapping[str, str]) -> str | None:
        """Why a request with these fields may not use a shared entry (HTTP.md 2.1, 2.4).

        Returns `None` when it may, else the `Cache-Status` detail: a credential field
        the route does not key on (`"authorization"`, `"cookie"`), `"request body"`
        (RFC 9110 section 9.3.1: a GET body has no defined meaning) or `"range"`.
        """
        for name in self.credentials:
            if name in headers and name not in self.shared_fields:
                return name
        if self.guarded_cookies and "cookie" in headers:
            sent = cookie_values(headers["cookie"], self.guarded_cookies)
            if any(sent):
                return "cookie"
        if headers.get("content-length", "0").strip() not in ("", "0") or (
            "transfer-encoding" in headers
        ):
            return "request body"
        if "range" in headers:
            return "range"
        return None


def _unique(names: Iterable[str]) -> tuple[str, ...]:
    """`names` in order, each once."""
    return tuple(dict.fromkeys(names))
