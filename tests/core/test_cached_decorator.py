"""`@cache.cached`: keys from the call, arguments left out or keys chosen by hand."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from atomcache_core import Cache, ConfigurationError


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
    """Dataclasses key by repr; sets key by sorted members, whatever their order."""
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
