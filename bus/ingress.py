"""Taking batches off the broker's ingress socket: how many messages share one journal
transaction (BATCH_MAX / BATCH_BYTES / BATCH_SECONDS) and the group-commit window that lets a
trickle share one too. `IngressDrain` is an object bus/broker.py's `Broker` holds on its ingress
socket (the broker owns the socket: binds, polls and closes it)."""

from __future__ import annotations

import time

import zmq

BATCH_MAX = 2000  # messages per journal transaction
BATCH_BYTES = 8 * 1024 * 1024  # payload bytes per journal transaction
BATCH_SECONDS = 0.005  # longest a batch keeps draining
# A single-row commit costs ~160 us when it comes alone after a sleep, ~23 us in a tight loop:
# a batch that ran the queue dry waits a little longer than the recent gap between messages
# (so one more shares its transaction), within these bounds; never when messages come further
# apart than the maximum. The price: up to that much latency for the first event of a batch.
GROUP_COMMIT_MIN_WINDOW = 0.001
GROUP_COMMIT_MAX_WINDOW = 0.002
_NOBLOCK = int(zmq.NOBLOCK)  # a plain int: pyzmq's enum flags cost Python-level arithmetic per frame


class IngressDrain:
    """Batching of the ingress (see the module docstring)."""

    def __init__(self, ingress: zmq.Socket, batch_bytes_max: int = BATCH_BYTES):
        self.ingress = ingress
        self.batch_bytes_max = batch_bytes_max  # the broker keeps a batch within its WAL limit too
        self.backlogged = False  # the last drain left messages queued: a burst is coming in
        self.last_batch = (float("-inf"), 0)  # (when its first message was taken, its length)
        self.drained_bytes = 0  # frame bytes of the last batch drain() took

    def drain(self, window: float | None = None, max_seconds: float = BATCH_SECONDS) -> list[list[bytes]]:
        """Take what is queued (bounded by count, bytes, time); when that ran the queue dry, wait
        until WINDOW (default: `group_commit_window()`) after the first message once and take
        what came meanwhile: a trickle then pays one transaction per window, not one per event."""
        started = time.monotonic()
        batch: list[list[bytes]] = []
        size = self._take(batch, 0, started + max_seconds)
        if window is None:
            window = self.group_commit_window(started)
        if window > 0 and batch and not self.backlogged:
            pause = started + window - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # not a poll on the ingress: arrivals must not wake us one by one
            size = self._take(batch, size, time.monotonic() + max_seconds)
        self.last_batch = (started, len(batch))
        self.drained_bytes = size
        return batch

    def group_commit_window(self, started: float) -> float:
        """How long a batch waits for company: a little more than the gap between messages seen
        lately, so that about one more shares the transaction, and within [MIN, MAX]; 0 when the
        gap is longer than that (a slow trickle: waiting would only add latency and a wake-up)."""
        last_started, last_count = self.last_batch
        gap = (started - last_started) / max(1, last_count)
        if gap > GROUP_COMMIT_MAX_WINDOW:
            return 0.0
        return min(GROUP_COMMIT_MAX_WINDOW, max(GROUP_COMMIT_MIN_WINDOW, 1.25 * gap))

    def _take(self, batch: list[list[bytes]], size: int, deadline: float) -> int:
        """Append queued messages to BATCH until it is full, DEADLINE passes or the queue runs dry
        (then `backlogged` is False); returns the batch's size in bytes."""
        recv = self.ingress.recv
        monotonic = time.monotonic
        self.backlogged = True  # unless the queue runs dry below
        limit = self.batch_bytes_max
        while len(batch) < BATCH_MAX and size < limit:
            # recv_multipart, inlined: its RCVMORE getsockopt per frame costs more than Frame.more.
            try:
                frame = recv(_NOBLOCK, copy=False)
            except zmq.Again:
                self.backlogged = False
                break
            frames = [frame.bytes]
            while frame.more:
                frame = recv(_NOBLOCK, copy=False)
                frames.append(frame.bytes)
            batch.append(frames)
            for f in frames:
                size += len(f)
            if monotonic() >= deadline:
                break
        return size
