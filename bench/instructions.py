"""Instructions per request, counted by callgrind: figures that do not move with the machine.

Wall-clock figures on a shared machine move by 30-40% between runs; the number of
instructions a process executes does not (the same code, input and `PYTHONHASHSEED`
give the same count). Each variant runs in a child process under
`valgrind --tool=callgrind`, once with `--calls` requests and once with three times
as many; the difference over the extra requests is the cost of one request, start-up,
imports and warm-up cancelling out. Requests are made in process, calling the ASGI app
with the scope a server would give (bench/hit_path.py's `call`), so no socket or
server is counted; on Redis the server is another process, so a Redis variant counts
the client's side only.

Variants (the apps of bench/http.py; `BODY` is its ~8 KB JSON list):

- `bare ASGI`: a callable sending `BODY` as constant bytes, the physical floor;
- `fastapi constant bytes`, `litestar constant bytes`: the framework's own route
  returning `Response(BODY)`, and the same behind one dependency (FastAPI) or guard
  (Litestar) (`..., 1 check`);
- `... hit (memory)`, `fastapi hit (local tier)`, `fastapi hit (redis)`: a public
  route's hit through `setup_cache` / `AtomCachePlugin`; `fastapi 304 (memory)`: the
  same asked with `If-None-Match`; `... hit, 1 check (memory)`: behind the check;
- `fastapi miss (memory)`: every request a new URL (`?n=...`), computed and stored,
  next to `fastapi uncached`, the same route without the cache: the difference is
  what a miss adds to the handler;
- `core get (redis)`, `redis-py GET + json.loads`: `await cache.get(key)` of `BODY`'s
  list against redis-py reading the same JSON bytes and decoding them, in the same
  event loop (asyncio's own).

The goals are issue 28's ratios; the table marks each met or not. The rows go to
bench/results/instructions.json.

    python bench/instructions.py [--calls 300] [--only VARIANT ...]
"""

# ruff: noqa: E402 - the imports come after the sys.path fix below

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

BENCH = Path(__file__).resolve().parent
# bench/http.py would stand in for the standard library's `http` (see its header).
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH]
sys.path.insert(0, str(BENCH.parent / "tests"))

import fastapi
import litestar

from support.redis_server import RedisServer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


def _bench_module(name: str) -> Any:
    """bench/<name>.py, imported as `bench_<name>` (bench/ is not on the path, see above)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    if spec is None or spec.loader is None:
        msg = f"bench/{name}.py is missing"
        raise ImportError(msg)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


#: bench/hit_path.py: the in-process ASGI calls, and bench/http.py's apps and body.
hit_path = _bench_module("hit_path")

RESULTS = BENCH / "results"
BARE = "bare ASGI"
FASTAPI_BYTES = "fastapi constant bytes"
LITESTAR_BYTES = "litestar constant bytes"
FASTAPI_CHECKED_BYTES = "fastapi constant bytes, 1 check"
LITESTAR_CHECKED_BYTES = "litestar constant bytes, 1 check"
FASTAPI_HIT = "fastapi hit (memory)"
LITESTAR_HIT = "litestar hit (memory)"
LOCAL_HIT = "fastapi hit (local tier)"
REDIS_HIT = "fastapi hit (redis)"
NOT_MODIFIED = "fastapi 304 (memory)"
FASTAPI_CHECKED_HIT = "fastapi hit, 1 check (memory)"
LITESTAR_CHECKED_HIT = "litestar hit, 1 check (memory)"
MISS = "fastapi miss (memory)"
UNCACHED = "fastapi uncached"
CORE_GET = "core get (redis)"
REDIS_PY = "redis-py GET + json.loads"
CHECK = [(b"x-bench", b"1")]
#: Apps started by the variant of this child, stopped when its requests are done.
STARTED: list[Any] = []


@dataclass(frozen=True)
class Goal:
    """`variant` costs at most `ratio` times `baseline`'s instructions per request."""

    variant: str
    ratio: float
    baseline: str


GOALS = (
    Goal(FASTAPI_HIT, 4.0, BARE),
    Goal(LITESTAR_HIT, 4.0, BARE),
    Goal(LOCAL_HIT, 4.0, BARE),
    Goal(CORE_GET, 1.1, REDIS_PY),
    Goal(NOT_MODIFIED, 1.0, FASTAPI_HIT),
    Goal(FASTAPI_CHECKED_HIT, 1.0, FASTAPI_CHECKED_BYTES),
    Goal(LITESTAR_CHECKED_HIT, 1.0, LITESTAR_CHECKED_BYTES),
)


