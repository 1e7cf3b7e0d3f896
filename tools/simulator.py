"""A simulated conference workload for the demo, the tests and the benchmarks.

Owns the realistic event mix of one Conferencing Node: conferences starting
and ending, participants joining (with the fields and types of bus/events.py),
being updated, reporting call-quality windows, and leaving (a
`participant_disconnected` plus its end-of-call
`participant_media_streams_destroyed`, sometimes before and sometimes after
it). `events(seed)` is the pure generator (no ZeroMQ, deterministic for a
seed); `ConferenceSimulator` publishes the same mix through a
`bus.publisher.Publisher` at a steady rate.

Addresses in the data (`remote_address`) come from the documentation ranges
(192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24): data only, never targets.
"""

from __future__ import annotations

import random
import threading
import time as _time
import uuid as _uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

MAX_CONFERENCES = 4  # active at once on this node
MAX_PARTICIPANTS = 8  # per conference at once
SIMULATED_EPOCH = 1_700_000_000.0  # the simulated clock's start (no clock given)

CONFERENCE_NAMES = (
    "Weekly sync",
    "Board meeting",
    "Sales all-hands",
    "Support standup",
    "Design review",
    "Customer demo",
    "Town hall",
    "Incident bridge",
    "Onboarding",
    "Quarterly planning",
)
SERVICE_TYPES = (("conference", 8), ("lecture", 2), ("two_stage_dialing", 1), ("test_call", 1))
DISPLAY_NAMES = (
    "Alice Hansen",
    "Bjørn Olsen",
    "Chen Wei",
    "Fatima Rahman",
    "Kari Nordmann",
    "Ola Nordmann",
    "Priya Natarajan",
    "Lukas Müller",
    "Sofia García",
    "Tomás O'Brien",
    "Meeting Room 4",
    "Oslo Boardroom",
)
PROTOCOLS = (("WebRTC", 10), ("SIP", 5), ("H323", 1), ("TEAMS", 2), ("MSSIP", 1), ("RTMP", 1))
VENDORS = {
    "WebRTC": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0",
        "Mozilla/5.0 (Macintosh) Safari/17.4",
        "Pexip Infinity Connect/2.3",
    ),
    "SIP": ("Cisco CE 11.9.1", "Poly RealPresence Trio/7.2", "Yealink SIP-T58W"),
    "H323": ("Cisco TelePresence MCU 4.5", "Polycom HDX 8000"),
    "TEAMS": ("Microsoft Teams Room/4.19",),
    "MSSIP": ("Skype for Business 2016",),
    "RTMP": ("Wowza Streaming Engine 4.8",),
}
DISCONNECT_REASONS = (
    ("Call disconnected", 12),
    ("Disconnected by an administrator", 1),
    ("Timer expired awaiting token refresh", 1),
    ("Call rejected", 1),
    ("Media timeout", 1),
)
QUALITY_BUCKETS = ("0_unknown", "1_good", "2_ok", "3_bad", "4_terrible")
DOC_NETWORKS = ("192.0.2.", "198.51.100.", "203.0.113.")
CODECS = {"audio": ("opus", "G.722", "AAC-LD"), "video": ("VP8", "H.264", "VP9"), "presentation": ("H.264", "VP8")}
RESOLUTIONS = ("1280x720", "1920x1080", "640x360", "960x540")


def _weighted(rng: random.Random, options: tuple[tuple[Any, int], ...]) -> Any:
    return rng.choices([o for o, _ in options], weights=[w for _, w in options])[0]


@dataclass
class _Participant:
    data: dict[str, Any]
    presented: bool = False
    quality: str = "1_good"


@dataclass
class _Conference:
    name: str
    data: dict[str, Any]
    joins_left: int
    participants: dict[str, _Participant] = field(default_factory=dict)


