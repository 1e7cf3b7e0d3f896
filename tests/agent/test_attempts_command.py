"""`attempts` as one unit, on a supervisor with fakes (tests/agent/supervisor_fakes.py):
the worker is asked over the (recording) link, its answer resolves the request,
and a worker that is missing, gone, unreachable or too slow gives [] or 503."""

from __future__ import annotations

import concurrent.futures

import pytest
from jsonschema import Draft202012Validator

from agent.client import ctl
from agent.client.errors import CommandError
from agent.commands.attempts import DEFAULT_LIMIT, MAX_LIMIT, parse_limit
from agent.server.actions.attempts import ANSWER_TIMEOUT
from agent.server.actions.registry import ATTEMPTS, openapi_document
from agent.server.openapi import RESPONSE_SCHEMAS
from common.internal import worker_identity
from tests.agent.supervisor_fakes import Rig

ENTRY = {
    "at": "2025-11-26T19:40:00.250Z",
    "seq": 1,
    "events": 1,
    "webhook_id": "e-cdr-started-1",
    "outcome": "http_error",
    "status": 500,
    "duration": 0.012,
    "detail": "HTTP 500 Internal Server Error",
}


@pytest.fixture
def rig():
    with Rig(sinks=(("cdr", "Oslo", 2), ("siem", "Oslo", 1))) as r:
        yield r.start()


def asked(rig, sink: str = "cdr") -> dict:
    return rig.link.to(sink, "attempts")[-1]


def answer(rig, token: int, entries: list, sink: str = "cdr", identity: bytes | None = None) -> None:
    msg = {"type": "attempts_answer", "token": token, "sink": sink, "attempts": entries}
    rig.link.inbox.append((identity or worker_identity(sink), msg))
    rig.step()


def test_the_worker_is_asked_and_its_answer_is_the_result(rig):
    future = ATTEMPTS.run(rig.sup, {"sink": "cdr", "limit": "2"})
    assert isinstance(future, concurrent.futures.Future) and not future.done()
    ask = asked(rig)
    assert ask["limit"] == 2 and isinstance(ask["token"], int)
    success = {**ENTRY, "seq": 2, "outcome": "success", "status": 200, "detail": "HTTP 200"}
    answer(rig, ask["token"], [success, ENTRY])
    assert future.result(timeout=0) == [success, ENTRY]
    Draft202012Validator({**RESPONSE_SCHEMAS["attempts"], "components": openapi_document()["components"]}).validate(
        future.result()
    )
    assert len(rig.sup.reports.attempts) == 0


def test_through_the_request_queue_the_answer_comes_later(rig):
    future = rig.sup.request("attempts", sink="cdr")
    rig.step()
    assert not future.done() and asked(rig)["limit"] == DEFAULT_LIMIT
    answer(rig, asked(rig)["token"], [])
    assert future.result(timeout=0) == []


def test_limit_is_clamped_and_validated():
    assert parse_limit(None) == DEFAULT_LIMIT
    assert parse_limit("1") == 1 and parse_limit("0050") == 50
    assert parse_limit("1001") == MAX_LIMIT and parse_limit("9" * 5000) == MAX_LIMIT
    for bad in ("", "0", "-1", "1.5", "abc", " 5", "1e3", "٣", "+5", "0" * 30):
        with pytest.raises(ValueError, match="whole number of at least 1"):
            parse_limit(bad)


def test_a_bad_limit_is_400_and_an_unknown_sink_404(rig):
    with pytest.raises(CommandError) as exc:
        ATTEMPTS.run(rig.sup, {"sink": "cdr", "limit": "lots"})
    assert exc.value.status == 400 and "limit" in exc.value.message
    ATTEMPTS.run(rig.sup, {"sink": "cdr", "limit": "5000"})
    assert asked(rig)["limit"] == MAX_LIMIT
    with pytest.raises(CommandError) as exc:
        ATTEMPTS.run(rig.sup, {"sink": "nope"})
    assert exc.value.status == 404


