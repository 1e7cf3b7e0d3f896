"""The installed agent at work: `/usr/bin/eventsink-agent run` as the package's
own user (as the systemd unit runs it), events from a `Publisher` delivered to
a `Receiver`, the publish socket open to members of the group only, its
/metrics passing `promtool check metrics`, and a real Prometheus (Debian's
/usr/bin/prometheus) scraping it, evaluating the shipped alert rules and the
dashboard's queries. Needs root (dpkg, setpriv)."""

from __future__ import annotations

import grp
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass

import pytest

from bus.publisher import Publisher
from tests.helpers import wait_until
from tests.packaging.conftest import PACKAGING, need_tool, sh
from tests.packaging.harness import (
    CONTRACT_METRICS,
    NOT_UP_YET,
    USER,
    agent_base_dir,
    dashboard_exprs,
    free_port,
    http_get,
    launch_installed_agent,
)
from tools.receiver import Receiver

EVENTS = 7  # conference events the test publishes


def as_user(user: str, group: str, groups: list[str], argv: list[str], **kw) -> subprocess.CompletedProcess:
    """ARGV run with the given uid/gid/supplementary groups (setpriv)."""
    cmd = [
        "setpriv",
        f"--reuid={user}",
        f"--regid={group}",
        f"--groups={','.join(groups)}" if groups else "--clear-groups",
        "--",
    ] + argv
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, **kw)


@dataclass
class RunningAgent:
    base: str
    proc: subprocess.Popen
    receiver: Receiver
    metrics_port: int
    log_path: str
    published: int = 0

    @property
    def runtime_dir(self) -> str:
        return os.path.join(self.base, "run")

    @property
    def publish_socket(self) -> str:
        return os.path.join(self.runtime_dir, "publish.sock")

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return fh.read()[-4000:]
        except OSError:
            return ""

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"the installed agent exited with {self.proc.returncode}:\n{self.log()}")
        return True


@pytest.fixture(scope="module")
def agent(installed):
    """`/usr/bin/eventsink-agent run` of the installed package, as user eventsink-agent
    with umask 027 (like the unit), its runtime and state dirs in a temp dir."""
    need_tool("setpriv", "util-linux")
    receiver = Receiver(port=0).start()
    metrics_port = free_port()
    base, config_path = agent_base_dir(receiver.url, metrics_port)
    log_path = os.path.join(base, "agent.log")
    proc = launch_installed_agent(config_path, log_path)
    running = RunningAgent(base, proc, receiver, metrics_port, log_path)
    try:
        wait_until(
            lambda: running.alive() and "eventsink_publisher_running" in http_get(running.metrics_url),
            30,
            "the installed agent's /metrics",
            interval=0.1,
            retry_on=NOT_UP_YET,
        )
        wait_until(
            lambda: running.alive() and os.path.exists(running.publish_socket),
            10,
            "publish.sock",
            interval=0.1,
            retry_on=NOT_UP_YET,
        )
        with Publisher(f"ipc://{running.publish_socket}") as pub:
            assert pub.wait_ready(10), "the agent never subscribed on its publish socket"
            for i in range(EVENTS):
                pub.publish("conference_started", {"name": f"meet.package-{i}"})
        running.published = EVENTS
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        receiver.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_the_installed_agent_delivers_published_events_in_order(agent):
    assert agent.receiver.wait_events(1 + EVENTS, 20), (
        f"receiver got {len(agent.receiver.events)} events, wanted {1 + EVENTS}\n{agent.log()}"
    )
    events = agent.receiver.events
    assert events[0]["event"] == "eventsink_started" and events[0]["seq"] == 1
    conference = [e for e in events if e["event"] == "conference_started"]
    assert [e["data"]["name"] for e in conference] == [f"meet.package-{i}" for i in range(EVENTS)]
    assert [e["seq"] for e in events[: 1 + EVENTS]] == list(range(1, 2 + EVENTS))
    assert {e["node"] for e in events} == {"127.0.0.1"}
    assert not agent.receiver.problems, agent.receiver.problems


def test_the_publish_socket_is_open_to_the_group_and_closed_to_others(agent):
    st = os.stat(agent.publish_socket)
    assert st.st_gid == grp.getgrnam(USER).gr_gid
    connect = [
        "/usr/bin/python3",
        "-c",
        "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); print('connected')",
        agent.publish_socket,
    ]
    member = as_user("nobody", "nogroup", [USER], connect)
    assert member.returncode == 0 and "connected" in member.stdout, member.stderr
    stranger = as_user("nobody", "nogroup", [], connect)
    assert stranger.returncode != 0 and "PermissionError" in stranger.stderr, stranger.stdout + stranger.stderr


