"""Serve an app and journal what the server saw: `uvicorn support.recorder:app`.

The app served is the one `RECORDER_APP` names (`"module:attribute"`, importable from
`PYTHONPATH`). One JSON object per line is appended to the file `RECORDER_JOURNAL`:

- `{"event": "response", ...}` when a response starts: the request's `method`, `path`,
  `query` and `request_headers`, the response's `status` and `response_headers`;
- `{"event": "log", ...}` for each record of level INFO or above that the app's module
  logs on its own logger (`logger`, `message`).

Each also has `time`, the server's wall clock. `support.browser.Journal` reads it back.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from atomcache_core.asgi import ASGIApp, Message, Receive, Scope, Send


class JournalWriter:
    """Appends events to the journal file, one line each, written at once."""

    def __init__(self, path: Path) -> None:
        """Write to `path`."""
        self.path = path

    def write(self, event: str, **fields: Any) -> None:
        """Append one event; it is on disk when this returns."""
        line = json.dumps({"event": event, "time": time.time(), **fields}) + "\n"
        with self.path.open("a", encoding="utf-8") as journal:
            journal.write(line)


class JournalHandler(logging.Handler):
    """Logging handler that turns each record into a `log` event."""

    def __init__(self, journal: JournalWriter) -> None:
        """Write records of level INFO and above to `journal`."""
        super().__init__(logging.INFO)
        self.journal = journal

    def emit(self, record: logging.LogRecord) -> None:
        """Journal the record's logger and message."""
        self.journal.write("log", logger=record.name, message=record.getMessage())


class Recorder:
    """ASGI app serving `app`; journals every HTTP response with the request it answers."""

    def __init__(self, app: ASGIApp, journal: JournalWriter) -> None:
        """Serve `app`; write to `journal`."""
        self.app = app
        self.journal = journal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; journal the response as it starts."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def journaled(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.journal.write(
                    "response",
                    method=scope["method"],
                    path=scope["path"],
                    query=scope["query_string"].decode("latin-1"),
                    request_headers=_as_dict(scope["headers"]),
                    status=message["status"],
                    response_headers=_as_dict(message.get("headers", ())),
                )
            await send(message)

        await self.app(scope, receive, journaled)


def _as_dict(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI header pairs as `{lower-case name: value}`, repeated names joined by `, `."""
    joined: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        joined[name] = f"{joined[name]}, {value}" if name in joined else value
    return joined


def recorded_app() -> Recorder:
    """The app `RECORDER_APP` names, journaled to `RECORDER_JOURNAL`."""
    module_name, _, attribute = os.environ["RECORDER_APP"].partition(":")
    journal = JournalWriter(Path(os.environ["RECORDER_JOURNAL"]))
    module = importlib.import_module(module_name)
    logger = logging.getLogger(module_name)
    logger.setLevel(logging.INFO)
    logger.addHandler(JournalHandler(journal))
    return Recorder(getattr(module, attribute), journal)


app = recorded_app()
