"""The one error type of the control surface, mapped to HTTP statuses (server side)
and to exit codes (eventsinkctl) in agent/commands/client.py."""

from __future__ import annotations


class CommandError(Exception):
    """A control command that could not be carried out: an HTTP status, one plain sentence, optional problems."""

    def __init__(self, status: int, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []

    def body(self) -> dict:
        out: dict = {"error": self.message}
        if self.problems:
            out["problems"] = self.problems
        return out
