"""Passwords: who gets which, and what a refused one says, on every topology.

A Sentinel URL's user and password go to the master and to the Sentinels;
`sentinel_kwargs` gives the Sentinels other credentials or settings. Credentials a
server refuses raise `BackendAuthenticationError`, whose message names them (password
redacted) rather than telling to check that Redis is running; `Cache.check()` raises
it at once.
"""

from __future__ import annotations

import contextlib
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest
from redis.asyncio import Redis

from atomcache_core import BackendAuthenticationError, Cache, Event
from support.redis_server import with_credentials
from support.topology import RedisSentinelTopology

if TYPE_CHECKING:
    from collections.abc import Iterator

PASSWORD = secrets.token_hex(8)  # the data nodes'
SENTINEL_PASSWORD = secrets.token_hex(8)
WRONG = "not-the-password"


class Sentinels(NamedTuple):
    """Two password-protected Sentinel topologies."""

    shared: RedisSentinelTopology  # the Sentinels require the data nodes' password
    own: RedisSentinelTopology  # the Sentinels require a password of their own


@pytest.fixture(scope="module")
def sentinels() -> Iterator[Sentinels]:
    """Both topologies, started at the same time; every server stopped after the module."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        starting = [
            pool.submit(RedisSentinelTopology, password=PASSWORD, sentinel_password=password)
            for password in (PASSWORD, SENTINEL_PASSWORD)
        ]
    with contextlib.ExitStack() as started:
        for future in starting:
            if future.exception() is None:
                started.enter_context(future.result())
        yield Sentinels(*(future.result() for future in starting))


async def round_trip(cache: Cache) -> None:
    """A value stored and read back, an event published and heard: every connection works."""
    await cache.check()
    await cache.set("k", 1)
    assert await cache.get("k") == 1
    channel = cache.keys.channel("k")
    async with cache.notifier.subscribe(channel) as subscription:
        await cache.notifier.publish(channel, Event(channel, "stored", "v1"))
        assert await subscription.wait(2.0) == Event(channel, "stored", "v1")


async def test_the_urls_password_reaches_the_sentinels_and_the_master(
    sentinels: Sentinels, namespace: str
) -> None:
    """One password in the URL, required by the Sentinels and the data nodes alike."""
    async with Cache.from_url(sentinels.shared.url, namespace=namespace) as cache:
        await round_trip(cache)


async def test_sentinel_kwargs_give_the_sentinels_a_password_of_their_own(
    sentinels: Sentinels, namespace: str
) -> None:
    """The URL's password for the master and replica, `sentinel_kwargs`' for the Sentinels."""
    async with Cache.from_url(
        sentinels.own.url, namespace=namespace, sentinel_kwargs={"password": SENTINEL_PASSWORD}
    ) as cache:
        await round_trip(cache)


async def test_sentinel_kwargs_of_other_settings_keep_the_urls_password(
    sentinels: Sentinels, namespace: str
) -> None:
    """`sentinel_kwargs` without a password: the Sentinels get its settings and the URL's one."""
    name = f"sentinel-client-{namespace}"
    async with Cache.from_url(
        sentinels.shared.url,
        namespace=namespace,
        sentinel_kwargs={"client_name": name, "socket_timeout": 1.0},
    ) as cache:
        await round_trip(cache)
        with sentinels.shared.sentinel_servers[0].client() as sentinel:
            assert name in {client["name"] for client in sentinel.client_list()}


