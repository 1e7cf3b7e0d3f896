"""What a sink worker makes of the config in the supervisor's `update` command
(common.link.Update; docs/internals.md, "Supervisor link").

Owns checking that config before anything changes: it must decode as a
Config, still name this worker's sink, and, when the connection settings
changed, give a usable new HttpClient. An unusable one is logged and ignored
as a whole (the worker keeps every old setting). Then applying a usable one to
the logs, shaper, dead letters, dispatcher and (through the worker) the bulk stage.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

import msgspec

from common import logs
from common.config_types import Config, SinkConfig
from common.loop import Loop
from common.vocabulary import AgentEvent
from sinks.http import HttpClient
from sinks.shaping import ShapeSettings

log = logging.getLogger("sinks.worker")  # the worker's own logger: these lines are the worker's


@dataclass(frozen=True)
class UsableUpdate:
    """An update's config, checked: the whole config, this worker's sink in it, and a new client if needed."""

    config: Config
    sink: SinkConfig
    client: HttpClient | None  # None: the connection settings did not change; keep the current client


def check_update(raw_config, name: str, client_key, loop: Loop) -> UsableUpdate | None:
    """RAW_CONFIG (decoded JSON) checked for sink NAME; None, logged, when it is unusable.

    `client_key` is the current client's `HttpClient.settings_key`; `loop` is
    where a new client registers its sockets and its timer."""
    try:
        config = msgspec.convert(raw_config, Config)
    except (msgspec.ValidationError, TypeError) as exc:
        log.warning("sink %s: ignoring an update with an unusable config (%s)", name, exc)
        return None
    sink = config.sink_named(name)
    if sink is None:
        log.warning("sink %s: ignoring an update whose config does not have this sink", name)
        return None
    client = None
    if HttpClient.settings_key(sink, config.tuning) != client_key:
        try:
            client = HttpClient(sink, config.tuning, loop=loop)
        except (OSError, ValueError) as exc:
            log.error("sink %s: keeping the old connection settings: the new ones are unusable (%s)", name, exc)
            return None
    return UsableUpdate(config, sink, client)


class Updating(Protocol):
    """What applying an update needs of a worker (sinks/worker.py's Worker; named here so neither
    module imports the other's importer)."""

    name: str
    config: Config
    sink: SinkConfig
    shaper: object
    dead_letters: object
    dispatcher: object
    accepting: bool

    def _new_client(self, client: HttpClient) -> HttpClient: ...

    def _rebatch(self, sink: SinkConfig) -> None: ...

    def put(self, post) -> None: ...


def apply_update(worker: Updating, usable: UsableUpdate, announce: bool) -> None:
    """Apply a checked update to the worker live; announce with eventsink_updated if asked."""
    config, sink = usable.config, usable.sink
    client = None if usable.client is None else worker._new_client(usable.client)
    tuning = config.tuning
    logs.configure(f"sink:{worker.name}", logs.config_secrets(config))
    worker.config, worker.sink = config, sink
    worker.shaper.configure(ShapeSettings.of(config, sink))
    worker.dead_letters.configure(sink)
    worker._rebatch(sink)
    worker.dispatcher.configure(
        sink.max_in_flight, tuning.initial_retry_backoff, tuning.max_retry_backoff, client, max_rate=sink.max_rate
    )
    log.info("sink %s: settings updated%s", worker.name, " (announced)" if announce else "")
    if announce and worker.accepting:
        worker.put(worker.shaper.lifecycle(AgentEvent.UPDATED, time.monotonic()))
