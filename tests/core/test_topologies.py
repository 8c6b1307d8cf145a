"""Single flight and fail-open on a Redis Cluster and behind Sentinel, failovers included.

The contract suite runs on both topologies through its `backends` fixture; this module
adds the fleet of processes, and kills a master mid-traffic on each topology.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from redis.asyncio import RedisCluster
from redis.crc import key_slot

from atomcache_core import BackendUnavailableError, Cache, CircuitBreaker, Event, RedisNotifier
from atomcache_core.keys import KeyBuilder
from support.fleet import Fleet, controlling, read_int, until_subscribed, values
from support.topology import RedisClusterTopology, RedisSentinelTopology, command

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from support.redis_server import RedisServer

TOPOLOGIES = ["cluster", "sentinel"]
TIMEOUT = 0.5  # socket and connect timeouts of the caches under test, seconds
# The longest any call may take while a master dies and is replaced (docs/scaling.md).
FAILOVER_CALL_BOUND = 4.0
# How soon after the failover caching must be back: see `test_a_master_killed_mid_traffic`.
RESUME_BOUND = 10.0


@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_four_processes_compute_once(topology: str, request: pytest.FixtureRequest) -> None:
    """4 processes x 50 callers on the topology: one computation, one value, woken by events."""
    url = request.getfixturevalue(f"{topology}_url")
    fleet = Fleet(url, processes=4, callers=50, delay=0.2, await_waiters=3)
    async with fleet.running():
        await fleet.go()
        reports = await fleet.reports()
    async with controlling(url) as control:
        assert await read_int(control, fleet.counter) == 1
    seen = values(reports)
    assert len(seen) == 200
    assert all(value == seen[0] for value in seen), set(map(str, seen))
    assert sum(report["stats"]["wakeups_notified"] for report in reports.values()) == 3


@dataclass
class Failover:
    """A topology whose master of a given key can be killed, and the wait for its successor."""

    url: str
    kill: Callable[[str], RedisServer]
    wait: Callable[[RedisServer], float]


@contextlib.contextmanager
def topology_for_failover(kind: str) -> Any:
    """A fresh topology of `kind` (it gets broken), as a `Failover`."""
    if kind == "cluster":
        with RedisClusterTopology() as cluster:

            def kill_cluster_master(key: str) -> RedisServer:
                master = cluster.master_for_key(key)
                cluster.kill(master)
                return master

            yield Failover(cluster.url, kill_cluster_master, cluster.wait_failover)
    else:
        with RedisSentinelTopology() as sentinel:
            yield Failover(
                sentinel.url,
                lambda _key: sentinel.kill_master(),
                lambda _killed: sentinel.wait_failover(),
            )


def value_of(key: str) -> str:
    """What every caller must get for `key`."""
    return f"value of {key}"


@dataclass
class Traffic:
    """Callers of `get_or_set` over many keys, recording every outcome until stopped."""

    cache: Cache
    keys: list[str]
    latencies: list[float] = field(default_factory=list)
    slowest: tuple[float, float, str] = (0.0, 0.0, "")  # latency, start, key
    wrong: list[Any] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def caller(self, offset: int) -> None:
        """Ask for every key in turn, from `offset`, until stopped."""
        index = offset
        while not self.stop.is_set():
            key = self.keys[index % len(self.keys)]
            index += 1
            started = time.monotonic()
            value = await self.cache.get_or_set(key, functools.partial(value_of, key), ttl=1)
            self.latencies.append(time.monotonic() - started)
            self.slowest = max(self.slowest, (self.latencies[-1], started, key))
            if value != value_of(key):
                self.wrong.append(value)
            await asyncio.sleep(0.005)

    @contextlib.asynccontextmanager
    async def running(self, callers: int = 20) -> AsyncIterator[Traffic]:
        """Run the callers while the block runs; their exceptions fail the test."""
        tasks = [asyncio.create_task(self.caller(offset)) for offset in range(callers)]
        try:
            yield self
        finally:
            self.stop.set()
            await asyncio.gather(*tasks)


@pytest.mark.parametrize("kind", TOPOLOGIES)
async def test_a_master_killed_mid_traffic(kind: str, namespace: str) -> None:
    """Kill the master: no call fails or takes over the bound; single flight holds after."""
    with topology_for_failover(kind) as topology:
        breaker = CircuitBreaker()
        cache = Cache.from_url(
            topology.url,
            namespace=namespace,
            socket_timeout=TIMEOUT,
            socket_connect_timeout=TIMEOUT,
            breaker=breaker,
        )
        opened: list[float] = []
        breaker.on_change = lambda state: opened.extend([time.monotonic()] * (state == "open"))
        traffic = Traffic(cache, [f"key-{n}" for n in range(30)])
        try:
            async with traffic.running():
                await asyncio.sleep(0.5)  # steady traffic first
                killed_at, killed = time.monotonic(), topology.kill(cache.keys.value("key-0"))
                took = await asyncio.to_thread(topology.wait, killed)
                resumed, hits = len(traffic.latencies), cache.stats.hits
                # Caching is back at the latest when a circuit breaker probes again
                # (5 s): behind Sentinel the one breaker, on a cluster the dead node's,
                # whose keys the client maps to it until a call tells it otherwise.
                within = RESUME_BOUND
                deadline = time.monotonic() + within
                while cache.stats.hits < hits + 100:  # caching resumed on the new master
                    assert time.monotonic() < deadline, f"caching did not resume in {within} s"
                    await asyncio.sleep(0.05)
                resumed_at = time.monotonic()
            await woken_after_the_failover(cache, topology.url)
            if kind == "sentinel":
                # Once caching is back on the new master, nothing may open the breaker
                # again: not the lock releases retried from the outage all at once.
                assert not [at for at in opened if at > resumed_at], (opened, resumed_at)
        finally:
            await cache.close()
        assert not traffic.wrong
        latency, started, key = traffic.slowest
        assert latency < FAILOVER_CALL_BOUND, (took, latency, started - killed_at, key)
        assert len(traffic.latencies) > resumed + 100  # calls kept flowing after the failover
        fleet = Fleet(topology.url, processes=3, callers=20, delay=0.2, await_waiters=2)
        async with fleet.running():
            await fleet.go()
            reports = await fleet.reports()
        async with controlling(topology.url) as control:
            assert await read_int(control, fleet.counter) == 1
        assert len(set(map(str, values(reports)))) == 1


class HeldComputation:
    """A factory that starts, then computes "computed" only once released."""

    def __init__(self) -> None:
        """Not started, not released."""
        self.started, self.release = asyncio.Event(), asyncio.Event()

    async def __call__(self) -> str:
        """Say it started, wait for the release."""
        self.started.set()
        await self.release.wait()
        return "computed"


async def woken_after_the_failover(survivor: Cache, url: str) -> None:
    """The cache that lived through the failover waits and is woken by a notification.

    It first waits until it reaches the key's new master again: its circuit breaker
    for the dead node may still be open (other keys' hits said caching was back), and
    with it open the survivor computes at once instead of waiting.
    """
    # Preparation only (resumption itself was bounded above): the survivor must read and
    # lock for a whole second without its breaker opening again before the check.
    deadline = time.monotonic() + 3 * RESUME_BOUND
    steady_since: float | None = None
    while steady_since is None or time.monotonic() - steady_since < 1.0:
        try:
            await survivor.exists("key-0-again")
            token = await survivor.lock.acquire(survivor.keys.lock("key-0-probe"), 5)
            if token is not None:
                await survivor.lock.release(survivor.keys.lock("key-0-probe"), token)
            steady_since = steady_since or time.monotonic()
        except BackendUnavailableError:
            steady_since = None
            assert time.monotonic() < deadline, "key-0's master not steadily reachable"
        await asyncio.sleep(0.1)
    leader = Cache.from_url(url, namespace=survivor.namespace)
    slow = HeldComputation()
    try:
        leading = asyncio.create_task(leader.get_or_set("key-0-again", slow))
        await slow.started.wait()
        before = survivor.stats.wakeups_notified
        waiting = asyncio.create_task(survivor.get_or_set("key-0-again", slow))
        async with controlling(url) as control:
            await until_subscribed(control, survivor.keys.channel("key-0-again"))
        slow.release.set()
        assert await asyncio.wait_for(waiting, 1.0) == "computed"  # under the re-check
        assert survivor.stats.wakeups_notified == before + 1
        await leading
    finally:
        await leader.close()


def key_away_from(counter: str, kind: str, namespace: str) -> str:
    """A fleet key whose entry lives on another cluster master than `counter`.

    The fleet's factory counts its runs in `counter`; killing the entry's master must
    not take the counter with it. Behind Sentinel there is one master: any key will do.
    """
    if kind != "cluster":
        return "cold-key"
    keys = KeyBuilder(namespace)
    third = 16384 // 3
    counter_third = key_slot(counter.encode()) // third
    return next(
        key
        for key in (f"cold-key-{n}" for n in range(1000))
        if (slot := key_slot(keys.value(key).encode())) // third != counter_third
        and slot < 3 * third
    )


@pytest.mark.parametrize("kind", TOPOLOGIES)
async def test_waiters_finish_across_a_failover(kind: str) -> None:
    """The master dies while a leader computes: waiters re-subscribe and finish in time."""
    wait_timeout = 15.0
    with topology_for_failover(kind) as topology:
        fleet = Fleet(
            topology.url,
            processes=3,
            callers=10,
            delay=3.0,
            await_waiters=2,
            settings={
                "socket_timeout": TIMEOUT,
                "socket_connect_timeout": TIMEOUT,
                "recheck_interval": 1.0,
                "wait_timeout": wait_timeout,
            },
        )
        fleet.key = key_away_from(fleet.counter, kind, fleet.namespace)
        async with fleet.running(), controlling(topology.url) as control:
            await fleet.go()
            popped = await control.blpop([fleet.events], timeout=30)
            assert popped is not None  # the leader is computing
            channel = fleet.keys.channel(fleet.key)
            await until_subscribed(control, channel, 2)  # they wait
            # and the leader has seen them (it notes them under this key) and computes
            deadline = time.monotonic() + 10
            while not await control.exists(channel + ":clients"):
                assert time.monotonic() < deadline, "the leader never saw its waiters"
                await asyncio.sleep(0.005)
            started = time.monotonic()
            killed = topology.kill(fleet.keys.value(fleet.key))
            await asyncio.to_thread(topology.wait, killed)
            reports = await fleet.reports()
            finished = time.monotonic() - started
            computations = await read_int(control, fleet.counter)
    seen = values(reports)
    assert len(seen) == 30
    assert all(isinstance(value, dict) for value in seen), [
        v for v in seen if not isinstance(v, dict)
    ]
    assert finished < wait_timeout
    # A waiter that cannot reach Redis while the master is replaced computes without
    # the cache (fail open): at most once more per process, never per caller.
    assert computations <= 1 + fleet.processes


def move_slot(cluster: RedisClusterTopology, key: str) -> None:
    """Migrate the slot of `key`, with its keys, to another master, as resharding does."""
    slot = key_slot(key.encode())
    source = cluster.master_for_key(key)
    target = next(master for master in cluster.masters if master is not source)
    source_id, target_id = command(source, "CLUSTER", "MYID"), command(target, "CLUSTER", "MYID")
    command(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    command(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    if keys := command(source, "CLUSTER", "GETKEYSINSLOT", slot, 100):
        command(source, "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
    for master in cluster.masters:
        command(master, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
    assert cluster.master_for_key(key) is target


class LockAttempts:
    """Counts a cache's lock attempts: a waiter tries the lock each time it finds no value."""

    def __init__(self, cache: Cache) -> None:
        """Wrap `cache.lock.acquire`."""
        self.count = 0
        self._changed = asyncio.Event()
        acquire = cache.lock.acquire

        async def counting(*args: Any, **kwargs: Any) -> str | None:
            try:
                return await acquire(*args, **kwargs)
            finally:
                self.count += 1
                self._changed.set()

        cache.lock.acquire = counting  # type: ignore[method-assign]

    async def beyond(self, count: int) -> None:
        """Return once more than `count` attempts have ended."""
        while self.count <= count:
            self._changed.clear()
            await self._changed.wait()


async def test_a_slot_moved_mid_wait(namespace: str) -> None:
    """Resharding moves a waited-on key: redirections are followed, the waiter still woken."""
    with RedisClusterTopology(replicas_per_master=0) as cluster:
        if cluster.version < (7,):
            pytest.skip("sharded pub/sub (and its moves) needs Redis 7")
        leader = Cache.from_url(cluster.url, namespace=namespace)
        waiter = Cache.from_url(cluster.url, namespace=namespace, recheck_interval=10.0)
        attempts = LockAttempts(waiter)
        slow = HeldComputation()
        try:
            leading = asyncio.create_task(leader.get_or_set("k", slow))
            await slow.started.wait()
            waiting = asyncio.create_task(waiter.get_or_set("k", slow))
            async with controlling(cluster.url) as control:
                await until_subscribed(control, waiter.keys.channel("k"))
                looked = attempts.count
                await asyncio.to_thread(move_slot, cluster, leader.keys.value("k"))
                await until_subscribed(control, waiter.keys.channel("k"))  # on the new owner
            # The lost subscription makes the waiter look twice (a notification may have
            # gone out while it was away): when the server drops it, and when it is back on
            # the new owner. Let both looks end before the value is stored: else one finds
            # the value (counted as re-checked), or the lock just released (and reads the
            # value then, counted as neither).
            await asyncio.wait_for(attempts.beyond(looked + 1), 5.0)
            slow.release.set()
            assert await asyncio.wait_for(waiting, 5.0) == "computed"  # before the re-check
            assert await leading == "computed"
            assert waiter.stats.wakeups_notified == 1
            assert leader.stats.computations == 1
            assert waiter.stats.computations == 0
            assert await waiter.get("k") == "computed"
        finally:
            await leader.close()
            await waiter.close()


async def test_a_cluster_client_of_your_own(cluster_url: str, namespace: str) -> None:
    """`Cache.from_client` takes a RedisCluster you made; closing the cache leaves it open."""
    host, port = cluster_url.removeprefix("redis+cluster://").split(",")[0].split(":")
    client = RedisCluster(host=host, port=int(port))
    try:
        async with Cache.from_client(client, namespace=namespace) as cache:
            assert await cache.get_or_set("k", lambda: {"n": 1}, tags=["t"]) == {"n": 1}
            await cache.set("{braces}", 2, tags=["t"])
            assert await cache.get_many(["k", "{braces}"]) == [{"n": 1}, 2]
            assert await cache.invalidate_tags("t") == 2
        assert await client.ping()
    finally:
        await client.aclose()


@pytest.mark.parametrize("mode", ["default", "classic"])
async def test_cluster_events_use_sharded_pub_sub(
    cluster_url: str, namespace: str, mode: str
) -> None:
    """On a Redis 7 cluster events go through SSUBSCRIBE/SPUBLISH; sharded=False: classic."""
    async with controlling(cluster_url) as control:
        assert isinstance(control, RedisCluster)
        version = str((await control.info("server"))["redis_version"])
        has_sharded = int(version.split(".", maxsplit=1)[0]) >= 7  # none before Redis 7
        expect_sharded = mode == "default" and has_sharded
        notifier = RedisNotifier(control, sharded=None if mode == "default" else False)
        channel = KeyBuilder(namespace).channel("k")
        try:
            async with notifier.subscribe(channel) as subscription:
                owner = control.get_node_from_key(channel)
                shard = (
                    dict(await control.pubsub_shardnumsub(channel, target_nodes=owner))
                    if has_sharded
                    else {}
                )
                classic = 0
                for node in control.get_primaries():
                    counts = dict(await control.pubsub_numsub(channel, target_nodes=node))
                    classic += int(counts.get(channel.encode(), 0))
                await notifier.publish(channel, Event(channel, "stored", "v1"))
                assert await subscription.wait(2.0) == Event(channel, "stored", "v1")
        finally:
            await notifier.close()
    assert (shard.get(channel.encode(), 0), classic) == ((1, 0) if expect_sharded else (0, 1))


@pytest.mark.parametrize("kind", ["server", "sentinel"])
async def test_a_burst_beyond_the_pool_waits_for_a_connection(
    kind: str, namespace: str, request: pytest.FixtureRequest
) -> None:
    """More concurrent commands than `max_connections`: each waits for a free connection.

    Behind Sentinel too (redis-py's own Sentinel pool raises "Too many connections" at
    once, which would count as Redis being away and open the circuit breaker).
    """
    url = request.getfixturevalue("redis_url" if kind == "server" else f"{kind}_url")
    breaker = CircuitBreaker()
    cache = Cache.from_url(url, namespace=namespace, max_connections=4, breaker=breaker)
    try:
        await asyncio.gather(*(cache.set(f"burst-{n}", n) for n in range(200)))
        assert cache.stats.errors == 0
        assert breaker.state == "closed"
        assert await cache.get("burst-199") == 199
    finally:
        await cache.close()


@pytest.mark.parametrize("kind", ["server", "sentinel"])
async def test_a_wait_for_a_connection_that_runs_out_is_named_not_an_outage(
    kind: str, namespace: str, request: pytest.FixtureRequest
) -> None:
    """The pool's one connection held: each call gives up after `timeout`, saying why.

    redis-py reports that wait running out as a `ConnectionError`; it is the client's
    limit, not Redis being away, so ten of them in a row leave the breaker closed.
    """
    url = request.getfixturevalue("redis_url" if kind == "server" else f"{kind}_url")
    breaker = CircuitBreaker()
    cache = Cache.from_url(
        url, namespace=namespace, max_connections=1, timeout=0.05, breaker=breaker
    )
    try:
        await cache.set("first", 1)  # the pool's one connection, made
        client = cache.redis_client
        assert client is not None
        assert not isinstance(client, RedisCluster)
        held = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            for n in range(10):
                with pytest.raises(BackendUnavailableError, match="max_connections or timeout"):
                    await cache.set(f"waited-{n}", n)
            assert breaker.state == "closed"
        finally:
            await client.connection_pool.release(held)
        await cache.set("after", 1)
        assert await cache.get("after") == 1
    finally:
        await cache.close()


async def test_a_cluster_pool_exhausted_is_named_and_keeps_the_breaker_closed(
    cluster_url: str, namespace: str
) -> None:
    """A cluster node's pool has no waiting in redis-py: a burst beyond it fails at once.

    The error names `max_connections`, and it is not taken for Redis being away: the
    node's circuit breaker stays closed, so the next call goes through.
    """
    breaker = CircuitBreaker()
    cache = Cache.from_url(cluster_url, namespace=namespace, max_connections=2, breaker=breaker)
    try:
        results = await asyncio.gather(
            *(cache.set(f"burst-{n}", n) for n in range(200)), return_exceptions=True
        )
        errors = [result for result in results if isinstance(result, BaseException)]
        assert errors
        assert all(isinstance(error, BackendUnavailableError) for error in errors), errors[0]
        assert all("max_connections" in str(error) for error in errors), errors[0]
        client = cache.redis_client
        assert isinstance(client, RedisCluster)
        nodes = [node.name for node in client.get_primaries()]
        assert all(breaker.for_node(node).state == "closed" for node in nodes)
        await cache.set("after", 1)
        assert await cache.get("after") == 1
    finally:
        await cache.close()
