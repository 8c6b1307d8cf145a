"""Propagation benchmark: how soon one instance's invalidation reaches the others' local tiers.

Starts a throwaway `redis-server` (unless ATOMCACHE_REDIS_URL is set) and 4 worker
processes, each with a cache of its own on it, `Cache.from_url(url, namespace=...,
local_ttl=60)`, all in one namespace. Each round, one worker (each in turn) stores a
key with a tag, and every worker reads it until its local tier answers it (the tier's
`hits` counter grows). The other workers then poll the key on their local tier, one
`cache.get` every `--poll` seconds (asyncio's selector rounds a wait up to 1 ms;
`--poll 0` spins), while the writer invalidates it: `delete`,
`invalidate_tags` of its tag or `set` of a new value, in turn. A reader's sample is the
time from the start of the writer's call to the end of its own first read that no
longer returns the old value, both taken with `time.time()` (one clock: every process
runs on this machine). A reader still reading the old value 2 s after the call fails
the run: its local tier missed the announcement.

It prints the samples' p50, p99 (goal: at most 50 ms) and slowest, in all and per kind
of invalidation, with the writer's own call time (the Redis write, then the
announcement's `PUBLISH`), and writes them to bench/results/propagation.json;
bench/goals.py says whether the goal is met, bench/report.py plots the distribution.

    python bench/propagation.py [--processes 4] [--rounds 200] [--poll 0.0002]
"""

# ruff: noqa: E402 - the imports come after the sys.path fix below

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
# bench/http.py would stand in for the standard library's `http` (see its header).
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH]
sys.path.insert(0, str(BENCH.parent / "tests"))

from atomcache_core import Cache
from atomcache_core.backends.tiered import TieredStorage
from support.redis_server import RedisServer

RESULTS = BENCH / "results"
GOAL_MS = 50.0  # p99 from the writer's call to the other instances' first fresh read
KINDS = ("delete", "invalidate_tags", "set")
LOCAL_TTL = 60.0  # far longer than a run: only an announcement can make a reader move on
TTL = 300.0
WATCH_TIMEOUT = 2.0  # seconds a reader may still see the old value before the run fails
ANSWER_TIMEOUT = 30.0  # seconds the coordinator waits for a worker's answer
START_TIMEOUT = 60.0  # seconds for a worker's imports, connection and first subscription


# The worker: one process, one cache, commands from stdin, one JSON answer per line.


def say(answer: dict[str, Any]) -> None:
    """Send one answer to the coordinator."""
    print(json.dumps(answer), flush=True)


def local_tier(cache: Cache) -> TieredStorage:
    """The cache's local tier."""
    tier = cache.storage
    if not isinstance(tier, TieredStorage):
        raise TypeError(f"a cache with local_ttl has a TieredStorage, not {tier!r}")
    return tier


async def read_locally(cache: Cache, key: str, expected: Any, timeout: float) -> int:
    """Read `key` until its local tier answers it with `expected`; return the reads made."""
    tier = local_tier(cache)
    deadline = time.monotonic() + timeout
    reads = 0
    while True:
        before = tier.hits
        value = await cache.get(key)
        reads += 1
        if value != expected:
            raise RuntimeError(f"{key!r} reads {value!r}, expected {expected!r}")
        if tier.hits > before:
            return reads
        if time.monotonic() > deadline:
            raise RuntimeError(f"{key!r} never came from the local tier in {timeout} s")
        await asyncio.sleep(0.001)


async def watch(cache: Cache, key: str, old: Any, poll: float) -> None:
    """Say when the old value is read locally, then poll until it is gone; say when."""
    tier = local_tier(cache)
    await read_locally(cache, key, old, WATCH_TIMEOUT)
    hits = tier.hits
    say({"watching": True})
    reads = 0
    deadline = time.time() + WATCH_TIMEOUT
    while True:
        began = time.time()
        value = await cache.get(key)
        reads += 1
        now = time.time()
        if value != old:
            local = tier.hits - hits
            say({"seen": now, "read": now - began, "reads": reads, "local_reads": local})
            return
        if now > deadline:
            raise RuntimeError(f"{key!r} still read the old value {WATCH_TIMEOUT} s later")
        await asyncio.sleep(poll)


