"""Fixtures of the console's tests: one real agent with its console per module
(starting one costs seconds; the tests of a module share it and leave it as they
found it), with secrets in its sinks' config for the leak searches."""

import os

import pytest

from tests.console.harness import ConsoleAgent
from tests.e2e.harness import sink
from tools.receiver import Receiver

SINK_PASSWORD = "sinkpass-c0ns0le-81f"
URL_PASSWORD = "urlpass-c0ns0le-27d"
HEADER_VALUE = "hdrval-c0ns0le-9a4"
SECRET = "whsec_Y29uc29sZS1zaWduaW5nLWtleS0xMjM0NTY3OA=="
SECRETS = (SINK_PASSWORD, URL_PASSWORD, HEADER_VALUE, SECRET, SECRET.removeprefix("whsec_"))


@pytest.fixture(scope="module")
def receiver():
    with Receiver(username="alice", password=SINK_PASSWORD, secret=SECRET) as r:
        yield r


@pytest.fixture(scope="module")
def plain_receiver():
    with Receiver() as r:
        yield r


POISON = "poison"


def refuse_poison(envelope: dict) -> int | None:
    """400 for an event whose tag starts with POISON (a dead letter after dead_letter_after = 1)."""
    inner = envelope["data"] if envelope.get("event") == "eventsink_bulk" else [envelope]
    tags = [e["data"].get("tag", "") for e in inner if isinstance(e.get("data"), dict)]
    return 400 if any(str(t).startswith(POISON) for t in tags) else None


@pytest.fixture(scope="module")
def poison_receiver():
    with Receiver() as r:
        r.reject_events(refuse_poison)
        yield r


@pytest.fixture(scope="module")
def agent(receiver, plain_receiver, poison_receiver):
    a = ConsoleAgent(
        [
            sink(
                "cdr",
                receiver.url,
                description="CDR collector <script>alert(1)</script>",
                username="alice",
                password=SINK_PASSWORD,
                secret=SECRET,
                headers={"X-Api-Key": HEADER_VALUE},
            ),
            sink(
                "siem",
                plain_receiver.url.replace("http://", f"http://bob:{URL_PASSWORD}@"),
                description="SIEM",
                version=1,
            ),
            sink("dl", poison_receiver.url, description="refuses poison", dead_letter_after=1),
        ],
        tuning={"initial_retry_backoff": 0.25},
    )
    try:
        a.start()
        a.wait_console()
        yield a
    except BaseException:
        print(f"--- agent log ({a.base}) ---\n{a.log()[-6000:]}")
        raise
    finally:
        a.cleanup()


@pytest.fixture(scope="module")
def shots(request):
    """Where this module's screenshots go (ignored by git): tests/console/screenshots/."""
    path = os.path.join(os.path.dirname(__file__), "screenshots")
    os.makedirs(path, exist_ok=True)
    return path
