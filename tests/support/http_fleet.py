"""The fleet check shared by the adapters: real server processes on one Redis."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from redis.asyncio import Redis

from support.servers import uvicorn_processes


async def check_fleet(target: str, pythonpath: list[str], redis_url: str) -> None:
    """3 instances of `target` ("module:app"), 150 concurrent requests, one computation.

    The app reads ATOMCACHE_REDIS_URL and ATOMCACHE_NAMESPACE, serves a slow cached
    `GET /report/{year}?detail=` and counts its runs in Redis under
    `<namespace>:computations`. Also checks that an ETag from one instance gives 304
    on every instance. Requests carry one `Host`, as behind a load balancer: the host
    is part of the key.
    """
    namespace = f"fleet-{uuid.uuid4().hex[:10]}"
    env = {"ATOMCACHE_REDIS_URL": redis_url, "ATOMCACHE_NAMESPACE": namespace}
    async with (
        uvicorn_processes(target, 3, env=env, pythonpath=pythonpath) as urls,
        httpx.AsyncClient(
            timeout=30,
            limits=httpx.Limits(max_connections=200),
            headers={"host": "shop.example"},
        ) as client,
    ):
        responses = await asyncio.gather(
            *(client.get(f"{urls[index % 3]}/report/2024?detail=true") for index in range(150))
        )
        assert {response.status_code for response in responses} == {200}
        assert len({response.content for response in responses}) == 1
        etags = {response.headers["etag"] for response in responses}
        assert len(etags) == 1
        control = Redis.from_url(redis_url)
        assert int(await control.get(f"{namespace}:computations") or 0) == 1
        await control.aclose()
        statuses = [response.headers["cache-status"] for response in responses]
        # the leader instance's 50 requests shared its computation; the others waited
        assert sum("stored" in status for status in statuses) == 50
        assert all("stored" in s or "coalesced" in s or "hit" in s for s in statuses)
        etag = etags.pop()
        for url in urls:
            revalidated = await client.get(
                f"{url}/report/2024?detail=true", headers={"if-none-match": etag}
            )
            assert revalidated.status_code == 304
            assert revalidated.headers["etag"] == etag
