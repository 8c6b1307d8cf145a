"""The processes a test started, found under /proc, so that every one is stopped by PID.

A process is named by its PID and its start time (field 22 of /proc/<pid>/stat): a PID
alone may be reused by an unrelated process once the first has gone. Servers the tests
run in front of their apps (nginx, Varnish) are started on a free port and stopped with
every process under them by `start_listening` and `stop`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from support.redis_server import free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

POLL_INTERVAL = 0.02  # seconds between two looks at a starting or stopping process
_STATE, _PARENT, _START_TIME = 0, 1, 19  # fields of /proc/<pid>/stat, after the command name
_LOCAL_ADDRESS, _TCP_STATE, _INODE = 1, 3, 9  # fields of a line of /proc/net/tcp
_LISTEN = "0A"


def descendants(pid: int) -> list[tuple[int, str]]:
    """Every process under `pid` (children, their children...) as (PID, start time)."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[_PARENT]), []).append(
                (int(entry.name), fields[_START_TIME])
            )
    found: list[tuple[int, str]] = []
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child[0])
    return found


def alive(processes: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Those of `processes` still running: not exited (nor zombies), their PID not reused."""
    return [
        (pid, started)
        for pid, started in processes
        if (fields := _stat(pid)) is not None
        and fields[_START_TIME] == started
        and fields[_STATE] != "Z"
    ]


def kill(processes: list[tuple[int, str]]) -> None:
    """SIGKILL those of `processes` that are still there (a reused PID is left alone)."""
    for pid, started in processes:
        fields = _stat(pid)
        if fields is not None and fields[_START_TIME] == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def listens(pid: int, port: int) -> bool:
    """Whether process `pid` holds a socket listening on TCP `port` (IPv4), not another one."""
    sockets = set()
    with contextlib.suppress(OSError):  # the process may exit, or close a file, meanwhile
        for descriptor in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                sockets.add(descriptor.readlink().name)  # "socket:[<inode>]"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if (
            fields[_TCP_STATE] == _LISTEN
            and fields[_LOCAL_ADDRESS].endswith(f":{port:04X}")
            and f"socket:[{fields[_INODE]}]" in sockets
        ):
            return True
    return False


def connects(port: int) -> bool:
    """Whether a TCP connection to 127.0.0.1:`port` is accepted."""
    try:
        with socket.create_connection(("127.0.0.1", port), 1):
            return True
    except OSError:
        return False


def wait_listening(
    process: subprocess.Popen[bytes],
    port: int,
    timeout: float,
    answers: Callable[[int], bool] = connects,
) -> bool:
    """Wait until `process` listens on `port` and `answers(port)`: `False` if it exits or times out.

    The port counts once the process itself holds the listening socket: another process
    that took the port first would accept connections too while the server retries to
    bind it.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if listens(process.pid, port) and answers(port):
            return process.poll() is None
        time.sleep(POLL_INTERVAL)
    return False


def stop(process: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float) -> None:
    """Stop `process` by PID (SIGTERM, SIGKILL after `timeout`); make sure its children are gone.

    A server stops its workers before it exits; any still there `timeout` later (say,
    because it had to be killed) are killed.
    """
    children = descendants(process.pid)
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            children += descendants(process.pid)
            process.kill()
            process.wait()
    deadline = time.monotonic() + timeout
    while alive(children) and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)
    kill(children)


def start_listening(
    name: str,
    launch: Callable[[int], subprocess.Popen[bytes]],
    logs: Callable[[], str],
    *,
    answers: Callable[[int], bool] = connects,
    start_timeout: float = 10.0,
    stop_timeout: float = 5.0,
    attempts: int = 3,
) -> tuple[subprocess.Popen[bytes], int]:
    """Start a server on a free loopback port; return it and the port once it answers there.

    `launch(port)` starts the server; it counts as up once it holds a socket listening on
    the port and `answers(port)`. A server that exits saying "Address already in use"
    (another process took the free port first) is started again on a new port, up to
    `attempts` times. Raises `RuntimeError`, with `logs()`, if it exits or does not answer
    within `start_timeout`; it is stopped (`stop`) before.
    """
    for attempt in range(1, attempts + 1):
        port = free_port()
        process = launch(port)
        try:
            listening = wait_listening(process, port, start_timeout, answers)
        except BaseException:
            stop(process, stop_timeout)
            raise
        if listening:
            return process, port
        running = process.poll() is None
        stop(process, stop_timeout)
        text = logs()
        if running or "Address already in use" not in text or attempt == attempts:
            state = f"did not answer within {start_timeout:.0f} s" if running else "exited"
            raise RuntimeError(f"{name} {state} (127.0.0.1:{port}):\n{text}")
    raise AssertionError  # pragma: no cover - the last attempt returns or raises


def log_tails(directory: Path, names: Sequence[str], lines: int = 30) -> str:
    """The last `lines` lines of each of the files `names` in `directory`, each under its name."""
    parts = []
    for name in names:
        path = directory / name
        text = path.read_text(errors="replace") if path.exists() else ""
        tail = text.strip().splitlines()[-lines:] or ["(empty)"]
        parts.append(f"--- {name}:\n" + "\n".join(tail))
    return "\n".join(parts)


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after "pid (command)", or `None` if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()  # the command may hold spaces and parentheses
