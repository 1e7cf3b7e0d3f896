"""The rules `check` applies to the `[console]` section (docs/config.md, docs/console.md): a
`listen` that is HOST:PORT and loopback unless TLS is set, TLS files that are
PEM (the key not readable by other users), a password file that is there,
readable and a hash written by `console-password`, a positive `session_hours`.

Called by common/config_check.py's Checker with its `problem`/`warn` reporters.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Callable
from typing import Any

from common import passwords
from common.config_types import parse_listen
from common.http_options import pem_problem, readable_by_others

Report = Callable[..., None]
AT = ("console",)


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_console(c: dict[str, Any], problem: Report, warn: Report) -> None:
    listen = c.get("listen", "")
    hours = c.get("session_hours")
    if isinstance(hours, (int, float)) and not 0 < hours <= 24 * 366:
        problem(
            "console.session_hours", f"must be greater than 0 and at most a year (got {hours})", *AT, "session_hours"
        )
    cert, key = c.get("tls_cert", ""), c.get("tls_key", "")
    if not isinstance(cert, str) or not isinstance(key, str):
        return
    _check_tls(cert, key, problem)
    if not isinstance(listen, str) or not listen:
        return
    where = parse_listen(listen)
    if where is None:
        problem("console.listen", f"must be HOST:PORT, e.g. 127.0.0.1:9714 (got {listen!r:.60})", *AT, "listen")
    elif not is_loopback_host(where[0]) and not (cert and key):
        problem(
            "console.listen",
            f"{listen} is not a loopback address: set tls_cert and tls_key (the console "
            "must speak HTTPS beyond this host), or listen on 127.0.0.1 and use an SSH tunnel",
            *AT,
            "listen",
        )
    pf = c.get("password_file", "/etc/eventsink-agent/console.passwd")
    if isinstance(pf, str):
        _check_password_file(pf, problem, warn)


def _check_tls(cert: str, key: str, problem: Report) -> None:
    if bool(cert) != bool(key):
        missing = "tls_key" if cert else "tls_cert"
        problem(f"console.{missing}", f"is required with {'tls_cert' if cert else 'tls_key'}", *AT, missing)
        return
    if not cert:
        return
    why = pem_problem(cert, "CERTIFICATE")
    if why:
        problem("console.tls_cert", f"{cert}: {why}", *AT, "tls_cert")
    # The key's path tells where a credential lives: not shown.
    why = pem_problem(key, "PRIVATE KEY") or readable_by_others(key)
    if why:
        problem("console.tls_key", why, *AT, "tls_key")


def _check_password_file(path: str, problem: Report, warn: Report) -> None:
    if not path:
        problem(
            "console.password_file",
            "is required with listen (write it with `eventsink-agent console-password`)",
            *AT,
            "password_file",
        )
        return
    try:
        passwords.read_hash_file(path)
    except OSError as exc:
        problem(
            "console.password_file",
            f"cannot read {path}: {exc.strerror or exc} (write it with `eventsink-agent console-password --file PATH`)",
            *AT,
            "password_file",
        )
        return
    except passwords.BadHashFile as exc:
        problem("console.password_file", f"{path}: {exc}", *AT, "password_file")
        return
    if os.stat(path).st_mode & stat.S_IROTH:
        warn("console.password_file", f"{path} is readable by other users (chmod o-r)", *AT, "password_file")
