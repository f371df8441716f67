"""Who listens to what, and the RabbitMQ objects that make it durable.

Every consumer service has one durable queue, `trainops.<service>`, bound to the topic exchange with
one routing key per event type it handles (routing key = event type). A failed event goes to one of the
service's delay queues, `trainops.<service>.retry.<ms>ms`, whose TTL sends it back to the service queue
when it runs out. Anything published that no service subscribes to lands in `trainops.unrouted` rather
than vanishing. On a cluster, the `trainops-redelivery-limit` policy (deploy/) sends a message that was
delivered too many times without an answer (a consumer that dies on it) to `trainops.undeliverable`,
at least once, instead of letting quorum queues drop it.

Every producer declares the whole topology before it publishes (and `python -m backbone.topology` does
it at deploy time), so an event published while its consumer is down waits in the consumer's queue.
"""
from kombu import Connection, Exchange, Queue, binding
from nameko import config

from backbone.config import events_setting

# The subscription contract. A service's handlers must match its line here (checked at start).
SUBSCRIPTIONS = {
    "partners": [],
    "scheduling": [
        "offering_published", "offering_updated", "offering_withdrawn",
        "agreement_expired", "agreement_terminated",
    ],
    "registration": ["session_scheduled", "session_rescheduled", "session_capacity_changed", "session_cancelled"],
    "notifications": [
        "registration_confirmed", "registration_waitlisted", "registration_promoted", "registration_cancelled",
        "registration_rescheduled", "course_completed",
        "partner_onboarded", "offering_published", "offering_withdrawn", "agreement_expired",
    ],
}

UNROUTED = "trainops.unrouted"
UNDELIVERABLE = "trainops.undeliverable"
# Deliveries of one message without ack before the broker gives up on it. Handler failures never count
# here (the subscriber acks them into its retry queues); what counts is a consumer that dies on the
# message, and the subscriber handing it back about once a second while its database is away, so this
# outlasts a few minutes of MongoDB failover. (RabbitMQ 4 quorum queues otherwise drop after 20.)
REDELIVERY_LIMIT = 300
# Events nobody subscribes to yet (notification_sent/failed are for the record and later consumers):
# the unrouted queue keeps the newest this many for inspection instead of growing for ever.
UNROUTED_KEPT = 100000


def exchange_name():
    return events_setting("exchange", "trainops.events")


def retry_delays_ms():
    return [int(float(seconds) * 1000) for seconds in events_setting("retry_delays", [1, 5, 30])]


def queue_name(service):
    return "trainops.{}".format(service)


def retry_queue_name(service, delay_ms):
    return "{}.retry.{}ms".format(queue_name(service), delay_ms)


def _queue_arguments():
    kind = config.get("QUEUE_TYPE", "classic")
    return {"x-queue-type": kind} if kind != "classic" else {}


def events_exchange():
    return Exchange(
        exchange_name(), type="topic", durable=True,
        arguments={"alternate-exchange": UNROUTED},
    )


def service_queues(service):
    """The service's queue with its bindings, then its delay queues (one per retry step)."""
    exchange = events_exchange()
    main = Queue(
        queue_name(service), durable=True, queue_arguments=_queue_arguments(),
        bindings=[binding(exchange, routing_key=type_) for type_ in SUBSCRIPTIONS[service]],
    )
    delays = [
        Queue(
            retry_queue_name(service, delay), durable=True,
            queue_arguments=dict(_queue_arguments(), **{
                "x-message-ttl": delay,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": queue_name(service),
            }),
        )
        for delay in retry_delays_ms()
    ]
    return [main] + delays


def declare(connection):
    """Declare the exchange and every subscriber's queues (idempotent)."""
    channel = connection.default_channel
    for name in (UNROUTED, UNDELIVERABLE):
        Exchange(name, type="fanout", durable=True)(channel).declare()
        Queue(name, exchange=Exchange(name, type="fanout"), durable=True,
              queue_arguments=_queue_arguments())(channel).declare()
    events_exchange()(channel).declare()
    for service, types in SUBSCRIPTIONS.items():
        if types:
            for queue in service_queues(service):
                queue(channel).declare()


def delete_queues(connection):
    """Remove every trainops queue (tests and the benchmark start each scenario empty)."""
    channel = connection.channel()
    for service in SUBSCRIPTIONS:
        channel.queue_delete(queue_name(service))
        for delay in retry_delays_ms():
            channel.queue_delete(retry_queue_name(service, delay))
    channel.queue_delete(UNROUTED)
    channel.queue_delete(UNDELIVERABLE)
    channel.close()


def definitions(vhost="/"):
    """The same topology as a RabbitMQ definitions file (deploy/rabbitmq/definitions.json), for a
    broker that should have every queue before the first service starts."""
    def queue(name, arguments):
        return {"name": name, "vhost": vhost, "durable": True, "auto_delete": False, "arguments": arguments}

    def fanout(name):
        return {"name": name, "vhost": vhost, "type": "fanout", "durable": True, "auto_delete": False,
                "internal": False, "arguments": {}}

    exchange = events_exchange()
    consumers = sorted(service for service, types in SUBSCRIPTIONS.items() if types)
    out = {
        "exchanges": [
            fanout(UNROUTED), fanout(UNDELIVERABLE),
            {"name": exchange.name, "vhost": vhost, "type": "topic", "durable": True, "auto_delete": False,
             "internal": False, "arguments": dict(exchange.arguments)},
        ],
        "queues": [queue(UNROUTED, _queue_arguments()), queue(UNDELIVERABLE, _queue_arguments())],
        "bindings": [{"source": name, "vhost": vhost, "destination": name, "destination_type": "queue",
                      "routing_key": "", "arguments": {}} for name in (UNROUTED, UNDELIVERABLE)],
        # Only the consumers' own queues: the delay queues dead-letter by their own arguments.
        "policies": [{
            "vhost": vhost, "name": "trainops-redelivery-limit", "apply-to": "queues", "priority": 0,
            "pattern": "^trainops\\.({})$".format("|".join(consumers)),
            "definition": {"delivery-limit": REDELIVERY_LIMIT, "dead-letter-exchange": UNDELIVERABLE,
                           "dead-letter-strategy": "at-least-once", "overflow": "reject-publish"},
        }, {
            "vhost": vhost, "name": "trainops-unrouted-bounded", "apply-to": "queues", "priority": 0,
            "pattern": "^{}$".format(UNROUTED.replace(".", "\\.")),
            "definition": {"max-length": UNROUTED_KEPT, "overflow": "drop-head"},
        }],
    }
    for service in consumers:
        for declared in service_queues(service):
            out["queues"].append(queue(declared.name, dict(declared.queue_arguments or {})))
            for bound in sorted(declared.bindings or (), key=lambda b: b.routing_key):
                out["bindings"].append({
                    "source": bound.exchange.name, "vhost": vhost, "destination": declared.name,
                    "destination_type": "queue", "routing_key": bound.routing_key, "arguments": {}})
    return out


def main():
    import argparse
    import json
    from backbone.config import install
    parser = argparse.ArgumentParser(description="Declare the trainops RabbitMQ topology.")
    parser.add_argument("--definitions", action="store_true",
                        help="print it as a RabbitMQ definitions file instead of declaring it")
    args = parser.parse_args()
    install()
    if args.definitions:
        print(json.dumps(definitions(), indent=2, ensure_ascii=False))
        return
    with Connection(config["AMQP_URI"]) as connection:
        declare(connection)
    print("topology declared on {}".format(exchange_name()))


if __name__ == "__main__":
    main()
