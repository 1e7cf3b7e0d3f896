"""`eventsinkctl`: the operator's thin client of the control socket.

Owns the command line (subcommands built from the descriptions in
`agent.commands.registry.COMMANDS`), the choice of socket (`--socket`, else the config's
`agent.control_socket` with `--config`, else `$EVENTSINK_SOCKET`, else the
default), and HTTP over the unix socket (`ControlClient`, docs/control-api.md).
Answers are rendered by each command; exit codes come from
`agent.commands.exit_code` (0 ok, 1 refused/failed, 2 usage, 3 agent not running).

An operator runs it by hand and scripts run it in loops, so it starts as a
small program: it imports the commands' descriptions only, never their actions
(agent/server/actions/: zmq, sqlite3, msgspec, the journal), and speaks the one
request it needs itself (`exchange`: HTTP/1.1 with `Connection: close`, as the
control server answers it) rather than through http.client and its email
parser. A plain subcommand imports its one description only
(`agent.commands.CTL_UNITS`), and the connection is the C socket module's
(`_socket`): socket.py's enum conversions and selectors would be a fifth of the
start. tests/agent/test_ctl_imports.py keeps it so.
"""

from __future__ import annotations

import _socket
import argparse
import json
import os
import sys

TYPE_CHECKING = False  # typing only for type checkers: eventsinkctl starts without it (agent/commands/__init__.py)
if TYPE_CHECKING:
    from typing import Any

    from agent.commands.unit import Command

from agent import __version__
from agent.commands import CTL_UNITS
from agent.commands.client import BadValue, Reply, Unreachable, UsageError, exit_code
from common.vocabulary import DEFAULT_RUNTIME_DIR

PROG = "eventsinkctl"
DEFAULT_SOCKET = os.path.join(DEFAULT_RUNTIME_DIR, "control.sock")
SOCKET_ENV = "EVENTSINK_SOCKET"
CLIENT_TIMEOUT = 20.0  # s; the agent itself gives up on its supervisor after 10 s
MAX_HEAD = 64 * 1024  # bytes of an answer's status line and headers


class AgentFailed(Exception):
    """The agent was reached but gave no usable answer (timeout, closed connection, not JSON)."""


class ControlClient:
    """A client of the control socket, for eventsinkctl, programs and tests.

    Raises Unreachable when no agent answers on the socket and AgentFailed when
    the agent gives no usable answer; an answered error is a Reply, not an exception."""

    def __init__(self, socket_path: str, timeout: float = CLIENT_TIMEOUT):
        self.socket_path = socket_path
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """METHOD PATH (optional JSON body) -> (HTTP status, decoded JSON answer)."""
        reply, _ = self.request(method, path, body)
        return reply.status, reply.body

    def run(self, command: Command, params: dict[str, str] | None = None, query: dict[str, Any] | None = None,
            body: dict[str, Any] | None = None) -> tuple[Reply, bytes]:
        """One registered command (path fields, query fields, JSON body) -> its Reply and the raw answer."""
        return self.request(command.method, command.request_path(params or {}, query), body)

    def request(self, method: str, path: str, body: Any = None) -> tuple[Reply, bytes]:
        payload = None if body is None else json.dumps(body).encode()
        sock = self._connect()
        try:
            status, raw = exchange(sock, method, path, payload)
        except TimeoutError:
            raise AgentFailed(f"the agent did not answer within {self.timeout:g} s") from None
        except OSError:
            raise AgentFailed("the agent closed the connection without an answer") from None
        finally:
            sock.close()
        try:
            decoded = json.loads(raw) if raw.strip() else None
        except ValueError:
            if 200 <= status < 300:
                raise AgentFailed("the agent's answer is not JSON") from None
            decoded = None
        return Reply(status, decoded), raw

    def _connect(self) -> _socket.socket:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise Unreachable(unreachable(self.socket_path, exc)) from None
        except BaseException:
            sock.close()
            raise
        return sock


def unreachable(where: str, exc: OSError) -> str:
    """Why no agent answers on the socket at WHERE, in one sentence."""
    if isinstance(exc, FileNotFoundError):
        return f"agent not running (no control socket at {where})"
    if isinstance(exc, ConnectionRefusedError):
        return f"agent not running (nobody answers on {where})"
    if isinstance(exc, PermissionError):
        return f"cannot connect to {where}: permission denied (is this user in the agent's group?)"
    return f"cannot connect to the agent at {where}: {exc.strerror or exc}"


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
            data = data[end + 4:]
            continue
        if len(data) > MAX_HEAD:
            raise ConnectionError("the answer's head is too long")
        data += _recv(sock)
    body = data[end + 4:]
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
        out, data = out + data[:size], data[size + 2:]


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


def socket_path(args: argparse.Namespace) -> str:
    """--socket, else the config's control socket (--config), else $EVENTSINK_SOCKET, else the default."""
    if args.socket:
        return args.socket
    if args.config:
        return _socket_from_config(args.config)
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET


