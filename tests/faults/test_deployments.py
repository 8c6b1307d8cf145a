"""atomcache unchanged on Redis deployed as managed services do: a restricted user, TLS.

Each test starts its own redis-server (users and ports are per server) and stops it.
The restricted user may touch only the keys and channels of namespace "app" and may
not run the dangerous commands (KEYS, CONFIG, FLUSHALL, FLUSHDB, ...); the ACL log of
the server then shows whether atomcache ever sent a command it was refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError

from atomcache_core import BackendError, BackendUnavailableError, Cache
from atomcache_core.keys import KeyBuilder
from support.redis_server import RedisServer
from support.secure_redis import (
    DENIED_COMMANDS,
    TlsRedisServer,
    add_namespace_user,
    tls_unsupported_reason,
)
from support.waiting import compute_with_a_notified_waiter

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator


NAMESPACE = "app"


@pytest.fixture
def restricted_server() -> Iterator[RedisServer]:
    """A fresh redis-server, stopped after the test."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def user_url(restricted_server: RedisServer) -> str:
    """URL of an ACL user limited to namespace "app" on `restricted_server`."""
    return add_namespace_user(restricted_server, NAMESPACE)


@pytest.fixture
async def admin(restricted_server: RedisServer) -> AsyncIterator[Redis]:
    """The unrestricted default user of `restricted_server`, over its Unix socket."""
    client = Redis.from_url(restricted_server.unix_url)
    yield client
    await client.aclose()


def require_tls() -> None:
    """Skip the test, saying what is missing, when this machine cannot run a TLS Redis."""
    reason = tls_unsupported_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def tls_server() -> Iterator[TlsRedisServer]:
    """A fresh redis-server reachable over TLS only, with certificates made for it."""
    require_tls()
    with TlsRedisServer() as server:
        yield server


async def refusals(admin: Redis) -> list[tuple[str, str]]:
    """What the server's ACL refused so far, as (reason, command or key or channel) pairs.

    redis-py's `CLIENT SETINFO` on connecting is left out: Redis 6.2 files CLIENT under
    @dangerous and refuses it, and redis-py ignores the refusal by design (the library
    name is informational). Redis 7.0 does not know SETINFO; 7.2+ allows it to everyone.
    """
    found = [
        (str(entry["reason"]), str(entry["object"]).partition("|")[0])
        for entry in await admin.acl_log()
    ]
    return [refusal for refusal in found if refusal != ("command", "client")]


async def commands_sent(admin: Redis) -> set[str]:
    """Names of the commands the server has run since it started (Redis 7: or refused)."""
    stats = await admin.info("commandstats")
    return {name.removeprefix("cmdstat_").partition("|")[0] for name in stats}


async def test_a_namespace_user_can_run_every_cache_operation(user_url: str, admin: Redis) -> None:
    """Values, batches, TTLs, tags and clear() all work for a user limited to its namespace."""
    async with Cache.from_url(user_url, namespace=NAMESPACE) as cache:
        await cache.set("a", 1)
        await cache.set_many({"b": 2, "c": 3}, ttl=30)
        assert await cache.get("a") == 1
        assert await cache.get_many(["a", "b", "c", "missing"]) == [1, 2, 3, None]
        assert await cache.exists("b") is True
        remaining = await cache.ttl("b")
        assert remaining is not None
        assert 29 < remaining <= 30
        assert await cache.delete("b") is True
        assert await cache.exists("b") is False
        await cache.set("tagged", "x", tags=["red"])
        await cache.set("kept", "y", tags=["blue"])
        assert await cache.invalidate_tags("red") == 1
        assert await cache.get_many(["tagged", "kept"]) == [None, "y"]
        assert await cache.clear() == 3
        assert await cache.get_many(["a", "c", "kept"]) == [None, None, None]
        assert cache.stats.errors == 0
    assert await refusals(admin) == []
    sent = await commands_sent(admin)
    assert {"evalsha", "script", "get", "unlink", "scan"} <= sent
    assert sent.isdisjoint(DENIED_COMMANDS)


async def test_a_namespace_user_computes_once_and_wakes_waiters(
    user_url: str, admin: Redis
) -> None:
    """Single flight across two caches as the restricted user: the waiter is notified."""
    async with (
        Cache.from_url(user_url, namespace=NAMESPACE, recheck_interval=30) as first,
        Cache.from_url(user_url, namespace=NAMESPACE, recheck_interval=30) as second,
    ):
        await compute_with_a_notified_waiter(first, second, admin)
        assert await admin.exists(first.keys.lock("flight")) == 0
    assert await refusals(admin) == []
    sent = await commands_sent(admin)
    assert {"subscribe", "publish", "evalsha"} <= sent
    assert sent.isdisjoint(DENIED_COMMANDS)


