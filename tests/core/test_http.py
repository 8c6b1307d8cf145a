"""HTTP rules (RFC 9110, 9111, 9211) as pure functions: examples and properties."""

from __future__ import annotations

import math
import re
import string
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atomcache_core import ConfigurationError, SerializationError
from atomcache_core.asgi import cached
from atomcache_core.http import (
    ResponseSerializer,
    StoredResponse,
    cache_status,
    format_http_date,
    get_header,
    if_none_match,
    make_etag,
    not_modified_headers,
    parse_cache_control,
    parse_entity_tags,
    parse_vary,
    precondition_status,
    render_cache_control,
    response_storable,
    selecting_fields,
    storable_headers,
    varies,
)

Headers = list[tuple[bytes, bytes]]

# RFC 9110 section 5.6.2 (token), 5.6.4 (quoted-string), 8.8.3 (entity-tag).
TCHARS = "!#$%&'*+-.^_`|~" + string.digits + string.ascii_letters
OBS_TEXT = "".join(map(chr, range(0x80, 0x100)))
QDTEXT_OR_PAIR = "\t " + string.punctuation + string.digits + string.ascii_letters + OBS_TEXT
ETAGC = "".join(char for char in string.punctuation if char != '"') + string.ascii_letters
ETAGC += string.digits + OBS_TEXT
TCHARS_RE = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
QUOTED_STRING_RE = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
DIRECTIVE_RE = rf"{TCHARS_RE}(?:=(?:{TCHARS_RE}|{QUOTED_STRING_RE}))?"
CACHE_CONTROL = re.compile(rf"{DIRECTIVE_RE}(?:, {DIRECTIVE_RE})*")
IMF_FIXDATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" \d{4} \d\d:\d\d:\d\d GMT"
)

tokens = st.text(alphabet=TCHARS, min_size=1)
arguments = st.none() | st.integers(min_value=0) | tokens | st.text(alphabet=QDTEXT_OR_PAIR)
field_lists = st.lists(st.tuples(st.binary(max_size=40), st.binary(max_size=200)), max_size=8)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("no-cache, no-store", {"no-cache": None, "no-store": None}),
        ("max-age=0", {"max-age": "0"}),
        (b"max-age=60, public", {"max-age": "60", "public": None}),
        ("No-Cache, MAX-AGE=5", {"no-cache": None, "max-age": "5"}),
        ('private="set-cookie, x", max-age=5', {"private": "set-cookie, x", "max-age": "5"}),
        (r'community="say \"hi\""', {"community": 'say "hi"'}),
        ("  max-age = 5 ,, no-store ", {"max-age": "5", "no-store": None}),
        ("max-age=5, max-age=10", {"max-age": "5"}),
        ("Max-Age=1, max-age=2", {"max-age": "1"}),
        ("stale-if-error=60, x-vendor", {"stale-if-error": "60", "x-vendor": None}),
    ],
)
def test_parse_cache_control_examples(value: str | bytes, expected: dict[str, str | None]) -> None:
    """Directives are a comma list, names lower-cased, quoted arguments unquoted, first wins."""
    assert parse_cache_control(value) == expected


@pytest.mark.parametrize(
    "value",
    [None, "", "   ", ",,,", "=5", '"', '"unterminated, no-store', "max age=5", "no-cache;x"],
)
def test_parse_cache_control_skips_garbage(value: str | None) -> None:
    """Empty, missing and malformed values give no directives instead of raising."""
    assert parse_cache_control(value) == {}


@given(st.text() | st.binary())
def test_parse_cache_control_never_raises(value: str | bytes) -> None:
    """Any text or bytes give a dict of lower-case token names to str or None."""
    directives = parse_cache_control(value)
    for name, argument in directives.items():
        assert name
        assert name == name.lower()
        assert all(char in TCHARS for char in name)
        assert argument is None or isinstance(argument, str)


