"""Refresh ahead on a fleet: three uvicorn processes keep four routes warm on one Redis.

`@cached(refresh_ahead=True)` and `ResponseCache(auto_refresh=True)`, each on an
`async def` and a `def` endpoint (refresh_fleet_app.py, TTL 3 s, 0.3 s of work per
run). After one cold request, requests go round the three processes for three TTLs,
with one `Host` as behind a load balancer (the host is part of an HTTP entry's key):
every answer is a hit (none waited for a computation), and the fleet renews each entry
once per expiry (each process keeping it warm alone would renew it three times).
"""

from __future__ import annotations

import math
import time
import uuid
from pathlib import Path

import httpx
from redis.asyncio import Redis

from atomcache_core._refresh import lead_time
from support.servers import uvicorn_processes

HERE = Path(__file__).parent
ROUTES = ("cached-async", "cached-sync", "legacy-async", "legacy-sync")
TTL = 3.0  # as in refresh_fleet_app.py


async def test_three_processes_renew_each_entry_once_per_expiry(redis_url: str) -> None:
    """Three TTLs of hits on every route, each renewed once per expiry by the fleet."""
    namespace = f"refresh-{uuid.uuid4().hex[:10]}"
    env = {"ATOMCACHE_REDIS_URL": redis_url, "ATOMCACHE_NAMESPACE": namespace}
    control = Redis.from_url(redis_url)
    async with (
        uvicorn_processes(
            "refresh_fleet_app:app", 3, env=env, pythonpath=[str(HERE), str(HERE.parent)]
        ) as urls,
        httpx.AsyncClient(timeout=10, headers={"host": "shop.example"}) as client,
    ):
        for route in ROUTES:
            cold = await client.get(f"{urls[0]}/{route}")
            assert cold.headers["cache-status"].startswith("atomcache; fwd=miss; stored")
        statuses: list[str] = []
        started = time.monotonic()
        index = 0
        while time.monotonic() - started < 3 * TTL:
            for route in ROUTES:
                answer = await client.get(f"{urls[index % 3]}/{route}")
                statuses.append(f"{route}: {answer.headers['cache-status']}")
            index += 1
        assert all(": atomcache; hit" in status for status in statuses), [
            status for status in statuses if ": atomcache; hit" not in status
        ]
        elapsed = time.monotonic() - started
    runs = {route: int(await control.get(f"{namespace}:runs:{route}") or 0) for route in ROUTES}
    await control.aclose()
    most = 1 + math.ceil(elapsed / (TTL - lead_time(TTL))) + 1
    for route, count in runs.items():
        assert 1 + 3 <= count <= most, f"{route}: {count} runs in {elapsed:.1f} s (at most {most})"
