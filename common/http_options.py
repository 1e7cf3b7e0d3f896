"""A sink's HTTP options (README, "HTTP options of a sink") and the files a sink names.

Owns the rules `check` applies to `headers`, `bearer_token_file`,
`client_cert`/`client_key`, `proxy`, `compression`, `http_version`,
`max_rate` and the dead-letter keys, and to the files a sink reads
(`password_file`, `bearer_token_file`, `ca_file`, the client certificate and
key); reading the bearer token; the secrets these options hold (for log
redaction); and the digest of the credentials a worker was given, by which a
reload sees a rotated token or renewed certificate files behind the same paths.

Header values, the bearer token, the proxy's credentials and the client key's
path are secrets: no problem text here ever shows one.
"""

from __future__ import annotations

import hashlib
import os
import re
import ssl
import stat
import urllib.parse
from collections.abc import Callable
from typing import Any

COMPRESSIONS = ("none", "gzip")
HTTP_VERSIONS = ("1.1", "2")
# RFC 9110 5.6.2: a field name is a token.
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Headers the agent sets itself on every POST (lowercase); webhook-* are matched by prefix.
AGENT_HEADERS = frozenset({"host", "content-type", "content-length", "content-encoding", "user-agent"})
# Statuses a receiver answers when it may accept the same event later: always retried, never poison.
RETRIED_STATUSES = (408, 429)

# problem(key, message, *line_path): how the config checker records a problem or a warning.
Report = Callable[..., None]


def check_http_options(s: dict[str, Any], label: str, at: tuple, problem: Report, warn: Report) -> None:
    """Every rule on one [[sink]]'s HTTP and dead-letter keys (S: its table, already type-checked)."""
    _check_headers(s, label, at, problem)
    _check_bearer_token_file(s, label, at, problem)
    _check_client_certificate(s, label, at, problem, warn)
    _check_proxy(s.get("proxy"), label, at, problem)
    for key, allowed in (("compression", COMPRESSIONS), ("http_version", HTTP_VERSIONS)):
        v = s.get(key)
        if isinstance(v, str) and v not in allowed:
            problem(f"{label}.{key}", f"must be one of {', '.join(map(repr, allowed))} (got {v!r:.20})", *at, key)
    for key in ("max_rate", "dead_letter_after"):
        v = s.get(key)
        if isinstance(v, (int, float)) and v < 0:
            problem(f"{label}.{key}", f"must not be negative (got {v})", *at, key)
    statuses = s.get("dead_letter_statuses")
    for status in statuses if isinstance(statuses, list) else ():
        if not 400 <= status <= 499 or status in RETRIED_STATUSES:
            problem(
                f"{label}.dead_letter_statuses",
                f"{status} is not a poison answer: give 4xx statuses other than 408 and 429 (those are retried)",
                *at,
                "dead_letter_statuses",
            )


def _check_headers(s: dict[str, Any], label: str, at: tuple, problem: Report) -> None:
    headers = s.get("headers")
    if not isinstance(headers, dict):
        return
    key = f"{label}.headers"
    authorization_set = _basic_auth(s) or bool(s.get("bearer_token_file"))
    for name, value in headers.items():
        lower = name.lower()
        if not HEADER_NAME_RE.match(name):
            problem(
                key,
                f"header name {name!r:.60} is not an HTTP token (letters, digits and !#$%&'*+-.^_`|~)",
                *at,
                "headers",
            )
        elif lower in AGENT_HEADERS or lower.startswith("webhook-"):
            problem(key, f"{name} is set by the agent itself and cannot be configured", *at, "headers")
        elif lower == "authorization" and authorization_set:
            problem(
                key,
                "Authorization is set by the agent when username (or url credentials) or bearer_token_file is given",
                *at,
                "headers",
            )
        # The value is a secret: say which header, never what it holds.
        if isinstance(value, str) and any(c in value for c in "\r\n\0"):
            problem(key, f"the value of {name!r:.60} holds a line break or NUL", *at, "headers")


def _check_bearer_token_file(s: dict[str, Any], label: str, at: tuple, problem: Report) -> None:
    path = s.get("bearer_token_file")
    if not isinstance(path, str) or not path:
        return
    key = f"{label}.bearer_token_file"
    if _basic_auth(s):
        problem(
            key,
            "give username (Basic auth, also as credentials in the url) or bearer_token_file, not both",
            *at,
            "bearer_token_file",
        )
    try:
        token = read_bearer_token(path)
    except OSError as exc:
        problem(key, f"cannot read {path}: {exc.strerror or exc}", *at, "bearer_token_file")
        return
    except ValueError as exc:
        problem(key, f"{path}: {exc}", *at, "bearer_token_file")
        return
    if not token:
        problem(key, f"{path} is empty: its first line is the token", *at, "bearer_token_file")


def _basic_auth(s: dict[str, Any]) -> bool:
    """Whether the sink sends Basic auth: a username, or credentials in its URL."""
    url = s.get("url")
    try:
        in_url = isinstance(url, str) and urllib.parse.urlsplit(url).username is not None
    except ValueError:
        in_url = False
    return bool(s.get("username")) or in_url


def read_password_file(path: str) -> str:
    """A password file's secret: the whole file, stripped (the receiver's --password-file and
    --secret-file read the same way, so one file serves both ends)."""
    with open(path, encoding="utf-8") as fh:
        return fh.read().strip()


def read_bearer_token(path: str) -> str:
    """The token: the file's first line, stripped (later lines, e.g. a comment from a rotation tool, are ignored)."""
    with open(path, encoding="utf-8") as fh:
        token = fh.readline().strip()
    if any(c in token for c in "\r\n\0") or not token.isprintable():
        raise ValueError("the token holds characters a header cannot carry")
    return token


