"""The console as one of the fleet's children (fake launcher, fake clock): started only
with `listen`, restarted after a crash with the restart backoff, restarted by new
settings, shut down when `listen` is cleared or the agent stops; its spec carries no
sink secret."""

import sys

import msgspec

from agent.supervision.console_child import ConsoleChild, console_spec, wanted
from agent.supervision.fleet import Fleet
from agent.supervision.states import ChildState as S
from common.config import parse
from common.config_types import ConsoleConfig
from tests.agent.supervisor_fakes import FakeClock, FakeLauncher

TEXT = """
[node]
address = "10.44.99.2"
location = "Oslo"

[agent]
control_socket = "/run/x/control.sock"

[[sink]]
name = "cdr"
url = "https://u:url-pw-77@collector.example.com/"
locations = ["Oslo"]
secret = "whsec_c2VjcmV0LWtleS0xMjM0NTY3OA=="
"""

ON = ConsoleConfig(listen="127.0.0.1:9714")


def fleet():
    launcher, clock = FakeLauncher(), FakeClock()
    return Fleet(launcher, lambda child: b"{}"), launcher, clock


def consoles(launcher):
    return [c for c in launcher.children if c.name == "console"]


def test_no_console_without_listen():
    f, launcher, clock = fleet()
    f.set_console(wanted(parse(TEXT).config), clock.monotonic())
    assert f.console is None and consoles(launcher) == []


def test_started_with_listen_and_its_spec_holds_only_what_it_needs():
    config = parse(TEXT + '\n[console]\nlisten = "127.0.0.1:9714"\npassword_file = "/nonexistent"\n').config
    assert config is None  # check refuses a missing password file; the spec itself is tested on a valid one
    config = msgspec.structs.replace(parse(TEXT).config, console=ON)
    spec = console_spec(config)
    assert b"url-pw-77" not in spec and b"c2VjcmV0" not in spec and b"collector" not in spec
    assert msgspec.json.decode(spec)["control_socket"] == "/run/x/control.sock"
    f, launcher, clock = fleet()
    f.set_console(wanted(config), clock.monotonic())
    [proc] = consoles(launcher)
    assert proc.argv == [sys.executable, "-m", "console"]
    assert f.console.state is S.RUNNING and f.console.pid == proc.pid


def test_a_crashed_console_is_restarted_after_its_backoff():
    f, launcher, clock = fleet()
    f.set_console(ON, clock.monotonic())
    consoles(launcher)[0].exit(-9)
    f.reap(clock.monotonic())
    assert f.console.state is S.CRASHED and f.console.restart_at > clock.monotonic()
    f.tick(clock.monotonic())
    assert len(consoles(launcher)) == 1  # not before its backoff
    clock.advance(f.console.restart_at - clock.monotonic())
    f.tick(clock.monotonic())
    assert len(consoles(launcher)) == 2 and f.console.state is S.RUNNING and f.console.restarts == 1


def test_new_settings_restart_it_and_clearing_listen_shuts_it_down():
    f, launcher, clock = fleet()
    f.set_console(ON, clock.monotonic())
    f.set_console(ON, clock.monotonic())  # unchanged: nothing happens
    assert len(consoles(launcher)) == 1
    f.set_console(ConsoleConfig(listen="127.0.0.1:9715"), clock.monotonic())
    assert len(consoles(launcher)) == 1  # the new one starts once the old one has gone (its port is free)
    f.reap(clock.monotonic())
    f.tick(clock.monotonic())
    first, second = consoles(launcher)
    assert first.signals == ["TERM"] and not first.alive and second.alive
    assert f.console.settings.listen == "127.0.0.1:9715"
    f.set_console(None, clock.monotonic())
    assert second.signals == ["TERM"]
    f.reap(clock.monotonic())
    assert f.console is None
    f.tick(clock.monotonic())
    assert len(consoles(launcher)) == 2  # not restarted


def test_a_console_that_ignores_sigterm_is_killed_and_the_new_one_waits_for_it():
    f, launcher, clock = fleet()
    launcher.exit_on_term = False
    f.set_console(ON, clock.monotonic())
    f.set_console(ConsoleConfig(listen="127.0.0.1:9715"), clock.monotonic())
    assert len(consoles(launcher)) == 1  # the old one still holds its port
    clock.advance(10)
    f.tick(clock.monotonic())
    assert consoles(launcher)[0].signals == ["TERM", "KILL"]
    f.reap(clock.monotonic())
    f.tick(clock.monotonic())
    assert len(consoles(launcher)) == 2 and isinstance(f.console, ConsoleChild)


def test_the_agent_stop_shuts_the_console_down_with_the_workers():
    f, launcher, clock = fleet()
    f.set_console(ON, clock.monotonic())
    f.begin_stop("test", clock.monotonic())
    assert consoles(launcher)[0].signals == ["TERM"]
    f.reap(clock.monotonic())
    f.tick(clock.monotonic())
    assert f.console is None or not f.console.busy
