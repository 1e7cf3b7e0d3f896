"""The soak's oracle: exactly once per sink, judged from what each receiver accepted.

Owns `judge_sink` and `SinkVerdict`. For one sink, from the 2xx POSTs its
receiver recorded, the fault timeline, the publishers' counts and the journal:

- delivery: every event a `Publisher` client sent is delivered (after
  deduplication by `webhook-id`: a bulk envelope's id covers its inner events,
  so POSTs are deduplicated per envelope id and then their inner events
  counted). A missing event is reported with whether the journal has it (lost
  on the bus, or journaled and never delivered), its time and the fault that
  preceded it.
- exactly once: no event counted twice after deduplication (journaled twice,
  or re-sent in another envelope: a bulk regrouping), reported likewise.
- duplicates before deduplication, each explained by the fault between the
  first copy and the repeat: a replay of the sink (re-sends by contract); an
  answer that never reached the agent (the first copy arrived while the
  receiver stalled past `response_timeout`, reset the connection or went
  away); or a restart of the sink's worker (kill -9 of it, of the broker, of
  the agent, SIGTERM, reload, replay, alarm restart). The bound per restart:
  at most `max_in_flight` POSTs re-sent (the POSTs in flight whose answer the
  dead worker never recorded; every recorded acknowledgement is in the cursor
  shadow, and a bulk batch still held was never sent, so it cannot be a
  duplicate). A repeat without such a fault, or a restart re-sending more
  than the bound, is a problem.
- order (the `max_in_flight = 1` sink): within each publisher start (between
  two `eventsink_started`), `seq` never goes back and each client's
  `conference_updated` events keep their publishing order; repeats of a
  `webhook-id` (retries, replays) aside.
- bare PUB: what it lost on the bus (never journaled) before the agent's
  subscription first reached it, or while the agent was not subscribed (from
  UNSUBSCRIBED_MARGIN before a broker or agent kill or a SIGTERM until that
  margin after it ran again) is
  counted and reported, not failed (docs/bus.md); anything else lost is a
  problem, as for a Publisher.
- version 1: no media event, and each `participant_disconnected` carries its
  own pair's `media_streams` (loadgen tags the stream with the media
  message's fid), unless that media message was never journaled.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from tests.faults.loadgen import events as loadgen_events
from tests.faults.soak_faults import ANSWER_LOST, STALL, UNSUBSCRIBING, Fault
from tests.faults.soak_rig import MEDIA_STREAMS_WAIT, RESPONSE_TIMEOUT

ANSWER_MARGIN = STALL + 1.0  # s after an answer-losing fault healed that a request it held may still be recorded
# s before an answer-losing fault began that a request may have arrived whose answer it then cut
# (the receiver stamps a request on arrival; its answer is written a moment later)
ANSWER_LEAD = 1.0
EFFECT_MARGIN = 1.0  # s after a fault was over that its effect (an old worker stopping) may still come
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ support\.events \[sink:([^\]]+)\]: (.*)$")
UNSUBSCRIBED_MARGIN = 2.0  # s around a broker/agent outage a bare PUB's sends may still be dropped
SHOW = 5  # examples per problem line


@dataclass
class Post:
    t: float  # monotonic arrival at the receiver
    wid: str
    events: list[dict]  # the envelope, or a bulk envelope's inner envelopes
    reload_header: str


@dataclass
class Published:
    """What the clients sent: fid -> (client kind, event name); a v1 media message's fid by uuid."""

    kind: dict = field(default_factory=dict)  # fid -> "publisher" or "pub"
    name: dict = field(default_factory=dict)  # fid -> event name
    media_of: dict = field(default_factory=dict)  # uuid -> fid of its participant_media_streams_destroyed
    counts: dict = field(default_factory=dict)  # prefix -> (client, sent)

    def add(self, prefix: str, client: str, sent: int) -> None:
        self.counts[prefix] = (client, sent)
        for i, (name, data) in enumerate(loadgen_events(prefix, sent, True)):
            fid = f"{prefix}-{i}"
            self.kind[fid], self.name[fid] = client, name
            if name == "participant_media_streams_destroyed":
                self.media_of[data["uuid"]] = fid


