"""Single flight across real processes sharing a real Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import TYPE_CHECKING

import pytest
from redis.asyncio import Redis

from atomcache_core import Cache
from support.fleet import Fleet, read_int, until_subscribed, values
from support.redis_server import RedisServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

WAITER_COMMANDS = ("get", "set", "subscribe", "unsubscribe", "hello")


@pytest.fixture
async def control(redis_url: str) -> AsyncIterator[Redis]:
    """A plain client on the shared test server."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_four_processes_compute_once_with_one_subscriber_each(
    redis_url: str, control: Redis
) -> None:
    """4 processes x 50 callers: one computation, one value, one pub/sub connection per waiter."""
    fleet = Fleet(redis_url, processes=4, callers=50, delay=0.2, await_waiters=3)
    async with fleet.running():
        await fleet.go()
        reports = await fleet.reports()
    assert await read_int(control, fleet.counter) == 1
    seen = values(reports)
    assert len(seen) == 200
    assert all(value == seen[0] for value in seen), set(map(str, seen))
    assert await read_int(control, fleet.keys.channel(fleet.key) + ":clients") == 3
    assert sum(report["stats"]["wakeups_notified"] for report in reports.values()) == 3
    assert sum(report["stats"]["computations"] for report in reports.values()) == 1
    assert await control.exists(fleet.keys.lock(fleet.key)) == 0


async def _waiting_commands(url: str, delay: float) -> dict[str, int]:
    """Commands the fleet sends for waiting, on a fresh server, with a factory of `delay` s."""
    with RedisServer() as server:
        control = Redis.from_url(server.url)
        fleet = Fleet(
            server.url,
            processes=4,
            callers=50,
            delay=delay,
            await_waiters=3,
            settings={"lock_ttl": 1.0, "recheck_interval": 1.0},
        )
        async with fleet.running():
            await control.config_resetstat()
            await fleet.go()
            reports = await fleet.reports()
        stats = await control.info("commandstats")
        await control.aclose()
    assert len(values(reports)) == 200
    assert url
    calls = {name: int(entry["calls"]) for name, entry in stats.items()}
    counts = {name: calls.get(f"cmdstat_{name}", 0) for name in WAITER_COMMANDS}
    # The leader's lock extensions run a GET inside their script (one per PEXPIRE):
    # that is the leader computing, not anyone waiting.
    counts["get"] -= calls.get("cmdstat_pexpire", 0)
    return counts


async def test_waiting_costs_grow_with_processes_not_with_time(redis_url: str) -> None:
    """A 10x longer computation costs the waiting processes no extra Redis command.

    The short computation (0.15 s) ends well before the leader's first lock extension
    (a third of `lock_ttl`, 0.33 s): an extension running beside the final write would
    open a second connection (one more `HELLO`) in the leader, not in a waiter.
    """
    short, long = await asyncio.gather(
        _waiting_commands(redis_url, 0.15), _waiting_commands(redis_url, 1.5)
    )
    assert short == long
    assert short["hello"] == 3  # the only new connections: one subscriber per waiting process
    assert short["subscribe"] == 3
    assert short["unsubscribe"] == 3
    assert sum(short.values()) <= 10 * 4


async def test_leader_killed_mid_computation_is_taken_over(redis_url: str, control: Redis) -> None:
    """SIGKILL the leader: another process computes once more within lock TTL + re-check."""
    lock_ttl, recheck = 1.0, 0.5
    fleet = Fleet(
        redis_url,
        processes=4,
        callers=10,
        delay=0.1,
        mode="hang-first",
        settings={"lock_ttl": lock_ttl, "recheck_interval": recheck},
    )
    async with fleet.running():
        await fleet.go()
        popped = await control.blpop([fleet.events], timeout=30)
        assert popped is not None
        event = popped[1]
        leader_pid = int((event.decode() if isinstance(event, bytes) else event).split(":")[1])
        os.kill(leader_pid, signal.SIGKILL)
        killed_at = time.time()
        reports = await fleet.reports()
    assert leader_pid not in reports
    assert len(reports) == 3
    assert await read_int(control, fleet.counter) == 2
    seen = values(reports)
    assert len(seen) == 30
    assert all(value["run"] == 2 for value in seen)
    finished = max(result["done"] for r in reports.values() for result in r["results"])
    assert finished - killed_at < lock_ttl + recheck + fleet.delay + 1.0
    assert sum(report["stats"]["lock_takeovers"] for report in reports.values()) == 1
    assert await control.exists(fleet.keys.lock(fleet.key)) == 0