@pytest.mark.parametrize(
    ("directives", "expected"),
    [
        ({"no-store": None}, "no-store"),
        ({"max-age": 42, "public": None}, "max-age=42, public"),
        ({"private": "set-cookie"}, "private=set-cookie"),
        ({"private": "set-cookie, x"}, 'private="set-cookie, x"'),
        ({"note": 'a "b" \\c'}, r'note="a \"b\" \\c"'),
        ({"note": ""}, 'note=""'),
    ],
)
def test_render_cache_control_examples(
    directives: dict[str, str | int | None], expected: str
) -> None:
    """Bare names, delta-seconds, tokens as is, anything else (even empty) quoted."""
    assert render_cache_control(directives) == expected


@given(st.dictionaries(tokens, arguments, min_size=1))
def test_render_follows_the_grammar_and_parses_back(
    directives: dict[str, str | int | None],
) -> None:
    """Rendered directives match RFC 9111 section 5.2 and parse back to the same values."""
    rendered = render_cache_control(directives)
    assert CACHE_CONTROL.fullmatch(rendered)
    expected: dict[str, str | None] = {}
    for name, argument in directives.items():
        expected.setdefault(name.lower(), None if argument is None else str(argument))
    assert parse_cache_control(rendered) == expected


def test_make_etag_is_strong_quoted_and_stable() -> None:
    """The ETag is a strong quoted tag, pinned so it survives restarts and processes."""
    assert make_etag(b"hello") == '"Rvt0CNTyhSKPSvUW6iWFGw"'
    assert make_etag(b"hello") == make_etag(b"hello")
    assert make_etag(b"hello") != make_etag(b"hello!")
    assert make_etag(b"") != make_etag(b"\x00")


@given(st.binary())
def test_make_etag_of_any_body_is_a_valid_strong_tag(body: bytes) -> None:
    """Every ETag is a quoted opaque tag of etagc characters and matches itself."""
    etag = make_etag(body)
    assert re.fullmatch(r'"[A-Za-z0-9_-]{22}"', etag)
    assert parse_entity_tags(etag) == [etag]
    assert if_none_match(etag.encode("ascii"), etag)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"a"', ['"a"']),
        ('"a", W/"b",  "c"', ['"a"', 'W/"b"', '"c"']),
        (b'W/"x","y"', ['W/"x"', '"y"']),
        ('"a,b", "c"', ['"a,b"', '"c"']),
        ("*", None),
        (" * ", None),
        ("", []),
        ("garbage", []),
        ('"unterminated', []),
        ('w/"x"', ['"x"']),
    ],
)
def test_parse_entity_tags_examples(value: str | bytes, expected: list[str] | None) -> None:
    """If-None-Match is a list of tags as written, `*` is None, non-tags are skipped."""
    assert parse_entity_tags(value) == expected


@given(st.lists(st.tuples(st.booleans(), st.text(alphabet=ETAGC))), st.sampled_from([",", ", "]))
def test_parse_entity_tags_reads_back_any_tag_list(
    tags: list[tuple[bool, str]], separator: str
) -> None:
    """A list of valid entity tags (RFC 9110 section 8.8.3) is read back exactly."""
    written = [("W/" if weak else "") + f'"{opaque}"' for weak, opaque in tags]
    assert parse_entity_tags(separator.join(written)) == written
    assert parse_entity_tags(separator.join(written).encode("latin-1")) == written


@given(st.text() | st.binary())
def test_parse_entity_tags_never_raises(value: str | bytes) -> None:
    """Any text or bytes give None or a list of quoted, optionally weak, tags."""
    tags = parse_entity_tags(value)
    assert tags is None or all(re.fullmatch(r'(W/)?"[^"]*"', tag) for tag in tags)


@pytest.mark.parametrize(
    ("header", "etag", "expected"),
    [
        ('"a"', '"a"', True),
        ('"x", "a", "y"', '"a"', True),
        (b'"x", "a"', '"a"', True),
        ('"x", "y"', '"a"', False),
        ('W/"a"', '"a"', True),
        ('"a"', 'W/"a"', True),
        ('W/"a"', 'W/"a"', True),
        ("*", '"a"', True),
        (None, '"a"', False),
        ("", '"a"', False),
        (b"", '"a"', False),
        ("garbage", '"a"', False),
        ("a", '"a"', False),
    ],
)
def test_if_none_match_uses_weak_comparison(
    header: str | bytes | None, etag: str, *, expected: bool
) -> None:
    """Lists, `*` and weak tags match as RFC 9110 13.1.2 says; no header matches nothing."""
    assert if_none_match(header, etag) is expected


