"""What operators need from every service, the same way in each: health, metrics, dead letters and the
audit trail. A service inherits it (`class RegistrationService(Operations):`) and declares its `store`
as usual; nameko finds these RPCs on the base class.

Every service also runs a `Heartbeat`: the file its pod's probe reads (`backbone/heartbeat.py`), and a
`MetricsServer`: its process's counters on `METRICS_PORT`, for Prometheus to scrape every replica
(`backbone/metrics.py`).

A service may add its own numbers to its metrics by overriding `domain_metrics()` (text lines in the
Prometheus format; `backbone.metrics.gauge` and `render` build them), and its own records to the audit
trail by overriding `audit_records(correlation_id)`.
"""
import functools
import json
import logging

from kombu import Connection
from nameko import config
from pymongo import ASCENDING, DESCENDING

from backbone import auth, metrics, topology
from backbone.config import events_setting
from backbone.errors import invalid, not_found
from backbone.heartbeat import Heartbeat
from backbone.rpc import rpc
from backbone.store import ConfirmedPublisher, emitted_events, utcnow
from backbone.subscriber import replay_dead_letter

log = logging.getLogger(__name__)

# A health check answers well inside the gateway's 2 s: a broker that does not accept a connection
# within this is reported down, not waited for.
BROKER_TIMEOUT = 1.0
DEAD_LETTER_PAGE = 200


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


def public_dead_letter(doc):
    try:
        event = json.loads(doc.get("body") or "")
    except ValueError:
        event = doc.get("body")
    out = {k: doc.get(k) for k in ("consumer", "event_id", "event_type", "correlation_id", "error", "attempts",
                                   "status", "parked_at", "replayed_at")}
    out.update(id=doc["_id"], replays=doc.get("replays", 0), event=event)
    return out


def broker_queues(service, connection):
    """(queue, messages, consumers) of the service's queues, asked passively (nothing is created)."""
    if not topology.SUBSCRIPTIONS.get(service):
        return []
    rows = []
    for queue in topology.service_queues(service):
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


def health_report(name, db, connection=None):
    """What the `health` RPC answers, for the service `name` with its database `db`. The same checks
    feed the heartbeat file of the pod's probe (`backbone/heartbeat.py`), which passes the broker
    `connection` it keeps between checks; without one, the check opens its own."""
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
        if connection is None:
            with Connection(config["AMQP_URI"], connect_timeout=BROKER_TIMEOUT) as connection:
                result["queues"] = _broker_check(name, connection)
        else:
            result["queues"] = _broker_check(name, connection)
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = "down: {}".format(type(exc).__name__)
    result["checks"] = checks
    if checks["mongodb"] != "ok" or checks["broker"] != "ok":
        result["status"] = "down"
    else:
        result["status"] = "ok" if checks["outbox"] == "ok" else "degraded"
    return result


def _broker_check(name, connection):
    connection.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT)
    # A round trip, so that a kept connection the broker has dropped is found out here.
    connection.channel().close()
    return [{"queue": q, "messages": m, "consumers": c} for q, m, c in broker_queues(name, connection)]


RPCS = ("health", "metrics", "dead_letters", "replay_dead_letters", "events")


def _exposed(method):
    """A copy of `method` registered as an RPC entrypoint of one service class."""
    @functools.wraps(method)
    def entrypoint(self, *args, **kwargs):
        return method(self, *args, **kwargs)
    return rpc(entrypoint)


