"""The floor: the agent's own data path written as bare as Python allows, in two processes.

`python -m tests.bench.floor journal ENDPOINT RELAY DB COUNT` binds a SUB on
ENDPOINT (publishers connect, as to the agent's broker); per message it parses
the payload (the broker must know it is JSON), inserts it into SQLite and commits
(WAL, synchronous = NORMAL: the journal's pragmas, bus/journal.py), then
republishes it on an XPUB bound at RELAY. `python -m tests.bench.floor post RELAY
URL COUNT` subscribes to RELAY and per message does one blocking pycurl
`perform()` on one kept-alive handle: the envelope (node, seq, version, then the
payload's fields, spliced as bytes) with the agent's headers (Content-Type,
User-Agent, empty Expect, a webhook-id), 2xx checked. Each prints "ready" (the
journal once the poster's subscription arrived), then its count when COUNT
messages went through or none came for 10 s. No retries, no cursor, no pairing.
"""

import json
import sqlite3
import sys
import time

import pycurl
import zmq

IDLE_MS = 10_000


def journal(endpoint: str, relay: str, path: str, count: int) -> int:
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("auto_vacuum = INCREMENTAL", "journal_mode = WAL", "synchronous = NORMAL"):
        db.execute(f"PRAGMA {pragma}")
    db.execute('CREATE TABLE events("offset" INTEGER PRIMARY KEY, topic BLOB, payload BLOB, accepted_at REAL)')
    ctx = zmq.Context()
    sub, pub = ctx.socket(zmq.SUB), ctx.socket(zmq.XPUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.bind(endpoint)
    pub.bind(relay)
    pub.recv()  # the poster's subscription: nothing republished before it is lost
    print("ready", flush=True)
    done = 0
    while done < count and sub.poll(IDLE_MS):
        topic, payload = sub.recv_multipart()
        json.loads(payload)
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO events(topic, payload, accepted_at) VALUES (?, ?, ?)", (topic, payload, time.time()))
        db.execute("COMMIT")
        pub.send_multipart([topic, payload])
        done += 1
    return done


def post(relay: str, url: str, count: int) -> int:
    sub = zmq.Context().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(relay)
    c = pycurl.Curl()
    for option, value in (
        (pycurl.URL, url),
        (pycurl.POST, 1),
        (pycurl.NOSIGNAL, 1),
        (pycurl.TCP_NODELAY, 1),
        (pycurl.TIMEOUT, 10),
        (pycurl.WRITEFUNCTION, lambda chunk: None),
    ):
        c.setopt(option, value)  # once per handle, as the agent's worker does
    headers = ["Content-Type: application/json", "User-Agent: eventsink-floor", "Expect:"]
    print("ready", flush=True)
    done = 0
    while done < count and sub.poll(IDLE_MS):
        _, payload = sub.recv_multipart()
        done += 1
        body = b'{"node":"10.44.99.2","seq":%d,"version":2,%s' % (done, payload[1:])
        c.setopt(pycurl.HTTPHEADER, headers + [f"webhook-id: floor-{done}"])
        c.setopt(pycurl.POSTFIELDS, body)
        c.perform()
        if not 200 <= c.getinfo(pycurl.RESPONSE_CODE) < 300:
            raise SystemExit(f"floor: POST {done} answered {c.getinfo(pycurl.RESPONSE_CODE)}")
    return done


if __name__ == "__main__":
    role, args = sys.argv[1], sys.argv[2:]
    done = journal(*args[:3], int(args[3])) if role == "journal" else post(*args[:2], int(args[2]))
    print(done, flush=True)