def constant_bytes(framework: str, *, checked: bool) -> Any:
    """The framework's own route answering `BODY` as constant bytes, with its check or not."""
    http = hit_path._HTTP  # noqa: SLF001 - bench/http.py, loaded once by hit_path
    if framework == "fastapi":
        app = fastapi.FastAPI()
        dependencies = [fastapi.Depends(http.bench_dependency)] if checked else None

        @app.get(http.PATH, dependencies=dependencies)
        async def constant() -> fastapi.Response:
            return fastapi.Response(content=hit_path.BODY, media_type="application/json")

        return app

    @litestar.get(http.PATH, guards=[http.bench_guard] if checked else None)
    async def constant_route() -> litestar.Response[bytes]:
        return litestar.Response(content=hit_path.BODY, media_type="application/json")

    return litestar.Litestar([constant_route])


async def http_variant(name: str, redis_url: str) -> Callable[[int], Awaitable[None]]:
    """A started, warmed-up app of variant `name`, as a call of request number `n`.

    `redis_url` ends with a database number of this child's own: the two children of a
    variant must each start cold.
    """
    kinds = {
        FASTAPI_HIT: ("fastapi", "memory"),
        LITESTAR_HIT: ("litestar", "memory"),
        LOCAL_HIT: ("fastapi", "local"),
        REDIS_HIT: ("fastapi", "redis"),
        NOT_MODIFIED: ("fastapi", "memory"),
        FASTAPI_CHECKED_HIT: ("fastapi", "checked-memory"),
        LITESTAR_CHECKED_HIT: ("litestar", "checked-memory"),
        MISS: ("fastapi", "memory"),
        UNCACHED: ("fastapi", "plain"),
    }
    headers = [*hit_path.HEADERS, *(CHECK if "check" in name else [])]
    if name == BARE:
        app: Any = hit_path.bare_asgi
    elif name in (FASTAPI_BYTES, LITESTAR_BYTES, FASTAPI_CHECKED_BYTES, LITESTAR_CHECKED_BYTES):
        app = constant_bytes(name.split(maxsplit=1)[0], checked="check" in name)
    else:
        framework, kind = kinds[name]
        build = (
            hit_path.build_fastapi_app if framework == "fastapi" else hit_path.build_litestar_app
        )
        app = build(kind, redis_url, "bench-instructions")
        lifespan = hit_path.Lifespan(app)
        await lifespan.start()
        STARTED.append(lifespan)
    first = await hit_path.call(app, headers)
    if name == NOT_MODIFIED:
        etag = dict(first[0]["headers"])[b"etag"]
        headers = [*headers, (b"if-none-match", etag)]
    expected = 304 if name == NOT_MODIFIED else 200
    answer = await hit_path.call(app, headers)
    if answer[0]["status"] != expected:
        msg = f"{name}: {answer[0]['status']} instead of {expected}"
        raise RuntimeError(msg)
    status = dict(answer[0]["headers"]).get(b"cache-status", b"")
    if "hit" in name and not status.startswith(b"atomcache; hit"):
        msg = f"{name}: not a hit: {status!r}"
        raise RuntimeError(msg)

    async def one(n: int) -> None:
        await hit_path.call(app, headers, b"n=%d" % n if name == MISS else b"")

    return one


async def data_variant(name: str, redis_url: str) -> Callable[[int], Awaitable[None]]:
    """`core get (redis)` or `redis-py GET + json.loads` of the same value."""
    from redis.asyncio import Redis  # noqa: PLC0415 - these variants only

    from atomcache_core import Cache  # noqa: PLC0415

    value = json.loads(hit_path.BODY)
    if name == CORE_GET:
        cache = Cache.from_url(redis_url, namespace="bench-instructions")
        STARTED.append(cache)
        await cache.set("items", value, ttl=3600)

        async def read_cache(_n: int) -> None:
            await cache.get("items")

        await read_cache(0)
        return read_cache
    client = Redis.from_url(redis_url)
    await client.set("bench:items", json.dumps(value, separators=(",", ":")), ex=3600)

    async def read_plain(_n: int) -> None:
        json.loads(await client.get("bench:items"))  # type: ignore[arg-type]

    await read_plain(0)
    return read_plain