@dataclass
class Journal:
    """The journal at the end of the run: fid -> offsets it was journaled under, and publish times."""

    offsets: dict = field(default_factory=lambda: defaultdict(list))
    times: dict = field(default_factory=dict)
    accepted: dict = field(default_factory=dict)  # fid -> when the broker first journaled it (accepted_at)
    held: dict = field(default_factory=lambda: defaultdict(set))  # sink -> fids held as dead letters
    first_index: dict = field(default_factory=dict)  # loadgen prefix -> lowest index journaled

    @classmethod
    def read(cls, path: str) -> Journal:
        j = cls()
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            for offset, payload, accepted_at in db.execute('SELECT "offset", payload, accepted_at FROM events'):
                ev = json.loads(payload)
                fid = ev.get("data", {}).get("fid")
                if fid:
                    j.offsets[fid].append(offset)
                    j.accepted.setdefault(fid, accepted_at)
                    j.times[fid] = ev.get("time", 0.0)
                    prefix, _, i = fid.rpartition("-")
                    j.first_index[prefix] = min(int(i), j.first_index.get(prefix, 1 << 62))
            for sink, payload in db.execute("SELECT sink, payload FROM dead_letters"):
                j.held[sink].add(json.loads(payload).get("data", {}).get("fid", ""))
        finally:
            db.close()
        return j


@dataclass
class SinkVerdict:
    sink: str
    posts: int = 0
    delivered: int = 0  # events in 2xx POSTs, before deduplication
    distinct: int = 0
    dup_before: int = 0  # events delivered again under a webhook-id already delivered
    dup_after: int = 0  # events delivered under two or more webhook-ids
    missing_publisher: int = 0
    bare_lost_allowed: int = 0
    bare_lost_other: int = 0
    dup_causes: Counter = field(default_factory=Counter)
    lifecycle: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        causes = " ".join(f"{k}={v}" for k, v in sorted(self.dup_causes.items()))
        return (
            f"sink {self.sink}: posts={self.posts} delivered={self.delivered} distinct={self.distinct} "
            f"dup_before_dedup={self.dup_before} ({causes or 'none'}) dup_after_dedup={self.dup_after} "
            f"lost_publisher={self.missing_publisher} bare_lost_allowed={self.bare_lost_allowed} "
            f"bare_lost_other={self.bare_lost_other} lifecycle={dict(self.lifecycle)}"
        )


def posts_of(receiver) -> list[Post]:
    """The receiver's 2xx POSTs, by arrival."""
    out = []
    for req in list(receiver.requests):
        if req.problem is not None or not 200 <= req.status < 300:
            continue
        envelope = req.json()
        inner = envelope["data"] if envelope.get("event") == "eventsink_bulk" else [envelope]
        out.append(Post(req.t, req.headers.get("webhook-id", ""), inner, req.headers.get("x-soak-reload", "")))
    return sorted(out, key=lambda p: p.t)


def dump_posts(path: str, receiver) -> None:
    """Every request the receiver recorded, one JSON line each (arrival, status, webhook-id, seqs,
    events, fids), kept with a failed run's agent log as the evidence behind its verdict."""
    with open(path, "w") as fh:
        for req in list(receiver.requests):
            try:
                envelope = req.json()
                inner = envelope["data"] if envelope.get("event") == "eventsink_bulk" else [envelope]
            except (ValueError, KeyError, TypeError):
                inner = []
            fh.write(
                json.dumps(
                    {
                        "t": round(req.t, 3),
                        "status": req.status,
                        "problem": req.problem,
                        "wid": req.headers.get("webhook-id"),
                        "seq": [e.get("seq") for e in inner],
                        "events": [e.get("event") for e in inner],
                        "fids": [fid_of(e) for e in inner],
                    }
                )
                + "\n"
            )


def fid_of(ev: dict) -> str | None:
    data = ev.get("data")
    return data.get("fid") if isinstance(data, dict) else None


def preceding(timeline: list[Fault], wall: float | None = None, mono: float | None = None) -> str:
    """The last fault begun before that moment (wall or monotonic clock), as a label."""
    if wall is None and mono is None:
        return "at an unknown time"
    before = [f for f in timeline if (f.wall <= wall + 0.2 if wall is not None else f.start <= mono + 0.2)]
    return f"after {before[-1].label()}" if before else "before any fault"