async def invalidate(cache: Cache, kind: str, key: str, value: Any) -> None:
    """The writer's change of `key`: `delete`, `invalidate_tags` or `set` of `value`."""
    if kind == "delete":
        await cache.delete(key)
    elif kind == "invalidate_tags":
        await cache.invalidate_tags(value["tag"])
    else:
        await cache.set(key, value, ttl=TTL, tags=[value["tag"]])


async def work(url: str, namespace: str, poll: float) -> None:
    """One worker: wait for its tier to serve, then run the coordinator's commands."""
    cache = Cache.from_url(url, namespace=namespace, local_ttl=LOCAL_TTL)
    tier = local_tier(cache)
    await cache.exists("start the local tier")
    deadline = time.monotonic() + START_TIMEOUT
    while not tier.serving:  # its invalidation channel proved live
        if time.monotonic() > deadline:
            raise RuntimeError(f"the local tier did not serve within {START_TIMEOUT} s")
        await asyncio.sleep(0.005)
    commands = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    say({"ready": True})
    try:
        while line := await commands.readline():
            command = json.loads(line)
            key, value = command["key"], command["value"]
            if command["do"] == "store":
                await cache.set(key, value, ttl=TTL, tags=[value["tag"]])
                say({})
            elif command["do"] == "warm":
                say({"reads": await read_locally(cache, key, value, WATCH_TIMEOUT)})
            elif command["do"] == "watch":
                await watch(cache, key, value, poll)
            else:
                started = time.time()
                await invalidate(cache, command["do"], key, value)
                say({"started": started, "took": time.time() - started})
    finally:
        await cache.close()


# The coordinator: starts the workers, runs the rounds, reports.


