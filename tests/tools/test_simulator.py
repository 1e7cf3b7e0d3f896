"""The conference simulator: realistic, correctly typed, deterministic, paced."""

from __future__ import annotations

import importlib.util
import ipaddress
import itertools
import os
import tempfile
import threading
import time

import orjson
import pytest

from tools.simulator import ConferenceSimulator, batches, events

# docs/events.md, encoded here independently of bus/events.py: field -> allowed Python types.
STR, NUM, INT, BOOL = (str,), (int, float), (int,), (bool,)
LIST_STR = "list[str]"
CONFERENCE = {
    "name": STR,
    "service_type": STR,
    "is_locked": BOOL,
    "guests_muted": BOOL,
    "is_started": BOOL,
    "start_time": NUM,
    "tag": STR,
}
PARTICIPANT = {
    "uuid": STR,
    "conference": STR,
    "call_id": STR,
    "conversation_id": STR,
    "related_uuids": LIST_STR,
    "call_direction": STR,
    "protocol": STR,
    "role": STR,
    "service_type": STR,
    "display_name": STR,
    "source_alias": STR,
    "destination_alias": STR,
    "remote_address": STR,
    "vendor": STR,
    "media_node": STR,
    "signalling_node": STR,
    "proxy_node": STR,
    "system_location": STR,
    "call_tag": STR,
    "service_tag": STR,
    "encryption": STR,
    "connect_time": (int, float, type(None)),
    "rx_bandwidth": INT,
    "tx_bandwidth": INT,
    "has_media": BOOL,
    "is_muted": BOOL,
    "is_client_muted": BOOL,
    "is_presenting": BOOL,
    "is_streaming": BOOL,
    "is_idp_authenticated": BOOL,
}
MEDIA_STREAM = {
    "stream_id": STR,
    "stream_type": STR,
    "node": STR,
    "start_time": NUM,
    "end_time": NUM,
    "rx_codec": STR,
    "tx_codec": STR,
    "rx_resolution": STR,
    "tx_resolution": STR,
    "rx_bitrate": INT,
    "tx_bitrate": INT,
    "rx_packets_received": INT,
    "rx_packets_lost": INT,
    "tx_packets_sent": INT,
    "tx_packets_lost": INT,
    "rx_fps": NUM,
    "tx_fps": NUM,
    "rx_packet_loss": NUM,
    "tx_packet_loss": NUM,
}
PACKET_LOSS = {
    "stream_id": STR,
    "stream_type": STR,
    "time": NUM,
    "time_delta": NUM,
    "tx_packets_sent": INT,
    "tx_packets_lost": INT,
    "rx_packets_received": INT,
    "rx_packets_lost": INT,
}
QUALITY_LEVEL = (int, type(None))
RECENT_QUALITY = {
    "time": NUM,
    "time_delta": NUM,
    "quality": QUALITY_LEVEL,
    "audio": QUALITY_LEVEL,
    "video": QUALITY_LEVEL,
    "presentation": QUALITY_LEVEL,
    "applicationsharing": QUALITY_LEVEL,
}
SCHEMA = {
    "conference_started": (CONFERENCE, "name"),
    "conference_updated": (CONFERENCE, "name"),
    "conference_ended": ({**CONFERENCE, "end_time": NUM}, "name"),
    "participant_connected": (PARTICIPANT, "uuid"),
    "participant_updated": (PARTICIPANT, "uuid"),
    "participant_disconnected": ({**PARTICIPANT, "disconnect_reason": STR, "duration": NUM, "end_time": NUM}, "uuid"),
    "participant_media_stream_window": (
        {
            "uuid": STR,
            "call_quality_was": STR,
            "call_quality_now": STR,
            "packet_loss_history": "packet_loss",
            "recent_quality": "recent_quality",
        },
        "uuid",
    ),
    "participant_media_streams_destroyed": ({"uuid": STR, "media_streams": "media_streams"}, "uuid"),
}
NESTED = {"packet_loss": PACKET_LOSS, "recent_quality": RECENT_QUALITY, "media_streams": MEDIA_STREAM}
DOC_NETWORKS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]


