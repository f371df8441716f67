"""Handlers that group (`@subscribe(..., grouped=True)`, `backbone/grouped.py`): the events a consumer
takes together are written in fewer transactions than events, and each event's outcome is the one it
would have had alone. Real RabbitMQ and the real MongoDB-protocol server.

A "gate" event whose work takes a while is published first: while it is being written, the events
published after it wait, so the groups they form are known."""
import eventlet
import pytest
from kombu import Connection
from pymongo.errors import AutoReconnect

from backbone import counters, topology
from backbone.database import Database
from backbone.events import make_envelope
from backbone.logs import Tracing
from backbone.outbox import ConfirmedPublisher, event_message
from backbone.subscriber import subscribe
from tests.helpers import settled, wait_for

WITHDRAWN = "offering_withdrawn"
GATE = "off-gate"

runs = []        # every run of a work, by offering id (a work aborted with its group runs again)
results = []     # (offering id, what its transaction returned to the handler)
poisoned = set()  # their work raises every time
blinking = set()  # their work raises once, as if the database blinked


class GroupedConsumer:
    name = "grouped_probe"
    db = Database()
    tracing = Tracing()

    @subscribe(WITHDRAWN, grouped=True)
    def on_withdrawn(self, event):
        offering_id = event["payload"]["offering_id"]

        def work(tx):
            runs.append(offering_id)
            if offering_id == GATE:
                eventlet.sleep(1)
            if offering_id in poisoned:
                raise RuntimeError("cannot handle {}".format(offering_id))
            if offering_id in blinking:
                blinking.discard(offering_id)
                raise AutoReconnect("the database blinked")
            tx.effects.insert_one({"offering_id": offering_id, "event_id": event["event_id"]})
            tx.emit("partner_onboarded", {"partner_id": offering_id, "code": "C", "name": "N", "kind": "university"})
            return "written " + offering_id

        results.append((offering_id, self.db.transaction(work)))


@pytest.fixture(autouse=True)
def probe_topology(app_config):
    with Connection(app_config["AMQP_URI"]) as connection:
        topology.delete_queues(connection, ["grouped_probe"])
        topology.declare(connection, topology.subscriptions([GroupedConsumer]))
    for kept in (runs, results, poisoned, blinking):
        kept.clear()


@pytest.fixture
def consumer(container_factory, app_config):
    container = container_factory(GroupedConsumer)
    container.start()
    return container


def envelope(offering_id, correlation_id=None):
    return make_envelope(WITHDRAWN, {"offering_id": offering_id, "partner_id": "p-1"}, "probe_producer",
                         correlation_id or "corr-" + offering_id)


def publish(app_config, envelopes):
    publisher = ConfirmedPublisher(app_config["AMQP_URI"])
    try:
        publisher.publish_batch([event_message(e, topology.exchange_name()) for e in envelopes])
    finally:
        publisher.close()


def groups():
    """(transactions written by grouped handlers, events in them) so far."""
    sample = counters.REGISTRY.get_sample_value
    return (sample("trainops_event_group_size_count", {"service": "grouped_probe"}) or 0,
            sample("trainops_event_group_size_sum", {"service": "grouped_probe"}) or 0)


def behind_the_gate(app_config, envelopes):
    """Publish the gate, and once its work is being written, `envelopes`: they wait together.
    Returns the gate's envelope."""
    gate = envelope(GATE)
    publish(app_config, [gate])
    wait_for(lambda: GATE in runs)
    publish(app_config, envelopes)
    return gate


def test_events_that_arrive_together_share_a_transaction_each_written_once_with_its_own_result(
        consumer, app_config, db):
    transactions, events = groups()
    nine = [envelope("off-{}".format(n)) for n in range(9)]  # the workers the gate leaves (10 in all)
    gate = behind_the_gate(app_config, nine)
    effects = db("grouped_probe").effects
    wait_for(lambda: effects.count_documents({}) == 10)

    # The gate alone, then the nine in two transactions (a group is at most half the workers).
    wait_for(lambda: groups() == (transactions + 3, events + 10))
    offerings = [GATE] + ["off-{}".format(n) for n in range(9)]
    assert sorted(effects.distinct("offering_id")) == sorted(offerings)
    assert effects.count_documents({}) == 10
    assert sorted(results) == sorted((o, "written " + o) for o in offerings)
    # Each event's handled record, as alone: its own id and correlation id.
    handled = db("grouped_probe").handled_events
    assert {h["_id"]: h["correlation_id"] for h in handled.find()} == {
        e["event_id"]: e["correlation_id"] for e in [gate] + nine}


