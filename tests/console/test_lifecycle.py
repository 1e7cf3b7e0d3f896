"""The console as a child of the supervisor, with real processes: there only while
`[console] listen` is set; restarted after `kill -9` (with the children's backoff);
stopped and started again by reloads that clear and set `listen`; gone after a
graceful stop; and HTTPS with a Secure cookie when tls_cert/tls_key are set."""

from __future__ import annotations

import os
import signal
import socket
import ssl

import pytest

from tests.console.harness import Browser, ConsoleAgent
from tests.e2e.harness import Agent, cmdline, sink
from tests.helpers import wait_until
from tests.tls_files import make_pki
from tools.receiver import Receiver


@pytest.fixture
def started():
    agents = []

    def start(agent):
        agents.append(agent)
        agent.start()
        return agent

    yield start
    for a in agents:
        a.cleanup()


@pytest.fixture(scope="module")
def rx():
    with Receiver() as r:
        yield r


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def test_no_console_process_without_listen(started, rx):
    agent = started(Agent([sink("cdr", rx.url)]))
    assert len(agent.child_pids()) == 2  # the broker and one worker
    assert "; console off" in agent.log()
    assert not any("-m console" in cmdline(pid) for pid in agent.child_pids())


def test_a_killed_console_is_restarted_and_serves_again(started, rx):
    agent = started(ConsoleAgent([sink("cdr", rx.url)]))
    first = agent.wait_console()
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: (agent.console_pid() or first) != first, 15, what="a new console process")
    second = agent.wait_console()
    assert second != first
    assert "console: running -> crashed" in agent.log() and "restart in" in agent.log()
    b = Browser(agent)
    assert b.login().status == 303 and b.get("/").status == 200


def test_reloads_that_clear_and_set_listen_stop_and_start_the_console(started, rx):
    agent = started(ConsoleAgent([sink("cdr", rx.url)]))
    agent.wait_console()
    listen = agent.console
    agent.console = {"password_file": agent.password_file}  # listen cleared
    agent.write_config()
    assert agent.ctl("reload").returncode == 0
    wait_until(lambda: agent.console_pid() is None and refused(agent.console_port), 15, what="the console gone")
    assert "console: turned off" in agent.log()
    agent.console = listen
    agent.write_config()
    assert agent.ctl("reload").returncode == 0
    agent.wait_console()
    assert agent.stop() == 0
    assert agent.child_pids() == []


def test_under_tls_the_console_speaks_https_with_a_secure_cookie(started, rx, tmp_path):
    pki = make_pki(str(tmp_path))
    agent = ConsoleAgent([sink("cdr", rx.url)], console={"tls_cert": pki.server_cert, "tls_key": pki.server_key})
    started(agent)
    b = Browser(agent, ca_file=pki.ca_cert)
    wait_until(lambda: b.get("/login").status == 200, 20, what="the console over https")
    answer = b.login()
    assert answer.status == 303
    [session] = [c for c in answer.header_all("Set-Cookie") if c.startswith("esa_session=")]
    assert "secure" in [f.strip().lower() for f in session.split(";")]
    assert b.get("/").status == 200
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        ssl.create_default_context().wrap_socket(
            socket.create_connection(("127.0.0.1", agent.console_port)), server_hostname="127.0.0.1"
        ).do_handshake()
    plain = socket.create_connection(("127.0.0.1", agent.console_port), timeout=5)
    plain.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        said = plain.recv(4096)
    except ConnectionResetError:
        said = b""
    finally:
        plain.close()
    assert b"200 OK" not in said and b"<form" not in said  # no page over plain http
