"""The key of a call of a `@cached` function: its name, what it captured, its arguments.

Two calls that may return different values never share a key (docs/single-flight.md,
"The decorator's key"): arguments are keyed by value (`key_form`), one-to-one; a
function made by another (a closure, a bound method, a wrapper) also by what it holds
(`captured_form`); what has no stable form is refused with the fix (`exclude=`, `key=`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import re
import types
from typing import TYPE_CHECKING, Any

from atomcache_core.exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

__all__ = ["call_key", "captured_form", "captured_names", "key_form", "name_of"]


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


def _encoded(forms: object) -> str:
    """Key forms as compact JSON, names sorted."""
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
#: these or one of the tagged forms of `key_form`, so no two forms can be confused.
_CONTAINERS: dict[type, str] = {
    list: "list",
    tuple: "tuple",
    dict: "dict",
    set: "set",
    frozenset: "frozenset",
}
#: A memory address as `object.__repr__` and functions write it: `<... at 0x7f...>`
#: (names inside may hold `<locals>` or `<lambda>`).
_ADDRESS = re.compile(r"<[^<>]*(?:<[^<>]*>[^<>]*)* at 0x[0-9a-fA-F]+>")


def key_form(value: object, _inside: frozenset[int] = frozenset()) -> object:  # noqa: PLR0911 - one return per kind of value
    """The JSON-ready form of `value` in a key, one-to-one with the value.

    `str`, `int`, `float`, `bool` and `None` (their exact types) are themselves;
    lists and tuples become `["list", ...]` / `["tuple", ...]`; dicts become
    `["dict", [key, value], ...]` and sets `["set", ...]` / `["frozenset", ...]`,
    members sorted by their own form, so order never matters; `bytes` become
    `["bytes", hex]`; a compiled pattern `["pattern", pattern, flags]`; a class
    `["type", "<module>.<qualified name>"]`; dataclasses, attrs classes and pydantic
    models become `["fields", "<module>.<qualified type name>", [name, value], ...,
    extra]`, every field by name (those their `repr` leaves out too) and `extra` the
    form of a pydantic model's extra and private attributes (`None` for others), and
    an instance of a subclass of one that declares no fields of its own `["attributes",
    type, form of its __dict__]`; any other object (subclasses of the above, enums,
    `Decimal`, dates, paths...) becomes `["repr", "<module>.<qualified type name>",
    repr(value)]`: objects of one type must have a `repr` that tells them apart, as
    the standard library's do.

    Raises:
        _UnkeyableArgumentError: a `repr` holds a memory address (`<... at 0x...>`, as
            `object.__repr__` and functions write it), `value` contains itself, a field
            of it is not set, or its class is defined inside a function (classes made
            by one function share their name).
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
        return [tag, *sorted(pairs, key=_encoded)]
    if isinstance(value, (set, frozenset)) and tag:
        return [tag, *sorted((key_form(member, inside) for member in value), key=_encoded)]
    if isinstance(value, (list, tuple)) and tag:
        return [tag, *(key_form(member, inside) for member in value)]
    if kind is bytes:
        return ["bytes", value.hex()]  # type: ignore[attr-defined]
    if isinstance(value, re.Pattern):  # its repr stops at 200 characters
        return ["pattern", key_form(value.pattern, inside), value.flags]
    if isinstance(value, type):
        return ["type", _type_name(value)]
    return _object_form(value, kind, inside)


def _object_form(value: object, kind: type[object], inside: frozenset[int]) -> object:
    """`key_form` of an object that is not a built-in value: by fields, else by `repr`."""
    name = _type_name(kind)
    fields = _field_names(kind)
    if fields is not None:
        return _fields_form(value, name, fields, inside)
    if _declares_fields_above(kind):  # a plain subclass adding state of its own
        attributes = getattr(value, "__dict__", None)
        if attributes is None:
            reason = f"is a {kind.__qualname__} object whose fields its class does not declare"
            raise _UnkeyableArgumentError(reason)
        return ["attributes", name, key_form(dict(attributes), inside)]
    if kind.__repr__ is object.__repr__:
        reason = f"is a {kind.__qualname__} object without a stable repr"
        raise _UnkeyableArgumentError(reason)
    text = repr(value)
    if _ADDRESS.search(text):
        raise _UnkeyableArgumentError("has a memory address in its repr")
    return ["repr", name, text]


