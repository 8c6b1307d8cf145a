"""The `atomcache` command against real servers: one Redis, Valkey, a cluster, Sentinel."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from redis import Redis

from atomcache_core import Cache
from atomcache_core.backends.tiered import TieredStorage
from atomcache_core.cli import main
from support.redis_server import RedisServer
from support.secure_redis import add_namespace_user

TOPOLOGIES = ("redis_url", "valkey_url", "cluster_url", "sentinel_url")
COMMAND = Path(sys.executable).with_name("atomcache")


def run(*arguments: str, answer: str | None = None) -> tuple[int, str]:
    """The command's exit code and output (stdout alone with --json)."""
    result = CliRunner().invoke(main, list(arguments), input=answer)
    # --json: the object alone (prompts go to stderr); else what a terminal shows
    return result.exit_code, result.stdout if "--json" in arguments else result.output


def store(url: str, namespace: str, key: str, tags: tuple[str, ...] = ()) -> None:
    """Store a value the way an application would."""

    async def write() -> None:
        async with Cache.from_url(url, namespace=namespace, observers=()) as cache:
            await cache.set(key, {"name": "Ada"}, ttl=60, tags=tags)

    asyncio.run(write())


def stored(url: str, namespace: str, key: str) -> Any:
    """The value under `key`, or None."""

    async def read() -> Any:
        async with Cache.from_url(url, namespace=namespace, observers=()) as cache:
            return await cache.get(key)

    return asyncio.run(read())


@pytest.fixture(params=TOPOLOGIES)
def url(request: pytest.FixtureRequest) -> str:
    """A URL of each topology the suite starts."""
    found: str = request.getfixturevalue(request.param)
    return found


