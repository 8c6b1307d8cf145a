"""The `Cache` data API, on the in-memory default and on a real Redis."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import SSLConnection

from atomcache_core import MAX_TTL, Cache, ConfigurationError, MemoryStorage, SerializationError
from atomcache_core.entry import FORMAT_VERSION, Entry, encode_entry
from atomcache_core.http_route import cached, route_options
from support.redis_server import RedisServer

HOSTILE_KEYS = ["*", "a*", "?", "[ab]", "\\", "{x}", "}", "a\nb", "a\x00b", "\ud800", "k" * 65536]


async def test_get_returns_default_when_missing(cache: Cache) -> None:
    """A missing key gives the default, None unless told."""
    assert await cache.get("missing") is None
    assert await cache.get("missing", default="fallback") == "fallback"


@pytest.mark.parametrize(
    "value", [0, 1.5, "text", True, [1, "two", None], {"nested": {"list": [1, 2.5]}}, ""]
)
async def test_set_then_get_round_trips(cache: Cache, value: object) -> None:
    """JSON values come back equal."""
    await cache.set("k", value)
    assert await cache.get("k") == value


async def test_none_is_a_cacheable_value(cache: Cache) -> None:
    """A stored None is a hit, told apart from a miss."""
    await cache.set("k", None)
    assert await cache.get("k", default="missing") is None
    assert await cache.exists("k") is True
    assert cache.stats.hits == 1
    assert cache.stats.misses == 0


async def test_ttl_is_a_float_honoured_within_50_ms(cache: Cache) -> None:
    """A 0.3 s TTL: present at 0.25 s, gone at 0.35 s."""
    await cache.set("k", "v", ttl=0.3)
    remaining = await cache.ttl("k")
    assert remaining is not None
    assert 0.25 < remaining <= 0.3
    await asyncio.sleep(0.25)
    assert await cache.get("k") == "v"
    await asyncio.sleep(0.1)
    assert await cache.get("k") is None
    assert await cache.ttl("k") is None
    assert await cache.exists("k") is False


async def test_default_ttl_applies(namespace: str) -> None:
    """Without a ttl argument the cache's own TTL is used."""
    async with Cache(namespace=namespace, ttl=42) as cache:
        await cache.set("k", 1)
        remaining = await cache.ttl("k")
    assert remaining is not None
    assert 41 < remaining <= 42


@pytest.mark.parametrize(
    "ttl", [0, -1, float("inf"), float("nan"), True, "10", MAX_TTL + 1, sys.maxsize]
)
async def test_invalid_ttl_is_refused(cache: Cache, ttl: object) -> None:
    """A TTL outside (0, MAX_TTL] raises ConfigurationError, on every backend, before any write."""
    with pytest.raises(ConfigurationError, match=r"from more than 0 to 315,360,000 \(10 years"):
        await cache.set("k", 1, ttl=ttl)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="ttl must be"):
        await cache.get_or_set("k", lambda: 1, ttl=ttl)  # type: ignore[call-overload]
    if ttl != 0:  # a window may be 0
        with pytest.raises(ConfigurationError, match="stale_ttl must be"):
            await cache.get_or_set("k", lambda: 1, stale_ttl=ttl)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="ttl must be"):
        cached(ttl=ttl)  # type: ignore[arg-type]
    assert await cache.exists("k") is False


async def test_the_longest_ttl_behaves_the_same_on_every_backend(cache: Cache) -> None:
    """MAX_TTL, with the longest stale windows on top, is stored and kept on memory and Redis."""
    await cache.set("k", 1, ttl=MAX_TTL)
    remaining = await cache.ttl("k")
    assert remaining is not None
    assert MAX_TTL - 5 < remaining <= MAX_TTL
    value = await cache.get_or_set(
        "windows", lambda: 2, ttl=MAX_TTL, stale_ttl=MAX_TTL, stale_if_error=MAX_TTL
    )
    assert value == 2
    assert await cache.get("windows") == 2


async def test_delete_and_exists(cache: Cache) -> None:
    """Deleting reports whether the key was there; exists follows."""
    await cache.set("k", 1)
    assert await cache.exists("k") is True
    assert await cache.delete("k") is True
    assert await cache.delete("k") is False
    assert await cache.exists("k") is False


