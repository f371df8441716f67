"""Replicas are safe: two replicas of every service and of the gateway, each a real `nameko run`
process on the local RabbitMQ and SecantusDB, take 1,000 registrations for four 150-seat classes
through both gateways. Mid-run, one replica of registration (the one running its outbox relay), one of
notifications and one gateway are killed with SIGKILL. The rest finish
the work: every official is registered once and no class over-books; every confirmation and waitlist
notice is in the notices' log once and sent (twice only in the crash window notices.py documents:
handed to the server by the replica that died, not yet marked sent); no event is lost or
dead-lettered; both replicas of each kind did some of the work; the relay and the leased timers ran in
one replica at a time and moved to a survivor when theirs died; the notifications sweep ran in both
(each claims its own batches) and goes on in the survivor.

Callers alternate between the two gateways with an Idempotency-Key, and a caller whose gateway dies
retries on the other with the same key, as behind a load balancer. Nothing about speed is asserted;
the figures (registrations/s, notices/s) are printed for the capacity note (`pytest -s`).

What a SIGKILL costs, seen here: a caller whose request was in flight on the killed gateway waits
until its Idempotency-Key counts as abandoned (gateway.admission.ABANDONED_AFTER, 30 s); a
registration replica killed inside a MongoDB transaction leaves its locks until the server reaps the
transaction (60 s, mongod's transactionLifetimeLimitSeconds; devstack.mongo.TransactionReaper for SecantusDB),
and registrations of that session wait that long (the gateway answers 503 meanwhile; callers retry);
the notices the dead notifications replica had claimed are sent by the sweep once the claim runs out
(60 s). The run therefore takes about a minute longer than the work.
"""
import collections
import email.parser
import email.policy
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import eventlet
import pytest
import requests
from eventlet.queue import Empty, LightQueue

from backbone.outbox import emitted_events
from devstack.run import processes
from devstack import free_port
from tests.helpers import AMQP_BASE, TEST_SECRETS, Client, Programme, at

SERVICES = processes()  # what `make run` starts: {name: module:Class}

ROOT = Path(__file__).resolve().parent.parent
REPLICAS = ("a", "b")
TOKEN = "replicas-operator-token"

SESSIONS = 4
SEATS = 150
OFFICIALS_PER_SESSION = 250
OFFICIALS = SESSIONS * OFFICIALS_PER_SESSION
CONFIRMED = SESSIONS * SEATS
WAITLISTED = OFFICIALS - CONFIRMED
CALLERS = 20
KILL_AFTER = 300  # registrations answered before the kill

RETRY_DELAYS = [1, 2, 5, 10, 20]  # the subscriber's, in seconds: no event dead-letters within the run
RELAY_BATCH = 500  # config.yml's EVENTS.relay_batch
TAP = "replicas.tap"  # a copy of every event published, to count publications
START_TIMEOUT = 180
WORK_TIMEOUT = 600  # generous: the machine is shared; the run normally takes a fraction of it
GRACE = timedelta(seconds=5)

REPLICA_ENV = {
    "SMS_QUIET_HOURS": "",  # SMS go out whatever the hour of the run
    "EVENT_RETRY_DELAYS": json.dumps(RETRY_DELAYS),
    "NOTIFICATION_RETRY_DELAYS": "[1, 2, 5, 10, 20]",
    # The timers tick every second, so the sweep that sends what a dead replica left claimed, and
    # the handover of the timers, happen within the run.
    "NOTIFICATIONS_SWEEP_SECONDS": "1",
    "AGREEMENT_SWEEP_SECONDS": "1",
    "LOG_LEVEL": "INFO",
    # One test client sends the whole burst: the limits have tests of their own.
    "HTTP_RATE_PER_CLIENT": "0", "HTTP_RATE_PER_TOKEN": "0",
}


# -- the processes ------------------------------------------------------------------------------------

