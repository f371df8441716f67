"""`make soak`: trainops on production's shape for SOAK_MINUTES (30 by default) of mixed load, with a fault
every SOAK_FAULT_SECONDS (180) in turn: a RabbitMQ node stopped, the database frozen, the SMTP server
refusing, a service killed. Not in CI, not in `make test`: it prints, per fault, what was lost or
doubled (expected 0) and each service's memory (RSS) at the start and at the end.

The stack: a three-node RabbitMQ cluster (devstack/cluster.py) with quorum queues and deploy's
policies, SecantusDB on disk, the SMTP sink and the SMS gateway, every service and the gateway as a
`nameko run` process. Each fault opens a phase with a 30-seat session of its own; during the phase,
callers create officials (one by one, and by CSV import), register them to the phase's session
(Idempotency-Key, retried after a 5xx or a 409 request_in_progress, as a client should), cancel one
in five, and ask for the coverage report. After the last phase the run waits for the notices to
settle, then counts, per phase, from the databases and the SMTP sink against what the callers sent:

- registrations: answered (201, or 409 already_registered after a lost answer) but absent = lost;
  more than one for an official = doubled; confirmed beyond the seats = over-booked;
- cancellations answered 200 whose registration is not cancelled = lost;
- imported officials absent = lost;
- registration events without their email notice, or a notice not sent = lost; a message received
  twice by the SMTP sink = doubled (notices.py's documented crash window counts here too).

    SOAK_MINUTES=4 SOAK_FAULT_SECONDS=60 make soak     # the shortened run deploy/README.md quotes
"""
import warnings

warnings.filterwarnings("ignore", message="\nEventlet is deprecated")  # nameko 3 runs on it; known

import eventlet  # noqa: E402

eventlet.monkey_patch()

import collections  # noqa: E402
import email.parser  # noqa: E402
import email.policy  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import requests  # noqa: E402

from backbone.database import mongo_client  # noqa: E402
from backbone.outbox import emitted_events  # noqa: E402
from bench.processes import Services  # noqa: E402
from devstack import REPO_ROOT, free_port  # noqa: E402
from devstack.cluster import Cluster  # noqa: E402
from devstack.mongo import EmbeddedMongo  # noqa: E402
from devstack.sms_gateway import SmsGateway  # noqa: E402
from devstack.smtp_sink import SmtpSink  # noqa: E402
from tests.helpers import Client, Programme, at  # noqa: E402

MINUTES = float(os.environ.get("SOAK_MINUTES", "30"))
FAULT_SECONDS = float(os.environ.get("SOAK_FAULT_SECONDS", "180"))
SEATS = 30
CALLERS = 3
PAUSE = 0.5  # between one caller's requests: a steady load a shared 2-core machine carries
GIVE_UP = 240  # a caller retries one request this long (a killed gateway's key is free after 30 s)
SETTLE = 420  # after the load, for notices to be sent (claims of a killed sender run out after 60 s)
FAULTS = ("node stop", "database freeze", "SMTP refusal", "service kill")
KILLED = ("notifications", "registration", "gateway", "scheduling", "partners")
TOKEN = "soak-" + secrets.token_urlsafe(16)


def say(line):
    print("soak {}: {}".format(time.strftime("%H:%M:%S"), line), flush=True)


class Phase:
    """What the callers sent during one fault's phase, to its own session."""

    def __init__(self, number, fault, session):
        self.number, self.fault, self.session = number, fault, session
        self.registered = set()  # officials whose registration was answered
        self.unanswered = 0  # requests given up after GIVE_UP (not lost: their outcome is unknown)
        # Other final answers, by status and code: e.g. 409 `official_exists` to the retry of a creation
        # whose first answer was lost after it was made (the official exists; not counted as lost).
        self.refused = collections.Counter()
        self.cancelled = set()  # registration ids whose cancel was answered 200
        self.imported = set()  # emails of officials a CSV import said it created
        self.errors_5xx = 0
        self.reports = self.reports_failed = 0
        self.note = ""


