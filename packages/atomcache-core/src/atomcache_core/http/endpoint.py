"""The `@cached` endpoint: how a route is marked, found, and let through its checks.

`@cached(...)` wraps an endpoint and records its `RouteOptions`; adapters find them
through the matched route (`find_cached`) and refuse misplaced decorators at startup.
On a hit, the wrapper opens the request's `Gate` once the application's own checks
have run (HTTP.md 0.1). No I/O and no web framework here: a context variable is the
only state a request carries through the app.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import warnings
import weakref
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from atomcache_core._seconds import Seconds, as_seconds
from atomcache_core.exceptions import ConfigurationError
from atomcache_core.http.route import DEFAULT_MAX_BODY_SIZE, RouteOptions

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from atomcache_core.http.request import RequestInfo

__all__ = [
    "GATE",
    "PASSING",
    "Gate",
    "cached",
    "find_cached",
    "misplaced",
    "refuse_misplaced",
    "refuse_websocket",
    "route_options",
]

_OPTIONS_ATTRIBUTE = "__atomcache__"
EndpointT = TypeVar("EndpointT", bound="Callable[..., Any]")


class Gate:
    """Lets a hit through once the application's checks have passed (HTTP.md 0.1).

    The adapter runs the app for a request it will answer from the cache, with a gate
    set for the route's endpoint. When the endpoint is reached, its checks have passed:
    the `@cached` wrapper opens the gate and returns `placeholder()` instead of running
    the handler; the flow then sends the stored response in place of the placeholder's.

    Without a `placeholder`, the gate only witnesses: the handler runs, and `passed`
    tells whether the response came from it (nothing that refused the request before
    it, or another route, answered): only such a response is ever stored.
    """

    __slots__ = ("options", "passed", "placeholder")

    def __init__(self, options: RouteOptions, placeholder: Callable[[], Any] | None) -> None:
        """A closed gate for the endpoint marked with `options`."""
        self.options = options
        self.placeholder = placeholder
        self.passed = False

    def open(self, options: RouteOptions) -> Any:
        """Open for `options`' endpoint: the value it returns, or `None` to run the handler."""
        if options is not self.options or self.passed:
            return None
        self.passed = True
        return self.placeholder() if self.placeholder is not None else None


GATE: ContextVar[Gate | None] = ContextVar("atomcache_gate", default=None)
#: The gate of a request an adapter lets through to the handler (a method not cached, a
#: bypass): no endpoint's, so the handler runs, and knows that the cache is there.
PASSING = Gate(RouteOptions(), None)
#: Endpoint functions that `cached` wrapped, with their options (weakly held).
_UNDERNEATH: weakref.WeakKeyDictionary[Any, RouteOptions] = weakref.WeakKeyDictionary()


def cached(
    ttl: Seconds | None = None,
    *,
    namespace: str | None = None,
    vary_on: Iterable[str] = (),
    vary_on_cookies: Iterable[str] = (),
    public: bool = False,
    sort_query: bool = False,
    tags: Iterable[str] | Callable[[RequestInfo], Iterable[str]] = (),
    stale_ttl: Seconds = 0.0,
    stale_if_error: Seconds = 0.0,
    no_cache: Literal["honour", "ignore"] = "honour",
    min_refresh_interval: Seconds = 1.0,
    cache_control: str | None = None,
    statuses: Iterable[int] = (200,),
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    per_request_headers: Iterable[str] | None = None,
    key: Callable[[RequestInfo], str] | None = None,
    refresh_ahead: bool = False,
    refresh_idle: Seconds | None = None,
) -> Callable[[EndpointT], EndpointT]:
    """Cache a route's responses; place it directly under the route decorator.

    The endpoint is wrapped (its signature is kept, so the framework injects the same
    parameters) and marked with its `RouteOptions`, which the adapter finds through the
    matched route. See `RouteOptions` for what each option does. Decorators placed
    above `@cached` run on hits too; they must keep the wrapper visible
    (`functools.wraps`).

    Raises:
        ConfigurationError: an option is out of range.
    """
    for name, names in (("vary_on", vary_on), ("vary_on_cookies", vary_on_cookies), ("tags", tags)):
        if isinstance(names, (str, bytes)):  # it would be one name per character
            msg = f"{name} takes a list of names, e.g. {name}=[{names!r}], not a string"
            raise ConfigurationError(msg)
    options = RouteOptions(
        ttl=None if ttl is None else as_seconds(ttl),
        namespace=namespace,
        vary_on=tuple(vary_on),
        vary_on_cookies=tuple(vary_on_cookies),
        public=public,
        sort_query=sort_query,
        tags=tags if callable(tags) else tuple(tags),
        stale_ttl=as_seconds(stale_ttl),
        stale_if_error=as_seconds(stale_if_error),
        no_cache=no_cache,
        min_refresh_interval=as_seconds(min_refresh_interval),
        cache_control=cache_control,
        statuses=frozenset(statuses),
        max_body_size=max_body_size,
        per_request_headers=None if per_request_headers is None else tuple(per_request_headers),
        key=key,
        refresh_ahead=refresh_ahead,
        refresh_idle=None if refresh_idle is None else as_seconds(refresh_idle),
    )

    def wrap(endpoint: EndpointT) -> EndpointT:
        return _wrap_endpoint(endpoint, options)

    return wrap