@given(st.none() | st.text() | st.binary(), st.binary())
def test_if_none_match_never_raises(header: str | bytes | None, body: bytes) -> None:
    """Any header gives a bool, and a list containing the tag always matches."""
    etag = make_etag(body)
    assert isinstance(if_none_match(header, etag), bool)
    text = header.decode("latin-1") if isinstance(header, bytes) else header or ""
    if '"' not in text:
        assert if_none_match(f"{text}, W/{etag}", etag)


def test_get_header_joins_repeated_fields() -> None:
    """A missing field is None, a repeated one is joined with commas in order."""
    headers = [(b"vary", b"accept"), (b"etag", b'"a"'), (b"vary", b"cookie")]
    assert get_header(headers, b"etag") == b'"a"'
    assert get_header(headers, b"vary") == b"accept, cookie"
    assert get_header(headers, b"age") is None


def test_storable_headers_drops_hop_by_hop_and_per_response_fields() -> None:
    """Hop-by-hop fields, fields named in Connection, Set-Cookie, Date and Age are dropped."""
    headers = [
        (b"Content-Type", b"application/json"),
        (b"Connection", b"keep-alive, X-Trace"),
        (b"connection", b"Close, x-other"),
        (b"Keep-Alive", b"timeout=5"),
        (b"transfer-encoding", b"chunked"),
        (b"upgrade", b"h2c"),
        (b"te", b"trailers"),
        (b"trailer", b"x-checksum"),
        (b"proxy-connection", b"close"),
        (b"x-trace", b"1"),
        (b"X-Other", b"2"),
        (b"Set-Cookie", b"session=1"),
        (b"date", b"Sun, 06 Nov 1994 08:49:37 GMT"),
        (b"age", b"3"),
        (b"ETag", b'"a"'),
        (b"vary", b"accept"),
    ]
    assert storable_headers(headers) == [
        (b"content-type", b"application/json"),
        (b"etag", b'"a"'),
        (b"vary", b"accept"),
    ]


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (200, [(b"content-type", b"text/plain")], True),
        (200, [(b"cache-control", b"public, max-age=60")], True),
        (404, [], False),
        (500, [], False),
        (304, [], False),
        (200, [(b"Set-Cookie", b"session=1")], False),
        (200, [(b"cache-control", b"no-store")], False),
        (200, [(b"Cache-Control", b"Private")], False),
        (200, [(b"cache-control", b'private="set-cookie"')], False),
        (200, [(b"cache-control", b"max-age=60"), (b"cache-control", b"no-cache")], False),
    ],
)
def test_response_storable(status: int, headers: Headers, *, expected: bool) -> None:
    """Only listed statuses without Set-Cookie, no-store, private or no-cache are stored."""
    assert response_storable(status, headers, frozenset({200})) is expected


def test_response_storable_honours_a_configured_status_list() -> None:
    """Statuses outside the default may be stored when the route lists them."""
    assert response_storable(404, [], {200, 404})
    assert not response_storable(200, [], {404})


def test_not_modified_headers_keeps_exactly_the_validator_fields() -> None:
    """A 304 keeps ETag, Cache-Control, Vary, Content-Location, Expires, Date; nothing else."""
    kept = [
        (b"ETag", b'"a"'),
        (b"cache-control", b"max-age=5"),
        (b"vary", b"accept"),
        (b"content-location", b"/items/1"),
        (b"expires", b"Sun, 06 Nov 1994 08:49:37 GMT"),
        (b"date", b"Sun, 06 Nov 1994 08:49:32 GMT"),
    ]
    dropped = [
        (b"content-type", b"application/json"),
        (b"Content-Length", b"12"),
        (b"content-encoding", b"gzip"),
        (b"x-custom", b"1"),
    ]
    assert not_modified_headers(dropped[:2] + kept + dropped[2:]) == kept


