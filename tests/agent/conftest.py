"""Fixtures of tests/agent: a real control server on a short-path socket, answered by a FakeSupervisor."""

from __future__ import annotations

import os

import pytest

from agent.server.control import ControlServer
from tests.agent.control_fakes import FakeSupervisor
from tests.helpers import short_tmpdir


@pytest.fixture
def tmpdir_short():
    with short_tmpdir() as d:
        yield d


@pytest.fixture
def supervisor():
    return FakeSupervisor()


@pytest.fixture
def server(tmpdir_short, supervisor):
    srv = ControlServer(os.path.join(tmpdir_short, "control.sock"), supervisor)
    srv.start()
    yield srv
    srv.stop()
