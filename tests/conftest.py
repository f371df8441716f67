"""Test fixtures: the real things, started once per run.

Monkey-patch first: nameko runs on eventlet and plain pytest hangs without it.

When to replace and when to use the real thing: unit tests of one service replace its dependencies
with nameko's `worker_factory`; everything that crosses a process boundary in production (RabbitMQ,
MongoDB over TCP, SMTP, the SMS gateway) is real here: the local RabbitMQ in a vhost of this run,
SecantusDB started for the run, the aiosmtpd sink and the local SMS gateway. Each test gets its own
database names, and the vhost's trainops queues are emptied before each test.
"""
import warnings

# nameko 3 runs on eventlet, which now warns on import that it is deprecated: known, and not ours to fix.
warnings.filterwarnings("ignore", message="\nEventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()

import atexit
import os
import shutil
import tempfile
import uuid

import pytest

import contracts  # noqa: E402,F401  (every event contract, for tests that make events themselves)

from tests.helpers import AMQP_BASE, TEST_SECRETS  # noqa: E402
TEST_VHOST = "trainops-test-{}".format(os.getpid())
# The services' heartbeat files (ops/heartbeat.py): this run's, not /tmp's.
HEARTBEATS = tempfile.mkdtemp(prefix="trainops-heartbeats-")
atexit.register(shutil.rmtree, HEARTBEATS, True)


@pytest.fixture(scope="session")
def mongo(tmp_path_factory):
    if os.environ.get("TEST_MONGO_URI"):
        yield os.environ["TEST_MONGO_URI"]
        return
    from devstack.mongo import EmbeddedMongo
    server = EmbeddedMongo(log_path=str(tmp_path_factory.mktemp("mongo") / "secantusd.log"))
    server.start()
    yield server.uri
    server.stop()


@pytest.fixture(scope="session")
def amqp_uri():
    from devstack.rabbit import delete_vhost, ensure_rabbitmq, make_vhost
    ensure_rabbitmq(AMQP_BASE)
    make_vhost(TEST_VHOST)
    yield AMQP_BASE.rstrip("/") + "/" + TEST_VHOST
    delete_vhost(TEST_VHOST)


@pytest.fixture(scope="session")
def smtp_sink(tmp_path_factory):
    from devstack.smtp_sink import SmtpSink
    mail = tmp_path_factory.mktemp("mail")
    sink = SmtpSink(directory=str(mail), log_path=str(mail.parent / "smtp-sink.log"))
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def sms_gateway(tmp_path_factory):
    from devstack.sms_gateway import SmsGateway
    gateway = SmsGateway(directory=str(tmp_path_factory.mktemp("sms")))
    gateway.start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="session")
def sms_fallback(tmp_path_factory):
    """A second SMS provider (its own path and journal), for the fallback when the first is down."""
    from devstack.sms_gateway import SmsGateway
    gateway = SmsGateway(directory=str(tmp_path_factory.mktemp("sms-fallback")), path_prefix="/backup")
    gateway.start()
    yield gateway
    gateway.stop()


def service_config(mongo, amqp_uri, smtp_sink, sms_gateway):
    """The repo's config.yml with this run's servers, fresh database names, fast retries and no rate
    limits (the scenarios send bursts from one address with one token; the limits have tests of
    their own)."""
    from backbone.config import load
    from devstack import free_port
    port = free_port()
    data = load(
        AMQP_URI=amqp_uri,
        MONGO_URI=mongo,
        DATABASE_PREFIX="t{}".format(uuid.uuid4().hex[:10]),
        WEB_SERVER_ADDRESS="127.0.0.1:{}".format(port),
        OPERATOR_TOKEN="test-operator-token",
    )
    data["EVENTS"].update(retry_delays=[0.2, 0.4, 0.8], relay_poll_seconds=0.1, lease_seconds=2)
    data["HTTP"].update(rate_per_client=0, rate_per_token=0)
    data["SMTP"].update(host="127.0.0.1", port=smtp_sink.port)
    data["SMS"].update(gateway_url=sms_gateway.url)
    data["GATEWAY_URL"] = "http://127.0.0.1:{}".format(port)
    # Links in emails and calendar URLs lead to this test's gateway.
    data["PUBLIC_URL"] = data["GATEWAY_URL"]
    # config.yml has no secret: each run makes its own, as `make run` does.
    data.update(FEED_SECRET=TEST_SECRETS["FEED_SECRET"])
    data["NOTIFICATIONS"]["unsubscribe_secret"] = TEST_SECRETS["UNSUBSCRIBE_SECRET"]
    data["HEARTBEAT_DIR"] = HEARTBEATS
    return data