def _wrap_endpoint(endpoint: EndpointT, options: RouteOptions) -> EndpointT:
    """The `@cached` wrapper of `endpoint`: it opens the gate of `options` (`Gate`)."""
    if not inspect.isroutine(endpoint) and not isinstance(endpoint, functools.partial):
        msg = (
            f"@cached wraps a route's endpoint function, got {type(endpoint).__name__}: "
            "place @cached directly below the route decorator (@app.get(...), @get(...)), "
            "not above it"
        )
        raise ConfigurationError(msg)
    wrapper: Callable[..., Any]
    if inspect.iscoroutinefunction(endpoint):

        @functools.wraps(endpoint)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            gate = GATE.get()
            if gate is None or gate.options is not options:
                _warn_unserved(endpoint)
            elif (opened := gate.open(options)) is not None:
                return opened
            return await endpoint(*args, **kwargs)

    else:

        @functools.wraps(endpoint)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            gate = GATE.get()
            if gate is None or gate.options is not options:
                _warn_unserved(endpoint)
            elif (opened := gate.open(options)) is not None:
                return opened
            return endpoint(*args, **kwargs)

    setattr(wrapper, _OPTIONS_ATTRIBUTE, (options, wrapper))
    with contextlib.suppress(TypeError):  # not weakly referable: not checked at startup
        _UNDERNEATH[endpoint] = options
    return wrapper  # type: ignore[return-value]


def _warn_unserved(endpoint: Callable[..., Any]) -> None:
    """Say that a `@cached` endpoint ran outside any adapter's HTTP flow."""
    name = getattr(endpoint, "__qualname__", repr(endpoint))
    msg = (
        f"the @cached endpoint {name} ran without the cache: give its app the cache "
        "(setup_cache(app, cache) for FastAPI, plugins=[AtomCachePlugin(cache)] for "
        "Litestar); to cache a function that is not a route, use atomcache_core.cached "
        "or Cache.cached"
    )
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


def misplaced(endpoint: object) -> bool:
    """Whether `endpoint` was wrapped by `@cached` but a route serves it unwrapped.

    That is `@cached` placed above the route decorator: the route holds the function
    itself, so its responses would never be cached. Adapters raise at startup.
    """
    try:
        return endpoint in _UNDERNEATH and find_cached(endpoint) is None
    except TypeError:  # not hashable, not weakly referable: never wrapped
        return False


def refuse_websocket(endpoint: object, template: str) -> None:
    """Raise `ConfigurationError` for a `@cached` websocket endpoint; adapters call it at startup.

    `@cached` stores HTTP responses: a websocket has none to store.
    """
    if find_cached(endpoint) is not None:
        msg = (
            f"@cached is on the websocket route {template!r}: it caches HTTP responses, and a "
            "websocket has none; remove it (cache values the socket sends with Cache.get_or_set)"
        )
        raise ConfigurationError(msg)


def refuse_misplaced(endpoint: object, template: str) -> None:
    """Raise `ConfigurationError` when `misplaced(endpoint)`; adapters call it at startup."""
    if misplaced(endpoint):
        msg = (
            f"@cached is above the route decorator of {template!r}: the route serves the "
            "function unwrapped and nothing would be cached; place @cached directly below "
            "@app.get(...) / @get(...)"
        )
        raise ConfigurationError(msg)


def find_cached(endpoint: object) -> tuple[RouteOptions, bool] | None:
    """The options of a `@cached` endpoint, and whether something wraps it.

    Follows `__wrapped__` through decorators placed above `@cached`. Returns `None`
    if `endpoint` is not cached, else `(options, decorated)`: `decorated` is `True`
    when `endpoint` is not the `@cached` wrapper itself (something runs before it).
    A bound method (a Litestar `Controller`'s handler, a class-based view's) stands
    for its function: binding runs nothing before it.
    """
    if inspect.ismethod(endpoint):
        endpoint = endpoint.__func__
    current, seen = endpoint, 0
    while current is not None and seen < 100:  # noqa: PLR2004 - a bound, not a rule
        marked = getattr(current, "__dict__", {}).get(_OPTIONS_ATTRIBUTE)
        if isinstance(marked, tuple) and len(marked) == 2:  # noqa: PLR2004 - (options, wrapper)
            options, wrapper = marked
            if isinstance(options, RouteOptions):
                return options, endpoint is not wrapper
        current, seen = getattr(current, "__wrapped__", None), seen + 1
    return None


def route_options(endpoint: object) -> RouteOptions | None:
    """The options `cached` marked an endpoint with, or `None` if it is not cached."""
    found = find_cached(endpoint)
    return found[0] if found is not None else None
