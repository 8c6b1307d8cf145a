"""Redis refused, killed or paused: get_or_set still answers, then caching resumes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from typing import TYPE_CHECKING

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from atomcache_core import BackendUnavailableError, Cache, CircuitBreaker, _telemetry
from atomcache_core._telemetry import FAILED_OPEN_LOG_INTERVAL
from support.redis_server import RedisServer, free_port

if TYPE_CHECKING:
    from collections.abc import Callable

TIMEOUT = 0.3  # the socket, connect and pool timeouts these caches use


def make_cache(port: int, namespace: str) -> Cache:
    """A cache on 127.0.0.1:`port` with short timeouts and a quick breaker."""
    return Cache.from_url(
        f"redis://127.0.0.1:{port}/0",
        namespace=namespace,
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
        timeout=TIMEOUT,
        breaker=CircuitBreaker(failure_threshold=3, reset_timeout=0.5),
    )


class Counted:
    """A factory that counts its runs and takes 50 ms."""

    def __init__(self) -> None:
        """No runs yet."""
        self.runs = 0

    async def __call__(self) -> str:
        """Count, wait, answer."""
        self.runs += 1
        await asyncio.sleep(0.05)
        return f"run {self.runs}"


async def burst(
    cache: Cache, key: str, factory: Callable[[], object]
) -> tuple[list[object], float]:
    """20 concurrent get_or_set calls; their results and how long they took together."""
    started = time.monotonic()
    results = await asyncio.gather(*(cache.get_or_set(key, factory) for _ in range(20)))
    return list(results), time.monotonic() - started


async def until_cached(cache: Cache, key: str, factory: Callable[[], object]) -> None:
    """Call get_or_set until a call is a hit again (the breaker probes after 0.5 s)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        hits = cache.stats.hits
        await cache.get_or_set(key, factory)
        if cache.stats.hits > hits:
            return
        await asyncio.sleep(0.1)
    msg = "caching did not resume"
    raise AssertionError(msg)


async def test_refused_at_start_then_resumes_when_redis_comes(namespace: str) -> None:
    """No Redis yet: answers computed once per burst, fast; once Redis starts, hits again."""
    port = free_port()
    cache = make_cache(port, namespace)
    factory = Counted()
    try:
        results, elapsed = await burst(cache, "k", factory)
        assert results == ["run 1"] * 20
        assert factory.runs == 1
        assert elapsed < 2 * TIMEOUT + 1.0
        with RedisServer(port=port):
            await until_cached(cache, "k", factory)
    finally:
        await cache.close()


async def test_cached_functions_answer_without_redis(namespace: str) -> None:
    """A @cache.cached function keeps answering, once per burst, while Redis refuses."""
    cache = make_cache(free_port(), namespace)
    runs = 0

    @cache.cached(ttl=60)
    async def price(item: int) -> float:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.05)
        return item * 1.5

    try:
        assert await asyncio.gather(*(price(2) for _ in range(10))) == [3.0] * 10
        assert runs == 1
    finally:
        await cache.close()


async def test_killed_mid_traffic_then_restarted(namespace: str) -> None:
    """Redis killed while in use: still answered; the breaker then answers at once; resumes."""
    server = RedisServer()
    cache = make_cache(server.port, namespace)
    factory = Counted()
    try:
        assert await cache.get_or_set("warm", factory) == "run 1"
        server.stop()
        results, _ = await burst(cache, "cold", factory)
        assert results == ["run 2"] * 20
        for _ in range(3):
            await cache.get_or_set("other", factory)
        started = time.monotonic()
        await cache.get_or_set("fast", factory)
        assert time.monotonic() - started < TIMEOUT  # the open breaker does not wait
        with RedisServer(port=server.port):
            await until_cached(cache, "k", factory)
    finally:
        server.stop()
        await cache.close()


async def test_paused_mid_traffic_costs_at_most_the_timeout(namespace: str) -> None:
    """SIGSTOP: calls wait at most about the timeout, collapse in-process, and resume after."""
    with RedisServer() as server:
        cache = make_cache(server.port, namespace)
        factory = Counted()
        try:
            assert await cache.get_or_set("warm", factory) == "run 1"
            server.pause()
            results, elapsed = await burst(cache, "cold", factory)
            assert results == ["run 2"] * 20
            assert elapsed < 3 * TIMEOUT + 1.0
            server.resume()
            await until_cached(cache, "k", factory)
            assert cache.stats.errors > 0
        finally:
            server.resume()
            await cache.close()


