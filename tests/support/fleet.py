"""Start real worker processes that hit one key together, and collect what they saw."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis.asyncio import RedisCluster
from redis.exceptions import ResponseError

from atomcache_core.backends.redis.urls import client_for
from atomcache_core.keys import KeyBuilder

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from atomcache_core.backends.redis import RedisClient

TESTS = Path(__file__).parents[1]
STARTUP_TIMEOUT = 60.0


@dataclass
class Fleet:
    """Worker processes sharing one Redis, one namespace and one key."""

    url: str
    processes: int
    callers: int
    delay: float = 0.2
    mode: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    call: dict[str, Any] = field(default_factory=dict)
    await_waiters: int = 0
    settle: float = 0.0
    strategy: str = "atomcache"
    namespace: str = field(default_factory=lambda: f"fleet-{uuid.uuid4().hex[:10]}")
    key: str = "cold-key"
    worker: tuple[str, ...] = ("-m", "support.fleet_worker")  # how Python starts a worker
    control_url: str = ""  # where the factory counts its runs; default: `url`
    workers: list[asyncio.subprocess.Process] = field(default_factory=list)

    @property
    def keys(self) -> KeyBuilder:
        """Key builder of the fleet's namespace."""
        return KeyBuilder(self.namespace)

    @property
    def counter(self) -> str:
        """Redis key counting the factory's runs across the fleet."""
        return f"{self.namespace}:computations"

    @property
    def events(self) -> str:
        """Redis list on which each factory run announces `start:<pid>:<run>`."""
        return f"{self.namespace}:events"

    def config(self) -> dict[str, Any]:
        """The JSON config given to every worker."""
        return {
            "url": self.url,
            "control_url": self.control_url or self.url,
            "namespace": self.namespace,
            "key": self.key,
            "callers": self.callers,
            "delay": self.delay,
            "mode": self.mode,
            "settings": self.settings,
            "call": self.call,
            "counter": self.counter,
            "events": self.events,
            "channel": self.keys.channel(self.key),
            "await_waiters": self.await_waiters,
            "settle": self.settle,
            "strategy": self.strategy,
        }

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Fleet]:
        """Start the workers and wait until each is connected; kill leftovers by PID."""
        argument = json.dumps(self.config())
        try:
            for _ in range(self.processes):
                self.workers.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        *self.worker,
                        argument,
                        stdin=asyncio.subprocess.PIPE,
                        stdout=asyncio.subprocess.PIPE,
                        env={**os.environ, "PYTHONPATH": str(TESTS)},
                    )
                )
            for worker in self.workers:
                assert worker.stdout is not None
                line = await asyncio.wait_for(worker.stdout.readline(), STARTUP_TIMEOUT)
                assert line.strip() == b"ready", line
            yield self
        finally:
            for worker in self.workers:
                if worker.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker.pid, signal.SIGKILL)
                    await worker.wait()

    async def go(self) -> None:
        """Release every worker at once."""
        for worker in self.workers:
            assert worker.stdin is not None
            worker.stdin.write(b"go\n")
        await asyncio.gather(*(w.stdin.drain() for w in self.workers if w.stdin is not None))

    async def reports(self, timeout: float = 60) -> dict[int, dict[str, Any]]:
        """Each surviving worker's report, by PID."""

        async def report(worker: asyncio.subprocess.Process) -> dict[str, Any] | None:
            assert worker.stdout is not None
            line = await asyncio.wait_for(worker.stdout.readline(), timeout)
            await worker.wait()
            return json.loads(line) if line else None

        found = await asyncio.gather(*(report(worker) for worker in self.workers))
        return {item["pid"]: item for item in found if item is not None}


def values(reports: dict[int, dict[str, Any]]) -> list[Any]:
    """Every caller's value (or error) across the reports."""
    return [
        result.get("value", result.get("error"))
        for r in reports.values()
        for result in r["results"]
    ]


@contextlib.asynccontextmanager
async def controlling(url: str) -> AsyncIterator[RedisClient]:
    """A plain client of whatever the URL names: one server, a cluster, a Sentinel's master."""
    client, sentinels = client_for(url, {})
    try:
        if isinstance(client, RedisCluster):
            await client.initialize()  # learn the slot map before asking nodes by slot
        yield client
    finally:
        for closing in (client, *sentinels):
            await closing.aclose()


async def read_int(client: RedisClient, key: str) -> int:
    """The integer stored under `key` (0 when absent)."""
    raw = await client.get(key)
    return int(raw) if raw is not None else 0


async def subscribers(client: RedisClient, channel: str) -> int:
    """How many connections listen on `channel`, classic or sharded, on any node."""
    if not isinstance(client, RedisCluster):
        return int(dict(await client.pubsub_numsub(channel)).get(channel.encode(), 0))
    total = 0
    for node in client.get_primaries():
        counts = await client.pubsub_numsub(channel, target_nodes=node)
        total += int(dict(counts).get(channel.encode(), 0))
        with contextlib.suppress(ResponseError):  # no sharded pub/sub before Redis 7
            counts = await client.pubsub_shardnumsub(channel, target_nodes=node)
            total += int(dict(counts).get(channel.encode(), 0))
    return total


async def pubsub_connections(client: RedisClient) -> int:
    """How many pub/sub connections the server (every cluster node) holds."""
    if not isinstance(client, RedisCluster):
        return len(await client.client_list(_type="pubsub"))
    total = 0
    for node in client.get_primaries():
        total += len(await client.client_list(_type="pubsub", target_nodes=node))
    return total


async def until_subscribed(
    client: RedisClient, channel: str, count: int = 1, timeout: float = 10
) -> None:
    """Return once `count` connections listen on `channel`.

    Redis sends no event when someone subscribes, so this asks `PUBSUB NUMSUB` (and
    `SHARDNUMSUB`) until it is true, failing the test after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while await subscribers(client, channel) < count:
        assert time.monotonic() < deadline, f"fewer than {count} subscribers on {channel!r}"
        await asyncio.sleep(0.005)
