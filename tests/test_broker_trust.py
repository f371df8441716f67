"""Least privilege on the broker, on the real RabbitMQ: the permissions deploy/rabbitmq/definitions.json
carries (backbone/grants.py) are imported into a vhost of this run with a user per service and one for
the gateway, every process runs as `nameko run` with its own user (and the operator token in the
gateway's environment only), and the README's walk-through works end to end. Then each user is tried
at what it must not do: publish another service's events, call an RPC, read or declare another
service's queues. One test states what stays open (README.md: "What an attacker with broker access can
still do")."""
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import amqp
import pytest
import requests

from backbone import topology
from devstack import free_port
from devstack.rabbit import _rabbitmqctl, delete_vhost
from tests.helpers import AMQP_BASE, TEST_SECRETS
from tests.test_backup import walk_through

ROOT = Path(__file__).resolve().parent.parent
NAMEKO = str(Path(sys.executable).with_name("nameko"))
RUN = "trust{}".format(os.getpid())
VHOST = "trainops-{}".format(RUN)
PREFIX = "t{}".format(os.getpid())  # the run's users: "<PREFIX>-partners", ...


@pytest.fixture(scope="module")
def smtp_sink(tmp_path_factory):
    """A mail server of this module's own: the walk-through looks for the first mail to its official."""
    from devstack.smtp_sink import SmtpSink
    folder = tmp_path_factory.mktemp("trust-mail")
    sink = SmtpSink(directory=str(folder), log_path=str(folder.parent / "trust-smtp.log"))
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def broker_users(amqp_uri):
    """The vhost with deploy's definitions (topology, permissions, topic permissions) imported by the
    broker itself, and a user per service and the gateway: {name: password}."""
    from backbone.config import install
    install()  # the topology and the grants read the repository's configuration
    names = list(topology.subscriptions()) + ["gateway"]
    passwords = {name: secrets.token_hex(12) for name in names}
    definitions = topology.definitions(vhost=VHOST)
    for entry in definitions["permissions"] + definitions["topic_permissions"]:
        entry["user"] = entry["user"].replace("trainops-", PREFIX + "-", 1)
    definitions["vhosts"] = [{"name": VHOST}]
    # As the users file of deploy (01-users.json) brings them: a password each, no tags.
    definitions["users"] = [{"name": "{}-{}".format(PREFIX, name), "password": password, "tags": []}
                            for name, password in passwords.items()]
    path = Path("/tmp/{}-definitions.json".format(RUN))
    path.write_text(json.dumps(definitions))
    try:
        _rabbitmqctl("import_definitions", str(path))
    finally:
        path.unlink()
    _rabbitmqctl("set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")
    yield passwords
    delete_vhost(VHOST)
    for name in names:
        _rabbitmqctl("delete_user", "{}-{}".format(PREFIX, name))


def uri(name, password):
    base = AMQP_BASE.split("://", 1)[1].split("@", 1)[1].rstrip("/")
    return "amqp://{}-{}:{}@{}/{}".format(PREFIX, name, password, base, VHOST)


