"""The event-handler entrypoint: `@subscribe("offering_withdrawn")`.

What nameko's own `@event_handler` does not: one durable queue per service, bound to the types of its
handlers (declared before anything publishes: `backbone/topology.py`), a contract check on every event, idempotency (a handled event id is recorded and a repeat
is skipped), retries with growing delays through the service's delay queues, and after the last retry
a dead letter in the service's `dead_letters` collection with the error and the original message, for
operators to inspect and replay. The consumer keeps taking other messages meanwhile.

A handler receives the envelope (a dict) with its `payload` already validated and loaded. A handler that
changes state should do it in `self.db.transaction(...)`: the handled-event record is then written in
the same transaction, so a repeat has no effect at all. A handler whose effect is outside MongoDB (an
email) must make that effect idempotent itself; one whose every write is keyed by the event says so
(`@subscribe(..., keyed=True)`) and goes without the handled-event record.
"""
import json
import logging
import time
import traceback
import uuid
from functools import partial

import eventlet

from eventlet.event import Event
from eventlet.green import threading as green_threading
from eventlet.queue import LightQueue
from kombu import Connection
from kombu.mixins import ConsumerMixin
from marshmallow import ValidationError
from nameko import config
from nameko.exceptions import ContainerBeingKilled
from nameko.extensions import Entrypoint, ProviderCollector, SharedExtension
from pymongo.errors import DuplicateKeyError

from backbone import counters, topology
from backbone.clock import utcnow
from backbone.database import AlreadyHandled, database_of, handled_record, take_queued
from backbone.events import read_envelope
from backbone.outbox import ConfirmedPublisher

log = logging.getLogger(__name__)


class PermanentFailure(Exception):
    """Raised by a handler for an event that can never succeed: dead-lettered without retries."""


class _QueueConsumer(ConsumerMixin):
    def __init__(self, amqp_uri, queues, on_message, prefetch_count):
        """`queues`: the service's queue (consumed) and its delay queues (declared only)."""
        self._amqp_uri = amqp_uri
        self._declared = queues
        self.queues = queues[:1]
        self._on_message = on_message
        self.prefetch_count = prefetch_count
        self.ready = green_threading.Event()

    @property
    def connection(self):
        return Connection(self._amqp_uri)

    def get_consumers(self, consumer_cls, channel):
        # on_message (not callbacks): we want the raw body, so malformed JSON is dead-lettered by us
        # instead of raising inside kombu's decoder.
        consumer = consumer_cls(queues=self.queues, on_message=self._on_message, no_ack=False)
        consumer.qos(prefetch_count=self.prefetch_count)
        return [consumer]

    def on_connection_revived(self):
        # Our own queues, bound as our handlers say: a broker that lost them (a new node, a reset)
        # gets them back before we consume.
        topology.declare_exchanges(self.connection)
        for queue in self._declared:
            queue(self.connection.default_channel).declare()

    def on_consume_ready(self, connection, channel, consumers, **kwargs):
        self.ready.set()

    def on_connection_error(self, exc, interval):
        log.warning("event consumer: broker unreachable (%s), retrying in %ss", exc, interval)


class _HandledLookup:
    """Whether events were handled already: the look-ups that messages arriving together make go to
    MongoDB as one query. A fan-out delivers a prefetch's worth of messages at once, and one
    round trip each was the consumer's largest count of requests; a lone message waits for nothing."""

    def __init__(self, collection):
        self.collection = collection
        self._queue = LightQueue()

    def __call__(self, event_id):
        done = Event()
        self._queue.put((event_id, done))
        return done.wait()

    def run(self):
        while True:
            waiting = take_queued(self._queue)
            try:
                found = {doc["_id"] for doc in self.collection.find(
                    {"_id": {"$in": list({event_id for event_id, _ in waiting})}}, {"_id": 1})}
            except Exception as exc:  # the database is away: each message's dispatch hears it
                for _, done in waiting:
                    done.send_exception(exc)
                continue
            for event_id, done in waiting:
                done.send(event_id in found)