def test_no_worker_running_is_an_empty_answer_at_once(rig):
    rig.launcher.current("cdr").exit(1)
    rig.step()
    assert rig.slot("cdr").handle is None
    assert ATTEMPTS.run(rig.sup, {"sink": "cdr"}) == []
    assert rig.link.to("cdr", "attempts") == []


def test_a_worker_that_is_not_connected_is_503(rig):
    rig.link.unreachable.add(worker_identity("cdr"))
    with pytest.raises(CommandError) as exc:
        ATTEMPTS.run(rig.sup, {"sink": "cdr"})
    assert exc.value.status == 503 and "not connected" in exc.value.message


def test_no_answer_by_the_deadline_is_503_and_the_loop_wakes_for_it(rig):
    future = ATTEMPTS.run(rig.sup, {"sink": "cdr"})
    assert rig.sup.time_to_next_deadline() == pytest.approx(ANSWER_TIMEOUT)  # a deadline, not a tick
    rig.clock.advance(ANSWER_TIMEOUT - 0.01)
    rig.step()
    assert not future.done()
    rig.clock.advance(0.01)
    rig.step()
    with pytest.raises(CommandError) as exc:
        future.result(timeout=0)
    assert exc.value.status == 503 and "did not answer" in exc.value.message
    answer(rig, asked(rig)["token"], [ENTRY])  # too late: nobody waits for it, nothing breaks
    assert rig.sup.time_to_next_deadline() is None or rig.sup.time_to_next_deadline() > 0


def test_a_worker_that_exits_before_answering_is_503(rig):
    future = ATTEMPTS.run(rig.sup, {"sink": "cdr"})
    rig.launcher.current("cdr").exit(1)
    rig.step()
    with pytest.raises(CommandError) as exc:
        future.result(timeout=0)
    assert exc.value.status == 503 and "exited" in exc.value.message


def test_a_restart_before_the_answer_is_503(rig):
    future = ATTEMPTS.run(rig.sup, {"sink": "cdr"})
    rig.ask("restart", sink="cdr")
    with pytest.raises(CommandError) as exc:
        future.result(timeout=0)
    assert exc.value.status == 503


def test_an_answer_from_another_sink_or_token_is_ignored(rig):
    future = ATTEMPTS.run(rig.sup, {"sink": "cdr"})
    token = asked(rig)["token"]
    bad_before = rig.link.bad_messages
    answer(rig, token, [ENTRY], sink="siem")
    answer(rig, token + 100, [ENTRY])
    assert not future.done() and rig.link.bad_messages == bad_before + 1
    answer(rig, token, [{"seq": "not a number"}])  # malformed: counted as bad, the request still waits
    assert not future.done() and rig.link.bad_messages == bad_before + 2
    answer(rig, token, [ENTRY])
    assert future.result(timeout=0) == [ENTRY]


def test_render_is_a_table_newest_first_or_no_attempts_yet():
    success = {**ENTRY, "seq": 2, "outcome": "success", "status": 200, "detail": "HTTP 200", "duration": 1.5}
    timeout = {**ENTRY, "outcome": "timeout", "status": None, "detail": "no answer within 5 s"}
    lines = ATTEMPTS.command.render([success, timeout]).splitlines()
    assert lines[0].split() == ["TIME", "SEQ", "EVENTS", "WEBHOOK-ID", "OUTCOME", "STATUS", "DURATION", "DETAIL"]
    assert lines[1].split()[:7] == [ENTRY["at"], "2", "1", "e-cdr-started-1", "success", "200", "1.50s"]
    assert lines[2].split()[4:7] == ["timeout", "-", "12.0ms"] and lines[2].endswith("no answer within 5 s")
    assert ATTEMPTS.command.render([]) == "no attempts yet"


def test_a_bad_limit_on_the_command_line_is_one_plain_line_and_exit_1(capsys, tmp_path):
    for bad in ("x", "0", "-3"):
        code = ctl.main(["--socket", str(tmp_path / "none.sock"), "attempts", "cdr", "--limit", bad])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1 and err[0].startswith("eventsinkctl: --limit must be a whole number")
    # a good one gets as far as the (absent) agent
    assert ctl.main(["--socket", str(tmp_path / "none.sock"), "attempts", "cdr", "--limit", "5000"]) == 3
