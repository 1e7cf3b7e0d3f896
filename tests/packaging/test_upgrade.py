"""A package upgrade under load loses nothing and duplicates nothing (docs/bus.md,
"The Publisher"): the installed .deb is upgraded to a rebuilt higher version while
a conference process publishes 200 events/s through `Publisher`, and every
event reaches the sink exactly once.

The maintainer scripts stop the agent in prerm and start the new version in
postinst (packaging/debian/prerm says why). Where systemd runs they do it
through `deb-systemd-invoke`; here systemd is not PID 1, so the scripts leave
the service alone and the test plays the unit's part at the same points: the
installed agent runs as the unit runs it, it gets SIGTERM (`systemctl stop`)
and is waited for before dpkg unpacks the new version, and the new binary is
started once dpkg has configured it. That the scripts really ask systemd for
exactly that is checked on its own, with systemd's commands replaced by
recorders in a mount namespace that makes the scripts believe systemd runs.
Needs root (dpkg, setpriv, unshare)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from tests.faults.oracle import Tally, journal_head
from tests.helpers import wait_until
from tests.packaging.conftest import BUILD_SCRIPT, PACKAGE, dpkg, install, need_tool, package_status, sh
from tests.packaging.harness import NOT_UP_YET, USER, agent_base_dir, free_port, http_get, launch_installed_agent
from tools.receiver import Receiver

pytestmark = pytest.mark.root

VENV_PYTHON = "/opt/eventsink-agent/bin/python"
RATE = 200  # events/s the conference process publishes
MAX_SECONDS = 120.0  # the publisher's own bound: it ends after this even if never told to
BEFORE_UPGRADE = 2 * RATE  # events delivered by the old version before its stop
AFTER_UPGRADE = 2 * RATE  # events delivered by the new version before the publisher is told to finish
STOP_TIMEOUT = 20.0  # the unit's TimeoutStopSec (15 s) and a margin
FLUSH_TIMEOUT = 30.0  # the publisher's flush() once told to finish
PREFIX = "up"

# A conference process: Publisher from the installed venv (-I: nothing of this work tree), one
# unique fid per event, paced to RATE, until SIGTERM, MAX_SECONDS or its count; then flush().
# Everything it needs is imported before the first event: dpkg replaces the venv it runs from.
PUBLISHER_SCRIPT = r"""
import json, signal, sys, time
from bus.publisher import Publisher

endpoint, prefix, rate, max_seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
flush_timeout = float(sys.argv[5])
if not hasattr(Publisher, "flush"):
    print(json.dumps({"error": "this Publisher has no flush(): it predates docs/bus.md's Publisher"}), flush=True)
    sys.exit(2)
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
pub = Publisher(endpoint)
if not pub.wait_ready(15):
    print(json.dumps({"error": "the agent never subscribed"}), flush=True)
    sys.exit(1)
sent, started = 0, time.monotonic()
limit = int(rate * max_seconds)
while not stopping and sent < limit:
    pub.publish("conference_updated", {"name": "meet.upgrade", "fid": f"{prefix}-{sent}"})
    sent += 1
    ahead = sent / rate - (time.monotonic() - started)
    if ahead > 0.001:
        time.sleep(ahead)  # pacing to RATE, not waiting for anything
flushed = pub.flush(flush_timeout)
result = {"published": sent, "seconds": round(time.monotonic() - started, 1), "flushed": flushed,
          "pending": pub.pending, "dropped": pub.dropped, "stopped_early": not stopping}
pub.close(5.0)
print(json.dumps(result), flush=True)
"""


def show(request, line: str) -> None:
    """LINE on the terminal now, whether the test passes or not (pytest -q shows no test output)."""
    request.config.pluginmanager.get_plugin("terminalreporter").write_line(line)


def deb_version(deb: str) -> str:
    return sh(["dpkg-deb", "--field", deb, "Version"]).stdout.strip()


def installed_version() -> str:
    return sh(["dpkg-query", "-W", "-f=${Version}", PACKAGE]).stdout.strip()


@pytest.fixture(scope="module")
def higher_deb(deb_path, tmp_path_factory) -> str:
    """The same work tree built as a higher package version (its changelog entry lives in the
    build directory only; packaging/debian/changelog is not touched)."""
    version = deb_version(deb_path) + "+upgradetest1"
    out = tmp_path_factory.mktemp("deb-higher")
    proc = subprocess.run(
        [sys.executable, BUILD_SCRIPT, "--out", str(out), "--version", version],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        pytest.fail(f"build_deb.py --version {version} failed ({proc.returncode}):\n{proc.stderr}")
    deb = proc.stdout.strip().splitlines()[-1]
    assert deb_version(deb) == version
    sh(["dpkg", "--compare-versions", version, "gt", deb_version(deb_path)])
    return deb


def stop_like_the_unit(proc: subprocess.Popen, log) -> int:
    """`systemctl stop` with KillMode=mixed: SIGTERM to the supervisor only, then wait for it."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        pytest.fail(f"the agent did not stop within {STOP_TIMEOUT:.0f} s of SIGTERM\n{log()}")