@pytest.fixture(scope="module")
def stack(broker_users, mongo, smtp_sink, sms_gateway, tmp_path_factory):
    """Every process as `nameko run`, each with its own broker user; the operator token only in the
    gateway's environment."""
    logs = tmp_path_factory.mktemp("trust-logs")
    port = free_port()
    common = {k: v for k, v in os.environ.items() if k not in ("OPERATOR_TOKEN", "AMQP_URI")}
    common.update(MONGO_URI=mongo, DATABASE_PREFIX="trust{}".format(port), SMTP_HOST="127.0.0.1",
                  SMTP_PORT=str(smtp_sink.port), SMS_GATEWAY_URL=sms_gateway.url, GATEWAY_PORT=str(port),
                  PUBLIC_URL="http://127.0.0.1:{}".format(port), HEARTBEAT_DIR=str(logs), **TEST_SECRETS)
    from devstack.run import processes
    running = []

    def start(name, target):
        env = dict(common, AMQP_URI=uri(name, broker_users[name]))
        if name == "gateway":
            env["OPERATOR_TOKEN"] = "trust-operator-token"
        with open(logs / "{}.log".format(name), "wb") as log:
            running.append((name, subprocess.Popen([NAMEKO, "run", "--config", "config.yml", target], cwd=ROOT,
                                                   env=env, stdout=log, stderr=subprocess.STDOUT,
                                                   start_new_session=True)))

    def ready(name):
        return subprocess.run([sys.executable, "-m", "ops.probe", name, "--dir", str(logs)], cwd=ROOT,
                              capture_output=True).returncode == 0

    def wait(what, done):
        deadline = time.monotonic() + 120
        while not done():
            dead = [name for name, process in running if process.poll() is not None]
            if dead or time.monotonic() > deadline:
                tails = "\n".join("--- {}\n{}".format(n, (logs / "{}.log".format(n)).read_text(errors="replace")[-3000:])
                                  for n, _ in running)
                for _, process in running:
                    process.kill()
                pytest.fail("{} did not come up ({} died):\n{}".format(what, dead, tails))
            time.sleep(0.3)

    targets = processes()
    # The services first, each ready by its own heartbeat (as Kubernetes' readiness would have it), then
    # the gateway in front of them.
    for name, target in targets.items():
        if name != "gateway":
            start(name, target)
    wait("the services", lambda: all(ready(name) for name in targets if name != "gateway"))
    start("gateway", targets["gateway"])
    url = "http://127.0.0.1:{}".format(port)

    def healthy():
        try:
            return requests.get(url + "/health", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    wait("the gateway", healthy)
    yield url
    for _, process in running:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for _, process in running:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def test_every_process_works_with_its_own_least_privileged_broker_user(stack, broker_users, smtp_sink, tmp_path):
    from devstack import seed
    seed.load(stack, "trust-operator-token", say=lambda _: None)
    made = walk_through(stack, "trust-operator-token", smtp_sink.directory, tmp_path)
    assert made["session"].startswith("session-")
    # Every process was connected as its own user, and nothing in the vhost as anyone else.
    connected = {line.split("\t")[0] for line in _rabbitmqctl("list_connections", "--silent", "user", "vhost").splitlines()
                 if line.endswith("\t" + VHOST)}
    assert connected == {"{}-{}".format(PREFIX, name) for name in broker_users}


def attempt(name, password, action):
    """Run `action(channel)` as this user; the broker's refusal (or None when it let it through)."""
    connection = amqp.Connection(uri(name, password).split("://", 1)[1].split("@", 1)[1].split("/", 1)[0],
                                 userid="{}-{}".format(PREFIX, name), password=password, virtual_host=VHOST)
    connection.connect()
    try:
        channel = connection.channel()
        channel.confirm_select()
        action(channel)
        return None
    except amqp.exceptions.AccessRefused as refused:
        return refused
    finally:
        try:
            connection.close()
        except Exception:
            pass


def publish(exchange, routing_key, body=b"{}"):
    def act(channel):
        channel.basic_publish(amqp.Message(body, content_type="application/json"), exchange=exchange,
                              routing_key=routing_key)
        # The broker's answer to the publish (a confirm, or the channel closed with 403).
        channel.wait(amqp.spec.Basic.Ack, timeout=5)
    return act


def consume(queue):
    def act(channel):
        channel.basic_consume(queue, callback=lambda message: None)
    return act


def declare(queue):
    def act(channel):
        channel.queue_declare(queue, durable=True)
    return act


def test_a_service_s_user_cannot_publish_another_service_s_events_call_rpcs_or_touch_its_queues(broker_users, stack):
    user = ("notifications", broker_users["notifications"])
    # Its own events it may publish: the same user, the same exchange, its own type.
    assert attempt(*user, publish(topology.exchange_name(), "notification_failed")) is None
    refusals = {
        "forge registration_confirmed": publish(topology.exchange_name(), "registration_confirmed"),
        "call partners.create_partner": publish("nameko-rpc", "partners.create_partner"),
        "read registration's queue": consume(topology.queue_name("registration")),
        "read partners' RPC queue": consume("rpc-partners"),
        "declare a queue of partners'": declare("rpc-partners"),
        "declare a queue of its own invention": declare("trainops.snoop"),
    }
    for what, action in refusals.items():
        refused = attempt(*user, action)
        assert refused is not None and refused.reply_code == 403, what


def test_the_gateway_s_user_calls_rpcs_and_does_nothing_else(broker_users, stack):
    user = ("gateway", broker_users["gateway"])
    for what, action in {
        "publish an event": publish(topology.exchange_name(), "registration_confirmed"),
        "read a service's events": consume(topology.queue_name("notifications")),
        "read a service's RPC queue": consume("rpc-registration"),
        "call something that is no service": publish("nameko-rpc", "rabbit.anything"),
    }.items():
        refused = attempt(*user, action)
        assert refused is not None and refused.reply_code == 403, what


def test_what_stays_open_the_default_exchange_reaches_any_queue_by_name(broker_users, stack):
    """README.md says so: a service's retries go through the default exchange, which RabbitMQ cannot
    narrow by routing key, so a service's user can put a message into another service's queue (the
    consumer still checks it against the contract, and dead-letters what does not fit)."""
    marker = uuid.uuid4().hex
    assert attempt("notifications", broker_users["notifications"],
                   publish("", topology.queue_name("scheduling") + ".retry.1000ms", marker.encode())) is None
