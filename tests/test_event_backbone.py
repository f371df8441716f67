"""The event backbone's promises, proven with real RabbitMQ and a real MongoDB-protocol server:
outbox + relay, durable subscriptions, idempotent consumers, retry with backoff and dead letters."""
import json
import time

import eventlet
import pytest
from kombu import Connection
from nameko.rpc import rpc
from nameko.testing.services import entrypoint_hook

from backbone import rpc as backbone_rpc
from backbone import topology
from backbone.logs import Tracing
from backbone.database import Database
from backbone.outbox import ConfirmedPublisher, emitted_events, event_message
from backbone.events import make_envelope
from backbone.subscriber import subscribe
from ops.rpcs import replay_dead_letter
from tests.helpers import settled, wait_for

WITHDRAWN = "offering_withdrawn"


def withdrawn_payload(n):
    return {"offering_id": "off-{}".format(n), "partner_id": "p-1", "reason": "test {}".format(n)}


class Producer:
    name = "probe_producer"
    db = Database()
    tracing = Tracing()

    @rpc
    def withdraw(self, n):
        def work(tx):
            tx.offerings.insert_one({"_id": "off-{}".format(n), "status": "withdrawn"})
            tx.emit(WITHDRAWN, withdrawn_payload(n))
        self.db.transaction(work)

    @rpc
    def withdraw_many(self, start, count):
        def work(tx):
            for n in range(start, start + count):
                tx.emit(WITHDRAWN, withdrawn_payload(n))
        self.db.transaction(work)


attempt_times = []
poisoned = set()
slow = {"seconds": 0}


class Consumer:
    name = "probe_consumer"
    db = Database()
    tracing = Tracing()

    @subscribe(WITHDRAWN)
    def on_withdrawn(self, event):
        offering_id = event["payload"]["offering_id"]
        if offering_id in poisoned:
            attempt_times.append(time.monotonic())
            raise RuntimeError("cannot handle {}".format(offering_id))
        eventlet.sleep(slow["seconds"])
        self.db.transaction(lambda tx: tx.effects.insert_one(
            {"offering_id": offering_id, "event_id": event["event_id"]}))


@pytest.fixture(autouse=True)
def probe_topology(app_config):
    """The probe consumer's queues, declared before anything publishes (as deploy does), and empty."""
    with Connection(app_config["AMQP_URI"]) as connection:
        topology.delete_queues(connection, ["probe_consumer"])
        topology.declare(connection, topology.subscriptions([Consumer]))
    attempt_times.clear()
    poisoned.clear()
    slow["seconds"] = 0


def publish_raw(app_config, messages):
    publisher = ConfirmedPublisher(app_config["AMQP_URI"])
    try:
        publisher.publish_batch(messages)
    finally:
        publisher.close()


def test_events_published_while_the_consumer_is_down_are_all_handled_once_it_returns(
        container_factory, app_config, db):
    producer = container_factory(Producer)
    producer.start()
    with entrypoint_hook(producer, "withdraw_many") as withdraw_many:
        for start in range(0, 500, 50):
            withdraw_many(start, 50)
    published = db("probe_producer").published_events
    wait_for(lambda: published.count_documents({}) == 500)

    before = settled("probe_consumer", WITHDRAWN)
    consumer = container_factory(Consumer)
    consumer.start()
    effects = db("probe_consumer").effects
    wait_for(lambda: settled("probe_consumer", WITHDRAWN) - before >= 500, timeout=90)
    assert effects.count_documents({}) == 500
    assert len(effects.distinct("offering_id")) == 500


def test_the_same_event_delivered_twice_has_one_effect(container_factory, app_config, db):
    consumer = container_factory(Consumer)
    consumer.start()
    envelope = make_envelope(WITHDRAWN, withdrawn_payload(7), "probe_producer", "corr-1")
    message = event_message(envelope, topology.exchange_name())
    before = settled("probe_consumer", WITHDRAWN)
    publish_raw(app_config, [message, message])
    effects = db("probe_consumer").effects
    wait_for(lambda: db("probe_consumer").handled_events.count_documents({}) == 1)
    publish_raw(app_config, [message])
    wait_for(lambda: settled("probe_consumer", WITHDRAWN) - before == 3)
    assert effects.count_documents({"offering_id": "off-7"}) == 1