def wait_subscribed_socket(proc: subprocess.Popen, base: str, metrics_port: int, log) -> None:
    """Until the agent serves /metrics and its publish socket exists (it exits: the test fails)."""

    def up() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"the installed agent exited with {proc.returncode}:\n{log()}")
        return os.path.exists(os.path.join(base, "run", "publish.sock")) and "eventsink_publisher_running" in http_get(
            f"http://127.0.0.1:{metrics_port}/metrics"
        )

    wait_until(up, 30, "the installed agent's publish socket and /metrics", interval=0.1, retry_on=NOT_UP_YET)


def test_an_upgrade_under_200_events_per_s_loses_and_duplicates_nothing(installed, higher_deb, request):
    need_tool("setpriv", "util-linux")
    old_deb = installed
    old_version, new_version = deb_version(old_deb), deb_version(higher_deb)
    assert installed_version() == old_version
    receiver = Receiver(port=0).start()
    metrics_port = free_port()
    base, config_path = agent_base_dir(receiver.url, metrics_port)
    log_path = os.path.join(base, "agent.log")
    script_path = os.path.join(base, "publisher.py")
    with open(script_path, "w", encoding="utf-8") as fh:
        fh.write(PUBLISHER_SCRIPT)
    os.chmod(script_path, 0o644)

    def log() -> str:
        with open(log_path, encoding="utf-8", errors="replace") as fh:
            return fh.read()[-4000:]

    agent = launch_installed_agent(config_path, log_path)
    publisher = None
    try:
        wait_subscribed_socket(agent, base, metrics_port, log)
        # A conference process: not the agent's user, a member of its group (the socket is 0660).
        publisher = subprocess.Popen(
            [
                "setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                f"--groups={USER}",
                "--",
                VENV_PYTHON,
                "-I",
                script_path,
                f"ipc://{base}/run/publish.sock",
                PREFIX,
                str(RATE),
                str(MAX_SECONDS),
                str(FLUSH_TIMEOUT),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd="/",
        )
        tally = Tally(receiver)

        def delivered_at_least(n: int):
            def pred() -> bool:
                if publisher.poll() is not None:
                    pytest.fail(
                        f"the publisher ended early ({publisher.returncode}): "
                        f"{publisher.stdout.read()} {publisher.stderr.read()[-2000:]}"
                    )
                return tally.update().distinct >= n

            return pred

        wait_until(
            delivered_at_least(BEFORE_UPGRADE),
            30,
            f"{BEFORE_UPGRADE} events delivered by {old_version}",
            interval=0.1,
            retry_on=NOT_UP_YET,
        )

        # prerm: the unit is stopped (SIGTERM, waited for) before dpkg replaces any file.
        upgrade_started = time.monotonic()
        assert stop_like_the_unit(agent, log) == 0, log()
        delivered_by_old = tally.update().distinct
        dpkg("--install", higher_deb)
        assert installed_version() == new_version
        # postinst: the unit is started again, now from the new version's files.
        agent = launch_installed_agent(config_path, log_path)
        wait_subscribed_socket(agent, base, metrics_port, log)
        downtime = time.monotonic() - upgrade_started
        wait_until(
            delivered_at_least(delivered_by_old + AFTER_UPGRADE),
            60,
            f"{AFTER_UPGRADE} more events delivered by {new_version}",
            interval=0.1,
            retry_on=NOT_UP_YET,
        )

        publisher.send_signal(signal.SIGTERM)  # the conference process finishes: flush, close
        out, err = publisher.communicate(timeout=FLUSH_TIMEOUT + 30)
        assert publisher.returncode == 0, f"the publisher failed ({publisher.returncode}): {out} {err[-2000:]}"
        result = json.loads(out.strip().splitlines()[-1])
        assert result["stopped_early"] is False, f"the publisher hit its own bound before the test ended: {result}"
        published = result["published"]
        expected = {f"{PREFIX}-{i}" for i in range(published)}

        def all_delivered() -> bool:
            return tally.update().distinct >= published

        try:
            wait_until(
                all_delivered, 60, f"all {published} published events delivered", interval=0.1, retry_on=NOT_UP_YET
            )
        except pytest.fail.Exception:
            pass  # what never comes is counted as lost below, with the other figures
        tally.update()
        lost = len(expected - set(tally.counts))
        # The journal was created by the first start: its head is what the brokers took in, so
        # a lost event is either lost on the bus (never journaled) or lost in delivery.
        journaled = journal_head(os.path.join(base, "state", "journal.sqlite3"))
        foreign = sorted(set(tally.counts) - expected)
        show(
            request,
            f"upgrade {old_version} -> {new_version} under {RATE} events/s: published={published} "
            f"journaled={journaled} delivered={tally.delivered} distinct={tally.distinct} "
            f"duplicates={tally.duplicates} lost={lost} "
            f"publisher_pending={result['pending']} publisher_dropped={result['dropped']} "
            f"agent_down={downtime:.1f}s delivered_before_stop={delivered_by_old}",
        )
        assert result["flushed"] and result["pending"] == 0 and result["dropped"] == 0, result
        assert not foreign, f"delivered fids never published: {foreign[:5]}"
        assert (lost, tally.duplicates) == (0, 0), (
            f"lost {lost}, duplicated {tally.duplicates} (e.g. lost {sorted(expected - set(tally.counts))[:5]}); "
            f"{published - journaled} of {published} published were never journaled"
        )
        assert installed_version() == new_version
    finally:
        if publisher is not None and publisher.poll() is None:
            publisher.kill()
            publisher.communicate(timeout=10)
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait(5)
        receiver.stop()
        shutil.rmtree(base, ignore_errors=True)
        # back to the session's package for the tests that follow (a downgrade; dpkg allows it)
        if package_status() != "installed" or installed_version() != old_version:
            install(old_deb)


RECORDER = """#!/bin/sh
echo "$(basename "$0") $*" >> "$SYSTEMD_CALLS"
"""


def test_the_scripts_stop_the_unit_before_an_upgrade_and_start_it_after_where_systemd_runs(installed):
    """dpkg's order for an upgrade (old prerm upgrade, old postrm upgrade, new postinst configure),
    run with the installed scripts where /run/systemd/system exists: the unit is stopped first
    and started (restart of a stopped unit) last. systemctl, deb-systemd-invoke and
    deb-systemd-helper only record their arguments; /run and /opt are private tmpfs mounts, so
    neither this machine's /run nor the installed venv's byte-code is touched."""
    need_tool("unshare", "util-linux")
    version = installed_version()
    scripts = {name: f"/var/lib/dpkg/info/{PACKAGE}.{name}" for name in ("prerm", "postrm", "postinst")}
    work = tempfile.mkdtemp(prefix="esa-scripts-", dir="/tmp")
    try:
        bin_dir = os.path.join(work, "bin")
        os.mkdir(bin_dir)
        for name in ("systemctl", "deb-systemd-invoke", "deb-systemd-helper"):
            path = os.path.join(bin_dir, name)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(RECORDER)
            os.chmod(path, stat.S_IRWXU)
        calls = os.path.join(work, "calls")
        steps = " && ".join(
            [
                f"echo 'dpkg prerm' >> {calls}",
                f"{scripts['prerm']} upgrade {version}+next",
                f"echo 'dpkg unpack' >> {calls}",
                f"{scripts['postrm']} upgrade {version}+next",
                f"echo 'dpkg configure' >> {calls}",
                f"{scripts['postinst']} configure {version}",
            ]
        )
        env = {"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_CALLS": calls, "LANG": "C.UTF-8"}
        sh(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-ec",
                "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && mount -t tmpfs tmpfs /opt && " + steps,
            ],
            env=env,
        )
        with open(calls, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
        unit = f"{PACKAGE}.service"
        invoked = [line for line in lines if line.startswith(("dpkg ", "deb-systemd-invoke "))]
        assert invoked == [
            "dpkg prerm",
            f"deb-systemd-invoke stop {unit}",
            "dpkg unpack",
            "dpkg configure",
            f"deb-systemd-invoke restart {unit}",
        ], lines
    finally:
        shutil.rmtree(work, ignore_errors=True)
