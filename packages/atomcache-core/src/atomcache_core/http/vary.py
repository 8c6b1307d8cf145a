"""The response's own `Vary` (RFC 9110 section 12.5.5, RFC 9111 section 4.1).

Which request fields select a stored response (its secondary key), kept as digests so
that no credential is stored in clear, and how a field name joins a `Vary` list.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["parse_vary", "selecting_fields", "varies", "with_vary"]


def parse_vary(value: bytes | str | None) -> tuple[str, ...]:
    """The field names of a `Vary` value, lower-case, in order, once each (RFC 9110 12.5.5).

    `*` is kept as a name of its own. Never raises.
    """
    if not value:
        return ()
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    names = (name.strip().lower() for name in text.split(","))
    return tuple(dict.fromkeys(name for name in names if name))


def with_vary(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[tuple[bytes, bytes]]:
    """`headers` (lower-case names) with `name` among the field names `Vary` lists.

    Added to the first `Vary` field (else a new one), unless it is listed already, so
    a layer that adds it too never makes it appear twice.
    """
    fields = list(headers)
    for index, (key, value) in enumerate(fields):
        if key == b"vary":
            if name.decode("latin-1").lower() not in parse_vary(value):
                fields[index] = (key, value + b", " + name)
            return fields
    fields.append((b"vary", name))
    return fields


def selecting_fields(
    names: Iterable[str], request_headers: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    """The secondary key of a stored response (RFC 9111 section 4.1).

    Each `Vary` name with a digest of the request's value of it; absent fields have a
    digest of their own. Values are hashed so that no credential (a `Vary: Cookie`) is
    kept in clear; a field sent several times is compared as its comma-joined value.
    """
    return tuple((name, _field_digest(request_headers.get(name))) for name in names)


def varies(selecting: Iterable[tuple[str, str]], request_headers: Mapping[str, str]) -> bool:
    """Whether a request's fields differ from a stored response's secondary key.

    `True` means the stored response must not be used for this request (RFC 9111
    section 4.1).
    """
    return any(_field_digest(request_headers.get(name)) != digest for name, digest in selecting)


def _field_digest(value: str | None) -> str:
    if value is None:
        return "-"
    normalized = ",".join(part.strip() for part in value.split(","))  # RFC 9111 4.1
    encoded = normalized.encode("utf-8", "surrogateescape")
    return hashlib.blake2b(encoded, digest_size=12).hexdigest()
