"""Suite-wide hooks: the parallel run's groups and `alone` lock, and the end-of-run
summary sections that tests report into (tests/parallel.py says how)."""

from __future__ import annotations

import uuid

import pytest

from tests import parallel

RUN_ID_KEY = "esa_run_id"
RUN_ID = pytest.StashKey[str]()


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "alone: runs with no other test of the session running at the same "
        "time (pytest-xdist workers wait for it); see tests/parallel.py",
    )
    worker_input = getattr(config, "workerinput", None)
    if worker_input is not None:
        config.stash[RUN_ID] = worker_input[RUN_ID_KEY]
    else:  # the controller of an xdist run, or a plain run (no lock is taken without workers)
        config.stash[RUN_ID] = uuid.uuid4().hex
        config.pluginmanager.register(parallel.SummaryCollector(), "esa-summary")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """The controller hands every xdist worker the id of this run (the name of its lock files)."""
    node.workerinput[RUN_ID_KEY] = node.config.stash[RUN_ID]


@pytest.hookimpl(tryfirst=True)  # before xdist's loadgroup reads the xdist_group markers
def pytest_collection_modifyitems(items):
    parallel.add_directory_groups(items)


@pytest.hookimpl(tryfirst=True)  # before the worker sends the ids it collected to the controller
def pytest_collection_finish(session):
    if hasattr(session.config, "workerinput") and session.config.getvalue("loadgroup"):
        parallel.tag_group_node_ids(session.items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item):
    run_id = item.config.stash[RUN_ID] if hasattr(item.config, "workerinput") else None
    with parallel.running_slot(run_id, alone=item.get_closest_marker("alone") is not None):
        return (yield)


def pytest_unconfigure(config):
    if not hasattr(config, "workerinput"):
        parallel.remove_locks(config.stash[RUN_ID])
