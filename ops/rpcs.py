"""The RPCs operations asks of every service: `health`, `metrics`, `dead_letters`,
`replay_dead_letters` and `events` (the audit trail of a correlation id). They work on the platform's
own records in the service's database (the outbox, handled events, dead letters) and on the broker,
and answer data: `fleet` and the console render it.

A service does not declare them: it is `Operated` (`backbone/operated.py`), and its container
(`ops.container.Container`) adds them to its class.
"""
import json
import logging
from collections import defaultdict

import eventlet
from eventlet.semaphore import Semaphore
from kombu import Connection
from nameko import config
from pymongo import ASCENDING, DESCENDING

from backbone import auth, topology
from backbone.clock import utcnow
from backbone.config import events_setting
from backbone.errors import invalid, not_found
from backbone.outbox import ConfirmedPublisher, emitted_events
from backbone.personal import masked
from backbone.rpc import rpc
from ops.metrics import exported_text

log = logging.getLogger(__name__)

# A health check answers well inside the gateway's 2 s: a broker that does not accept a connection
# within this is reported down, not waited for.
BROKER_TIMEOUT = 1.0
DEAD_LETTER_PAGE = 200


class BrokerSilent(Exception):
    """The broker took a connection and then stopped answering on it (a node starting or stopping)."""


def _bounded():
    # Its own exception, not eventlet's Timeout: a caller's Timeout must still reach the caller.
    return eventlet.Timeout(BROKER_TIMEOUT * 1.5, BrokerSilent)


def gauge(name, documentation, labels, rows):
    """A gauge as data, the shape `Operated.domain_gauges` answers: `rows` are (label values...,
    value) tuples."""
    return {"name": name, "help": documentation, "labels": list(labels), "rows": [list(row) for row in rows]}


def outbox_stall_seconds():
    """An event waiting longer than this to be published means the relay is stuck (the alert's 60 s)."""
    return float(events_setting("outbox_stall_seconds", 60))


def outbox_state(db):
    """How many events wait to be published, and for how long the oldest has waited (seconds)."""
    oldest = db.outbox.find_one({}, {"created_at": 1}, sort=[("created_at", ASCENDING)])
    return {
        "outbox_backlog": db.outbox.count_documents({}),
        "oldest_pending_seconds": round((utcnow() - oldest["created_at"]).total_seconds(), 3) if oldest else 0,
    }


def broker_queues(service, event_types, connection):
    """(queue, messages, consumers) of the service's queues, asked passively (nothing is created)."""
    if not event_types:
        return []
    rows = []
    for queue in topology.service_queues(service, event_types):
        channel = connection.channel()
        try:
            _, messages, consumers = channel.queue_declare(queue=queue.name, passive=True)
            rows.append((queue.name, messages, consumers))
        except Exception:  # not declared yet: the broker closed the channel; nothing to count
            pass
        finally:
            try:
                channel.close()
            except Exception:  # already closed by the broker's 404
                pass
    return rows


def stray_messages(connection):
    """(queue, messages) of the queues that keep what went nowhere, asked passively."""
    rows = []
    for queue in (topology.UNROUTED, topology.UNDELIVERABLE):
        channel = connection.channel()
        try:
            _, messages, _ = channel.queue_declare(queue=queue, passive=True)
            rows.append((queue, messages))
        except Exception:  # not declared yet: nothing went there
            pass
        finally:
            try:
                channel.close()
            except Exception:
                pass
    return rows


def health_report(name, db, event_types=(), connection=None):
    """`status` ok when MongoDB and the broker answer (the broker within 1.5 s) and no event has waited
    in the outbox for longer than `outbox_stall_seconds`; `down` when MongoDB or the broker fail;
    `degraded` when only the outbox is stalled. `checks` names each result; with the outbox backlog, the age of the oldest
    event not yet published and the service's queues. `connection`: a broker connection to reuse."""
    checks = {}
    result = {"service": name}
    try:
        db.command("ping")
        checks["mongodb"] = "ok"
        result.update(outbox_state(db))
        stalled = result["oldest_pending_seconds"] > outbox_stall_seconds()
        checks["outbox"] = "stalled: {} events, the oldest waiting {:.0f} s".format(
            result["outbox_backlog"], result["oldest_pending_seconds"]) if stalled else "ok"
    except Exception as exc:
        checks["mongodb"] = "down: {}".format(type(exc).__name__)
    try:
        # Bounded as a whole: a node that accepts a connection and then never answers (one starting
        # or stopping) must make the check say "down", not hang it.
        with _bounded():
            if connection is None:
                with Connection(config["AMQP_URI"], connect_timeout=BROKER_TIMEOUT) as connection:
                    result["queues"] = _broker_check(name, event_types, connection)
            else:
                result["queues"] = _broker_check(name, event_types, connection)
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = "down: {}".format(type(exc).__name__)
    result["checks"] = checks
    if checks["mongodb"] != "ok" or checks["broker"] != "ok":
        result["status"] = "down"
    else:
        result["status"] = "ok" if checks["outbox"] == "ok" else "degraded"
    return result


