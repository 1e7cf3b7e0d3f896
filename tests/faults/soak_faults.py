"""The soak's faults: a schedule drawn from the seed, their injection, and the timeline.

Owns `schedule` (the seed's list of faults: every kind once in a shuffled
first pass, then random kinds, each with its target sink, its length for the
receiver faults, and the pause before it), `Injector` (applies them to a
`SoakRig`, heals receiver faults when their time is up, restarts a sink whose
Maximum Backoff alarm stopped it) and `Fault`, one entry of the timeline the
oracle reads to say which fault preceded a problem.

The timing of faults is the soak's load, not synchronisation: the injector
waits for each agent fault to be over (a new broker, a new worker, all sinks
running again) by polling with deadlines before it goes on.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from dataclasses import dataclass, field

from tests.faults.soak_rig import DEAD_LETTER_SINK, RESPONSE_TIMEOUT, SINKS, SoakRig
from tests.helpers import wait_until

AGENT_FAULTS = ("kill_broker", "kill_worker", "kill_agent", "sigterm", "reload", "replay", "redrive")
RECEIVER_FAULTS = ("http_500", "http_503_retry_after", "http_413", "http_400_some", "timeout", "reset", "go_away")
KINDS = AGENT_FAULTS + RECEIVER_FAULTS
# Faults whose requests may reach the receiver while the answer never reaches the agent: the
# receiver has the event, the agent retries it, the receiver sees it again (a legitimate duplicate).
ANSWER_LOST = ("timeout", "reset", "go_away")
# Faults after which the agent is not subscribed for a while: what a bare PUB sends then may be lost.
UNSUBSCRIBING = ("kill_broker", "kill_agent", "sigterm")
ALL_WORKERS = ("kill_broker", "kill_agent", "sigterm")  # faults that (may) start every worker anew
REPLAY_SINCE = "20s"
STALL = 3 * RESPONSE_TIMEOUT  # s a "timeout" receiver holds each answer: well past response_timeout
RECOVERY_TIMEOUT = 90.0  # s an agent fault may take to be over on a slow machine


@dataclass
class Fault:
    """One fault as it happened: what, on which sink (None: the whole agent), when it began and ended."""

    kind: str
    sink: str | None
    start: float  # time.monotonic()
    wall: float  # time.time() at start
    end: float = 0.0  # monotonic: healed (receiver faults) or recovered from (agent faults)
    wall_end: float = 0.0
    detail: str = ""

    def restarts(self, name: str) -> bool:
        """Whether this fault (may have) started sink NAME's worker or publisher anew."""
        return self.kind in ALL_WORKERS or (
            self.sink == name and self.kind in ("kill_worker", "reload", "replay", "alarm_restart")
        )

    def label(self) -> str:
        where = f" {self.sink}" if self.sink else ""
        return f"{self.kind}{where} at {time.strftime('%H:%M:%S', time.gmtime(self.wall))}.{int(self.wall * 10) % 10}"


@dataclass
class Planned:
    kind: str
    sink: str | None
    pause: float  # s after the previous fault began
    length: float  # s a receiver fault lasts


def schedule(seed: int, seconds: float) -> list[Planned]:
    """The seed's faults for a run of SECONDS: every kind once first (shuffled), then random kinds."""
    rng = random.Random(seed)
    mean_gap = min(6.0, seconds / (1.3 * len(KINDS)))
    first = list(KINDS)
    rng.shuffle(first)
    plan, elapsed = [], 0.0
    while True:
        kind = first.pop() if first else rng.choice(KINDS)
        pause = rng.uniform(0.5, 1.5) * mean_gap
        elapsed += pause
        if elapsed > seconds:
            return plan
        target = None
        if kind in RECEIVER_FAULTS or kind in ("kill_worker", "reload", "replay"):
            target = DEAD_LETTER_SINK if kind == "http_400_some" else rng.choice(sorted(SINKS))
        if kind == "redrive":
            target = DEAD_LETTER_SINK
        plan.append(Planned(kind, target, pause, rng.uniform(1.0, 5.0)))


def _refuse_some(envelope: dict) -> int | None:
    """400 for one event in five (by fid): a receiver whose schema refuses some events."""
    inner = envelope["data"] if envelope.get("event") == "eventsink_bulk" else [envelope]
    for ev in inner:
        fid = ev.get("data", {}).get("fid", "") if isinstance(ev.get("data"), dict) else ""
        if fid and fid.rpartition("-")[2].isdigit() and int(fid.rpartition("-")[2]) % 5 == 0:
            return 400
    return None


