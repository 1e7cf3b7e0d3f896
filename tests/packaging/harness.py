"""What the package tests share: the installed agent started as its systemd unit starts it
(its user, a config in a temporary base directory), a free loopback port and a GET to it, the
metric names of the contract and the shipped dashboard's queries."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import urllib.request

from tests.packaging.conftest import PACKAGING

USER = "eventsink-agent"
ASSETS = os.path.join(PACKAGING, "prometheus")
DASHBOARD = os.path.join(ASSETS, "eventsink-agent.dashboard.json")
# What a wait for the installed agent or Prometheus retries on while they start: a refused or
# reset connection, an answer not yet complete, a series not yet listed.
NOT_UP_YET = (OSError, ValueError, KeyError)

# docs/metrics.md: name -> type.
CONTRACT_METRICS = {
    "eventsink_bus_received_total": "counter",
    "eventsink_bus_rejected_total": "counter",
    "eventsink_events_delivered_total": "counter",
    "eventsink_post_attempts_total": "counter",
    "eventsink_post_duration_seconds": "histogram",
    "eventsink_event_age_seconds": "histogram",
    "eventsink_backlog_events": "gauge",
    "eventsink_in_flight_posts": "gauge",
    "eventsink_retry_backoff_seconds": "gauge",
    "eventsink_publisher_running": "gauge",
    "eventsink_alarm_active": "gauge",
    "eventsink_worker_restarts_total": "counter",
    "eventsink_journal_bytes": "gauge",
    "eventsink_journal_retained_events": "gauge",
    "eventsink_dead_letters_total": "counter",
    "eventsink_dead_letter_events": "gauge",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # 127.0.0.1 only
        return resp.read().decode("utf-8")


def agent_base_dir(receiver_url: str, metrics_port: int) -> tuple[str, str]:
    """(base, config path): a temp dir owned by the agent's user with a config whose runtime and
    state dirs are inside it, one sink "cdr" posting to RECEIVER_URL."""
    base = tempfile.mkdtemp(prefix="esa-", dir="/tmp")
    config = f"""
[node]
address = "127.0.0.1"
location = "Oslo"

[agent]
runtime_dir = "{base}/run"
state_dir = "{base}/state"
metrics_listen = "127.0.0.1:{metrics_port}"

[[sink]]
name = "cdr"
url = "{receiver_url}"
locations = ["Oslo"]
"""
    config_path = os.path.join(base, "agent.toml")
    with open(config_path, "w", encoding="utf-8") as fh:
        fh.write(config)
    shutil.chown(base, USER, USER)
    os.chmod(base, 0o750)
    shutil.chown(config_path, "root", USER)
    os.chmod(config_path, 0o640)
    return base, config_path


def launch_installed_agent(config_path: str, log_path: str) -> subprocess.Popen:
    """`/usr/bin/eventsink-agent run` as the unit's ExecStart runs it: as user eventsink-agent
    with umask 027, its output appended to LOG_PATH."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [
                "setpriv",
                f"--reuid={USER}",
                f"--regid={USER}",
                "--init-groups",
                "--",
                "/bin/sh",
                "-c",
                'umask 027 && exec /usr/bin/eventsink-agent run --config "$0"',
                config_path,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=os.path.dirname(config_path),
            env=env,
        )


def dashboard_exprs() -> list[str]:
    with open(DASHBOARD, encoding="utf-8") as fh:
        dash = json.load(fh)
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
