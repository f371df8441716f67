"""The MongoDB dependency and the transactional outbox.

A service declares `store = Store(indexes={...})`. Each container opens one client, ensures the
service's indexes (and the platform's) at start, and runs an outbox relay. A worker gets a `Storage`:
collections for reads, and `transaction(work)` for every change that publishes events:

    def register(tx):
        tx.partners.insert_one(doc)
        tx.emit("partner_onboarded", {...})
    self.store.transaction(register)

The events go into the `outbox` collection in the same MongoDB transaction as the change, so either
both happen or neither. The relay then publishes them with publisher confirms and moves them to
`published_events`, the producer's record of what it said (`emitted_events` reads both).
"""
import functools
import json
import logging
import time
import uuid
from datetime import datetime, timezone

import amqp
import eventlet
from eventlet.green import threading
from eventlet.queue import Empty
from eventlet.semaphore import Semaphore
from kombu import Connection
from nameko import config
from nameko.extensions import DependencyProvider
from pymongo import ASCENDING, DeleteOne, IndexModel, MongoClient
from pymongo.errors import BulkWriteError, DuplicateKeyError

from backbone import metrics, topology
from backbone.config import database_name, events_setting
from backbone.contracts import make_envelope
from backbone.lease import Lease, holder_id

log = logging.getLogger(__name__)

PLATFORM_INDEXES = {
    # The outbox holds only what waits to be published: the relay deletes what the broker confirmed
    # (measured on SecantusDB: deleting 500 records by _id with this one index costs a quarter of
    # updating them under a (state, created_at) index), so its one index serves the relay's order.
    "outbox": [IndexModel([("created_at", ASCENDING)])],
    # Appended in bulk by the relay (inserts are cheap); the audit trail looks events up by correlation.
    "published_events": [IndexModel([("correlation_id", ASCENDING)])],
    # One document per handled event id: the unique _id is what makes consumers idempotent.
    "handled_events": [],
    "dead_letters": [IndexModel([("status", ASCENDING), ("parked_at", ASCENDING)])],
    "leases": [],
}


def take_queued(queue, linger=0.0, fill=0):
    """For group commits: the next item to arrive on an eventlet queue (waiting for it), and every
    item queued behind it by then. Fewer than `fill` of them wait `linger` seconds, once, for the
    items right behind."""
    items = [queue.get()]
    while True:
        try:
            items.append(queue.get_nowait())
        except Empty:
            if not linger or len(items) >= fill:
                return items
            eventlet.sleep(linger)
            linger = 0


class AlreadyHandled(Exception):
    """The event being handled was handled before; its effects were rolled back."""


