"""The broker's received counter across a kill -9: events the dead broker journaled after
its last report are still counted (the fault suite's broker test found them missing)."""

from agent.supervision.child import BrokerChild as BrokerSlot
from common.link import BrokerReport


class Handle:
    def __init__(self, pid):
        self.pid = pid


def report(pid, received, head):
    return BrokerReport(type="report", role="broker", pid=pid, received=received, head=head)


def test_events_journaled_after_the_last_report_of_a_killed_broker_are_counted():
    slot = BrokerSlot()
    slot.attach(Handle(1), 0.0)
    assert slot.take_report(report(1, 0, 40))  # 40 from earlier runs: not this run's
    assert slot.take_report(report(1, 100, 140))
    slot.detach()  # killed: it journaled up to 175 before dying, unreported
    slot.attach(Handle(2), 1.0)
    assert slot.take_report(report(2, 10, 185))  # started at head 175
    assert slot.received == 100 + 35 + 10
    assert slot.take_report(report(2, 20, 195))  # later reports add nothing twice
    assert slot.received == 155


def test_a_stale_report_of_another_pid_changes_nothing():
    slot = BrokerSlot()
    slot.attach(Handle(1), 0.0)
    assert slot.take_report(report(1, 5, 5))
    assert not slot.take_report(report(9, 50, 500))
    assert slot.received == 5 and slot.last_head == 5
