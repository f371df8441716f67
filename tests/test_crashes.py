"""Crashes, with real processes: the database killed with SIGKILL mid-burst and restarted on its data
directory; registration and notifications (each a real `nameko run` process) killed with SIGKILL
mid-burst and started again. Registrations arrive over HTTP with an Idempotency-Key and are retried
after a 5xx (and after 409 `request_in_progress`), as a client should. Afterwards: every official is
registered once, nobody is over-booked, every registration has one email notice, sent, and the SMTP
sink received one message per notice (a second copy only in the window notices.py documents: accepted
by the SMTP server just before the crash, not yet marked sent); /health is ok again. Each prints what
the crash cost.

The stack: SecantusDB on disk and an SMTP sink of this module's own, a vhost of its own on the local
RabbitMQ; partners, scheduling and the gateway in this process, registration and notifications as
processes that can be killed. The service kills wait out what a SIGKILL leaves behind (a transaction
left open holds its locks until the server reaps it, 60 s; notices the dead process had claimed are
sent by the sweep when the claim runs out, 60 s), so they run in `make chaos`; the database kill runs
in `make test`."""
import collections
import email.parser
import email.policy
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import eventlet
import pytest
import requests

from devstack import free_port
from tests.helpers import TEST_SECRETS, Client, Programme, at, wait_for

ROOT = Path(__file__).resolve().parent.parent
BURST = 40
SEATS = 30
RETRY_DELAYS = [0.5, 1, 2, 4, 8]
GRACE = timedelta(seconds=2)  # how late the sink may store a message the dead process handed it


def _die_with_the_test():
    """In the child: the kernel kills it when the test process dies, however that dies."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


class ServiceProcess:
    """One service as `nameko run`, its output appended to one log across restarts."""

    def __init__(self, service, target, env, log_path):
        self.service, self.target, self.env, self.log_path = service, target, env, log_path
        self.process = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "nameko"), "run", "--config", "config.yml", self.target],
                cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_the_test)

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def check(self):
        if self.process.poll() is not None:
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
            pytest.fail("{} exited with {}:\n{}".format(self.service, self.process.returncode, tail))


def consumers(amqp_uri, queue):
    from kombu import Connection
    with Connection(amqp_uri) as connection:
        try:
            return connection.default_channel.queue_declare(queue, passive=True).consumer_count
        except Exception:  # not declared yet
            return 0


@pytest.fixture(scope="module")
def crash_stack(tmp_path_factory, sms_gateway):
    """{config, mongo, sink, db, processes, programme} as the module docstring says."""
    import nameko
    from kombu import Connection
    from nameko.runners import ServiceRunner
    from backbone import topology
    from backbone.database import mongo_client
    from devstack.mongo import EmbeddedMongo
    from devstack.rabbit import delete_vhost, make_vhost
    from devstack.smtp_sink import SmtpSink
    from gateway.service import GatewayService
    from services.partners.service import PartnersService
    from services.scheduling.service import SchedulingService
    from tests.conftest import service_config
    from tests.helpers import AMQP_BASE

    root = tmp_path_factory.mktemp("crashes")
    mongo = EmbeddedMongo(storage_path=root / "db", log_path=root / "secantusd.log")
    sink = SmtpSink(directory=root / "mail", log_path=root / "smtp-sink.log")
    vhost = "trainops-crashes-{}".format(os.getpid())
    amqp_uri = AMQP_BASE.rstrip("/") + "/" + vhost
    processes = {}
    runner = client = None
    mongo.start()
    sink.start()
    make_vhost(vhost)
    try:
        data = service_config(mongo.uri, amqp_uri, sink, sms_gateway)
        data["EVENTS"]["retry_delays"] = RETRY_DELAYS
        env = dict(os.environ, PYTHONUNBUFFERED="1", **TEST_SECRETS,
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                   AMQP_URI=amqp_uri, MONGO_URI=mongo.uri, DATABASE_PREFIX=data["DATABASE_PREFIX"],
                   OPERATOR_TOKEN=data["OPERATOR_TOKEN"], PUBLIC_URL=data["PUBLIC_URL"],
                   SMTP_HOST="127.0.0.1", SMTP_PORT=str(sink.port), SMS_GATEWAY_URL=sms_gateway.url,
                   SMS_QUIET_HOURS="", EVENT_RETRY_DELAYS=json.dumps(RETRY_DELAYS), RELAY_POLL_SECONDS="0.1",
                   LEASE_SECONDS="2", NOTIFICATIONS_SWEEP_SECONDS="1", HEARTBEAT_DIR=str(root),
                   GATEWAY_PORT=str(free_port()), LOG_LEVEL="INFO")
        with nameko.config.patch(data, clear=True):
            with Connection(amqp_uri) as connection:
                topology.declare(connection)
            for service, target in (("registration", "services.registration.service"),
                                    ("notifications", "services.notifications.service")):
                processes[service] = ServiceProcess(service, target, env, root / "{}.log".format(service))
                processes[service].start()
            runner = ServiceRunner()
            for cls in (PartnersService, SchedulingService, GatewayService):
                runner.add_service(cls)
            runner.start()
            client = mongo_client(mongo.uri)
            db = lambda service: client["{}_{}".format(data["DATABASE_PREFIX"], service)]  # noqa: E731
            stack = {"config": data, "mongo": mongo, "sink": sink, "db": db, "processes": processes,
                     "amqp_uri": amqp_uri}
            for service in processes:
                ready(stack, service)
            stack["programme"] = Programme(Client(data["GATEWAY_URL"], data["OPERATOR_TOKEN"]), db)
            yield stack
    finally:
        for process in processes.values():
            process.stop()
        if runner is not None:
            runner.kill()
        if client is not None:
            client.close()
        sink.stop()
        mongo.stop()
        delete_vhost(vhost)


def ready(stack, service):
    """Until the service's process consumes its RPC and event queues."""
    from backbone import topology
    process = stack["processes"][service]

    def consuming():
        process.check()
        return consumers(stack["amqp_uri"], "rpc-" + service) and consumers(
            stack["amqp_uri"], topology.queue_name(service))
    wait_for(consuming, timeout=90, interval=0.25)