def _socket_from_config(path: str) -> str:
    # Only the [agent] table matters here; the operator may not be able to read password files.
    import tomllib  # only --config reads a file

    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from None
    agent = doc.get("agent", {})
    if not isinstance(agent, dict):
        raise UsageError(f"{path}: [agent] must be a table")
    sock = agent.get("control_socket") or ""
    runtime_dir = agent.get("runtime_dir") or DEFAULT_RUNTIME_DIR
    if not isinstance(sock, str) or not isinstance(runtime_dir, str):
        raise UsageError(f"{path}: agent.control_socket and agent.runtime_dir must be strings")
    return sock or os.path.join(runtime_dir, "control.sock")


def requested(argv: list[str]) -> str | None:
    """The subcommand ARGV names, when that is plain before parsing: its first word, after only --socket and
    --config with their values. None for anything else (--help, --version, an abbreviated option, no or an
    unknown subcommand): then the parser is built whole, and argparse says what it says about it."""
    names = CTL_UNITS
    value_next = False
    for arg in argv:
        if value_next:
            value_next = False
        elif arg in ("--socket", "--config"):
            value_next = True
        elif not arg.startswith(("--socket=", "--config=")):
            return arg if arg in names else None
    return None


class _Formatter(argparse.HelpFormatter):
    """argparse's help layout at the terminal's width, found as shutil.get_terminal_size finds it, without
    importing shutil (and its imports) at every start: argparse makes a formatter for each add_argument."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_terminal_columns() - 2)


def _terminal_columns() -> int:
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """eventsinkctl's parser, with every subcommand, or with ONLY that one (`requested`: the subcommand parses
    the rest of the line alike either way, and building the others is most of the parser's cost)."""
    where = argparse.ArgumentParser(add_help=False, formatter_class=_Formatter)
    where.add_argument(
        "--socket", metavar="PATH", default=argparse.SUPPRESS,
        help=f"the agent's control socket (default: the config's agent.control_socket, ${SOCKET_ENV}, or {DEFAULT_SOCKET})",
    )
    where.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="read the control socket's path from this agent config")
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=_Formatter,
        parents=[where],
        description="Control a running eventsink-agent through its control socket.",
        epilog="exit status: 0 ok, 1 the agent refused or failed, 2 usage error, 3 agent not running",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND", required=True)
    for command in [described(only)] if only is not None else ctl_commands():
        p = sub.add_parser(command.name, parents=[where], formatter_class=_Formatter, help=command.help,
                           description=command.help[:1].upper() + command.help[1:] + ".")
        helps = dict(command.field_help)
        for field in command.fields:
            p.add_argument(field, metavar=field.upper(), help=helps.get(field))
        for arg in command.cli:
            p.add_argument(*arg.flags, **({"dest": arg.field} if arg.flags[0].startswith("-") else {}), **arg.kwargs)
        p.add_argument("--json", action="store_true", help="print the agent's JSON answer as it is")
        p.set_defaults(command=command)
    return parser


def described(name: str) -> Command:
    """The description of eventsinkctl's subcommand NAME, importing its module only."""
    module, attr = CTL_UNITS[name].split(":")
    # __import__, not importlib.import_module: importing importlib (and warnings) would cost most of a millisecond
    return getattr(__import__(f"agent.commands.{module}", fromlist=[attr]), attr)


def ctl_commands() -> list[Command]:
    """eventsinkctl's subcommands, in the registry's order (every description is imported)."""
    from agent.commands.registry import COMMANDS

    return [c for c in COMMANDS if c.in_ctl]


def request_parts(command: Command, args: argparse.Namespace) -> tuple[dict, dict, dict | None]:
    """The path fields, query fields and JSON body (None: none) of COMMAND's request; BadValue on a bad value."""
    params = {f: getattr(args, f) for f in command.fields}
    query: dict[str, Any] = {}
    body: dict[str, Any] = {}
    for arg in command.cli:
        value = getattr(args, arg.field, None)
        if arg.omit_default and value is None:
            continue
        if arg.convert is not None:
            try:
                value = arg.convert(value)
            except ValueError as exc:
                raise BadValue(str(exc)) from None
        (query if arg.to == "query" else body)[arg.field] = value
    return params, query, (body if command.body else None)


def _print(text: str, stream: Any = None) -> None:
    stream = stream or sys.stdout
    try:
        print(text, file=stream, flush=True)
    except BrokenPipeError:  # e.g. `eventsinkctl status | head -1`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())


def fail(message: str, outcome: Reply | BaseException, problems: list[str] | tuple[str, ...] = ()) -> int:
    _print(f"{PROG}: {message}", sys.stderr)
    for p in problems:
        _print(f"  {p}", sys.stderr)
    return exit_code(outcome)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(requested(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    args.socket = getattr(args, "socket", None)
    args.config = getattr(args, "config", None)
    command: Command = args.command
    try:
        params, query, body = request_parts(command, args)
        path = socket_path(args)
        reply, raw = ControlClient(path).run(command, params, query, body)
    except (Unreachable, UsageError, AgentFailed, BadValue) as exc:
        return fail(str(exc), exc)
    except KeyboardInterrupt:
        return 130
    if not reply.ok:
        return fail(reply.error, reply, reply.problems)
    if getattr(args, "json", False):
        _print(raw.decode("utf-8", "replace").rstrip("\n"))
    else:
        _print(command.render(reply.body))
    return exit_code(reply)


if __name__ == "__main__":
    sys.exit(main())