def test_each_cluster_node_has_its_own_breaker() -> None:
    """A node's breaker opens alone, with its parent's settings; a new node starts closed."""
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=60)
    dead, alive = breaker.for_node("10.0.0.1:7000"), breaker.for_node("10.0.0.2:7000")
    assert breaker.for_node("10.0.0.1:7000") is dead
    dead.record_failure()
    dead.record_failure()
    assert (dead.state, dead.reset_timeout) == ("open", 60)
    assert not dead.allow()
    assert alive.allow()
    assert breaker.state == "closed"
    assert breaker.for_node("10.0.0.3:7000").allow()  # the replica that took over


async def test_a_probe_cancelled_lets_the_next_call_probe(namespace: str) -> None:
    """The half-open probe cancelled mid-call (a client gone) does not jam the breaker.

    Without an outcome the breaker would wait for that probe forever and refuse every
    call after it, with Redis long back.
    """
    with RedisServer() as server:
        breaker = CircuitBreaker(failure_threshold=1, reset_timeout=0.05)
        cache = Cache.from_url(server.url, namespace=namespace, breaker=breaker)
        try:
            await cache.set("k", 1)
            breaker.record_failure()  # open
            await asyncio.sleep(0.1)
            server.pause()
            try:
                probe = asyncio.create_task(cache.get("k"))
                await asyncio.sleep(0.2)  # the probe waits on the frozen server
                probe.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await probe
            finally:
                server.resume()
            assert await cache.get("k") == 1  # the next call probes, and closes it
            assert breaker.state == "closed"
        finally:
            await cache.close()


async def test_a_probe_that_finds_no_free_connection_lets_the_next_call_probe(
    redis_url: str, namespace: str
) -> None:
    """A probe refused for want of a pooled connection proves nothing: the next probes."""
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=0.05)
    cache = Cache.from_url(
        redis_url, namespace=namespace, breaker=breaker, max_connections=1, timeout=0.05
    )
    try:
        await cache.set("k", 1)
        client = cache.redis_client
        assert isinstance(client, Redis)
        held = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            breaker.record_failure()  # open
            await asyncio.sleep(0.1)
            with pytest.raises(BackendUnavailableError, match="max_connections"):
                await cache.get("k")  # the probe
        finally:
            await client.connection_pool.release(held)
        assert await cache.get("k") == 1
        assert breaker.state == "closed"
    finally:
        await cache.close()


async def test_an_outage_logs_a_warning_per_second_not_per_call(
    namespace: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outage's warnings come one per kind per second, not one per call.

    The next one logged says how many were left out.
    """
    monkeypatch.setattr(_telemetry, "_failed_open_logged", {})  # earlier tests' outages
    cache = make_cache(free_port(), namespace)  # nothing listens there
    try:
        with caplog.at_level(logging.WARNING, logger="atomcache"):
            for n in range(200):
                assert await cache.get_or_set(f"k{n}", lambda: "computed") == "computed"
            first = [record.getMessage() for record in caplog.records]
            caplog.clear()
            await asyncio.sleep(FAILED_OPEN_LOG_INTERVAL)
            await cache.get_or_set("again", lambda: "computed")
            later = [record.getMessage() for record in caplog.records]
    finally:
        await cache.close()
    assert 1 <= len(first) <= 4, first  # one per kind of warning, not 200
    assert any(re.search(r"\(\d+ more like this in the last \d+ s\)", line) for line in later), (
        later
    )


async def test_a_full_server_under_noeviction_logs_per_second_not_per_call(
    namespace: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes refused for want of memory fail open with a warning per second, not per call."""
    monkeypatch.setattr(_telemetry, "_failed_open_logged", {})
    with RedisServer("--maxmemory", "2mb", "--maxmemory-policy", "noeviction") as server:
        filler = Redis.from_url(server.url)
        try:
            with contextlib.suppress(ResponseError):
                for number in range(1000):  # until the server is full
                    await filler.set(f"filler:{number}", os.urandom(10_000))
        finally:
            await filler.aclose()
        async with Cache.from_url(server.url, namespace=namespace) as cache:
            with caplog.at_level(logging.WARNING, logger="atomcache"):
                for number in range(120):
                    assert await cache.get_or_set(f"k{number}", lambda: "computed") == "computed"
    lines = [record for record in caplog.records if record.name == "atomcache"]
    assert 1 <= len(lines) <= 4, [record.getMessage() for record in lines]
    assert all(record.exc_info is None for record in lines)  # the message says it all
    assert "OOM" in lines[0].getMessage() or "memory" in lines[0].getMessage()
