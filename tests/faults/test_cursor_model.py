"""The worker's bookkeeping against a simple model, as a hypothesis state machine.

The real `CursorTracker` (sinks/cursor.py), `Shaper` (media-stream cache,
filters, version 1 merging) and `Batcher` (bulk) are driven the way the worker
drives them, with a fake dispatcher whose POSTs complete in any order, and
crashes at any step: a crash throws away everything in memory (held events,
queued and in-flight POSTs; some in-flight ones may still reach the receiver,
their answer lost) and the next worker starts from the last committed cursor.

The model: the journal is a list of events; the receiver keeps the set of
offsets it got (a bulk POST or a version 1 merged `participant_disconnected`
carries several). Invariants after every step:
- nothing at or below the cursor (live or committed) is undelivered, except
  what this sink never receives (a filtered event, a version 1 media message);
- the cursor never passes the next offset to read, and the committed cursor
  never goes back.
And at the end, once everything has been read, waited for and answered,
every event the sink must receive has been received and the cursor is the head.
"""

from __future__ import annotations

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from sinks.cursor import CursorTracker
from sinks.shaping import DISCONNECTED, MEDIA_DESTROYED, Batcher, Shaper, ShapeSettings

SENT = "conference_updated"
FILTERED = "conference_started"  # not in the sink's `events` list
KINDS = (SENT, FILTERED, DISCONNECTED, MEDIA_DESTROYED)
WAIT = 1.0  # media_streams_wait
EXPIRY = 2.0  # cache_expiration


def payload(kind: str, uuid: str, published: float) -> bytes:
    data = {"name": "c"} if kind in (SENT, FILTERED) else {"uuid": uuid}
    if kind == MEDIA_DESTROYED:
        data["media_streams"] = [{"stream_id": "1"}]
    return orjson.dumps({"event": kind, "time": published, "data": data})


