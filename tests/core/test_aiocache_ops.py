"""What aiocache and impcache users expect: add, key versions, delete_pattern, a default cache.

Each behaviour runs on every storage a `Cache` can have: in memory, Redis, Valkey, a
Redis Cluster, a Sentinel-watched master, and Redis with the local tier.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis import Redis

from atomcache_core import Cache, ConfigurationError
from atomcache_core.keys import escape_glob, glob_matcher

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

TESTS = Path(__file__).resolve().parents[1]
KINDS = ("memory", "redis", "valkey", "cluster", "sentinel", "local")
URL_FIXTURES = {
    "redis": "redis_url",
    "valkey": "valkey_url",
    "cluster": "cluster_url",
    "sentinel": "sentinel_url",
    "local": "redis_url",
}


def url_of(request: pytest.FixtureRequest, kind: str) -> str:
    """The URL a cache of `kind` is made from."""
    if kind == "memory":
        return "memory://"
    found: str = request.getfixturevalue(URL_FIXTURES[kind])
    return found


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Each kind of storage."""
    found: str = request.param
    return found


@pytest.fixture
async def cache(request: pytest.FixtureRequest, kind: str, namespace: str) -> AsyncIterator[Cache]:
    """A cache of `kind`, in a namespace of its own."""
    local_ttl = 30.0 if kind == "local" else None
    url = url_of(request, kind)
    async with Cache.from_url(url, namespace=namespace, local_ttl=local_ttl, observers=()) as made:
        yield made


async def test_add_stores_only_when_absent(cache: Cache) -> None:
    """First writer wins; the value stays; once gone (deleted or expired) a key can be added."""
    assert await cache.add("job:1", {"owner": "a"}, ttl=60) is True
    assert await cache.add("job:1", {"owner": "b"}, ttl=60) is False
    assert await cache.get("job:1") == {"owner": "a"}
    assert await cache.delete("job:1") is True
    assert await cache.add("job:1", {"owner": "c"}, ttl=60) is True
    assert await cache.get("job:1") == {"owner": "c"}
    assert await cache.add("lease", "x", ttl=0.2, tags=["leases"]) is True
    await asyncio.sleep(0.4)
    assert await cache.add("lease", "y", ttl=60, tags=["leases"]) is True
    assert await cache.invalidate_tags("leases") == 1
    assert await cache.get("lease") is None