def test_promtool_check_metrics_accepts_the_agents_metrics(agent):
    need_tool("promtool", "prometheus")
    text = http_get(agent.metrics_url)
    for name, kind in CONTRACT_METRICS.items():
        family = name.removesuffix("_total")
        assert re.search(rf"^# TYPE ({re.escape(name)}|{re.escape(family)}) {kind}$", text, re.M), (
            f"{name} ({kind}) missing"
        )
    proc = sh(["promtool", "check", "metrics"], input=text, stdin=None, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def prometheus(agent):
    """Debian's Prometheus on 127.0.0.1 scraping the agent every second, with the shipped rules."""
    need_tool("prometheus", "prometheus")
    base = tempfile.mkdtemp(prefix="esa-prom-", dir="/tmp")
    port = free_port()
    rules = os.path.join(PACKAGING, "prometheus", "eventsink-agent.rules.yml")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [rules],
        "scrape_configs": [
            {"job_name": "eventsink-agent", "static_configs": [{"targets": [f"127.0.0.1:{agent.metrics_port}"]}]}
        ],
    }
    config_path = os.path.join(base, "prometheus.yml")
    with open(config_path, "w", encoding="utf-8") as fh:
        json.dump(config, fh)  # JSON is YAML
    log_path = os.path.join(base, "prometheus.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config_path}",
                f"--storage.tsdb.path={base}/data",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=base,
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            with open(log_path, encoding="utf-8", errors="replace") as fh:
                pytest.fail(f"prometheus exited with {proc.returncode}:\n{fh.read()[-3000:]}")
        return "Ready" in http_get(f"{url}/-/ready")

    try:
        wait_until(ready, 30, "prometheus to be ready", interval=0.1, retry_on=NOT_UP_YET)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(base, ignore_errors=True)


def prom_query(url: str, expr: str) -> list[dict]:
    body = json.loads(http_get(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_scrapes_the_delivered_count_per_sink(agent, prometheus):
    assert agent.receiver.wait_events(1 + EVENTS, 20), agent.log()
    delivered = len(agent.receiver.events)  # every one of them was answered 200

    def scraped() -> bool:
        result = prom_query(prometheus, "eventsink_events_delivered_total")
        values = {r["metric"].get("sink"): float(r["value"][1]) for r in result}
        return values.get("cdr") == delivered

    wait_until(
        scraped,
        30,
        f'Prometheus to report eventsink_events_delivered_total{{sink="cdr"}} == {delivered}',
        interval=0.1,
        retry_on=NOT_UP_YET,
    )
    result = prom_query(prometheus, 'eventsink_events_delivered_total{sink="cdr", job="eventsink-agent"}')
    assert len(result) == 1 and result[0]["metric"]["instance"] == f"127.0.0.1:{agent.metrics_port}"


def test_prometheus_evaluates_the_shipped_rules_and_nothing_fires(agent, prometheus):
    def evaluated() -> list[dict]:
        body = json.loads(http_get(f"{prometheus}/api/v1/rules"))
        rules = [r for g in body["data"]["groups"] for r in g["rules"]]
        never = "0001-01-01"  # Prometheus's zero time: not evaluated yet
        return rules if rules and all(not r.get("lastEvaluation", never).startswith(never) for r in rules) else []

    rules = wait_until(evaluated, 20, "every shipped rule to be evaluated", interval=0.1, retry_on=NOT_UP_YET)
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
    assert len(rules) >= 6
    # a healthy agent with a healthy receiver: no alert is firing
    assert not [r["name"] for r in rules if r.get("state") == "firing"]


def test_every_dashboard_query_runs_and_delivered_per_second_has_the_sink(agent, prometheus):
    exprs = [
        e.replace("$instance", ".*").replace("$sink", ".*").replace("$__rate_interval", "15s")
        for e in dashboard_exprs()
    ]
    for expr in exprs:
        prom_query(prometheus, expr)  # a bad query is status "error" (HTTP 400)
    delivered_rate = next(e for e in exprs if "rate(eventsink_events_delivered_total" in e)
    wait_until(
        lambda: any(r["metric"].get("sink") == "cdr" for r in prom_query(prometheus, delivered_rate)),
        20,
        "the dashboard's delivered/s query to return the sink",
        interval=0.1,
        retry_on=NOT_UP_YET,
    )


def test_sigterm_stops_the_installed_agent_gracefully(agent):
    agent.alive()
    agent.proc.send_signal(signal.SIGTERM)
    try:
        code = agent.proc.wait(20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the agent did not stop within 20 s of SIGTERM\n{agent.log()}")
    assert code == 0, agent.log()
