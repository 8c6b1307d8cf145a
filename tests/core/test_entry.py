"""The stored entry format: versioned, checksummed, never raising on bad bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atomcache_core.entry import FORMAT_VERSION, Entry, decode_entry, encode_entry

entries = st.builds(
    Entry,
    payload=st.binary(),
    created_at=st.floats(allow_nan=False),
    fresh_until=st.floats(allow_nan=False),
    stale_until=st.floats(allow_nan=False),
    compute_time=st.floats(allow_nan=False),
    etag=st.none() | st.text(st.characters(codec="latin-1"), min_size=1, max_size=80),
    flags=st.integers(0, 255),
)


@given(entries)
def test_round_trip(entry: Entry) -> None:
    """Every entry decodes to itself."""
    assert decode_entry(encode_entry(entry)) == entry


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    """Any bytes decode to an Entry or to None, never an exception."""
    result = decode_entry(data)
    assert result is None or isinstance(result, Entry)


@given(entries, st.data())
def test_truncation_and_bit_flips_are_detected(entry: Entry, data: st.DataObject) -> None:
    """Cutting or altering the stored bytes makes them invalid."""
    encoded = encode_entry(entry)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    assert decode_entry(encoded[:cut]) is None
    position = data.draw(st.integers(0, len(encoded) - 1))
    flipped = bytearray(encoded)
    flipped[position] ^= 1 << data.draw(st.integers(0, 7))
    assert decode_entry(bytes(flipped)) is None


def test_other_versions_are_refused() -> None:
    """An entry of another format version decodes to None."""
    data = bytearray(encode_entry(Entry(b"x", 1, 2, 3)))
    for version in (0, FORMAT_VERSION + 1, 255):
        data[2] = version
        assert decode_entry(bytes(data)) is None


def test_freshness_windows() -> None:
    """Fresh before fresh_until, stale-servable until stale_until, then neither."""
    entry = Entry(b"", created_at=0, fresh_until=10, stale_until=20)
    assert entry.is_fresh(5)
    assert not entry.is_servable_stale(5)
    assert entry.is_servable_stale(15)
    assert not entry.is_fresh(15)
    assert not entry.is_servable_stale(20)


def test_oversized_etag_is_refused() -> None:
    """An ETag that does not fit the header's length field raises ValueError."""
    with pytest.raises(ValueError, match="ETag"):
        encode_entry(Entry(b"", 0, 0, 0, etag="x" * 70_000))
