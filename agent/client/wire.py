"""The client's side of the control socket's wire (docs/control-api.md): one HTTP/1.1 request on a
connected socket and its answer (`exchange`: `Connection: close`, as the control server answers it,
with a Content-Length, chunked or to the end of the connection), and the answer's JSON decoded
(`decode_json`).

eventsinkctl speaks this itself rather than through http.client (and its email parser) and reads the
JSON through the json package's own C scanner without importing the package: json.decoder and
json.encoder compile regular expressions at import, and `re` (with `enum`) would be a fifth of a
plain command's start (agent/client/ctl.py).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing only for type checkers: eventsinkctl starts without it (agent/commands/__init__.py)
if TYPE_CHECKING:
    import _socket
    from typing import Any

MAX_HEAD = 64 * 1024  # bytes of an answer's status line and headers
JSON_SPACE = " \t\n\r"  # what JSON allows around a value (json.decoder's WHITESPACE)


def exchange(sock: _socket.socket, method: str, path: str, payload: bytes | None) -> tuple[int, bytes]:
    """One HTTP/1.1 request on the connected SOCK -> (status, body). OSError (a ConnectionError when the
    agent closes it early or answers what is not HTTP), TimeoutError past the socket's timeout."""
    head = f"{method} {path} HTTP/1.1\r\nHost: agent\r\nAccept: application/json\r\nConnection: close\r\n"
    if payload is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
    sock.sendall(head.encode("ascii") + b"\r\n" + (payload or b""))
    data = b""
    while True:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            status, length, chunked = _parse_head(data[:end])
            if status >= 200:  # a 1xx (100 Continue) is followed by the real answer
                break
            data = data[end + 4 :]
            continue
        if len(data) > MAX_HEAD:
            raise ConnectionError("the answer's head is too long")
        data += _recv(sock)
    body = data[end + 4 :]
    if chunked:
        return status, _dechunk(sock, body)
    while length is None or len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            if length is None:  # no Content-Length: the answer ends with the connection
                return status, body
            raise ConnectionError("the answer was cut short")
        body += chunk
    return status, body[:length]


def _recv(sock: _socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("the agent closed the connection")
    return chunk


def _dechunk(sock: _socket.socket, data: bytes) -> bytes:
    """A chunked body (DATA: what came after the head), read to its last chunk (trailers are not kept)."""
    out = b""
    while True:
        while b"\r\n" not in data:
            data += _recv(sock)
        line, data = data.split(b"\r\n", 1)
        size_text = line.split(b";")[0].strip()
        if not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
            raise ConnectionError("a bad chunk size")
        size = int(size_text, 16)
        if size == 0:
            return out
        while len(data) < size + 2:
            data += _recv(sock)
        out, data = out + data[:size], data[size + 2 :]


def _parse_head(head: bytes) -> tuple[int, int | None, bool]:
    """An answer's status line and headers -> (status, Content-Length or None, chunked); ConnectionError when
    it is not HTTP."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ConnectionError("the answer is not HTTP")
    length, chunked = None, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            if not value.strip().isdigit():
                raise ConnectionError("a bad Content-Length")
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value.lower()
    return int(parts[1]), length, chunked


class _ScannerContext:
    """What `_json.make_scanner` reads of a json.JSONDecoder: json.loads' defaults (strict, no hooks)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__


def decode_json(raw: bytes) -> Any:
    """RAW decoded as json.loads(RAW) decodes it, ValueError (or json's own error) alike.

    A UTF-8 document goes through _json's scanner, which json.loads itself uses; anything else (another
    encoding, a byte-order mark, no _json) and anything the scanner refuses is json.loads', for its
    answer or its error: only a well-formed answer is read the quick way."""
    if b"\x00" not in raw and not raw.startswith(b"\xef\xbb\xbf"):
        try:
            from _json import make_scanner

            text = raw.decode("utf-8", "surrogatepass")
            start = len(text) - len(text.lstrip(JSON_SPACE))
            value, end = make_scanner(_ScannerContext())(text, start)
            if not text[end:].strip(JSON_SPACE):
                return value
        except Exception:  # json.loads below gives the answer or the error json gives
            pass
    import json

    return json.loads(raw)
