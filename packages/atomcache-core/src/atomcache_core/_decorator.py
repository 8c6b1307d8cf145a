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

    from atomcache_core._seconds import Seconds
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
    keyword spellings of the same call share a key, then written as JSON (names
    sorted) by `key_form`, which is one-to-one: two different argument lists never
    share a key, and equal dicts or sets share one whatever their order.

    Raises:
        ConfigurationError: an argument has no stable key form (its `repr`, or the
            `repr` of something inside it, holds a memory address, or it contains
            itself); the message names it and the fix (`exclude=` or `key=`).
    """
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    forms = {
        parameter: _parameter_form(name, parameter, value)
        for parameter, value in bound.arguments.items()
        if parameter not in exclude
    }
    encoded = json.dumps(forms, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{name}:{encoded}"


def _parameter_form(name: str, parameter: str, value: object) -> object:
    """`key_form(value)`; `ConfigurationError` naming the parameter and the fix if none."""
    try:
        return key_form(value)
    except _UnkeyableArgumentError as exc:
        msg = (
            f"cannot build a cache key for {name}(): {parameter!r} {exc.reason}; leave it "
            f"out with exclude=({parameter!r},) or pass key=lambda *args, **kwargs: ..."
        )
        raise ConfigurationError(msg) from None


#: Types written as themselves in a key: JSON tells each of them from the others
#: (`1`, `1.0`, `true`, `"1"`, `null`).
_NATIVE = (str, int, float, bool, type(None))
#: Containers written as `[tag, ...members]`; a JSON array in a key is always one of
#: these or an object's `["repr", type, repr]`, so no two forms can be confused.
_CONTAINERS: dict[type, str] = {
    list: "list",
    tuple: "tuple",
    dict: "dict",
    set: "set",
    frozenset: "frozenset",
}


def key_form(value: object, _inside: frozenset[int] = frozenset()) -> object:
    """The JSON-ready form of `value` in a key, one-to-one with the value.

    `str`, `int`, `float`, `bool` and `None` (their exact types) are themselves;
    lists and tuples become `["list", ...]` / `["tuple", ...]`; dicts become
    `["dict", [key, value], ...]` and sets `["set", ...]` / `["frozenset", ...]`,
    members sorted by their own form, so order never matters; any other object
    (subclasses of the above, enums, `Decimal`, dates, `bytes`, dataclasses...) becomes
    `["repr", "<module>.<qualified type name>", repr(value)]`: objects of one type must
    have a `repr` that tells them apart, as the standard library's do.

    Raises:
        _UnkeyableArgumentError: a `repr` holds a memory address (` at 0x`, as
            `object.__repr__` and functions write it), or `value` contains itself.
    """
    kind = type(value)
    if kind in _NATIVE:
        return value
    if id(value) in _inside:
        raise _UnkeyableArgumentError("contains itself")
    inside = _inside | {id(value)}
    tag = _CONTAINERS.get(kind)
    if isinstance(value, dict) and tag:
        pairs = [[key_form(k, inside), key_form(v, inside)] for k, v in value.items()]
        return [tag, *sorted(pairs, key=_sort_key)]
    if isinstance(value, (set, frozenset)) and tag:
        return [tag, *sorted((key_form(member, inside) for member in value), key=_sort_key)]
    if isinstance(value, (list, tuple)) and tag:
        return [tag, *(key_form(member, inside) for member in value)]
    if kind.__repr__ is object.__repr__:
        reason = f"is a {kind.__qualname__} object without a stable repr"
        raise _UnkeyableArgumentError(reason)
    text = repr(value)
    if _ADDRESS in text:
        raise _UnkeyableArgumentError("has a memory address in its repr")
    return ["repr", f"{kind.__module__}.{kind.__qualname__}", text]


_ADDRESS = " at 0x"


def _sort_key(form: object) -> str:
    return json.dumps(form, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class _UnkeyableArgumentError(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


def cached_function(
    cache: Cache,
    *,
    ttl: Seconds | None,
    key: Callable[..., str] | None,
    exclude: tuple[str, ...],
    tags: tuple[str, ...],
    **settings: Any,
) -> Callable[[Callable[ParamsT, Awaitable[ResultT]]], Callable[ParamsT, Awaitable[ResultT]]]:
    """The decorator behind `Cache.cached`; `settings` go to `get_or_set` as they are."""

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
                **settings,
            )
            return result

        return wrapper

    return decorate