ADD_RACE = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from atomcache_core import Cache

    async def main(url, namespace, start, callers):
        async with Cache.from_url(url, namespace=namespace, observers=()) as cache:
            await cache.get("warm-up")
            await asyncio.sleep(max(0.0, start - time.time()))
            won = await asyncio.gather(*(cache.add("claim", i, ttl=60) for i in range(callers)))
        print(json.dumps(sum(won)))

    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
    """
)


async def test_add_is_atomic_under_50_concurrent_callers(
    request: pytest.FixtureRequest, kind: str, cache: Cache
) -> None:
    """Exactly one of 50 concurrent `add`s wins: in 2 processes where storage is shared."""
    if kind == "memory":  # one process's memory: 50 callers in it
        won = await asyncio.gather(*(cache.add("claim", i, ttl=60) for i in range(50)))
        assert sum(won) == 1
        return
    url = url_of(request, kind)
    start = time.time() + 2.0
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            ADD_RACE,
            url,
            cache.namespace,
            str(start),
            "25",
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        outputs = await asyncio.wait_for(
            asyncio.gather(*(worker.communicate() for worker in workers)), 60
        )
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
    assert all(worker.returncode == 0 for worker in workers)
    assert sum(json.loads(output[0]) for output in outputs) == 1
    assert await cache.get("claim") in range(25)


async def test_versions_never_see_each_others_entries(
    request: pytest.FixtureRequest, kind: str, cache: Cache
) -> None:
    """Another version is another key, for every data method and for get_or_set."""
    await cache.set("profile", "v1 shape")
    await cache.set("profile", "v2 shape", version=2)
    assert await cache.get("profile") == "v1 shape"
    assert await cache.get("profile", version=2) == "v2 shape"
    assert await cache.get("profile", version=3) is None
    assert await cache.add("profile", "again", version=3) is True
    assert await cache.exists("profile", version=4) is False
    assert await cache.get_many(["profile"], version=2) == ["v2 shape"]

    calls: list[int] = []

    async def compute(version: int) -> str:
        calls.append(version)
        return f"computed for {version}"

    assert await cache.get_or_set("report", lambda: compute(1)) == "computed for 1"
    assert await cache.get_or_set("report", lambda: compute(2), version=2) == "computed for 2"
    assert await cache.get_or_set("report", lambda: compute(2), version=2) == "computed for 2"
    assert calls == [1, 2]

    await cache.set("tagged", "one", tags=["t"])
    await cache.set("tagged", "two", tags=["t"], version=2)
    assert await cache.invalidate_tags("t", version=2) == 1
    assert await cache.get("tagged") == "one"
    assert await cache.delete("profile", version=2) is True
    assert await cache.get("profile") == "v1 shape"

    # Bumping the cache's own version retires every older entry at once.
    local_ttl = 30.0 if kind == "local" else None
    url = url_of(request, kind)
    if kind != "memory":  # a second Cache shares the storage only where it is shared
        async with Cache.from_url(
            url, namespace=cache.namespace, version=2, local_ttl=local_ttl, observers=()
        ) as bumped:
            assert await bumped.get("profile") is None
            assert await bumped.get("report") == "computed for 2"
            assert await bumped.get("profile", version=1) == "v1 shape"


async def test_delete_pattern_deletes_matching_keys_of_its_namespace_and_version_only(
    request: pytest.FixtureRequest, kind: str, cache: Cache
) -> None:
    """A glob over the keys; other keys, versions and namespaces stay."""
    for key in ("user:1", "user:2", "user:10", "order:1", "user*star"):
        await cache.set(key, key)
    await cache.set("user:1", "v2", version=2)
    assert await cache.delete_pattern("user:?") == 2
    assert await cache.get_many(["user:1", "user:2", "user:10", "order:1"]) == [
        None,
        None,
        "user:10",
        "order:1",
    ]
    assert await cache.delete_pattern("user\\*star") == 1  # the backslash makes * literal
    assert await cache.get("user:1", version=2) == "v2"
    assert await cache.delete_pattern("*", version=2) == 1
    assert await cache.get("order:1") == "order:1"
    assert await cache.delete_pattern("nothing:*") == 0
    with pytest.raises(ConfigurationError, match="pattern must be a str"):
        await cache.delete_pattern(b"user:*")  # type: ignore[arg-type]

    if kind == "memory":
        return
    # A namespace holding glob characters is taken literally: "*" in "a*[" deletes
    # nothing of "ab" or "a[" next to it.
    url = url_of(request, kind)
    local_ttl = 30.0 if kind == "local" else None
    unique = uuid.uuid4().hex[:6]
    names = [f"a*[{unique}", f"ab{unique}", f"a[{unique}", f"a{unique}"]
    caches = [
        Cache.from_url(url, namespace=name, local_ttl=local_ttl, observers=()) for name in names
    ]
    try:
        for each in caches:
            await each.set("k", each.namespace)
        assert await caches[0].delete_pattern("*") == 1
        assert [await each.get("k") for each in caches] == [None, *names[1:]]
    finally:
        for each in caches:
            await each.close()


def test_a_script_uses_the_module_level_decorator_with_no_set_up(redis_url: str) -> None:
    """`@atomcache_core.cached` works at once (in memory), then on Redis once configured."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        from atomcache_core import Cache, cached, configure_default, default_cache

        calls = []

        @cached(ttl=60)
        async def square(x: int) -> int:
            calls.append(x)
            return x * x

        async def main(url: str) -> None:
            assert await square(3) == 9 and await square(3) == 9
            assert calls == [3], calls
            in_memory = configure_default(Cache.from_url(url, namespace=sys.argv[2]))
            assert await square(3) == 9 and await square(3) == 9
            assert calls == [3, 3], calls  # another cache: computed once more, then a hit
            await in_memory.close()
            await default_cache().close()
            print("ok")

        asyncio.run(main(sys.argv[1]))
        """
    )
    namespace = f"module-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(
        [sys.executable, "-c", script, redis_url, namespace],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    with Redis.from_url(redis_url) as client:
        assert client.keys(f"atomcache:{namespace}:v:*")  # the entry lives in Redis


def test_configure_default_refuses_what_is_not_a_cache() -> None:
    """A clear error instead of a failure at the next call."""
    from atomcache_core import configure_default  # noqa: PLC0415 - the name under test

    with pytest.raises(TypeError, match="takes a Cache"):
        configure_default("redis://localhost")  # type: ignore[arg-type]


def test_a_version_must_be_a_positive_integer() -> None:
    """`version=0`, `True` or `"2"` say what is expected."""
    for wrong in (0, -1, True, "2"):
        with pytest.raises(ConfigurationError, match="positive integer"):
            Cache(version=wrong, observers=())  # type: ignore[arg-type]


GLOB_CHARS = "ab*?[]^-\\:"
# Single characters around the ASCII ranges a pattern over GLOB_CHARS can write
# (`]` is 93, `^` 94, `_` 95, backquote 96, `a` 97), so a misread range shows.
KEYS = ["", "a", "b", "ab", "ba", "a:b", "a*b", "a?b", "a[b", "a]b", "a\\b", "aab", "a-b"]
KEYS += ["^", "_", "`", "]", "[", "\\", "-", "*", "?", ":", "c", "Z"]


@pytest.fixture(scope="module")
def glob_server(redis_url: str) -> Redis:
    """A Redis database holding KEYS, to ask `KEYS pattern`."""
    client = Redis.from_url(redis_url.rsplit("/", 1)[0] + "/9")
    client.flushdb()
    for key in KEYS:
        client.set(f"g{key}", 1)
    return client


def assert_glob_agrees(server: Redis, patterns: Sequence[str]) -> None:
    """`glob_matcher` picks from KEYS what Redis's `KEYS` picks, for every pattern."""
    with server.pipeline(transaction=False) as pipe:
        for pattern in patterns:
            pipe.keys("g" + pattern)
        answers = pipe.execute()
    for pattern, found in zip(patterns, answers, strict=True):
        expected = {(key.decode() if isinstance(key, bytes) else key)[1:] for key in found}
        matches = glob_matcher("g" + pattern)
        assert {key for key in KEYS if matches("g" + key)} == expected, pattern
        assert glob_matcher(escape_glob(pattern))(pattern)


