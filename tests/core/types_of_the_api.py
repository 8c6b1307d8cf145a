"""The types the public API gives, checked by mypy --strict and pyright in `make lint`.

Nothing here runs: `assert_type` fails the type checkers, not pytest. Each line is what
an application writes; the asserted type is what it must get.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from typing_extensions import assert_type

from atomcache_core import Cache, Uncacheable, cached

if sys.version_info >= (3, 11):
    from asyncio import TaskGroup

cache = Cache()


@cache.cached(ttl=60)
async def user(user_id: int) -> dict[str, int]:
    """A coroutine function under the decorator."""
    return {"id": user_id}


@cache.cached(ttl=60)
def report(day: str, *, detailed: bool = False) -> list[str]:
    """A plain function under the decorator: it runs in a thread, and is awaited."""
    return [day] if detailed else []


@cached(ttl=60)
async def square(x: int) -> int:
    """The module-level decorator, on the default cache."""
    return x * x


class Repository:
    """Methods keep `self` out of their callers' arguments."""

    @cache.cached(ttl=60)
    async def find(self, name: str) -> str | None:
        """Find one."""
        return name


async def produce() -> int:
    """A factory."""
    return 1


async def maybe() -> str | Uncacheable[str]:
    """A factory whose result may be for its caller only."""
    return Uncacheable("mine")


async def decorated_functions_stay_coroutine_functions() -> None:
    """A call gives a coroutine: create_task, run and TaskGroup take it."""
    assert_type(await user(1), dict[str, int])
    assert_type(await report("monday", detailed=True), list[str])
    assert_type(await square(3), int)
    assert_type(await Repository().find("x"), str | None)
    task = asyncio.create_task(user(1))
    assert_type(task, asyncio.Task[dict[str, int]])
    if sys.version_info >= (3, 11):
        async with TaskGroup() as group:
            assert_type(group.create_task(report("x")), asyncio.Task[list[str]])


def decorated_functions_run_under_asyncio_run() -> None:
    """`asyncio.run` takes the decorated function's call."""
    assert_type(asyncio.run(square(3)), int)


async def get_or_set_is_generic_in_its_factory() -> None:
    """`get_or_set` returns what its factory returns (awaited), whatever its kind."""
    assert_type(await cache.get_or_set("a", produce), int)
    assert_type(await cache.get_or_set("b", lambda: produce()), int)  # noqa: PLW0108 - a lambda
    assert_type(await cache.get_or_set("c", lambda: 3), int)
    assert_type(await cache.get_or_set("d", lambda: asyncio.to_thread(str, 1)), str)
    assert_type(await cache.get_or_set("e", maybe), str)
    assert_type(await cache.get_or_set("f", lambda: Uncacheable(2.5)), float)
    anything: Any = await cache.get("g")
    assert_type(anything, Any)
