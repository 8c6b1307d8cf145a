"""`@cache.cached`: keys from the call, arguments left out or keys chosen by hand."""

from __future__ import annotations

import functools
import re
import threading
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any

import attrs
import pytest
from pydantic import BaseModel, Field, PrivateAttr

import atomcache_core
from atomcache_core import Cache, ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


class Color(Enum):
    """An enum argument."""

    RED = 1


@dataclass
class Point:
    """An argument with a stable repr."""

    x: int
    y: int


async def test_same_arguments_share_an_entry(cache: Cache) -> None:
    """f(1), f(x=1) and f(1, y=2) (the default) are one entry; f(2) is another."""
    calls: list[tuple[int, int]] = []

    @cache.cached(ttl=60)
    async def add(x: int, y: int = 2) -> int:
        calls.append((x, y))
        return x + y

    assert await add(1) == 3
    assert await add(x=1) == 3
    assert await add(1, y=2) == 3
    assert await add(2) == 4
    assert calls == [(1, 2), (2, 2)]


async def test_key_names_the_function(cache: Cache) -> None:
    """The entry is stored under the module, qualified name and arguments."""

    @cache.cached()
    async def greet(name: str) -> str:
        return f"hello {name}"

    await greet("ada")
    name = f"{__name__}.test_key_names_the_function.<locals>.greet"
    assert await cache.get(name + ':{"name":"ada"}') == "hello ada"


async def test_exclude_leaves_arguments_out_of_the_key(cache: Cache) -> None:
    """An excluded argument (a session, a client) does not split the entry."""
    calls = 0

    @cache.cached(exclude=("session",))
    async def load(item_id: int, session: object) -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {"id": item_id}

    assert await load(1, object()) == {"id": 1}
    assert await load(1, session=object()) == {"id": 1}
    assert calls == 1


async def test_a_key_function_chooses_the_key(cache: Cache) -> None:
    """key= builds the key from the call's arguments."""

    @cache.cached(key=lambda user_id, **_: f"user:{user_id}")
    async def user(user_id: int, *, verbose: bool = False) -> dict[str, object]:
        return {"id": user_id, "verbose": verbose}

    assert await user(7) == {"id": 7, "verbose": False}
    assert await user(7, verbose=True) == {"id": 7, "verbose": False}
    assert await cache.get("user:7") == {"id": 7, "verbose": False}


async def test_arguments_with_a_stable_repr_and_sets_work(cache: Cache) -> None:
    """Dataclasses key by their fields; sets by sorted members, whatever their order."""
    calls = 0

    @cache.cached()
    async def area(point: Point, tags: frozenset[str]) -> int:
        nonlocal calls
        calls += 1
        return point.x * point.y

    assert await area(Point(2, 3), frozenset({"a", "b", "c"})) == 6
    assert await area(Point(2, 3), frozenset({"c", "b", "a"})) == 6
    assert calls == 1


async def test_unstable_arguments_are_refused_with_the_fix(cache: Cache) -> None:
    """An argument whose repr is an address raises ConfigurationError naming it and the fix."""

    @cache.cached()
    async def handle(client: object) -> int:
        return 1

    with pytest.raises(ConfigurationError, match=r"exclude=\('client',\)"):
        await handle(object())


def test_excluding_an_unknown_argument_is_refused(cache: Cache) -> None:
    """exclude= must name parameters of the function."""
    with pytest.raises(ConfigurationError, match="sesion"):

        @cache.cached(exclude=("sesion",))
        async def load(session: object) -> int:
            return 1


async def test_options_reach_get_or_set(cache: Cache) -> None:
    """The ttl and tags given to the decorator apply to the stored entry."""

    @cache.cached(ttl=5, tags=["items"], key=lambda: "items")
    async def items() -> list[int]:
        return [1, 2]

    assert await items() == [1, 2]
    remaining = await cache.ttl("items")
    assert remaining is not None
    assert remaining <= 5
    assert await cache.invalidate_tags("items") == 1


async def test_wrapper_keeps_the_function_metadata(cache: Cache) -> None:
    """The decorated function keeps its name and docstring."""

    @cache.cached()
    async def documented() -> int:
        """Say one."""
        return 1

    assert documented.__name__ == "documented"
    assert documented.__doc__ == "Say one."