def ranges(fids: list[str]) -> str:
    """fids as prefix ranges: p1-3..p1-9, p2-40."""
    by_prefix = defaultdict(list)
    for fid in fids:
        prefix, _, i = fid.rpartition("-")
        by_prefix[prefix].append(int(i))
    parts = []
    for prefix, idx in sorted(by_prefix.items()):
        idx.sort()
        start = prev = idx[0]
        for i in idx[1:] + [None]:
            if i is not None and i <= prev + 10:  # a loss of consecutive events, v1's media gaps included
                prev = i
                continue
            parts.append(f"{prefix}-{start}" + (f"..{prefix}-{prev}" if prev != start else ""))
            if i is not None:
                start = prev = i
    return ", ".join(parts[:SHOW]) + (f" (+{len(parts) - SHOW} more ranges)" if len(parts) > SHOW else "")


def judge_sink(
    name: str,
    version: int,
    max_in_flight: int,
    receiver,
    published: Published,
    journal: Journal,
    timeline: list[Fault],
    generation: int,
    failures: list[tuple[float, float]] = (),
) -> SinkVerdict:
    v = SinkVerdict(name)
    posts = posts_of(receiver)
    v.posts = len(posts)
    first: dict[str, Post] = {}
    for p in posts:
        first.setdefault(p.wid, p)
        for ev in p.events:
            if ev.get("event", "").startswith("eventsink_"):
                v.lifecycle[ev["event"]] += 1
            elif fid_of(ev):
                v.delivered += 1
    once = Counter(fid_of(ev) for p in first.values() for ev in p.events if fid_of(ev))
    v.distinct = len(once)
    v.dup_after = sum(n - 1 for n in once.values())
    v.dup_before = v.delivered - sum(once.values())
    _check_missing(v, version, once, published, journal, timeline)
    _check_twice(v, posts, once, journal, timeline)
    _check_repeats(v, posts, max_in_flight, timeline, list(failures))
    if max_in_flight == 1:
        _check_order(v, posts, timeline)
    if version == 1:
        _check_v1(v, first, published, journal, timeline)
    if posts and posts[-1].reload_header != str(generation):
        v.problems.append(
            f"{name}: the last POST carries {posts[-1].reload_header!r} as its reload header, "
            f"the config after the last reload {generation!r}: a reload did not take effect"
        )
    return v


def _check_missing(
    v: SinkVerdict, version: int, once: Counter, published: Published, journal: Journal, timeline: list[Fault]
) -> None:
    expected = [
        f for f, n in published.name.items() if not (version == 1 and n == "participant_media_streams_destroyed")
    ]
    missing = [f for f in expected if f not in once]
    held = [f for f in missing if f in journal.held.get(v.sink, ())]
    if held:
        v.problems.append(
            f"{v.sink}: {len(held)} events still held as dead letters after the final redrive: {ranges(held)}"
        )
    missing = [f for f in missing if f not in held]
    groups = defaultdict(list)  # (client, where lost, preceding fault) -> fids
    for fid in missing:
        journaled = fid in journal.offsets
        when = journal.times.get(fid) if journaled else _interpolated_time(fid, journal)
        where = "journaled, never delivered" if journaled else "never journaled (lost on the bus)"
        allowed = (
            published.kind[fid] == "pub"
            and not journaled
            and (_before_first_subscription(fid, journal) or _unsubscribed(when, timeline))
        )
        groups[(published.kind[fid], where, allowed, preceding(timeline, wall=when))].append(fid)
    for (client, where, allowed, fault), fids in sorted(groups.items()):
        if client == "publisher":
            v.missing_publisher += len(fids)
        elif allowed:
            v.bare_lost_allowed += len(fids)
        else:
            v.bare_lost_other += len(fids)
        text = f"{v.sink}: {len(fids)} {client} events {where}, {fault}: {ranges(fids)}"
        (v.notes if allowed else v.problems).append(
            text + (" (allowed: a bare PUB while unsubscribed)" if allowed else "")
        )


def _interpolated_time(fid: str, journal: Journal) -> float | None:
    """A never-journaled event's publish time, from the nearest journaled events of its publisher."""
    prefix, _, i = fid.rpartition("-")
    i = int(i)
    for step in range(1, 200):
        for j in (i - step, i + step):
            t = journal.times.get(f"{prefix}-{j}")
            if t is not None:
                return t
    return None


def _before_first_subscription(fid: str, journal: Journal) -> bool:
    """Whether FID was sent before anything of its publisher was journaled: before the agent's
    subscription first reached that PUB (ZeroMQ drops what a PUB sends before, docs/bus.md)."""
    prefix, _, i = fid.rpartition("-")
    return int(i) < journal.first_index.get(prefix, 1 << 62)