def _type_name(kind: type) -> str:
    """`<module>.<qualified name>`; refused for a class defined inside a function."""
    if "<locals>" in kind.__qualname__:
        reason = (
            f"is of, or is, a class defined inside a function ({kind.__qualname__}): "
            "classes made by one function share their name; define it at module level"
        )
        raise _UnkeyableArgumentError(reason)
    return f"{kind.__module__}.{kind.__qualname__}"


def _fields_form(
    value: object, name: str, fields: tuple[str, ...], inside: frozenset[int]
) -> list[object]:
    """`key_form` of a dataclass, attrs instance or pydantic model: every field by name."""
    members: list[object] = ["fields", name]
    for field in fields:
        try:
            member = getattr(value, field)
        except AttributeError:
            raise _UnkeyableArgumentError(f"has no value for its field {field!r}") from None
        members.append([field, key_form(member, inside)])
    extra = getattr(value, "__pydantic_extra__", None) or None
    private = getattr(value, "__pydantic_private__", None) or None
    members.append(None if extra is None and private is None else key_form([extra, private]))
    return members


def _find_field_names(kind: type) -> tuple[str, ...] | None:
    """The fields a dataclass, attrs class or pydantic model declares itself; else `None`.

    Their `repr` may leave fields out (`field(repr=False)`), so they are keyed by
    fields, not by `repr`. A subclass that does not declare its own (a plain class
    deriving from a dataclass) may hold more state: `None` for it.
    """
    own = vars(kind)
    if "__dataclass_fields__" in own and dataclasses.is_dataclass(kind):
        return tuple(declared.name for declared in dataclasses.fields(kind))
    if "__attrs_attrs__" in own:
        return tuple(attribute.name for attribute in own["__attrs_attrs__"])
    if isinstance(model_fields := own.get("__pydantic_fields__"), dict):
        return tuple(model_fields)
    return None


#: `_find_field_names`, remembered for the last 1,024 classes met.
_field_names: Callable[[type], tuple[str, ...] | None] = functools.lru_cache(maxsize=1024)(
    _find_field_names
)


def _declares_fields_above(kind: type) -> bool:
    """Whether a base class of `kind` is a dataclass, attrs class or pydantic model."""
    return any(_field_names(base) is not None for base in kind.__mro__[1:])


def name_of(func: object) -> str:
    """`<module>.<qualified name>` of a decorated callable (a partial: of its function).

    Raises:
        ConfigurationError: `func` is not a function (a callable object, a classmethod).
    """
    target = func.func if isinstance(func, functools.partial) else func
    module, qualname = getattr(target, "__module__", None), getattr(target, "__qualname__", None)
    if not isinstance(qualname, str) or not callable(target):
        msg = (
            f"@cached decorates functions and methods, got {func!r}: put @cached below "
            "@classmethod or @staticmethod, or decorate a callable object's __call__"
        )
        raise ConfigurationError(msg)
    return f"{module}.{qualname}"


def _layers(func: object) -> Iterator[object]:
    """`func`, then each callable it wraps (`__wrapped__`, a partial's or method's function)."""
    seen: set[int] = set()
    current: object | None = func
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        if isinstance(current, functools.partial):
            current = current.func
        elif inspect.ismethod(current):
            current = current.__func__
        else:
            current = getattr(current, "__wrapped__", None)


def captured_names(func: object, _seen: frozenset[int] = frozenset()) -> set[str]:
    """Every name `exclude=` may name besides parameters, at any depth.

    The variables captured by the function, the functions it wraps and those they
    capture (each function once: two may capture each other), and `self` for a bound
    method.
    """
    names: set[str] = set()
    for layer in _layers(func):
        if inspect.ismethod(layer):
            names.add("self")
        for variable, value in _cells(layer):
            names.add(variable)
            if isinstance(value, types.FunctionType) and id(value) not in _seen:
                names |= captured_names(value, _seen | {id(layer), id(value)})
    return names


def captured_form(func: object, exclude: tuple[str, ...] = ()) -> str:
    """What a function holds besides its arguments, as JSON for its key; `""` if nothing.

    Functions made by one factory share a module and qualified name
    (`make_fetcher.<locals>.fetch`); what tells them apart is what they hold, keyed by
    its value when the function is decorated: the variables a closure captured (a
    captured function by its name, its code, its defaults and its own captures), the
    instance of a bound method (`self`), a partial's arguments, and so on down the
    functions it wraps (`__wrapped__`). Names in `exclude` are left out, at any depth.
    A method's `__class__` cell (made by `super()`) is left out.

    Raises:
        ConfigurationError: something held has no stable key form (a client, a lock)
            or is not assigned yet; the message names it and the fixes (`exclude=` or
            `key=`).
    """
    name = name_of(func)
    try:
        forms = [form for layer in _layers(func) if (form := _held(layer, exclude, (), _NONE))]
    except _UnkeyableCaptureError as exc:
        raise exc.error(name) from None
    return _encoded(forms) if forms else ""


