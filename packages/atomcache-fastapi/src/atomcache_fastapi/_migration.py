"""`ResponseCache`: the original atomcache's API, with its names and meanings, on the new core.

As a route dependency, `cache: ResponseCache = Depends(ResponseCache(exp=600))`: the
handler calls `await cache.raise_try(cache_id)` (which answers from the cache, or
returns so the handler computes) and returns `cache.set(rows, cache_id=cache_id)`.
Directly, a module-level `ResponseCache(exp=1200, namespace="my-namespace:")` keeps
values with `await cache.get(cache_id=...)`, `cache.set(value, cache_id=...)`,
`await cache.mget(...)` and `cache.mset({...})`. `await ResponseCache.init(app, redis)`
puts every `ResponseCache` of the process on that Redis client (until then they share
an in-memory cache). docs/migrating.md shows both of the original's examples.

Kept from the original: nothing is stored unless `set` is called; the first caller
of a missing key computes it while the others wait for its `set` (woken by a
notification), for at most `lock_timeout` seconds; `exp=None` keeps entries (10 years,
`MAX_TTL`, the longest any backend keeps alike); `auto_refresh=True` recomputes the
route's entries shortly before they expire (replaying the requests that filled them),
for as long as the app runs. Fixed on the way: each request gets its own bound copy of
the dependency; route hits are the final response bytes (response model applied) with
a strong ETag, 304 and `Cache-Status`; a failed write is logged, never lost silently.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from fastapi.encoders import jsonable_encoder
from starlette.requests import Request  # noqa: TC002 - FastAPI reads the annotation at run time
from starlette.responses import Response

from atomcache_core import MAX_TTL, Cache, ConfigurationError, Outcome
from atomcache_core.asgi import (
    BackgroundTasks,
    FlightOptions,
    Lease,
    RequestPlan,
    RouteOptions,
    RoutePlan,
    WaitPolicy,
    checked_seconds,
    replayer,
    replaying,
)
from atomcache_core.exceptions import AtomCacheError
from atomcache_core.http_request import full_path
from atomcache_fastapi._claims import (
    BYPASS,
    CLAIM,
    CachedResponse,
    Claim,
    HeldLock,
    http_cache_of,
)
from atomcache_fastapi._middleware import install

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["DEFAULT_LOCK_TIMEOUT", "ResponseCache"]

logger = logging.getLogger("atomcache")

ResponseT = TypeVar("ResponseT")
#: The original's default `lock_timeout`, in seconds.
DEFAULT_LOCK_TIMEOUT = 5.0
_POLL = 0.25  # seconds between a lockspace waiter's re-reads, between notifications
#: The fields of an ASGI HTTP scope: what an `auto_refresh` replay sends to the app.
_ASGI_FIELDS = (
    "type", "asgi", "http_version", "server", "client", "scheme", "method",
    "root_path", "path", "raw_path", "query_string", "headers",
)  # fmt: skip


class ResponseCache:
    """The original `Cache`: a route dependency, or a key-value cache used directly.

    Args:
        exp: Seconds an entry stays fresh; `None`: no expiry (kept `MAX_TTL`, 10 years).
        auto_refresh: Recompute the route's entries shortly before they expire, by
            replaying the request that filled each, for as long as the app runs
            (HTTP.md 7.4); one instance of the fleet does it (a fleet-wide lock).
            Needs `exp`.
        cache_control: Honour a request's `Cache-Control: no-cache`: answer without the
            cache and store nothing (the original's meaning). Default `False`.
        namespace: Prefix of the entries' keys (`namespace + cache_id`); default: the
            route's path template.
        lock_timeout: Seconds others wait for the first caller of a missing key to
            `set` it (and the longest that caller holds the key), as in the original.

    Raises:
        ConfigurationError: `exp` or `lock_timeout` is not a valid number of seconds,
            or `auto_refresh` is asked without `exp`.
    """

    #: Where every `ResponseCache` keeps its entries: in memory until `init` names Redis.
    backend: ClassVar[Cache] = Cache(namespace="atomcache")
    #: The app `init` set up, if any.
    app: ClassVar[FastAPI | None] = None
    _writes: ClassVar[BackgroundTasks] = BackgroundTasks()

    def __init__(
        self,
        exp: float | None = 600,
        auto_refresh: bool = False,  # noqa: FBT001, FBT002 - the original's positional order
        cache_control: bool = False,  # noqa: FBT001, FBT002
        namespace: str | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        """Describe one route's caching, or a group of directly used entries."""
        if auto_refresh and exp is None:
            msg = "auto_refresh needs an expiry: give exp=<seconds>, not None"
            raise ConfigurationError(msg)
        self.exp = exp
        self.ttl = MAX_TTL if exp is None else checked_seconds(exp, "exp")
        self.auto_refresh = auto_refresh
        self.cache_control = cache_control
        self.namespace = namespace
        self.lock_timeout = checked_seconds(lock_timeout, "lock_timeout")
        self._request: Request | None = None
        self._no_cache = False
        self._claim: Claim | None = None
        self._tried = False
        self._held: dict[str, HeldLock] = {}

    @classmethod
    async def init(cls, app: FastAPI, cache_client: Any, autorefresh: bool = True) -> None:  # noqa: FBT001, FBT002 - the original's signature
        """Keep every `ResponseCache` on `cache_client` and serve `app`'s routes with it.

        `cache_client` is a `redis.asyncio.Redis` (or `RedisCluster`) client, closed by
        `await ResponseCache.backend.close()`, or an atomcache `Cache`. Call it before
        the app serves (at startup, as the original did, or before): it installs what
        `setup_cache` installs, unless `setup_cache` did already. With `autorefresh`,
        the routes whose `ResponseCache` says `auto_refresh=True` are kept warm.

        Raises:
            TypeError: `cache_client` is neither (the original's error).
        """
        if isinstance(cache_client, Cache):
            backend = cache_client
        elif _is_redis_client(cache_client):
            backend = Cache.from_client(cache_client, owns_client=True, namespace="atomcache")
        else:
            msg = (
                f"Unsupported {type(cache_client)} cache client type. Pass a "
                "redis.asyncio.Redis client (redis.asyncio.Redis.from_url(url)), a "
                "redis.asyncio.RedisCluster, or an atomcache_core.Cache"
            )
            raise TypeError(msg)
        cls.backend = backend
        cls.app = app
        install(app, backend, refresh=autorefresh)

    async def __call__(self, request: Request) -> ResponseCache:
        """Bind a copy to the request: nothing is shared between requests.

        A plain `def` endpoint runs in a thread and cannot await `raise_try`: for it,
        the dependency calls `raise_try` itself with the request's path and query as
        `cache_id` (each URI its own entry), so the endpoint only returns
        `cache.set(...)`; the `cache_id` given to that `set` is not used.
        """
        bound = copy.copy(self)
        bound._request = request  # noqa: SLF001 - the copy's own state
        bound._claim = None  # noqa: SLF001
        bound._tried = False  # noqa: SLF001
        bound._held = {}  # noqa: SLF001
        if self.cache_control:
            directives = request.headers.get("cache-control", "").lower()
            bound._no_cache = "no-cache" in (part.strip() for part in directives.split(","))  # noqa: SLF001
        endpoint = request.scope.get("endpoint")
        if endpoint is not None and not inspect.iscoroutinefunction(endpoint):
            query = request.scope.get("query_string", b"").decode("latin-1")
            await bound.raise_try(f"{full_path(request.scope)}?{query}")
        return bound

    def get_key(self, cache_id: str = "") -> str:
        """The entry's key: `namespace + cache_id`, as in the original."""
        return f"{self.namespace or ''}{cache_id}"

    async def raise_try(
        self,
        cache_id: str = "",
        with_lock: bool = True,  # noqa: FBT001, FBT002 - the original's signature
        lockspace: str | None = None,
    ) -> None:
        """Answer from the cache (raising `CachedResponse`), or return to compute.

        When the entry is missing and `with_lock`, this request computes it while the
        others wait for its `set` (at most `lock_timeout` seconds), or it waits for the
        one computing it and answers with its result. `lockspace` names the lock
        instead of the entry: one computation at a time for all entries sharing it.
        Without `with_lock`, a miss returns at once and nobody waits.
        """
        request = self._bound()
        if self._claim is not None:  # asked already for this request
            return
        self._tried = True
        cache = _app_cache(request)
        if self._no_cache:
            request.scope.setdefault("state", {})[BYPASS] = ("request", "no-cache")
            return
        plan = self._plan(request, cache, cache_id)
        if plan is None:
            return
        try:
            if plan.only_if_cached or not with_lock:
                outcome = await cache.single_flight.peek(plan.key, plan.flight)
                if outcome is not None or plan.only_if_cached:
                    raise CachedResponse(plan, outcome, cache)
                self._keep_claim(request, Claim(plan, None))
                return
            if lockspace is not None:
                found = await self._in_lockspace(cache, plan.key, plan.flight, lockspace)
                if isinstance(found, Outcome):
                    raise CachedResponse(plan, found, cache)
                self._keep_claim(request, Claim(plan, None, release=found))
                return
            claimed = await cache.single_flight.claim(plan.key, plan.flight)
        except AtomCacheError:
            return  # fail open: the handler answers
        if isinstance(claimed, Outcome):
            raise CachedResponse(plan, claimed, cache)
        self._keep_claim(request, Claim(plan, claimed if isinstance(claimed, Lease) else None))

    def _plan(self, request: Request, cache: Cache, cache_id: str) -> RequestPlan | None:
        """The request's plan (its key: namespace + `cache_id`); `None` for a bypass."""
        http_cache = http_cache_of(request.app, cache)
        route = str(getattr(request.scope.get("route"), "path", request.url.path))
        key = f"{self.namespace or route}{cache_id}"
        refresh = self.auto_refresh and getattr(request.app.state, "atomcache_refresh", True)
        options = RouteOptions(
            ttl=self.ttl,
            namespace=self.namespace or route,
            no_cache="ignore",
            key=lambda _: key,
            refresh_ahead=refresh,
            refresh_idle=MAX_TTL,  # the original refreshed for as long as the app ran
        )
        plan = http_cache.plan(request.scope, RoutePlan(route, options), request.path_params)
        if isinstance(plan, str):  # a bypass: credentials, a body; the handler answers
            request.scope.setdefault("state", {})[BYPASS] = ("bypass", plan)
            return None
        if refresh and not replaying(request.scope):  # replayed through the whole app
            scope = request.scope
            fields = {k: scope[k] for k in _ASGI_FIELDS if k in scope}
            plan.replay = replayer(request.app, fields, without=plan.route.credentials)
        return plan

    def set(self, response: ResponseT, cache_id: str = "") -> ResponseT:
        """Store `response` under `cache_id` in the background; return it unchanged.

        In a route, after `raise_try`: the final response (FastAPI's bytes, response
        model applied) is stored once it is sent, under the `cache_id` given to
        `raise_try` (nothing, when `raise_try` did not use the cache). Used directly
        (or in a route that only calls `get` and `set`): `response` is stored as JSON
        (`jsonable_encoder`), a Starlette `Response` as its body, as the original
        did (`get` then gives `{"hello": "world"}` for
        `JSONResponse({"hello": "world"})`), and the callers waiting in `get` are
        woken. A failed write is logged. With a request's honoured `no-cache`,
        nothing is stored.

        Raises:
            ConfigurationError: `response` is a `Response` without a UTF-8 text body
                (a stream, an image): store its data instead.
        """
        if self._no_cache:
            return response
        if self._claim is not None:
            self._claim.requested = True
            return response
        if self._tried:  # raise_try did not use the cache for this request
            return response
        key = self.get_key(cache_id)
        value = _storable(response)
        held = [self._held.pop(key)] if key in self._held else []
        self._writes.start(self._write({key: value}, *held), "atomcache-set")
        return response

    def mset(self, cache: dict[str, Any]) -> dict[str, Any]:
        """Store every `cache_id: value` pair as `set` does, in the background; return `cache`."""
        if self._no_cache:
            return cache
        values = {self.get_key(cache_id): _storable(value) for cache_id, value in cache.items()}
        held = [self._held.pop(key) for key in values if key in self._held]
        self._writes.start(self._write(values, *held), "atomcache-mset")
        return cache

    async def get(
        self,
        cache_id: str = "",
        with_lock: bool = True,  # noqa: FBT001, FBT002 - the original's signature
        decode: bool = True,  # noqa: FBT001, FBT002
        lockspace: str | None = None,
    ) -> Any:
        """The value stored under `cache_id`, or `None`.

        With `with_lock` (default), the first caller of a missing key gets `None` and
        the duty to `set` it; the others wait for that `set` (woken by a notification)
        for at most `lock_timeout` seconds, then get the value, or `None`. `lockspace`
        names the lock instead of the key. `decode=False` gives the stored JSON text.
        """
        if self._no_cache:
            return None
        cache = self._direct_cache()
        key = self.get_key(cache_id)
        flight = self._flight()
        found: Outcome | HeldLock | None
        try:
            if not with_lock:
                found = await cache.single_flight.peek(key, flight)
            else:
                found = await self._in_lockspace(cache, key, flight, lockspace or key)
        except AtomCacheError:
            logger.warning("cache read of %r failed; answering None", key, exc_info=True)
            return None
        if isinstance(found, HeldLock):  # this caller computes, then calls set
            self._held[key] = found
            return None
        if found is None:
            return None
        return found.value if decode else json.dumps(found.value)

    async def mget(self, *cache_ids: str, decode: bool = True) -> dict[str, Any]:
        """`{cache_id: value}` for those of `cache_ids` that are stored (no locks)."""
        if not cache_ids or self._no_cache:
            return {}
        cache = self._direct_cache()
        values = await cache.get_many([self.get_key(cache_id) for cache_id in cache_ids], _MISSING)
        return {
            cache_id: value if decode else json.dumps(value)
            for cache_id, value in zip(cache_ids, values, strict=True)
            if value is not _MISSING
        }

    def _keep_claim(self, request: Request, claim: Claim) -> None:
        self._claim = claim
        request.scope.setdefault("state", {})[CLAIM] = claim

    def _flight(self) -> FlightOptions:
        return FlightOptions(ttl=self.ttl)

    def _direct_cache(self) -> Cache:
        return _cache_of(self._request) if self._request is not None else type(self).backend

    async def _in_lockspace(
        self, cache: Cache, key: str, flight: FlightOptions, lock_name: str
    ) -> Outcome | HeldLock | None:
        """The stored value; else the lock `lock_name` for `lock_timeout` s (to compute).

        When another caller holds that lock, wait for the value, woken by its
        notification (and looking again every 0.25 s): the value, or the lock once it
        is free (this caller computes next), or, after `lock_timeout`, `None`: the
        caller computes without the lock.
        """
        found = await cache.single_flight.peek(key, flight)
        if found is not None:  # a hit: no subscription
            return found
        lock_key = cache.keys.lock(lock_name)
        policy = WaitPolicy(self.lock_timeout, _POLL, self.lock_timeout)
        waited = await cache.single_flight.wait_or_take(key, lock_key, flight, policy)
        return HeldLock(cache, lock_key, waited) if isinstance(waited, str) else waited

    async def _write(self, values: dict[str, Any], *held: HeldLock) -> None:
        """Store `values` as JSON (logged if it fails), wake their waiters, free locks."""
        cache = self._direct_cache()
        flight = self._flight()
        try:
            for key, value in values.items():
                await cache.single_flight.store(key, value, flight)
        except Exception:
            logger.exception("could not store %s; the next get computes again", sorted(values))
        finally:
            for lock in held:
                await lock.release()

    def _bound(self) -> Request:
        if self._request is None:
            msg = (
                "raise_try answers a request: use ResponseCache as a dependency, "
                "cache: ResponseCache = Depends(ResponseCache(exp=600)); "
                "outside a route use get/set"
            )
            raise ConfigurationError(msg)
        return self._request


_MISSING: Any = object()


def _storable(value: Any) -> Any:
    """What `set` keeps of `value`: its JSON form; of a `Response`, its body (the original's).

    The body is kept as the JSON value it holds, or else as its text, so `get` gives
    back what the response carried.

    Raises:
        ConfigurationError: a `Response` without a UTF-8 text body.
    """
    if not isinstance(value, Response):
        return jsonable_encoder(value)
    body = getattr(value, "body", None)  # a StreamingResponse has none
    if not isinstance(body, bytes):
        msg = (
            f"set keeps a response's body, and a streaming response ({type(value).__name__}) "
            "has none: pass the data it streams instead"
        )
        raise ConfigurationError(msg)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        msg = (
            f"set keeps a response's body as text, and this {value.media_type!r} body is "
            "not UTF-8 text: pass the data instead (e.g. base64-encoded)"
        )
        raise ConfigurationError(msg) from None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _app_cache(request: Request) -> Cache:
    """The cache `init` or `setup_cache` gave the request's app.

    Raises:
        ConfigurationError: the app was not set up.
    """
    cache = getattr(request.app.state, "atomcache", None)
    if not isinstance(cache, Cache):
        msg = (
            "this app is not set up for caching: call `await ResponseCache.init(app, "
            "redis_client)` at startup, or setup_cache(app, cache) before it starts"
        )
        raise ConfigurationError(msg)
    return cache


def _cache_of(request: Request) -> Cache:
    """The cache of the request's app (`init` or `setup_cache`), else the shared backend."""
    cache = getattr(request.app.state, "atomcache", None)
    return cache if isinstance(cache, Cache) else ResponseCache.backend


def _is_redis_client(client: object) -> bool:
    from redis.asyncio import Redis, RedisCluster  # noqa: PLC0415 - only to check the type

    return isinstance(client, (Redis, RedisCluster))