async def test_many_variants(cache: Cache) -> None:
    """get_many/set_many/delete_many work on several keys at once."""
    await cache.set_many({"a": 1, "b": None}, ttl=10)
    assert await cache.get_many(["a", "b", "c"], default="-") == [1, None, "-"]
    assert await cache.delete_many(["a", "b", "c"]) == 2
    assert await cache.get_many(["a", "b"]) == [None, None]


async def test_unserializable_value_writes_nothing(cache: Cache) -> None:
    """A value JSON cannot hold raises SerializationError and keeps the old value."""
    await cache.set("k", "old")
    with pytest.raises(SerializationError, match="PickleSerializer") as info:
        await cache.set("k", {"when": {1, 2}})
    assert info.value.value_type == "dict"
    assert info.value.direction == "dumps"
    assert await cache.get("k") == "old"
    with pytest.raises(SerializationError):
        await cache.set_many({"a": 1, "b": object()})
    assert await cache.get_many(["a", "b"]) == [None, None]


async def test_clear_touches_only_its_namespace(cache: Cache, namespace: str) -> None:
    """Clearing `app` leaves `app2` on the same storage intact."""
    other = Cache(
        storage=cache.storage, lock=cache.lock, notifier=cache.notifier, namespace=namespace + "2"
    )
    await cache.set_many({f"k{i}": i for i in range(10)})
    await cache.set("tagged", 1, tags=["t"])
    await other.set("k0", "kept", tags=["t"])
    assert await cache.clear() == 11
    assert await cache.get_many(["k0", "tagged"]) == [None, None]
    assert await other.get("k0") == "kept"
    assert await other.invalidate_tags("t") == 1


async def test_invalidate_tags(cache: Cache) -> None:
    """Entries carrying any invalidated tag disappear; others stay."""
    await cache.set("a", 1, tags=["user:1", "list"])
    await cache.set("b", 2, tags=["user:2"])
    await cache.set("c", 3)
    assert await cache.invalidate_tags("user:1", "missing") == 1
    assert await cache.get_many(["a", "b", "c"]) == [None, 2, 3]


async def test_a_single_string_is_not_taken_as_tags(cache: Cache) -> None:
    """tags="abc" is refused instead of meaning three one-letter tags."""
    with pytest.raises(ConfigurationError, match="collection of strings"):
        await cache.set("k", 1, tags="abc")


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=repr)
async def test_hostile_keys_are_literal(cache: Cache, key: str) -> None:
    """Odd keys round-trip, and deleting one leaves lookalikes alone."""
    await cache.set(key, "odd")
    await cache.set("a", "plain")
    await cache.set("ab", "plain")
    assert await cache.get(key) == "odd"
    assert await cache.delete(key) is True
    assert await cache.get_many(["a", "ab"]) == ["plain", "plain"]


async def test_long_keys_sharing_a_prefix_stay_distinct(cache: Cache) -> None:
    """Two long keys differing only at the end are two entries."""
    first, second = "p" * 5000 + "1", "p" * 5000 + "2"
    await cache.set(first, 1)
    await cache.set(second, 2)
    assert await cache.get_many([first, second]) == [1, 2]


async def test_non_string_key_is_refused(cache: Cache) -> None:
    """A key that is not a string raises ConfigurationError with the fix."""
    with pytest.raises(ConfigurationError, match="str"):
        await cache.get(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        os.urandom(64),
        b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00\x8c\x01x\x94.",
    ],
    ids=["empty", "text", "random", "pickle"],
)
async def test_corrupt_bytes_are_a_counted_miss(cache: Cache, data: bytes) -> None:
    """Bytes that are not an entry give the default and count as corrupt, never raise."""
    await cache.storage.set(cache.keys.value("k"), data, 10)
    assert await cache.get("k", default="miss") == "miss"
    assert cache.stats.corrupt == 1
    assert cache.stats.misses == 1


async def test_truncated_entry_is_a_miss(cache: Cache) -> None:
    """An entry cut short is a miss."""
    await cache.set("k", {"payload": "x" * 100})
    stored = await cache.storage.get(cache.keys.value("k"))
    assert stored is not None
    await cache.storage.set(cache.keys.value("k"), stored[:-10], 10)
    assert await cache.get("k") is None
    assert cache.stats.corrupt == 1


