"""A fake supervisor behind a real control socket, for the tests of the control server, of
`eventsinkctl` and of the commands: the status and alarms it answers, and the fixtures that
start a ControlServer on a short Unix socket path in front of it."""

from __future__ import annotations

import concurrent.futures
import json

from agent.client.errors import CommandError

STATUS = {
    "node": {"address": "10.44.99.2", "location": "Oslo", "role": "transcoding"},
    "sinks": [
        {
            "name": "cdr",
            "url": "https://collector.example.com/pexip",
            "version": 2,
            "state": "running",
            "pid": 4242,
            "backlog": 3,
            "in_flight": 1,
            "delivered": 1234,
            "failures": 2,
            "current_backoff": 0,
            "last_attempted_restart": None,
            "alarms": [],
        },
        {
            "name": "siem-long-name",
            "url": "http://127.0.0.1:9/x",
            "version": 1,
            "state": "stopped",
            "pid": None,
            "backlog": 57,
            "in_flight": 0,
            "delivered": 0,
            "failures": 19,
            "current_backoff": 120.0,
            "last_attempted_restart": 1764186000.0,
            "alarms": ["Eventsink Reached Maximum Backoff"],
        },
    ],
    "bus": {"received": 1291, "rejected": {}, "journal_bytes": 4096},
}
ALARMS = [
    {
        "name": "Eventsink Reached Maximum Backoff",
        "sink": "siem-long-name",
        "raised_at": 1764186000.0,
        "detail": "next retry wait 3600 s exceeds max_retry_backoff 1800 s",
    }
]


class FakeSupervisor:
    """Answers like agent.supervisor.Supervisor.request: a Future per command."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.status = json.loads(json.dumps(STATUS))
        self.alarms = list(ALARMS)
        self.reload_problems: list[str] = []
        self.hang = False  # leave every Future unresolved
        self.explode = False  # raise a non-CommandError inside request()

    def request(self, command: str, **params) -> concurrent.futures.Future:
        self.calls.append((command, params))
        if self.explode:
            raise RuntimeError("internal state broken, password=hunter2")
        fut: concurrent.futures.Future = concurrent.futures.Future()
        if self.hang:
            return fut
        if command == "status":
            fut.set_result(self.status)
        elif command == "alarms":
            fut.set_result(self.alarms)
        elif command == "restart":
            if params["sink"] in {s["name"] for s in self.status["sinks"]}:
                fut.set_result({"restarted": params["sink"]})
            else:
                fut.set_exception(CommandError(404, f"no such sink: {params['sink']}"))
        elif command == "reload":
            if self.reload_problems:
                fut.set_exception(CommandError(400, "the config has problems; nothing changed", self.reload_problems))
            else:
                fut.set_result({"added": ["new"], "removed": [], "changed": ["cdr"]})
        else:
            fut.set_exception(CommandError(404, f"unknown command {command}"))
        return fut
