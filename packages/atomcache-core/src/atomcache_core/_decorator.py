"""`Cache.cached`: a decorator that builds the key from the call and uses `get_or_set`."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import json
import types
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

from typing_extensions import ParamSpec

from atomcache_core.exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Mapping

    from atomcache_core._seconds import Seconds

__all__ = ["CachingDecorator", "ParamsT", "ResultT", "cached_function", "call_key"]

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
    return f"{name}:{_encoded(forms)}"


def _encoded(forms: Mapping[str, object]) -> str:
    """Key forms by name as compact JSON, names sorted."""
    return json.dumps(forms, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


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
    members sorted by their own form, so order never matters; dataclasses, attrs
    classes and pydantic models become `["fields", "<module>.<qualified type name>",
    [name, value], ..., extra]`, every field by name (those their `repr` leaves out
    too) and `extra` the form of a pydantic model's extra fields (`None` for others);
    any other object (subclasses of the above, enums, `Decimal`, dates, `bytes`...)
    becomes `["repr", "<module>.<qualified type name>", repr(value)]`: objects of one
    type must have a `repr` that tells them apart, as the standard library's do.

    Raises:
        _UnkeyableArgumentError: a `repr` holds a memory address (` at 0x`, as
            `object.__repr__` and functions write it), `value` contains itself, or
            a field of it is not set.
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
    names = _field_names(kind)
    if names is not None:
        return _fields_form(value, kind, names, inside)
    if kind.__repr__ is object.__repr__:
        reason = f"is a {kind.__qualname__} object without a stable repr"
        raise _UnkeyableArgumentError(reason)
    text = repr(value)
    if _ADDRESS in text:
        raise _UnkeyableArgumentError("has a memory address in its repr")
    return ["repr", f"{kind.__module__}.{kind.__qualname__}", text]


_ADDRESS = " at 0x"


def _fields_form(
    value: object, kind: type, names: tuple[str, ...], inside: frozenset[int]
) -> list[object]:
    """`key_form` of a dataclass, attrs instance or pydantic model: every field by name."""
    members: list[object] = ["fields", f"{kind.__module__}.{kind.__qualname__}"]
    for name in names:
        try:
            member = getattr(value, name)
        except AttributeError:
            raise _UnkeyableArgumentError(f"has no value for its field {name!r}") from None
        members.append([name, key_form(member, inside)])
    extra = getattr(value, "__pydantic_extra__", None)
    members.append(key_form(extra, inside) if extra else None)
    return members


def _find_field_names(kind: type) -> tuple[str, ...] | None:
    """The declared fields of a dataclass, attrs class or pydantic model; else `None`.

    Their `repr` may leave fields out (`field(repr=False)`), so they are keyed by
    fields, not by `repr`.
    """
    if dataclasses.is_dataclass(kind):
        return tuple(declared.name for declared in dataclasses.fields(kind))
    if (attributes := getattr(kind, "__attrs_attrs__", None)) is not None:
        return tuple(attribute.name for attribute in attributes)
    if isinstance(model_fields := getattr(kind, "__pydantic_fields__", None), dict):
        return tuple(model_fields)
    return None


#: `_find_field_names`, remembered for the last 1,024 classes met.
_field_names: Callable[[type], tuple[str, ...] | None] = functools.lru_cache(maxsize=1024)(
    _find_field_names
)


def captured_form(func: Callable[..., Any], exclude: tuple[str, ...] = ()) -> str:
    """What a closure captured, when decorated, as JSON for its key; `""` for no closure.

    Closures made by one factory share a module and qualified name
    (`make_fetcher.<locals>.fetch`); what tells them apart is the variables they
    captured, so each one not in `exclude` is keyed by its value when the function
    is decorated (`key_form`; a captured function by its name and its own captures).
    A method's `__class__` cell (made by `super()`) is left out.

    Raises:
        ConfigurationError: a captured variable has no stable key form (a client, a
            bound method) or is not assigned yet; the message names it and the fixes
            (`exclude=` or `key=`).
    """
    return _captured_form(func, exclude, frozenset())


def _captured_form(func: object, exclude: tuple[str, ...], inside: frozenset[int]) -> str:
    code = getattr(func, "__code__", None)
    cells = getattr(func, "__closure__", None)
    if code is None or not cells:
        return ""
    name = f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', '')}"
    forms: dict[str, object] = {}
    for variable, cell in zip(code.co_freevars, cells, strict=True):
        if variable == "__class__" or variable in exclude:
            continue
        try:
            value = cell.cell_contents
            forms[variable] = _captured_value_form(value, inside | {id(func)})
        except ValueError:
            reason = "is not assigned yet when the function is decorated"
            raise _unkeyable_capture(name, variable, reason) from None
        except _UnkeyableArgumentError as exc:
            raise _unkeyable_capture(name, variable, exc.reason) from None
    return _encoded(forms) if forms else ""


def _captured_value_form(value: object, inside: frozenset[int]) -> object:
    """`key_form(value)`; a function is keyed by its name and its own captures."""
    if not isinstance(value, types.FunctionType):
        return key_form(value)
    if id(value) in inside:
        msg = "is the function itself, or captures it"
        raise _UnkeyableArgumentError(msg)
    name = f"{value.__module__}.{value.__qualname__}"
    return ["function", name, _captured_form(value, (), inside)]


def _unkeyable_capture(name: str, variable: str, reason: str) -> ConfigurationError:
    msg = (
        f"cannot build a cache key for {name}(): it captures {variable!r}, which {reason}; "
        f"leave it out with exclude=({variable!r},) if the results do not depend on it, "
        "or pass key=lambda *args, **kwargs: ..."
    )
    return ConfigurationError(msg)


def _sort_key(form: object) -> str:
    return json.dumps(form, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class _UnkeyableArgumentError(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


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
        signature = inspect.signature(func)
        code = getattr(func, "__code__", None)
        free = set(code.co_freevars) if code is not None else set()
        unknown = set(exclude) - set(signature.parameters) - free
        if unknown:
            msg = (
                f"exclude names {sorted(unknown)} that {func.__qualname__}() neither takes "
                "nor captures"
            )
            raise ConfigurationError(msg)
        name = f"{func.__module__}.{func.__qualname__}"
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