def retried(client, method, path, **kw):
    """The answer to a request retried with one Idempotency-Key after a 5xx, a 409 request_in_progress
    or no answer at all; None after GIVE_UP."""
    headers = dict(kw.pop("headers", {}), **{"Idempotency-Key": uuid.uuid4().hex})
    deadline = time.monotonic() + GIVE_UP
    failures = 0
    while time.monotonic() < deadline:
        try:
            response = client.request(method, path, headers=headers, **kw)
        except requests.RequestException:
            response = None
        busy = response is not None and response.status_code == 409 and \
            response.json().get("error", {}).get("code") == "request_in_progress"
        if response is not None and response.status_code < 500 and not busy:
            return response, failures
        failures += response is not None and response.status_code >= 500
        time.sleep(1)
    return None, failures


def caller(programme, phase, stop_at, numbers):
    operator = programme.operator
    while time.monotonic() < stop_at:
        n = next(numbers)
        if n % 10 == 0:  # a unit sends its staff list
            rows = ["Cán bộ Nhập {0},nhap{0}@q1.gov.vn,0904{0:06d},Q1,ward_commune".format(n // 2 + i)
                    for i in range(5)]
            csv = "full_name,email,phone,unit_code,audience_group\n" + "\n".join(rows)
            answer, failures = retried(operator, "POST", "/officials/import", headers={"Content-Type": "text/csv"},
                                       data=csv.encode())
            phase.errors_5xx += failures
            if answer is not None and answer.status_code == 200 and answer.json()["created"] == len(rows):
                phase.imported.update("nhap{}@q1.gov.vn".format(n // 2 + i) for i in range(5))
        elif n % 10 == 5:
            try:
                answer = operator.get("/reports/coverage?by=unit")
                phase.reports += 1
                phase.reports_failed += answer.status_code != 200
            except requests.RequestException:
                phase.reports_failed += 1
        else:
            official, failures = retried(operator, "POST", "/officials", json={
                "full_name": "Cán bộ Số {}".format(n), "email": "canbo{}@q1.gov.vn".format(n),
                "phone": "0903{:06d}".format(n), "unit_code": "Q1", "audience_group": "ward_commune"})
            phase.errors_5xx += failures
            if official is None:
                phase.unanswered += 1
                continue
            if official.status_code != 201:
                phase.refused["POST /officials {} {}".format(
                    official.status_code, official.json().get("error", {}).get("code"))] += 1
                continue
            official_id = official.json()["id"]
            answer, failures = retried(operator, "POST", "/sessions/{}/registrations".format(phase.session["id"]),
                                       json={"official_id": official_id})
            phase.errors_5xx += failures
            made = answer is not None and (answer.status_code == 201 or (
                answer.status_code == 409 and answer.json()["error"]["code"] == "already_registered"))
            if answer is None:
                phase.unanswered += 1
            elif not made:
                phase.refused["POST /sessions/{{id}}/registrations {} {}".format(
                    answer.status_code, answer.json().get("error", {}).get("code"))] += 1
            else:
                phase.registered.add(official_id)
                if answer.status_code == 201 and n % 5 == 1:
                    registration_id = answer.json()["id"]
                    cancel, failures = retried(operator, "POST", "/registrations/{}/cancel".format(registration_id))
                    phase.errors_5xx += failures
                    if cancel is not None and cancel.status_code == 200:
                        phase.cancelled.add(registration_id)
        time.sleep(PAUSE)


def inject(fault, number, stack):
    """Runs the fault (in the background while the load goes on); returns a note of what it did."""
    cluster, mongo, sink, services = stack["cluster"], stack["mongo"], stack["sink"], stack["services"]
    if fault == "node stop":
        node = "abc"[(number // len(FAULTS)) % 3]
        cluster.stop_node(node)
        time.sleep(20)
        cluster.start_node(node)
        return "node {} stopped 20 s, then started".format(node)
    if fault == "database freeze":
        mongo.freeze()
        time.sleep(15)
        mongo.thaw()
        return "SecantusDB frozen (SIGSTOP) 15 s"
    if fault == "SMTP refusal":
        sink.refuse(451)
        time.sleep(30)
        sink.accept()
        return "SMTP sink answered 451 for 30 s"
    name = KILLED[(number // len(FAULTS)) % len(KILLED)]
    services.kill(name)
    time.sleep(1)
    services.start(name)
    return "{} killed (SIGKILL), started again after 1 s".format(name)


def count(phase, db, mail_copies):
    """{what: (sent, lost, doubled)} of a phase, from the databases and the SMTP sink."""
    registration, notifications = db("registration"), db("notifications")
    rows = list(registration.registrations.find({"session_id": phase.session["id"]}))
    per_official = collections.Counter(r["official_id"] for r in rows)
    copy = registration.sessions.find_one({"_id": phase.session["id"]})
    confirmed = sum(r["status"] == "confirmed" for r in rows)
    by_id = {r["_id"]: r for r in rows}
    imported = {o["email"] for o in registration.officials.find({"email": {"$in": list(phase.imported)}}, {"email": 1})}
    events = [e for e in emitted_events(registration, {"payload.session.id": phase.session["id"]})
              if e["type"].startswith("registration_")]
    # Every answered registration made its confirmed or waitlisted event (counted, so that a query
    # that found no events could not pass for nothing lost).
    announced = {e["payload"]["official"]["id"] for e in events
                 if e["type"] in ("registration_confirmed", "registration_waitlisted")}
    notices = {n["event_id"]: n for n in notifications.notices.find(
        {"event_id": {"$in": [e["_id"] for e in events]}, "channel": "email"}, {"context": 0})}
    from services.notifications.mail import message_id
    unsent = [e for e in events if e["type"] in NOTICED
              and (e["_id"] not in notices or notices[e["_id"]]["status"] != "sent")]
    doubled_mail = sum(mail_copies.get(message_id(n["_id"]), 0) > 1 for n in notices.values())
    return {
        "registrations": (len(phase.registered), len(phase.registered - set(per_official)),
                          sum(c - 1 for c in per_official.values())),
        "over-booked": (SEATS, max(0, confirmed - SEATS) + max(0, copy["seats_taken"] - copy["capacity"]), 0),
        "registration events": (len(phase.registered), len(phase.registered - announced), 0),
        "cancellations": (len(phase.cancelled), sum(by_id.get(r, {}).get("status") != "cancelled"
                                                    for r in phase.cancelled), 0),
        "imported officials": (len(phase.imported), len(phase.imported - imported), 0),
        "notices": (sum(e["type"] in NOTICED for e in events), len(unsent), doubled_mail),
    }


# The registration events an official hears of by email (each its own notice).
NOTICED = ("registration_confirmed", "registration_waitlisted", "registration_cancelled", "registration_promoted")


def main():
    # SIGTERM stops it as Ctrl-C does: through the finally below, which stops every process it started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    root = Path(tempfile.mkdtemp(prefix="trainops-soak-"))
    logs = root / "log"
    logs.mkdir()
    say("starting: {:.0f} minutes, a fault every {:.0f} s; files in {}".format(MINUTES, FAULT_SECONDS, root))
    cluster = Cluster()
    mongo = EmbeddedMongo(storage_path=root / "db", log_path=logs / "secantusd.log")
    sink = SmtpSink(directory=root / "mail", log_path=logs / "smtp-sink.log")
    sms = SmsGateway(directory=root / "sms")
    services = None
    clean = False
    try:
        cluster.start()
        say("cluster of three nodes up in {:.1f} s".format(cluster.started_in))
        vhost = "trainops-soak"
        cluster.make_vhost(vhost)
        mongo.start()
        sink.start()
        sms.start()
        port = free_port()
        gateway = "http://127.0.0.1:{}".format(port)
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
                   AMQP_URI=cluster.amqp_uri(vhost), QUEUE_TYPE="quorum", MONGO_URI=mongo.uri,
                   DATABASE_PREFIX="soak", OPERATOR_TOKEN=TOKEN, FEED_SECRET=secrets.token_urlsafe(32),
                   UNSUBSCRIBE_SECRET=secrets.token_urlsafe(32), SMTP_HOST="127.0.0.1", SMTP_PORT=str(sink.port),
                   SMS_GATEWAY_URL=sms.url, GATEWAY_PORT=str(port), PUBLIC_URL=gateway, SMS_QUIET_HOURS="",
                   EVENT_RETRY_DELAYS="[1, 2, 5, 10, 20, 30, 60]", NOTIFICATION_RETRY_DELAYS="[5, 10, 20, 40, 60]",
                   NOTIFICATIONS_SWEEP_SECONDS="2", HTTP_RATE_PER_CLIENT="0", HTTP_RATE_PER_TOKEN="0",
                   HEARTBEAT_DIR=str(root), LOG_LEVEL="WARNING")
        definitions = subprocess.run([sys.executable, "-m", "backbone.topology", "--definitions"], cwd=REPO_ROOT,
                                     env=env, capture_output=True, text=True, check=True).stdout
        cluster.apply_policies(vhost, json.loads(definitions)["policies"])
        with open(logs / "topology.log", "wb") as log:
            subprocess.run([sys.executable, "-m", "backbone.topology"], cwd=REPO_ROOT, env=env, check=True,
                           stdout=log, stderr=subprocess.STDOUT)
        services = Services(env, logs)
        services.start_all()
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(gateway + "/health", timeout=3).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("soak: the services did not become healthy; logs in {}".format(logs))
            time.sleep(1)
        client = mongo_client(mongo.uri)
        db = lambda service: client["soak_{}".format(service)]  # noqa: E731
        programme = Programme(Client(gateway, TOKEN), db)
        rss_start = services.rss()
        say("healthy; RSS at start (KiB): {}".format(rss_start))

        stack = {"cluster": cluster, "mongo": mongo, "sink": sink, "services": services}
        phases = []
        numbers = iter(range(1000, 10 ** 9))
        began = time.monotonic()
        number = 0
        while time.monotonic() - began < MINUTES * 60:
            fault = FAULTS[number % len(FAULTS)]
            session = programme.known_session(capacity=SEATS, trainer="Soak {}".format(number),
                                              starts_at=at(10 + number, "08:00"), ends_at=at(10 + number, "12:00"))
            phase = Phase(number, fault, session)
            phases.append(phase)
            stop_at = min(time.monotonic() + FAULT_SECONDS, began + MINUTES * 60)
            callers = [eventlet.spawn(caller, programme, phase, stop_at, numbers) for _ in range(CALLERS)]
            say("phase {}: {}".format(number, fault))
            phase.note = inject(fault, number, stack)
            say("phase {}: {}".format(number, phase.note))
            for thread in callers:
                thread.wait()
            number += 1

        say("load done; waiting up to {} s for the notices to settle".format(SETTLE))
        load_done = time.monotonic()
        while time.monotonic() < load_done + SETTLE:
            if all(count(p, db, {})["notices"][1] == 0 for p in phases):
                break
            time.sleep(5)
        settled = time.monotonic() - load_done
        parser = email.parser.BytesParser(policy=email.policy.default)
        mail_copies = collections.Counter()
        for path in sink.directory.glob("*.eml"):
            with open(path, "rb") as handle:
                mail_copies[parser.parse(handle, headersonly=True)["Message-ID"]] += 1
        rss_end = services.rss()

        print("\nsoak summary: {:.0f} minutes, a fault every {:.0f} s; the notices settled {:.0f} s after the "
              "load".format(MINUTES, FAULT_SECONDS, settled))
        total_lost = total_doubled = 0
        for phase in phases:
            counts = count(phase, db, mail_copies)
            print("phase {} ({}): {}".format(phase.number, phase.note, "; ".join(
                "{} {} sent, {} lost, {} doubled".format(what, sent, lost, doubled) if what != "over-booked"
                else "over-booked {}".format(lost) for what, (sent, lost, doubled) in counts.items())))
            print("    HTTP 5xx answers (retried) {}; requests given up {}; other answers {}; reports {} ({} "
                  "failed)".format(phase.errors_5xx, phase.unanswered, dict(phase.refused) or "none", phase.reports,
                                   phase.reports_failed))
            total_lost += sum(lost for sent, lost, doubled in counts.values())
            total_doubled += sum(doubled for sent, lost, doubled in counts.values())
        print("RSS (MiB) at start -> end (a killed service's end is its new process's):")
        for name in services.targets:
            start, end = rss_start.get(name), rss_end.get(name)
            print("    {:<14} {:>7.1f} -> {:>7.1f}".format(name, (start or 0) / 1024, (end or 0) / 1024))
        print("total: {} lost, {} doubled".format(total_lost, total_doubled), flush=True)
        client.close()
        clean = total_lost == total_doubled == 0
        if not clean:
            print("the logs and the data stay in {} for a look".format(root), flush=True)
        return 0 if clean else 1
    finally:
        if services is not None:
            services.stop()
        sms.stop()
        sink.stop()
        mongo.stop()
        cluster.stop()
        if clean:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
