"""Starting the two listeners the supervisor serves: the control socket
(agent/server/control.py) and, when `metrics_listen` is set, the Prometheus
endpoint (agent/supervision/metrics.py). Each failure is one StartupError sentence."""

from __future__ import annotations

from agent.supervision.runtime import StartupError
from common.config_types import parse_listen


def start_control(path: str, supervisor):
    """A running ControlServer for SUPERVISOR on the unix socket PATH."""
    from agent.server.control import ControlServer

    try:
        server = ControlServer(path, supervisor)
        server.start()
    except Exception as exc:  # ControlSocketError, OSError: one line, exit 1
        raise StartupError(f"cannot serve the control socket {path}: {exc}") from None
    return server


def start_metrics(listen: str, collector):
    """A MetricsServer on LISTEN (HOST:PORT) serving COLLECTOR."""
    from prometheus_client import CollectorRegistry

    from agent.supervision.metrics import MetricsServer

    host, port = parse_listen(listen) or ("127.0.0.1", 9712)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    try:
        return MetricsServer(host, port, registry)
    except OSError as exc:
        raise StartupError(f"cannot serve metrics on {listen}: {exc.strerror or exc}") from None