def _check_client_certificate(s: dict[str, Any], label: str, at: tuple, problem: Report, warn: Report) -> None:
    cert, key = s.get("client_cert", ""), s.get("client_key", "")
    if not (isinstance(cert, str) and isinstance(key, str)) or not (cert or key):
        return
    if not key:
        problem(f"{label}.client_key", "is required with client_cert", *at, "client_cert")
        return
    if not cert:
        problem(f"{label}.client_cert", "is required with client_key", *at, "client_key")
        return
    url = s.get("url")
    if isinstance(url, str) and not url.startswith("https://"):
        warn(f"{label}.client_cert", "only an https URL presents a client certificate", *at, "client_cert")
    cert_problem = pem_problem(cert, "CERTIFICATE")
    if cert_problem:
        problem(f"{label}.client_cert", f"{cert}: {cert_problem}", *at, "client_cert")
    # The key's path is a secret (it tells where a credential lives): never shown.
    key_problem = pem_problem(key, "PRIVATE KEY") or readable_by_others(key)
    if key_problem:
        problem(f"{label}.client_key", key_problem, *at, "client_key")
    elif not cert_problem:
        _check_key_matches(cert, key, label, at, problem)


def pem_problem(path: str, kind: str) -> str | None:
    """Why PATH is not a readable PEM file holding a KIND block (None when it is)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 20)
    except OSError as exc:
        return f"cannot read the file: {exc.strerror or exc}"
    blocks = re.findall(rb"-----BEGIN ([A-Z0-9 ]+)-----", head)
    if not any(kind.encode() in b for b in blocks):
        return f"not a PEM file with a {kind} block"
    if b"ENCRYPTED" in head and kind == "PRIVATE KEY":
        return "the key is encrypted: give it without a passphrase (there is no passphrase option)"
    return None


def readable_by_others(path: str) -> str | None:
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return f"cannot read the file: {exc.strerror or exc}"
    return "the key file is readable by other users (chmod o-rwx)" if mode & stat.S_IROTH else None


def _check_key_matches(cert: str, key: str, label: str, at: tuple, problem: Report) -> None:
    def no_passphrase() -> bytes:  # never prompt on a terminal
        return b""

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key, password=no_passphrase)
    except (ssl.SSLError, OSError):
        problem(
            f"{label}.client_key", "does not belong to client_cert (or is not a usable private key)", *at, "client_key"
        )


def check_ca_file(path: str, key: str, at: tuple, problem: Report) -> None:
    if not os.path.isfile(path):
        problem(key, f"no such file: {path}", *at, "ca_file")
        return
    why = pem_problem(path, "CERTIFICATE")
    if why is None:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
        except (ssl.SSLError, OSError):
            why = "not a PEM bundle of certificates"
    if why:
        problem(key, f"{path}: {why}", *at, "ca_file")


def check_password_file(path: str, key: str, at: tuple, problem: Report, warn: Report) -> None:
    try:
        st = os.stat(path)
        with open(path, "rb"):
            pass
    except OSError as exc:
        problem(key, f"cannot read {path}: {exc.strerror or exc}", *at, "password_file")
        return
    if st.st_mode & stat.S_IROTH:
        warn(key, f"{path} is readable by other users (chmod o-r)", *at, "password_file")


def _check_proxy(proxy: Any, label: str, at: tuple, problem: Report) -> None:
    if not isinstance(proxy, str) or not proxy:
        return
    try:
        parts = urllib.parse.urlsplit(proxy)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port is not None
        ok = ok and parts.path in ("", "/") and not parts.query and not parts.fragment
    except ValueError:
        ok = False
    if not ok:
        # The URL may carry credentials: it is not echoed.
        problem(
            f"{label}.proxy",
            "must be an http:// or https:// URL with a host and a port, e.g. http://proxy.example.com:3128",
            *at,
            "proxy",
        )


def proxy_secrets(proxy: str) -> list[str]:
    """The proxy URL's credentials as they may appear in a log line: user:password, the password
    (as written, and percent-decoded)."""
    try:
        parts = urllib.parse.urlsplit(proxy)
    except ValueError:
        return [proxy]  # unparseable: mask all of it
    password = parts.password
    if not password:
        return []
    userinfo = parts.netloc.rpartition("@")[0]
    return [userinfo, password, urllib.parse.unquote(password)]


def sink_http_secrets(sink: Any) -> list[str]:
    """The secrets a sink's HTTP options hold: header values, the bearer token (once resolved, or
    read from its file), the proxy's credentials, the client key's path."""
    out = list(sink.headers.values())
    token = sink.bearer_token
    if sink.bearer_token_file and not token:
        try:
            token = read_bearer_token(sink.bearer_token_file)
        except (OSError, ValueError):
            token = ""
    out += [token, sink.client_key]
    if sink.proxy:
        out += proxy_secrets(sink.proxy)
    return [x for x in out if x]


def credentials_digest(sink: Any) -> str | None:
    """A digest of the credentials a worker was given: its password and bearer token (as resolved
    from their files) and the content of its client certificate, key and CA files. A reload
    compares it to see a rotated secret or renewed certificates behind unchanged paths, without
    keeping any of them."""
    if sink is None:
        return None
    h = hashlib.sha256()
    for value in (sink.password, sink.bearer_token):
        h.update(value.encode() + b"\0")
    for path in (sink.client_cert, sink.client_key, sink.ca_file):
        h.update(_file_digest(path) + b"\0")
    return h.hexdigest()


def _file_digest(path: str) -> bytes:
    if not path:
        return b""
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).digest()
    except OSError as exc:
        return f"unreadable: {exc.errno}".encode()
