"""Another instance of the application: a `Cache` in a process of its own, driven by the test.

`CacheProcess(url, namespace, settings)` starts `python -m support.cache_process` and
sends it one JSON command per line; each answer is one JSON line. Commands are
`Cache` methods: `{"call": "set", "args": ["k", 1]}` answers `{"result": null}`
(or `{"error": "..."}`). The process is killed by PID when the block exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from typing_extensions import Self

from atomcache_core import Cache

TESTS = Path(__file__).parents[1]
STARTUP_TIMEOUT = 60.0


class CacheProcess:
    """A `Cache.from_url(url, namespace=..., **settings)` living in another process."""

    def __init__(self, url: str, namespace: str, settings: dict[str, Any] | None = None) -> None:
        """Describe the instance; `async with` starts it."""
        self.config = {"url": url, "namespace": namespace, "settings": settings or {}}
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Self:
        """Start the process and wait until its cache answers."""
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "support.cache_process",
            json.dumps(self.config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(TESTS)},
        )
        assert await self.call("exists", "warm-up", timeout=STARTUP_TIMEOUT) is False
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Kill the process by PID."""
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            await process.wait()

    async def call(self, method: str, *args: Any, timeout: float = 30.0) -> Any:
        """Run `cache.<method>(*args)` in the process and return its result."""
        process = self.process
        assert process is not None
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write(json.dumps({"call": method, "args": args}).encode() + b"\n")
        await process.stdin.drain()
        line = await asyncio.wait_for(process.stdout.readline(), timeout)
        assert line, f"the cache process exited ({process.returncode})"
        answer = json.loads(line)
        if "error" in answer:
            raise AssertionError(answer["error"])
        return answer["result"]


async def main(config: dict[str, Any]) -> None:
    """Answer commands from stdin until it closes."""
    cache = Cache.from_url(config["url"], namespace=config["namespace"], **config["settings"])
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            command = json.loads(line)
            try:
                answer = {"result": await getattr(cache, command["call"])(*command["args"])}
            except Exception as exc:  # noqa: BLE001 - reported to the test
                answer = {"error": repr(exc)}
            print(json.dumps(answer), flush=True)  # noqa: T201 - the protocol with the test
    finally:
        await cache.close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
