"""A process-wide default cache, and the `cached` decorator that uses it (aiocache's way).

`@atomcache_core.cached(ttl=10)` works in a script with no set-up: the first call makes
an in-memory `Cache()`. `configure_default(Cache.from_url(...))` switches every such
decorator, made before or after, to that cache (aiocache's `config_default_cache`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from atomcache_core._checks import checked_names
from atomcache_core.cache import Cache

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterable

    from atomcache_core._decorator import CachingDecorator, ParamsT
    from atomcache_core._seconds import Seconds

__all__ = ["cached", "configure_default", "default_cache"]

_default: list[Cache] = []  # at most one: the default cache, once made or configured


def default_cache() -> Cache:
    """The default cache: the one `configure_default` set, else an in-memory `Cache()`.

    The in-memory cache is made on first use and kept for the process.
    """
    if not _default:
        _default.append(Cache())
    return _default[0]


def configure_default(cache: Cache) -> Cache:
    """Make `cache` the default of `atomcache_core.cached`; return the previous default.

    Decorators made before the call use `cache` from their next call on. The previous
    default is not closed: close it if nothing else uses it.

    Raises:
        TypeError: `cache` is not a `Cache`.
    """
    if not isinstance(cache, Cache):
        msg = f"configure_default takes a Cache, e.g. Cache.from_url(...), got {cache!r}"  # type: ignore[unreachable]
        raise TypeError(msg)
    previous = default_cache()
    _default[:] = [cache]
    return previous


def cached(
    ttl: Seconds | None = None,
    *,
    key: Callable[..., str] | None = None,
    exclude: Iterable[str] = (),
    tags: Iterable[str] = (),
    stale_ttl: Seconds = 0.0,
    stale_if_error: Seconds = 0.0,
    beta: float = 0.0,
    refresh_ahead: bool = False,
    refresh_idle: float | None = None,
    version: int | None = None,
) -> CachingDecorator:
    """`Cache.cached` on the default cache (`default_cache`), found at each call.

    The arguments are `Cache.cached`'s; they are checked when the function is
    decorated.

    Raises:
        ConfigurationError: an argument is invalid (e.g. `exclude` names a parameter the
            function does not take).
    """
    settings: dict[str, Any] = {
        "key": key,
        "exclude": checked_names(exclude, "exclude"),
        "tags": checked_names(tags, "tags"),
        "stale_ttl": stale_ttl,
        "stale_if_error": stale_if_error,
        "beta": beta,
        "refresh_ahead": refresh_ahead,
        "refresh_idle": refresh_idle,
        "version": version,
    }

    def decorate(func: Callable[ParamsT, Any]) -> Callable[ParamsT, Coroutine[Any, Any, Any]]:
        def on(cache: Cache) -> tuple[Cache, Callable[ParamsT, Coroutine[Any, Any, Any]]]:
            return cache, cache.cached(ttl, **settings)(func)

        current = [on(default_cache())]  # checks the arguments now

        @functools.wraps(func)
        async def wrapper(*args: ParamsT.args, **kwargs: ParamsT.kwargs) -> Any:
            cache = default_cache()
            if current[0][0] is not cache:
                current[0] = on(cache)
            return await current[0][1](*args, **kwargs)

        return wrapper

    return decorate
