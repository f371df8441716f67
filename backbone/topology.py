"""Who listens to what, and the RabbitMQ objects that make it durable.

A service's subscriptions are its `@subscribe` handlers: nothing else says what it handles. Every
consumer service has one durable queue, `trainops.<service>`, bound to the topic exchange with one
routing key per event type it handles (routing key = event type). A failed event goes to one of the
service's delay queues, `trainops.<service>.retry.<ms>ms`, whose TTL sends it back to the service queue
when it runs out (at least once on quorum queues: `_retry_hop_arguments`). Anything published that no service subscribes to lands in `trainops.unrouted` rather
than vanishing. On a cluster, the `trainops-redelivery-limit` policy (deploy/) sends a message that was
delivered too many times without an answer (a consumer that dies on it) to `trainops.undeliverable`,
at least once, instead of letting quorum queues drop it.

The whole topology is declared before anything publishes: at deploy time from the services' code
(`python -m backbone.topology`, or the definitions file it prints, loaded by the broker at boot), by
`make run` and the tests before they start services, and by each consumer for its own queues when it
starts and whenever it reconnects. So an event published while its consumer is down waits in the
consumer's queue.
"""
from kombu import Connection, Exchange, Queue, binding
from nameko import config

from backbone.config import events_setting, service_classes

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


def subscriptions_of(service_cls):
    """The event types a service class handles: its `@subscribe` entrypoints, sorted."""
    from backbone.subscriber import Subscriber
    return sorted({entrypoint.event_type for name in dir(service_cls)
                   for entrypoint in getattr(getattr(service_cls, name), "nameko_entrypoints", ())
                   if isinstance(entrypoint, Subscriber)})


def subscriptions(classes=None):
    """{service: event types} of the given service classes, or of config.yml's SERVICES."""
    classes = service_classes().values() if classes is None else classes
    return {cls.name: subscriptions_of(cls) for cls in classes}


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


def _retry_hop_arguments():
    """The hop from a delay queue back to the service's queue is dead-lettering, at most once by
    default: a node lost while an event waits for its retry could drop it. Quorum queues dead-letter
    at least once (the message stays in the delay queue until the service's queue confirms it has
    it), which needs `reject-publish` overflow; a repeat is then skipped by the consumer."""
    if config.get("QUEUE_TYPE", "classic") != "quorum":
        return {}
    return {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}


def rpc_queue_arguments():
    """nameko's `rpc-<service>` request queues: quorum where the events' queues are (replicated on
    three nodes, so losing the one a classic queue lived on no longer takes a service's API away)."""
    kind = config.get("QUEUE_TYPE", "classic")
    return {"x-queue-type": kind} if kind != "classic" else {}


def events_exchange():
    return Exchange(
        exchange_name(), type="topic", durable=True,
        arguments={"alternate-exchange": UNROUTED},
    )


def service_queues(service, event_types):
    """The service's queue bound to `event_types`, then its delay queues (one per retry step)."""
    exchange = events_exchange()
    main = Queue(
        queue_name(service), durable=True, queue_arguments=_queue_arguments(),
        bindings=[binding(exchange, routing_key=type_) for type_ in event_types],
    )
    delays = [
        Queue(
            retry_queue_name(service, delay), durable=True,
            queue_arguments=dict(_queue_arguments(), **{
                "x-message-ttl": delay,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": queue_name(service),
            }, **_retry_hop_arguments()),
        )
        for delay in retry_delays_ms()
    ]
    return [main] + delays


def declare_exchanges(connection):
    """The events exchange and the queues that keep what nobody takes (what a producer needs)."""
    channel = connection.default_channel
    for name in (UNROUTED, UNDELIVERABLE):
        Exchange(name, type="fanout", durable=True)(channel).declare()
        Queue(name, exchange=Exchange(name, type="fanout"), durable=True,
              queue_arguments=_queue_arguments())(channel).declare()
    events_exchange()(channel).declare()


def declare(connection, subscribed=None):
    """Declare the exchanges and every subscriber's queues (idempotent). `subscribed`: {service:
    event types}, by default every configured service's (`subscriptions()`)."""
    declare_exchanges(connection)
    channel = connection.default_channel
    for service, types in (subscriptions() if subscribed is None else subscribed).items():
        if types:
            for queue in service_queues(service, types):
                queue(channel).declare()


def delete_queues(connection, services=None):
    """Remove the trainops queues of `services` (by default every configured one), with the unrouted
    and undeliverable ones: tests and the benchmark start each scenario empty."""
    channel = connection.channel()
    for service in (list(service_classes()) if services is None else services):
        channel.queue_delete(queue_name(service))
        for delay in retry_delays_ms():
            channel.queue_delete(retry_queue_name(service, delay))
    channel.queue_delete(UNROUTED)
    channel.queue_delete(UNDELIVERABLE)
    channel.close()


def definitions(vhost="/", subscribed=None):
    """The same topology as a RabbitMQ definitions file (deploy/rabbitmq/definitions.json), for a
    broker that should have every queue before the first service starts."""
    subscribed = subscriptions() if subscribed is None else subscribed

    def queue(name, arguments):
        return {"name": name, "vhost": vhost, "durable": True, "auto_delete": False, "arguments": arguments}

    def fanout(name):
        return {"name": name, "vhost": vhost, "type": "fanout", "durable": True, "auto_delete": False,
                "internal": False, "arguments": {}}

    exchange = events_exchange()
    consumers = sorted(service for service, types in subscribed.items() if types)
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
    # Who may do what: a user per service and one for the gateway (backbone/grants.py).
    from backbone import grants
    out.update(grants.definitions(vhost, subscribed))
    for service in consumers:
        for declared in service_queues(service, subscribed[service]):
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
