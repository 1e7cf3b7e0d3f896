"""What both ends of the control socket agree on, client side: every answer
becomes one `Reply` envelope, and `exit_code` is the one mapping from outcomes
to eventsinkctl's exit codes (0 ok, 1 the agent refused or failed, 2 usage
error, 3 agent not running / socket unreachable)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing only for type checkers: eventsinkctl starts without it (agent/commands/__init__.py)
if TYPE_CHECKING:
    from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1  # the agent answered: it refused (4xx) or failed (5xx); or a bad value on the command line
EXIT_USAGE = 2  # the operator's command line (argparse uses 2 as well)
EXIT_UNREACHABLE = 3  # no agent to talk to


class Reply:
    """What the agent answered to one command: HTTP status and decoded JSON body."""

    __slots__ = ("status", "body")

    def __init__(self, status: int, body: Any):
        self.status = status
        self.body = body

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reply) and (self.status, self.body) == (other.status, other.body)

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body!r})"

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error(self) -> str:
        """The agent's one-sentence reason (for a non-2xx answer)."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), str):
            return self.body["error"]
        return f"the agent answered HTTP {self.status}"

    @property
    def problems(self) -> list[str]:
        if isinstance(self.body, dict) and isinstance(self.body.get("problems"), list):
            return [str(p) for p in self.body["problems"]]
        return []


class Unreachable(Exception):
    """No agent answers on the control socket (not running, no socket, no permission)."""


class UsageError(Exception):
    """The operator's command line or environment cannot be used (bad --config, ...)."""


class BadValue(Exception):
    """A value on the command line that the client itself can tell is unusable (exit 1, like the agent's 400)."""


def exit_code(outcome: Reply | BaseException) -> int:
    """The one mapping from an outcome to eventsinkctl's exit code."""
    if isinstance(outcome, Reply):
        return EXIT_OK if outcome.ok else EXIT_FAILED
    if isinstance(outcome, Unreachable):
        return EXIT_UNREACHABLE
    if isinstance(outcome, UsageError):
        return EXIT_USAGE
    return EXIT_FAILED
