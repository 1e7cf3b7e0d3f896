"""One smoke test with real parts: the supervisor (in a thread of this test)
starts the real broker and a real worker with the real launcher, sees the
worker's reports over the real supervisor link, restarts it after `kill -9`,
and stops everything gracefully."""

import os
import shutil
import signal
import tempfile
import threading
import time

import pytest

from agent.supervision.supervisor import Supervisor
from common import config as config_mod
from tests.helpers import wait_until
from tools.receiver import Receiver

pytestmark = pytest.mark.agent_process  # runs the supervisor with real children as real processes (not in `make check`)


@pytest.fixture
def base():
    path = tempfile.mkdtemp(prefix="esa-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_real_children_restart_and_graceful_stop(base):
    with Receiver() as rx:
        text = f"""
[node]
address = "10.44.99.2"
location = "Oslo"
[agent]
runtime_dir = "{base}/run"
state_dir = "{base}/state"
metrics_listen = ""
[[sink]]
name = "cdr"
url = "{rx.url}"
locations = ["Oslo"]
"""
        path = os.path.join(base, "agent.toml")
        with open(path, "w") as fh:
            fh.write(text)
        sup = Supervisor(path, config_mod.load_or_raise(path), serve=False)
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("code", sup.run()))
        t.start()
        try:

            def sink():
                return sup.request("status").result(timeout=5)["sinks"][0]

            first = wait_until(
                lambda: (s := sink())["state"] == "running" and s, timeout=15.0, what="worker running", retry_on=()
            )
            assert first["pid"] and rx.wait_events(1, timeout=10)
            os.kill(first["pid"], signal.SIGKILL)
            second = wait_until(
                lambda: (s := sink())["state"] == "running" and s["pid"] != first["pid"] and s,
                timeout=15.0,
                what="worker restarted",
                retry_on=(),
            )
            assert second["restarts"] == 1
            assert rx.wait_for(lambda r: sum(e["event"] == "eventsink_started" for e in r.events) == 2, timeout=10)
            t0 = time.monotonic()
            sup.request("shutdown").result(timeout=5)
            t.join(timeout=15)
            assert not t.is_alive() and result["code"] == 0
            assert time.monotonic() - t0 < 10
            assert rx.wait_for(lambda r: r.events[-1]["event"] == "eventsink_ended", timeout=5)
            assert not os.path.exists(os.path.join(base, "run", "supervisor.sock"))
        finally:
            if t.is_alive():
                sup.request("shutdown")
                t.join(timeout=15)