@pytest.fixture
def app_config(mongo, amqp_uri, smtp_sink, sms_gateway):
    """nameko's global config for one test (`service_config`), with an empty set of trainops queues."""
    import nameko
    data = service_config(mongo, amqp_uri, smtp_sink, sms_gateway)
    with nameko.config.patch(data, clear=True):
        _empty_queues(amqp_uri)
        yield data


@pytest.fixture(scope="module")
def module_system(mongo, amqp_uri, smtp_sink, sms_gateway):
    """All four services and the gateway for a whole test module (the fuzzing suite sends thousands
    of requests; one system serves them all). Yields the config."""
    import logging
    import nameko
    from nameko.runners import ServiceRunner
    from backbone.config import service_classes
    from backbone.logs import Refusals
    from gateway.service import GatewayService
    data = service_config(mongo, amqp_uri, smtp_sink, sms_gateway)
    refusals = Refusals()  # thousands of 4xx answers are no errors to log, as config.yml's LOGGING says
    logging.getLogger("nameko.containers").addFilter(refusals)
    with nameko.config.patch(data, clear=True):
        _empty_queues(amqp_uri)
        runner = ServiceRunner()
        for cls in list(service_classes().values()) + [GatewayService]:
            runner.add_service(cls)
        runner.start()
        try:
            yield data
        finally:
            runner.kill()
            logging.getLogger("nameko.containers").removeFilter(refusals)


def _empty_queues(amqp_uri):
    """Every service's queues, deleted and declared again from the services' code, as deploy does
    before anything publishes."""
    from kombu import Connection
    from backbone import topology
    with Connection(amqp_uri) as connection:
        topology.delete_queues(connection)
        topology.declare(connection)


@pytest.fixture
def db(app_config):
    """Read-only access to any service's database, for asserting outcomes."""
    from backbone.database import mongo_client
    client = mongo_client(app_config["MONGO_URI"])
    yield lambda service: client["{}_{}".format(app_config["DATABASE_PREFIX"], service)]
    client.close()


@pytest.fixture
def system(runner_factory, app_config):
    """All four services and the gateway, as real containers on the real broker and database."""
    from gateway.service import GatewayService
    from services.notifications.service import NotificationsService
    from services.partners.service import PartnersService
    from services.registration.service import RegistrationService
    from services.scheduling.service import SchedulingService
    runner = runner_factory(
        PartnersService, SchedulingService, RegistrationService, NotificationsService, GatewayService)
    runner.start()
    return runner


@pytest.fixture
def operator(system, app_config):
    from tests.helpers import Client
    return Client(app_config["GATEWAY_URL"], app_config["OPERATOR_TOKEN"])


@pytest.fixture
def anonymous(system, app_config):
    from tests.helpers import Client
    return Client(app_config["GATEWAY_URL"])


@pytest.fixture
def programme(operator, db):
    """SIU, its agreement and offering, the Banking University's venue and the first class's units."""
    from tests.helpers import Programme
    return Programme(operator, db)


@pytest.fixture
def registration_only(runner_factory, app_config, db):
    """The programme without the notifications service: for scenarios about seats alone, so that
    thousands of confirmation emails don't share the test's CPU with the race being measured."""
    from gateway.service import GatewayService
    from services.partners.service import PartnersService
    from services.registration.service import RegistrationService
    from services.scheduling.service import SchedulingService
    from tests.helpers import Client, Programme
    runner = runner_factory(PartnersService, SchedulingService, RegistrationService, GatewayService)
    runner.start()
    return Programme(Client(app_config["GATEWAY_URL"], app_config["OPERATOR_TOKEN"]), db)


@pytest.fixture
def poison(monkeypatch):
    """Scheduling's handler of offering_withdrawn fails until `poison.fix()`."""
    from services.scheduling.service import SchedulingService
    from tests.helpers import Poison
    return Poison(monkeypatch, SchedulingService, "offering_withdrawn")