async def echo_of(cache: Cache, argument: object) -> str:
    """What `echo(argument)` returns through a cached `echo` of that cache."""

    @cache.cached(ttl=60)
    async def echo(value: object) -> str:
        return repr(value)

    return await echo(argument)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({1: "a"}, {"1": "a"}),
        (Decimal("1.5"), "Decimal('1.5')"),
        (date(2026, 1, 2), "datetime.date(2026, 1, 2)"),
        (b"ab", "b'ab'"),
        ([1, 2], (1, 2)),
        ([1, 2], {1, 2}),
        ({1, 2}, frozenset({1, 2})),
        (1, 1.0),
        (1, True),
        (0, False),
        ("1", 1),
        (None, "None"),
        ({"a": 1}, [["a", 1]]),
        ({"a": 1}, ["dict", ["a", 1]]),
        (Point(1, 2), "Point(x=1, y=2)"),
        (Color.RED, 1),
        (Color.RED, "Color.RED"),
        (float("nan"), "NaN"),
        (OrderedDict(a=1), {"a": 1}),
    ],
    ids=repr,
)
async def test_different_arguments_never_share_a_key(
    cache: Cache, first: object, second: object
) -> None:
    """Each call gets its own answer: no two different argument lists share an entry."""
    assert await echo_of(cache, first) == repr(first)
    assert await echo_of(cache, second) == repr(second)


@pytest.mark.parametrize(
    "argument",
    [{1: "a", "b": 2}, {(1, 2): "x"}, {frozenset({1}): [b"x", None]}, {None: 1, 2.5: 2}],
    ids=repr,
)
async def test_any_dict_keys_can_be_keyed(cache: Cache, argument: object) -> None:
    """Dicts with keys of mixed or non-string types are keyed, not a TypeError."""
    assert await echo_of(cache, argument) == repr(argument)


async def test_equal_dicts_and_sets_share_an_entry_whatever_their_order(cache: Cache) -> None:
    """Insertion order of a dict or set does not split the entry."""
    calls = 0

    @cache.cached(ttl=60)
    async def count(mapping: dict[object, int], members: set[object]) -> int:
        nonlocal calls
        calls += 1
        return len(mapping) + len(members)

    assert await count({"a": 1, 2: 2}, {3, "b"}) == 4
    assert await count({2: 2, "a": 1}, {"b", 3}) == 4
    assert calls == 1


@pytest.mark.parametrize(
    "argument",
    [
        [object()],
        {"client": object()},
        defaultdict(lambda: 0),
        lambda: 1,
    ],
    ids=["object in a list", "object in a dict", "defaultdict of a lambda", "lambda"],
)
async def test_arguments_with_an_address_in_their_repr_are_refused(
    cache: Cache, argument: object
) -> None:
    """A repr holding a memory address, even nested, differs per process: refused with the fix."""
    with pytest.raises(ConfigurationError, match=r"exclude=\('value',\) or pass key="):
        await echo_of(cache, argument)


async def test_a_self_containing_argument_is_refused(cache: Cache) -> None:
    """A list that contains itself has no finite key: ConfigurationError, not RecursionError."""
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ConfigurationError, match="contains itself"):
        await echo_of(cache, loop)


@dataclass(frozen=True)
class Query:
    """A dataclass with a field its repr leaves out."""

    text: str
    tenant: str = field(repr=False)


class ModelQuery(BaseModel):
    """A pydantic model with a field its repr leaves out."""

    text: str
    tenant: str = Field(repr=False)


@attrs.frozen
class AttrsQuery:
    """An attrs class with a field its repr leaves out."""

    text: str
    tenant: str = attrs.field(repr=False)


@pytest.mark.parametrize("kind", [Query, ModelQuery, AttrsQuery], ids=lambda kind: kind.__name__)
async def test_objects_are_keyed_by_every_field_not_by_their_repr(
    cache: Cache, kind: Callable[..., Query | ModelQuery | AttrsQuery]
) -> None:
    """Two queries that differ only in a `repr=False` field never share an entry."""

    @cache.cached(ttl=60)
    async def rows(query: Query | ModelQuery | AttrsQuery) -> str:
        return f"rows of {query.tenant}"

    guest, admin = kind(text="x", tenant="guest"), kind(text="x", tenant="admin")
    assert repr(guest) == repr(admin)
    assert await rows(admin) == "rows of admin"
    assert await rows(guest) == "rows of guest"


async def test_closures_of_one_factory_are_keyed_by_what_they_captured(cache: Cache) -> None:
    """`make_fetcher("users")` and `make_fetcher("orders")` share a name, never an entry."""
    tables = {"users": {1: "ada"}, "orders": {1: "order 1"}}
    calls: list[str] = []

    def make_fetcher(table: str) -> Callable[[int], Awaitable[str]]:
        @cache.cached(ttl=60)
        async def fetch(row_id: int) -> str:
            calls.append(table)
            return tables[table][row_id]

        return fetch

    users, orders, users_again = (
        make_fetcher("users"),
        make_fetcher("orders"),
        make_fetcher("users"),
    )
    assert await users(1) == "ada"
    assert await orders(1) == "order 1"
    assert await users_again(1) == "ada"  # the same captures: the same entry
    assert calls == ["users", "orders"]