def test_format_http_date_gives_imf_fixdate() -> None:
    """The RFC 9110 section 5.6.7 example is reproduced exactly."""
    assert format_http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert format_http_date(784111777.9) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert format_http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"


@given(st.integers(min_value=0, max_value=253_402_300_799))
def test_format_http_date_of_any_time_parses_back(timestamp: int) -> None:
    """Every timestamp up to year 9999 gives an IMF-fixdate naming the same second."""
    rendered = format_http_date(timestamp)
    assert IMF_FIXDATE.fullmatch(rendered)
    assert parsedate_to_datetime(rendered).timestamp() == timestamp


def test_cache_status_renders_rfc_9211_members() -> None:
    """Cache-Status parameters appear as hit, fwd, stored, ttl, detail after the cache name."""
    assert cache_status(hit=True, ttl=42) == "atomcache; hit; ttl=42"
    assert cache_status(hit=False, forward="miss", stored=True) == "atomcache; fwd=miss; stored"
    assert cache_status(hit=False, forward="request") == "atomcache; fwd=request"
    assert cache_status(hit=True, forward="stale") == "atomcache; hit; fwd=stale"
    assert cache_status(hit=False, forward="uri-miss", ttl=0) == "atomcache; fwd=uri-miss; ttl=0"
    assert cache_status(hit=True, detail="memory") == 'atomcache; hit; detail="memory"'
    assert cache_status(hit=True, name="edge") == "edge; hit"
    assert cache_status(hit=False) == "atomcache"


def test_cache_status_escapes_the_detail_string() -> None:
    """Quotes and backslashes in detail are escaped, as an sf-string requires (RFC 8941 3.3.3)."""
    assert cache_status(hit=True, detail='say "hi" \\') == r'atomcache; hit; detail="say \"hi\" \\"'


def test_response_serializer_round_trip() -> None:
    """A stored response comes back equal, headers in order, a field named etag included."""
    body = b'{"id": 1}'
    response = StoredResponse(
        200, ((b"content-type", b"application/json"), (b"etag", b"x")), body, make_etag(body)
    )
    serializer = ResponseSerializer()
    assert serializer.loads(serializer.dumps(response)) == response


def test_an_etag_with_obs_text_is_stored() -> None:
    """An ETag with bytes above 0x7F (obs-text, RFC 9110 section 8.8.3) round-trips."""
    response = StoredResponse(200, (), b"body", '"caf\xe9-\xff"', (("accept", "d1"),))
    serializer = ResponseSerializer()
    assert serializer.loads(serializer.dumps(response)) == response


@given(st.integers(min_value=100, max_value=599), field_lists, st.binary())
def test_response_serializer_round_trips_any_response(
    status: int, headers: Headers, body: bytes
) -> None:
    """Any status, binary field names and values and body survive dumps and loads."""
    response = StoredResponse(status, tuple(headers), body, make_etag(body))
    serializer = ResponseSerializer()
    assert serializer.loads(serializer.dumps(response)) == response


def test_response_serializer_detects_every_truncation_of_the_fields() -> None:
    """Cutting the data anywhere before the body raises SerializationError on loads."""
    response = StoredResponse(200, ((b"vary", b"accept"), (b"x", b"")), b"body", '"t"')
    data = ResponseSerializer().dumps(response)
    for cut in range(len(data) - len(response.body)):
        with pytest.raises(SerializationError) as info:
            ResponseSerializer().loads(data[:cut])
        assert info.value.direction == "loads"
        assert info.value.value_type == "bytes"


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\xc8\x00\x00", b"\x00\xc8\x00\x01garbage"])
def test_response_serializer_refuses_garbage(data: bytes) -> None:
    """Empty, short, field-less and etag-less data raise SerializationError on loads."""
    with pytest.raises(SerializationError) as info:
        ResponseSerializer().loads(data)
    assert info.value.direction == "loads"