def test_a_failing_handler_is_retried_with_growing_delays_then_dead_lettered_while_others_flow(
        container_factory, app_config, db):
    delays = [0.5, 1.5, 3.0]
    app_config["EVENTS"]["retry_delays"] = delays
    poisoned.add("off-bad")
    consumer = container_factory(Consumer)
    consumer.start()
    bad = make_envelope(WITHDRAWN, {"offering_id": "off-bad", "partner_id": "p-1"}, "probe_producer", "corr-bad")
    good = [make_envelope(WITHDRAWN, withdrawn_payload(n), "probe_producer", "c") for n in range(20)]
    exchange = topology.exchange_name()
    publish_raw(app_config, [event_message(bad, exchange)] + [event_message(e, exchange) for e in good])

    effects = db("probe_consumer").effects
    letters = db("probe_consumer").dead_letters
    # The good ones do not wait for the bad one's retries (which take 5 s at least).
    wait_for(lambda: effects.count_documents({}) == 20, timeout=20)
    assert letters.find_one({"event_id": bad["event_id"]}) is None

    letter = wait_for(lambda: letters.find_one({"event_id": bad["event_id"]}), timeout=30)
    assert letter["attempts"] == 4  # the first try and one per configured delay (3)
    assert "cannot handle off-bad" in letter["error"]
    assert json.loads(letter["body"]) == bad
    # Each retry waited at least its own, growing, delay (the delay queue's TTL guarantees the floor).
    gaps = [b - a for a, b in zip(attempt_times, attempt_times[1:])]
    assert len(gaps) == 3
    assert all(gap >= delay - 0.05 for gap, delay in zip(gaps, delays)), gaps

    # After the fix, a replay is handled once, and replaying again changes nothing.
    poisoned.clear()
    replay_dead_letter(db("probe_consumer"), letter["_id"])
    wait_for(lambda: effects.count_documents({"offering_id": "off-bad"}) == 1)
    before = settled("probe_consumer", WITHDRAWN)
    replay_dead_letter(db("probe_consumer"), letter["_id"])
    wait_for(lambda: settled("probe_consumer", WITHDRAWN) - before == 1)
    assert effects.count_documents({"offering_id": "off-bad"}) == 1


def test_a_poison_message_is_dead_lettered_with_the_reason(container_factory, app_config, db):
    consumer = container_factory(Consumer)
    consumer.start()
    exchange = topology.exchange_name()
    broken = {"event_id": "e-1", "type": WITHDRAWN, "version": 1, "producer": "x",
              "occurred_at": "2025-03-22T08:00:00+07:00", "correlation_id": "c",
              "payload": {"partner_id": "p-1"}}  # no offering_id
    publish_raw(app_config, [
        (exchange, WITHDRAWN, b"{not json", {"content_type": "application/json"}),
        (exchange, WITHDRAWN, json.dumps(broken).encode(), {"content_type": "application/json"}),
    ])
    letters = db("probe_consumer").dead_letters
    wait_for(lambda: letters.count_documents({}) == 2)
    errors = {letter["event_id"]: letter["error"] for letter in letters.find()}
    assert errors["e-1"].startswith("unreadable event: invalid")
    assert "offering_id" in errors["e-1"]
    assert errors[None].startswith("unreadable event: JSONDecodeError")


def test_an_event_committed_before_the_relay_died_is_published_once_after_restart(
        container_factory, app_config, db):
    from backbone import database as store_module
    original = store_module.OutboxRelay.publish_pending
    store_module.OutboxRelay.publish_pending = lambda self: 0  # the relay "dies" before publishing
    try:
        producer = container_factory(Producer)
        producer.start()
        with entrypoint_hook(producer, "withdraw") as withdraw:
            withdraw(1)
        producer.kill()
    finally:
        store_module.OutboxRelay.publish_pending = original
    outbox = db("probe_producer").outbox
    assert outbox.count_documents({"state": "pending"}) == 1
    assert db("probe_producer").offerings.count_documents({}) == 1

    consumer = container_factory(Consumer)
    consumer.start()
    with Connection(app_config["AMQP_URI"]) as connection:
        _, waiting, _ = connection.default_channel.queue_declare(topology.queue_name("probe_consumer"), passive=True)
    assert waiting == 0 and db("probe_consumer").effects.count_documents({}) == 0

    before = settled("probe_consumer", WITHDRAWN)
    restarted = container_factory(Producer)
    restarted.start()
    wait_for(lambda: db("probe_consumer").effects.count_documents({}) == 1)
    wait_for(lambda: outbox.count_documents({}) == 0)
    wait_for(lambda: settled("probe_consumer", WITHDRAWN) - before >= 1)
    assert db("probe_consumer").effects.count_documents({}) == 1
    assert db("probe_producer").published_events.count_documents({}) == 1
    assert outbox.count_documents({}) == 0


