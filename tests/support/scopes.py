"""ASGI HTTP scopes built by hand, as a server would give them, for tests without a server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable


def http_scope(
    path: str = "/items",
    query: bytes = b"",
    *,
    headers: Iterable[tuple[bytes, bytes]] = (),
    raw_path: bytes | None = None,
    root_path: str = "",
) -> dict[str, Any]:
    """The scope of a GET to `http://shop.example` (unless `headers` name another host).

    `raw_path` defaults to `path` as bytes; `root_path` to none. As given, with nothing
    encoded: a test can send bytes a client library would refuse.
    """
    fields = list(headers)
    if not any(name == b"host" for name, _ in fields):
        fields.insert(0, (b"host", b"shop.example"))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode() if raw_path is None else raw_path,
        "root_path": root_path,
        "query_string": query,
        "headers": fields,
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 50000),
        "state": {},
    }