async def test_a_failed_computation_is_redone_by_a_waiting_process(
    redis_url: str, control: Redis
) -> None:
    """The leader's factory raises: its callers get the error, one waiter computes again."""
    fleet = Fleet(redis_url, processes=3, callers=10, delay=0.2, mode="fail-first", await_waiters=2)
    async with fleet.running():
        await fleet.go()
        reports = await fleet.reports()
    assert await read_int(control, fleet.counter) == 2
    errors = [r for r in reports.values() if "error" in r["results"][0]]
    assert len(errors) == 1
    assert all("the first computation fails" in result["error"] for result in errors[0]["results"])
    good = [value for value in values(reports) if isinstance(value, dict)]
    assert len(good) == 20
    assert all(value["run"] == 2 for value in good)
    assert await control.exists(fleet.keys.lock(fleet.key)) == 0
    assert await control.exists(fleet.keys.value(fleet.key)) == 1


def observe_lock_attempts(
    cache: Cache, monkeypatch: pytest.MonkeyPatch, count: int
) -> asyncio.Event:
    """An event set once `cache` has tried to take a lock `count` times."""
    done, attempts, acquire = asyncio.Event(), [0], cache.lock.acquire

    async def observed(key: str, ttl: float) -> str | None:
        token = await acquire(key, ttl)
        attempts[0] += 1
        if attempts[0] >= count:
            done.set()
        return token

    monkeypatch.setattr(cache.lock, "acquire", observed)
    return done


async def test_waiters_finish_when_the_subscriber_connection_is_killed(
    redis_url: str, control: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CLIENT KILL TYPE pubsub mid-wait: the waiter still finishes within the re-check interval."""
    recheck = 0.5
    leader = Cache.from_url(redis_url, namespace=namespace)
    waiter = Cache.from_url(redis_url, namespace=namespace, recheck_interval=recheck)
    release, release_again = asyncio.Event(), asyncio.Event()
    started, started_again = asyncio.Event(), asyncio.Event()

    async def slow() -> str:
        started.set()
        await release.wait()
        return "computed"

    async def slow_again() -> str:
        started_again.set()
        await release_again.wait()
        return "computed again"

    try:
        leading = asyncio.create_task(leader.get_or_set("k", slow))
        await started.wait()
        waiting = asyncio.create_task(waiter.get_or_set("k", slow))
        channel = waiter.keys.channel("k")
        await until_subscribed(control, channel)
        assert await control.client_kill_filter(_type="pubsub") >= 1
        release.set()
        released = time.monotonic()
        assert await leading == "computed"
        assert await asyncio.wait_for(waiting, recheck + 1.0) == "computed"
        assert time.monotonic() - released < recheck + 0.5
        await leader.delete("k")
        again = asyncio.create_task(leader.get_or_set("k", slow_again))
        await started_again.wait()
        before = waiter.stats.wakeups_notified
        # the lock is tried before subscribing and again after
        checked = observe_lock_attempts(waiter, monkeypatch, count=2)
        waiting = asyncio.create_task(waiter.get_or_set("k", slow_again))
        await checked.wait()
        release_again.set()
        assert await waiting == "computed again"
        assert waiter.stats.wakeups_notified == before + 1
        await again
    finally:
        await leader.close()
        await waiter.close()


async def test_stale_value_is_refreshed_once_across_processes(
    redis_url: str, control: Redis
) -> None:
    """Inside stale_ttl every process answers at once with the old value; one refresh runs."""
    fleet = Fleet(
        redis_url,
        processes=4,
        callers=20,
        delay=0.3,
        call={"ttl": 60, "stale_ttl": 60},
        settle=1.0,
    )
    async with Cache.from_url(redis_url, namespace=fleet.namespace) as cache:
        await cache.get_or_set(fleet.key, lambda: "old", ttl=0.05, stale_ttl=60)
        await asyncio.sleep(0.1)
        async with fleet.running():
            await fleet.go()
            reports = await fleet.reports()
        assert values(reports) == ["old"] * 80
        assert max(result["latency"] for r in reports.values() for result in r["results"]) < 0.25
        assert await read_int(control, fleet.counter) == 1
        refreshed = await cache.get(fleet.key)
    assert refreshed["run"] == 1
