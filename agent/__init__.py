"""eventsink-agent: the supervisor side (config, process supervision, control socket, metrics, CLI)."""

__version__ = "0.1.0"
