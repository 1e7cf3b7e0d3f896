"""The supervisor's ROUTER with real DEALERs: reports in, commands out, bad
frames counted, and sends to absent children reported instead of lost."""

import logging
import shutil
import tempfile
import time

import orjson
import pytest
import zmq

from agent.supervision.childlink import ChildLink
from common.internal import connect_to_supervisor, send_nowait, worker_identity


@pytest.fixture
def link():
    base = tempfile.mkdtemp(prefix="esa-", dir="/tmp")
    ctx = zmq.Context()
    router = ChildLink(ctx, f"ipc://{base}/supervisor.sock")
    yield ctx, router
    router.close()
    ctx.term()
    shutil.rmtree(base, ignore_errors=True)


def receive_some(router, n, timeout=5.0):
    got, deadline = [], time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        if router.socket.poll(100):
            got += router.receive()
    return got


def test_round_trip_and_bad_frames(link):
    ctx, router = link
    dealer = connect_to_supervisor(ctx, router.endpoint, worker_identity("cdr"))
    try:
        dealer.send(b"{not json")
        dealer.send_multipart([b"{}", b"extra"])
        dealer.send(b'{"no": "type"}')
        assert send_nowait(dealer, {"type": "report", "role": "worker", "sink": "cdr"})
        [(identity, msg)] = receive_some(router, 1)
        assert identity == b"sink:cdr" and msg["role"] == "worker"
        assert router.bad_messages == 3
        assert router.send(b"sink:cdr", {"type": "stop_publisher"})
        assert dealer.poll(5000)
        assert orjson.loads(dealer.recv()) == {"type": "stop_publisher"}
    finally:
        dealer.close(linger=0)


def test_bad_messages_are_all_counted_and_logged_once_a_minute(link, caplog):
    _, router = link
    with caplog.at_level(logging.WARNING, logger="agent.supervisor"):
        for _ in range(5):
            router.note_bad(b"sink:cdr", "bad sink report")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["supervisor link: ignored a bad message from b'sink:cdr' (bad sink report); 1 so far"]
    assert router.bad_messages == 5


def test_send_to_an_absent_child_says_so(link):
    _, router = link
    assert router.send(b"sink:nobody", {"type": "shutdown", "stop_event": True}) is False
