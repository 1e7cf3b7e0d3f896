"""eventsink-agent: the supervisor side (process supervision, control socket, commands, metrics, CLI)."""

from common import __version__  # noqa: F401 - the agent's version, defined once in common/
