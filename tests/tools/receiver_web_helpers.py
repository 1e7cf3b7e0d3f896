"""Shared by the live page's tests (tests/tools/test_receiver_web*.py): a receiver with its page
on 127.0.0.1, and POSTing events to it as a sink would."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
from collections.abc import Iterator

from tools.receiver import Receiver
from tools.receiver_web import ReceiverWeb

USERNAME, PASSWORD = "cdr-user", "S3cret-pass-9f2"


def envelope(seq: int, event: str = "participant_connected", **data) -> dict:
    return {
        "node": "10.44.99.2",
        "seq": seq,
        "version": 2,
        "time": 1700000000.5,
        "event": event,
        "data": data or {"uuid": f"u-{seq}", "conference": "Weekly sync", "display_name": "Alice"},
    }


def post(rx: Receiver, body: dict, webhook_id: str, password: str = PASSWORD) -> int:
    conn = http.client.HTTPConnection(rx.host, rx.port, timeout=5)
    auth = base64.b64encode(f"{USERNAME}:{password}".encode()).decode()
    try:
        conn.request(
            "POST",
            "/events",
            json.dumps(body).encode(),
            {"Content-Type": "application/json", "Authorization": f"Basic {auth}", "webhook-id": webhook_id},
        )
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def get(page: ReceiverWeb, path: str, headers: dict | None = None) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection(page.host, page.port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        conn.close()


@contextlib.contextmanager
def receiver_with_page() -> Iterator[tuple[Receiver, ReceiverWeb]]:
    with Receiver(username=USERNAME, password=PASSWORD) as rx:
        page = ReceiverWeb(rx).start()
        try:
            yield rx, page
        finally:
            page.stop()
