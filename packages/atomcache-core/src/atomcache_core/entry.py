"""The stored entry: one storage value per key, a versioned header plus the payload.

Layout (big-endian), read in one round trip with the payload::

    magic    2 bytes   b"AC"
    version  1 byte    FORMAT_VERSION
    flags    1 byte    reserved, 0
    created  float64   wall-clock seconds when stored
    fresh    float64   wall-clock seconds until which the entry is fresh
    stale    float64   wall-clock seconds until which it may be served stale
    compute  float64   seconds the value took to compute (0 if set directly)
    etag_len uint16    length of the ETag that follows (0: none)
    crc32    uint32    checksum of the header before it and of everything after it
    etag     etag_len bytes, ASCII
    payload  the serializer's bytes

Anything that does not match (other magic, another version, a wrong checksum, a
truncated value) decodes to `None`, which the cache counts as a corrupt miss.
Times are wall-clock (`time.time()`) because several hosts read the same entry.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

__all__ = ["FORMAT_VERSION", "Entry", "decode_entry", "encode_entry"]

FORMAT_VERSION = 1
_MAGIC = b"AC"
_FIELDS = struct.Struct(">2sBBddddH")
_CHECKSUM = struct.Struct(">I")
_HEADER_SIZE = _FIELDS.size + _CHECKSUM.size
_MAX_ETAG_BYTES = 0xFFFF


@dataclass(frozen=True, slots=True)
class Entry:
    """A decoded entry.

    Attributes:
        payload: The serializer's bytes (or the HTTP body for HTTP entries).
        created_at: Wall-clock time it was stored.
        fresh_until: Wall-clock time until which it is fresh.
        stale_until: Wall-clock time until which it may still be served stale.
        compute_time: Seconds the value took to compute, used for early refresh.
        etag: The entity tag stored with an HTTP entry, quoted; `None` otherwise.
        flags: Reserved bits, 0.
    """

    payload: bytes
    created_at: float
    fresh_until: float
    stale_until: float
    compute_time: float = 0.0
    etag: str | None = None
    flags: int = 0

    def is_fresh(self, now: float) -> bool:
        """Whether the entry is fresh at wall-clock time `now`."""
        return now < self.fresh_until

    def is_servable_stale(self, now: float) -> bool:
        """Whether the entry is expired but still inside its stale window."""
        return self.fresh_until <= now < self.stale_until


def encode_entry(entry: Entry) -> bytes:
    """Serialize an entry to its stored bytes."""
    # ISO-8859-1: an entity tag may hold obs-text, bytes above 0x7F (RFC 9110 section 8.8.3)
    etag = entry.etag.encode("latin-1") if entry.etag is not None else b""
    if len(etag) > _MAX_ETAG_BYTES:
        msg = f"ETag of {len(etag)} bytes is longer than {_MAX_ETAG_BYTES} bytes"
        raise ValueError(msg)
    fields = _FIELDS.pack(
        _MAGIC,
        FORMAT_VERSION,
        entry.flags,
        entry.created_at,
        entry.fresh_until,
        entry.stale_until,
        entry.compute_time,
        len(etag),
    )
    checksum = zlib.crc32(entry.payload, zlib.crc32(etag, zlib.crc32(fields)))
    return b"".join((fields, _CHECKSUM.pack(checksum), etag, entry.payload))


def decode_entry(data: bytes) -> Entry | None:
    """Decode stored bytes; `None` when they are not a valid entry of this version."""
    if len(data) < _HEADER_SIZE or data[:2] != _MAGIC or data[2] != FORMAT_VERSION:
        return None
    _, _, flags, created, fresh, stale, compute_time, etag_len = _FIELDS.unpack_from(data)
    (checksum,) = _CHECKSUM.unpack_from(data, _FIELDS.size)
    view = memoryview(data)
    body = view[_HEADER_SIZE:]
    if etag_len > len(body) or zlib.crc32(body, zlib.crc32(view[: _FIELDS.size])) != checksum:
        return None
    etag_bytes = bytes(body[:etag_len])
    return Entry(
        payload=bytes(body[etag_len:]),
        created_at=created,
        fresh_until=fresh,
        stale_until=stale,
        compute_time=compute_time,
        etag=etag_bytes.decode("latin-1") if etag_len else None,
        flags=flags,
    )