def utcnow():
    """Now, to the millisecond as MongoDB keeps it: what a write answers is what a later read returns."""
    moment = datetime.now(timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def new_id(kind):
    """Readable ids: the kind, then 16 random hex digits (`session-3f2a...`)."""
    return "{}-{}".format(kind, uuid.uuid4().hex[:16])


def mongo_client(uri=None):
    return MongoClient(uri or config["MONGO_URI"], tz_aware=True, uuidRepresentation="standard")


class _InSession:
    """A collection whose every operation joins the transaction's session."""

    def __init__(self, collection, session):
        self._collection = collection
        self._session = session

    def __getattr__(self, operation):
        return functools.partial(getattr(self._collection, operation), session=self._session)


class Change:
    """What `transaction(work)` hands to `work`: collections bound to the transaction, and `emit`."""

    def __init__(self, db, session, producer, correlation_id):
        self._db = db
        self.session = session
        self.producer = producer
        self.correlation_id = correlation_id
        self.events = []

    def __getattr__(self, name):
        return _InSession(self._db[name], self.session)

    def emit(self, type_, payload, version=1):
        envelope = make_envelope(type_, payload, self.producer, self.correlation_id, version)
        self.events.append(envelope)
        return envelope


class Storage:
    """A worker's view of its service's database."""

    def __init__(self, provider, worker_ctx):
        self._provider = provider
        self._worker_ctx = worker_ctx
        self.db = provider.db

    def __getattr__(self, name):
        return self.db[name]

    def _handled_event(self):
        # Only the event-handler entrypoint marks events handled; an RPC call made from inside a
        # handler must not, which is why this is not in the (propagated) context data.
        if getattr(self._worker_ctx.entrypoint, "marks_handled", False):
            return self._worker_ctx.args[0]
        return None

    def transaction(self, work):
        """Run `work(change)` in one MongoDB transaction together with its events and, inside an
        event handler, the record that this event was handled. Returns what `work` returns. Raises
        AlreadyHandled (everything rolled back) when the event was handled before."""
        provider = self._provider
        correlation_id = self._worker_ctx.context_data.get("correlation_id") or "none"
        handled = self._handled_event()
        written = []

        def attempt(session):
            change = Change(self.db, session, provider.container.service_name, correlation_id)
            result = work(change)
            if handled:
                try:
                    self.db.handled_events.insert_one(handled_record(handled), session=session)
                except DuplicateKeyError:
                    raise AlreadyHandled(handled["event_id"])
                # Tell the subscriber not to record it again after the handler returns.
                self._worker_ctx.handled_recorded = True
            if change.events:
                self.db.outbox.insert_many([outbox_record(e) for e in change.events], session=session)
            written[:] = change.events
            return result

        with provider.client.start_session() as session:
            result = session.with_transaction(attempt)
        if written:
            provider.relay.wake()
        return result


def handled_record(event):
    """The record that makes a consumer idempotent; its type and correlation id serve the audit trail."""
    return {"_id": event["event_id"], "event_type": event.get("type"),
            "correlation_id": event.get("correlation_id"), "handled_at": utcnow()}


def outbox_record(envelope):
    record = dict(envelope, _id=envelope["event_id"], state="pending", created_at=utcnow())
    return record


def emitted_events(db, query=None):
    """The events a service wrote, published or still waiting, oldest first."""
    query = query or {}
    # The outbox first: the relay archives before it deletes, so whatever was waiting at the first
    # read is in one of the two at the second (and may be in both for a moment).
    records = {record["_id"]: record for record in db.outbox.find(query)}
    records.update((record["_id"], record) for record in db.published_events.find(query))
    return sorted(records.values(), key=lambda record: record["created_at"])


def envelope_of(record):
    return {key: record[key] for key in
            ("event_id", "type", "version", "occurred_at", "producer", "correlation_id", "payload")}


class Store(DependencyProvider):
    def __init__(self, indexes=None, relay=True):
        self.indexes = indexes or {}
        self.run_relay = relay

    def setup(self):
        self.client = mongo_client()
        self.db = self.client[database_name(self.container.service_name)]
        _move_published_out_of_outbox(self.db)
        for collection, models in list(PLATFORM_INDEXES.items()) + list(self.indexes.items()):
            if models:
                self.db[collection].create_indexes(models)
        self.relay = OutboxRelay(self.db, self.container.service_name)

    def start(self):
        if self.run_relay:
            self.container.spawn_managed_thread(self.relay.run, identifier="outbox-relay")

    def stop(self):
        if hasattr(self, "relay"):
            self.relay.stop()

    kill = stop

    def get_dependency(self, worker_ctx):
        return Storage(self, worker_ctx)


def _move_published_out_of_outbox(db):
    """Databases written before the relay deleted what it published keep published records in the
    outbox under a (state, created_at) index: move them to `published_events` and drop that index."""
    if "state_1_created_at_1" not in db.outbox.index_information():
        return
    _archive(db, list(db.outbox.find({"state": "published"})))
    db.outbox.delete_many({"state": "published"})
    db.outbox.drop_index("state_1_created_at_1")


def _archive(db, records):
    try:
        db.published_events.insert_many(records, ordered=False)
    except BulkWriteError as error:
        # A relay that died between archiving and deleting published these again: archived already.
        if any(failure["code"] != 11000 for failure in error.details["writeErrors"]):
            raise


class ConfirmedPublisher:
    """Publishes a batch of messages and waits once for the broker to confirm all of them, instead
    of one round trip per message (what nameko's EventDispatcher does with confirms on)."""

    def __init__(self, amqp_uri):
        self.connection = Connection(amqp_uri)
        self.connection.connect()
        topology.declare(self.connection)
        self.channel = self.connection.channel()
        self.channel.confirm_select()
        self.channel.events["basic_ack"].add(self._on_ack)
        self.channel.events["basic_nack"].add(self._on_nack)
        self._lock = Semaphore()
        self._next_tag = 1
        self._unconfirmed = set()
        self._nacked = 0

    def _settle(self, tag, multiple):
        if multiple:
            self._unconfirmed = {t for t in self._unconfirmed if t > tag}
        else:
            self._unconfirmed.discard(tag)

    def _on_ack(self, tag, multiple):
        self._settle(tag, multiple)

    def _on_nack(self, tag, multiple):
        self._nacked += 1
        self._settle(tag, multiple)

    def publish_batch(self, messages, timeout=10):
        """`messages`: (exchange, routing_key, body, properties) tuples. Raises if any is refused
        or the confirms don't arrive in time; then none of the batch counts as published."""
        with self._lock:
            self._publish(messages, timeout)

    def _publish(self, messages, timeout):
        self._nacked = 0
        for exchange, routing_key, body, properties in messages:
            self.channel.basic_publish(
                amqp.Message(body, delivery_mode=2, **properties),
                exchange=exchange, routing_key=routing_key,
            )
            self._unconfirmed.add(self._next_tag)
            self._next_tag += 1
        deadline = time.monotonic() + timeout
        while self._unconfirmed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("{} publishes unconfirmed".format(len(self._unconfirmed)))
            self.connection.drain_events(timeout=remaining)
        if self._nacked:
            raise RuntimeError("broker refused {} messages".format(self._nacked))

    def close(self, timeout=2):
        """Close the connection, politely if the broker answers within `timeout`, else drop it. A
        thread killed in the middle of a publish leaves half a frame on the socket: the broker then
        waits for the rest of it and never answers the close (a test teardown hung on that)."""
        with eventlet.Timeout(timeout, False):
            try:
                self.connection.release()
                return
            except Exception:  # the connection may already be gone; nothing to give back then
                pass
        try:
            self.connection.collect()
        except Exception:
            pass


def event_message(envelope, exchange):
    return (
        exchange, envelope["type"], json.dumps(envelope, ensure_ascii=False).encode("utf-8"),
        {
            "content_type": "application/json",
            "content_encoding": "utf-8",
            "message_id": envelope["event_id"],
            "type": envelope["type"],
            "correlation_id": envelope["correlation_id"],
        },
    )


class OutboxRelay:
    """Publishes the outbox in order of writing. One relay per service is active at a time (a lease),
    so replicas don't publish the same events twice; a local commit wakes it at once, and it also
    polls, so events written by other replicas or left by a crash are published too."""

    def __init__(self, db, service_name):
        self.db = db
        self.service_name = service_name
        self.batch = int(events_setting("relay_batch", 500))
        self.poll = float(events_setting("relay_poll_seconds", 0.5))
        self.linger = float(events_setting("relay_linger_seconds", 0.05))
        self.lease = Lease(db.leases, "outbox-relay", holder_id(), float(events_setting("lease_seconds", 10)))
        self._wakeup = threading.Event()
        self._stopped = False
        self._publisher = None
        self._running = False
        self.published = 0

    def wake(self):
        self._wakeup.set()

    def stop(self):
        self._stopped = True
        self._wakeup.set()
        if not self._running:
            self._close_publisher()

    def _close_publisher(self):
        # Only by the thread that publishes, or once it has ended: a close from another thread
        # in the middle of a publish would interleave frames on one socket.
        if self._publisher:
            self._publisher.close()
            self._publisher = None

    def _sleep(self, seconds):
        woken = self._wakeup.wait(seconds)
        self._wakeup.clear()
        if woken and self.linger and not self._stopped:
            # Woken by a commit: the commits of the next few milliseconds join this batch. In a
            # burst each commit woke the relay for a handful of events, and a batch costs three
            # database round trips and a confirmed publish whatever its size.
            eventlet.sleep(self.linger)

    def run(self):
        self._running = True
        try:
            self._run()
            self.lease.release()
        finally:
            self._running = False
            self._close_publisher()

    def _run(self):
        failures = 0
        while not self._stopped:
            try:
                if not self.lease.acquire():
                    self._sleep(self.poll)
                    continue
                sent = self.publish_pending()
                failures = 0
                if sent < self.batch:
                    self._sleep(self.poll)
            except Exception as exc:
                # Broker or database away: keep the events, back off, try again.
                failures += 1
                log.warning("outbox relay: %s (retry %d)", exc, failures)
                self._close_publisher()
                self._sleep(min(0.2 * 2 ** failures, 10))

    def publish_pending(self):
        """Publish the oldest batch waiting, then move it to `published_events`. Returns how many
        went out. A crash after publishing publishes them again: consumers are idempotent."""
        records = list(self.db.outbox.find({}).sort("created_at", ASCENDING).limit(self.batch))
        if not records:
            return 0
        if self._publisher is None:
            self._publisher = ConfirmedPublisher(config["AMQP_URI"])
        exchange = topology.exchange_name()
        self._publisher.publish_batch([event_message(envelope_of(r), exchange) for r in records])
        published_at = utcnow()
        _archive(self.db, [dict(r, state="published", published_at=published_at) for r in records])
        # One delete per record by _id: on SecantusDB several times faster than one delete_many with
        # $in over the same ids (measured: 0.1 s against 0.7 s for 500).
        self.db.outbox.bulk_write([DeleteOne({"_id": r["_id"]}) for r in records], ordered=False)
        self.published += len(records)
        for record in records:
            metrics.EVENTS_PUBLISHED.labels(self.service_name, record["type"]).inc()
        return len(records)
