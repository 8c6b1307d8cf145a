"""An invalidation while Redis is away is kept and replayed: never lost, never a 500.

Two instances with local tiers share one Redis. While it is frozen (SIGSTOP: nothing
answers) or killed (its data kept on disk, as a restart or failover brings it back),
one instance invalidates. The call returns within its deadline without raising; the
instance serves the old value no more; and once Redis is back and the invalidation
replayed, neither instance serves it again.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest

from atomcache_core import BackendUnavailableError, Cache, CircuitBreaker
from atomcache_core._invalidations import MAX_PENDING, Invalidation, PendingInvalidations
from support.redis_server import RedisServer, valkey_server_binary
from support.waiting import until

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

PERSISTENT = ("--appendonly", "yes", "--appendfsync", "always")

INVALIDATIONS: dict[str, Callable[[Cache], Awaitable[object]]] = {
    "invalidate_tags": lambda cache: cache.invalidate_tags("t"),
    "delete": lambda cache: cache.delete("x"),
    "clear": lambda cache: cache.clear(),
}


def instance(url: str, namespace: str) -> Cache:
    """An instance with a local tier, quick to notice Redis is back."""
    breaker = CircuitBreaker(reset_timeout=0.2)
    return Cache.from_url(
        url, namespace=namespace, local_ttl=60, breaker=breaker, invalidation_timeout=0.5
    )


async def held_locally(cache: Cache, key: str, value: object) -> None:
    """Read `key` until this instance's local tier answers it."""
    tier = cache.storage
    for _ in range(200):
        before = getattr(tier, "hits", 0)
        assert await cache.get(key) == value
        if getattr(tier, "hits", 0) > before:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"{key!r} never served by the local tier")


async def invalidate_while_away(
    url: str, namespace: str, kind: str, away: Callable[[], None], back: Callable[[], str]
) -> None:
    """The scenario: warm both, take Redis away, invalidate, bring it back, read."""
    first, second = instance(url, namespace), instance(url, namespace)
    try:
        await first.set("x", "old", tags=["t"])
        for cache in (first, second):
            await held_locally(cache, "x", "old")
        away()
        started = time.monotonic()
        await INVALIDATIONS[kind](first)  # neither raises nor blocks past the deadline
        assert time.monotonic() - started < 1.5
        assert first.pending_invalidations == 1
        assert await first.get("x") is None  # as if applied, here at once
        url_now = back()
        assert url_now == url

        async def replayed() -> bool:
            return first.pending_invalidations == 0

        await until(replayed, 10, "the replay")

        async def dropped() -> bool:
            return await second.get("x") is None

        await until(dropped, 1, "the other instance dropping the entry")
        for cache in (first, second):
            for _ in range(20):
                assert await cache.get("x") is None
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize(
    ("kind", "binary"),
    [*((kind, "redis") for kind in INVALIDATIONS), ("invalidate_tags", "valkey")],
)
async def test_an_invalidation_while_redis_is_frozen_is_replayed(
    kind: str, binary: str, namespace: str
) -> None:
    """SIGSTOP: the call gives up after its deadline; SIGCONT: the replay lands."""
    with RedisServer(binary=valkey_server_binary() if binary == "valkey" else None) as server:

        def resume() -> str:
            server.resume()
            return server.url

        await invalidate_while_away(server.url, namespace, kind, away=server.pause, back=resume)


async def test_an_invalidation_while_redis_is_down_is_replayed(namespace: str) -> None:
    """SIGKILL, then a new server on the same port and data: the replay lands there."""
    servers = [RedisServer(*PERSISTENT)]

    def restart() -> str:
        old = servers[-1]
        servers.append(RedisServer(*PERSISTENT, "--dir", str(old.directory), port=old.port))
        return servers[-1].url

    try:
        await invalidate_while_away(
            servers[0].url, namespace, "invalidate_tags", away=servers[0].kill, back=restart
        )
    finally:
        for server in servers:
            server.stop()


async def test_a_strict_invalidation_raises_and_keeps_nothing(namespace: str) -> None:
    """`strict=True`: the caller hears that Redis is away, and decides."""
    with RedisServer() as server:
        cache = instance(server.url, namespace)
        try:
            await cache.set("x", "old", tags=["t"])
            server.pause()
            try:
                with pytest.raises(BackendUnavailableError, match="did not take"):
                    await cache.invalidate_tags("t", strict=True)
                assert cache.pending_invalidations == 0
            finally:
                server.resume()
            assert await cache.get("x") == "old"
        finally:
            await cache.close()


async def test_a_clear_that_walks_a_large_keyspace_is_not_cut_by_the_deadline(
    namespace: str,
) -> None:
    """The deadline is for Redis to answer; a `clear` walking 200,000 keys then finishes."""
    with RedisServer("--enable-debug-command", "yes") as server:
        async with Cache.from_url(
            server.url, namespace=namespace, invalidation_timeout=0.05
        ) as cache:
            client = cache.redis_client
            assert client is not None
            await client.execute_command("DEBUG", "POPULATE", 200_000, "other-app")
            await cache.set("x", "old", tags=[f"t{number}" for number in range(40)])
            started = time.monotonic()
            assert await cache.clear(strict=True) == 1
            assert time.monotonic() - started > 0.05  # longer than the deadline
            assert cache.pending_invalidations == 0
            await cache.set("x", "old", tags=[f"t{number}" for number in range(40)])
            tags = [f"t{number}" for number in range(40)]
            assert await cache.invalidate_tags(*tags, strict=True) == 1  # 3 scripts
            assert await cache.get("x") is None


async def test_invalidations_kept_while_a_replay_runs_are_all_replayed() -> None:
    """Past the bound while a replay is under way: the `clear` that replaces them still runs."""
    applied: list[str] = []
    answering, entered, gate, replayed = (asyncio.Event() for _ in range(4))

    async def apply(invalidation: Invalidation) -> int:
        if invalidation.names == ("a",) and answering.is_set():
            entered.set()
            await gate.wait()  # the replay of "a" is under way meanwhile
        elif not answering.is_set() or (entered.is_set() and not gate.is_set()):
            raise BackendUnavailableError("away")
        applied.append(invalidation.kind)
        if invalidation.kind == "clear":
            replayed.set()
        return 0

    async def probe() -> None:
        pass

    pending = PendingInvalidations(apply, probe=probe, timeout=5.0, blind=lambda _: None)
    await pending.run(Invalidation("keys", ("a",), None, frozenset({"a"})), strict=False)
    answering.set()
    await asyncio.wait_for(entered.wait(), 5)
    many = tuple(f"k{number}" for number in range(MAX_PENDING))
    await pending.run(Invalidation("keys", many, None, frozenset(many)), strict=False)
    assert pending.skips("k1")
    gate.set()
    await asyncio.wait_for(replayed.wait(), 10)
    for _ in range(100):  # the replay takes the clear off once it returned
        if not len(pending):
            break
        await asyncio.sleep(0.01)
    assert applied == ["keys", "clear"]
    assert len(pending) == 0
    assert not pending.skips("a")
    await pending.close()
