"""`Cache.cached`: a decorator that builds the key from the call and uses `get_or_set`."""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

from typing_extensions import ParamSpec

from atomcache_core._call_keys import call_key, captured_form, captured_names, name_of
from atomcache_core.exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from atomcache_core._seconds import Seconds

__all__ = ["CachingDecorator", "ParamsT", "ResultT", "cached_function"]

ParamsT = ParamSpec("ParamsT")
ResultT = TypeVar("ResultT")


class CachingDecorator(Protocol):
    """What `Cache.cached(...)` and `atomcache_core.cached(...)` return.

    The decorated function keeps its parameters and becomes a coroutine function
    whatever it was: `async def f(...) -> T` and `def f(...) -> T` (run in a worker
    thread) both give `f(...)` a `Coroutine[Any, Any, T]`, which `asyncio.run`,
    `asyncio.create_task` and `TaskGroup.create_task` take.
    """

    @overload
    def __call__(
        self, func: Callable[ParamsT, Awaitable[ResultT]], /
    ) -> Callable[ParamsT, Coroutine[Any, Any, ResultT]]: ...

    @overload
    def __call__(
        self, func: Callable[ParamsT, ResultT], /
    ) -> Callable[ParamsT, Coroutine[Any, Any, ResultT]]: ...


def cached_function(
    get_or_set: Callable[..., Awaitable[Any]],
    *,
    ttl: Seconds | None,
    key: Callable[..., str] | None,
    exclude: tuple[str, ...],
    tags: tuple[str, ...],
    **settings: Any,
) -> CachingDecorator:
    """The decorator behind `Cache.cached`; `settings` go to `get_or_set` as they are.

    `get_or_set` is the cache's (`Cache.get_or_set`): this module knows nothing else of it.
    """

    def decorate(func: Callable[ParamsT, Any]) -> Callable[ParamsT, Coroutine[Any, Any, Any]]:
        name = name_of(func)
        signature = inspect.signature(func)
        unknown = set(exclude) - set(signature.parameters) - captured_names(func)
        if unknown:
            msg = f"exclude names {sorted(unknown)} that {name}() neither takes nor captures"
            raise ConfigurationError(msg)
        if key is None:
            name += captured_form(func, exclude)
        # A plain `def` is declared blocking: it runs in a worker thread, so it cannot
        # stall the event loop (nor, with it, the lock's extension).
        call: Callable[..., Any] = (
            func
            if inspect.iscoroutinefunction(func)
            else functools.partial(asyncio.to_thread, func)
        )

        @functools.wraps(func)
        async def wrapper(*args: ParamsT.args, **kwargs: ParamsT.kwargs) -> Any:
            if key is not None:
                cache_key = key(*args, **kwargs)
            else:
                cache_key = call_key(name, signature, args, kwargs, exclude)
            return await get_or_set(
                cache_key,
                functools.partial(call, *args, **kwargs),
                ttl,
                tags,
                **settings,
            )

        return wrapper

    return decorate