class _Workload:
    """The state of one simulated node; `next_batch()` is its next action's events."""

    def __init__(self, seed: int | None, node: str, location: str, clock: Callable[[], float] | None):
        self.rng = random.Random(seed)
        self.node = node
        self.location = location
        self.clock = clock
        self.sim_now = SIMULATED_EPOCH
        self.conferences: dict[str, _Conference] = {}

    # helpers ----------------------------------------------------------------
    def now(self) -> float:
        if self.clock is not None:
            return float(self.clock())
        self.sim_now += round(self.rng.expovariate(3.0), 3)
        return round(self.sim_now, 3)

    def uuid(self) -> str:
        return str(_uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def address(self) -> str:
        return self.rng.choice(DOC_NETWORKS) + str(self.rng.randint(2, 254))

    # actions ----------------------------------------------------------------
    def next_batch(self) -> list[tuple[str, dict]]:
        rng = self.rng
        confs = list(self.conferences.values())
        finished = [c for c in confs if c.joins_left <= 0 and not c.participants]
        if finished:
            return self.end_conference(finished[0])
        if not confs:
            return self.start_conference()
        people = [(c, p) for c in confs for p in c.participants.values()]
        joinable = [c for c in confs if c.joins_left > 0 and len(c.participants) < MAX_PARTICIPANTS]
        leaving_pressure = sum(1 for c in confs if c.joins_left <= 0)
        choices: list[tuple[str, float]] = [
            ("start", 1.0 if len(confs) < MAX_CONFERENCES else 0.0),
            ("join", 4.0 if joinable else 0.0),
            ("update", 2.0 if people else 0.0),
            ("window", 2.0 if people else 0.0),
            ("leave", (1.5 + 3.0 * leaving_pressure) if people else 0.0),
            ("conference_update", 0.4),
        ]
        action = rng.choices([a for a, _ in choices], weights=[w for _, w in choices])[0]
        if action == "start":
            return self.start_conference()
        if action == "join":
            return self.join(rng.choice(joinable))
        if action == "leave":
            pressured = [(c, p) for c, p in people if c.joins_left <= 0]
            return self.leave(*rng.choice(pressured or people))
        if action == "update":
            return self.update(*rng.choice(people))
        if action == "window":
            return self.window(*rng.choice(people))
        return self.update_conference(rng.choice(confs))

    def start_conference(self) -> list[tuple[str, dict]]:
        rng = self.rng
        free = [n for n in CONFERENCE_NAMES if n not in self.conferences]
        name = rng.choice(free) if free else f"{rng.choice(CONFERENCE_NAMES)} #{rng.randint(2, 999)}"
        now = self.now()
        data = {
            "name": name,
            "service_type": _weighted(rng, SERVICE_TYPES),
            "is_locked": False,
            "guests_muted": False,
            "is_started": False,
            "start_time": now,
            "tag": rng.choice(("", "", "sales", "engineering", "exec")),
        }
        conf = _Conference(name, data, joins_left=rng.randint(2, 7))
        self.conferences[name] = conf
        return [("conference_started", dict(data))] + self.join(conf)

    def update_conference(self, conf: _Conference) -> list[tuple[str, dict]]:
        flag = self.rng.choice(("is_locked", "guests_muted"))
        conf.data[flag] = not conf.data[flag]
        self.now()
        return [("conference_updated", dict(conf.data))]

    def end_conference(self, conf: _Conference) -> list[tuple[str, dict]]:
        del self.conferences[conf.name]
        return [("conference_ended", {**conf.data, "end_time": self.now()})]

    def join(self, conf: _Conference) -> list[tuple[str, dict]]:
        rng = self.rng
        conf.joins_left -= 1
        protocol = _weighted(rng, PROTOCOLS)
        name = rng.choice(DISPLAY_NAMES)
        alias = name.lower().replace(" ", ".").replace("'", "")
        direction = "out" if protocol == "RTMP" or rng.random() < 0.1 else "in"
        role = "chair" if not conf.participants or rng.random() < 0.2 else "guest"
        now = self.now()
        bandwidth = rng.choice((512, 768, 1024, 1536, 2048, 2560))
        data: dict[str, Any] = {
            "uuid": self.uuid(),
            "conference": conf.name,
            "call_id": self.uuid(),
            "conversation_id": self.uuid(),
            "related_uuids": [],
            "call_direction": direction,
            "protocol": protocol,
            "role": role,
            "service_type": conf.data["service_type"],
            "display_name": name,
            "source_alias": f"sip:{alias}@example.com"
            if protocol in ("SIP", "H323", "MSSIP")
            else f"{alias}@example.com",
            "destination_alias": f"meet.{conf.name.lower().replace(' ', '-').replace('#', '')}@example.com",
            "remote_address": self.address(),
            "vendor": rng.choice(VENDORS[protocol]),
            "media_node": self.node,
            "signalling_node": self.node,
            "proxy_node": "",
            "system_location": self.location,
            "call_tag": "",
            "service_tag": conf.data["tag"],
            "encryption": "Off" if protocol == "H323" and rng.random() < 0.5 else "On",
            "connect_time": now,
            "rx_bandwidth": bandwidth,
            "tx_bandwidth": bandwidth,
            "has_media": protocol != "API",
            "is_muted": conf.data["guests_muted"] and role == "guest",
            "is_client_muted": rng.random() < 0.3,
            "is_presenting": False,
            "is_streaming": protocol == "RTMP",
            "is_idp_authenticated": rng.random() < 0.25,
        }
        conf.participants[data["uuid"]] = _Participant(data)
        out = [("participant_connected", dict(data))]
        if role == "chair" and not conf.data["is_started"]:
            conf.data["is_started"] = True
            out.append(("conference_updated", dict(conf.data)))
        return out

    def update(self, conf: _Conference, p: _Participant) -> list[tuple[str, dict]]:
        rng = self.rng
        change = rng.choice(("is_client_muted", "is_presenting", "is_muted", "bandwidth"))
        if change == "bandwidth":
            p.data["rx_bandwidth"] = rng.choice((256, 512, 768, 1024, 1536, 2048))
        else:
            p.data[change] = not p.data[change]
            if change == "is_presenting" and p.data[change]:
                p.presented = True
        self.now()
        return [("participant_updated", dict(p.data))]

    def streams(self, p: _Participant) -> list[str]:
        kinds = ["audio"] if p.data["protocol"] == "RTMP" else ["audio", "video"]
        return kinds + (["presentation"] if p.presented else [])

    def window(self, conf: _Conference, p: _Participant) -> list[tuple[str, dict]]:
        rng = self.rng
        was = p.quality
        now_bucket = rng.choice([q for q in QUALITY_BUCKETS[1:] if q != was])
        p.quality = now_bucket
        now = self.now()
        level = QUALITY_BUCKETS.index(now_bucket)
        history, recent = [], []
        for i, kind in enumerate(self.streams(p)):
            sent = rng.randint(200, 1500)
            received = rng.randint(200, 1500)
            history.append(
                {
                    "stream_id": str(i),
                    "stream_type": kind,
                    "time": now,
                    "time_delta": 10.0,
                    "tx_packets_sent": sent,
                    "tx_packets_lost": rng.randint(0, sent * level // 40),
                    "rx_packets_received": received,
                    "rx_packets_lost": rng.randint(0, received * level // 40),
                }
            )
        for k in range(3):
            recent.append(
                {
                    "time": round(now - 10.0 * k, 3),
                    "time_delta": 10.0,
                    "quality": level if k == 0 else rng.randint(1, 4),
                    "audio": rng.randint(1, 4),
                    "video": None if p.data["protocol"] == "RTMP" else rng.randint(1, 4),
                    "presentation": rng.randint(1, 4) if p.presented else None,
                    "applicationsharing": None,
                }
            )
        data = {
            "uuid": p.data["uuid"],
            "call_quality_was": was,
            "call_quality_now": now_bucket,
            "packet_loss_history": history,
            "recent_quality": recent,
        }
        return [("participant_media_stream_window", data)]

    def leave(self, conf: _Conference, p: _Participant) -> list[tuple[str, dict]]:
        rng = self.rng
        del conf.participants[p.data["uuid"]]
        end = self.now()
        start = p.data["connect_time"]
        duration = round(max(end - start, 0.0), 3)
        disconnected = {
            **p.data,
            "disconnect_reason": _weighted(rng, DISCONNECT_REASONS),
            "duration": duration,
            "end_time": end,
            "is_presenting": False,
        }
        streams = []
        for i, kind in enumerate(self.streams(p)):
            video = kind != "audio"
            rx_recv, tx_sent = rng.randint(1_000, 900_000), rng.randint(1_000, 900_000)
            rx_lost, tx_lost = rng.randint(0, rx_recv // 200), rng.randint(0, tx_sent // 200)
            streams.append(
                {
                    "stream_id": str(i),
                    "stream_type": kind,
                    "node": self.node,
                    "start_time": start,
                    "end_time": end,
                    "rx_codec": rng.choice(CODECS[kind]),
                    "tx_codec": rng.choice(CODECS[kind]),
                    "rx_resolution": rng.choice(RESOLUTIONS) if video else "",
                    "tx_resolution": rng.choice(RESOLUTIONS) if video else "",
                    "rx_bitrate": rng.randint(400, 2000) if video else rng.randint(24, 64),
                    "tx_bitrate": rng.randint(400, 2000) if video else rng.randint(24, 64),
                    "rx_packets_received": rx_recv,
                    "rx_packets_lost": rx_lost,
                    "tx_packets_sent": tx_sent,
                    "tx_packets_lost": tx_lost,
                    "rx_fps": round(rng.uniform(15.0, 30.0), 1) if video else 0.0,
                    "tx_fps": round(rng.uniform(15.0, 30.0), 1) if video else 0.0,
                    "rx_packet_loss": round(100.0 * rx_lost / rx_recv, 2),
                    "tx_packet_loss": round(100.0 * tx_lost / tx_sent, 2),
                }
            )
        destroyed = {"uuid": p.data["uuid"], "media_streams": streams}
        pair = [("participant_disconnected", disconnected), ("participant_media_streams_destroyed", destroyed)]
        return pair if rng.random() < 0.55 else pair[::-1]


def batches(
    seed: int | None = None,
    *,
    node: str = "10.44.99.2",
    location: str = "Demo",
    clock: Callable[[], float] | None = None,
) -> Iterator[list[tuple[str, dict]]]:
    """The mix as batches: each batch is what one action on the node produces (e.g. a leave = 2 events)."""
    work = _Workload(seed, node, location, clock)
    while True:
        yield work.next_batch()


def events(
    seed: int | None = None,
    *,
    node: str = "10.44.99.2",
    location: str = "Demo",
    clock: Callable[[], float] | None = None,
) -> Iterator[tuple[str, dict]]:
    """The endless mix as (event, data), deterministic for a seed when no clock is given
    (the times then come from a simulated clock starting at SIMULATED_EPOCH)."""
    for batch in batches(seed, node=node, location=location, clock=clock):
        yield from batch


class ConferenceSimulator:
    """Publishes the mix through a `bus.publisher.Publisher` at `rate` events per second."""

    def __init__(
        self,
        publisher: Any,
        *,
        seed: int | None = None,
        rate: float = 3.0,
        node: str = "10.44.99.2",
        location: str = "Demo",
    ):
        if rate <= 0:
            raise ValueError("rate must be greater than 0")
        self.publisher = publisher
        self.rate = float(rate)
        self.count = 0
        self.by_event: dict[str, int] = {}
        self._batches = batches(seed, node=node, location=location, clock=_time.time)
        self._stop = threading.Event()

    def step(self) -> list[tuple[str, dict]]:
        """Publish the next action's event(s); returns them."""
        batch = next(self._batches)
        for event, data in batch:
            self.publisher.publish(event, data)
            self.count += 1
            self.by_event[event] = self.by_event.get(event, 0) + 1
        return batch

    def stop(self) -> None:
        self._stop.set()

    def run(self, duration: float | None = None, stop_event: threading.Event | None = None) -> int:
        """Publish at `rate` events/s until `duration` seconds passed, `stop_event` is set, or stop().
        Returns the number published by this run."""
        stop = stop_event or self._stop
        start = _time.monotonic()
        deadline = None if duration is None else start + duration
        published = 0
        while not (stop.is_set() or self._stop.is_set()):
            due = start + published / self.rate
            time_now = _time.monotonic()
            if deadline is not None and max(due, time_now) >= deadline:
                break
            if due > time_now and stop.wait(due - time_now):
                break
            published += len(self.step())
        return published
