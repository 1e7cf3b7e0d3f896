"""What a sink worker makes of the config in the supervisor's `update` command
(common.link.Update; docs/internals.md, "Supervisor link").

Owns checking that config before anything changes: it must decode as a
Config, still name this worker's sink, and, when the connection settings
changed, give a usable new HttpClient. An unusable one is logged and ignored
as a whole (the worker keeps every old setting). Applying a usable one to the
shaper, batcher and dispatcher is sinks/worker.py's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import msgspec

from common.config import Config, SinkConfig
from common.loop import Loop
from sinks.http import HttpClient

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
