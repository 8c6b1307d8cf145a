"""Pooled connections that the server (its `timeout`) or a restart closed while idle.

The pool learns of it only when a command fails on one: that command is retried once,
at once, on a fresh connection, so the burst after a quiet spell gets its hits.
"""

from __future__ import annotations

import asyncio

from atomcache_core import Cache
from support.redis_server import RedisServer


async def burst(cache: Cache) -> list[object]:
    """30 reads at once (so 30 pooled connections are used, then left idle)."""
    return list(await asyncio.gather(*(cache.get(f"k{number}") for number in range(30))))


async def test_connections_closed_by_the_servers_idle_timeout_are_replaced(
    namespace: str,
) -> None:
    """`timeout 1`: after 1.5 s of silence, every read of the next burst is a hit."""
    with RedisServer("--timeout", "1") as server:
        async with Cache.from_url(server.url, namespace=namespace, observers=()) as cache:
            await cache.set_many({f"k{number}": number for number in range(30)})
            await asyncio.gather(*(burst(cache) for _ in range(3)))
            await asyncio.sleep(2.2)  # the server closes idle clients every second or so
            assert await burst(cache) == list(range(30))
            assert cache.stats.errors == 0


async def test_connections_of_a_restarted_server_are_replaced(namespace: str) -> None:
    """The server restarted on its port: the next burst reads it, no call fails."""
    servers = [RedisServer("--appendonly", "yes", "--appendfsync", "always")]
    try:
        url = servers[0].url
        async with Cache.from_url(url, namespace=namespace, observers=()) as cache:
            await cache.set_many({f"k{number}": number for number in range(30)})
            await asyncio.gather(*(burst(cache) for _ in range(3)))
            old = servers[0]
            old.kill()  # its data stays on disk for the new one
            servers.append(
                RedisServer(
                    "--appendonly", "yes", "--appendfsync", "always",
                    "--dir", str(old.directory), port=old.port,
                )
            )  # fmt: skip
            assert await burst(cache) == list(range(30))
            assert cache.stats.errors == 0
    finally:
        for server in servers:
            server.stop()