@given(st.binary())
def test_response_serializer_loads_of_any_bytes_raises_only_serialization_error(
    data: bytes,
) -> None:
    """Random bytes either decode to a StoredResponse or raise SerializationError."""
    try:
        assert isinstance(ResponseSerializer().loads(data), StoredResponse)
    except SerializationError as exc:
        assert exc.direction == "loads"


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        ({"status": 200}, "dict"),
        (b"raw", "bytes"),
        (None, "NoneType"),
        (StoredResponse(70_000, (), b"", '"a"'), "StoredResponse"),
        (StoredResponse(200, (), b"", '"\u0100"'), "StoredResponse"),
        (StoredResponse(200, ((b"x" * 70_000, b""),), b"", '"a"'), "StoredResponse"),
    ],
)
def test_response_serializer_dumps_refuses_what_it_cannot_store(
    value: object, type_name: str
) -> None:
    """Non-responses and responses the layout cannot hold raise SerializationError on dumps."""
    with pytest.raises(SerializationError) as info:
        ResponseSerializer().dumps(value)
    assert info.value.direction == "dumps"
    assert info.value.value_type == type_name


@pytest.mark.parametrize(
    ("option", "value"),
    [("ttl", 0), ("ttl", -5), ("ttl", "600"), ("ttl", math.inf), ("ttl", True), ("stale_ttl", -1)],
)
def test_route_options_are_checked_when_the_route_is_declared(option: str, value: Any) -> None:
    """A bad ttl or window on @cached fails at import time, not on every request."""
    with pytest.raises(ConfigurationError, match=option):
        cached(**{option: value})


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, None),
        ({"if-match": '"a"'}, None),
        ({"if-match": '"b", "a"'}, None),
        ({"if-match": '"b"'}, 412),
        ({"if-match": 'W/"a"'}, 412),
        ({"if-match": "*"}, None),
        ({"if-unmodified-since": "Wed, 01 Jan 2020 00:00:00 GMT"}, None),
        ({"if-unmodified-since": "Tue, 31 Dec 2019 23:59:59 GMT"}, 412),
        ({"if-unmodified-since": "not a date"}, None),
        ({"if-match": '"a"', "if-unmodified-since": "Tue, 31 Dec 2019 00:00:00 GMT"}, None),
        ({"if-none-match": 'W/"a"'}, 304),
        ({"if-none-match": '"b"', "if-modified-since": "Fri, 01 Jan 2100 00:00:00 GMT"}, None),
        ({"if-modified-since": "Wed, 01 Jan 2020 00:00:00 GMT"}, 304),
        ({"if-modified-since": "Tue, 31 Dec 2019 00:00:00 GMT"}, None),
        ({"if-match": '"b"', "if-none-match": '"a"'}, 412),
    ],
)
def test_preconditions_in_rfc_9110_order(headers: dict[str, str], status: int | None) -> None:
    """If-Match, then If-Unmodified-Since (412), then If-None-Match, If-Modified-Since (304)."""
    last_modified = b"Wed, 01 Jan 2020 00:00:00 GMT"
    assert precondition_status(headers, '"a"', last_modified) == status


def test_vary_names_and_secondary_keys() -> None:
    """Vary is parsed leniently; a stored response only serves requests with its values."""
    assert parse_vary(b" Accept-Language ,, accept-language, Origin") == (
        "accept-language",
        "origin",
    )
    assert parse_vary(None) == ()
    selecting = selecting_fields(("accept-language", "origin"), {"accept-language": "fr"})
    assert not varies(selecting, {"accept-language": "fr"})
    assert varies(selecting, {"accept-language": "de"})
    assert varies(selecting, {"accept-language": "fr", "origin": "https://a.example"})
    assert "fr" not in repr(selecting)
    response = StoredResponse(200, ((b"vary", b"Accept-Language"),), b"body", '"t"', selecting)
    assert ResponseSerializer().loads(ResponseSerializer().dumps(response)) == response