def healthy(stack):
    anonymous = Client(stack["config"]["GATEWAY_URL"])
    wait_for(lambda: anonymous.get("/health").status_code == 200, timeout=120, interval=0.5)


def register_all(programme, session, officials, fault, fault_moment):
    """Every official registers at once with an Idempotency-Key, retried with the same key after a 5xx or
    a 409 `request_in_progress`; `fault()` runs once the first few have their answer. Returns
    ({official: final answer}, [every 5xx status seen], the longest time in seconds with no answer)."""
    answers, failures, successes = {}, [], []

    def one(official):
        key = uuid.uuid4().hex
        while True:
            try:
                response = programme.operator.post("/sessions/{}/registrations".format(session["id"]),
                                                   {"official_id": official["id"]}, headers={"Idempotency-Key": key})
            except requests.RequestException as error:  # the gateway's own process never dies here
                pytest.fail("no HTTP answer: {}".format(error))
            busy = response.status_code == 409 and response.json()["error"]["code"] == "request_in_progress"
            if response.status_code < 500 and not busy:
                successes.append(time.monotonic())
                answers[official["id"]] = response
                return
            if response.status_code >= 500:
                failures.append(response.status_code)
            eventlet.sleep(0.5)

    pool = eventlet.GreenPool(10)
    threads = [pool.spawn(one, official) for official in officials[:10]]
    wait_for(lambda: len(answers) >= 5, timeout=60)
    faulted = time.monotonic()
    fault_moment.append(datetime.now(timezone.utc))
    fault()
    threads += [pool.spawn(one, official) for official in officials[10:]]
    with eventlet.Timeout(300):
        for thread in threads:
            thread.wait()
    moments = sorted([faulted] + [t for t in successes if t >= faulted])
    gap = max(b - a for a, b in zip(moments, moments[1:])) if len(moments) > 1 else 0
    return answers, failures, gap