def test_the_in_memory_glob_matches_redis_on_every_short_pattern(glob_server: Redis) -> None:
    """Every pattern of up to 4 characters over GLOB_CHARS (11,111 of them) agrees.

    `[a-]` is among them: in Redis a dash before `]` makes a range ending at `]`.
    """
    patterns = [
        "".join(chars)
        for length in range(5)
        for chars in itertools.product(GLOB_CHARS, repeat=length)
    ]
    assert_glob_agrees(glob_server, patterns)


@settings(max_examples=200, deadline=None)
@given(pattern=st.text(alphabet=GLOB_CHARS, min_size=5, max_size=8))
def test_the_in_memory_glob_matches_what_redis_matches(glob_server: Redis, pattern: str) -> None:
    """`glob_matcher` (memory's `delete_matching`) agrees with Redis on longer patterns."""
    assert_glob_agrees(glob_server, [pattern])


async def test_clear_removes_every_version_and_version_narrows_it(cache: Cache) -> None:
    """`clear()` empties the namespace, all versions; `clear(version=N)` only N."""
    for version in (1, 2, 3):
        await cache.set("k", version, tags=["t"], version=version)
    assert await cache.clear(version=3) == 1
    assert await cache.get("k", version=2) == 2
    assert await cache.clear() == 2
    assert [await cache.get("k", version=v) for v in (1, 2, 3)] == [None, None, None]
    assert await cache.invalidate_tags("t", version=2) == 0
