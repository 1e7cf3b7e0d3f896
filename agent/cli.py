"""`eventsink-agent`: the agent's command line (docs/commands.md).

Owns the subcommands `run`, `check`, `schema`, `demo`, `receive`, `import-pexip` and
`console-password`: their arguments, help, and the rule that an operator mistake (bad path, bad
config, socket in use) ends in one plain sentence on stderr and a non-zero exit, never
a traceback. The work itself is done elsewhere and imported lazily, so
`--help` and `check` stay fast: agent.supervision.supervisor, bus.schema, tools.demo,
tools.receive_command, agent.pexip.importer.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable

from agent import __version__
from common.vocabulary import SCHEMA_FORMATS, SchemaFormat

PROG = "eventsink-agent"
DEFAULT_CONFIG = "/etc/eventsink-agent/agent.toml"

log = logging.getLogger("agent.cli")


def _error(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- subcommands


def cmd_run(args: argparse.Namespace) -> int:
    from common import config as agent_config
    from common import logs

    result = agent_config.load(args.config)
    if result.problems or result.config is None:
        for p in result.problems:
            _error_line(p.render(args.config))
        _error(f"{args.config}: not starting: the config has {len(result.problems)} problem(s)")
        return 1
    config = result.config
    logs.configure("supervisor", logs.config_secrets(config))
    for w in result.warnings:
        log.warning("config: %s", w.render(args.config))
    from agent.server.control import ControlSocketError

    supervisor = importlib.import_module("agent.supervision.supervisor")
    try:
        return int(supervisor.Supervisor(args.config, config).run() or 0)
    except ControlSocketError as exc:
        _error(str(exc))
        return 1


def cmd_check(args: argparse.Namespace) -> int:
    from common import config as agent_config

    result = agent_config.load(args.config)
    if result.problems or result.config is None:
        for p in result.problems:
            _error_line(p.render(args.config))
        return 1
    for w in result.warnings:
        _error_line(f"warning: {w.render(args.config)}")
    config = result.config
    here = len(config.sinks_here())
    print(f"{args.config}: OK ({_plural(len(config.sink), 'sink')}, {here} at this location)")
    return 0


def _error_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def cmd_schema(args: argparse.Namespace) -> int:
    text = importlib.import_module("bus.schema").render(args.format)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    return int(importlib.import_module("tools.demo").main(args) or 0)


def cmd_receive(args: argparse.Namespace) -> int:
    return int(importlib.import_module("tools.receive_command").main(args) or 0)


def cmd_import_pexip(args: argparse.Namespace) -> int:
    return int(importlib.import_module("agent.pexip.importer").main(args) or 0)


def cmd_console_password(args: argparse.Namespace) -> int:
    return int(importlib.import_module("agent.console_password").main(args.file) or 0)


# ---------------------------------------------------------------- parser


def _listen(value: str) -> str:
    from common.config_types import parse_listen

    if parse_listen(value) is None:
        raise argparse.ArgumentTypeError(f"must be HOST:PORT, e.g. 127.0.0.1:8080 (got {value!r})")
    return value


def _positive(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds (got {value!r})") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0 (got {value})")
    return v


def _add_receive_checks(p: argparse.ArgumentParser) -> None:
    """`receive`'s checks: what it requires of a request, and its TLS."""
    p.add_argument("--username", metavar="U", default="", help="require Basic auth with this user name")
    p.add_argument("--password", metavar="P", default="", help="the Basic auth password (with --username)")
    p.add_argument(
        "--password-file",
        metavar="FILE",
        default="",
        help="read the Basic auth password from FILE (as the agent reads password_file)",
    )
    p.add_argument(
        "--secret", metavar="S", default="", help="verify Standard Webhooks signatures with this whsec_ secret"
    )
    p.add_argument("--secret-file", metavar="FILE", default="", help="read the whsec_ secret from FILE")
    p.add_argument(
        "--bearer-token-file",
        metavar="FILE",
        default="",
        help="require Authorization: Bearer with the first line of FILE (not with --username)",
    )
    p.add_argument("--tls-cert", metavar="FILE", default="", help="serve https with this PEM certificate (chain)")
    p.add_argument(
        "--tls-key", metavar="FILE", default="", help="its PEM private key (default: in the --tls-cert file)"
    )
    p.add_argument(
        "--client-ca",
        metavar="FILE",
        default="",
        help="require a client certificate signed by a CA in this PEM file (with --tls-cert)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Pushes conference and participant events from a Conferencing Node to event sink servers.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)

    def add(
        name: str, func: Callable[[argparse.Namespace], int], help: str, description: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description)
        p.set_defaults(func=func)
        return p

    _add_run_and_check(add)
    _add_schema(add)
    _add_demo(add)
    _add_receive(add)
    _add_import_pexip(add)
    _add_console_password(add)
    return parser


def _add_run_and_check(add: Callable[..., argparse.ArgumentParser]) -> None:
    """The commands that take the agent's config file: run it, or check it."""
    config_help = f"the agent's config file (default: {DEFAULT_CONFIG})"
    p = add(
        "run",
        cmd_run,
        "run the agent in the foreground",
        "Run the agent in the foreground until SIGTERM or SIGINT (graceful stop). SIGHUP re-reads the config.",
    )
    p.add_argument("--config", metavar="PATH", default=DEFAULT_CONFIG, help=config_help)

    p = add(
        "check",
        cmd_check,
        "validate a config file",
        "Validate a config file: print each problem with its key and line; exit 0 if valid, 1 if not. "
        "Warnings do not fail.",
    )
    p.add_argument("--config", metavar="PATH", default=DEFAULT_CONFIG, help=config_help)


def _add_schema(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add(
        "schema",
        cmd_schema,
        "print the event schema document",
        "Print the event schema: every event's envelope and data, per protocol version.",
    )
    p.add_argument(
        "--format",
        choices=SCHEMA_FORMATS,
        default=SchemaFormat.OPENAPI,
        help="openapi (OpenAPI 3.x JSON, the default) or swagger (Swagger 2.0 JSON)",
    )


def _add_demo(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add(
        "demo",
        cmd_demo,
        "run a self-contained demo and show delivered events live",
        "Start an agent with a built-in config, a simulated conference workload and a local receiver, "
        "and show the delivered events live until Ctrl-C.",
    )
    p.add_argument(
        "--duration", metavar="S", type=_positive, default=None, help="stop after S seconds (default: run until Ctrl-C)"
    )


def _add_console_password(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add(
        "console-password",
        cmd_console_password,
        "set the browser console's password",
        "Ask for the console user admin's password twice (or read one line from stdin when it is not a "
        "terminal) and write its salted scrypt hash to FILE, mode 0600 (the console's password_file).",
    )
    p.add_argument(
        "--file",
        metavar="PATH",
        required=True,
        help="where to write the hash, e.g. /etc/eventsink-agent/console.passwd",
    )


def _add_receive(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add(
        "receive",
        cmd_receive,
        "run a stand-alone test receiver for event sinks",
        "A test receiver: prints each event on one line, checks Basic auth or a bearer token and signatures, "
        "decompresses gzip bodies, unpacks bulk envelopes, and flags seq gaps, resets and duplicate webhook-ids. "
        "Over TLS it can require a client certificate. Secrets given on the command line show in ps: "
        "prefer the -file options.",
    )
    p.add_argument(
        "--listen",
        metavar="HOST:PORT",
        type=_listen,
        default="127.0.0.1:8080",
        help="address to listen on (default: 127.0.0.1:8080)",
    )
    p.add_argument(
        "--web",
        metavar="HOST:PORT",
        default="",
        help="also serve what was received as a live page at http://HOST:PORT/ (loopback addresses only)",
    )
    _add_receive_checks(p)


def _add_import_pexip(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add(
        "import-pexip",
        cmd_import_pexip,
        "write an agent.toml from a Pexip Infinity Management Node's export",
        "Turn the saved answers of a Management Node's configuration API (event_sink, system_location, global; "
        'each the list {"meta", "objects"} as ?limit=0 gives it, or one object) into an agent.toml for '
        "this node. Passwords go to mode-0600 password files beside -o PATH, never into the TOML; "
        "fields it does not use are named on stderr.",
    )
    p.add_argument(
        "--event-sinks", metavar="FILE", required=True, help="saved answer of /api/admin/configuration/v1/event_sink/"
    )
    p.add_argument(
        "--locations",
        metavar="FILE",
        default="",
        help="saved answer of /api/admin/configuration/v1/system_location/ (which sinks run where)",
    )
    p.add_argument(
        "--global",
        dest="global_",
        metavar="FILE",
        default="",
        help="saved answer of /api/admin/configuration/v1/global/ (the es_* tuning)",
    )
    p.add_argument("--address", metavar="A", required=True, help="this node's primary IP address ([node] address)")
    p.add_argument("--location", metavar="L", required=True, help="this node's system location ([node] location)")
    p.add_argument(
        "--role",
        metavar="R",
        choices=("transcoding", "proxying"),
        default="transcoding",
        help="transcoding (default) or proxying (a Proxying Edge Node)",
    )
    p.add_argument(
        "-o",
        dest="output",
        metavar="PATH",
        default="",
        help="write the TOML here (never over an existing file), passwords beside it; default: stdout",
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
