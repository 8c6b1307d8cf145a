"""The processes a test started, found under /proc, so that every one is stopped by PID.

A process is named by its PID and its start time (field 22 of /proc/<pid>/stat): a PID
alone may be reused by an unrelated process once the first has gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

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


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after "pid (command)", or `None` if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()  # the command may hold spaces and parentheses
