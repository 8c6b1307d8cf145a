"""Bytes and keys written by someone else: a miss, never code, never a neighbour's data."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from atomcache_core import Cache, SerializationError
from atomcache_core.entry import Entry, encode_entry
from atomcache_core.http import ResponseSerializer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


class _Exploit:
    """A pickle that, when loaded, creates a file: proof that code ran."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self) -> tuple[object, tuple[list[str]]]:
        return (subprocess.call, (["touch", str(self.sentinel)],))


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[Cache]:
    """A cache with the default (JSON) serializer, in memory then on Redis."""
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    async with Cache.from_url(url, namespace=namespace) as cache:
        yield cache


async def test_a_planted_pickle_is_a_miss_and_runs_nothing(cache: Cache, tmp_path: Path) -> None:
    """A pickle written under a key, raw or inside a valid entry header, is a miss; no code runs."""
    sentinel = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(sentinel))
    wrapped = encode_entry(Entry(payload, 0, 2e9, 2e9))
    for index, planted in enumerate((payload, wrapped)):
        await cache.storage.set(cache.keys.value(f"k{index}"), planted, 60)
        assert await cache.get(f"k{index}", default="miss") == "miss"
        assert await cache.get_or_set(f"k{index}", lambda: "recomputed") == "recomputed"
    assert not sentinel.exists()
    assert cache.stats.corrupt >= 2


def test_the_response_serializer_never_unpickles(tmp_path: Path) -> None:
    """HTTP entries are parsed as a binary layout: a pickle is corrupt data, not code."""
    sentinel = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(sentinel))
    with contextlib.suppress(SerializationError):
        ResponseSerializer().loads(payload)
    assert not sentinel.exists()


def test_the_exploit_really_runs_when_unpickled(tmp_path: Path) -> None:
    """Control: the planted payload does create the file when pickle loads it."""
    sentinel = tmp_path / "pwned"
    script = f"import pickle,sys; pickle.loads(sys.stdin.buffer.read())  # {sentinel}"
    subprocess.run(
        [sys.executable, "-c", script], input=pickle.dumps(_Exploit(sentinel)), check=True
    )
    assert sentinel.exists()


async def test_namespaces_do_not_share_locks_or_notifications(
    redis_url: str, namespace: str
) -> None:
    """`app` and `app2` on one Redis: same key, separate computations, no cross wake-up."""
    first = Cache.from_url(redis_url, namespace=namespace)
    second = Cache.from_url(redis_url, namespace=namespace + "2")
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow() -> str:
        started.set()
        await release.wait()
        return "first"

    try:
        leading = asyncio.create_task(first.get_or_set("k", slow))
        await started.wait()
        assert await second.get_or_set("k", lambda: "second") == "second"
        assert second.stats.waits == 0
        release.set()
        assert await leading == "first"
        assert await second.get("k") == "second"
        assert first.keys.channel("k") != second.keys.channel("k")
    finally:
        await first.close()
        await second.close()