async def test_entry_with_an_undecodable_payload_is_a_miss(cache: Cache) -> None:
    """A valid header around a payload the serializer rejects is a corrupt miss."""
    data = encode_entry(Entry(b"\xff not json", 0, 2e9, 2e9))
    await cache.storage.set(cache.keys.value("k"), data, 10)
    assert await cache.get("k") is None
    assert cache.stats.corrupt == 1


async def test_older_format_version_is_a_miss_then_overwritten(cache: Cache) -> None:
    """An entry of another format version is a miss; the next set replaces it."""
    data = bytearray(encode_entry(Entry(b"1", 0, 2e9, 2e9)))
    data[2] = FORMAT_VERSION - 1
    await cache.storage.set(cache.keys.value("k"), bytes(data), 10)
    assert await cache.get("k") is None
    await cache.set("k", 2)
    assert await cache.get("k") == 2


async def test_stats_count_hits_and_misses(cache: Cache) -> None:
    """Hits and misses are counted and can be reset."""
    await cache.set("k", 1)
    await cache.get("k")
    await cache.get("missing")
    await cache.get_many(["k", "missing"])
    assert cache.stats.as_dict()["hits"] == 2
    assert cache.stats.misses == 2
    cache.stats.reset()
    assert cache.stats.hits == 0


async def test_from_url_memory_is_the_embedded_default() -> None:
    """memory:// gives a bounded MemoryStorage."""
    async with Cache.from_url("memory://", max_entries=5) as cache:
        assert isinstance(cache.storage, MemoryStorage)
        assert cache.storage.max_entries == 5


async def test_from_url_unix_socket(namespace: str) -> None:
    """unix:// reaches Redis over its socket."""
    with RedisServer() as server:
        async with Cache.from_url(server.unix_url, namespace=namespace) as cache:
            await cache.set("k", "over a socket")
            assert await cache.get("k") == "over a socket"


async def test_from_url_rediss_uses_tls(namespace: str) -> None:
    """rediss:// configures TLS connections."""
    cache = Cache.from_url("rediss://127.0.0.1:6380/0", namespace=namespace)
    assert isinstance(cache.redis_client, Redis)
    assert cache.redis_client.connection_pool.connection_class.__name__ == "SSLConnection"
    await cache.close()


@pytest.mark.parametrize("url", ["http://x", "localhost:6379", "", "memcached://x"])
def test_from_url_refuses_unknown_schemes(url: str) -> None:
    """An unsupported URL is refused with the supported forms listed."""
    with pytest.raises(ConfigurationError, match=r"redis://host:6379/0"):
        Cache.from_url(url)