def burst(stack, day, fault):
    """A 30-seat session, 40 officials registering over HTTP, `fault()` mid-burst; checks that nothing
    was lost, doubled or over-booked and that every notice was sent once. Returns a summary line."""
    programme = stack["programme"]
    session = programme.known_session(capacity=SEATS, trainer="Trainer {}".format(day),
                                      starts_at=at(day, "08:00"), ends_at=at(day, "12:00"))
    officials = [programme.official() for _ in range(BURST)]
    began = time.monotonic()
    fault_moment = []
    answers, failures, gap = register_all(programme, session, officials, fault, fault_moment)

    # Each answer is the registration, or 409 already_registered when an attempt whose answer was lost
    # (a 503) had made it: then the registration is there.
    registration = stack["db"]("registration")
    ids = [official["id"] for official in officials]
    for official_id, answer in answers.items():
        assert answer.status_code == 201 or (
            answer.status_code == 409 and answer.json()["error"]["code"] == "already_registered"), answer.text
    rows = list(registration.registrations.find({"session_id": session["id"]}))
    assert sorted(r["official_id"] for r in rows) == sorted(ids)  # none lost, none doubled
    assert sum(r["status"] == "confirmed" for r in rows) == SEATS
    waitlisted = sorted(r["waitlist_position"] for r in rows if r["status"] == "waitlisted")
    assert waitlisted == list(range(1, BURST - SEATS + 1))
    copy = registration.sessions.find_one({"_id": session["id"]})
    assert copy["seats_taken"] == SEATS <= copy["capacity"]

    # One email notice per registration, sent; one message per notice in the SMTP sink.
    notices = stack["db"]("notifications").notices
    mine = {"official_id": {"$in": ids}, "channel": "email"}
    wait_for(lambda: notices.count_documents(dict(mine, status="sent")) == BURST, timeout=240, interval=0.5)
    settled = time.monotonic() - began
    assert collections.Counter(n["official_id"] for n in notices.find(mine)) == {i: 1 for i in ids}
    from services.notifications.mail import message_id
    expected = {message_id(n["_id"]) for n in notices.find(mine, {"_id": 1})}
    parser = email.parser.BytesParser(policy=email.policy.default)
    received = collections.defaultdict(list)
    for path in stack["sink"].directory.glob("*.eml"):
        with open(path, "rb") as handle:
            received[parser.parse(handle, headersonly=True)["Message-ID"]].append(stored_at(path))
    assert all(received[m] for m in expected)
    # The one repeat allowed is the window services/notifications/notices.py documents: a message the
    # SMTP server accepted just before the crash, not yet marked sent, goes again once its claim runs
    # out (with the same Message-ID). Its first copy was then stored before the fault.
    repeats = {m: sorted(received[m]) for m in expected if len(received[m]) > 1}
    for message, times in repeats.items():
        assert len(times) == 2 and times[0] <= fault_moment[0] + GRACE < times[1], (message, times, fault_moment)
    healthy(stack)
    return ("longest wait for an answer after the fault {:.1f} s; {} answers 5xx meanwhile ({}); every "
            "notice sent {:.1f} s after the burst began; {} registrations answered 409 already_registered; "
            "{} emails sent twice in the crash window".format(
                gap, len(failures), dict(collections.Counter(failures)), settled,
                sum(a.status_code == 409 for a in answers.values()), len(repeats)))


def stored_at(path):
    """When the SMTP sink stored a message: its file name starts with that moment (UTC)."""
    return datetime.strptime(path.name[:23], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=timezone.utc)


def test_the_database_killed_mid_burst_and_restarted_on_its_data_loses_nothing(crash_stack):
    mongo = crash_stack["mongo"]

    def fault():
        mongo.kill()
        eventlet.sleep(2)  # down for a moment, as a crashed pod before its restart
        mongo.restart()

    print("\ndatabase killed:", burst(crash_stack, 20, fault))


@pytest.mark.chaos
@pytest.mark.parametrize("service", ["notifications", "registration"])
def test_a_service_killed_mid_burst_and_started_again_has_no_double_effect(crash_stack, service):
    process = crash_stack["processes"][service]
    notices = crash_stack["db"]("notifications").notices
    before = notices.count_documents({})
    at_kill = {}

    def fault():
        if service == "notifications":
            # Mid-handler: the burst's confirmations are arriving and being sent.
            wait_for(lambda: notices.count_documents({}) >= before + 3, timeout=60)
        at_kill["notices"] = notices.count_documents({}) - before
        process.kill()
        process.start()

    day = {"notifications": 21, "registration": 22}[service]
    summary = burst(crash_stack, day, fault)
    ready(crash_stack, service)
    print("\n{} killed with {} of the burst's notices recorded:".format(service, at_kill["notices"]), summary)
