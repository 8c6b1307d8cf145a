"""`with_vary`: a field name added to `Vary` once, whoever adds it too."""

from __future__ import annotations

from atomcache_core.http import with_vary


def test_a_name_is_added_once_to_the_first_vary_field() -> None:
    """Appended to the first `Vary`, created when there is none, never listed twice."""
    assert with_vary([(b"etag", b'"a"')], b"Accept-Encoding") == [
        (b"etag", b'"a"'),
        (b"vary", b"Accept-Encoding"),
    ]
    assert with_vary([(b"vary", b"Cookie")], b"Accept-Encoding") == [
        (b"vary", b"Cookie, Accept-Encoding")
    ]
    listed = [(b"vary", b"accept-encoding, Cookie")]
    assert with_vary(listed, b"Accept-Encoding") == listed