class EventSubscriptions(SharedExtension, ProviderCollector):
    """The one consumer of `trainops.<service>` in a container; dispatches by event type."""

    def start(self):
        # In start, not setup: extensions are set up concurrently, so only now have all the
        # @subscribe entrypoints registered.
        self.service_name = self.container.service_name
        # Taken now, while all are registered: entrypoints unregister as the container stops, and a
        # message still in flight then must go back to the queue, not to the dead letters.
        self.handlers = {p.event_type: p for p in self._providers}
        self.database = database_of(self.container)
        if self.database is None:
            raise RuntimeError("a service with @subscribe handlers needs a Database dependency")
        self.delays = topology.retry_delays_ms()
        self.retry_publisher = None
        self.handled_already = _HandledLookup(self.database.db.handled_events)
        self.container.spawn_managed_thread(self.handled_already.run, identifier="handled-lookup")
        queues = topology.service_queues(self.service_name, sorted(self.handlers))
        with Connection(config["AMQP_URI"]) as connection:
            topology.declare(connection, {self.service_name: sorted(self.handlers)})
        self.consumer = _QueueConsumer(
            config["AMQP_URI"], queues, self.on_message, prefetch_count=self.container.max_workers)
        self.container.spawn_managed_thread(self.consumer.run, identifier="event-consumer")
        self.consumer.ready.wait()

    def stop(self):
        if hasattr(self, "consumer"):
            self.consumer.should_stop = True
        super().stop()

    def kill(self):
        if hasattr(self, "consumer"):
            self.consumer.should_stop = True

    # -- per message ----------------------------------------------------------------------------

    def on_message(self, message):
        # Off the consumer's thread at once: a full worker pool or a slow database must never block
        # the consumer (and its heartbeats).
        self.container.spawn_managed_thread(partial(self._dispatch, message), identifier="dispatch-event")

    def _dispatch(self, message):
        try:
            self._dispatch_or_park(message)
        except ContainerBeingKilled:
            message.requeue()
        except Exception:
            log.exception("could not dispatch an event; returning it to the queue shortly")
            eventlet.sleep(1)
            message.requeue()

    def _dispatch_or_park(self, message):
        if self.consumer.should_stop:
            message.requeue()
            return
        attempts = int((message.headers or {}).get("x-attempts", 0))
        try:
            envelope, payload = read_envelope(json.loads(message.body))
        except (ValueError, ValidationError) as exc:
            # A poison message: no retry can fix it.
            self.park(message, attempts + 1, "unreadable event: {}".format(_describe(exc)))
            return
        provider = self.handlers.get(envelope["type"])
        if provider is None:
            self.park(message, attempts + 1, "no handler for {}".format(envelope["type"]))
            return
        if provider.marks_handled and self.handled_already(envelope["event_id"]):
            counters.EVENTS_DUPLICATE.labels(self.service_name, envelope["type"]).inc()
            self._ack(message)
            return
        event = dict(envelope, payload=payload)
        self.container.spawn_worker(
            provider, (event,), {},
            context_data={"correlation_id": envelope["correlation_id"], "event_type": envelope["type"]},
            handle_result=partial(self.on_result, message, event, attempts, time.monotonic()))

    def on_result(self, message, event, attempts, started, worker_ctx, result=None, exc_info=None):
        labels = (self.service_name, event["type"])
        counters.HANDLER_SECONDS.labels(*labels).observe(time.monotonic() - started)
        try:
            if exc_info is None:
                if worker_ctx.entrypoint.marks_handled and not getattr(worker_ctx, "handled_recorded", False):
                    self._record_handled(event)
                counters.EVENTS_HANDLED.labels(*labels).inc()
            elif isinstance(exc_info[1], AlreadyHandled):
                counters.EVENTS_DUPLICATE.labels(*labels).inc()
            elif isinstance(exc_info[1], PermanentFailure) or attempts >= len(self.delays):
                self.park(message, attempts + 1, _describe(exc_info[1]), exc_info)
                return result, exc_info
            else:
                self.retry(message, attempts + 1, _describe(exc_info[1]))
                return result, exc_info
            self._ack(message)
        except Exception:
            # Could not record the outcome (database or broker away): give the message back so it
            # is delivered again; the handled-event record makes that safe.
            log.exception("could not settle event %s; returning it to the queue", event["event_id"])
            eventlet.sleep(1)
            message.requeue()
        return result, exc_info

    def _record_handled(self, event):
        try:
            self.database.db.handled_events.insert_one(handled_record(event))
        except DuplicateKeyError:
            pass  # the handler's own transaction recorded it

    def retry(self, message, attempts, error):
        delay = self.delays[attempts - 1]
        log.warning("event %s failed (attempt %d), retrying in %d ms: %s",
                    message.properties.get("message_id"), attempts, delay, error)
        headers = dict(message.headers or {}, **{"x-attempts": attempts, "x-last-error": error[:500]})
        self._republish("", topology.retry_queue_name(self.service_name, delay), message, headers)
        counters.EVENTS_RETRIED.labels(self.service_name, message.properties.get("type") or "unknown").inc()
        self._ack(message)

    def park(self, message, attempts, error, exc_info=None):
        """Dead-letter: keep the original message and why it failed, for operators to replay."""
        body = message.body.decode("utf-8", "replace") if isinstance(message.body, bytes) else message.body
        try:
            original = json.loads(body)
        except ValueError:
            original = None
        event_id = (original or {}).get("event_id") if isinstance(original, dict) else None
        log.error("event %s dead-lettered after %d attempts: %s", event_id, attempts, error)
        self.database.db.dead_letters.update_one(
            {"_id": "{}:{}".format(self.service_name, event_id or uuid.uuid4().hex)},
            {"$set": {
                "consumer": self.service_name,
                "event_id": event_id,
                "event_type": (original or {}).get("type") if isinstance(original, dict) else None,
                "correlation_id": (original or {}).get("correlation_id") if isinstance(original, dict) else None,
                "body": body,
                "headers": {k: v for k, v in (message.headers or {}).items() if isinstance(v, (str, int))},
                "error": error,
                "traceback": "".join(traceback.format_exception(*exc_info)) if exc_info else None,
                "attempts": attempts,
                "status": "parked",
                "parked_at": utcnow(),
            }},
            upsert=True,
        )
        event_type = (original or {}).get("type") if isinstance(original, dict) else None
        counters.EVENTS_DEAD_LETTERED.labels(self.service_name, str(event_type or "unreadable")).inc()
        self._ack(message)

    def _republish(self, exchange, routing_key, message, headers):
        if self.retry_publisher is None:
            self.retry_publisher = ConfirmedPublisher(config["AMQP_URI"])
        properties = {k: v for k, v in message.properties.items()
                      if k in ("content_type", "content_encoding", "message_id", "type", "correlation_id")}
        try:
            self.retry_publisher.publish_batch(
                [(exchange, routing_key, message.body, dict(properties, application_headers=headers))])
        except Exception:
            self.retry_publisher.close()
            self.retry_publisher = None
            raise

    @staticmethod
    def _ack(message):
        if message.channel.connection:
            message.ack()


