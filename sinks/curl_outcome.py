"""How a libcurl transfer's end reads as a POST outcome (sinks/http.py's `Result`).

Owns the mapping of libcurl's error codes to one outcome (timeout, tls_error or
connection_error), the reason shown for a failure (libcurl's message with the
system's word for the socket error), and the reading of an answer's header lines
(the final answer after a 100 Continue or a proxy's CONNECT, its headers, its reason phrase).
"""

from __future__ import annotations

import os

import pycurl

from common.vocabulary import PostOutcome

# libcurl errors that are TLS problems; every other error is a connection_error (timeouts aside).
_TLS_ERRORS = frozenset({35, 51, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91, 98})
_AFTER_HANDSHAKE = frozenset({pycurl.E_SEND_ERROR, pycurl.E_RECV_ERROR})


def outcome_of(errno: int, message: str) -> str:
    if errno == pycurl.E_OPERATION_TIMEDOUT:
        return PostOutcome.TIMEOUT
    if errno in _TLS_ERRORS:
        return PostOutcome.TLS_ERROR
    if errno in _AFTER_HANDSHAKE and " alert " in message:
        # TLS 1.3: a server that wants a client certificate (or dislikes the one given) says so with
        # an alert after the handshake, so it surfaces on the first read ("tlsv13 alert certificate
        # required"), not as a handshake error.
        return PostOutcome.TLS_ERROR
    return PostOutcome.CONNECTION_ERROR


def reason(c: pycurl.Curl, errno: int, message: str) -> str:
    """libcurl's message, with the system's word for the socket error when there is one."""
    text = message or f"libcurl error {errno}"
    os_errno = c.getinfo(pycurl.OS_ERRNO)
    if os_errno:
        word = os.strerror(os_errno)
        if word.lower() not in text.lower():
            text = f"{text} ({word})"
    return text[:300]


def last_answer(lines: list[bytes]) -> list[bytes]:
    """The header lines of the final answer (after a 100 Continue or a proxy's CONNECT answer)."""
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith(b"HTTP/"):
            return lines[i:]
    return lines


def parse_headers(lines: list[bytes]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw in lines[1:]:
        name, sep, value = raw.decode("latin-1").partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def reason_phrase(lines: list[bytes]) -> str:
    if not lines:
        return ""
    parts = lines[0].decode("latin-1").strip().split(" ", 2)
    return parts[2] if len(parts) == 3 else ""