VARIANTS: dict[str, Callable[[str, str], Awaitable[Callable[[int], Awaitable[None]]]]] = {
    **dict.fromkeys(
        (
            BARE,
            FASTAPI_BYTES,
            LITESTAR_BYTES,
            FASTAPI_CHECKED_BYTES,
            LITESTAR_CHECKED_BYTES,
            FASTAPI_HIT,
            LITESTAR_HIT,
            LOCAL_HIT,
            REDIS_HIT,
            NOT_MODIFIED,
            FASTAPI_CHECKED_HIT,
            LITESTAR_CHECKED_HIT,
            MISS,
            UNCACHED,
        ),
        http_variant,
    ),
    CORE_GET: data_variant,
    REDIS_PY: data_variant,
}


def counting(*, on: bool) -> None:
    """Have callgrind count this process's instructions from now on, or stop counting.

    The child starts with counting off (`--instr-atstart=no`): imports and start-up run
    several times faster uncounted. Counting begins and ends at command boundaries a
    little after the call, the same way in both children, so the difference cancels it.
    """
    subprocess.run(
        ["callgrind_control", "--instr=on" if on else "--instr=off", str(os.getpid())],
        check=True,
        capture_output=True,
    )


async def work(name: str, calls: int, redis_url: str) -> None:
    """The child's part: prepare variant `name`, then make `calls` requests."""
    from redis.asyncio import Redis  # noqa: PLC0415 - the child's part only

    async with Redis.from_url(redis_url) as client:
        await client.flushdb()  # both children of a variant start cold
    one = await VARIANTS[name](name, redis_url)
    counting(on=True)
    for n in range(calls):
        await one(n + 1)
    counting(on=False)
    for started in STARTED:
        await (started.stop() if isinstance(started, hit_path.Lifespan) else started.close())


def instructions(name: str, calls: int, redis_url: str, folder: Path) -> int:
    """The instructions a child making `calls` requests of `name` executes.

    It uses a Redis database of its own (`redis_url` ends with its number), emptied
    first.
    """
    out = folder / "callgrind.out"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        sys.executable,
        __file__,
        "--child",
        name,
        "--calls",
        str(calls),
        "--redis-url",
        redis_url,
    ]
    environment = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        msg = f"{name}: the child failed ({done.returncode}):\n{done.stderr[-3000:]}"
        raise RuntimeError(msg)
    return int(found.group(1))


def per_request(name: str, calls: int, redis_url: str) -> float:
    """Instructions per request of `name`: (I(3n) - I(n)) / 2n."""
    with tempfile.TemporaryDirectory() as folder:
        few = instructions(name, calls, f"{redis_url}/1", Path(folder))
        many = instructions(name, 3 * calls, f"{redis_url}/2", Path(folder))
    return (many - few) / (2 * calls)


def report(costs: dict[str, float]) -> list[dict[str, Any]]:
    """The rows: each variant's instructions, its ratio to the bare callable, goals met."""
    rows: list[dict[str, Any]] = []
    for name, cost in costs.items():
        row: dict[str, Any] = {"variant": name, "instructions": round(cost)}
        if BARE in costs:
            row["over bare"] = round(cost / costs[BARE], 2)
        rows.append(row)
    for goal in GOALS:
        if goal.variant in costs and goal.baseline in costs:
            ratio = costs[goal.variant] / costs[goal.baseline]
            rows.append(
                {
                    "goal": f"{goal.variant} <= {goal.ratio} x {goal.baseline}",
                    "ratio": round(ratio, 2),
                    "met": ratio <= goal.ratio,
                }
            )
    return rows


def show(rows: list[dict[str, Any]]) -> None:
    """Print the table and the goals."""
    print(f"{'variant':<36} {'instructions':>12} {'x bare':>7}")
    for row in rows:
        if "variant" in row:
            print(f"{row['variant']:<36} {row['instructions']:>12,} {row.get('over bare', ''):>7}")
    print()
    for row in rows:
        if "goal" in row:
            print(f"{'met ' if row['met'] else 'NOT '} {row['goal']}: {row['ratio']} x")


def main() -> None:
    """Measure every variant (or `--only` those), print and save the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="requests of the shorter run")
    parser.add_argument("--only", nargs="*", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", default="", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        asyncio.run(work(arguments.child, arguments.calls, arguments.redis_url))
        return
    if shutil.which("valgrind") is None:
        sys.exit("bench/instructions.py needs valgrind (Debian: apt-get install valgrind)")
    with RedisServer() as server:
        base = server.url.rsplit("/", 1)[0]  # without its database: each child has its own
        costs = {name: per_request(name, arguments.calls, base) for name in arguments.only}
    rows = report(costs)
    show(rows)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "instructions.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