@dataclass
class Worker:
    """One worker process and its pipes."""

    process: asyncio.subprocess.Process
    commands: asyncio.StreamWriter
    answers: asyncio.StreamReader

    @classmethod
    async def start(cls, url: str, namespace: str, poll: float) -> Worker:
        """Start a worker process; it answers once its local tier serves."""
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, __file__, "--poll", str(poll)),
            *("--worker", url, namespace),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        if process.stdin is None or process.stdout is None:
            raise RuntimeError("the worker's pipes were not opened")
        return cls(process, process.stdin, process.stdout)

    async def send(self, command: str, key: str, value: Any) -> None:
        """Send one command."""
        self.commands.write(json.dumps({"do": command, "key": key, "value": value}).encode())
        self.commands.write(b"\n")
        await self.commands.drain()

    async def receive(self, timeout: float = ANSWER_TIMEOUT) -> dict[str, Any]:
        """The next answer; the run stops if the worker exited instead (see its stderr)."""
        line = await asyncio.wait_for(self.answers.readline(), timeout)
        if not line:
            await self.process.wait()
            sys.exit(f"worker {self.process.pid} exited ({self.process.returncode})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def ask(self, command: str, key: str, value: Any) -> dict[str, Any]:
        """Send one command and return its answer."""
        await self.send(command, key, value)
        return await self.receive()

    async def stop(self) -> None:
        """Close its commands, so it closes its cache and exits; kill it by PID if it hangs."""
        self.commands.close()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            await self.process.wait()


@dataclass(frozen=True)
class Sample:
    """One reader's delay in one round."""

    kind: str
    delay_ms: float  # from the start of the writer's call to the reader's fresh read
    call_ms: float  # the writer's call, from its start to its return
    read_ms: float  # the reader's fresh read (from Redis: the local copy is gone)
    reads: int  # the reader's reads while waiting, the fresh one included
    local_reads: int  # of which the local tier answered


async def measure_round(number: int, workers: list[Worker]) -> list[Sample]:
    """One round: store, read everywhere until local, invalidate, time the readers."""
    writer = workers[number % len(workers)]
    readers = [worker for worker in workers if worker is not writer]
    kind = KINDS[number % len(KINDS)]
    key = f"item:{number}"
    old = {"round": number, "version": 1, "tag": f"round-{number}"}
    await writer.ask("store", key, old)
    await asyncio.gather(*(worker.ask("warm", key, old) for worker in workers))
    await asyncio.gather(*(reader.ask("watch", key, old) for reader in readers))
    call = await writer.ask(kind, key, {**old, "version": 2})
    seen = await asyncio.gather(*(reader.receive() for reader in readers))
    return [
        Sample(
            kind=kind,
            delay_ms=1000 * (answer["seen"] - call["started"]),
            call_ms=1000 * call["took"],
            read_ms=1000 * answer["read"],
            reads=answer["reads"],
            local_reads=answer["local_reads"],
        )
        for answer in seen
    ]


def summary(samples: list[Sample]) -> dict[str, Any]:
    """Number, p50, p99 and slowest of the delays; the median call and fresh read."""
    delays = sorted(sample.delay_ms for sample in samples)
    return {
        "samples": len(delays),
        "p50_ms": statistics.median(delays),
        "p99_ms": delays[int(0.99 * (len(delays) - 1))],
        "max_ms": delays[-1],
        "call_p50_ms": statistics.median(sample.call_ms for sample in samples),
        "read_p50_ms": statistics.median(sample.read_ms for sample in samples),
    }


async def run(url: str, processes: int, rounds: int, poll: float) -> list[Sample]:
    """Start the workers, run the rounds, stop the workers; every reader's samples."""
    namespace = f"bench-propagation-{uuid.uuid4().hex[:8]}"
    workers: list[Worker] = []
    try:
        for _ in range(processes):
            # one by one: those started are stopped below even if a later one fails
            workers.append(await Worker.start(url, namespace, poll))  # noqa: PERF401
        for worker in workers:
            await worker.receive(START_TIMEOUT)
        samples: list[Sample] = []
        for number in range(rounds):
            samples += await measure_round(number, workers)
    finally:
        for worker in workers:
            await worker.stop()
    return samples


def main() -> None:
    """Run the fleet (or, with --worker, be one of its processes); print and write figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--poll", type=float, default=0.0002, help="seconds between reads")
    parser.add_argument("--worker", nargs=2, metavar=("URL", "NAMESPACE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        url, namespace = args.worker
        asyncio.run(work(url, namespace, args.poll))
        return
    print(
        f"propagation: {args.processes} processes with a local tier, {args.rounds} rounds "
        f"({', '.join(KINDS)} in turn), a read every {args.poll * 1000:g} ms while waiting"
    )
    started = time.monotonic()
    given = os.environ.get("ATOMCACHE_REDIS_URL")
    with contextlib.nullcontext() if given else RedisServer() as server:
        url = given or (server.url if server is not None else "")
        samples = asyncio.run(run(url, args.processes, args.rounds, args.poll))
    kinds = {kind: summary([s for s in samples if s.kind == kind]) for kind in KINDS}
    overall = summary(samples)
    for name, figures in (*kinds.items(), ("all", overall)):
        print(
            f"{name:>16}: {figures['samples']:>4} samples, p50 {figures['p50_ms']:6.2f} ms, "
            f"p99 {figures['p99_ms']:6.2f} ms, slowest {figures['max_ms']:6.2f} ms "
            f"(p50 of the writer's call {figures['call_p50_ms']:.2f} ms, of the fresh "
            f"read {figures['read_p50_ms']:.2f} ms)"
        )
    met = overall["p99_ms"] <= GOAL_MS
    verdict = "met" if met else "not met"
    local = sum(sample.local_reads for sample in samples)
    print(
        f"goal: p99 <= {GOAL_MS:.0f} ms: {overall['p99_ms']:.2f} ms, {verdict}; "
        f"{local} of {sum(sample.reads for sample in samples)} reads while waiting were "
        f"local hits; {time.monotonic() - started:.1f} s in all"
    )
    RESULTS.mkdir(exist_ok=True)
    results = {
        "processes": args.processes,
        "rounds": args.rounds,
        "poll_s": args.poll,
        "local_ttl_s": LOCAL_TTL,
        **overall,
        "goal_ms": GOAL_MS,
        "met": met,
        "kinds": kinds,
        "delays_ms": {kind: [s.delay_ms for s in samples if s.kind == kind] for kind in KINDS},
    }
    (RESULTS / "propagation.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
