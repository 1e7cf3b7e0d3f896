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
request it needs itself (agent/client/wire.py: HTTP/1.1 and the answer's JSON,
without http.client, its email parser, or the json package's regular
expressions). A plain subcommand imports its one description only
(`agent.commands.CTL_UNITS`); a line argparse would read plainly (`quick_args`:
the subcommand, its path fields, --socket, --config, --json) is read without
argparse, whose imports (re, enum, gettext) would be a third of the start; and
the connection is the C socket module's (`_socket`): socket.py's enum
conversions and selectors would be a fifth of it.
tests/agent/test_ctl_imports.py keeps it so.
"""

from __future__ import annotations

import _socket
import os
import sys

from agent import __version__
from agent.client.wire import decode_json, exchange
from agent.commands import CTL_UNITS
from agent.commands.client import BadValue, Reply, Unreachable, UsageError, exit_code
from common.runtime_dir import DEFAULT_RUNTIME_DIR

TYPE_CHECKING = False  # typing only for type checkers: eventsinkctl starts without it (agent/commands/__init__.py)
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from agent.commands.unit import Command

PROG = "eventsinkctl"
DEFAULT_SOCKET = os.path.join(DEFAULT_RUNTIME_DIR, "control.sock")
SOCKET_ENV = "EVENTSINK_SOCKET"
CLIENT_TIMEOUT = 20.0  # s; the agent itself gives up on its supervisor after 10 s


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

    def run(
        self,
        command: Command,
        params: dict[str, str] | None = None,
        query: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> tuple[Reply, bytes]:
        """One registered command (path fields, query fields, JSON body) -> its Reply and the raw answer."""
        return self.request(command.method, command.request_path(params or {}, query), body)

    def request(self, method: str, path: str, body: Any = None) -> tuple[Reply, bytes]:
        payload = None if body is None else _json_bytes(body)
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
            decoded = decode_json(raw) if raw.strip() else None
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


def _json_bytes(body: Any) -> bytes:
    import json  # only a request with a body (reload, replay, redrive, discard) encodes one

    return json.dumps(body).encode()


def unreachable(where: str, exc: OSError) -> str:
    """Why no agent answers on the socket at WHERE, in one sentence."""
    if isinstance(exc, FileNotFoundError):
        return f"agent not running (no control socket at {where})"
    if isinstance(exc, ConnectionRefusedError):
        return f"agent not running (nobody answers on {where})"
    if isinstance(exc, PermissionError):
        return f"cannot connect to {where}: permission denied (is this user in the agent's group?)"
    return f"cannot connect to the agent at {where}: {exc.strerror or exc}"


def socket_path(args: argparse.Namespace | QuickArgs) -> str:
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


class QuickArgs:
    """A command line `quick_args` read: the attributes argparse's Namespace would hold, with --socket and
    --config None when not given (as main() sets them)."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


def quick_args(argv: list[str]) -> QuickArgs | None:
    """ARGV read without argparse when it is plain: a subcommand without options of its own (`CliArg`s), its
    path fields as words that do not start with '-', --json after it, and --socket/--config (PATH or =PATH)
    anywhere, the last one counting, as argparse reads such a line (tests/agent/test_ctl_quick.py). None for
    anything else (--help, an abbreviation, an option value that starts with '-', a missing or extra word):
    argparse then reads it and says what it says about it."""
    name = requested(argv)
    command = described(name) if name is not None else None
    if command is None or command.cli:
        return None
    values: dict[str, Any] = {"socket": None, "config": None}
    words: list[str] = []
    flags = iter(argv)
    for arg in flags:
        if arg in ("--socket", "--config"):
            value = next(flags, "-")  # no value at all is left to argparse, as a value that starts with '-'
            if value.startswith("-"):
                return None
            values[arg[2:]] = value
        elif arg.startswith(("--socket=", "--config=")):
            values[arg[2:8]] = arg[9:]  # "socket" or "config", then what follows the "="
        elif arg == "--json" and words:
            values["json"] = True
        elif arg.startswith("-") or not arg:
            return None
        else:
            words.append(arg)
    if len(words) != 1 + len(command.fields):
        return None
    values.update(zip(command.fields, words[1:], strict=True), command_name=name, command=command)
    values.setdefault("json", False)
    return QuickArgs(**values)


def _formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's help layout at the terminal's width, found as shutil.get_terminal_size finds it, without
    importing shutil (and its imports) at every start: argparse makes a formatter for each add_argument."""
    import argparse

    return argparse.HelpFormatter(prog, width=_terminal_columns() - 2)


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
    import argparse  # not for a line quick_args reads

    where = argparse.ArgumentParser(add_help=False, formatter_class=_formatter)
    where.add_argument(
        "--socket",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help=(
            "the agent's control socket "
            f"(default: the config's agent.control_socket, ${SOCKET_ENV}, or {DEFAULT_SOCKET})"
        ),
    )
    where.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="read the control socket's path from this agent config",
    )
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=_formatter,
        parents=[where],
        description="Control a running eventsink-agent through its control socket.",
        epilog="exit status: 0 ok, 1 the agent refused or failed, 2 usage error, 3 agent not running",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND", required=True)
    for command in [described(only)] if only is not None else ctl_commands():
        p = sub.add_parser(
            command.name,
            parents=[where],
            formatter_class=_formatter,
            help=command.help,
            description=command.help[:1].upper() + command.help[1:] + ".",
        )
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


def request_parts(command: Command, args: argparse.Namespace | QuickArgs) -> tuple[dict, dict, dict | None]:
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


def parsed_args(argv: list[str]) -> argparse.Namespace | int:
    """ARGV read by argparse, --socket and --config None when not given; the exit code instead for --help,
    --version (0) and usage errors (2)."""
    try:
        args = build_parser(requested(argv)).parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    args.socket = getattr(args, "socket", None)
    args.config = getattr(args, "config", None)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = quick_args(argv) or parsed_args(argv)
    if isinstance(args, int):
        return args
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
