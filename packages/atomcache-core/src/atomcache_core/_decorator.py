"""`Cache.cached`: a decorator that builds the key from the call and uses `get_or_set`."""

from __future__ import annotations

import functools
import inspect
import json
from typing import TYPE_CHECKING, Any, TypeVar

from typing_extensions import ParamSpec

from atomcache_core.exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from atomcache_core.cache import Cache

__all__ = ["ParamsT", "ResultT", "cached_function", "call_key"]

ParamsT = ParamSpec("ParamsT")
ResultT = TypeVar("ResultT")


def call_key(
    name: str, signature: inspect.Signature, args: tuple[Any, ...], kwargs: Mapping[str, Any],
    exclude: tuple[str, ...],
) -> str:  # fmt: skip
    """The cache key of one call: the function's name and its arguments, by name.

    Arguments are bound to the signature with defaults applied, so positional and
    keyword spellings of the same call share a key, then JSON-encoded with sorted
    names. Values JSON cannot encode use their `repr`, except objects whose `repr`
    is the default one (it holds a memory address, so no two processes would agree).

    Raises:
        ConfigurationError: an argument has no stable key form.
    """
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    arguments = {key: value for key, value in bound.arguments.items() if key not in exclude}
    try:
        encoded = json.dumps(
            arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_key_part
        )
    except _UnstableArgumentError as exc:
        parameter = next(
            (key for key, value in arguments.items() if value is exc.value), "an argument"
        )
        msg = (
            f"cannot build a cache key for {name}(): {parameter!r} is a "
            f"{type(exc.value).__qualname__} without a stable repr; leave it out with "
            f"exclude=({parameter!r},) or pass key=lambda *args, **kwargs: ..."
        )
        raise ConfigurationError(msg) from None
    return f"{name}:{encoded}"


class _UnstableArgumentError(Exception):
    def __init__(self, value: object) -> None:
        self.value = value


def _key_part(value: object) -> object:
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if type(value).__repr__ is object.__repr__:
        raise _UnstableArgumentError(value)
    return repr(value)


def cached_function(
    cache: Cache,
    *,
    ttl: float | None,
    key: Callable[..., str] | None,
    exclude: tuple[str, ...],
    tags: tuple[str, ...],
    stale_ttl: float,
    stale_if_error: float,
    beta: float,
) -> Callable[[Callable[ParamsT, Awaitable[ResultT]]], Callable[ParamsT, Awaitable[ResultT]]]:
    """The decorator behind `Cache.cached`."""

    def decorate(
        func: Callable[ParamsT, Awaitable[ResultT]],
    ) -> Callable[ParamsT, Awaitable[ResultT]]:
        signature = inspect.signature(func)
        unknown = set(exclude) - set(signature.parameters)
        if unknown:
            msg = f"exclude names {sorted(unknown)} that {func.__qualname__}() does not take"
            raise ConfigurationError(msg)
        name = f"{func.__module__}.{func.__qualname__}"

        @functools.wraps(func)
        async def wrapper(*args: ParamsT.args, **kwargs: ParamsT.kwargs) -> ResultT:
            if key is not None:
                cache_key = key(*args, **kwargs)
            else:
                cache_key = call_key(name, signature, args, kwargs, exclude)
            result: ResultT = await cache.get_or_set(
                cache_key,
                functools.partial(func, *args, **kwargs),
                ttl,
                tags,
                stale_ttl=stale_ttl,
                stale_if_error=stale_if_error,
                beta=beta,
            )
            return result

        return wrapper

    return decorate
