"""The `atomcache` command: inspect, invalidate and clear entries, and check a server.

    atomcache inspect URL KEY [--namespace N] [--version V] [--json]
    atomcache inspect URL --http TARGET-URL [--namespace N] [--version V] [--json]
    atomcache invalidate URL --tag T [--tag T2 ...] [--namespace N] [--version V] [--json]
    atomcache clear URL --namespace N [--version V] [--yes] [--json]
    atomcache doctor URL [--namespace N] [--json]

URL is any URL `Cache.from_url` accepts (`redis://`, `rediss://`, `unix://`,
`redis+cluster://`, `redis+sentinel://`; `memory://` holds nothing outside the process
that made it). Output is for people by default and one JSON object with `--json`.
Credentials in URLs are never printed.

Exit codes:

- 0: done (`inspect` found the entry; `doctor` found nothing that stops the cache from
  working; warnings allowed);
- 1: `inspect` found no entry (with `--http`: none for that URL); `clear` was not
  confirmed; `invalidate` or `clear` removed the entries but could not tell the
  running instances' local tiers; `doctor` found a problem;
- 2: a usage error (a missing argument, an unknown option, a URL that `Cache.from_url`
  does not accept);
- 3: the server could not be reached, or refused the credentials.

One module, though longer than the core's others: it is one click command group, whose
commands, shared options and output helpers are declared together around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NoReturn
from urllib.parse import unquote, urlsplit

import click
from redis.exceptions import (
    AuthenticationError,
    NoPermissionError,
    RedisClusterException,
    RedisError,
)

from atomcache_core.backends.tiered import announce_change
from atomcache_core.cache import DEFAULT_NAMESPACE, Cache
from atomcache_core.entry import decode_entry
from atomcache_core.exceptions import (
    AtomCacheError,
    BackendAuthenticationError,
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
)
from atomcache_core.http.keying import sorted_query, target_digest
from atomcache_core.keys import escape_glob, redacted
from atomcache_core.protocols import Event

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Sequence

    from atomcache_core.backends.redis import RedisClient

__all__ = ["main"]

EXIT_NOT_FOUND = 1
EXIT_UNREACHABLE = 3
PINGS = 20
Status = Literal["ok", "warning", "error"]


def _open(url: str, namespace: str, version: int = 1) -> Cache:
    """A cache on `url` that reports no metrics (the command is not the application)."""
    return Cache.from_url(url, namespace=namespace, version=version, observers=())


def _run(work: Coroutine[Any, Any, int], *, as_json: bool) -> None:
    """Run a command's coroutine; exit with its code, 2 for a bad URL, 3 when the server is away.

    The error goes to stderr, or as `{"error": ..., "exit_code": ...}` to stdout with
    `--json`.
    """
    try:
        code = asyncio.run(work)
    except (ConfigurationError, ValueError) as exc:  # the URL or an option in it
        _fail(as_json, str(exc), click.BadParameter.exit_code)
    except (AtomCacheError, RedisError, RedisClusterException, OSError) as exc:
        _fail(as_json, _plain(exc), EXIT_UNREACHABLE)
    raise SystemExit(code)


def _fail(as_json: bool, message: str, code: int) -> NoReturn:  # noqa: FBT001 - the --json flag
    if as_json:
        click.echo(json.dumps({"error": message, "exit_code": code}, indent=2))
    else:
        click.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def _plain(exc: BaseException) -> str:
    """What went wrong, in words for a one-shot command.

    The cache's errors say it already (`BackendAuthenticationError` names the refused
    credentials); a command the client sent itself may meet a bare refusal.
    """
    if isinstance(exc, AuthenticationError):
        return (
            f"the server refused the credentials ({str(exc).rstrip('.')}): check the "
            "user name and password in the URL, or the ACL user's"
        )
    return str(exc).replace("; the next call reconnects by itself", "")


def _emit(as_json: bool, data: dict[str, Any], human: list[str]) -> None:  # noqa: FBT001 - the --json flag
    click.echo(json.dumps(data, indent=2) if as_json else "\n".join(human))


def _when(seconds: float) -> str:
    now = time.time()
    moment = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))
    delta = seconds - now
    relative = f"in {delta:.1f} s" if delta >= 0 else f"{-delta:.1f} s ago"
    return f"{moment} ({relative})"


@click.group(help=__doc__.split("\n\n", 1)[0] if __doc__ else None)
@click.version_option(package_name="atomcache-core")
def main() -> None:
    """The `atomcache` command."""


_namespace = click.option(
    "--namespace", default=DEFAULT_NAMESPACE, show_default=True, help="the cache's namespace"
)
_json = click.option("--json", "as_json", is_flag=True, help="one JSON object, for scripts")
_version = click.option(
    "--version",
    "version",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="the key version (Cache(version=...))",
)


@main.command()
@click.argument("url")
@click.argument("key", required=False)
@click.option(
    "--http",
    "target",
    metavar="TARGET-URL",
    help="find the HTTP responses stored for this URL, as clients request it "
    "(e.g. https://shop.example/items/1?page=2)",
)
@_namespace
@_version
@_json
def inspect(  # noqa: PLR0917 - click passes the command's options by keyword
    url: str,
    key: str | None,
    target: str | None,
    namespace: str,
    version: int,
    as_json: bool,  # noqa: FBT001
) -> None:
    """Show the entry of KEY (or of every response stored for --http TARGET-URL).

    Its times, ETag, size, tags, and the lock on it.
    """
    if (key is None) == (target is None):
        msg = "give either KEY or --http TARGET-URL"
        raise click.UsageError(msg)
    if target is not None:
        digests = _target_digests(target)
        work = _inspect_http(url, target, digests, namespace, version, as_json=as_json)
        _run(work, as_json=as_json)
    _run(_inspect(url, str(key), namespace, version, as_json=as_json), as_json=as_json)


async def _inspect(url: str, key: str, namespace: str, version: int, *, as_json: bool) -> int:
    async with _open(url, namespace, version) as cache:
        found, human = await _describe(cache, key)
    _emit(as_json, {"url": redacted(url), **found}, human)
    return 0 if found["entry"] is not None else EXIT_NOT_FOUND


async def _describe(cache: Cache, key: str) -> tuple[dict[str, Any], list[str]]:
    """What `inspect` says of one key: its entry (`None` when absent) and its lock."""
    namespace = cache.keys.namespace
    value_key = cache.keys.value(key)
    data = await cache.shared_storage.get(value_key)
    found: dict[str, Any] = {"namespace": namespace, "key": key}
    client = cache.redis_client
    lock_key = cache.keys.lock(key)
    holder = await client.get(lock_key) if client is not None else None
    lock_ms = await client.pttl(lock_key) if client is not None and holder else None
    found["lock"] = (
        {"token": _text(holder), "remaining_s": (lock_ms or 0) / 1000} if holder else None
    )
    entry = decode_entry(data) if data is not None else None
    if entry is None:
        found["entry"] = None
        state = "no entry" if data is None else "bytes that are not a valid entry"
        human = [f"{key}: {state} in namespace {namespace!r}"]
        if found["lock"]:
            human.append(f"lock: held, {found['lock']['remaining_s']:.1f} s left")
        return found, human
    tags = await _tags_of(cache, key) if client is not None else []
    found["entry"] = {
        "created_at": entry.created_at,
        "fresh_until": entry.fresh_until,
        "stale_until": entry.stale_until,
        "fresh": entry.is_fresh(time.time()),
        "etag": entry.etag,
        "bytes": len(data or b""),
        "payload_bytes": len(entry.payload),
        "compute_time_s": entry.compute_time,
        "tags": tags,
        "storage_key": value_key,
    }
    human = [
        f"key:          {key} (namespace {namespace!r}, stored as {value_key})",
        f"created:      {_when(entry.created_at)}",
        f"fresh until:  {_when(entry.fresh_until)}",
        f"stale until:  {_when(entry.stale_until)}",
        f"ETag:         {entry.etag or '-'}",
        f"size:         {len(data or b''):,} bytes ({len(entry.payload):,} of payload)",
        f"computed in:  {entry.compute_time:.3f} s",
        f"tags:         {', '.join(tags) if tags else '-'}",
        "lock:         "
        + (
            f"held (token {found['lock']['token']}), {found['lock']['remaining_s']:.1f} s left"
            if found["lock"]
            else "free"
        ),
    ]
    return found, human


#: An HTTP entry's key: `http:<route template>:<target>[:<variant>]` (`request_key`).
_HTTP_KEY = re.compile(r"http:(?P<route>.*?):(?P<target>[0-9a-f]{32})(?::[0-9a-f]{32})?")


def _target_digests(target: str) -> set[str]:
    """Every `target_digest` a request for `target` may have been keyed under.

    Key names hold the target URI hashed (HTTP.md 2.2), and the hash keeps the mount
    point (`root_path`), the path as routed and the path as received (`raw_path`) apart,
    which servers and frameworks fill differently: uvicorn and Starlette's mounts keep
    the mount point in `path` and `raw_path`, hypercorn in `root_path` only, Litestar
    takes it off `path` after routing (and its `is_mount` leaves `root_path` empty).
    Each split of the path at a `/` is tried in each of these ways, with the query as
    sent and sorted (`sort_query`).

    Raises:
        click.BadParameter: `target` is not an absolute `http` or `https` URL.
    """
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        msg = f"--http takes an absolute URL such as https://shop.example/items, got {target!r}"
        raise click.BadParameter(msg)
    host = parts.netloc.rpartition("@")[2]
    raw = parts.path or "/"
    candidates = {("", unquote(raw), raw), ("", unquote(raw), "")}
    for index, char in enumerate(raw):
        if char == "/" and index > 0:
            root, rest = unquote(raw[:index]), unquote(raw[index:])
            for raw_path in (raw, raw[index:], ""):
                for path in (unquote(raw), rest):
                    candidates.update({(root, path, raw_path), ("", path, raw_path)})
    queries = {parts.query, sorted_query(parts.query)}
    return {
        target_digest(parts.scheme, host, root, path, raw_path, query)
        for root, path, raw_path in candidates
        for query in queries
    }


async def _inspect_http(
    url: str, target: str, digests: set[str], namespace: str, version: int, *, as_json: bool
) -> int:
    async with _open(url, namespace, version) as cache:
        client = cache.redis_client
        keys: list[str] = []
        if client is not None:
            pattern = escape_glob(cache.keys.value_prefix) + "*=http:*"
            async for storage_key in client.scan_iter(match=pattern, count=1000):
                key = _text(storage_key).partition("}=")[2]
                matched = _HTTP_KEY.fullmatch(key)
                if matched is not None and matched["target"] in digests:
                    keys.append(key)
        described = [await _describe(cache, key) for key in sorted(keys)]
    entries = [
        {"route": _route_of(found["key"]), **found}
        for found, _ in described
        if found["entry"] is not None
    ]
    human = [f"{_entries(len(entries))} stored for {target} in namespace {namespace!r}"]
    for found, lines in described:
        if found["entry"] is not None:
            human += ["", f"route:        {_route_of(found['key'])}", *lines]
    data = {"url": redacted(url), "namespace": namespace, "http": target, "entries": entries}
    _emit(as_json, data, human)
    return 0 if entries else EXIT_NOT_FOUND


def _route_of(key: str) -> str:
    matched = _HTTP_KEY.fullmatch(key)
    return matched["route"] if matched is not None else ""


def _text(value: bytes | str | None) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


async def _tags_of(cache: Cache, key: str) -> list[str]:
    """The tags recorded for `key`: the tag sets of its bucket that hold its value key."""
    client = cache.redis_client
    if client is None:
        return []
    value_key = cache.keys.value(key)
    bucket_prefix = cache.keys.tag_bucket(key)
    pattern = escape_glob(bucket_prefix) + "*"
    found = []
    async for tag_key in client.scan_iter(match=pattern, count=1000):
        name = _text(tag_key)[len(bucket_prefix) :]
        if name.startswith("!"):  # a tag's stamp (keys.stamp_key), not its set
            continue
        if await client.sismember(tag_key, value_key):
            found.append(name[1:] if name.startswith("=") else f"(hashed) {name[1:]}")
    return sorted(found)


@main.command()
@click.argument("url")
@click.option("--tag", "tags", multiple=True, required=True, help="a tag (repeatable)")
@_namespace
@_version
@_json
def invalidate(
    url: str,
    tags: tuple[str, ...],
    namespace: str,
    version: int,
    as_json: bool,  # noqa: FBT001
) -> None:
    """Remove every entry stored with any of the tags."""
    _run(_invalidate(url, tags, namespace, version, as_json=as_json), as_json=as_json)


async def _invalidate(
    url: str, tags: tuple[str, ...], namespace: str, version: int, *, as_json: bool
) -> int:
    async with _open(url, namespace, version) as cache:
        removed, unannounced = await _remove(
            cache, lambda: cache.invalidate_tags(*tags, strict=True)
        )
    data = {
        "url": redacted(url),
        "namespace": namespace,
        "version": version,
        "tags": list(tags),
        "removed": removed,
        "local_tiers_told": not unannounced,
    }
    human = [f"removed {_entries(removed)} tagged {', '.join(tags)} in {namespace!r}"]
    return _report_removal(as_json, data, human, unannounced)


async def _remove(cache: Cache, removal: Callable[[], Awaitable[int]]) -> tuple[int, str]:
    """Run `removal`, then tell the running instances' local tiers, as the application does.

    A cache with a local tier announces its removals on the namespace's invalidation
    channel (`announce_change`), so that every instance's tier drops what it holds; the
    command has no tier and announces by itself, "everything" as a tag invalidation or
    a `clear` does. Announced even when `removal` fails part way (some entries may be
    gone). Returns the number of entries removed and why the tiers could not be told
    (`""`: they were).
    """
    channel = cache.keys.invalidations
    try:
        removed = await removal()
    except AtomCacheError:
        with contextlib.suppress(AtomCacheError):
            await announce_change(cache.notifier, channel, None)
        raise
    try:
        await announce_change(cache.notifier, channel, None)
    except AtomCacheError as exc:
        return removed, _plain(exc)
    return removed, ""


def _report_removal(
    as_json: bool,  # noqa: FBT001 - the --json flag
    data: dict[str, Any],
    human: Sequence[str],
    unannounced: str,
) -> int:
    """Print what `invalidate` or `clear` did; exit 1 when the local tiers were not told."""
    if not unannounced:
        _emit(as_json, data, [*human, "told the running instances' local tiers"])
        return 0
    warning = (
        f"could not tell the running instances' local tiers ({unannounced}): they may "
        "serve the removed entries for up to their local_ttl; run the command again"
    )
    _emit(as_json, {**data, "warning": warning}, [*human, f"warning: {warning}"])
    return EXIT_NOT_FOUND


def _entries(count: int) -> str:
    return f"{count} entry" if count == 1 else f"{count} entries"


@main.command()
@click.argument("url")
@click.option("--namespace", required=True, help="the namespace to empty")
@click.option(
    "--version",
    "version",
    type=click.IntRange(min=1),
    default=None,
    help="only this key version (default: every version)",
)
@click.option("--yes", is_flag=True, help="do not ask before deleting")
@_json
def clear(url: str, namespace: str, version: int | None, yes: bool, as_json: bool) -> None:  # noqa: FBT001
    """Remove every entry and tag of one namespace, every version (asks first unless --yes)."""
    which = "every version" if version is None else f"version {version}"
    question = f"Delete every entry of namespace {namespace!r} ({which}) at {redacted(url)}?"
    try:
        confirmed = yes or click.confirm(question, err=True)
    except click.Abort:  # no answer (end of input, Ctrl-C)
        confirmed = False
    if not confirmed:
        _fail(as_json, "not confirmed: nothing deleted", EXIT_NOT_FOUND)
    _run(_clear(url, namespace, version, as_json=as_json), as_json=as_json)


async def _clear(url: str, namespace: str, version: int | None, *, as_json: bool) -> int:
    async with _open(url, namespace) as cache:
        removed, unannounced = await _remove(
            cache, lambda: cache.clear(version=version, strict=True)
        )
    data = {
        "url": redacted(url),
        "namespace": namespace,
        "version": version,
        "removed": removed,
        "local_tiers_told": not unannounced,
    }
    human = [f"removed {_entries(removed)} from namespace {namespace!r}"]
    return _report_removal(as_json, data, human, unannounced)


@dataclass
class Check:
    """One finding of `doctor`."""

    name: str
    status: Status
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


#: What each eviction policy means for the cache (Redis's `maxmemory-policy`).
EVICTION = {
    "noeviction": (
        "when memory is full, writes fail: new entries are not stored (the cache fails "
        "open and computes without storing) until memory is freed"
    ),
    "allkeys-lru": "any key may be evicted when memory is full, locks included",
    "allkeys-lfu": "any key may be evicted when memory is full, locks included",
    "allkeys-random": "any key may be evicted when memory is full, locks included",
    "volatile-lru": "keys with a TTL may be evicted, and every lock has one",
    "volatile-lfu": "keys with a TTL may be evicted, and every lock has one",
    "volatile-random": "keys with a TTL may be evicted, and every lock has one",
    "volatile-ttl": "keys nearest their expiry go first, and locks are short-lived",
}
LOCK_EVICTION = (
    "; an evicted lock lets a second process start the same computation (single flight "
    "is lost for that key, nothing else). Keep memory below maxmemory, or give the cache "
    "a server of its own"
)


@main.command()
@click.argument("url")
@_namespace
@_json
def doctor(url: str, namespace: str, as_json: bool) -> None:  # noqa: FBT001
    """Check a server for the cache: version, topology, eviction, ACL rights, pub/sub, latency."""
    _run(_doctor(url, namespace, as_json=as_json), as_json=as_json)


async def _doctor(url: str, namespace: str, *, as_json: bool) -> int:
    checks: list[Check] = []
    unreachable = False
    async with _open(url, namespace) as cache:
        client = cache.redis_client
        if client is None:
            checks.append(
                Check("server", "ok", "memory://: in this process only; nothing to check")
            )
        elif reason := await _unusable(cache):
            checks.append(Check("connection", "error", reason))
            unreachable = True
        else:
            checks += await _server_checks(client, url)
            checks.append(await _eviction_check(client))
            checks += await _rights_checks(cache)
            checks.append(await _pubsub_check(cache))
            checks.append(await _latency_check(client))
    failed = any(check.status == "error" for check in checks)
    data = {
        "url": redacted(url),
        "namespace": namespace,
        "ok": not failed,
        "checks": [asdict(check) for check in checks],
    }
    marks = {"ok": "ok     ", "warning": "WARNING", "error": "ERROR  "}
    human = [f"atomcache doctor {redacted(url)} (namespace {namespace!r})"]
    human += [f"  {marks[check.status]} {check.name}: {check.detail}" for check in checks]
    human.append("problems found" if failed else "no problem stops the cache from working")
    _emit(as_json, data, human)
    if unreachable:
        return EXIT_UNREACHABLE
    return EXIT_NOT_FOUND if failed else 0


async def _unusable(cache: Cache) -> str:
    """Why the cache cannot use the server at all (`Cache.check`), else `""`.

    A command refused by an ACL rule is an answer: the rights checks say what is refused.
    """
    try:
        await cache.check()
    except BackendAuthenticationError as exc:
        return str(exc)
    except BackendUnavailableError as exc:
        return f"could not reach the server: {_plain(exc)}"
    except BackendError:
        return ""
    return ""


async def _server_checks(client: RedisClient, url: str) -> list[Check]:
    """Server version and flavour, and the topology."""
    try:
        info = await client.info("server")
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return [Check("server", "error", f"INFO server failed: {exc}")]
    if isinstance(info, dict) and info and all(isinstance(value, dict) for value in info.values()):
        info = next(iter(info.values()))  # a cluster answers per node
    flavour = (
        "valkey" if "valkey_version" in info or info.get("server_name") == "valkey" else "redis"
    )
    version = str(info.get("valkey_version") or info.get("redis_version", "?"))
    scheme = urlsplit(url).scheme
    topology = (
        "cluster"
        if scheme.endswith("+cluster")
        else "sentinel"
        if scheme.endswith("+sentinel")
        else "standalone"
    )
    detail = f"{flavour} {version}, {topology}"
    data: dict[str, Any] = {"flavour": flavour, "version": version, "topology": topology}
    if topology == "cluster":
        nodes = client.get_nodes() if hasattr(client, "get_nodes") else []
        masters = [node for node in nodes if getattr(node, "server_type", "") == "primary"]
        detail += f" of {len(masters)} masters ({len(nodes)} nodes)"
        data["masters"] = len(masters)
    status: Status = "ok"
    first = version.split(".", 1)[0]
    major = int(first) if first.isdigit() else 0
    if flavour == "redis" and major < 6:  # noqa: PLR2004 - the oldest Redis supported
        status, detail = "error", detail + ": atomcache needs Redis 6 or later"
    return [Check("server", status, detail, data)]


async def _eviction_check(client: RedisClient) -> Check:
    """`maxmemory-policy`, and what it means for entries and locks."""
    try:
        found = await client.config_get("maxmemory-policy")
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        why = (
            "CONFIG is not allowed to this user"
            if isinstance(exc, NoPermissionError) or "NOPERM" in str(exc)
            else "the server refused CONFIG GET"
        )
        return Check(
            "eviction",
            "warning",
            f"could not read maxmemory-policy ({exc}): {why}; ask the server's operator "
            "which policy it has (see docs/operations.md)",
        )
    policy = _text(next(iter(found.values()), "?")) if found else "?"
    meaning = EVICTION.get(policy, "unknown policy")
    if policy != "noeviction":
        meaning += LOCK_EVICTION
    # every policy is a warning: noeviction refuses writes, the others can evict locks
    return Check("eviction", "warning", f"maxmemory-policy {policy}: {meaning}", {"policy": policy})


async def _rights_checks(cache: Cache) -> list[Check]:
    """Each operation the cache uses, done once on a scratch key of the namespace."""
    key = f"atomcache-doctor-{secrets.token_hex(4)}"
    tag = f"atomcache-doctor-{secrets.token_hex(4)}"
    lock_key = cache.keys.lock(key)

    async def store() -> None:
        await cache.set(key, "doctor", ttl=30, tags=[tag])

    async def read() -> None:
        await cache.get(key)

    async def lock() -> None:
        token = await cache.lock.acquire(lock_key, 5)
        if token is not None:
            await cache.lock.release(lock_key, token)

    async def invalidate() -> None:
        await cache.invalidate_tags(tag, strict=True)

    async def delete() -> None:
        await cache.delete(key, strict=True)

    operations: list[tuple[str, str, Callable[[], Awaitable[None]]]] = [
        ("write", "SET, SADD and TIME in a script (EVALSHA)", store),
        ("read", "GET, MGET", read),
        ("lock", "SET NX PX and TIME in a script (EVALSHA), one to release", lock),
        ("invalidate", "SMEMBERS, UNLINK and SET in a script (EVALSHA)", invalidate),
        ("delete", "SET KEEPTTL in a script (EVALSHA), UNLINK", delete),
    ]
    return [await _right(name, commands, operation) for name, commands, operation in operations]


async def _right(name: str, commands: str, operation: Callable[[], Awaitable[None]]) -> Check:
    """Whether one operation of the cache is allowed and works."""
    try:
        await operation()
    except AtomCacheError as exc:
        return Check(f"rights: {name}", "error", f"denied or failed ({commands}): {exc}")
    return Check(f"rights: {name}", "ok", f"allowed ({commands})")


async def _pubsub_check(cache: Cache) -> Check:
    """A notification published and received on the namespace's channel, timed."""
    channel = cache.keys.channel(f"atomcache-doctor-{secrets.token_hex(4)}")
    try:
        async with cache.notifier.subscribe(channel) as subscription:
            started = time.perf_counter()
            await cache.notifier.publish(channel, Event(channel, "stored", "doctor"))
            event = await subscription.wait(5.0)
            elapsed = time.perf_counter() - started
    except AtomCacheError as exc:
        return Check("pub/sub", "error", f"failed ({exc}): waiters could not be woken")
    if event is None:
        return Check("pub/sub", "error", "published, but nothing arrived within 5 s")
    detail = f"round trip {elapsed * 1000:.1f} ms (waiters are woken by notifications)"
    return Check("pub/sub", "ok", detail, {"round_trip_ms": elapsed * 1000})


async def _latency_check(client: RedisClient) -> Check:
    """`PING` round trips: median and slowest, in milliseconds."""
    times = []
    with contextlib.suppress(Exception):
        for _ in range(PINGS):
            started = time.perf_counter()
            await client.ping()
            times.append((time.perf_counter() - started) * 1000)
    if not times:
        return Check("latency", "error", "PING failed")
    median, slowest = statistics.median(times), max(times)
    detail = f"PING median {median:.2f} ms, slowest {slowest:.2f} ms over {len(times)}"
    status: Status = "warning" if median > 5 else "ok"  # noqa: PLR2004 - 5 ms: a hit's budget
    return Check("latency", status, detail, {"median_ms": median, "slowest_ms": slowest})