def test_sentinel_kwargs_are_merged_with_the_urls_credentials_and_the_timeouts() -> None:
    """Each Sentinel's client: the URL's user and password, 2 s timeouts, the user's values winning.

    Nothing connects: the clients are looked at as made.
    """
    url = "redis+sentinel://app:pw@127.0.0.1:26379,127.0.0.1:26380/cache"
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({}, {"username": "app", "password": "pw", "socket_timeout": 2.0}),
        ({"password": "other"}, {"username": "app", "password": "other"}),
        ({"username": None, "password": None}, {"username": None, "password": None}),
        ({"socket_timeout": 0.5}, {"password": "pw", "socket_timeout": 0.5}),
    ]
    for sentinel_kwargs, expected in cases:
        cache = Cache.from_url(url, sentinel_kwargs=sentinel_kwargs)
        client = cache.redis_client
        assert isinstance(client, Redis)
        sentinels = client.connection_pool.sentinel_manager.sentinels  # type: ignore[attr-defined]
        made = [sentinel.connection_pool.connection_kwargs for sentinel in sentinels]
        assert len(made) == 2
        for kwargs in made:
            assert {name: kwargs.get(name) for name in expected} == expected, sentinel_kwargs
        master = client.connection_pool.connection_kwargs
        assert (master["username"], master["password"]) == ("app", "pw")


class Refusal(NamedTuple):
    """A URL whose credentials a server refuses, and what else the cache is given."""

    fixture: str  # the fixture giving the server's URL
    credentials: str  # put in the URL instead of its own
    options: dict[str, Any]
    says: tuple[str, ...] = ()  # more the message says


REFUSALS = {
    "one server, wrong password": Refusal("password_url", f":{WRONG}", {}),
    "one server, no password": Refusal("password_url", "", {}),
    "one server, a password where none is set (RESP2 AUTH)": Refusal(
        "redis_url", f":{WRONG}", {"protocol": 2}
    ),
    "one server, unknown user": Refusal("redis_url", f"nobody:{WRONG}", {}, ("nobody",)),
    "cluster, unknown user": Refusal("cluster_url", f"nobody:{WRONG}", {}, ("nobody",)),
    "Sentinels, wrong password": Refusal(
        "shared_sentinel_url", f":{WRONG}", {}, ("sentinel_kwargs",)
    ),
    "Sentinels, the data nodes' password": Refusal(
        "own_sentinel_url", f":{PASSWORD}", {}, ("sentinel_kwargs",)
    ),
    "master, wrong password": Refusal(
        "own_sentinel_url", f":{WRONG}", {"sentinel_kwargs": {"password": SENTINEL_PASSWORD}}
    ),
}


@pytest.fixture
def shared_sentinel_url(sentinels: Sentinels) -> str:
    """The URL of the topology whose Sentinels require the data nodes' password."""
    return sentinels.shared.url


@pytest.fixture
def own_sentinel_url(sentinels: Sentinels) -> str:
    """The URL of the topology whose Sentinels require a password of their own."""
    return sentinels.own.url


@pytest.mark.parametrize("refusal", REFUSALS.values(), ids=REFUSALS)
async def test_refused_credentials_are_named_never_shown(
    refusal: Refusal, request: pytest.FixtureRequest, namespace: str
) -> None:
    """Every call says the server refused the credentials of the URL, password redacted.

    Not "check that Redis is running", also once the circuit breaker has opened (after
    five refusals); `check()` raises the same error.
    """
    url = with_credentials(request.getfixturevalue(refusal.fixture), refusal.credentials)
    first_host = url.partition("://")[2].rpartition("@")[2].partition(",")[0].partition("/")[0]
    async with Cache.from_url(
        url, namespace=namespace, socket_timeout=1.0, **refusal.options
    ) as cache:
        messages = []
        for _ in range(6):
            with pytest.raises(BackendAuthenticationError) as refused:
                await cache.get("k")
            messages.append(str(refused.value))
        with pytest.raises(BackendAuthenticationError) as refused:
            await cache.check()
        messages.append(str(refused.value))
    for message in messages:
        assert "rejected the credentials of" in message, message
        assert "AUTH failed" in message, message
        assert first_host in message, message
        assert all(said in message for said in refusal.says), message
        assert "Redis is running" not in message, message
        assert WRONG not in message, message
        assert PASSWORD not in message, message
    assert "circuit is open" in messages[5]


async def test_check_passes_on_a_server_that_answers(password_url: str, namespace: str) -> None:
    """`check()` returns on a server whose credentials are right, and on memory://."""
    async with Cache.from_url(password_url, namespace=namespace) as cache:
        await cache.check()
    async with Cache.from_url("memory://") as cache:
        await cache.check()
