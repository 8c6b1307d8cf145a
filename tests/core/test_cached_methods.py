"""`find_cached` on methods: binding runs nothing before the `@cached` wrapper."""

from __future__ import annotations

import functools
from typing import Any

from atomcache_core.asgi import cached, find_cached


def logged(function: Any) -> Any:
    """A decorator placed above `@cached`."""

    @functools.wraps(function)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return await function(*args, **kwargs)

    return wrapper


class Views:
    """Endpoints that are methods."""

    @cached(ttl=60)
    async def plain(self) -> int:
        """A cached method."""
        return 1

    @logged
    @cached(ttl=60)
    async def decorated(self) -> int:
        """A cached method with a decorator above."""
        return 2


def test_a_bound_method_is_its_function() -> None:
    """A bound `@cached` method is the wrapper itself; a decorator above it is seen."""
    views = Views()
    plain = find_cached(views.plain)
    assert plain is not None
    assert plain[1] is False
    decorated = find_cached(views.decorated)
    assert decorated is not None
    assert decorated[1] is True
    assert find_cached(Views.plain) == plain
