"""Fixtures for whole-agent runs: real receivers on 127.0.0.1 and real agent processes."""

import pytest

from tests.e2e.harness import Agent
from tests.helpers import stopped_after
from tools.receiver import Receiver


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


@pytest.fixture
def make_receiver():
    with stopped_after(lambda **kw: Receiver(**kw).start()) as make:
        yield make


@pytest.fixture
def make_agent(request):
    agents = []

    def make(sinks, start=True, **kw):
        a = Agent(sinks, **kw)
        agents.append(a)
        if start:
            a.start()
        return a

    yield make
    failed = request.node.rep_call.failed if hasattr(request.node, "rep_call") else False
    for a in agents:
        if failed:
            print(f"--- agent log ({a.base}) ---\n{a.log()[-6000:]}")
        a.cleanup()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
