"""The envelope book of a bulk worker (sinks/envelope_book.py) with the shaper and a real journal:
new envelopes are recorded before they are handed on, recorded ones re-form whole, in their order
and under their id, whatever order their events come in, lifecycle events go alone, a split's
halves replace the record. Fake clock; the dispatcher is a list."""

from __future__ import annotations

import json
import os
import tempfile

import orjson
import pytest

from bus.journal import Journal
from bus.journal_reader import JournalReader
from sinks import envelope
from sinks.envelope_book import EnvelopeBook, items_of
from sinks.post import Post
from sinks.shaping import Batcher, Shaper, ShapeSettings, wrap

DISCONNECTED, MEDIA = "participant_disconnected", "participant_media_streams_destroyed"


def payload(event: str, **data) -> bytes:
    return orjson.dumps({"event": event, "time": 1700000000.5, "data": data})


class Rig:
    """A journal of PAYLOADS, and a book + shaper + batcher as a bulk worker at CURSOR wires them."""

    def __init__(self, path: str, payloads: list[bytes], version: int = 2):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.journal = Journal(path)
        self.journal.append([("t", p) for p in payloads])
        self.payloads = {i + 1: p for i, p in enumerate(payloads)}
        self.path, self.version = path, version
        self.readers: list[JournalReader] = []

    def worker(self, cursor: int, max_events: int = 3):
        reader = JournalReader(self.path, "cdr")
        self.readers.append(reader)
        sent: list[Post] = []
        book = EnvelopeBook(reader, reader.epoch, self.version, cursor, sent.append)
        settings = ShapeSettings(
            node=envelope.json_string("10.0.0.9"),
            version=self.version,
            proxying=False,
            events=frozenset(),
            media_streams_wait=5.0,
            cache_expiration=5.0,
        )
        batcher = Batcher(max_events, 1.0, self.version, book.formed)
        done: list[int] = []

        def enqueue(post: Post) -> None:
            if not book.route(post):
                batcher.add(post)

        shaper = Shaper(settings, reader.epoch, "cdr", enqueue, done.append, recorded=book.item_of)
        return book, shaper, batcher, sent

    def offer(self, shaper, offsets, now: float = 0.0) -> None:
        for offset in offsets:
            shaper.offer(offset, self.payloads[offset], now)

    def close(self) -> None:
        for r in self.readers:
            r.close()
        self.journal.close()


@pytest.fixture
def rig_at():
    made: list[Rig] = []
    with tempfile.TemporaryDirectory(prefix="esa-book-") as d:

        def make(payloads, version=2):
            made.append(Rig(os.path.join(d, f"j{len(made)}", "journal.sqlite3"), payloads, version))
            return made[-1]

        yield make
        for rig in made:
            rig.close()


def inner(post: Post) -> list[tuple[str, dict]]:
    return [(e["event"], e["data"]) for e in json.loads(post.body)["data"]]


def test_a_new_envelope_is_recorded_before_it_is_handed_on(rig_at):
    rig = rig_at([payload("conference_updated", name=f"c{i}") for i in range(5)])
    book, shaper, batcher, sent = rig.worker(cursor=0)
    rig.offer(shaper, range(1, 6))
    batcher.flush()
    assert sent == []  # formed, not yet recorded: not for the dispatcher
    book.send_recorded(now=0.0)
    assert [p.webhook_id for p in sent] == [f"{book.epoch}-1+3", f"{book.epoch}-4+2"]
    assert rig.readers[0].envelopes_beginning(0, 10) == [(1, [(1, ()), (2, ()), (3, ())]), (4, [(4, ()), (5, ())])]


def test_a_recorded_envelope_re_forms_in_its_order_under_its_id_whatever_order_its_events_come(rig_at):
    rig = rig_at([payload("conference_updated", name=f"c{i}") for i in range(6)])
    first_book, *_ = rig.worker(cursor=0)
    rig.readers[0].record_envelopes([[(3, ()), (1, ()), (2, ())], [(4, ()), (6, ()), (5, ())]])
    book, shaper, batcher, sent = rig.worker(cursor=0)
    rig.offer(shaper, [1, 2])
    assert sent == [] and len(batcher) == 0  # held for the record, never batched anew
    rig.offer(shaper, [3, 4, 5, 6])
    book.send_recorded(now=0.0)
    assert [p.webhook_id for p in sent] == [f"{book.epoch}-3+3", f"{book.epoch}-4+3"]
    assert [d["name"] for p in sent for _, d in inner(p)] == ["c2", "c0", "c1", "c3", "c5", "c4"]
    assert sent[0].offsets == (3, 1, 2) and book.reformed == 2