async def run_process(*arguments: str) -> tuple[int, str]:
    """The installed command run in a process of its own: its exit code and stdout."""
    process = await asyncio.create_subprocess_exec(
        str(COMMAND), *arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stdout.decode() + stderr.decode()


def test_the_console_script_is_installed() -> None:
    """`atomcache` is on the environment's PATH and answers `--version`."""
    done = subprocess.run(
        [str(COMMAND), "--version"], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "atomcache" in done.stdout


def test_inspect_shows_the_entry_its_tags_and_the_lock(url: str) -> None:
    """Times, size and tags of a stored entry; a held lock with its TTL; a missing key."""
    namespace = f"cli-{uuid.uuid4().hex[:8]}"
    store(url, namespace, "user:1", tags=("users", "team:7"))
    code, output = run("inspect", url, "user:1", "--namespace", namespace, "--json")
    assert code == 0, output
    found = json.loads(output)
    entry = found["entry"]
    assert entry["fresh"] is True
    assert entry["tags"] == ["team:7", "users"]
    assert 59 < entry["fresh_until"] - entry["created_at"] <= 60
    assert entry["payload_bytes"] == len(b'{"name":"Ada"}')
    assert found["lock"] is None

    async def hold_lock() -> None:
        async with Cache.from_url(url, namespace=namespace, observers=()) as cache:
            assert await cache.lock.acquire(cache.keys.lock("user:1"), 30) is not None

    asyncio.run(hold_lock())
    code, output = run("inspect", url, "user:1", "--namespace", namespace, "--json")
    lock = json.loads(output)["lock"]
    assert lock is not None
    assert 25 < lock["remaining_s"] <= 30
    code, output = run("inspect", url, "user:1", "--namespace", namespace)
    assert "tags:         team:7, users" in output
    assert "s left" in output

    code, output = run("inspect", url, "nobody", "--namespace", namespace, "--json")
    assert code == 1
    assert json.loads(output)["entry"] is None


def test_invalidate_removes_the_tagged_entries_only(url: str) -> None:
    """Entries of the tag go; the others stay."""
    namespace = f"cli-{uuid.uuid4().hex[:8]}"
    store(url, namespace, "a", tags=("gone",))
    store(url, namespace, "b", tags=("gone",))
    store(url, namespace, "c", tags=("kept",))
    code, output = run("invalidate", url, "--tag", "gone", "--namespace", namespace, "--json")
    assert code == 0, output
    assert json.loads(output)["removed"] == 2
    assert stored(url, namespace, "a") is None
    assert stored(url, namespace, "c") == {"name": "Ada"}


@pytest.mark.parametrize(
    "purge", [("invalidate", "--tag", "users"), ("clear", "--yes")], ids=["invalidate", "clear"]
)
async def test_invalidate_and_clear_reach_the_local_tiers_of_running_instances(
    url: str, purge: tuple[str, ...]
) -> None:
    """An instance serving an entry from its local tier stops once the command removed it.

    The command announces the removal on the namespace's invalidation channel, as a
    cache with a local tier does, so the tier does not keep the old value for local_ttl.
    """
    namespace = f"cli-{uuid.uuid4().hex[:8]}"
    async with Cache.from_url(url, namespace=namespace, local_ttl=60, observers=()) as cache:
        assert isinstance(cache.storage, TieredStorage)
        tier = cache.storage
        await cache.set("user:1", {"name": "Ada"}, ttl=60, tags=["users"])
        deadline = time.monotonic() + 5
        hits = tier.hits
        while tier.hits == hits:  # until a read is answered from the tier
            assert time.monotonic() < deadline, "the local tier never served the entry"
            assert await cache.get("user:1") == {"name": "Ada"}
            await asyncio.sleep(0.005)
        action, *options = purge
        code, output = await run_process(action, url, *options, "--namespace", namespace, "--json")
        assert code == 0, output
        assert json.loads(output)["local_tiers_told"] is True
        deadline = time.monotonic() + 1
        while await cache.get("user:1") is not None:
            assert time.monotonic() < deadline, "the local tier still serves the removed entry"
            await asyncio.sleep(0.005)


def test_invalidate_says_when_the_local_tiers_could_not_be_told() -> None:
    """PUBLISH refused: the entries go, and the command warns and exits 1."""
    namespace = "shop"
    with RedisServer() as server:
        user_url = add_namespace_user(server, namespace)
        with Redis.from_url(server.unix_url) as admin:
            admin.execute_command("ACL", "SETUSER", "app", "-publish")
        store(user_url, namespace, "a", tags=("gone",))
        code, output = run("invalidate", user_url, "--tag", "gone", "--namespace", namespace)
        assert code == 1, output
        assert "removed 1 entry" in output
        assert "could not tell the running instances' local tiers" in output
        assert stored(user_url, namespace, "a") is None


def test_clear_asks_first_and_empties_one_namespace(redis_url: str) -> None:
    """Declined: nothing goes (exit 1). Confirmed or --yes: the namespace goes, no other."""
    namespace, other = f"cli-{uuid.uuid4().hex[:8]}", f"cli-{uuid.uuid4().hex[:8]}"
    store(redis_url, namespace, "a")
    store(redis_url, other, "a")
    code, _ = run("clear", redis_url, "--namespace", namespace, answer="n\n")
    assert code == 1
    code, output = run("clear", redis_url, "--namespace", namespace, "--json", answer="")
    assert code == 1
    assert json.loads(output) == {"error": "not confirmed: nothing deleted", "exit_code": 1}
    assert stored(redis_url, namespace, "a") is not None
    code, output = run("clear", redis_url, "--namespace", namespace, answer="y\n")
    assert code == 0, output
    assert "removed 1 entry from namespace" in output
    assert stored(redis_url, namespace, "a") is None
    assert stored(redis_url, other, "a") is not None
    store(redis_url, namespace, "b")
    code, output = run("clear", redis_url, "--namespace", namespace, "--yes", "--json")
    assert code == 0
    assert json.loads(output)["removed"] == 1
    assert stored(redis_url, other, "a") is not None


@pytest.mark.parametrize(
    ("fixture", "flavour", "topology"),
    [
        ("redis_url", "redis", "standalone"),
        ("valkey_url", "valkey", "standalone"),
        ("cluster_url", "redis", "cluster"),
        ("sentinel_url", "redis", "sentinel"),
    ],
)
def test_doctor_checks_every_topology(
    request: pytest.FixtureRequest, fixture: str, flavour: str, topology: str
) -> None:
    """Server, topology, eviction, every right the cache uses, pub/sub and latency."""
    url = request.getfixturevalue(fixture)
    code, output = run("doctor", url, "--json")
    assert code == 0, output
    report = json.loads(output)
    checks = {check["name"]: check for check in report["checks"]}
    assert checks["server"]["data"]["flavour"] == flavour
    assert checks["server"]["data"]["topology"] == topology
    rights = [name for name in checks if name.startswith("rights: ")]
    assert len(rights) == 5
    assert all(checks[name]["status"] == "ok" for name in rights)
    assert checks["pub/sub"]["status"] == "ok"
    assert checks["latency"]["data"]["median_ms"] > 0
    assert "eviction" in checks


def test_doctor_names_what_a_restricted_acl_user_may_not_do() -> None:
    """A user limited to its namespace, without scripts: writes and locks are refused."""
    namespace = "shop"
    with RedisServer() as server:
        user_url = add_namespace_user(server, namespace)
        with Redis.from_url(server.unix_url) as admin:
            admin.execute_command("ACL", "SETUSER", "app", "-evalsha", "-eval")
        code, output = run("doctor", user_url, "--namespace", namespace, "--json")
    assert code == 1, output
    report = json.loads(output)
    checks = {check["name"]: check for check in report["checks"]}
    assert checks["rights: write"]["status"] == "error"
    assert "NOPERM" in checks["rights: write"]["detail"] or "permission" in (
        checks["rights: write"]["detail"].lower()
    )
    assert checks["rights: read"]["status"] == "ok"
    assert checks["pub/sub"]["status"] == "ok"
    # CONFIG is refused to the user: the policy is unknown, and the command says so.
    assert checks["eviction"]["status"] == "warning"
    assert "CONFIG is not allowed" in checks["eviction"]["detail"]
    assert "***" in report["url"]
    assert user_url.split("@")[0].split(":")[-1] not in output  # the password


def test_doctor_warns_when_eviction_can_drop_locks() -> None:
    """`allkeys-lru`: locks may be evicted, and single flight with them."""
    with RedisServer() as server:
        with Redis.from_url(server.url) as admin:
            admin.config_set("maxmemory-policy", "allkeys-lru")
        code, output = run("doctor", server.url, "--json")
    assert code == 0, output
    checks = {check["name"]: check for check in json.loads(output)["checks"]}
    assert checks["eviction"]["status"] == "warning"
    assert checks["eviction"]["data"]["policy"] == "allkeys-lru"
    assert "evicted lock" in checks["eviction"]["detail"]


def test_an_unreachable_server_exits_with_3() -> None:
    """Every command says what failed and exits 3 when the server is away."""
    with RedisServer() as server:
        url = server.url
    code, output = run("doctor", url)
    assert code == 3
    assert "could not reach the server" in output
    code, _ = run("invalidate", url, "--tag", "t")  # an operator hears it, nothing is kept
    assert code == 3
    code, _ = run("clear", url, "--namespace", "default", "--yes")
    assert code == 3


def test_clear_empties_every_version_and_version_narrows_it(redis_url: str) -> None:
    """`clear` removes the namespace's entries of every version; `--version N` only N's."""
    namespace = f"cli-{uuid.uuid4().hex[:8]}"

    async def write(version: int) -> None:
        async with Cache.from_url(
            redis_url, namespace=namespace, version=version, observers=()
        ) as cache:
            await cache.set("k", version, tags=["t"])

    for version in (1, 2, 3):
        asyncio.run(write(version))
    code, output = run("clear", redis_url, "--namespace", namespace, "--version", "3", "--yes")
    assert code == 0, output
    code, output = run("inspect", redis_url, "k", "--namespace", namespace, "--version", "2")
    assert code == 0, output
    code, output = run("clear", redis_url, "--namespace", namespace, "--yes", "--json")
    assert json.loads(output)["removed"] == 2
    with Redis.from_url(redis_url) as client:
        assert not client.keys(f"atomcache:{namespace}*")  # entries and tag sets, all versions


def test_bad_urls_are_usage_errors_and_never_show_a_password(redis_url: str) -> None:
    """An unsupported scheme or option exits 2; a wrong password exits 3 and says so."""
    code, output = run("doctor", "http://u:s3cr3tpw@127.0.0.1:6379/0")
    assert code == 2
    assert "s3cr3tpw" not in output
    assert "unsupported cache URL 'http://u:***@" in output
    code, output = run("inspect", f"{redis_url}?socket_timeout=abc", "k", "--json")
    assert code == 2
    assert "socket_timeout" in json.loads(output)["error"]
    host = redis_url.split("://", 1)[1]
    for command in (
        ["inspect", f"redis://nobody:wrong@{host}", "k"],
        ["doctor", f"redis://nobody:wrong@{host}"],
    ):
        code, output = run(*command)
        assert code == 3
        assert f"rejected the credentials of redis://nobody:***@{host}" in output
        assert "wrong" not in output


def test_an_unreachable_cluster_exits_with_3() -> None:
    """A cluster whose nodes are all away: the connection check fails, exit 3."""
    code, output = run("doctor", "redis+cluster://127.0.0.1:1,127.0.0.1:2", "--json")
    assert code == 3, output
    checks = json.loads(output)["checks"]
    assert checks[0]["name"] == "connection"
