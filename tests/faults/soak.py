"""The chaos soak: `make soak` (`python -m tests.faults.soak`), and its 60-second run in tests/faults/test_soak.py.

Owns `run_soak`: starts the rig (tests/faults/soak_rig.py: a real agent,
four sinks, their receivers), two `Publisher` clients and one bare PUB at a
modest bounded rate, applies the seed's faults (tests/faults/soak_faults.py)
for SECONDS, then heals every receiver, redrives every dead letter, lets the
agent drain (polled with a deadline), stops it gracefully and asks the oracle
(tests/faults/soak_oracle.py) about every sink. Prints the seed first and in
the summary, so `SOAK_SEED=N make soak` replays the same schedule of faults
(their exact moments differ with the machine's speed).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.faults.soak_faults import DEAD_LETTER_SINK, Injector, schedule
from tests.faults.soak_oracle import Journal, Published, agent_failures, dump_posts, judge_sink
from tests.faults.soak_rig import SINKS, SoakRig

PUBLISHERS = (("p1", "publisher", 20.0), ("p2", "publisher", 20.0), ("bare", "pub", 10.0))  # prefix, client, events/s
QUIET_POLLS = 4  # drained: backlog and in flight 0 and the receivers unchanged over this many polls ...
POLL = 1.0  # ... this many seconds apart
STOP_TIMEOUT = 90.0  # s the final graceful stop may take


@dataclass
class SoakResult:
    seed: int
    seconds: float
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def drained(rig: SoakRig, injector: Injector, deadline: float) -> bool:
    """Poll until every sink is empty and quiet (alarmed sinks restarted, dead letters redriven) or DEADLINE."""
    quiet, before = 0, None
    while time.monotonic() < deadline:
        try:
            injector.restart_alarmed()
            sinks = rig.agent.status()["sinks"]
            if any(s["name"] == DEAD_LETTER_SINK and s.get("dead_letters") for s in sinks):
                rig.agent.ctl("redrive", DEAD_LETTER_SINK)
            counts = [len(rx.requests) for rx in rig.receivers.values()]
            empty = all(s["backlog"] == 0 and s["in_flight"] == 0 and not s.get("dead_letters") for s in sinks)
            quiet = quiet + 1 if empty and counts == before else 0
            before = counts
            if quiet >= QUIET_POLLS:
                return True
        except (AssertionError, OSError, ValueError, KeyError):
            quiet = 0  # the agent is busy or restarting a sink: poll again
        time.sleep(POLL)
    return False


def summary(result: SoakResult, injector: Injector, rig: SoakRig, verdicts: list) -> None:
    out = result.lines
    kinds = Counter(f.kind for f in injector.timeline)
    out.append(
        f"soak seed={result.seed} seconds={result.seconds:g} faults={sum(kinds.values())}: "
        + " ".join(f"{k}={n}" for k, n in sorted(kinds.items()))
    )
    for p in rig.publishers:
        extra = {k: p.result.get(k) for k in ("pending", "dropped", "error") if p.result and p.result.get(k)}
        out.append(f"published {p.prefix} ({p.client}): {p.sent} {extra or ''}".rstrip())
    set_aside = rig.agent.log().count("set aside as a dead letter")
    out.append(f"dead letters set aside on {DEAD_LETTER_SINK}: {set_aside}; the drain redrives any left")
    out += [v.line() for v in verdicts]
    for v in verdicts:
        out += [f"note: {n}" for n in v.notes]
    out += [f"fault not applied: {e}" for e in injector.errors]
    out += [f"PROBLEM: {p}" for p in result.problems]
    out.append(
        f"soak {'FAILED' if result.problems else 'passed'}: seed={result.seed} "
        f"(replay: SOAK_SEED={result.seed} SOAK_SECONDS={result.seconds:g} make soak)"
    )


def run_soak(seconds: float, seed: int, say=print) -> SoakResult:
    result = SoakResult(seed, seconds)
    say(f"soak: seed={seed} seconds={seconds:g}")
    base = tempfile.mkdtemp(prefix="esa-soak-", dir="/tmp")
    rig = SoakRig(base)
    injector = Injector(rig)
    try:
        rig.agent.start()
        for prefix, client, rate in PUBLISHERS:
            rig.start_publisher(prefix, client, int(rate * seconds), rate)
        plan = schedule(seed, seconds)
        say(f"soak: {len(plan)} faults planned, first: {[p.kind for p in plan[:5]]}")
        injector.run(plan, until=time.monotonic() + seconds)
        _finish(rig, injector, result, seconds)
        verdicts = _judge(rig, injector, result)
        summary(result, injector, rig, verdicts)
    except BaseException as exc:
        result.problems.append(f"the soak itself failed: {type(exc).__name__}: {exc}")
        summary(result, injector, rig, [])
        raise
    finally:
        rig.close()
        for line in result.lines:
            say(line)
        if result.problems:
            _write_timeline(os.path.join(base, "timeline.txt"), injector)
            for name, receiver in rig.receivers.items():
                dump_posts(os.path.join(base, f"posts-{name}.jsonl"), receiver)
            say(f"soak: agent log, journal and fault timeline kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return result


def _write_timeline(path: str, injector: Injector) -> None:
    with open(path, "w") as fh:
        for f in injector.timeline:
            fh.write(f"t={f.start:.3f} {f.label()} for {f.end - f.start:.2f}s {f.detail}\n")


def _finish(rig: SoakRig, injector: Injector, result: SoakResult, seconds: float) -> None:
    """Heal, make sure the agent runs, let the publishers flush, drain, stop gracefully."""
    injector.heal_all()
    if rig.agent.proc.poll() is not None:
        result.problems.append(f"the agent had exited ({rig.agent.proc.returncode}) when the faults ended")
        rig.agent.start()
    rig.wait_agent_running()
    rig.wait_publishers(timeout=180)
    if not drained(rig, injector, time.monotonic() + max(180.0, seconds / 2)):
        result.problems.append("the agent did not drain (backlog, in flight or dead letters left) within the deadline")
    code = rig.agent.stop(signal.SIGTERM, timeout=STOP_TIMEOUT)
    if code != 0:
        result.problems.append(f"the final graceful stop exited {code}, not 0")


def _judge(rig: SoakRig, injector: Injector, result: SoakResult) -> list:
    journal = Journal.read(rig.agent.journal_path)
    published = Published()
    for p in rig.publishers:
        published.add(p.prefix, p.client, p.sent or 0)
    failures = agent_failures(rig.agent.log(), time.time() - time.monotonic())
    verdicts = []
    for name, table in SINKS.items():
        v = judge_sink(
            name,
            table.get("version", 2),
            table["max_in_flight"],
            rig.receivers[name],
            published,
            journal,
            injector.timeline,
            rig.generation[name],
            failures.get(name, []),
        )
        verdicts.append(v)
        result.problems += v.problems
    return verdicts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.faults.soak", description="the chaos soak and its oracle")
    p.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS") or 600))
    p.add_argument("--seed", type=int, default=int(os.environ["SOAK_SEED"]) if os.environ.get("SOAK_SEED") else None)
    a = p.parse_args(argv)
    seed = a.seed if a.seed is not None else random.randrange(1 << 31)
    result = run_soak(a.seconds, seed, say=lambda line: print(line, flush=True))
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