def _broker_check(name, event_types, connection):
    connection.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT)
    # A round trip, so that a kept connection the broker has dropped is found out here.
    connection.channel().close()
    return [{"queue": q, "messages": m, "consumers": c} for q, m, c in broker_queues(name, event_types, connection)]


class _KeptConnection:
    """One broker connection per service (and broker) for the `health` RPC, opened again after a
    failure: a new connection per check made anonymous /health calls cost the broker a connection
    each. Per service, not per process: where several run in one process (devstack, the tests), one
    service's check waiting on a broken connection must not hold up the others'."""

    def __init__(self):
        self.lock = Semaphore()
        self._connection = None

    def connection(self):
        if self._connection is None:
            self._connection = Connection(config["AMQP_URI"], connect_timeout=BROKER_TIMEOUT)
        return self._connection

    def drop(self):
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.collect()
            except Exception:  # already broken; nothing to give back
                pass


_KEPT = defaultdict(_KeptConnection)


def public_dead_letter(doc):
    try:
        event = json.loads(doc.get("body") or "")
    except ValueError:
        event = doc.get("body")
    out = {k: doc.get(k) for k in ("consumer", "event_id", "event_type", "correlation_id", "error", "attempts",
                                   "status", "parked_at", "replayed_at")}
    # Shown masked (names, contacts, QR tokens): the replay sends the original kept in the document.
    out.update(id=doc["_id"], replays=doc.get("replays", 0), event=masked(event),
               error=masked(doc.get("error")))
    return out


def replay_dead_letter(db, dead_letter_id, publisher=None):
    """Send a parked message back to its consumer's queue, attempts reset. Replaying an event that
    was since handled does nothing more: the consumer sees its handled-event record and skips it.
    `publisher`: a ConfirmedPublisher to reuse (one is opened and closed otherwise)."""
    letter = db.dead_letters.find_one({"_id": dead_letter_id})
    if letter is None:
        return None
    own = publisher is None
    if own:
        publisher = ConfirmedPublisher(config["AMQP_URI"])
    try:
        properties = {"content_type": "application/json", "content_encoding": "utf-8",
                      "application_headers": {"x-attempts": 0, "x-replay-of": dead_letter_id}}
        if letter.get("event_id"):
            properties["message_id"] = letter["event_id"]
        publisher.publish_batch(
            [("", topology.queue_name(letter["consumer"]), letter["body"].encode("utf-8"), properties)])
    finally:
        if own:
            publisher.close()
    db.dead_letters.update_one(
        {"_id": dead_letter_id},
        {"$set": {"status": "replayed", "replayed_at": utcnow()}, "$inc": {"replays": 1}})
    return letter


