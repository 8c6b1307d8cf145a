"""The stored response format: what an HTTP entry's payload holds, byte for byte.

A rolling deploy mixes old and new processes on one store: this layout is read by
both, so it changes only with a new format version of the entry around it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from atomcache_core.exceptions import SerializationError

__all__ = ["ResponseSerializer", "StoredResponse"]


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response as kept in the cache: final status, fields and body bytes.

    Attributes:
        status: The status code.
        headers: Stored fields (see `storable_headers`), ETag included.
        body: The body exactly as the framework produced it.
        etag: The strong ETag of `body`, quoted.
        selecting: The secondary key (`selecting_fields`): the names of the response's
            own `Vary` and digests of the values the request had.
    """

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    etag: str
    selecting: tuple[tuple[str, str], ...] = ()


_RESPONSE_HEAD = struct.Struct(">HH")
_FIELD_HEAD = struct.Struct(">HI")


class ResponseSerializer:
    """Stores a `StoredResponse` as compact binary: status, fields, ETag, body.

    Layout: status and field count (uint16 each); per field, name length (uint16) and
    value length (uint32) then both; the ETag as one more field named `etag`, first,
    followed in its value by the secondary key, a line `name<TAB>digest` per field
    (an ETag has no line break); then the body, unchanged, so a hit sends a slice of
    what was read.
    """

    def dumps(self, value: Any) -> bytes:
        """Encode a `StoredResponse`."""
        if not isinstance(value, StoredResponse):
            msg = f"ResponseSerializer stores StoredResponse objects, got {type(value).__name__}"
            raise SerializationError(msg, value_type=type(value).__name__, direction="dumps")
        try:
            validator = b"\n".join(
                [
                    value.etag.encode("latin-1"),  # obs-text is allowed (RFC 9110 8.8.3)
                    *(f"{name}\t{digest}".encode("latin-1") for name, digest in value.selecting),
                ]
            )
            fields = [(b"etag", validator), *value.headers]
            parts = [_RESPONSE_HEAD.pack(value.status, len(fields))]
            for name, field_value in fields:
                parts.extend((_FIELD_HEAD.pack(len(name), len(field_value)), name, field_value))
        except (struct.error, UnicodeEncodeError) as exc:
            msg = (
                f"response with status {value.status!r} and ETag {value.etag!r} does not fit"
                f" the stored layout ({exc}); it needs a status and field count up to 65535,"
                " field names up to 65535 bytes, values up to 4 GiB and an ETag of"
                " ISO-8859-1 characters without a line break"
            )
            raise SerializationError(
                msg, value_type=type(value).__name__, direction="dumps"
            ) from exc
        parts.append(value.body)
        return b"".join(parts)

    def loads(self, data: bytes) -> StoredResponse:
        """Decode bytes made by `dumps`."""
        try:
            status, count = _RESPONSE_HEAD.unpack_from(data)
            position = _RESPONSE_HEAD.size
            fields = []
            for _ in range(count):
                name_length, value_length = _FIELD_HEAD.unpack_from(data, position)
                position += _FIELD_HEAD.size
                name = data[position : position + name_length]
                position += name_length
                fields.append((name, data[position : position + value_length]))
                position += value_length
            if position > len(data) or not fields or fields[0][0] != b"etag":
                raise ValueError("truncated")  # noqa: TRY301 - one handler below
            etag, *lines = fields[0][1].decode("latin-1").split("\n")
            selecting = tuple(tuple(line.split("\t", 1)) for line in lines)
            if any(len(pair) != 2 for pair in selecting):  # noqa: PLR2004 - (name, digest)
                raise ValueError("bad secondary key")  # noqa: TRY301 - one handler below
        except (struct.error, ValueError, UnicodeError) as exc:
            msg = f"stored response is corrupt ({exc}); it is treated as a miss"
            raise SerializationError(msg, value_type="bytes", direction="loads") from exc
        return StoredResponse(status, tuple(fields[1:]), data[position:], etag, selecting)  # type: ignore[arg-type]
