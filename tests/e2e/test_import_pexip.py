"""End to end: a config made by `eventsink-agent import-pexip` from the Pexip fixtures runs a real
agent that delivers to real receivers, with the Basic auth the export carried (its password read
from the password_file the import wrote)."""

from __future__ import annotations

import base64
import json
import os
import subprocess

import pytest

from tests.e2e.harness import REPO

pytestmark = pytest.mark.e2e

FIXTURES = os.path.join(REPO, "tests", "agent", "fixtures", "pexip")
ENTRY_POINT = os.path.join(REPO, ".venv", "bin", "eventsink-agent")
USERNAME, PASSWORD = "pexip-cdr", 'Tr0ub4dor&3 "cdr"'  # sink 1 of event_sink.json


def exported_sinks(path: str, urls: dict[int, str]) -> None:
    """event_sink.json with every URL pointed at a loopback receiver (id -> url)."""
    with open(os.path.join(FIXTURES, "event_sink.json")) as fh:
        answer = json.load(fh)
    for obj in answer["objects"]:
        obj["url"] = urls[obj["id"]]
    with open(path, "w") as fh:
        json.dump(answer, fh)


def test_an_imported_config_delivers_with_the_imported_basic_auth(make_agent, make_receiver):
    cdr = make_receiver(username=USERNAME, password=PASSWORD)
    other = make_receiver()
    agent = make_agent([], start=False)
    folder = os.path.join(agent.base, "imported")
    os.mkdir(folder)
    sinks_file = os.path.join(folder, "event_sink.json")
    exported_sinks(sinks_file, {1: cdr.url, 2: other.url, 3: other.url, 5: other.url})
    toml_path = os.path.join(folder, "agent.toml")
    done = subprocess.run(
        [
            ENTRY_POINT,
            "import-pexip",
            "--event-sinks",
            sinks_file,
            "--locations",
            os.path.join(FIXTURES, "system_location.json"),
            "--global",
            os.path.join(FIXTURES, "global.json"),
            "--address",
            "10.44.99.2",
            "--location",
            "Oslo",
            "-o",
            toml_path,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    with open(toml_path) as fh:
        imported = fh.read()
    assert PASSWORD not in imported
    agent_table = "\n[agent]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in agent.agent.items())
    agent.write_config(imported + agent_table)  # this test's own dirs and ports; all else as imported

    agent.start()
    names = {s["name"] for s in agent.status()["sinks"]}
    assert names == {"CDR-collector", "analytics"}  # the two sinks Oslo lists
    with agent.publisher() as pub:
        agent.bus_ready(pub)
        pub.publish("conference_started", {"name": "Weekly sync", "service_type": "conference"})
        assert cdr.wait_for(lambda r: "conference_started" in r.event_names(), timeout=15), cdr.problems
    assert cdr.problems == [] and cdr.summary()["auth_failures"] == 0
    expected = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    assert {r.headers["authorization"] for r in cdr.requests} == {expected}
    assert other.wait_for(lambda r: "conference_started" in r.event_names(), timeout=15)
    assert {e["version"] for e in other.events} == {1}  # analytics is a version 1 sink in the export
