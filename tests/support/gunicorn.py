"""gunicorn with `--preload` and uvicorn workers: the app imported once, its workers forked."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from support.processes import log_tails, start_listening, stop

if TYPE_CHECKING:
    from collections.abc import Iterator

WORKER_CLASS = "uvicorn_worker.UvicornWorker"  # uvicorn.workers is deprecated for it
START_TIMEOUT = 30.0  # the arbiter imports the app, then forks every worker
STOP_TIMEOUT = 5.0
GRACEFUL_TIMEOUT = 3  # seconds gunicorn gives its workers to finish on SIGTERM


@contextlib.contextmanager
def gunicorn_workers(
    target: str, workers: int, *, env: dict[str, str], pythonpath: list[str]
) -> Iterator[str]:
    """Run `target` ("module:app") under `gunicorn --preload -w workers`; yield its base URL.

    The module is imported by the arbiter, before it forks the workers, as a production
    `gunicorn --preload -k uvicorn_worker.UvicornWorker` does. Raises `RuntimeError`,
    with gunicorn's log, if it exits or does not accept connections within
    `START_TIMEOUT`. On exit the arbiter gets SIGTERM (SIGKILL after `STOP_TIMEOUT`) and
    every worker is waited for, and killed if it lingers.
    """
    directory = Path(tempfile.mkdtemp(prefix="atomcache-gunicorn-"))
    environment = {**os.environ, **env, "PYTHONPATH": os.pathsep.join(pythonpath)}

    def launch(port: int) -> subprocess.Popen[bytes]:
        with (directory / "gunicorn.log").open("wb") as output:
            return subprocess.Popen(
                [sys.executable, "-m", "gunicorn", target, "--preload",
                 "--workers", str(workers), "--worker-class", WORKER_CLASS,
                 "--bind", f"127.0.0.1:{port}", "--graceful-timeout", str(GRACEFUL_TIMEOUT),
                 "--log-level", "warning"],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=environment,
            )  # fmt: skip

    try:
        process, port = start_listening(
            f"gunicorn {target}",
            launch,
            lambda: log_tails(directory, ["gunicorn.log"]),
            start_timeout=START_TIMEOUT,
            stop_timeout=STOP_TIMEOUT,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(process, STOP_TIMEOUT)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