class Operations:
    """Health, metrics, dead letters and the audit trail of the service that inherits it.

    The RPCs are attached to each subclass as it is defined, not decorated here: `nameko run
    services.x.service` runs every class in the module that has entrypoints, and this base class,
    imported there, must not look like a service itself. A subclass that defines one of them keeps its own.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in RPCS:
            if name not in cls.__dict__:
                setattr(cls, name, _exposed(getattr(Operations, name)))
        # The file the pod's probe reads (backbone/probe.py): this process's health, every few seconds.
        if "heartbeat" not in cls.__dict__:
            cls.heartbeat = Heartbeat(health_report)
        # This process's own counters on METRICS_PORT, once per process (off when it is empty).
        if "metrics_server" not in cls.__dict__:
            cls.metrics_server = metrics.MetricsServer()

    # -- overridable hooks ------------------------------------------------------------------------------

    def domain_metrics(self):
        """Extra metric lines (Prometheus text) about this service's own data; none by default."""
        return ""

    def audit_records(self, correlation_id):
        """Extra audit-trail entries of this service for a correlation id (dicts with at least `at`
        and `kind`); none by default."""
        return []

    # -- health ---------------------------------------------------------------------------------------

    def health(self):
        """`status` ok when MongoDB and the broker answer and no event has waited in the outbox for
        longer than `outbox_stall_seconds`; `down` when MongoDB or the broker fail, `degraded` when only
        the outbox is stalled. `checks` names each check's result; with the outbox backlog, the age of
        the oldest event not yet published, and the depth of the service's queues."""
        return health_report(self.name, self.store.db)

    # -- metrics --------------------------------------------------------------------------------------

    def metrics(self):
        """This service's Prometheus text: computed now, its outbox backlog, parked dead letters, queue
        depths and `domain_metrics`; and its event counters and handler latencies unless its processes
        serve those themselves on `METRICS_PORT` (then any replica's answer would be a fraction)."""
        name = self.name
        families = []
        try:
            state = outbox_state(self.store.db)
            families += [
                metrics.gauge("trainops_outbox_backlog", "Events written but not yet published.",
                              ["service"], [(name, state["outbox_backlog"])]),
                metrics.gauge("trainops_outbox_oldest_pending_seconds",
                              "Age of the oldest event not yet published (0 when none).",
                              ["service"], [(name, state["oldest_pending_seconds"])]),
                metrics.gauge("trainops_dead_letters", "Dead letters parked, waiting for an operator.",
                              ["service"], [(name, self.store.db.dead_letters.count_documents({"status": "parked"}))]),
            ]
            mongo_up = 1
        except Exception:
            log.warning("metrics: the database did not answer")
            mongo_up = 0
        families.append(metrics.gauge("trainops_mongodb_up", "1 when the service's database answers.",
                                      ["service"], [(name, mongo_up)]))
        try:
            with Connection(config["AMQP_URI"], connect_timeout=BROKER_TIMEOUT) as connection:
                connection.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT)
                queues = broker_queues(name, connection)
            broker_up = 1
        except Exception:
            log.warning("metrics: the broker did not answer")
            queues, broker_up = [], 0
        families.append(metrics.gauge("trainops_broker_up", "1 when the broker accepts a connection.",
                                      ["service"], [(name, broker_up)]))
        if queues:
            families.append(metrics.gauge("trainops_queue_messages", "Messages ready in a queue.",
                                          ["service", "queue"], [(name, q, m) for q, m, _ in queues]))
            families.append(metrics.gauge("trainops_queue_consumers", "Consumers attached to a queue.",
                                          ["service", "queue"], [(name, q, c) for q, _, c in queues]))
        try:
            extra = self.domain_metrics() or ""
        except Exception:
            log.exception("metrics: domain_metrics failed")
            extra = ""
        return metrics.exposition(name, families, extra)

    # -- dead letters ---------------------------------------------------------------------------------

    def dead_letters(self, actor, filters=None):
        """This service's dead letters, newest first: the consumer, the error, the attempts and the
        original event. Filters: `event_type`, `status` (parked|replayed). Operator only."""
        auth.require_operator(actor)
        filters = filters or {}
        query = {k: filters[k] for k in ("event_type", "status") if filters.get(k)}
        docs = self.store.db.dead_letters.find(query).sort("parked_at", DESCENDING).limit(DEAD_LETTER_PAGE)
        return [public_dead_letter(d) for d in docs]

    def replay_dead_letters(self, actor, selector):
        """Send dead letters back to this service's queue: `{"ids": [...]}` (any status), or
        `{"event_type": "..."}` (every parked one of that kind). An event handled since is skipped by
        the consumer, so replaying twice has the effect of once. Returns the replayed ids; 404 for an
        unknown id."""
        auth.require_operator(actor)
        selector = selector or {}
        db = self.store.db
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

    # -- audit trail ----------------------------------------------------------------------------------

    def events(self, actor, correlation_id):
        """What this service did under a correlation id: events it wrote (and when they were
        published), events it handled, dead letters, and the service's own audit records."""
        auth.require_operator(actor)
        name = self.name
        db = self.store.db
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