async def test_a_closure_over_state_without_a_key_form_is_refused_when_decorated(
    cache: Cache,
) -> None:
    """A captured client cannot be told apart from another: refused at once, with the fixes."""

    def make_loader(client: object) -> Callable[[int], Awaitable[int]]:
        @cache.cached(ttl=60)
        async def load(item_id: int) -> int:
            return hash(client) + item_id

        return load

    with pytest.raises(ConfigurationError, match=r"'client'.*exclude=\('client',\).*key="):
        make_loader(object())


async def test_a_captured_variable_can_be_left_out_of_the_key(cache: Cache) -> None:
    """`exclude=` names captured variables as it names parameters."""

    def make_loader(client: object) -> Callable[[int], Awaitable[str]]:
        @cache.cached(ttl=60, exclude=("client",))
        async def load(item_id: int) -> str:
            return f"{item_id} through {type(client).__name__}"

        return load

    assert await make_loader(object())(1) == "1 through object"
    assert await make_loader(object())(1) == "1 through object"
    assert cache.stats.computations == 1  # one entry: the client is left out


class Client:
    """One cached fetcher per instance: a decorated bound method."""

    def __init__(self, base: str, cache: Cache) -> None:
        """Cache `self._get` for this client."""
        self.base = base
        self.get = cache.cached(ttl=60)(self._get)

    def __repr__(self) -> str:
        """What tells two clients apart."""
        return f"Client({self.base!r})"

    async def _get(self, path: str) -> str:
        return self.base + path


class AnonymousClient(Client):
    """A client whose repr tells nothing apart."""

    __repr__ = object.__repr__


async def test_a_bound_method_is_keyed_by_its_instance(cache: Cache) -> None:
    """`cache.cached()(self._get)` per instance: each instance has its entries."""
    eu, us = Client("https://eu.example/", cache), Client("https://us.example/", cache)
    assert [await eu.get("x"), await us.get("x")] == [
        "https://eu.example/x",
        "https://us.example/x",
    ]


def test_a_bound_method_of_an_instance_without_a_key_form_is_refused(cache: Cache) -> None:
    """An instance without a stable repr cannot key its methods: refused when decorated."""
    with pytest.raises(ConfigurationError, match=r"'self'.*exclude=\('self',\)"):
        AnonymousClient("https://eu.example/", cache)


class traced:  # noqa: N801 - a decorator class, named as one is used
    """A class-based decorator (`functools.update_wrapper`): no `__code__` of its own."""

    def __init__(self, func: Callable[..., Awaitable[str]]) -> None:
        """Wrap `func`."""
        functools.update_wrapper(self, func)
        self.func = func

    async def __call__(self, *args: Any) -> str:
        """Call the wrapped function."""
        return await self.func(*args)


async def test_what_a_wrapped_function_captured_is_keyed(cache: Cache) -> None:
    """Under a class-based decorator or `lru_cache`, the closure's captures still key it."""

    def make_async(table: str) -> Callable[[int], Awaitable[str]]:
        @cache.cached(ttl=60)
        @traced
        async def fetch(row: int) -> str:
            return f"{table}:{row}"

        return fetch

    def make_sync(table: str) -> Callable[[int], Awaitable[str]]:
        @cache.cached(ttl=60)
        @functools.cache
        def fetch(row: int) -> str:
            return f"{table}:{row}"

        return fetch

    assert [await make_async("users")(1), await make_async("orders")(1)] == ["users:1", "orders:1"]
    assert [await make_sync("users")(1), await make_sync("orders")(1)] == ["users:1", "orders:1"]


async def test_a_captured_function_is_keyed_by_its_code_and_defaults(cache: Cache) -> None:
    """Two lambdas of one line, or a helper binding the factory's argument, never collide."""

    def make_pricer(currency: str) -> Callable[[int], Awaitable[float]]:
        convert: Callable[[int], float] = (
            (lambda c: c / 100) if currency == "EUR" else (lambda c: c * 150)
        )

        @cache.cached(ttl=60)
        async def price(cents: int) -> float:
            return float(convert(cents))

        return price

    def make_fetcher(table: str) -> Callable[[int], Awaitable[str]]:
        def query(row: int, t: str = table) -> str:
            return f"{t}:{row}"

        @cache.cached(ttl=60)
        async def fetch(row: int) -> str:
            return query(row)

        return fetch

    assert [await make_pricer("EUR")(500), await make_pricer("JPY")(500)] == [5.0, 75000.0]
    assert [await make_fetcher("users")(1), await make_fetcher("orders")(1)] == [
        "users:1",
        "orders:1",
    ]