class WorkerModel(RuleBasedStateMachine):
    @initialize(version=st.sampled_from([1, 2]), bulk=st.booleans(), bulk_max=st.integers(1, 4))
    def setup(self, version, bulk, bulk_max):
        self.settings = ShapeSettings(
            node=b'"10.0.0.1"',
            version=version,
            proxying=False,
            events=frozenset({SENT, DISCONNECTED, MEDIA_DESTROYED}),
            media_streams_wait=WAIT,
            cache_expiration=EXPIRY,
        )
        self.bulk, self.bulk_max = bulk, bulk_max
        self.journal: list[tuple[str, bytes]] = []  # offset i+1 -> (kind, payload)
        self.received: set[int] = set()  # offsets the receiver has (any incarnation)
        self.committed = 0
        self.now = 0.0
        self.crashes = 0
        self.start_worker()

    # ------------------------------------------------------------ the worker under test

    def start_worker(self):
        self.paused = False
        self.tracker = CursorTracker(self.committed)
        self.next_offset = self.committed + 1
        self.queued: list = []  # POSTs handed to the dispatcher, not yet started
        self.in_flight: list = []
        self.shaper = Shaper(self.settings, "e" * 16, "cdr", emit=self.enqueue, discard=self.tracker.done)
        self.batcher = Batcher(self.bulk_max, 0.5, self.settings.version, self.queued.append) if self.bulk else None
        self.cursor_seen = self.tracker.cursor

    def enqueue(self, post):
        if self.batcher is not None:
            self.batcher.add(post)
        else:
            self.queued.append(post)

    def exempt(self, offset: int) -> bool:
        """Offsets this sink never receives on their own: filtered, or a version 1 media message."""
        kind = self.journal[offset - 1][0]
        return kind == FILTERED or (kind == MEDIA_DESTROYED and self.settings.version == 1)

    # ------------------------------------------------------------ rules

    @rule(kind=st.sampled_from(KINDS), participant=st.integers(0, 3))
    def publish(self, kind, participant):
        self.journal.append((kind, payload(kind, f"u{participant}", self.now)))

    @precondition(lambda self: self.next_offset <= len(self.journal) and not self.paused)
    @rule(n=st.integers(1, 4))
    def read(self, n):
        for _ in range(n):
            if self.next_offset > len(self.journal):
                return
            offset = self.next_offset
            self.tracker.add(offset, len(self.journal[offset - 1][1]))
            self.next_offset += 1
            self.shaper.offer(offset, self.journal[offset - 1][1], self.now)

    @rule(dt=st.sampled_from([0.1, 0.6, 1.1, 2.5]), read_all=st.booleans())
    def time_passes(self, dt, read_all):
        self.now += dt
        if self.paused:
            return
        self.shaper.expire(self.now, read_all=read_all)
        if self.batcher is not None:
            self.batcher.tick(self.now)

    @precondition(lambda self: self.queued and not self.paused)
    @rule(n=st.integers(1, 3))
    def send(self, n):
        for _ in range(min(n, len(self.queued))):
            self.in_flight.append(self.queued.pop(0))

    @precondition(lambda self: self.in_flight)
    @rule(index=st.integers(0, 63), ok=st.booleans())
    def answer(self, index, ok):
        """One in-flight POST ends, in any order: delivered, or failed (back to the queue's front)."""
        post = self.in_flight.pop(index % len(self.in_flight))
        if ok:
            self.received.update(post.offsets)
            for offset in post.offsets:
                self.tracker.done(offset)
        elif not self.paused:
            self.queued.insert(0, post)

    @rule()
    def commit(self):
        self.committed = max(self.committed, self.tracker.cursor)

    @precondition(lambda self: not self.paused)
    @rule()
    def stop_publisher(self):
        """An alarm stops the publisher: queued POSTs and held events are forgotten (they stay
        in the journal), in-flight ones still end; a restart is a fresh worker."""
        self.paused = True
        self.queued.clear()
        self.shaper.drop_held()
        if self.batcher is not None:
            self.batcher.drop()

    @precondition(lambda self: self.paused)
    @rule()
    def restart_publisher(self):
        self.committed = max(self.committed, self.tracker.cursor)  # the worker's last commit at shutdown
        self.start_worker()

    @rule(arrived=st.integers(0, 2**16))
    def crash(self, arrived):
        """kill -9: some in-flight POSTs reached the receiver (their answers are lost), the rest did not."""
        for i, post in enumerate(self.in_flight):
            if arrived >> i & 1:
                self.received.update(post.offsets)
        self.crashes += 1
        self.start_worker()

    # ------------------------------------------------------------ invariants

    @invariant()
    def nothing_at_or_below_the_cursor_is_undelivered(self):
        if not hasattr(self, "tracker"):
            return
        for offset in range(1, self.tracker.cursor + 1):
            assert offset in self.received or self.exempt(offset), (
                f"offset {offset} ({self.journal[offset - 1][0]}) is at or below cursor {self.tracker.cursor} "
                f"but was never delivered"
            )
        assert self.tracker.cursor <= self.next_offset - 1
        assert self.tracker.cursor >= self.cursor_seen, "the cursor went back"
        self.cursor_seen = self.tracker.cursor

    def teardown(self):
        if not hasattr(self, "tracker"):
            return
        # Everything read, every wait over, every POST answered: the sink has it all.
        if self.paused:
            self.restart_publisher()
        for _ in range(10_000):
            self.read(4)
            self.time_passes(10.0, True)
            if self.batcher is not None:
                self.batcher.flush()
            posts = self.in_flight + self.queued
            self.in_flight.clear()
            self.queued.clear()  # the same list: the batcher emits into it
            for post in posts:
                self.received.update(post.offsets)
                for offset in post.offsets:
                    self.tracker.done(offset)
            if (
                self.next_offset > len(self.journal)
                and not self.shaper.held
                and not posts
                and (self.batcher is None or not len(self.batcher))
            ):
                break
        missing = [o for o in range(1, len(self.journal) + 1) if o not in self.received and not self.exempt(o)]
        assert not missing, f"never delivered: {missing}"
        assert self.tracker.cursor == len(self.journal)
        assert self.tracker.undone == 0


WorkerModel.TestCase.settings = settings(
    max_examples=300, stateful_step_count=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_worker_bookkeeping_against_the_model = WorkerModel.TestCase
