"""A sink's HTTP options (README, "HTTP options of a sink") as libcurl settings, for sinks/http.py.

Owns what `headers`, `bearer_token`, `client_cert`/`client_key`, `proxy`,
`compression` and `http_version` become on a sink's easy handles and multi:
the extra static request headers, the client certificate (read here, handed
to libcurl as memory blobs), the proxy and its credentials, the HTTP version
and multiplexing, gzip bodies; and the part of `HttpClient.settings_key` that
these options make up, including a digest of the certificate files' content,
so renewed files behind the same paths make a new client (a new CurlMulti and
handles: no TLS session or connection made with the old certificate survives).

Header values, the bearer token, the proxy's credentials and the client key's
path are secrets: nothing raised or returned here for display holds one.
"""

from __future__ import annotations

import urllib.parse
import zlib
from dataclasses import dataclass

import pycurl

from common.config_types import SinkConfig
from common.http_options import credentials_digest

# zlib level 3: on the bench's mix a bulk envelope of 100 events shrinks to 13 % for ~4.2 us per
# event, level 6 to 11 % for twice the CPU, level 1 to 15 % for about the same CPU as 3; a
# single event (~860 B -> 53 %) costs ~23 us at any level (zlib's setup dominates).
GZIP_LEVEL = 3
_GZIP_WBITS = 31  # 16 + 15: a gzip header and trailer around a deflate stream with the full window


def gzip_body(body: bytes) -> bytes:
    """BODY as a gzip member (Content-Encoding: gzip)."""
    return zlib.compress(body, GZIP_LEVEL, wbits=_GZIP_WBITS)


def options_key(sink: SinkConfig) -> tuple:
    """What of the HTTP options needs a new client when it changes: the settings, and the digest of
    the bearer token and of the certificate files' content (renewed behind the same paths)."""
    return (
        tuple(sorted(sink.headers.items())),
        sink.bearer_token,
        sink.client_cert,
        sink.client_key,
        sink.proxy,
        sink.compression,
        sink.http_version,
        credentials_digest(sink),
    )


def option_headers(sink: SinkConfig) -> list[str]:
    """The request headers the options add to every POST of the sink."""
    out = []
    for name, value in sink.headers.items():
        # "Name:" alone would make libcurl drop the header; "Name;" sends it with an empty value.
        out.append(f"{name}: {value}" if value else f"{name};")
    if sink.bearer_token:
        out.append(f"Authorization: Bearer {sink.bearer_token}")
    if sink.compression == "gzip":
        out.append("Content-Encoding: gzip")
    return out


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """The client certificate and key as read when the client was built (libcurl gets the bytes,
    never the key's path, so no libcurl message can name it)."""

    cert: bytes
    key: bytes

    @classmethod
    def of(cls, sink: SinkConfig) -> ClientCertificate | None:
        if not (sink.client_cert and sink.client_key):
            return None
        return cls(_read(sink.client_cert, "client_cert"), _read(sink.client_key, "client_key"))


def _read(path: str, key: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        # Not the exception itself: its text holds the path, and the key's path is a secret.
        raise ValueError(f"cannot read {key}: {exc.strerror or 'error'}") from None


@dataclass(frozen=True, slots=True)
class Proxy:
    """A proxy URL taken apart: libcurl gets the URL without credentials and the credentials apart."""

    url: str
    username: str
    password: str

    @classmethod
    def of(cls, proxy: str) -> Proxy | None:
        if not proxy:
            return None
        try:
            parts = urllib.parse.urlsplit(proxy)
            scheme, host, port = parts.scheme, parts.hostname, parts.port
        except ValueError:
            scheme = host = port = None
        if scheme not in ("http", "https") or not host or port is None:
            raise ValueError(
                "proxy must be an http:// or https:// URL with a host and a port"
            )  # not echoed: credentials
        shown = f"[{host}]" if ":" in host else host
        return cls(
            f"{scheme}://{shown}:{port}",
            urllib.parse.unquote(parts.username or ""),
            urllib.parse.unquote(parts.password or ""),
        )


def set_handle_options(
    c: pycurl.Curl, sink: SinkConfig, cert: ClientCertificate | None, proxy: Proxy | None, ca_file: str
) -> None:
    """Every HTTP option on one easy handle (once, when the handle is made)."""
    https = sink.url.lower().startswith("https:")
    if sink.http_version == "2":
        # ALPN over TLS; for http:// nothing negotiates, so the agent speaks HTTP/2 at once.
        c.setopt(
            pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_2TLS if https else pycurl.CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
        )
        # A second POST waits for the first connection to tell whether it multiplexes, instead of
        # opening a connection of its own.
        c.setopt(pycurl.PIPEWAIT, 1)
    else:
        # libcurl's default offers h2 over TLS: "1.1" means 1.1 on https too.
        c.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
    if cert is not None and https:
        c.setopt(pycurl.SSLCERTTYPE, "PEM")
        c.setopt(pycurl.SSLCERT_BLOB, cert.cert)
        c.setopt(pycurl.SSLKEYTYPE, "PEM")
        c.setopt(pycurl.SSLKEY_BLOB, cert.key)
    if proxy is None:
        c.setopt(pycurl.PROXY, "")  # never a proxy from http_proxy / HTTPS_PROXY in the environment
        return
    c.setopt(pycurl.PROXY, proxy.url)  # https targets are tunnelled with CONNECT by libcurl itself
    c.setopt(pycurl.NOPROXY, "")  # nor a no_proxy from the environment that would go around it
    if proxy.username or proxy.password:
        c.setopt(pycurl.PROXYUSERNAME, proxy.username)
        c.setopt(pycurl.PROXYPASSWORD, proxy.password)
    if proxy.url.startswith("https:"):  # TLS to the proxy itself: checked like the sink's
        verify = 1 if sink.verify_tls else 0
        c.setopt(pycurl.PROXY_SSL_VERIFYPEER, verify)
        c.setopt(pycurl.PROXY_SSL_VERIFYHOST, 2 if verify else 0)
        if verify:
            c.setopt(pycurl.PROXY_CAINFO, ca_file)


def set_multi_options(multi: pycurl.CurlMulti, sink: SinkConfig) -> None:
    """HTTP/2: the POSTs under way share one connection as streams (max_in_flight of them);
    HTTP/1.1: one connection per POST under way, as before."""
    multi.setopt(pycurl.M_PIPELINING, pycurl.PIPE_MULTIPLEX if sink.http_version == "2" else pycurl.PIPE_NOTHING)
