"""`Cache-Control` directives (RFC 9111 section 5.2): parsing, rendering, marking.

The grammar is a comma-separated, case-insensitive list of directives with optional
arguments, tokens or quoted strings; unknown directives are kept for the caller to
ignore (HTTP.md 6.4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from atomcache_core.http.fields import field_title, get_header
from atomcache_core.http.vary import with_vary

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "parse_cache_control",
    "personal_headers",
    "private_unless_set",
    "render_cache_control",
]

_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def parse_cache_control(value: str | bytes | None) -> dict[str, str | None]:
    """Parse a `Cache-Control` field value into `{directive: argument or None}`.

    RFC 9111 section 5.2: a comma-separated list of directives, names compared
    case-insensitively (returned lower-case), arguments as tokens or quoted strings
    (returned unquoted). Unknown directives are kept (callers ignore what they do not
    know); malformed pieces are skipped. Never raises.
    """
    if value is None:
        return {}
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    directives: dict[str, str | None] = {}
    for name, argument in _split_directives(text):
        if name and all(char in _TOKEN_CHARS for char in name):
            directives.setdefault(name.lower(), argument)
    return directives


def _split_directives(text: str) -> Iterable[tuple[str, str | None]]:
    """Split on commas outside quoted strings; yield `(name, argument)` pairs."""
    position, length = 0, len(text)
    while position < length:
        end = position
        in_quotes = False
        while end < length and (in_quotes or text[end] != ","):
            if text[end] == "\\" and in_quotes:
                end += 1
            elif text[end] == '"':
                in_quotes = not in_quotes
            end += 1
        piece = text[position:end].strip()
        position = end + 1
        if not piece:
            continue
        name, equals, argument = piece.partition("=")
        if not equals:
            yield name.strip(), None
            continue
        argument = argument.strip()
        if len(argument) >= 2 and argument[0] == '"' and argument[-1] == '"':  # noqa: PLR2004
            argument = _unquote(argument[1:-1])
        yield name.strip(), argument


def _unquote(text: str) -> str:
    result, escaped = [], False
    for char in text:
        if escaped or char != "\\":
            result.append(char)
            escaped = False
        else:
            escaped = True
    return "".join(result)


def render_cache_control(directives: Mapping[str, str | int | None]) -> str:
    """Render directives as a `Cache-Control` value (RFC 9111 section 5.2).

    `None` gives a bare directive (`no-store`); numbers are delta-seconds; strings that
    are not tokens are quoted (`private="set-cookie"`).
    """
    parts = []
    for name, argument in directives.items():
        if argument is None:
            parts.append(name)
        elif isinstance(argument, int) or (
            argument and all(char in _TOKEN_CHARS for char in argument)
        ):
            parts.append(f"{name}={argument}")
        else:
            escaped = str(argument).replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'{name}="{escaped}"')
    return ", ".join(parts)


def personal_headers(
    headers: Iterable[tuple[bytes, bytes]], field: str
) -> list[tuple[bytes, bytes]]:
    """Response fields marking a response computed for the credentials in `field`.

    Adds `Cache-Control: private` unless the response has a `Cache-Control` of its own
    (RFC 9111 section 5.2.2.7: no shared cache may store it), and names `field` in
    `Vary` (RFC 9110 section 12.5.5, `with_vary`), so no cache in front hands it to a
    caller without the same credentials (HTTP.md 2.2).
    """
    return with_vary(private_unless_set(headers), field_title(field).encode("latin-1"))


def private_unless_set(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` with `Cache-Control: private` added unless they have a `Cache-Control`.

    For a response meant for one caller (RFC 9111 section 5.2.2.7): no shared cache in
    front may store it, unless the handler said otherwise itself.
    """
    fields = list(headers)
    if get_header(fields, b"cache-control") is None:
        fields.append((b"cache-control", b"private"))
    return fields
