"""The Publisher's ring of events handed to ZeroMQ (payload bytes in one circular bytearray):
it keeps exactly the last resend_max events, in order, across wrap-arounds and growths, with
payloads of mixed sizes (some far above the average and above the initial buffer), and a resend
gives them back oldest first and counts them."""

from __future__ import annotations

import random

import pytest

from bus.publisher import Publisher
from tests.helpers import short_tmpdir


def number(seq: int) -> bytes:
    return b"12345678" + seq.to_bytes(8, "big")


def ring_events(pub: Publisher) -> list[tuple[bytes, bytes, bytes]]:
    pub._resend()
    out = list(pub._kept)
    pub._kept.clear()
    return out


@pytest.mark.parametrize("resend_max", [1, 2, 3, 10, 257])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_ring_keeps_exactly_the_last_resend_max_in_order(resend_max, seed):
    rng = random.Random(seed)
    with short_tmpdir() as d:
        pub = Publisher(f"ipc://{d}/none.sock", resend_max=resend_max)
        try:
            sent: list[tuple[bytes, bytes, bytes]] = []
            for seq in range(1, 20 * resend_max + 50):
                # Mostly ~800 bytes, some tiny, some far larger than the average (and than the
                # initial buffer of 1 KiB per event).
                size = rng.choice([2, 17, 800, 800, 900, 5000, 3 * 1024 * resend_max + 7])
                payload = bytes([seq % 251]) * size
                message = (b"topic%d" % (seq % 3), payload, number(seq))
                pub._remember(*message)
                sent.append(message)
                if rng.random() < 0.03:  # a broker subscribing anew mid-stream
                    before = pub.resent
                    assert ring_events(pub) == sent[-resend_max:]
                    assert pub.resent - before == len(sent[-resend_max:])
                    sent.clear()
            assert ring_events(pub) == sent[-resend_max:]
            assert ring_events(pub) == []  # the ring is empty after a resend
        finally:
            pub.close(0)


def test_wrap_around_reuses_the_buffer_without_growing():
    with short_tmpdir() as d:
        pub = Publisher(f"ipc://{d}/none.sock", resend_max=10)
        try:
            size = len(pub._buf)
            for seq in range(1, 1001):  # 100 times around a 10 KiB buffer with 10 x 700 bytes
                pub._remember(b"t", bytes([seq % 256]) * 700, number(seq))
            assert len(pub._buf) == size
            got = ring_events(pub)
            assert [m[2] for m in got] == [number(s) for s in range(991, 1001)]
            assert [m[1] for m in got] == [bytes([s % 256]) * 700 for s in range(991, 1001)]
        finally:
            pub.close(0)


def test_resend_max_zero_keeps_nothing():
    with short_tmpdir() as d:
        pub = Publisher(f"ipc://{d}/none.sock", resend_max=0)
        try:
            assert not pub._ring_full  # publish never calls _remember
            pub._resend()
            assert list(pub._kept) == [] and pub.resent == 0
        finally:
            pub.close(0)