def test_the_events_a_group_emits_carry_their_own_events_correlation_id(consumer, app_config, db):
    nine = [envelope("off-{}".format(n), "request-{}".format(n)) for n in range(9)]
    behind_the_gate(app_config, nine)
    published = db("grouped_probe").published_events
    wait_for(lambda: published.count_documents({}) == 10)
    emitted = {e["payload"]["partner_id"]: e["correlation_id"] for e in published.find()}
    assert emitted == dict({GATE: "corr-" + GATE}, **{"off-{}".format(n): "request-{}".format(n) for n in range(9)})


def test_many_events_at_once_take_fewer_transactions_than_events_and_each_is_written_once(consumer, app_config, db):
    transactions, events = groups()
    before = settled("grouped_probe", WITHDRAWN)
    many = [envelope("off-{}".format(n)) for n in range(200)]
    publish(app_config, many)
    wait_for(lambda: settled("grouped_probe", WITHDRAWN) - before == 200, timeout=60)
    effects = db("grouped_probe").effects
    assert effects.count_documents({}) == 200
    assert len(effects.distinct("offering_id")) == 200
    assert db("grouped_probe").handled_events.count_documents({}) == 200
    written, in_them = groups()
    assert in_them - events == 200
    assert written - transactions < 100, "200 events in {} transactions".format(written - transactions)


def test_a_failing_event_is_retried_and_dead_lettered_alone_while_the_rest_of_its_group_is_written(
        consumer, app_config, db):
    poisoned.add("off-bad")
    transactions, events = groups()
    behind_the_gate(app_config, [envelope("off-1"), envelope("off-bad"), envelope("off-2"), envelope("off-3")])
    effects = db("grouped_probe").effects
    wait_for(lambda: effects.count_documents({}) == 4)
    letter = wait_for(lambda: db("grouped_probe").dead_letters.find_one({}), timeout=30)
    assert "cannot handle off-bad" in letter["error"]
    assert letter["attempts"] == 4  # the first try and one per configured delay (3), as alone
    assert sorted(effects.distinct("offering_id")) == sorted([GATE, "off-1", "off-2", "off-3"])
    assert effects.count_documents({}) == 4
    # The group of four failed and was written nowhere: its three good events went alone.
    assert groups() == (transactions + 4, events + 4)
    assert runs.count("off-1") == 2 and runs.count("off-bad") == 5  # the group's try, then alone
    assert db("grouped_probe").handled_events.count_documents({}) == 4
    assert not db("grouped_probe").handled_events.find_one({"correlation_id": "corr-off-bad"})


def test_an_event_delivered_twice_in_one_group_has_one_effect_and_a_later_repeat_none(consumer, app_config, db):
    twice = envelope("off-7")
    before = settled("grouped_probe", WITHDRAWN)
    duplicates = counters.EVENTS_DUPLICATE.labels("grouped_probe", WITHDRAWN)._value.get()
    behind_the_gate(app_config, [twice, twice, envelope("off-8")])
    wait_for(lambda: settled("grouped_probe", WITHDRAWN) - before == 4)
    effects = db("grouped_probe").effects
    assert effects.count_documents({"offering_id": "off-7"}) == 1
    assert effects.count_documents({"offering_id": "off-8"}) == 1
    # The group met the handled record of its own first copy: each went alone, the copy AlreadyHandled.
    assert counters.EVENTS_DUPLICATE.labels("grouped_probe", WITHDRAWN)._value.get() == duplicates + 1
    assert runs.count("off-8") == 2  # in the group, then alone
    assert db("grouped_probe").dead_letters.count_documents({}) == 0

    publish(app_config, [twice])
    wait_for(lambda: settled("grouped_probe", WITHDRAWN) - before == 5)
    assert effects.count_documents({"offering_id": "off-7"}) == 1
    assert counters.EVENTS_DUPLICATE.labels("grouped_probe", WITHDRAWN)._value.get() == duplicates + 2


def test_a_group_the_database_refuses_once_is_written_alone_without_a_retry(consumer, app_config, db):
    blinking.add("off-2")
    retried = counters.EVENTS_RETRIED.labels("grouped_probe", WITHDRAWN)._value.get()
    transactions, events = groups()
    behind_the_gate(app_config, [envelope("off-1"), envelope("off-2"), envelope("off-3")])
    effects = db("grouped_probe").effects
    wait_for(lambda: effects.count_documents({}) == 4)
    wait_for(lambda: groups() == (transactions + 4, events + 4))
    assert counters.EVENTS_RETRIED.labels("grouped_probe", WITHDRAWN)._value.get() == retried
    assert sorted(effects.distinct("offering_id")) == sorted([GATE, "off-1", "off-2", "off-3"])
    assert db("grouped_probe").handled_events.count_documents({}) == 4


def test_a_lone_event_waits_for_nothing_and_is_written_alone(consumer, app_config, db):
    transactions, events = groups()
    publish(app_config, [envelope("off-1")])
    wait_for(lambda: db("grouped_probe").effects.count_documents({}) == 1)
    wait_for(lambda: groups() == (transactions + 1, events + 1))
    assert runs == ["off-1"]