def test_empty_namespace_is_refused() -> None:
    """An empty namespace is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="namespace"):
        Cache(namespace="")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://127.0.0.1:7000/0", "only database 0"),
        ("redis+cluster://127.0.0.1", "needs a port"),
        ("redis+cluster://127.0.0.1:7000,:7001", "needs a port"),
        ("redis+cluster://127.0.0.1:7000?ssl=true", "keyword arguments"),
        ("redis+sentinel://127.0.0.1:26379", "names the monitored service"),
        ("redis+sentinel://127.0.0.1:26379/", "names the monitored service"),
        ("redis+sentinel://127.0.0.1:26379/cache/x", "names the monitored service"),
    ],
)
def test_malformed_cluster_and_sentinel_urls_are_refused(url: str, message: str) -> None:
    """A cluster or Sentinel URL that cannot be meant as written is refused, saying why."""
    with pytest.raises(ConfigurationError, match=message):
        Cache.from_url(url)


async def test_cluster_and_sentinel_urls_carry_credentials_and_tls() -> None:
    """User, password and the `rediss+` schemes reach the clients; nothing connects yet."""
    cluster = Cache.from_url("rediss+cluster://app:s%40cret@127.0.0.1:7000,[::1]:7001")
    client = cluster.redis_client
    assert isinstance(client, RedisCluster)
    nodes = [
        (
            node.host,
            node.port,
            node.connection_kwargs["username"],
            node.connection_kwargs["password"],
        )
        for node in client.startup_nodes
    ]
    assert nodes == [("127.0.0.1", 7000, "app", "s@cret"), ("::1", 7001, "app", "s@cret")]
    assert all(issubclass(node.connection_class, SSLConnection) for node in client.startup_nodes)
    await cluster.close()
    sentinel = Cache.from_url("redis+sentinel://app:pw@127.0.0.1:26379/cache/2")
    master = sentinel.redis_client
    assert isinstance(master, Redis)
    pool = master.connection_pool
    assert (pool.connection_kwargs["db"], pool.connection_kwargs["password"]) == (2, "pw")
    assert pool.service_name == "cache"  # type: ignore[attr-defined]
    await sentinel.close()


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("redis://127.0.0.1:1/0", {"max_conections": 1}, "'max_conections'.*'max_connections'"),
        ("redis+cluster://127.0.0.1:1", {"socket_timout": 1}, "'socket_timout'.*'socket_timeout'"),
        ("redis+sentinel://127.0.0.1:1/mymaster", {"pasword": "x"}, "'pasword'.*'password'"),
        (
            "redis+sentinel://127.0.0.1:1/mymaster",
            {"sentinel_kwargs": {"pasword": "x"}},
            "'pasword' in sentinel_kwargs.*'password'",
        ),
        ("redis+sentinel://127.0.0.1:1/mymaster", {"sentinel_kwargs": "x"}, "must be a dict"),
        ("redis://127.0.0.1:1/0", {"qqqq": 1}, r"^unknown option 'qqqq' for a Redis URL: Cache"),
        ("memory://", {"max_connections": 1}, "memory:// takes no Redis options"),
        ("redis://127.0.0.1:1/0", {"max_bytes": 1000}, "local_max_bytes"),
        ("redis://127.0.0.1:1/0", {"max_entries": 10}, "local_max_entries"),
    ],
)
def test_options_that_cannot_apply_are_refused_by_name(
    url: str, options: dict[str, Any], message: str
) -> None:
    """A typo or a misplaced option raises ConfigurationError when the cache is made.

    redis-py would take a mistyped pool option and fail on every later connection, which
    looks like an outage: the error names the option and the closest one instead.
    """
    with pytest.raises(ConfigurationError, match=message):
        Cache.from_url(url, **options)


async def test_a_second_close_closes_what_a_use_after_close_reopened(redis_url: str) -> None:
    """Using a closed cache reconnects; closing it again releases that connection."""
    cache = Cache.from_url(redis_url)
    await cache.set("k", 1)
    await cache.close()
    assert await cache.get("k") == 1
    client = cache.redis_client
    assert isinstance(client, Redis)
    await cache.close()
    pool = client.connection_pool
    connections = [*pool._in_use_connections, *pool._available_connections]
    assert not [connection for connection in connections if connection.is_connected]


async def test_durations_may_be_timedeltas(cache: Cache) -> None:
    """`ttl=timedelta(minutes=5)` is 300 seconds, wherever a duration is taken."""
    await cache.set("k", 1, ttl=timedelta(minutes=5))
    remaining = await cache.ttl("k")
    assert remaining is not None
    assert 299 < remaining <= 300
    value = await cache.get_or_set(
        "g", lambda: 2, ttl=timedelta(seconds=60), stale_ttl=timedelta(seconds=30)
    )
    assert value == 2
    left = await cache.ttl("g")
    assert left is not None
    assert 59 < left <= 60
    with pytest.raises(ConfigurationError, match="ttl must be"):
        await cache.set("k", 1, ttl=timedelta(0))


def test_a_route_takes_timedeltas() -> None:
    """The HTTP decorator takes them too: its options hold seconds."""

    async def endpoint() -> None:
        """Nothing."""

    wrapped = cached(ttl=timedelta(minutes=1), stale_ttl=timedelta(seconds=30))(endpoint)
    options = route_options(wrapped)
    assert options is not None
    assert (options.ttl, options.stale_ttl) == (60.0, 30.0)


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://:topsecret@10.0.0.1:26379",
        "redis+sentinel://:top/secret@10.0.0.1:26379/mymaster",
        "redis+cluster://:topsecret@10.0.0.1:7000/0",
        "redis+cluster://:topsecret@10.0.0.1",
        "redis+cluster://:topsecret@10.0.0.1:7000?x=1",
        "foo://:topsecret@10.0.0.1:6379/0",
    ],
)
def test_a_refused_url_never_shows_its_password(url: str) -> None:
    """Every error about a malformed URL shows it with its password as `***`."""
    with pytest.raises(ConfigurationError) as refused:
        Cache.from_url(url)
    assert "secret" not in str(refused.value)
    assert "***" in str(refused.value)