class OperationsRpcs:
    """Added to every `Operated` service class by its container. Uses the service's `db` (its
    Database), and its `domain_gauges` and `audit_records`."""

    @rpc
    def health(self):
        """See `health_report`. The broker connection is kept from one call to the next."""
        kept = _KEPT[(self.name, config["AMQP_URI"])]
        with kept.lock:
            connection = kept.connection()
            report = health_report(self.name, self.db.db, topology.subscriptions_of(type(self)), connection)
            if report["checks"].get("broker") != "ok":
                kept.drop()
        return report

    @rpc
    def metrics(self):
        """{"gauges": computed now: outbox backlog, parked dead letters, MongoDB and broker up, queue
        depths and `domain_gauges`; "counters": this process's counters and handler latencies as
        Prometheus text, unless the process serves them itself on METRICS_PORT (then any replica's
        answer would be a fraction of them)}."""
        name = self.name
        gauges = []
        try:
            state = outbox_state(self.db.db)
            gauges += [
                gauge("trainops_outbox_backlog", "Events written but not yet published.",
                      ["service"], [(name, state["outbox_backlog"])]),
                gauge("trainops_outbox_oldest_pending_seconds",
                      "Age of the oldest event not yet published (0 when none).",
                      ["service"], [(name, state["oldest_pending_seconds"])]),
                gauge("trainops_dead_letters", "Dead letters parked, waiting for an operator.",
                      ["service"], [(name, self.db.dead_letters.count_documents({"status": "parked"}))]),
            ]
            mongo_up = 1
        except Exception:
            log.warning("metrics: the database did not answer")
            mongo_up = 0
        gauges.append(gauge("trainops_mongodb_up", "1 when the service's database answers.",
                            ["service"], [(name, mongo_up)]))
        try:
            with _bounded(), Connection(config["AMQP_URI"], connect_timeout=BROKER_TIMEOUT) as connection:
                connection.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT)
                queues = broker_queues(name, topology.subscriptions_of(type(self)), connection)
                strays = stray_messages(connection)
            broker_up = 1
        except Exception:
            log.warning("metrics: the broker did not answer")
            queues, strays, broker_up = [], [], 0
        gauges.append(gauge("trainops_broker_up", "1 when the broker accepts a connection.",
                            ["service"], [(name, broker_up)]))
        if queues:
            gauges.append(gauge("trainops_queue_messages", "Messages ready in a queue.",
                                ["service", "queue"], [(name, q, m) for q, m, _ in queues]))
            gauges.append(gauge("trainops_queue_consumers", "Consumers attached to a queue.",
                                ["service", "queue"], [(name, q, c) for q, _, c in queues]))
        if strays:
            # Every service reports the same two queues (any one answering is enough): alerts take the max.
            gauges.append(gauge("trainops_stray_messages",
                                "Messages that went nowhere: published with no queue bound (trainops.unrouted) or "
                                "given up after too many deliveries (trainops.undeliverable).",
                                ["service", "queue"], [(name, q, m) for q, m in strays]))
        try:
            gauges += self.domain_gauges() or []
        except Exception:
            log.exception("metrics: domain_gauges failed")
        return {"gauges": gauges, "counters": exported_text(name)}

    @rpc
    def dead_letters(self, actor, filters=None):
        """This service's dead letters, newest first: the consumer, the error, the attempts and the
        original event. Filters: `event_type`, `status` (parked|replayed). Operator only."""
        auth.require_operator(actor, reading=True)
        filters = filters or {}
        query = {k: filters[k] for k in ("event_type", "status") if filters.get(k)}
        docs = self.db.dead_letters.find(query).sort("parked_at", DESCENDING).limit(DEAD_LETTER_PAGE)
        return [public_dead_letter(d) for d in docs]

    @rpc
    def replay_dead_letters(self, actor, selector):
        """Send dead letters back to this service's queue: `{"ids": [...]}` (any status), or
        `{"event_type": "..."}` (every parked one of that kind). An event handled since is skipped by
        the consumer, so replaying twice has the effect of once. Returns the replayed ids; 404 for an
        unknown id."""
        auth.require_operator(actor)
        selector = selector or {}
        db = self.db.db
        if selector.get("ids"):
            ids = [str(i) for i in selector["ids"]]
            known = {d["_id"] for d in db.dead_letters.find({"_id": {"$in": ids}}, {"_id": 1})}
            for letter_id in ids:
                if letter_id not in known:
                    raise not_found("dead_letter", letter_id)
        elif selector.get("event_type"):
            ids = [d["_id"] for d in db.dead_letters.find(
                {"status": "parked", "event_type": selector["event_type"]}, {"_id": 1}).sort("parked_at", ASCENDING)]
        else:
            raise invalid({"event_type": ["Give ids or an event_type."]})
        if not ids:
            return {"replayed": []}
        publisher = ConfirmedPublisher(config["AMQP_URI"])
        try:
            for letter_id in ids:
                replay_dead_letter(db, letter_id, publisher=publisher)
        finally:
            publisher.close()
        log.info("replayed %d dead letters", len(ids), extra={"fields": {"outcome": "replayed", "count": len(ids)}})
        return {"replayed": ids}

    @rpc
    def events(self, actor, correlation_id):
        """What this service did under a correlation id: events it wrote (and when they were
        published), events it handled, dead letters, and the service's own audit records."""
        auth.require_operator(actor, reading=True)
        name = self.name
        db = self.db.db
        trail = []
        for doc in emitted_events(db, {"correlation_id": correlation_id}):
            trail.append({"service": name, "kind": "published" if doc.get("state") == "published" else "pending",
                          "event_id": doc["_id"], "event_type": doc.get("type"), "at": doc.get("created_at"),
                          "published_at": doc.get("published_at")})
        for doc in db.handled_events.find({"correlation_id": correlation_id}):
            trail.append({"service": name, "kind": "handled", "event_id": doc["_id"],
                          "event_type": doc.get("event_type"), "at": doc.get("handled_at")})
        for doc in db.dead_letters.find({"correlation_id": correlation_id}):
            trail.append({"service": name, "kind": "dead_lettered", "event_id": doc.get("event_id"),
                          "event_type": doc.get("event_type"), "at": doc.get("parked_at"),
                          "dead_letter_id": doc["_id"], "error": doc.get("error"), "status": doc.get("status")})
        for record in self.audit_records(correlation_id) or []:
            trail.append(dict(record, service=name))
        return sorted(trail, key=lambda r: r["at"] or utcnow())