def test_a_record_whose_members_do_not_all_come_goes_with_the_rest_once_read_past(rig_at):
    rig = rig_at([payload("conference_updated", name=f"c{i}") for i in range(6)])
    rig.worker(cursor=0)
    rig.readers[0].record_envelopes([[(2, ()), (3, ()), (4, ())], [(5, ()), (6, ())]])
    # cursor 2: offset 2 was delivered and purged; 5 and 6 were acknowledged before a kill -9 (skipped)
    book, shaper, batcher, sent = rig.worker(cursor=2)
    rig.offer(shaper, [3, 4])
    book.flush_due(next_offset=5, now=0.0, shaper=shaper)
    book.flush_due(next_offset=7, now=0.0, shaper=shaper)
    book.send_recorded(now=0.0)
    assert [(p.webhook_id, p.offsets) for p in sent] == [(f"{book.epoch}-2+3", (3, 4))]  # the straddling record
    # what went is not recorded anew: the record keeps what the envelope held the first time
    assert rig.readers[0].envelopes_beginning(0, 10) == [(2, [(2, ()), (3, ()), (4, ())]), (5, [(5, ()), (6, ())])]


def test_version_1_re_forms_a_merge_with_the_media_streams_it_had_even_when_they_come_after(rig_at):
    rig = rig_at(
        [
            payload(DISCONNECTED, uuid="p1"),
            payload(MEDIA, uuid="p1", media_streams=[{"id": 1}]),
            payload(MEDIA, uuid="p2", media_streams=[{"id": 2}]),
            payload(DISCONNECTED, uuid="p2"),
            payload(MEDIA, uuid="p3", media_streams=[{"id": 3}]),
            payload(DISCONNECTED, uuid="p3"),
        ],
        version=1,
    )
    rig.worker(cursor=0)
    # p1 was held and merged; p2 was merged as usual; p3's disconnect went alone the first time
    rig.readers[0].record_envelopes([[(1, (2,)), (4, (3,)), (6, ())]])
    book, shaper, batcher, sent = rig.worker(cursor=0)
    rig.offer(shaper, range(1, 7))
    book.flush_due(next_offset=7, now=0.0, shaper=shaper)
    book.send_recorded(now=0.0)
    assert len(sent) == 1 and sent[0].webhook_id == f"{book.epoch}-1+3" and sent[0].offsets == (1, 2, 4, 3, 6)
    assert [(e, d["uuid"], d.get("media_streams")) for e, d in inner(sent[0])] == [
        (DISCONNECTED, "p1", [{"id": 1}]),
        (DISCONNECTED, "p2", [{"id": 2}]),
        (DISCONNECTED, "p3", None),
    ]
    shaper.expire(100.0)  # p3's media message, recorded nowhere, is held and then done as before


def test_lifecycle_events_go_alone_and_are_never_recorded(rig_at):
    rig = rig_at([payload("conference_updated", name="c")])
    book, shaper, batcher, sent = rig.worker(cursor=0)
    started = shaper.lifecycle("eventsink_started", now=0.0, wall=1.0)
    rig.offer(shaper, [1])
    batcher.flush()
    book.alone(wrap([started], 2))  # what the worker does with an event that has no journal offset
    book.send_recorded(now=0.0)
    assert [inner(p)[0][0] for p in sent] == ["conference_updated", "eventsink_started"]
    assert sent[1].webhook_id.endswith("+1") and "-started-" in sent[1].webhook_id
    assert [low for low, _ in rig.readers[0].envelopes_beginning(0, 10)] == [1]


def test_a_split_records_the_halves_in_place_of_the_whole(rig_at):
    rig = rig_at([payload("conference_updated", name=f"c{i}") for i in range(4)])
    book, shaper, batcher, sent = rig.worker(cursor=0, max_events=4)
    rig.offer(shaper, range(1, 5))
    book.send_recorded(now=0.0)
    whole = sent[0]
    halves = (wrap(list(whole.parts[:2]), 2), wrap(list(whole.parts[2:]), 2))
    assert book.split(whole, halves)
    assert [items for _, items in rig.readers[0].envelopes_beginning(0, 10)] == [items_of(h) for h in halves]
    # a redelivery now re-forms the halves under their own ids
    again, shaper2, _, resent = rig.worker(cursor=0)
    rig.offer(shaper2, range(1, 5))
    again.send_recorded(now=0.0)
    assert (
        [p.webhook_id for p in resent] == [h.webhook_id for h in halves] == [f"{book.epoch}-1+2", f"{book.epoch}-3+2"]
    )