def test_a_change_that_fails_writes_neither_state_nor_event(container_factory, app_config, db):
    producer = container_factory(Producer)
    producer.start()
    with entrypoint_hook(producer, "withdraw") as withdraw:
        withdraw(3)
        with pytest.raises(Exception):
            withdraw(3)  # duplicate _id: the transaction aborts
    assert db("probe_producer").offerings.count_documents({}) == 1
    assert len(emitted_events(db("probe_producer"))) == 1


@pytest.mark.parametrize("shutdown", ["stop", "kill"])
def test_events_in_flight_when_a_consumer_shuts_down_go_back_to_the_queue_not_to_the_dead_letters(
        container_factory, app_config, db, shutdown):
    slow["seconds"] = 0.3
    consumer = container_factory(Consumer)
    consumer.start()
    envelopes = [make_envelope(WITHDRAWN, withdrawn_payload(n), "probe_producer", "c") for n in range(30)]
    publish_raw(app_config, [event_message(e, topology.exchange_name()) for e in envelopes])
    effects = db("probe_consumer").effects
    wait_for(lambda: effects.count_documents({}) >= 1)
    getattr(consumer, shutdown)()
    assert db("probe_consumer").dead_letters.count_documents({}) == 0

    slow["seconds"] = 0
    container_factory(Consumer).start()
    wait_for(lambda: effects.count_documents({}) == 30)
    # Every one of the 30 was settled once by a consumer (the first one's handled, the second one's
    # handled or repeats of what the first had handled when it went away).
    handled = db("probe_consumer").handled_events
    wait_for(lambda: handled.count_documents({}) == 30)
    assert effects.count_documents({}) == 30
    assert db("probe_consumer").dead_letters.count_documents({}) == 0


def test_a_publisher_left_in_the_middle_of_a_frame_still_closes(app_config):
    # What a thread killed mid-publish leaves behind: the start of a frame the broker now waits to
    # complete, so it never answers the close. A container's kill used to hang there for good.
    publisher = ConfirmedPublisher(app_config["AMQP_URI"])
    publisher.connection.connection.transport.write(b"\x01\x00\x01\x00\x00\x00\x40")  # header, no body
    started = time.monotonic()
    publisher.close()
    assert time.monotonic() - started < 5
    assert not publisher.connection.connected


def test_handled_look_ups_that_arrive_together_go_as_one_query_and_each_hears_a_database_error():
    from backbone.subscriber import _HandledLookup

    class Collection:
        def __init__(self):
            self.queries, self.failing = [], False

        def find(self, query, projection):
            self.queries.append(sorted(query["_id"]["$in"]))
            if self.failing:
                raise ConnectionError("database away")
            return [{"_id": i} for i in query["_id"]["$in"] if i.startswith("seen")]

    collection = Collection()
    lookup = _HandledLookup(collection)
    flusher = eventlet.spawn(lookup.run)
    try:
        ids = ["seen-1", "new-1", "seen-2", "new-2", "seen-1"]
        pool = eventlet.GreenPool()
        assert list(pool.imap(lookup, ids)) == [True, False, True, False, True]
        assert collection.queries == [["new-1", "new-2", "seen-1", "seen-2"]]  # one query, ids once

        collection.failing = True
        errors = list(pool.imap(lambda i: pytest.raises(ConnectionError, lookup, i).value, ["a", "b"]))
        assert [str(e) for e in errors] == ["database away"] * 2
        assert len(collection.queries) == 2
    finally:
        flusher.kill()