def _unsubscribed(wall: float | None, timeline: list[Fault]) -> bool:
    """Whether WALL falls while the agent was (maybe) not subscribed: around a broker/agent outage."""
    if wall is None:
        return False
    return any(
        f.kind in UNSUBSCRIBING and f.wall - UNSUBSCRIBED_MARGIN <= wall <= (f.wall_end or f.wall) + UNSUBSCRIBED_MARGIN
        for f in timeline
    )


def _check_twice(v: SinkVerdict, posts: list[Post], once: Counter, journal: Journal, timeline: list[Fault]) -> None:
    """Events counted twice after deduplication, grouped by cause and the fault before their second id."""
    second_at: dict[str, float] = {}
    ids: dict[str, list[str]] = defaultdict(list)
    for p in posts:
        for ev in p.events:
            fid = fid_of(ev)
            if fid and once.get(fid, 0) > 1 and p.wid not in ids[fid]:
                ids[fid].append(p.wid)
                if len(ids[fid]) == 2:
                    second_at[fid] = p.t
    groups = defaultdict(list)
    for fid, t in second_at.items():
        cause = "journaled twice" if len(journal.offsets.get(fid, ())) > 1 else "re-sent under a new webhook-id"
        groups[(cause, preceding(timeline, mono=t))].append(fid)
    for (cause, fault), fids in sorted(groups.items()):
        v.problems.append(
            f"{v.sink}: {len(fids)} events delivered twice after dedup ({cause}), {fault}: {ranges(fids)}"
        )


def _check_repeats(
    v: SinkVerdict, posts: list[Post], max_in_flight: int, timeline: list[Fault], failures: list[tuple[float, float]]
) -> None:
    """Each repeat of a webhook-id explained by a fault in between; restarts within their bound."""
    mine = [f for f in timeline if f.sink in (None, v.sink)]
    last: dict[str, Post] = {}
    per_restart: dict[int, set] = defaultdict(set)
    unexplained = []
    for p in posts:
        prev = last.get(p.wid)
        last[p.wid] = p
        if prev is None:
            continue
        cause = _repeat_cause(v.sink, prev, p, mine, failures)
        if isinstance(cause, Fault):
            per_restart[id(cause)].add(p.wid)
            cause_name = f"restart({cause.kind})"
        else:
            cause_name = cause
        v.dup_causes[cause_name] += sum(1 for ev in p.events if fid_of(ev))
        if cause == "unexplained":
            unexplained.append(p)
    if unexplained:
        v.problems.append(
            f"{v.sink}: {len(unexplained)} POSTs repeated a webhook-id with no fault in between "
            f"that explains it, e.g. {[u.wid for u in unexplained[:SHOW]]} "
            f"({preceding(timeline, mono=unexplained[0].t)})"
        )
    for fault in mine:
        if len(per_restart.get(id(fault), ())) > max_in_flight:
            v.problems.append(
                f"{v.sink}: {fault.label()} was followed by {len(per_restart[id(fault)])} POSTs "
                f"re-sent, more than max_in_flight = {max_in_flight} in flight at the kill"
            )


def _repeat_cause(sink: str, prev: Post, cur: Post, mine: list[Fault], failures: list[tuple[float, float]]):
    """Why CUR repeats PREV's webhook-id: 'replay', 'answer_lost', 'agent_timeout', the restart Fault,
    or 'unexplained'. A fault counts when its effect can lie between the two copies: begun before the
    repeat, and over (a ctl command returned, a new worker running) no earlier than EFFECT_MARGIN
    before the first copy (a replay or reload stops the old worker some time after it is asked)."""
    between = [f for f in mine if f.start - 0.2 <= cur.t and prev.t <= (f.end or cur.t) + EFFECT_MARGIN]
    if any(f.kind == "replay" and f.sink == sink for f in between):
        return "replay"
    if any(
        f.kind in ANSWER_LOST and f.sink == sink and f.start - ANSWER_LEAD <= prev.t <= (f.end or cur.t) + ANSWER_MARGIN
        for f in mine
    ):
        return "answer_lost"
    if any(start <= prev.t <= end for start, end in failures):
        return "agent_timeout"
    restarts = [f for f in between if f.restarts(sink)]
    return restarts[0] if restarts else "unexplained"


FAILURE_TAIL = 1.5  # s after the success that closes a window of agent-reported failures