def _cells(func: object) -> list[tuple[str, object]]:
    """A function's captured variables and their values (`_UNASSIGNED` if none yet).

    Only a function's own: a bound method shows its function's cells too, and that
    function is the next layer (`_layers`).
    """
    if not isinstance(func, types.FunctionType):
        return []
    cells = func.__closure__ or ()
    return [
        (variable, _contents(cell))
        for variable, cell in zip(func.__code__.co_freevars, cells, strict=True)
    ]


def _contents(cell: types.CellType) -> object:
    """What a closure's cell holds; `_UNASSIGNED` while its variable is not assigned."""
    try:
        return cell.cell_contents
    except ValueError:
        return _UNASSIGNED


def _held(
    layer: object, exclude: tuple[str, ...], path: tuple[str, ...], inside: frozenset[int]
) -> dict[str, object]:
    """The forms of what one layer holds, by name (`self`, `args`, captured variables)."""
    forms: dict[str, object] = {}
    if isinstance(layer, functools.partial):
        partial_held: dict[str, object] = {"args": layer.args, "keywords": layer.keywords}
        for variable, value in partial_held.items():
            forms[variable] = _held_form(value, (*path, variable), exclude, inside)
    elif inspect.ismethod(layer) and "self" not in exclude:
        forms["self"] = _held_form(layer.__self__, (*path, "self"), exclude, inside)
    for variable, value in _cells(layer):
        if variable == "__class__" or variable in exclude:
            continue
        forms[variable] = _held_form(value, (*path, variable), exclude, inside | {id(layer)})
    return forms


def _held_form(
    value: object, path: tuple[str, ...], exclude: tuple[str, ...], inside: frozenset[int]
) -> object:
    """`key_form(value)`; a function by its name, code, defaults and own captures."""
    if value is _UNASSIGNED:
        raise _unkeyable_capture(path, "is not assigned yet when the function is decorated")
    if not isinstance(value, types.FunctionType):
        try:
            return key_form(value)
        except _UnkeyableArgumentError as exc:
            raise _unkeyable_capture(path, exc.reason) from None
    if id(value) in inside:
        return ["function", path[-1], "itself"]  # recursion: already keyed above
    defaults = [value.__defaults__, value.__kwdefaults__]
    try:
        defaults_form = key_form(defaults)
    except _UnkeyableArgumentError as exc:
        raise _unkeyable_capture(path, f"has a default value that {exc.reason}") from None
    return [
        "function",
        f"{value.__module__}.{value.__qualname__}",
        _code_digest(value.__code__),
        defaults_form,
        _held(value, exclude, path, inside | {id(value)}),
    ]


def _code_digest(code: types.CodeType) -> str:
    """A digest of what a code object does: its bytecode, names and constants."""
    digest = hashlib.sha256(code.co_code)
    digest.update(repr((code.co_names, code.co_varnames, code.co_freevars)).encode())
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            digest.update(_code_digest(constant).encode())
        elif isinstance(constant, frozenset):  # its order varies with the hash seed
            digest.update(repr(sorted(map(repr, constant))).encode())
        else:
            digest.update(repr(constant).encode())
    return digest.hexdigest()[:16]


def _unkeyable_capture(path: tuple[str, ...], reason: str) -> _UnkeyableCaptureError:
    return _UnkeyableCaptureError(path, reason)


class _UnkeyableCaptureError(Exception):
    """Something a function holds has no key form: `path` leads to it from the function."""

    def __init__(self, path: tuple[str, ...], reason: str) -> None:
        self.path = path
        self.reason = reason

    def error(self, name: str) -> ConfigurationError:
        held = ", which captures ".join(repr(variable) for variable in self.path)
        culprit = self.path[-1]
        msg = (
            f"cannot build a cache key for {name}(): it captures {held}, which "
            f"{self.reason}; leave it out with exclude=({culprit!r},) if the results do "
            "not depend on it, or pass key=lambda *args, **kwargs: ..."
        )
        return ConfigurationError(msg)


class _UnkeyableArgumentError(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


_UNASSIGNED: Any = object()
_NONE: frozenset[int] = frozenset()
