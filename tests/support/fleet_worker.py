"""One process of a fleet: C concurrent `get_or_set` calls of one key, results as JSON.

Started by `support.fleet` with a JSON config as its argument. It prints "ready" once
connected, waits for a line on stdin ("go"), runs the callers, prints one JSON line
and exits. The factory counts its runs fleet-wide in Redis (`INCR`, on the server of
`control_url`) and announces each start on a list, so a test can react (e.g. SIGKILL
the leader). URLs may name one server, a cluster or a Sentinel-watched master; the
bookkeeping retries through a failover.

`make_factory` and `run_callers` are that factory and that protocol, for other workers
(bench/_peer_worker.py runs other caches through them).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any, TypeVar

from redis.exceptions import RedisError

from atomcache_core import Cache
from support.fleet import controlling, pubsub_connections, until_subscribed

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from atomcache_core.backends.redis import RedisClient

T = TypeVar("T")


def make_factory(
    config: dict[str, Any], control: RedisClient, watched: RedisClient | None = None
) -> Callable[[], Awaitable[dict[str, Any]]]:
    """The fleet's factory: counts and announces its run, sleeps `delay`, returns the run.

    `watched` is the cache's own Redis, where the first run waits for `await_waiters`
    subscribers (default: `control`).
    """
    pid = os.getpid()
    mode = config.get("mode", "")
    watched = watched if watched is not None else control

    async def factory() -> dict[str, Any]:
        run = int(await persistently(lambda: control.incr(config["counter"])))
        await persistently(lambda: control.rpush(config["events"], f"start:{pid}:{run}"))
        if run == 1 and mode == "hang-first":
            await asyncio.sleep(3600)
        if run == 1 and config.get("await_waiters"):
            await persistently(
                lambda: _await_subscribers(watched, config["channel"], config["await_waiters"])
            )
        await asyncio.sleep(config["delay"])
        if run == 1 and mode == "fail-first":
            msg = "the first computation fails"
            raise RuntimeError(msg)
        return {"run": run, "pid": pid}

    return factory


async def run_callers(
    config: dict[str, Any], call: Callable[[], Awaitable[Any]]
) -> list[dict[str, Any]]:
    """Say "ready", wait for "go", run `callers` concurrent calls; return what each got."""

    async def caller() -> dict[str, Any]:
        started = time.monotonic()
        try:
            value = await call()
        except Exception as exc:  # noqa: BLE001 - reported to the test
            return {"error": repr(exc), "latency": time.monotonic() - started}
        return {"value": value, "latency": time.monotonic() - started, "done": time.time()}

    print("ready", flush=True)  # noqa: T201 - the protocol with the test
    await asyncio.to_thread(sys.stdin.readline)
    results = await asyncio.gather(*(caller() for _ in range(config["callers"])))
    await asyncio.sleep(config.get("settle", 0))
    return results


async def main(config: dict[str, Any]) -> None:
    """Run the callers described by `config` and print what they got."""
    async with controlling(config["control_url"]) as control:
        if config["control_url"] == config["url"]:
            await run(config, control, control)
            return
        async with controlling(config["url"]) as watched:
            await run(config, control, watched)


async def run(config: dict[str, Any], control: RedisClient, watched: RedisClient) -> None:
    """Run the callers, counting on `control`, and print the report."""
    cache = Cache.from_url(config["url"], namespace=config["namespace"], **config["settings"])
    factory = make_factory(config, control, watched)

    async def naive() -> Any:
        """The baseline without single flight: read, compute on a miss, write."""
        value = await cache.get(config["key"], default=None)
        if value is None:
            value = await factory()
            await cache.set(config["key"], value, ttl=config["call"].get("ttl"))
        return value

    async def call() -> Any:
        if config.get("strategy") == "naive":
            return await naive()
        return await cache.get_or_set(config["key"], factory, **config["call"])

    await control.ping()
    await cache.exists("warm-up")  # open the pool before the clock starts
    results = await run_callers(config, call)
    report = {"pid": os.getpid(), "results": results, "stats": cache.stats.as_dict()}
    print(json.dumps(report), flush=True)  # noqa: T201
    await cache.close()


async def persistently(command: Callable[[], Awaitable[T]]) -> T:
    """Run a bookkeeping command of the test, retrying through a failover (20 s at most)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return await command()
        except RedisError:  # noqa: PERF203 - a retry loop
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _await_subscribers(control: RedisClient, channel: str, count: int) -> None:
    """Hold the leader until `count` processes listen on `channel`; note the connections."""
    await until_subscribed(control, channel, count)
    await control.set(channel + ":clients", await pubsub_connections(control))


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