class Busy:
    name = "busy_probe"

    @subscribe("offering_withdrawn")
    def on_withdrawn(self, event):
        pass


def test_a_service_named_in_workers_takes_that_many_events_at_once_the_others_max_workers(app_config):
    import nameko
    from nameko.containers import get_container_cls
    from backbone.config import load
    container_cls = get_container_cls()
    # config.yml gives the container class, and notifications its own number (its fan-out's rounds).
    assert load()["WORKERS"]["notifications"] > load()["max_workers"]
    with nameko.config.patch({"WORKERS": {"busy_probe": 3}, "max_workers": 7}):
        own = container_cls(Busy)
    with nameko.config.patch({"WORKERS": {}, "max_workers": 7}):
        default = container_cls(Busy)
    assert (own.max_workers, own._worker_pool.size) == (3, 3)
    assert (default.max_workers, default._worker_pool.size) == (7, 7)


class Answering:
    name = "answering_probe"

    @backbone_rpc.rpc  # the services' own
    def ping(self):
        return "pong"


def test_a_service_takes_as_many_calls_at_once_as_it_has_workers(app_config):
    """nameko's RPC consumer would take PREFETCH_COUNT (10) calls whatever the workers; registration's
    20 workers then had 10 registrations to batch."""
    import nameko
    from nameko.containers import get_container_cls
    from nameko.rpc import RpcConsumer
    from backbone.config import load
    assert load()["WORKERS"]["registration"] == load()["WORKERS"]["gateway"] > load()["max_workers"]
    with nameko.config.patch({"WORKERS": {"answering_probe": 20}, "max_workers": 7}):
        container = get_container_cls()(Answering)
        consumer = next(e for e in container.extensions if isinstance(e, RpcConsumer))
        consumer.setup()  # builds the AMQP consumer; connecting waits for start
    assert consumer.consumer.prefetch_count == 20


def test_a_small_group_waits_once_for_the_items_right_behind_it():
    from eventlet.queue import LightQueue
    from backbone.database import take_queued
    queue = LightQueue()
    queue.put(1)
    eventlet.spawn_after(0.01, queue.put, 2)
    eventlet.spawn_after(0.3, queue.put, 3)
    assert take_queued(queue, linger=0.1, fill=5) == [1, 2]  # once: 3 comes after the linger
    assert take_queued(queue) == [3]
    queue.put(4)
    queue.put(5)
    eventlet.spawn_after(0.01, queue.put, 6)
    assert take_queued(queue, linger=0.1, fill=2) == [4, 5]  # full enough: no wait
    assert take_queued(queue) == [6]


def test_a_fold_from_a_checkpoint_reads_each_published_event_once_even_a_batch_read_half_archived(db):
    """`published_after`: events in order of archiving, a page at a time; a batch the relay was
    still archiving (one `published_at`) is read on, its rest once, none of it again."""
    from datetime import timedelta
    from backbone.clock import utcnow
    from backbone.outbox import published_after

    archive = db("probe_folder").published_events
    archive.create_index("published_at")
    first, second = utcnow(), utcnow() + timedelta(seconds=1)

    def archived(ids, at):
        archive.insert_many([{"_id": i, "type": "t", "payload": {"n": i}, "published_at": at} for i in ids])

    archived(["a1", "a2", "a3"], first)
    archived(["b1"], second)  # half of batch b: b2 and b3 are still being archived
    records, checkpoint = published_after(db("probe_folder"), {}, limit=2)
    assert [r["_id"] for r in records] == ["a1", "a2"]
    records, checkpoint = published_after(db("probe_folder"), checkpoint, limit=10)
    assert [r["_id"] for r in records] == ["a3", "b1"] and checkpoint["ids"] == ["b1"]
    archived(["b2", "b3"], second)
    records, checkpoint = published_after(db("probe_folder"), checkpoint, limit=10)
    assert sorted(r["_id"] for r in records) == ["b2", "b3"]
    assert sorted(checkpoint["ids"]) == ["b1", "b2", "b3"]
    assert published_after(db("probe_folder"), checkpoint) == ([], checkpoint)
