"""The outbox relay: publishes what services wrote to their `outbox` collection.

A service's transaction writes its events into `outbox` with the change (`backbone/database.py`).
The relay, one per service at a time (a lease), publishes them in order of writing to the
`trainops.events` topic exchange with publisher confirms (one wait per batch), then moves them to
`published_events`, the producer's record of what it said (`emitted_events` reads both). A crash
between publishing and moving publishes them again: consumers are idempotent.
"""
import json
import logging
import time

import amqp
import eventlet
from eventlet.green import threading
from eventlet.semaphore import Semaphore
from kombu import Connection
from nameko import config
from pymongo import ASCENDING, DeleteOne
from pymongo.errors import BulkWriteError

from backbone import counters, topology
from backbone.clock import utcnow
from backbone.config import events_setting
from backbone.lease import Lease, holder_id

log = logging.getLogger(__name__)


def outbox_record(envelope):
    return dict(envelope, _id=envelope["event_id"], state="pending", created_at=utcnow())


def envelope_of(record):
    return {key: record[key] for key in
            ("event_id", "type", "version", "occurred_at", "producer", "correlation_id", "payload")}


def emitted_events(db, query=None):
    """The events a service wrote, published or still waiting, oldest first."""
    query = query or {}
    # The outbox first: the relay archives before it deletes, so whatever was waiting at the first
    # read is in one of the two at the second (and may be in both for a moment).
    records = {record["_id"]: record for record in db.outbox.find(query)}
    records.update((record["_id"], record) for record in db.published_events.find(query))
    return sorted(records.values(), key=lambda record: record["created_at"])


def published_after(db, checkpoint, limit=1000):
    """For a read model folded from a service's own events, after the fact and off the path that
    wrote them: the published events after `checkpoint` ({"at": published_at, "ids": the events at
    that instant already read}, or {} for the first), oldest first, at most `limit`, and the
    checkpoint after them. The relay archives a batch under one `published_at`, in order and one
    relay at a time, so an event not yet read is never before the checkpoint; the ids settle a
    batch read while it was half archived. Needs an index on `published_events.published_at`."""
    at, seen = checkpoint.get("at"), set(checkpoint.get("ids") or ())
    query = {"published_at": {"$gte": at}} if at else {}
    found = db.published_events.find(query, {"type": 1, "payload": 1, "published_at": 1}).sort(
        "published_at", ASCENDING).limit(limit + len(seen))
    records = [record for record in found if record["_id"] not in seen][:limit]
    if not records:
        return [], checkpoint
    last = records[-1]["published_at"]
    ids = [record["_id"] for record in records if record["published_at"] == last]
    return records, {"at": last, "ids": ids + sorted(seen) if last == at else ids}


def pending_events(db):
    """The events a service wrote that the relay has not archived yet (few, but for a burst)."""
    return list(db.outbox.find({}, {"type": 1, "payload": 1}))


def archive(db, records):
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
        topology.declare_exchanges(self.connection)
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
        archive(self.db, [dict(r, state="published", published_at=published_at) for r in records])
        # One delete per record by _id: several times faster on SecantusDB than one delete_many with
        # $in over the same ids (deploy/README.md, capacity).
        self.db.outbox.bulk_write([DeleteOne({"_id": r["_id"]}) for r in records], ordered=False)
        self.published += len(records)
        for record in records:
            counters.EVENTS_PUBLISHED.labels(self.service_name, record["type"]).inc()
        return len(records)