def type_problems(where: str, obj: dict, fields: dict) -> list[str]:
    out = []
    for key, value in obj.items():
        spec = fields.get(key)
        if spec is None:
            out.append(f"{where}.{key}: not a documented field")
        elif spec == LIST_STR:
            if not (isinstance(value, list) and all(isinstance(x, str) for x in value)):
                out.append(f"{where}.{key}: not a list of strings")
        elif isinstance(spec, str):
            if not isinstance(value, list):
                out.append(f"{where}.{key}: not a list")
            else:
                for i, item in enumerate(value):
                    out += (
                        type_problems(f"{where}.{key}[{i}]", item, NESTED[spec])
                        if isinstance(item, dict)
                        else [f"{where}.{key}[{i}]: not an object"]
                    )
        elif isinstance(value, bool) and bool not in spec:
            out.append(f"{where}.{key}: a boolean where {spec} is due")
        elif not isinstance(value, spec):
            out.append(f"{where}.{key}: {type(value).__name__} where {spec} is due")
    return out


def sample(seed: int, n: int = 3000) -> list[tuple[str, dict]]:
    return list(itertools.islice(events(seed), n))


def test_every_event_has_the_fields_and_types_of_events_md():
    problems = []
    for seed in (1, 2, 3):
        for i, (event, data) in enumerate(sample(seed)):
            fields, required = SCHEMA[event]
            if required not in data:
                problems.append(f"{event}#{i}: missing {required}")
            problems += type_problems(f"{event}#{i}", data, fields)
    assert problems == []


def test_the_brokers_validator_accepts_every_event():
    validate = pytest.importorskip("bus.validate")
    validator = validate.Validator(256 * 1024)
    rejected = []
    for event, data in sample(4, 5000):
        verdict = validator.check([event.encode(), orjson.dumps({"event": event, "time": 1700000000.25, "data": data})])
        if not isinstance(verdict, validate.Accepted):
            rejected.append((event, verdict))
    assert rejected == []


def test_the_mix_covers_every_bus_event():
    seen = {event for event, _ in sample(5, 2000)}
    assert seen == set(SCHEMA)


def test_deterministic_for_a_seed():
    assert sample(42, 800) == sample(42, 800)
    assert sample(42, 200) != sample(43, 200)


def test_calls_end_with_disconnect_and_media_streams_in_either_order():
    stream = sample(6, 4000)
    connected, positions, orders = set(), {}, {"streams_first": 0, "streams_after": 0}
    for i, (event, data) in enumerate(stream):
        if event == "participant_connected":
            assert data["uuid"] not in connected, "a uuid reused"
            connected.add(data["uuid"])
        elif event in ("participant_disconnected", "participant_media_streams_destroyed"):
            assert data["uuid"] in connected
            positions.setdefault(data["uuid"], {})[event] = i
            if event == "participant_disconnected":
                assert data["disconnect_reason"] and data["duration"] >= 0 and data["end_time"] >= data["connect_time"]
            else:
                assert data["media_streams"] and {"audio"} <= {s["stream_type"] for s in data["media_streams"]}
    for pos in positions.values():
        if len(pos) == 2:  # the pair is adjacent: one leave
            d, m = pos["participant_disconnected"], pos["participant_media_streams_destroyed"]
            assert abs(d - m) == 1
            orders["streams_first" if m < d else "streams_after"] += 1
        else:  # only the last leave of the sample may be cut in half
            assert max(pos.values()) == len(stream) - 1
    assert orders["streams_first"] >= 50 and orders["streams_after"] >= 50


def test_conferences_start_before_their_participants_and_end_after_them():
    active: dict[str, set[str]] = {}
    ended = 0
    for event, data in sample(7, 4000):
        if event == "conference_started":
            assert data["name"] not in active
            active[data["name"]] = set()
        elif event == "conference_ended":
            assert active.pop(data["name"]) == set(), "ended with participants still in"
            assert data["end_time"] >= data["start_time"]
            ended += 1
        elif event == "participant_connected":
            active[data["conference"]].add(data["uuid"])
        elif event == "participant_disconnected":
            active[data["conference"]].discard(data["uuid"])
        elif event == "conference_updated":
            assert data["name"] in active
        assert len(active) <= 4
    assert ended >= 20


