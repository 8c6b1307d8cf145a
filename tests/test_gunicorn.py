"""gunicorn `--preload`: workers forked from one imported app keep their local tiers coherent."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from support.gunicorn import gunicorn_workers
from support.redis_server import SERVER_URLS

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

TESTS = Path(__file__).parent
WORKERS = 4
READS = 200  # reads after an invalidation, none of which may answer the old value
BATCH = 20  # requests sent at once, each on a connection of its own: they reach every worker
PROPAGATION = 1.0  # seconds an invalidation may take to reach every worker
WARM_UP = 30.0  # seconds for every worker to start and hold the value locally


async def read_batch(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """`BATCH` concurrent `GET /value`, each answer naming its worker."""
    responses = await asyncio.gather(*(client.get("/value") for _ in range(BATCH)))
    assert {response.status_code for response in responses} == {200}
    return [response.json() for response in responses]


async def until_held_by_every_worker(client: httpx.AsyncClient, value: str) -> None:
    """Read until every worker has answered `value` from its local tier."""
    holders: set[int] = set()
    deadline = time.monotonic() + WARM_UP
    while len(holders) < WORKERS:
        assert time.monotonic() < deadline, f"only workers {holders} hold {value!r} locally"
        for answer in await read_batch(client):
            assert answer["value"] == value, answer
            if answer["local"]:
                holders.add(answer["pid"])


async def reads_reaching_every_worker(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """At least `READS` answers, read in batches until every worker gave some.

    The kernel hands connections to workers as it likes: on a busy machine 200 of them
    may all miss one worker, so reading goes on (within `WARM_UP`) until each answered.
    """
    answers: list[dict[str, Any]] = []
    deadline = time.monotonic() + WARM_UP
    while len(answers) < READS or len({answer["pid"] for answer in answers}) < WORKERS:
        assert time.monotonic() < deadline, f"workers { ({a['pid'] for a in answers}) } only"
        answers.extend(await read_batch(client))
    return answers


async def until_no_worker_serves(client: httpx.AsyncClient, old: str) -> None:
    """Read until a batch reaching every worker no longer answers `old`."""
    deadline = time.monotonic() + PROPAGATION
    while True:
        answers = await read_batch(client)
        stale = {answer["pid"] for answer in answers if answer["value"] == old}
        if not stale and len({answer["pid"] for answer in answers}) == WORKERS:
            return
        assert time.monotonic() < deadline, f"workers {stale} still serve {old!r}"


async def delete(client: httpx.AsyncClient) -> None:
    """`cache.delete` of the key, in one worker."""
    assert (await client.delete("/value")).json()["deleted"] is True


async def invalidate_tag(client: httpx.AsyncClient) -> None:
    """`cache.invalidate_tags` of the key's tag, in one worker."""
    assert (await client.post("/invalidate", params={"tag": "t"})).json()["removed"] == 1


@pytest.mark.parametrize("server", ["redis", "valkey"])
async def test_preloaded_workers_drop_what_a_sibling_invalidated(
    request: pytest.FixtureRequest, server: str
) -> None:
    """A delete or tag invalidation in one worker stops every worker serving the old value.

    The cache is built at import, in gunicorn's arbiter, before it forks 4 uvicorn
    workers: each holds the value in its local tier, one invalidates it, and within a
    second none answers it again, over 200 reads that reach every worker.
    """
    url = request.getfixturevalue(SERVER_URLS[server])
    env = {"ATOMCACHE_REDIS_URL": url, "ATOMCACHE_NAMESPACE": f"gunicorn-{uuid.uuid4().hex[:8]}"}
    invalidations: list[Callable[[httpx.AsyncClient], Awaitable[None]]] = [delete, invalidate_tag]
    with gunicorn_workers(
        "support.preloaded_app:app", WORKERS, env=env, pythonpath=[str(TESTS)]
    ) as base_url:
        no_keep_alive = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base_url, timeout=10, limits=no_keep_alive) as client:
            for round_number, invalidate in enumerate(invalidations):
                old = f"old-{round_number}"
                await client.put("/value", params={"v": old, "tag": "t"})
                await until_held_by_every_worker(client, old)
                await invalidate(client)
                await until_no_worker_serves(client, old)
                answers = await reads_reaching_every_worker(client)
                assert [answer for answer in answers if answer["value"] is not None] == []
