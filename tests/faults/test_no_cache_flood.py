"""A flood of `Cache-Control: no-cache` over three instances cannot stampede the handler."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
from redis.asyncio import Redis

from support.servers import uvicorn_processes

TESTS = Path(__file__).parents[1]
FLOOD_SECONDS = 5.0
MIN_REFRESH_INTERVAL = 1.0  # the default, which the fleet app's route uses


async def test_no_cache_flood_recomputes_at_most_once_per_interval(redis_url: str) -> None:
    """5 s of no-cache requests on 3 processes: <= ceil(5 / interval) + 1 runs, all 200."""
    namespace = f"flood-{uuid.uuid4().hex[:10]}"
    env = {"ATOMCACHE_REDIS_URL": redis_url, "ATOMCACHE_NAMESPACE": namespace}
    statuses: Counter[int] = Counter()
    async with (
        uvicorn_processes(
            "fastapi_fleet_app:app", 3, env=env, pythonpath=[str(TESTS / "fastapi"), str(TESTS)]
        ) as urls,
        httpx.AsyncClient(  # one Host for every process, as behind a load balancer
            timeout=30, limits=httpx.Limits(max_connections=60), headers={"host": "shop.example"}
        ) as client,
    ):
        deadline = time.monotonic() + FLOOD_SECONDS

        async def flood(worker: int) -> None:
            url = f"{urls[worker % 3]}/report/2024"
            while time.monotonic() < deadline:
                response = await client.get(url, headers={"cache-control": "no-cache"})
                statuses[response.status_code] += 1

        await asyncio.gather(*(flood(worker) for worker in range(30)))
    control = Redis.from_url(redis_url)
    computations = int(await control.get(f"{namespace}:computations") or 0)
    await control.aclose()
    assert set(statuses) == {200}
    assert sum(statuses.values()) > 100
    assert 1 <= computations <= math.ceil(FLOOD_SECONDS / MIN_REFRESH_INTERVAL) + 1
