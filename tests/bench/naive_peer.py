"""The naive peer: what a quick forwarder looks like (pyzmq SUB + requests, one POST per event, in order).

`python -m tests.bench.naive_peer ENDPOINT URL COUNT` binds a SUB on ENDPOINT
(publishers connect, as they do to the agent), prints "ready", then for each
message POSTs the same envelope the agent sends (node, seq, version, time,
event, data) to URL, until COUNT were forwarded or nothing came for 10 s.
No journal, no retries, no pairing: the same job, done the quick way.
"""

import json
import sys
import time

import requests
import zmq

endpoint, url, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB)
sub.setsockopt(zmq.RCVHWM, 0)
sub.setsockopt(zmq.LINGER, 0)
sub.setsockopt(zmq.SUBSCRIBE, b"")
sub.bind(endpoint)
session = requests.Session()
print("ready", flush=True)
forwarded, deadline = 0, time.monotonic() + 600
while forwarded < count and time.monotonic() < deadline and sub.poll(10_000):
    topic, payload = sub.recv_multipart()
    event = json.loads(payload)
    envelope = {"node": "10.44.99.2", "seq": forwarded + 1, "version": 2, **event}
    session.post(url, json=envelope, timeout=10).raise_for_status()
    forwarded += 1
print(forwarded, flush=True)
sub.close()
ctx.term()