def agent_failures(log_text: str, wall_minus_mono: float) -> dict[str, list[tuple[float, float]]]:
    """sink -> monotonic windows in which its worker reported POSTs without an answer (a timeout or a
    connection error, support.events), from RESPONSE_TIMEOUT + 1.5 s before the first such failure
    to the next success: a request the receiver took then may have had its answer lost with no
    injected fault at all (a slow receiver on a busy machine)."""
    windows: dict[str, list[tuple[float, float]]] = defaultdict(list)
    open_at: dict[str, float] = {}
    for line in log_text.splitlines():
        match = LOG_LINE.match(line)
        if not match:
            continue
        stamp, sink, what = match.groups()
        t = time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")) + int(stamp[20:23]) / 1000 - wall_minus_mono
        if ("failed: timeout" in what or "failed: connection_error" in what) and sink not in open_at:
            open_at[sink] = t - RESPONSE_TIMEOUT - 1.5
        elif "succeeded after" in what and sink in open_at:
            # Until a little after the success: with several POSTs in flight the success logged may be
            # another POST's, in the same loop turn as the failure, and a receiver that finished a
            # request just after the agent gave up on it records that request after the failure line
            # (seen: a redriven dead letter recorded 0.05 s after its timeout, then its retry).
            windows[sink].append((open_at.pop(sink), t + FAILURE_TAIL))
    for sink, start in open_at.items():
        windows[sink].append((start, float("inf")))
    return windows


def _check_order(v: SinkVerdict, posts: list[Post], timeline: list[Fault]) -> None:
    """seq and each client's conference_updated order within each publisher start, repeats aside."""
    seen: set[str] = set()
    last_seq, last_index = 0, {}
    backwards = []
    for p in posts:
        repeat = p.wid in seen
        seen.add(p.wid)
        for ev in p.events:
            seq = ev.get("seq", 0)
            if ev.get("event") == "eventsink_started" and seq == 1:
                last_seq, last_index = 1, {}
                continue
            if repeat:
                continue
            if seq < last_seq:
                backwards.append(f"seq {seq} after {last_seq} ({preceding(timeline, mono=p.t)})")
            last_seq = max(last_seq, seq)
            fid = fid_of(ev)
            if fid and ev.get("event") == "conference_updated":
                prefix, _, i = fid.rpartition("-")
                if int(i) < last_index.get(prefix, -1):
                    backwards.append(f"{fid} after {prefix}-{last_index[prefix]} ({preceding(timeline, mono=p.t)})")
                last_index[prefix] = max(int(i), last_index.get(prefix, -1))
    if backwards:
        v.problems.append(
            f"{v.sink}: {len(backwards)} deliveries out of order within one publisher start: {backwards[:SHOW]}"
        )


def _media_came_late(journal: Journal, disconnect_fid: str, media_fid: str) -> bool:
    """Whether the media message was journaled more than media_streams_wait after its disconnect: then
    the disconnect goes without it (docs/delivery.md, the media-stream cache), as it must (seen: a
    media message in transit at a broker kill -9, resent by its Publisher 1.15 s later)."""
    late = journal.accepted.get(media_fid, 0.0) - journal.accepted.get(disconnect_fid, 0.0)
    return late > MEDIA_STREAMS_WAIT


def _check_v1(
    v: SinkVerdict, first: dict[str, Post], published: Published, journal: Journal, timeline: list[Fault]
) -> None:
    media = unmerged = 0
    examples = []
    for p in first.values():
        for ev in p.events:
            name = ev.get("event")
            if name in ("participant_media_streams_destroyed", "participant_media_stream_window"):
                media += 1
            elif name == "participant_disconnected" and fid_of(ev):
                media_fid = published.media_of.get(ev["data"].get("uuid"))
                if ev["data"].get("media_streams") != [{"stream_id": media_fid}] and media_fid in journal.offsets:
                    if _media_came_late(journal, fid_of(ev), media_fid):
                        continue
                    unmerged += 1
                    examples.append(f"{fid_of(ev)} ({preceding(timeline, wall=ev.get('time', 0))})")
    if media:
        v.problems.append(f"{v.sink}: {media} media events delivered to a version 1 sink")
    if unmerged:
        v.problems.append(
            f"{v.sink}: {unmerged} participant_disconnected without their journaled media streams "
            f"merged in, e.g. {examples[:SHOW]}"
        )