@dataclass
class Injector:
    rig: SoakRig
    timeline: list[Fault] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # faults that could not be applied, and why
    _healing: dict = field(default_factory=dict)  # sink -> (heal at, its Fault)

    def run(self, plan: list[Planned], until: float) -> None:
        """Apply PLAN in order, each after its pause, until the monotonic time UNTIL; heal all after."""
        due = time.monotonic()
        for planned in plan:
            due += planned.pause
            while time.monotonic() < min(due, until):
                self.tick()
                time.sleep(0.05)  # fault timing: the pause between two faults
            if time.monotonic() >= until:
                break
            self.apply(planned)
        self.heal_all()

    def tick(self) -> None:
        now = time.monotonic()
        for name, (at, _) in list(self._healing.items()):
            if now >= at:
                self.heal(name)

    def heal(self, name: str) -> None:
        _, fault = self._healing.pop(name, (0, None))
        self.rig.heal(name)
        if fault is not None:
            fault.end, fault.wall_end = SoakRig.now()

    def heal_all(self) -> None:
        for name in list(self._healing):
            self.heal(name)
        for name in SINKS:
            self.rig.heal(name)

    def apply(self, planned: Planned) -> None:
        fault = Fault(planned.kind, planned.sink, *SoakRig.now())
        self.timeline.append(fault)
        try:
            if planned.kind in RECEIVER_FAULTS:
                self._receiver_fault(fault, planned.length)
            else:
                getattr(self, "_" + planned.kind)(fault)
                fault.end, fault.wall_end = SoakRig.now()
            self.restart_alarmed()
        except (AssertionError, OSError, KeyError, StopIteration, TypeError, ValueError) as exc:
            self.errors.append(f"{fault.label()}: {type(exc).__name__}: {str(exc)[:300]}")
            fault.detail += " (failed)"
            fault.end, fault.wall_end = SoakRig.now()

    # receiver faults ------------------------------------------------------------------------
    def _receiver_fault(self, fault: Fault, length: float) -> None:
        name = fault.sink
        if name in self._healing:
            self.heal(name)
        rx, px = self.rig.receivers[name], self.rig.proxies[name]
        if fault.kind == "http_500":
            rx.respond(500)
        elif fault.kind == "http_503_retry_after":
            rx.respond(503, {"Retry-After": "1"})
        elif fault.kind == "http_413":
            rx.respond(413)
        elif fault.kind == "http_400_some":
            rx.reject_events(_refuse_some)
        elif fault.kind == "timeout":
            rx.respond(200, delay=STALL)
        elif fault.kind == "reset":
            px.mode = "reset"
        elif fault.kind == "go_away":
            px.refuse()
        fault.detail = f"for {length:.1f}s"
        self._healing[name] = (time.monotonic() + length, fault)

    # agent faults ---------------------------------------------------------------------------
    def _kill_broker(self, fault: Fault) -> None:
        pid = wait_until(lambda: self.rig.agent.status()["bus"]["broker_pid"], RECOVERY_TIMEOUT, what="a broker")
        os.kill(pid, signal.SIGKILL)
        wait_until(
            lambda: self.rig.agent.status()["bus"]["broker_pid"] not in (None, pid),
            RECOVERY_TIMEOUT,
            interval=0.1,
            what="a new broker",
        )
        self.rig.wait_agent_running(RECOVERY_TIMEOUT)

    def _kill_worker(self, fault: Fault) -> None:
        pid = wait_until(
            lambda: self.rig.agent.sink_status(fault.sink)["pid"], RECOVERY_TIMEOUT, what=f"a worker for {fault.sink}"
        )
        os.kill(pid, signal.SIGKILL)
        wait_until(
            lambda: self.rig.agent.sink_status(fault.sink)["pid"] not in (None, pid),
            RECOVERY_TIMEOUT,
            interval=0.1,
            what=f"a new worker for {fault.sink}",
        )
        self.rig.wait_agent_running(RECOVERY_TIMEOUT)

    def _kill_agent(self, fault: Fault) -> None:
        self.rig.agent.kill_group()
        self.rig.agent.start(wait=False)
        self.rig.wait_agent_running(RECOVERY_TIMEOUT)

    def _sigterm(self, fault: Fault) -> None:
        code = self.rig.agent.stop(signal.SIGTERM, timeout=RECOVERY_TIMEOUT)
        fault.detail = f"exit {code}"
        if code != 0:
            self.errors.append(f"{fault.label()}: the graceful stop exited {code}, not 0")
        self.rig.agent.start(wait=False)
        self.rig.wait_agent_running(RECOVERY_TIMEOUT)

    def _reload(self, fault: Fault) -> None:
        generation = self.rig.rewrite_config(fault.sink)
        self._ctl(fault, "reload")
        fault.detail = f"{fault.sink} header generation {generation}"

    def _replay(self, fault: Fault) -> None:
        answer = self._ctl(fault, "replay", fault.sink, "--since", REPLAY_SINCE)
        fault.detail = f"{answer.get('events')} events since {REPLAY_SINCE}"

    def _redrive(self, fault: Fault) -> None:
        fault.detail = f"{self._ctl(fault, 'redrive', fault.sink).get('redriven')} redriven"

    def _ctl(self, fault: Fault, *args: str) -> dict:
        done = self.rig.agent.ctl(*args, "--json")
        if done.returncode != 0:
            raise AssertionError(f"eventsinkctl {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
        return json.loads(done.stdout or "{}")

    def restart_alarmed(self) -> None:
        """A sink its Maximum Backoff (or any) alarm stopped is restarted, as an operator would."""
        for s in self.rig.agent.status()["sinks"]:
            if s["alarms"]:
                fault = Fault("alarm_restart", s["name"], *SoakRig.now(), detail=",".join(map(str, s["alarms"])))
                self.timeline.append(fault)
                self._ctl(fault, "restart", s["name"])
                fault.end, fault.wall_end = SoakRig.now()