async def test_a_nested_capture_is_named_and_can_be_left_out(cache: Cache) -> None:
    """The refusal names the path to what has no key form; excluding it keeps the rest."""

    def make(table: str, exclude: tuple[str, ...] = ()) -> Callable[[int], Awaitable[str]]:
        lock = threading.Lock()

        def helper(row: int) -> str:
            with lock:
                return f"{table}:{row}"

        @cache.cached(ttl=60, exclude=exclude)
        async def fetch(row: int) -> str:
            return helper(row)

        return fetch

    with pytest.raises(ConfigurationError, match=r"'helper', which captures 'lock'.*\('lock',\)"):
        make("users")
    users, orders = make("users", ("lock",)), make("orders", ("lock",))
    assert [await users(1), await orders(1)] == ["users:1", "orders:1"]


class Tenanted(BaseModel):
    """A pydantic model with a private attribute."""

    name: str
    _tenant: str = PrivateAttr(default="")


@dataclass
class Base:
    """A dataclass."""

    x: int


class Derived(Base):
    """A plain subclass of a dataclass, with state of its own."""

    def __init__(self, x: int, y: str) -> None:
        """Set the parent's field and one of its own."""
        super().__init__(x)
        self.y = y


def tenanted(tenant: str) -> Tenanted:
    """A model whose private tenant is `tenant`."""
    model = Tenanted(name="a")
    model._tenant = tenant
    return model


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (tenanted("t1"), tenanted("t2")),
        (re.compile("a" * 250 + "b"), re.compile("a" * 250 + "c")),
        (Derived(1, "a"), Derived(1, "b")),
        (b"meet at 0xCAFE", b"meet at 0xBEEF"),
    ],
    ids=["pydantic private", "long pattern", "dataclass subclass", "bytes"],
)
async def test_values_a_repr_does_not_tell_apart_get_their_own_entries(
    cache: Cache, first: object, second: object
) -> None:
    """A private attribute, a pattern past 200 characters, a subclass's own state."""
    calls: list[object] = []

    @cache.cached(ttl=60)
    async def use(value: object) -> int:
        calls.append(value)
        return len(calls)

    assert [await use(first), await use(second)] == [1, 2]


async def test_a_class_made_inside_a_function_is_refused(cache: Cache) -> None:
    """Classes made by one function share their name: no key tells them apart."""

    def model_for(table: str) -> type:
        return type("Model", (), {"table": table, "__qualname__": "model_for.<locals>.Model"})

    @cache.cached(ttl=60)
    async def table(model: type) -> str:
        return str(getattr(model, "table", ""))

    with pytest.raises(ConfigurationError, match="defined inside a function"):
        await table(model_for("users"))


async def test_mistaken_decorator_arguments_are_refused_clearly(cache: Cache) -> None:
    """A string for exclude= or tags= (module-level decorator too), a classmethod below."""
    with pytest.raises(ConfigurationError, match=r"exclude takes a list of names.*\('session',\)"):
        cache.cached(exclude="session")
    with pytest.raises(ConfigurationError, match="tags"):
        atomcache_core.cached(tags="products")
    with pytest.raises(ConfigurationError, match="below @classmethod"):
        cache.cached()(classmethod(lambda _: 1))  # type: ignore[call-overload]


async def test_a_partial_is_keyed_by_its_arguments(cache: Cache) -> None:
    """`cache.cached()(functools.partial(fetch, "users"))`: the partial's arguments key it."""

    async def fetch(table: str, row: int) -> str:
        return f"{table}:{row}"

    users = cache.cached(ttl=60)(functools.partial(fetch, "users"))
    orders = cache.cached(ttl=60)(functools.partial(fetch, "orders"))
    assert [await users(row=1), await orders(row=1)] == ["users:1", "orders:1"]


async def test_helpers_that_capture_each_other_are_keyed(cache: Cache) -> None:
    """Two captured helpers calling each other: no endless walk, and the captures key."""

    def make(table: str) -> Callable[[int], Awaitable[str]]:
        def even(n: int) -> str:
            return odd(n - 1) if n else table

        def odd(n: int) -> str:
            return even(n - 1) if n else "odd"

        @cache.cached(ttl=60)
        async def parity(n: int) -> str:
            return even(n)

        return parity

    assert [await make("users")(2), await make("orders")(2)] == ["users", "orders"]