def _die_with_the_test():
    """In a child, before it runs: the kernel kills it when the test process dies, however that dies
    (a SIGKILLed pytest runs no teardown), so nothing started here outlives the run."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


class Process:
    """A child process, its output in a file."""

    def __init__(self, label, command, env, log_path):
        self.label, self.log_path = label, log_path
        self.killed_at = None
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_the_test)

    @property
    def pid(self):
        return self.process.pid

    def alive(self):
        return self.process.poll() is None

    def kill(self):
        self.killed_at = datetime.now(timezone.utc)
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self):
        if self.alive():
            self.process.terminate()

    def reap(self, deadline):
        try:
            self.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def tail(self, count=30):
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-count:])


class Replica(Process):
    """One `nameko run` process, its JSON log lines in its own file."""

    def __init__(self, service, name, env, logs):
        self.service, self.name = service, name
        nameko = Path(sys.executable).parent / "nameko"
        label = "{}-{}".format(service, name)
        super().__init__(label, [str(nameko), "run", "--config", "config.yml", SERVICES[service]], env,
                         logs / "{}.log".format(label))

    def lines(self):
        out = []
        for raw in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if raw.startswith("{"):
                try:
                    out.append(json.loads(raw))
                except ValueError:
                    pass
        return out

    def worked(self, entrypoints, before=None):
        """How many workers of these entrypoints ended ok in this replica (before a moment)."""
        return sum(1 for line in self.lines()
                   if line.get("entrypoint") in entrypoints and line.get("outcome") == "ok"
                   and (before is None or datetime.fromisoformat(line["ts"]) < before))


class Tap:
    """Every event published to the exchange, as a copy in a queue of its own, consumed as it comes."""

    def __init__(self, amqp_uri):
        self.amqp_uri = amqp_uri
        self.seen = []  # (event_id, type, producer), in the order published
        self.stopped = False
        self.thread = eventlet.spawn(self.run)

    def run(self):
        from kombu import Connection, Consumer, Queue
        with Connection(self.amqp_uri) as connection:
            with Consumer(connection.channel(), queues=[Queue(TAP, no_declare=True)],
                          on_message=self.on_message, no_ack=True):
                while not self.stopped:
                    try:
                        connection.drain_events(timeout=0.5)
                    except socket.timeout:
                        pass

    def on_message(self, message):
        envelope = json.loads(message.body)
        self.seen.append((envelope["event_id"], envelope["type"], envelope["producer"]))

    def stop(self):
        self.stopped = True
        self.thread.wait()


class Stack:
    """The replicas of this run, where their mail and SMS land, and their databases."""

    def __init__(self, prefix, mongo_uri, mail_dir, sms_journal):
        self.prefix, self.mail_dir, self.sms_journal = prefix, mail_dir, sms_journal
        from backbone.database import mongo_client
        self.client = mongo_client(mongo_uri)
        self.replicas = {}
        self.gateway_urls = {}
        self.tap = None

    def db(self, service):
        return self.client["{}_{}".format(self.prefix, service)]

    def of(self, service):
        return [self.replicas[service, name] for name in REPLICAS]

    def holder(self, service, lease):
        """The replica that holds this lease now (the lease names its holder's pid), or None."""
        doc = self.db(service).leases.find_one({"_id": lease})
        if doc is None:
            return None
        pid = int(doc["holder"].rsplit("-", 2)[1])
        return next((r for r in self.of(service) if r.pid == pid), None)

    def check_running(self, killed=()):
        for replica in self.replicas.values():
            if replica not in killed and not replica.alive():
                pytest.fail("{} exited with status {}:\n{}".format(
                    replica.label, replica.process.returncode, replica.tail()))


def _rpc_consumers(amqp_uri, service):
    from kombu import Connection
    with Connection(amqp_uri) as connection:
        try:
            return connection.default_channel.queue_declare("rpc-" + service, passive=True).consumer_count
        except Exception:  # not declared yet
            return 0


def _answers(url):
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _wait(what, predicate, timeout, stack=None, killed=(), interval=0.5):
    """Poll `predicate()` until truthy; fail naming `what()` (the state it saw) if it never is, or
    as soon as a replica that should be running has exited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if stack is not None:
            stack.check_running(killed)
        if time.monotonic() > deadline:
            pytest.fail("not within {} s: {}".format(timeout, what()))
        eventlet.sleep(interval)


def _declare(amqp_uri):
    """The trainops topology (as the services will declare it) and the tap bound to every event."""
    import nameko
    from kombu import Connection, Queue
    from backbone import topology
    from backbone.config import load
    data = load(AMQP_URI=amqp_uri)
    data["EVENTS"]["retry_delays"] = RETRY_DELAYS
    with nameko.config.patch(data, clear=True), Connection(amqp_uri) as connection:
        topology.declare(connection)
        Queue(TAP, exchange=topology.events_exchange(), routing_key="#", durable=False,
              auto_delete=False)(connection.default_channel).declare()


@pytest.fixture(scope="module")
def stack(mongo, tmp_path_factory):
    from devstack import listening
    from devstack.rabbit import delete_vhost, ensure_rabbitmq, make_vhost

    root = tmp_path_factory.mktemp("replicas")
    # A vhost of our own: no event left by another test reaches these replicas, and theirs reach no one.
    vhost = "trainops-replicas-{}".format(os.getpid())
    ensure_rabbitmq(AMQP_BASE)
    make_vhost(vhost)
    amqp_uri = AMQP_BASE.rstrip("/") + "/" + vhost
    stack = Stack("rep{}".format(uuid.uuid4().hex[:8]), mongo, root / "mail", root / "sms" / "sms.jsonl")
    helpers = []
    try:
        # The mail sink and the SMS gateway in processes of their own (not the session's): only this
        # run's messages, and the callers in this process don't slow them down.
        smtp_port, sms_port = free_port(), free_port()
        helpers.append(Process("smtp-sink", [sys.executable, "-m", "devstack.smtp_sink", "--port", str(smtp_port),
                                             "--dir", str(stack.mail_dir)], os.environ, root / "smtp-sink.log"))
        helpers.append(Process("sms-gateway", [sys.executable, "-m", "devstack.sms_gateway", "--port", str(sms_port),
                                               "--dir", str(stack.sms_journal.parent)], os.environ,
                               root / "sms-gateway.log"))
        _declare(amqp_uri)
        stack.tap = Tap(amqp_uri)

        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                   MONGO_URI=mongo, AMQP_URI=amqp_uri, DATABASE_PREFIX=stack.prefix, OPERATOR_TOKEN=TOKEN,
                   **TEST_SECRETS,
                   SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp_port),
                   SMS_GATEWAY_URL="http://127.0.0.1:{}/sms".format(sms_port), **REPLICA_ENV)
        logs = root / "logs"
        logs.mkdir()
        for service in SERVICES:
            for name in REPLICAS:
                replica_env = dict(env, REPLICA=name)
                if service == "gateway":
                    port = free_port()
                    replica_env["GATEWAY_PORT"] = str(port)
                    stack.gateway_urls[name] = "http://127.0.0.1:{}".format(port)
                stack.replicas[service, name] = Replica(service, name, replica_env, logs)

        # Up: both replicas of each service consume their RPC queue, both gateways answer, and so do
        # the mail sink and the SMS gateway.
        services = [s for s in SERVICES if s != "gateway"]

        def up():
            for helper in helpers:
                if not helper.alive():
                    pytest.fail("{} exited:\n{}".format(helper.label, helper.tail()))
            return {"consumers": {s: _rpc_consumers(amqp_uri, s) for s in services},
                    "gateways": {n: _answers(u + "/alive") for n, u in stack.gateway_urls.items()},
                    "smtp": listening("127.0.0.1", smtp_port), "sms": listening("127.0.0.1", sms_port)}

        _wait(lambda: "replicas not up: {}".format(up()),
              lambda: up() == {"consumers": {s: len(REPLICAS) for s in services},
                               "gateways": {n: True for n in REPLICAS}, "smtp": True, "sms": True},
              START_TIMEOUT, stack)
        _wait(lambda: "GET /health: {}".format(requests.get(stack.gateway_urls["a"] + "/health").text),
              lambda: _answers(stack.gateway_urls["a"] + "/health"), 60, stack)
        yield stack
    finally:
        # Every process this fixture started is gone when it ends, whatever happened.
        processes = list(stack.replicas.values()) + helpers
        for process in processes:
            process.stop()
        deadline = time.monotonic() + 20
        for process in processes:
            process.reap(deadline)
        if stack.tap is not None:
            stack.tap.stop()
        stack.client.close()
        delete_vhost(vhost)


# -- the callers --------------------------------------------------------------------------------------

def staff_list(count):
    lines = ["full_name,email,phone,unit_code,audience_group"]
    lines += ["Phạm Thị Song {n},song{n}@q1.gov.vn,0934{n:06d},Q1,ward_commune".format(n=n) for n in range(count)]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


class Answer:
    def __init__(self, official_id, session_id, preferred):
        self.official_id, self.session_id, self.preferred = official_id, session_id, preferred
        self.attempts = []  # (gateway name, status code or "unreachable")
        self.status_code = None
        self.body = None


def submit(stack, http, answer):
    """POST the registration through the preferred gateway; on a dead gateway, through the other, with
    the same Idempotency-Key. 409 `request_in_progress` and 503 are retried after a pause."""
    key = str(uuid.uuid4())
    order = [answer.preferred] + [n for n in REPLICAS if n != answer.preferred]
    path = "/sessions/{}/registrations".format(answer.session_id)
    headers = {"Authorization": "Bearer " + TOKEN, "Idempotency-Key": key}
    deadline = time.monotonic() + WORK_TIMEOUT
    turn = 0
    while time.monotonic() < deadline:
        name = order[turn % len(order)]
        turn += 1
        try:
            response = http.post(stack.gateway_urls[name] + path, json={"official_id": answer.official_id},
                                 headers=headers, timeout=60)
        except requests.ConnectionError:
            answer.attempts.append((name, "unreachable"))
            eventlet.sleep(0 if turn % len(order) else 0.5)  # the other gateway at once; then a pause
            continue
        answer.attempts.append((name, response.status_code))
        try:
            code = response.json().get("error", {}).get("code") if response.status_code >= 400 else None
        except ValueError:  # not the API's error shape: a bug, reported below
            code = None
        if response.status_code == 201 or code == "already_registered":
            answer.status_code, answer.body = response.status_code, response.json()
            return answer
        if code in ("request_in_progress", "service_unavailable"):
            turn -= 1  # the same gateway again, after a pause
            eventlet.sleep(1)
            continue
        raise AssertionError("registration of {} refused: {} {}".format(
            answer.official_id, response.status_code, response.text))
    raise AssertionError("registration of {} not answered; attempts (gateway, answer): {}".format(
        answer.official_id, dict(collections.Counter(answer.attempts))))


# -- the scenario -------------------------------------------------------------------------------------

def test_two_replicas_of_everything_take_1000_registrations_and_survive_losing_one_of_each_mid_run(stack):
    operator = Client(stack.gateway_urls["a"], TOKEN)
    programme = Programme(operator, stack.db)
    sessions = [programme.known_session(starts_at=at(20 + i, "08:00"), ends_at=at(20 + i, "12:00"),
                                        capacity=SEATS) for i in range(SESSIONS)]
    imported = operator.post("/officials/import", data=staff_list(OFFICIALS),
                             headers={"Content-Type": "text/csv"}).json()
    assert imported["created"] == OFFICIALS, imported
    officials = sorted(o["_id"] for o in stack.db("registration").officials.find({}, {"_id": 1}))
    answers = [Answer(official, sessions[i % SESSIONS]["id"], REPLICAS[i % len(REPLICAS)])
               for i, official in enumerate(officials)]

    # Who runs registration's relay is killed; the notifications sweep runs in every replica.
    relay = _wait(lambda: "no registration relay lease", lambda: stack.holder("registration", "outbox-relay"),
                  60, stack)
    sweep = stack.replicas["notifications", "a"]
    victims = [relay, sweep, stack.replicas["gateway", "b"]]

    # -- 1,000 registrations, 20 callers, both gateways; one replica of three kinds dies mid-run.
    work = LightQueue()
    for answer in answers:
        work.put(answer)
    done = []

    def caller():
        http = requests.Session()
        while True:
            try:
                answer = work.get_nowait()
            except Empty:
                return
            done.append(submit(stack, http, answer))

    started = time.monotonic()
    callers = [eventlet.spawn(caller) for _ in range(CALLERS)]
    _wait(lambda: "{} registrations answered".format(len(done)), lambda: len(done) >= KILL_AFTER,
          WORK_TIMEOUT, stack)
    before_kill = time.monotonic()
    answered_before_kill = len(done)
    # The services whose outbox relay dies with a victim (notifications publishes notification_failed).
    relays_killed = {s for s in ("partners", "scheduling", "registration", "notifications")
                     if stack.holder(s, "outbox-relay") in victims}
    for victim in victims:
        victim.kill()
    killed_at = min(v.killed_at for v in victims)
    for thread in callers:
        thread.wait()  # re-raises what a caller raised
    drive_seconds = time.monotonic() - started
    stack.check_running(victims)

    # -- every registration is in, once; no class over-books; every caller got its answer.
    registration = stack.db("registration")
    assert len(done) == OFFICIALS
    assert {a.status_code for a in done} <= {201, 409}
    assert registration.registrations.count_documents({}) == OFFICIALS
    assert sorted(r["official_id"] for r in registration.registrations.find({}, {"official_id": 1})) == officials
    for session in sessions:
        copy = registration.sessions.find_one({"_id": session["id"]})
        rows = list(registration.registrations.find({"session_id": session["id"]}))
        confirmed = [r for r in rows if r["status"] == "confirmed"]
        waitlisted = sorted(r["waitlist_position"] for r in rows if r["status"] == "waitlisted")
        assert (len(confirmed), copy["seats_taken"]) == (SEATS, SEATS)
        assert waitlisted == list(range(1, OFFICIALS_PER_SESSION - SEATS + 1))
    # A 409 `already_registered` only answers a registration that was made by an earlier attempt
    # (a retry after a dead gateway, or a request redelivered from the dead registration replica).
    repeated = [a for a in done if a.status_code == 409]
    for answer in repeated:
        assert registration.registrations.find_one({"session_id": answer.session_id,
                                                    "official_id": answer.official_id})

    # -- every notice is sent: an email per registration, an SMS per confirmation.
    notifications = stack.db("notifications")
    expected_notices = OFFICIALS + CONFIRMED
    official_notices = {"template": {"$in": ["registration_confirmed", "registration_waitlisted"]}}

    def notice_counts():
        return {"{}/{}".format(r["_id"]["template"], r["_id"]["status"]): r["n"]
                for r in notifications.notices.aggregate([
                    {"$group": {"_id": {"template": "$template", "status": "$status"}, "n": {"$sum": 1}}}])}

    _wait(lambda: "notices: {}".format(notice_counts()),
          lambda: notifications.notices.count_documents(dict(official_notices, status="sent"))
          == expected_notices, WORK_TIMEOUT, stack, victims)
    finished = time.monotonic()

    # -- no lost event: every outbox is published, nothing is dead-lettered, and every registration
    # event was handled by notifications and became its notices.
    for service in ("partners", "scheduling", "registration", "notifications"):
        db = stack.db(service)
        _wait(lambda: "{} outbox still pending".format(service),
              lambda: db.outbox.count_documents({}) == 0, 60, stack, victims)
        assert list(db.dead_letters.find({}, {"body": 0})) == [], service
    events = {e["_id"]: e for e in emitted_events(registration)}
    by_type = collections.Counter(e["type"] for e in events.values())
    assert by_type == {"registration_confirmed": CONFIRMED, "registration_waitlisted": WAITLISTED}
    # notifications keeps no handled-event record for these (its notices are keyed by the event):
    # every event having its notices, below, is what says each was handled.
    deliveries = list(notifications.notices.find(official_notices, {"context": 0}))
    per_event = collections.Counter((d["event_id"], d["channel"]) for d in deliveries)
    assert set(per_event.values()) == {1}  # at most one notice per (event, channel): no duplicate
    for event_id, event in events.items():
        channels = {"email", "sms"} if event["type"] == "registration_confirmed" else {"email"}
        assert {c for (e, c) in per_event if e == event_id} == channels, event_id

    # -- and one of each reached the official: one email per Message-ID, one SMS per confirmation.
    # The one repeat allowed is the window services/notifications/notices.py documents: a notice the
    # killed replica handed to the SMTP server (or SMS gateway) but could not mark sent is sent again
    # by the sweep once its claim runs out (an email then carries the same Message-ID). Such a first
    # copy was received before the replica died (GRACE: how late the sink may have stored it).
    from services.notifications.mail import message_id
    died = sweep.killed_at + GRACE
    parser = email.parser.BytesParser(policy=email.policy.default)
    emails = collections.defaultdict(list)
    for path in stack.mail_dir.glob("*.eml"):
        with open(path, "rb") as handle:
            emails[parser.parse(handle, headersonly=True)["Message-ID"]].append(stored_at(path))
    sent_emails = list(notifications.notices.find({"channel": "email"}, {"_id": 1}))
    assert set(emails) == {message_id(d["_id"]) for d in sent_emails}
    texts = collections.defaultdict(list)
    for line in stack.sms_journal.read_text(encoding="utf-8").splitlines():
        text = json.loads(line)
        texts[text["to"]].append(datetime.fromisoformat(text["received_at"]))
    assert sorted(texts) == sorted(e["payload"]["official"]["phone"] for e in events.values()
                                   if e["type"] == "registration_confirmed")
    repeats = {key: sorted(times) for copies in (emails, texts) for key, times in copies.items() if len(times) > 1}
    for key, times in repeats.items():
        assert len(times) == 2 and times[0] <= died < times[1], (key, times, sweep.killed_at)

    # -- the work was spread: both replicas of each kind handled some of it before the kill.
    registration_workers = ("register",)
    notice_workers = ("on_registration_confirmed", "on_registration_waitlisted")
    spread = {
        "gateway": {r.label: r.worked(("register",), killed_at) for r in stack.of("gateway")},
        "registration": {r.label: r.worked(registration_workers, killed_at) for r in stack.of("registration")},
        "notifications": {r.label: r.worked(notice_workers, killed_at) for r in stack.of("notifications")},
    }
    for service, counts in spread.items():
        assert all(counts.values()), (service, counts)
    survivors = {service: [r for r in stack.of(service) if r not in victims][0]
                 for service in ("registration", "notifications", "gateway")}

    # -- the relay and the leased timers ran in one replica at a time, and moved to the survivor. A lease
    # may also change hands between live replicas when its holder is too slow to renew it (a loaded
    # machine): allowed, as long as no two replicas ran a timer at the same moment. The notifications
    # sweep runs in both replicas (each claims its own batches), and on in the survivor.
    assert stack.holder("registration", "outbox-relay") is survivors["registration"]
    for service, timer in (("partners", "expire_agreements"),):
        ticks = _ticks(stack, service, timer)
        assert {label for _, _, label in ticks} <= {r.label for r in stack.of(service)}
        overlaps = [(a, b) for a, b in zip(ticks, ticks[1:]) if a[2] != b[2] and b[0] < a[1]]
        assert overlaps == [], overlaps
    sweeps = _ticks(stack, "notifications", "sweep")
    assert {label for _, _, label in sweeps} == {r.label for r in stack.of("notifications")}
    assert sweeps[-1][2] == survivors["notifications"].label

    # Each event was published once. The one repeat the relay allows: the batch a killed relay had
    # published but not yet moved out of its outbox, which the survivor publishes again (consumers skip
    # it). So a repeat comes only from a service whose relay died, once more, and one batch at most.
    stack.tap.stop()
    publications = collections.Counter(event_id for event_id, _, _ in stack.tap.seen)
    assert set(publications) >= set(events)
    producers = {event_id: producer for event_id, _, producer in stack.tap.seen}
    republished = {event_id: n for event_id, n in publications.items() if n > 1}
    by_producer = collections.Counter(producers[event_id] for event_id in republished)
    assert set(republished.values()) <= {2}, republished
    assert set(by_producer) <= relays_killed, (by_producer, relays_killed)
    assert all(n <= RELAY_BATCH for n in by_producer.values()), by_producer

    # Figures for the capacity note (shown with -s, or on failure). Notices/s is over the time both
    # notification replicas were up (from the first notice to the kill); after the kill the survivor
    # waits out registration's stall and the dead replica's claims.
    sent_at = sorted(d["sent_at"] for d in deliveries)
    sent_before = [t for t in sent_at if t < killed_at]
    print("\nreplicas: {} registrations in {:.1f} s through 2 gateways ({:.1f}/s overall, {:.1f}/s before the "
          "kill); {} notices ({:.1f}/s with 2 notification replicas: {} in {:.1f} s before the kill); all done "
          "{:.1f} s after the first registration; {} answered 409 already_registered; {} notices sent twice "
          "in the crash window; events published twice after their relay died: {}; work before the kill: "
          "{}".format(
              OFFICIALS, drive_seconds, OFFICIALS / drive_seconds, answered_before_kill / (before_kill - started),
              len(sent_at), len(sent_before) / max(0.001, (killed_at - sent_at[0]).total_seconds()),
              len(sent_before), (killed_at - sent_at[0]).total_seconds(), finished - started, len(repeated),
              len(repeats), dict(by_producer), spread))


def stored_at(path):
    """When the SMTP sink stored a message: its file name starts with that moment (UTC)."""
    return datetime.strptime(path.name[:23], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=timezone.utc)


def _ticks(stack, service, entrypoint):
    """Every run of a timer in the replicas of a service: (started, ended, replica), in order."""
    ticks = []
    for replica in stack.of(service):
        for line in replica.lines():
            if line.get("entrypoint") == entrypoint:
                ended = datetime.fromisoformat(line["ts"])
                ticks.append((ended - timedelta(milliseconds=line["duration_ms"]), ended, replica.label))
    return sorted(ticks)


def test_a_key_left_in_progress_by_a_gateway_that_died_is_taken_over_by_the_callers_retry(operator, db):
    """A gateway replica killed mid-request leaves its Idempotency-Key record "in progress". The retry
    through another replica is told 409 `request_in_progress` while a live gateway could still be
    answering, and afterwards takes the key over and runs; a third try replays its result."""
    import hashlib
    from backbone.auth import OPERATOR
    from backbone.clock import utcnow
    from gateway.admission import ABANDONED_AFTER
    from gateway.entrypoints import caller_key
    raw = json.dumps({"code": "HCM", "name": "Thành phố Hồ Chí Minh", "kind": "city"}).encode("utf-8")
    headers = {"Content-Type": "application/json", "Idempotency-Key": "unit-hcm"}
    records = db("gateway").idempotency
    caller = caller_key(OPERATOR, None)
    left = {"_id": "{}:/units:unit-hcm".format(caller), "body_hash": hashlib.sha256(raw).hexdigest(),
            "state": "in_progress", "created_at": utcnow()}
    records.insert_one(left)

    refused = operator.post("/units", data=raw, headers=headers)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "request_in_progress"

    records.update_one({"_id": left["_id"]}, {"$set": {
        "created_at": utcnow() - timedelta(seconds=ABANDONED_AFTER + 1)}})
    taken = operator.post("/units", data=raw, headers=headers)
    assert taken.status_code == 201, taken.text
    replay = operator.post("/units", data=raw, headers=headers)
    assert (replay.status_code, replay.headers.get("Idempotent-Replay")) == (201, "true")
    assert db("registration").units.count_documents({"_id": "HCM"}) == 1