def test_addresses_in_the_data_are_documentation_ranges():
    for _event, data in sample(8, 1500):
        if "remote_address" in data:
            addr = ipaddress.ip_address(data["remote_address"])
            assert any(addr in net for net in DOC_NETWORKS), addr


def test_batches_are_one_action_each():
    for batch in itertools.islice(batches(9), 500):
        assert 1 <= len(batch) <= 3
        names = [e for e, _ in batch]
        if "participant_disconnected" in names:
            assert sorted(names) == ["participant_disconnected", "participant_media_streams_destroyed"]


class RecordingPublisher:
    def __init__(self):
        self.sent: list[tuple[str, dict]] = []
        self.lock = threading.Lock()

    def publish(self, event, data, time=None):
        with self.lock:
            self.sent.append((event, data))


def test_step_publishes_one_action_and_counts():
    pub = RecordingPublisher()
    sim = ConferenceSimulator(pub, seed=3, node="127.0.0.1", location="Demo")
    first = sim.step()
    assert first[0][0] == "conference_started" and pub.sent == first and sim.count == len(first)
    for _ in range(50):
        sim.step()
    assert sim.count == len(pub.sent) == sum(sim.by_event.values())
    connected = [d for e, d in pub.sent if e == "participant_connected"]
    assert connected and all(d["media_node"] == "127.0.0.1" and d["system_location"] == "Demo" for d in connected)
    # real clock: times are now-ish, not the simulated epoch
    assert abs(connected[0]["connect_time"] - time.time()) < 3600


def test_run_paces_at_rate_and_stops_at_duration():
    pub = RecordingPublisher()
    sim = ConferenceSimulator(pub, seed=1, rate=40.0)
    published = sim.run(duration=0.5)
    assert published == sim.count == len(pub.sent)
    assert 1 <= published <= 40.0 * 0.5 + 3  # never faster than the rate (plus one action's batch)


def test_run_returns_when_stop_event_is_set():
    pub = RecordingPublisher()
    sim = ConferenceSimulator(pub, seed=1, rate=2.0)
    stop = threading.Event()
    t = threading.Thread(target=sim.run, kwargs={"stop_event": stop})
    t.start()
    deadline = time.monotonic() + 5
    while sim.count == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    t.join(5)
    assert not t.is_alive() and sim.count >= 1
    with pytest.raises(ValueError):
        ConferenceSimulator(pub, rate=0)


@pytest.mark.skipif(importlib.util.find_spec("bus.publisher") is None, reason="bus.publisher not written yet")
def test_publishes_real_numbered_messages_over_zeromq():
    import zmq

    from bus.publisher import Publisher

    base = tempfile.mkdtemp(prefix="esa-", dir="/tmp")
    endpoint = f"ipc://{base}/publish.sock"
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.bind(endpoint)
    pub = Publisher(endpoint)
    try:
        sim = ConferenceSimulator(pub, seed=11, rate=1000.0)
        frames = None
        deadline = time.monotonic() + 10
        while frames is None and time.monotonic() < deadline:  # slow joiner: publish until one arrives
            sim.step()
            if sub.poll(100):
                frames = sub.recv_multipart()
        assert frames is not None and len(frames) == 3 and len(frames[2]) == 16  # topic, JSON, number
        doc = orjson.loads(frames[1])
        assert frames[0].decode() == doc["event"] and isinstance(doc["time"], float) and isinstance(doc["data"], dict)
        fields, required = SCHEMA[doc["event"]]
        assert required in doc["data"] and type_problems("data", doc["data"], fields) == []
    finally:
        pub.close()
        sub.close()
        ctx.term()
        for name in os.listdir(base):
            os.unlink(os.path.join(base, name))
        os.rmdir(base)
