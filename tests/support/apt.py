"""Debian packages the tests need (a browser, a proxy), installed with apt-get when missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Sequence

APT_TIMEOUT = 300.0  # seconds for one apt-get run: Chromium is a large download


def apt_install(packages: Sequence[str], binaries: Sequence[str]) -> str | None:
    """Install `packages` with apt-get unless `binaries` are all there; say why if that fails.

    Returns `None` once every path in `binaries` is an executable, else the reason they
    cannot be had here. When `apt-get install` fails, the package lists are refreshed
    (`apt-get update`) and the install is tried once more.
    """
    if _installed(binaries):
        return None
    missing = " or ".join(binaries)
    them = "them" if len(packages) > 1 else "it"
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        return f"{missing} is missing and there is no apt-get to install {them}"
    if os.geteuid() != 0:
        return f"{missing} is missing and only root may apt-get install {them}"
    install = ["install", "-y", *packages]
    failure = _apt(apt_get, *install)
    if failure is not None:
        failure = _apt(apt_get, "update") or _apt(apt_get, *install)
    if failure is not None:
        return failure
    if not _installed(binaries):
        return f"apt-get installed {' '.join(packages)} but {missing} is missing"
    return None


def _installed(binaries: Sequence[str]) -> bool:
    return all(os.access(path, os.X_OK) for path in binaries)


def _apt(apt_get: str, *arguments: str) -> str | None:
    """Run apt-get; `None` if it succeeded, else what went wrong.

    It waits up to two minutes for another apt-get or dpkg to release its locks.
    """
    command = [apt_get, "-o", "DPkg::Lock::Timeout=120", *arguments]
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=environment,
            timeout=APT_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"`{' '.join(command)}` did not finish in {APT_TIMEOUT:.0f} s"
    if result.returncode == 0:
        return None
    output = (result.stdout + result.stderr).strip().splitlines()[-15:]
    return f"`{' '.join(command)}` exited {result.returncode}:\n" + "\n".join(output)


def server_binary(name: str, path: str) -> str | None:
    """A server's binary: `name` on PATH, else Debian's `path`; `None` if neither."""
    return shutil.which(name) or (path if os.access(path, os.X_OK) else None)


def install_server(name: str, package: str, path: str) -> str | None:
    """Install a server's Debian `package` if its binary is missing; `None` once it is there.

    The package may try to start the system's own server, which fails in many
    containers and makes apt-get fail: the binary is all the tests need, so it counts,
    whatever apt-get said, as soon as it is there. Else returns why it cannot be had.
    """
    if server_binary(name, path) is not None:
        return None
    failure = apt_install((package,), (path,))
    if failure is not None and server_binary(name, path) is None:
        return failure
    return None


def server_or_skip(name: str, package: str, path: str) -> str:
    """The server's binary, installed first if need be; skip the test, saying why, if it can't."""
    reason = install_server(name, package, path)
    binary = server_binary(name, path)
    if reason is not None or binary is None:
        pytest.skip(f"NO {name.upper()} TEST: {name} cannot be installed here: {reason}")
    return binary