def _describe(exc):
    if isinstance(exc, ValidationError):
        return "invalid: {}".format(json.dumps(exc.messages, ensure_ascii=False, default=str))
    return "{}: {}".format(type(exc).__name__, exc)


class Subscriber(Entrypoint):
    """`keyed=True`: the handler's writes are keyed by the event itself (a document whose _id is
    made from the event id, an update that only a newer event makes), so a repeat changes nothing
    by construction; the handled-event record and its look-up, a write and a read per event, are
    then left out.

    `grouped=True`: the handler's `self.db.transaction(work)` may share one transaction with the
    other grouped handlers of the service whose events arrived with it (`backbone/grouped.py`): a
    commit for several events, each with the outcome it would have had alone. Only for a handler
    that holds no lock while it calls `transaction`: the group's leader runs the others' work, and
    a work that needs a lock a waiting member holds would wait for it for ever (registration's
    session locks)."""
    subscriptions = EventSubscriptions()

    def __init__(self, event_type, keyed=False, grouped=False, **kwargs):
        self.event_type = event_type
        self.marks_handled = not keyed
        self.grouped = grouped
        super().__init__(**kwargs)

    def setup(self):
        self.subscriptions.register_provider(self)

    def stop(self):
        self.subscriptions.unregister_provider(self)
        super().stop()


subscribe = Subscriber.decorator
