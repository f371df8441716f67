"""The RabbitMQ topology: what the platform declares at start is what deploy/ ships, and every
service's handlers match the subscription table."""
import collections
import json
import os
from pathlib import Path

import nameko

from backbone import topology
from backbone.config import load

DEFINITIONS = Path(__file__).resolve().parent.parent / "deploy" / "rabbitmq" / "definitions.json"


def test_the_deploy_definitions_are_the_declared_topology_with_quorum_queues():
    with nameko.config.patch(load(QUEUE_TYPE="quorum"), clear=True):
        assert json.loads(DEFINITIONS.read_text()) == topology.definitions()
    queues = {q["name"]: q["arguments"] for q in json.loads(DEFINITIONS.read_text())["queues"]}
    assert queues["trainops.registration"] == {"x-queue-type": "quorum"}
    assert queues["trainops.registration.retry.1000ms"]["x-dead-letter-routing-key"] == "trainops.registration"


def test_a_services_subscriptions_are_its_subscribe_handlers_and_bind_its_queue():
    with nameko.config.patch(load(), clear=True):
        subscribed = topology.subscriptions()
        # Partners hears one event only: an official's erasure (its dead letters may name them).
        assert subscribed["partners"] == ["official_erased"]
        assert subscribed["registration"] == [
            "session_cancelled", "session_capacity_changed", "session_rescheduled", "session_scheduled"]
        assert all("official_erased" in subscribed[s] for s in ("partners", "scheduling", "notifications"))
        assert "registration_confirmed" in subscribed["notifications"]
        queue = topology.service_queues("registration", subscribed["registration"])[0]
        assert sorted(b.routing_key for b in queue.bindings) == subscribed["registration"]


def test_what_the_platform_declares_on_a_broker_is_what_the_definitions_file_holds():
    """Declared for real (quorum queues, a vhost of its own), read back from the broker with
    rabbitmqctl, and compared with deploy/rabbitmq/definitions.json; then the file's policies are set on
    that vhost, and each must govern exactly its queues."""
    from kombu import Connection
    from tests.helpers import AMQP_BASE
    from devstack.rabbit import _rabbitmqctl, delete_vhost, make_vhost
    vhost = "trainops-topology-{}".format(os.getpid())
    make_vhost(vhost)
    try:
        with nameko.config.patch(load(QUEUE_TYPE="quorum"), clear=True):
            subscribed = topology.subscriptions()
            with Connection(AMQP_BASE.rstrip("/") + "/" + vhost) as connection:
                topology.declare(connection)

        def listed(kind, *columns):
            return json.loads(_rabbitmqctl(kind, "-p", vhost, *columns, "--formatter", "json", "--silent") or "[]")

        def arguments(triples):  # rabbitmqctl lists them as [name, AMQP type, value]
            return {name: value for name, _, value in triples}

        shipped = json.loads(DEFINITIONS.read_text())
        queues = {q["name"]: (q["durable"], arguments(q["arguments"])) for q in listed("list_queues", "name", "durable", "arguments")}
        assert queues == {q["name"]: (True, q["arguments"]) for q in shipped["queues"]}
        exchanges = {e["name"]: (e["type"], arguments(e["arguments"])) for e in listed("list_exchanges", "name", "type", "arguments")
                     if e["name"].startswith("trainops.")}
        assert exchanges == {e["name"]: (e["type"], e["arguments"]) for e in shipped["exchanges"]}
        bindings = sorted((b["source_name"], b["destination_name"], b["routing_key"])
                          for b in listed("list_bindings", "source_name", "destination_name", "routing_key")
                          if b["source_name"])  # the default exchange binds every queue to itself
        assert bindings == sorted((b["source"], b["destination"], b["routing_key"]) for b in shipped["bindings"])

        for policy in shipped["policies"]:
            _rabbitmqctl("set_policy", "-p", vhost, "--apply-to", policy["apply-to"], "--priority",
                         str(policy["priority"]), policy["name"], policy["pattern"], json.dumps(policy["definition"]))
        governed = collections.defaultdict(set)
        for q in listed("list_queues", "name", "policy"):
            governed[q["policy"]].add(q["name"])
        assert governed["trainops-redelivery-limit"] == {
            topology.queue_name(s) for s, types in subscribed.items() if types}
        assert governed["trainops-unrouted-bounded"] == {topology.UNROUTED}
    finally:
        delete_vhost(vhost)
