"""`eventsink-agent receive`: the test receiver as an operator's command.

Owns turning the command's options into a `Receiver` (secrets read from files,
so they need not show in `ps`), the banner saying what is checked, printing each
event until Ctrl-C or SIGTERM, and the summary at the end; with `--web`, the
live page of tools/receiver_web.py beside it. Option mistakes are
one line on stderr and exit 2; a port in use is exit 1.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable

from common.config_types import parse_listen
from common.http_options import read_bearer_token, read_password_file
from tools.receiver import Receiver
from tools.receiver_text import format_summary

PROG = "eventsink-agent receive"


class UsageError(Exception):
    """An option mistake: one line, exit 2."""


def _read(path: str, option: str, read: Callable[[str], str]) -> str:
    """A secret file, read as the agent reads the matching config key (so one file serves both)."""
    try:
        value = read(path)
    except OSError as exc:
        raise UsageError(f"{option}: cannot read {path}: {exc.strerror or exc}") from None
    except ValueError:  # UnicodeDecodeError too
        raise UsageError(f"{option}: {path} does not hold a usable secret") from None
    if not value:
        raise UsageError(f"{option}: {path} is empty")
    return value


def _secret(args, name: str) -> str:
    """--NAME or the content of --NAME-file (not both)."""
    value, path = getattr(args, name, "") or "", getattr(args, f"{name}_file", "") or ""
    if value and path:
        raise UsageError(f"give --{name} or --{name}-file, not both")
    return _read(path, f"--{name}-file", read_password_file) if path else value


def receiver_from(args) -> Receiver:
    """The Receiver the options describe (UsageError when they do not fit together)."""
    listen = getattr(args, "listen", None) or "127.0.0.1:8080"
    addr = parse_listen(listen)
    if addr is None:
        raise UsageError(f"--listen must be HOST:PORT (got {listen!r})")
    username, password, secret = (
        getattr(args, "username", None) or "",
        _secret(args, "password"),
        _secret(args, "secret"),
    )
    token_file = getattr(args, "bearer_token_file", None) or ""
    tls_cert, tls_key, client_ca = (getattr(args, k, None) or None for k in ("tls_cert", "tls_key", "client_ca"))
    if password and not username:
        raise UsageError("--password needs --username")
    if token_file and username:
        raise UsageError("give --username or --bearer-token-file, not both")
    if (tls_key or client_ca) and not tls_cert:
        raise UsageError("--tls-key and --client-ca need --tls-cert")
    token = _read(token_file, "--bearer-token-file", read_bearer_token) if token_file else None
    try:
        return Receiver(
            addr[0],
            addr[1],
            username=username,
            password=password,
            secret=secret or None,
            out=sys.stdout,
            tls_cert=tls_cert,
            tls_key=tls_key,
            client_ca=client_ca,
            bearer_token=token,
        )
    except OSError as exc:  # ssl.SSLError too: a certificate, key or CA file that cannot be used
        raise UsageError(f"cannot use the TLS files: {getattr(exc, 'reason', None) or exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _checks(rx: Receiver) -> list[str]:
    checks = []
    if rx.username:
        checks.append(f"Basic auth as {rx.username!r}")
    if rx.bearer_token:
        checks.append("a bearer token")
    if rx.verifies_signatures:
        checks.append("webhook signatures")
    if rx.client_ca:
        checks.append(f"client certificates signed by {rx.client_ca}")
    return checks


def _web_address(args) -> tuple[str, int] | None:
    """--web HOST:PORT, loopback only (UsageError otherwise); None without --web."""
    value = getattr(args, "web", None) or ""
    if not value:
        return None
    from tools.receiver_web import loopback_listen

    try:
        return loopback_listen(value)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _start_web(rx: Receiver, web: tuple[str, int] | None):
    """The live page (tools/receiver_web.py, imported only with --web: tornado is not loaded otherwise)."""
    if web is None:
        return None
    from tools.receiver_web import ReceiverWeb

    page = ReceiverWeb(rx, *web).start()
    print(f"{PROG}: live page at {page.url}", flush=True)
    return page


def main(args) -> int:
    """Print each event received until Ctrl-C, then a summary."""
    try:
        rx = receiver_from(args)
        web = _web_address(args)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    # Ctrl-C and SIGTERM only set an event, from before the banner on: never a KeyboardInterrupt mid-print.
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    page = None
    try:
        try:
            rx.start()
        except OSError as exc:
            print(f"{PROG}: cannot listen on {rx.host}:{rx.port}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        checks = _checks(rx)
        print(
            f"{PROG}: listening on {rx.url}"
            + (f" (checking {', '.join(checks)})" if checks else "")
            + "; Ctrl-C to stop",
            flush=True,
        )
        try:
            page = _start_web(rx, web)
        except OSError as exc:
            print(f"{PROG}: cannot serve the live page on {web[0]}:{web[1]}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        while not stop.wait(0.5):
            pass
    finally:
        if page is not None:
            page.stop()
        rx.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("\n" + format_summary(rx.summary()), flush=True)
    return 0
