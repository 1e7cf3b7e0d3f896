"""`attempts` on the main loop (docs/control-api.md, `GET /v1/sinks/NAME/attempts?limit=N`).

Only the worker knows a sink's attempts (sinks/attempts.py keeps its last 1000),
so the answer comes later: `AttemptAsks` (held by agent/supervision/worker_reports.py) sends the
worker an `Attempts` with a fresh token over the supervisor link, keeps the
Future until the worker's `AttemptsAnswer` with that token arrives, and fails
it with 503 when that worker exits or is replaced first, or does not answer
within ANSWER_TIMEOUT (a timer of the supervisor's loop, not a tick). A
sink with no worker running has made no attempts since one started: [] at once.
"""

from __future__ import annotations

import itertools
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import msgspec

from agent.client.errors import CommandError
from agent.commands import attempts as command
from agent.commands.attempts import parse_limit
from agent.server.actions.unit import Action, sink_child
from agent.supervision.deadline import Deadline
from common.internal import worker_identity
from common.link import Attempts

ANSWER_TIMEOUT = 3.0  # s a worker gets to answer (well within the control server's 10 s)


@dataclass
class _Pending:
    future: Future
    sink: str
    handle: Any  # the worker process asked: its answer only counts while it is the sink's worker
    deadline: float


class AttemptAsks:
    """The `attempts` requests waiting for a worker's answer (token -> _Pending), on the main loop.

    The same for any other question a worker answers with a list (`deliveries`): ASK_TYPE is the
    command sent (token, limit), ITEMS the answer's field with the list."""

    def __init__(self, fleet: Any, clock: Any, ask_type: type = Attempts, items: str = "attempts") -> None:
        self.fleet = fleet  # its link, once bound, and its sinks
        self.clock = clock
        self.ask_type = ask_type
        self.items = items
        self._pending: dict[int, _Pending] = {}
        self._tokens = itertools.count(1)
        self._due = Deadline(fleet.schedule)  # the soonest answer due, as a timer of the loop

    def __len__(self) -> int:
        return len(self._pending)

    def ask(self, child: Any, limit: int) -> Future | list:
        """Ask CHILD's worker for its LIMIT most recent attempts: a Future of the list ([] without a worker)."""
        if child.handle is None:
            return []
        token = next(self._tokens)
        if not self.fleet.link.send(worker_identity(child.name), msgspec.to_builtins(self.ask_type(token, limit))):
            raise CommandError(503, f"the worker of sink {child.name} is not connected yet; try again")
        future: Future = Future()
        self._pending[token] = _Pending(future, child.name, child.handle, self.clock.monotonic() + ANSWER_TIMEOUT)
        self._due.set(self.deadline())
        return future

    def answered(self, identity: bytes, answer: Any) -> None:
        pending = self._pending.get(answer.token)
        if pending is None:
            return  # too late (it was failed at its deadline): nobody waits for it any more
        if identity != worker_identity(pending.sink) or answer.sink != pending.sink:
            self.fleet.link.note_bad(identity, f"{self.items} answer for token {answer.token} from another sink")
            return
        del self._pending[answer.token]
        self._due.set(self.deadline())
        pending.future.set_result([msgspec.to_builtins(a) for a in getattr(answer, self.items)])

    def deadline(self) -> float | None:
        return min((p.deadline for p in self._pending.values()), default=None)

    def expire(self, now: float) -> None:
        """Fail the requests whose worker has gone, or whose deadline has passed (503)."""
        for token, p in list(self._pending.items()):
            child = self.fleet.sinks.get(p.sink)
            if child is None or child.handle is not p.handle or p.handle.poll() is not None:
                why = f"the worker of sink {p.sink} exited before it answered; try again"
            elif now >= p.deadline:
                why = f"the worker of sink {p.sink} did not answer within {ANSWER_TIMEOUT:g} s; try again"
            else:
                continue
            del self._pending[token]
            p.future.set_exception(CommandError(503, why))
        self._due.set(self.deadline())


def attempts(supervisor: Any, params: dict[str, Any]) -> Future | list:
    """The sink's most recent POST attempts, newest first (later: the worker answers)."""
    child = sink_child(supervisor, params)
    try:
        limit = parse_limit(params.get("limit"))
    except ValueError as exc:
        raise CommandError(400, str(exc)) from None
    return supervisor.reports.attempts.ask(child, limit)


ATTEMPTS = Action(command.ATTEMPTS, attempts)