@pytest.mark.parametrize("other", ["other", "app2"])
async def test_the_namespace_user_is_refused_everything_else(
    user_url: str, admin: Redis, other: str
) -> None:
    """The ACL really restricts: other namespaces' keys and channels, KEYS, CONFIG, FLUSH*."""
    mine, theirs = KeyBuilder(NAMESPACE), KeyBuilder(other)
    client = Redis.from_url(user_url)
    try:
        assert await client.set(mine.value("k"), b"mine") is True
        with pytest.raises(NoPermissionError):
            await client.set(theirs.value("k"), b"theirs")
        with pytest.raises(NoPermissionError):
            await client.get(theirs.tags(["k"], "k")[0])
        with pytest.raises(NoPermissionError):
            await client.publish(theirs.channel("k"), b"stored:1")
        refused_commands: list[Callable[[], Awaitable[object]]] = [
            lambda: client.keys("*"),
            lambda: client.config_get("maxmemory"),
            client.flushall,
            client.flushdb,
        ]
        for command in refused_commands:
            with pytest.raises(NoPermissionError):
                await command()
    finally:
        await client.aclose()
    async with Cache.from_url(user_url, namespace=other) as stranger:
        with pytest.raises(BackendError, match="rejected SET") as refused:
            await stranger.set("k", 1)
    assert isinstance(refused.value.__cause__, NoPermissionError)
    assert "no permissions to access one of the keys" in str(refused.value.__cause__)
    assert await admin.get(mine.value("k")) == b"mine"
    assert await admin.exists(theirs.value("k")) == 0
    assert set(await refusals(admin)) == {
        ("key", theirs.value("k")),
        ("key", theirs.tags(["k"], "k")[0]),
        ("channel", theirs.channel("k")),
        *(("command", command) for command in DENIED_COMMANDS),
    }


async def test_cache_works_over_tls(tls_server: TlsRedisServer, namespace: str) -> None:
    """Over rediss:// with the test CA: values round-trip and a waiter is woken by pub/sub."""
    ca = str(tls_server.certificates.ca)
    async with (
        Cache.from_url(tls_server.url, namespace=namespace, ssl_ca_certs=ca) as first,
        Cache.from_url(
            tls_server.url, namespace=namespace, ssl_ca_certs=ca, recheck_interval=30
        ) as second,
    ):
        await first.set("k", {"over": "tls"})
        assert await second.get("k") == {"over": "tls"}
        async with Redis.from_url(tls_server.unix_url) as admin:
            await compute_with_a_notified_waiter(first, second, admin)
            assert await admin.config_get("port") == {"port": "0"}  # no plain TCP port is open


async def test_tls_port_refuses_plain_and_unverified_clients(
    tls_server: TlsRedisServer, namespace: str
) -> None:
    """Plain TCP to the TLS port fails, and so does TLS to a server whose CA is not trusted."""
    plain_url = f"redis://127.0.0.1:{tls_server.tls_port}/0"
    async with Cache.from_url(plain_url, namespace=namespace) as plain:
        with pytest.raises(BackendUnavailableError) as plain_refused:
            await plain.set("k", 1)
    assert isinstance(plain_refused.value.__cause__, RedisConnectionError)
    async with Cache.from_url(tls_server.url, namespace=namespace) as untrusting:
        with pytest.raises(BackendUnavailableError) as unverified:
            await untrusting.set("k", 1)
    # The cause, not the message: redis-py >= 8's repr() of its errors drops their text.
    assert "certificate verify failed" in str(unverified.value.__cause__)


async def test_tls_with_client_certificates_and_a_namespace_user() -> None:
    """Mutual TLS plus a restricted user, the full managed shape: the cache works unchanged."""
    require_tls()
    with TlsRedisServer(verify_clients=True) as server:
        url = add_namespace_user(server, NAMESPACE)
        files = server.certificates
        certificate: dict[str, Any] = {
            "ssl_ca_certs": str(files.ca),
            "ssl_certfile": str(files.client_certificate),
            "ssl_keyfile": str(files.client_key),
        }
        async with (
            Redis.from_url(server.unix_url) as admin,
            Cache.from_url(url, namespace=NAMESPACE, **certificate) as first,
            Cache.from_url(url, namespace=NAMESPACE, recheck_interval=30, **certificate) as second,
        ):
            await first.set("k", "mutual", tags=["t"])
            assert await second.get("k") == "mutual"
            await compute_with_a_notified_waiter(first, second, admin)
            assert await second.clear() == 2
            assert await refusals(admin) == []
        async with Cache.from_url(
            url, namespace=NAMESPACE, ssl_ca_certs=str(files.ca)
        ) as anonymous:
            with pytest.raises(BackendUnavailableError) as anonymous_refused:
                await anonymous.get("k")
        # The server refuses the handshake: the client reads its alert or a reset.
        assert isinstance(anonymous_refused.value.__cause__, RedisConnectionError)
