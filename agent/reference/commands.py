"""docs/commands.md, generated from the argparse parsers of agent/cli.py and agent/client/ctl.py.

Owns turning each subcommand of `eventsink-agent` and `eventsinkctl` into a
section: its usage line, its description and a table of its arguments, as
`--help` prints them. Options every subcommand of a program takes are listed
once. What argparse cannot say (exit codes, a command that is in the contract
but not in this parser yet) is written here, beside the code that owns it.
"""

from __future__ import annotations

import argparse

from agent import cli
from agent.client import ctl
from agent.commands.client import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE
from agent.commands.registry import COMMANDS

INTRO = """\
# Commands

Generated from the argument parsers in `agent/cli.py` and `agent/client/ctl.py` by
`python -m agent.reference --write`: do not edit by hand. `COMMAND --help` prints the same.

Every command: `--help`; errors go to stderr as one plain sentence (no Python traceback for an
operator's mistake: a bad path, a bad config, an agent that is not running); a failure exits
non-zero. The config keys are in [config.md](config.md), the control API `eventsinkctl` speaks in
[control-api.md](control-api.md).
"""

AGENT_EXIT = f"""\
Exit status of `eventsink-agent`: {EXIT_OK} done (for `run`: a graceful stop after SIGTERM or SIGINT;
for `check`: the config is valid, warnings included); 1 an operator's mistake or a failure, said in
one sentence (for `check`: the config has problems, each printed with its key and line); {EXIT_USAGE} a usage
error on the command line; 130 interrupted by Ctrl-C.
"""

CTL_EXIT = f"""\
Exit status of `eventsinkctl`: {EXIT_OK} done; {EXIT_FAILED} the agent refused or failed (its reason on stderr, and for
a refused `reload` each problem of the file), or a value the client itself can tell is unusable; {EXIT_USAGE} a
usage error; {EXIT_UNREACHABLE} no agent answers on the control socket (not running, no socket, no permission).
With `--json` the agent's JSON answer is printed as it came.
"""

# Commands of the contract not (yet) in this parser, by program: written out by hand until they are.
PENDING: dict[str, dict[str, tuple[str, str]]] = {
    cli.PROG: {
        "console-password": (
            "set the browser console's password",
            "`eventsink-agent console-password --file PATH`\n\n"
            "Asks for the browser console's password twice (or reads one line from stdin when it is not a\n"
            "terminal) and writes its salted hash, never the password, to PATH with mode 0600: the\n"
            "`[console] password_file` ([console.md](console.md)).\n",
        )
    }
}


def _subparsers(parser: argparse.ArgumentParser) -> tuple[dict[str, argparse.ArgumentParser], dict[str, str]]:
    """The subcommands' parsers and their one-line help, in the order --help lists them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices), {a.dest: a.help or "" for a in action._choices_actions}
    return {}, {}


def _flags(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest.upper()}`"
    takes_value = action.nargs != 0
    metavar = action.metavar or action.dest.upper()
    return ", ".join(f"`{o} {metavar}`" if takes_value else f"`{o}`" for o in action.option_strings)


def _notes(action: argparse.Action) -> str:
    notes = []
    if action.required and action.option_strings:
        notes.append("required")
    if action.choices and not isinstance(action, argparse._SubParsersAction):
        notes.append("one of " + ", ".join(f"`{c}`" for c in action.choices))
    return "; ".join(notes)


def _help(action: argparse.Action) -> str:
    return (action.help or "").replace("%%", "%").replace("|", "\\|")


def _options_table(actions: list[argparse.Action]) -> str:
    lines = ["| argument | | meaning |", "| --- | --- | --- |"]
    lines += [f"| {_flags(a)} | {_notes(a)} | {_help(a)} |" for a in actions]
    return "\n".join(lines) + "\n"


def _usage(parser: argparse.ArgumentParser) -> str:
    text = " ".join(parser.format_usage().split())
    return "```\n" + text.removeprefix("usage: ") + "\n```\n"


def _shown(action: argparse.Action) -> bool:
    return not isinstance(action, (argparse._HelpAction, argparse._VersionAction))


def program_section(prog: str, parser: argparse.ArgumentParser, exit_text: str, routes: dict[str, str]) -> str:
    subs, summaries = _subparsers(parser)
    pending = {n: v for n, v in PENDING.get(prog, {}).items() if n not in subs}
    common = set.intersection(*({o for a in p._actions for o in a.option_strings} for p in subs.values()))
    shared = [a for a in parser._actions if a.option_strings and _shown(a)]
    shared_names = {o for a in shared for o in a.option_strings} & common
    every = [
        a
        for a in next(iter(subs.values()))._actions
        if set(a.option_strings) & common and _shown(a) and not set(a.option_strings) & shared_names
    ]
    parts = [f"## `{prog}`\n", (parser.description or "") + "\n", "| command | does |", "| --- | --- |"]
    summaries.update({n: summary for n, (summary, _) in pending.items()})
    names = list(subs) + list(pending)
    for name in names:
        parts.append(f"| [`{name}`](#{prog}-{name}) | {summaries[name].replace('|', chr(92) + '|')} |")
    parts[-1] += "\n"
    if shared:
        parts += ["Options before or after the command:\n", _options_table(shared)]
    if every:
        parts += ["Options every command takes:\n", _options_table(every)]
    parts.append(exit_text)
    for name in names:
        parts.append(f"### `{prog} {name}`\n")
        if name in pending:
            parts.append(pending[name][1])
            continue
        sub = subs[name]
        parts += [_usage(sub), (sub.description or "") + "\n"]
        if name in routes:
            parts.append(f"Asks the agent `{routes[name]}` ([control-api.md](control-api.md)).\n")
        own = [a for a in sub._actions if _shown(a) and not set(a.option_strings) & (common | shared_names)]
        if own:
            parts.append(_options_table(own))
    return "\n".join(parts)


def commands_markdown() -> str:
    """The text of docs/commands.md."""
    routes = {c.name: f"{c.method} {c.path}" for c in COMMANDS if c.in_ctl}
    return "\n".join(
        [
            INTRO,
            program_section(cli.PROG, cli.build_parser(), AGENT_EXIT, {}),
            program_section(ctl.PROG, ctl.build_parser(), CTL_EXIT, routes),
        ]
    )
