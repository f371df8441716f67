"""Who may do what on the broker: a RabbitMQ user per service and one for the gateway, each with the
least it needs, derived from the same code as the topology (deploy/rabbitmq/definitions.json carries
them; the users and their passwords come from the deployment's secrets).

A service's user may declare, bind, read and write only its own queues (`trainops.<service>` and its
retry queues, its RPC queue `rpc-<service>`), the shared exchanges it declares at start, and the
default exchange (its retries and replays go through it). Topic permissions narrow the two topic
exchanges by routing key: on `trainops.events` a service publishes only the event types its contract
module declares and binds only those it subscribes to; on nameko's RPC exchange a service publishes
only replies (a reply goes to the caller's reply queue, named by a uuid) and never a request, so a
service's credentials cannot call another service. Only the gateway's user sends RPC requests.

What stays open (README.md, "What an attacker with broker access can still do"): the default exchange
routes by queue name and RabbitMQ cannot narrow it by routing key, so a service's user can put a
message into another service's queue; and whoever holds the gateway's user can call every RPC with any
`actor`, as the services trust the actor that arrives over RPC.
"""
import re

from backbone import topology
from backbone.events import known_types, producer_of

RPC_EXCHANGE = "nameko-rpc"  # nameko's default (config RPC_EXCHANGE, which trainops does not set)
DEFAULT_EXCHANGE = "amq.default"  # how RabbitMQ names "" in its permission checks
UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
GATEWAY = "gateway"


def user_name(name, prefix="trainops"):
    """The broker user of a service (or of the gateway): `trainops-registration`."""
    return "{}-{}".format(prefix, name)


def _exactly(*alternatives):
    """A pattern matching exactly one of `alternatives` (regular expressions); none: nothing."""
    return "^({})$".format("|".join(alternatives)) if alternatives else "^$"


def _names(*names):
    return [re.escape(name) for name in names]


def produced(service):
    """The event types `service` publishes: those its contract module declares."""
    return sorted(t for t in known_types() if producer_of(t) == service)


def service_grants(service, subscribed):
    """(permissions, topic permissions) of a service's user, without user and vhost."""
    own_queue = re.escape(topology.queue_name(service)) + r"(\.retry\.[0-9]+ms)?"
    shared = _names(topology.exchange_name(), topology.UNROUTED, topology.UNDELIVERABLE)
    rpc = _names(RPC_EXCHANGE, "rpc-" + service)
    resources = shared + [own_queue] + rpc
    permissions = {"configure": _exactly(*resources),
                   "write": _exactly(*resources + _names(DEFAULT_EXCHANGE)),
                   "read": _exactly(*resources)}
    topics = [
        {"exchange": topology.exchange_name(), "write": _exactly(*_names(*produced(service))),
         "read": _exactly(*_names(*subscribed))},
        {"exchange": RPC_EXCHANGE, "write": _exactly(UUID), "read": _exactly(re.escape(service + ".*"))},
    ]
    return permissions, topics


def gateway_grants(services):
    """The gateway calls every service by RPC and does nothing else on the broker."""
    reply_queue = re.escape("rpc.reply-{}-".format(GATEWAY)) + UUID
    resources = _names(RPC_EXCHANGE) + [reply_queue]
    permissions = {"configure": _exactly(*resources), "write": _exactly(*resources), "read": _exactly(*resources)}
    calls = "({})\\.[A-Za-z_][A-Za-z0-9_]*".format("|".join(_names(*sorted(services))))
    topics = [{"exchange": RPC_EXCHANGE, "write": _exactly(calls), "read": _exactly(UUID)}]
    return permissions, topics


def definitions(vhost="/", subscribed=None, prefix="trainops"):
    """`permissions` and `topic_permissions` for a definitions file: every configured service's user
    and the gateway's (the users themselves are made from secrets at deploy time)."""
    subscribed = topology.subscriptions() if subscribed is None else subscribed
    permissions, topic_permissions = [], []
    every = [(service, service_grants(service, types)) for service, types in sorted(subscribed.items())]
    every.append((GATEWAY, gateway_grants(subscribed)))
    for name, (granted, topics) in every:
        user = user_name(name, prefix)
        permissions.append(dict({"user": user, "vhost": vhost}, **granted))
        topic_permissions += [dict({"user": user, "vhost": vhost}, **topic) for topic in topics]
    return {"permissions": permissions, "topic_permissions": topic_permissions}
