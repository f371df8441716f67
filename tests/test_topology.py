"""The RabbitMQ topology: what the platform declares at start is what deploy/ ships, and every
service's handlers match the subscription table."""
import json
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


def test_every_service_handles_exactly_its_subscriptions():
    from services.notifications.service import NotificationsService
    from services.partners.service import PartnersService
    from services.registration.service import RegistrationService
    from services.scheduling.service import SchedulingService
    from backbone.subscriber import Subscriber
    for cls in (PartnersService, SchedulingService, RegistrationService, NotificationsService):
        handled = sorted(
            e.event_type for member in vars(cls).values()
            for e in getattr(member, "nameko_entrypoints", ()) if isinstance(e, Subscriber))
        assert handled == sorted(topology.SUBSCRIPTIONS[cls.name]), cls.name
