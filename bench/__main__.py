"""`make bench`: throughput figures, each beside the bare-nameko baseline measured in the same run.

Every figure is one line: `bench <name>: <value> <unit> (ratio <r> vs <baseline name>)`.
Figures, never assertions: speed belongs here, not in a timed test. The registration burst and the
notice fan-out measure their baseline again after themselves and print a `_steadied` ratio to the
mean of the two (a baseline alone moves by a third between runs on a shared 2-core machine).
"""
import warnings

warnings.filterwarnings("ignore", message="\nEventlet is deprecated")  # nameko 3 runs on it; known

import eventlet  # noqa: E402

eventlet.monkey_patch()

import json  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import nameko  # noqa: E402
from kombu import Connection  # noqa: E402
from nameko.events import EventDispatcher, event_handler  # noqa: E402
from nameko.rpc import ServiceRpc, rpc  # noqa: E402
from nameko.runners import ServiceRunner  # noqa: E402
from nameko.web.handlers import http  # noqa: E402

import contracts  # noqa: E402,F401  (the contracts of the events the bench makes)
from backbone import topology  # noqa: E402
from backbone.config import load  # noqa: E402
from backbone.events import make_envelope, read_envelope  # noqa: E402
from backbone.lease import Lease  # noqa: E402
from backbone.database import Database, mongo_client  # noqa: E402
from backbone.outbox import outbox_record  # noqa: E402
from backbone.subscriber import subscribe  # noqa: E402

HTTP_REQUESTS = int(os.environ.get("BENCH_HTTP_REQUESTS", 3000))
EVENTS = int(os.environ.get("BENCH_EVENTS", 3000))
NOTICES = int(os.environ.get("BENCH_NOTICES", 10000))
SWEEP_NOTICES = int(os.environ.get("BENCH_SWEEP_NOTICES", 2000))
REGISTRATIONS = int(os.environ.get("BENCH_REGISTRATIONS", 1000))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", 20))
SESSION_CAPACITY = 160  # the seed's largest room
# Wards of the seed's 2025 map (the first the demo uses; 26740 is Phường Sài Gòn): since the reform
# there are no districts, and a class for the district group is refused.
BENCH_UNITS = ["26740", "26737", "26743", "26758", "27160"]

figures = {}
# BENCH_ONLY=relay,events_bare runs some of them (a ratio needs its baseline in the same run).
ONLY = [name for name in os.environ.get("BENCH_ONLY", "").split(",") if name]


def selected(name):
    return not ONLY or name in ONLY


def report(name, value, unit, baseline=None):
    figures[name] = value
    line = "bench {}: {:.1f} {}".format(name, value, unit)
    if baseline in figures:
        line += " (ratio {:.2f} vs {})".format(value / figures[baseline], baseline)
    print(line, flush=True)


def report_steadied(name, baseline, after):
    """The figure's ratio to the mean of its baseline measured before it and again after it: on a
    shared machine a baseline moves by a third from one minute to the next."""
    before = figures[baseline]
    mean = (before + figures[after]) / 2
    print("bench {}_steadied: ratio {:.2f} vs mean of {} before and after ({:.1f}, {:.1f})".format(
        name, figures[name] / mean, baseline, before, figures[after]), flush=True)


def wait_until(predicate, timeout=300, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        eventlet.sleep(interval)
    raise SystemExit("bench: timed out waiting")


def load_http(requests, concurrency=CONCURRENCY, strict=True):
    """Send the requests from a separate process; return its measurements."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(requests, handle)
    try:
        out = subprocess.run([sys.executable, "-m", "bench.load", handle.name, "--concurrency", str(concurrency)],
                             check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(handle.name)
    result = json.loads(out)
    bad = {k: v for k, v in result["statuses"].items() if not k.startswith("2")}
    if bad and not strict:
        print("bench: unexpected HTTP statuses {}".format(bad), flush=True)
    elif bad:
        raise SystemExit("bench: unexpected HTTP statuses {}".format(bad))
    return result


# -- baselines: bare nameko ------------------------------------------------------------------------

class Echo:
    name = "bench_echo"

    @rpc
    def ping(self, value):
        return {"value": value}


class BareGateway:
    name = "bench_gateway"
    echo = ServiceRpc("bench_echo")

    @http("POST", "/echo")
    def post_echo(self, request):
        return json.dumps(self.echo.ping(json.loads(request.get_data())))


class BareProducer:
    name = "bench_producer"
    dispatch = EventDispatcher()

    @rpc
    def emit(self, count):
        started = time.perf_counter()
        for n in range(count):
            self.dispatch("thing_happened", {"n": n})
        return time.perf_counter() - started


bare_handled = []


class BareConsumer:
    name = "bench_consumer"

    @event_handler("bench_producer", "thing_happened")
    def on_thing(self, payload):
        bare_handled.append(payload["n"])


# -- the same through the backbone -----------------------------------------------------------------

class OutboxProducer:
    name = "bench_outbox_producer"
    db = Database()

    @rpc
    def emit(self, start, count):
        def work(tx):
            for n in range(start, start + count):
                tx.emit("offering_withdrawn", {"offering_id": "o-{}".format(n), "partner_id": "p"})
        self.db.transaction(work)


# BENCH_GROUPED=0: the consumer writes each event in its own transaction (the figure before the group commit).
GROUPED = os.environ.get("BENCH_GROUPED", "1") != "0"


class OutboxConsumer:
    name = "bench_outbox_consumer"
    db = Database()

    @subscribe("offering_withdrawn", grouped=GROUPED)
    def on_withdrawn(self, event):
        self.db.transaction(lambda tx: tx.effects.insert_one({"_id": event["payload"]["offering_id"]}))


def run_services(*classes):
    runner = ServiceRunner()
    for cls in classes:
        runner.add_service(cls)
    runner.start()
    return runner


def bench_http_rpc(base_url, name="http_rpc_bare"):
    runner = run_services(Echo, BareGateway)
    try:
        load_http([["POST", base_url + "/echo", {"n": 1}, {}]] * 200)  # warm-up
        result = load_http([["POST", base_url + "/echo", {"n": n}, {}] for n in range(HTTP_REQUESTS)])
        report(name, result["per_second"], "req/s")
        print("bench {}_latency: p50 {:.1f} ms, p99 {:.1f} ms".format(name, result["p50_ms"], result["p99_ms"]))
    finally:
        runner.stop()


def bench_bare_events(amqp_uri):
    runner = run_services(BareProducer, BareConsumer)
    try:
        from nameko.standalone.rpc import ClusterRpcClient
        with ClusterRpcClient() as client:
            client.bench_producer.emit(100)
            wait_until(lambda: len(bare_handled) >= 100)
            bare_handled.clear()
            started = time.monotonic()
            seconds = client.bench_producer.emit(EVENTS)
            finished = wait_until(lambda: len(bare_handled) >= EVENTS)
        report("events_dispatch_bare", EVENTS / seconds, "events/s")
        report("events_end_to_end_bare", EVENTS / (finished - started), "events/s")
    finally:
        runner.stop()


def bench_relay(config):
    """The relay alone: EVENTS waiting in an outbox, published with batched confirms and marked
    published. The relay runs but is held off by a lease that someone else holds until the outbox is
    written; the clock starts when that lease is let go."""
    db = mongo_client(config["MONGO_URI"])["{}_bench_relay".format(config["DATABASE_PREFIX"])]
    held = Lease(db.leases, "outbox-relay", "bench-holder", 600)
    held.acquire()

    class RelayOnly:
        name = "bench_relay"
        db = Database()

        @rpc
        def noop(self):
            pass

    runner = run_services(RelayOnly)
    try:
        records = [outbox_record(make_envelope(
            "offering_withdrawn", {"offering_id": "o-{}".format(n), "partner_id": "p"}, "bench", "bench"))
            for n in range(EVENTS)]
        db.outbox.insert_many(records)
        started = time.monotonic()
        held.release()
        finished = wait_until(lambda: db.outbox.find_one({"state": "pending"}, {"_id": 1}) is None, interval=0.1)
        report("relay_publish", EVENTS / (finished - started), "events/s", "events_dispatch_bare")
    finally:
        runner.stop()


def cpu_seconds(pid):
    """The CPU time (user and system) a process has used so far, from /proc."""
    with open("/proc/{}/stat".format(pid)) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_backbone_events(config, mongo_pid):
    from backbone import counters
    runner = run_services(OutboxProducer, OutboxConsumer)
    effects = mongo_client(config["MONGO_URI"])["{}_bench_outbox_consumer".format(config["DATABASE_PREFIX"])].effects
    # Counted in this process, as the bare consumer's list is: counting the effects in the database
    # every 0.1 s (a scan, 18 ms at 4,000 documents) took a fifth of SecantusDB's time from the run.
    # The consumer counts an event handled once its transaction committed.
    handled = counters.EVENTS_HANDLED.labels(OutboxConsumer.name, "offering_withdrawn")
    try:
        from nameko.standalone.rpc import ClusterRpcClient
        with ClusterRpcClient() as client:
            started, database_cpu = time.monotonic(), cpu_seconds(mongo_pid)
            for start in range(0, EVENTS, 100):
                client.bench_outbox_producer.emit(start, 100)
            finished = wait_until(lambda: handled._value.get() >= EVENTS)
            database_cpu = cpu_seconds(mongo_pid) - database_cpu
        if effects.count_documents({}) != EVENTS:
            raise SystemExit("bench: {} effects of {} events".format(effects.count_documents({}), EVENTS))
        report("events_end_to_end_backbone", EVENTS / (finished - started), "events/s", "events_end_to_end_bare")
        # What the other processes on the machine move least: the database's own work per event.
        print("bench events_end_to_end_backbone_database: {:.2f} ms of SecantusDB CPU per event (outbox, "
              "relay and consumer; grouped {})".format(database_cpu / EVENTS * 1000, "on" if GROUPED else "off"),
              flush=True)
    finally:
        runner.stop()


def bench_flow(config, smtp_sink):
    """The walking skeleton: registrations over HTTP, and the confirmation emails they cause."""
    from devstack import seed
    from gateway.service import GatewayService
    from services.notifications.service import NotificationsService
    from services.partners.service import PartnersService
    from services.registration.service import RegistrationService
    from services.scheduling.service import SchedulingService

    runner = run_services(PartnersService, SchedulingService, RegistrationService, NotificationsService,
                          GatewayService)
    base = config["GATEWAY_URL"]
    auth = {"Authorization": "Bearer " + config["OPERATOR_TOKEN"]}
    try:
        seeded = seed.load(base, config["OPERATOR_TOKEN"], say=lambda _: None)
        session = _bench_session(base, auth, seeded)
        officials = load_http([["POST", base + "/officials", {
            "full_name": "Cán bộ {}".format(n), "email": "canbo{}@q1.gov.vn".format(n),
            "phone": "0903{:06d}".format(n), "unit_code": BENCH_UNITS[0], "audience_group": "ward_commune"}, auth]
            for n in range(REGISTRATIONS)])
        assert officials["count"] == REGISTRATIONS
        ids = [d["_id"] for d in mongo_client(config["MONGO_URI"])[
            "{}_registration".format(config["DATABASE_PREFIX"])].officials.find({}, {"_id": 1})]
        mail_before = len(list(smtp_sink.directory.glob("*.eml")))
        started = time.monotonic()
        result = load_http([["POST", base + "/sessions/{}/registrations".format(session), {"official_id": i}, auth]
                            for i in ids])
        report("http_registration", result["per_second"], "req/s", "http_rpc_bare")
        print("bench http_registration_latency: p50 {:.1f} ms, p99 {:.1f} ms".format(result["p50_ms"], result["p99_ms"]))
        confirmed = min(len(ids), SESSION_CAPACITY)  # the rest are waitlisted: no confirmation email
        finished = wait_until(
            lambda: len(list(smtp_sink.directory.glob("*.eml"))) - mail_before >= confirmed, interval=0.1)
        report("flow_registration_to_email", confirmed / (finished - started), "flows/s", "http_rpc_bare")
    finally:
        runner.stop()


def bench_notice_fanout(config, smtp_sink):
    """Notice fan-out (BENCH_NOTICES, default 10,000): as many registration_confirmed events published
    to the notifications service, timed until as many emails (Vietnamese text + HTML, QR inline, ICS
    invite) were accepted by the local SMTP server; beside it, bare smtplib sending as many small
    messages to the same server over one connection."""
    import smtplib
    from email.message import EmailMessage
    from backbone.outbox import ConfirmedPublisher, event_message
    from services.notifications.service import NotificationsService

    def mail_count():
        # listdir, not glob: this runs in the process that runs the service, over a directory that
        # grows to tens of thousands of files (glob cost a tenth of a core).
        return sum(1 for name in os.listdir(smtp_sink.directory) if name.endswith(".eml"))

    def bare(name, count=NOTICES, warm_up=300):
        with smtplib.SMTP("127.0.0.1", smtp_sink.port) as client:
            # Untimed first, as the HTTP baseline is: the sink's first messages are slower.
            for n in range(-warm_up, count):
                if n == 0:
                    before, started = mail_count(), time.monotonic()
                message = EmailMessage()
                message["Subject"] = "Xác nhận đăng ký {}".format(n)
                message["From"] = "daotao-ai@trainops.local"
                message["To"] = "bare{}@q1.gov.vn".format(n)
                message.set_content("Đăng ký của Anh/Chị đã được xác nhận.")
                client.send_message(message)
        report(name, count / (time.monotonic() - started), "notices/s")
        assert mail_count() - before == count

    bare("notices_smtplib_bare")

    # Two weeks ahead: no reminder falls due during the run (it would be counted as a notice).
    day = _bench_day(14)
    starts_at = "{}T08:00:00+07:00".format(day)
    session = {"id": "session-bench", "title": "Bồi dưỡng kiến thức và kỹ năng ứng dụng AI trong công việc",
               "venue_name": "Trường Đại học Ngân hàng TP.HCM", "address": "36 Tôn Thất Đạm, Quận 1",
               "room": "Hội trường lớn", "starts_at": starts_at, "ends_at": "{}T17:00:00+07:00".format(day)}
    envelopes = [make_envelope("registration_confirmed", {
        "registration_id": "registration-{}".format(n), "session": session, "qr_token": uuid.uuid4().hex,
        "official": {"id": "official-{}".format(n), "full_name": "Cán bộ {}".format(n),
                     "email": "canbo{}@q1.gov.vn".format(n), "phone": None, "language": "vi"}},
        "registration", "bench") for n in range(NOTICES)]
    messages = [event_message(e, topology.exchange_name()) for e in envelopes]
    as_deployed()
    runner = run_services(NotificationsService)
    publisher = ConfirmedPublisher(config["AMQP_URI"])
    try:
        before = mail_count()
        started = time.monotonic()
        for start in range(0, NOTICES, 500):
            publisher.publish_batch(messages[start:start + 500])
        # Once a second: the count shares the service's process (and a core), and lists tens of
        # thousands of files; the figure is then at most a second pessimistic.
        finished = wait_until(lambda: mail_count() - before >= NOTICES, timeout=1800, interval=1.0)
        report("notices_service", NOTICES / (finished - started), "notices/s", "notices_smtplib_bare")
    finally:
        publisher.close()
        runner.stop()
    bare("notices_smtplib_bare_after")
    report_steadied("notices_service", "notices_smtplib_bare", "notices_smtplib_bare_after")


REGISTRATION_OFFICIALS = int(os.environ.get("BENCH_REGISTRATION_OFFICIALS", 2000))
REGISTRATION_SESSIONS = int(os.environ.get("BENCH_REGISTRATION_SESSIONS", 5))
REGISTRATION_SEATS = 150
IMPORT_ROWS = int(os.environ.get("BENCH_IMPORT_ROWS", 20000))


def bench_registration_burst(config):
    """Registration's own figures: a staff list of IMPORT_ROWS imported with the CLI's code, then
    REGISTRATION_OFFICIALS officials each registering for REGISTRATION_SESSIONS sessions of 150 seats
    through HTTP (all at once, CONCURRENCY connections), and a check that no session over-booked."""
    import requests
    from devstack import seed
    from gateway.service import GatewayService
    from services.partners.service import PartnersService
    from services.registration import import_cli
    from services.registration.service import RegistrationService
    from services.scheduling.service import SchedulingService

    # Notifications are left out: this measures registration (the flow bench measures the emails).
    as_deployed()
    runner = run_services(PartnersService, SchedulingService, RegistrationService, GatewayService)
    base = config["GATEWAY_URL"]
    auth = {"Authorization": "Bearer " + config["OPERATOR_TOKEN"]}
    registration_db = mongo_client(config["MONGO_URI"])["{}_registration".format(config["DATABASE_PREFIX"])]
    work = tempfile.mkdtemp(prefix="trainops-bench-import-")
    try:
        seeded = seed.load(base, config["OPERATOR_TOKEN"], say=lambda _: None)
        units = BENCH_UNITS

        # The bulk nomination: IMPORT_ROWS officials, one CSV file, the CLI's chunks.
        path = os.path.join(work, "danh-sach.csv")
        with open(path, "w", encoding="utf-8-sig", newline="") as handle:
            handle.write("full_name,email,phone,unit_code,audience_group\r\n")
            for n in range(IMPORT_ROWS):
                handle.write("Nguyễn Thị Bench {n},bench{n}@{u}.gov.vn,0984{n:06d},{U},ward_commune\r\n".format(
                    n=n, u=units[n % 5].lower(), U=units[n % 5]))
        with open(os.devnull, "w") as quiet:
            summary = import_cli.run(path, base, config["OPERATOR_TOKEN"], chunk=2000, out=quiet)
        if summary["created"] + summary["unchanged"] != IMPORT_ROWS or summary["errors"]:
            raise SystemExit("bench: import went wrong: {}".format({k: summary[k] for k in ("created", "unchanged")}))
        report("registration_import", IMPORT_ROWS / summary["seconds"], "rows/s")
        print("bench registration_import_time: {} rows in {:.1f} s".format(IMPORT_ROWS, summary["seconds"]))

        # Five sessions of 150 seats in a 200-seat hall, on five days.
        venue = requests.post(base + "/venues", json={
            "name": "Hội trường Bench", "address": "1 Lê Duẩn, Quận 1", "host_partner_id": seeded["partners"]["HUB"]["id"],
            "rooms": [{"name": "Hội trường 200", "capacity": 200}]}, headers=auth, timeout=30).json()
        sessions = []
        offering = _bench_offering(base, auth, seeded)
        for n in range(REGISTRATION_SESSIONS):
            day = _bench_day(14 + n % 8)
            sessions.append(_post_session(base, auth, {
                "offering_id": offering, "venue_id": venue["id"], "room": "Hội trường 200",
                "trainer": "Bench {}".format(n), "starts_at": "{}T{:02d}:00:00+07:00".format(day, 7 + n // 8),
                "ends_at": "{}T{:02d}:59:00+07:00".format(day, 7 + n // 8), "capacity": REGISTRATION_SEATS,
                "eligible_units": units, "audience_groups": ["ward_commune"]}))
        wait_until(lambda: registration_db.sessions.count_documents({"_id": {"$in": sessions}}) == len(sessions))

        ids = [d["_id"] for d in registration_db.officials.find(
            {"email": {"$regex": "^bench"}}, {"_id": 1}).limit(REGISTRATION_OFFICIALS)]
        requests_ = [["POST", base + "/sessions/{}/registrations".format(s), {"official_id": i}, auth]
                     for i in ids for s in sessions]
        result = load_http(requests_)
        report("registration_burst", result["per_second"], "req/s", "http_rpc_bare")
        print("bench registration_burst_latency: p50 {:.1f} ms, p99 {:.1f} ms ({} registrations, {} sessions)".format(
            result["p50_ms"], result["p99_ms"], len(requests_), len(sessions)))
        overbooked = 0
        for session_id in sessions:
            confirmed = registration_db.registrations.count_documents({"session_id": session_id, "status": "confirmed"})
            counter = registration_db.sessions.find_one({"_id": session_id})["seats_taken"]
            expected = min(REGISTRATION_SEATS, len(ids))
            if confirmed > REGISTRATION_SEATS or counter != confirmed or confirmed != expected:
                overbooked += 1
                print("bench: session {} has {} confirmed, counter {}".format(session_id, confirmed, counter))
        print("bench registration_overbooked: {} sessions".format(overbooked), flush=True)
    finally:
        runner.stop()
        shutil.rmtree(work, ignore_errors=True)


# -- scale: how costs grow with the data ----------------------------------------------------------------

SCALE = [int(n) for n in os.environ.get("BENCH_SCALE", "1000,10000").split(",") if n]
SCALE_REQUESTS = int(os.environ.get("BENCH_SCALE_REQUESTS", 200))
# BENCH_SCALE_FIGURES=search_name,search_email measures some of the scale step's figures (all by default).
SCALE_FIGURES = [name for name in os.environ.get("BENCH_SCALE_FIGURES", "").split(",") if name]


def rss_mb(pid=None):
    """Resident memory of a process in MiB (this one by default), from /proc."""
    with open("/proc/{}/status".format(pid or "self")) as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _open_session(registration_db, scheduling_db, size, capacity=1_000_000):
    """A session a month from now open to every unit (with room for everyone by default): where the
    scale step's registrations go at `size`."""
    from datetime import datetime, timedelta, timezone
    from bench import city
    from services.scheduling import rules as scheduling_rules
    now = datetime.now(timezone.utc)
    scheduled, copy = city.session(city.SEED, 10_000_000 + size, "partner-city", city.VENUE, now,
                                    open_to_every_unit=True)
    starts = now + timedelta(days=30)
    for record in (scheduled, copy):
        record.update(starts_at=starts, ends_at=starts + timedelta(hours=4), registration_closes_at=starts,
                      parts=[{"starts_at": starts, "ends_at": starts + timedelta(hours=4)}], capacity=capacity)
    scheduled.update(scheduling_rules.calendar_fields(starts, starts + timedelta(hours=4), []))
    scheduling_db.sessions.insert_one(scheduled)
    registration_db.sessions.insert_one(copy)
    return copy["_id"]


CAMPAIGN_OFFICIALS = int(os.environ.get("BENCH_CAMPAIGN_OFFICIALS", 2000))
CAMPAIGN_SESSIONS = int(os.environ.get("BENCH_CAMPAIGN_SESSIONS", 100))


def bench_campaign(config, smtp_sink, registration_db, scheduling_db, size):
    """A city-wide campaign on the scale step's data set: CAMPAIGN_SESSIONS sessions of 150 seats
    opened at once to every unit, and CAMPAIGN_OFFICIALS of the city's officials registering (one
    session each, CONCURRENCY connections), timed until every registration is answered and until
    every notice (confirmation or waitlist place) reached the SMTP server; beside them, bare HTTP
    RPC and bare smtplib measured in the same run."""
    import smtplib
    from email.message import EmailMessage
    def mail_count():
        return sum(1 for name in os.listdir(smtp_sink.directory) if name.endswith(".eml"))

    def bare_smtp(name, count=1000):
        with smtplib.SMTP("127.0.0.1", smtp_sink.port) as client:
            before, started = mail_count(), time.monotonic()
            for n in range(count):
                message = EmailMessage()
                message["Subject"], message["From"] = "Xác nhận {}".format(n), "daotao-ai@trainops.local"
                message["To"] = "bare{}@q1.gov.vn".format(n)
                message.set_content("Đăng ký của Anh/Chị đã được xác nhận.")
                client.send_message(message)
        report(name, count / (time.monotonic() - started), "notices/s")
        assert mail_count() - before == count

    base = config["GATEWAY_URL"]
    auth = {"Authorization": "Bearer " + config["OPERATOR_TOKEN"]}
    # The scale step's registrations still send their notices for a while: the baseline waits for quiet.
    counts = [mail_count()]
    while len(counts) < 60 and (len(counts) < 3 or counts[-1] != counts[-3]):
        time.sleep(1)
        counts.append(mail_count())
    bare_smtp("campaign_smtplib_bare")
    sessions = [_open_session(registration_db, scheduling_db, 20_000_000 + n, capacity=150)
                for n in range(CAMPAIGN_SESSIONS)]
    count = min(CAMPAIGN_OFFICIALS, size)
    requests_ = [["POST", base + "/sessions/{}/registrations".format(sessions[n % len(sessions)]),
                  {"official_id": "official-city{:07d}".format(n * (size // count))}, auth] for n in range(count)]
    before = mail_count()
    started = time.monotonic()
    result = load_http(requests_)
    taken = time.monotonic() - started
    report("campaign_registration", result["per_second"], "req/s", "campaign_http_rpc_bare")
    print("bench campaign_registration_time: {} registrations for {} sessions in {:.1f} s, p50 {:.1f} ms, "
          "p99 {:.1f} ms".format(count, len(sessions), taken, result["p50_ms"], result["p99_ms"]), flush=True)
    finished = wait_until(lambda: mail_count() - before >= count, timeout=1800, interval=1.0)
    report("campaign_notices", count / (finished - started), "notices/s", "campaign_smtplib_bare")
    print("bench campaign_notices_time: {} notices in {:.1f} s from the first registration".format(
        count, finished - started), flush=True)


def bench_scale(config, mongo_pid=None, smtp_sink=None):
    """Each figure at each size of the city (BENCH_SCALE officials), p50 over SCALE_REQUESTS
    requests, with its ratio to the first size's: search by name and by email, registration,
    the programme calendar (a month; a unit's), coverage and the unit report. The services and the
    gateway run as their own `nameko run` processes, as deployed, so that each one's memory is its
    own: printed idle and after the run (nothing that grows with the city may stay in a process)."""
    import random
    from bench import city
    from bench.processes import Services
    from services.registration import rules, store

    campaign = smtp_sink is not None and selected("campaign")
    if campaign:
        # Before the services start: the bare gateway would share their web server.
        bench_http_rpc(config["GATEWAY_URL"], "campaign_http_rpc_bare")
    logs = tempfile.mkdtemp(prefix="trainops-bench-scale-")
    services = Services(dict(
        os.environ, PYTHONUNBUFFERED="1", AMQP_URI=config["AMQP_URI"], MONGO_URI=config["MONGO_URI"],
        DATABASE_PREFIX=config["DATABASE_PREFIX"], OPERATOR_TOKEN=config["OPERATOR_TOKEN"],
        FEED_SECRET=config["FEED_SECRET"], UNSUBSCRIBE_SECRET=config["NOTIFICATIONS"]["unsubscribe_secret"],
        SMTP_HOST="127.0.0.1", SMTP_PORT=str(config["SMTP"]["port"]), SMS_GATEWAY_URL=config["SMS"]["gateway_url"],
        GATEWAY_PORT=config["GATEWAY_URL"].rsplit(":", 1)[1], PUBLIC_URL=config["GATEWAY_URL"], SMS_QUIET_HOURS="",
        HTTP_RATE_PER_CLIENT="0", HTTP_RATE_PER_TOKEN="0", LOG_LEVEL="WARNING"), logs)
    services.start_all()
    base = config["GATEWAY_URL"]
    auth = {"Authorization": "Bearer " + config["OPERATOR_TOKEN"]}
    client = mongo_client(config["MONGO_URI"])
    registration_db = client["{}_registration".format(config["DATABASE_PREFIX"])]
    scheduling_db = client["{}_scheduling".format(config["DATABASE_PREFIX"])]

    def memory(name):
        print("bench {}: {}; SecantusDB {:.0f} MiB".format(name, ", ".join(
            "{} {:.0f} MiB".format(service, (kib or 0) / 1024) for service, kib in sorted(services.rss().items())),
            rss_mb(mongo_pid) if mongo_pid else 0), flush=True)
    try:
        import requests

        def map_loaded():
            try:
                return requests.post(base + "/units/load-map", headers=auth, timeout=120).status_code == 200
            except requests.RequestException:  # the gateway is still starting
                return False
        wait_until(map_loaded, timeout=180, interval=0.5)
        memory("scale_rss_idle")
        first, done, coordinator = SCALE[0], 0, None
        for size in SCALE:
            started = time.monotonic()
            written = city.extend(registration_db, scheduling_db, done, size, "partner-city", city.VENUE)
            done = size
            print("bench scale_generate_{}: {:.1f} s ({})".format(size, time.monotonic() - started, ", ".join(
                "{} {}".format(v, k) for k, v in sorted(written.items()))), flush=True)
            started = time.monotonic()
            store.rebuild_coverage(registration_db)  # a bulk load is counted by the rebuild command's code
            report("scale_coverage_rebuild_{}".format(size), time.monotonic() - started, "s")
            rnd = random.Random(size)
            picked = [city.official(city.SEED, rnd.randrange(size), city.units_of_today(), None)
                      for _ in range(SCALE_REQUESTS)]
            session_id = _open_session(registration_db, scheduling_db, size)
            if coordinator is None:
                # A coordinator of one unit: its coverage and report read its units' counters alone.
                created = requests.post(base + "/units/{}/coordinators".format(picked[0]["unit_code"]), json={
                    "full_name": "Điều Phối Bench", "email": "dieuphoi@bench.example", "phone": "0909 000 111"},
                    headers=auth, timeout=30)
                assert created.status_code == 201, created.text
                coordinator = {"Authorization": "Bearer " + created.json()["api_token"]}
            month = "2026-0{}".format(1 + size % 9)
            figures_ = {
                "search_name": [["GET", base + "/officials?q=" + requests.utils.quote(
                    rules.fold(o["full_name"])), None, auth] for o in picked],
                "search_email": [["GET", base + "/officials?q=" + o["email"].split("@")[0], None, auth]
                                 for o in picked],
                "registration": [["POST", base + "/sessions/{}/registrations".format(session_id),
                                  {"official_id": o["_id"]}, auth] for o in {o["_id"]: o for o in picked}.values()],
                "session_month": [["GET", base + "/sessions?month=" + month, None, auth]] * SCALE_REQUESTS,
                "session_unit": [["GET", base + "/sessions?unit={}&month={}".format(o["unit_code"], month), None, auth]
                                 for o in picked],
                "coverage_unit": [["GET", base + "/reports/coverage?by=unit", None, auth]] * 10,
                "coverage_month": [["GET", base + "/reports/coverage?by=month", None, auth]] * 10,
                "report_unit": [["GET", base + "/reports/unit", None, auth]] * 10,
                "coverage_unit_coordinator": [["GET", base + "/reports/coverage?by=unit", None, coordinator]] * 10,
                "coverage_month_coordinator": [["GET", base + "/reports/coverage?by=month", None, coordinator]] * 10,
                "report_unit_coordinator": [["GET", base + "/reports/unit", None, coordinator]] * 10,
            }
            for name, requests_ in figures_.items():
                if SCALE_FIGURES and name not in SCALE_FIGURES:
                    continue
                result = load_http(requests_, concurrency=2, strict=False)
                report("scale_{}_{}".format(name, size), result["p50_ms"], "ms p50",
                       "scale_{}_{}".format(name, first) if size != first else None)
        if campaign:
            bench_campaign(config, smtp_sink, registration_db, scheduling_db, done)
        memory("scale_rss_after")
    finally:
        services.stop()
        client.close()
        shutil.rmtree(logs, ignore_errors=True)


def bench_sweep(config, smtp_sink):
    """The notices sweep (retries, SMS held over quiet hours, reminders): BENCH_SWEEP_NOTICES notices
    due for a retry, sent by one notifications replica, then as many by two (each claims its own
    batches). Both replicas share this process (and its core): on separate pods they add up more."""
    from datetime import timedelta
    from backbone.clock import utcnow
    from backbone.config import database_name
    from services.notifications import store
    from services.notifications.service import NotificationsService

    notices = mongo_client(config["MONGO_URI"])[database_name("notifications")].notices
    day = _bench_day(14)
    session = {"id": "session-sweep", "title": "Bồi dưỡng kỹ năng số", "venue_name": "Trường Đại học Ngân hàng",
               "address": "36 Tôn Thất Đạm, Quận 1", "room": "Hội trường lớn",
               "starts_at": "{}T08:00:00+07:00".format(day), "ends_at": "{}T17:00:00+07:00".format(day)}

    def due(tag):
        now = utcnow()
        docs = []
        for n in range(SWEEP_NOTICES):
            official = {"id": "sweep-{}-{}".format(tag, n), "full_name": "Cán bộ {}".format(n),
                        "email": "sweep{}.{}@q1.gov.vn".format(tag, n), "phone": None, "language": "vi"}
            event = make_envelope("registration_confirmed", {
                "registration_id": "r-{}-{}".format(tag, n), "session": session, "qr_token": uuid.uuid4().hex,
                "official": official}, "registration", "bench")
            _, payload = read_envelope(event)
            context = dict(payload, language="vi", unsubscribe={"email": "u", "sms": "u"})
            doc = store.new_notice(now, store.NEVER, event["event_id"], "email", official["email"],
                                   "registration_confirmed", "vi", context, "bench", official_id=official["id"])
            doc.update(status="retrying", attempts=1, last_error="SMTP 451", not_before=now - timedelta(seconds=1))
            docs.append(doc)
        return docs

    as_deployed()
    nameko.config["NOTIFICATIONS_SWEEP_SECONDS"] = 0.2
    for replicas in (1, 2):
        runners = [run_services(NotificationsService) for _ in range(replicas)]
        try:
            docs = due(replicas)
            started = time.monotonic()
            notices.insert_many(docs)
            ids = [d["_id"] for d in docs]
            finished = wait_until(lambda: notices.count_documents(
                {"_id": {"$in": ids}, "status": {"$in": list(store.SENDABLE)}}) == 0, timeout=1800, interval=0.5)
            if notices.count_documents({"_id": {"$in": ids}, "status": "sent"}) != SWEEP_NOTICES:
                raise SystemExit("bench: the sweep failed notices: {}".format(
                    notices.find_one({"_id": {"$in": ids}, "status": "failed"}, {"last_error": 1})))
            name = "sweep_{}_replica{}".format(replicas, "s" if replicas > 1 else "")
            report(name, SWEEP_NOTICES / (finished - started), "notices/s",
                   "sweep_1_replica" if replicas > 1 else None)
        finally:
            for runner in runners:
                runner.stop()


def as_deployed():
    """The relay polls as often as it does in deployment (config.yml): the figures of the services
    are then theirs as deployed, not those of a relay polling ten times as often, as the event
    benches above need for their timing (a commit wakes the relay of its own service anyway)."""
    nameko.config["EVENTS"]["relay_poll_seconds"] = load()["EVENTS"]["relay_poll_seconds"]


def _bench_day(offset):
    """A day from today in Ho Chi Minh City (ISO): the bench's classes are always to come."""
    from datetime import timedelta
    from backbone.clock import local_date
    return (local_date() + timedelta(days=offset)).isoformat()


def _bench_offering(base, auth, seeded):
    """An offering of the seed's SIU open from today, under an agreement signed for the bench (the
    seed's run to 2026-12-31, the programme's real dates), once scheduling knows of it."""
    import requests
    siu = seeded["partners"]["SIU"]["id"]
    agreement = requests.post(base + "/partners/{}/agreements".format(siu), json={
        "title": "Thỏa thuận hợp tác đào tạo (bench)", "signed_on": _bench_day(-1), "valid_from": _bench_day(-1),
        "valid_until": _bench_day(365), "scope": ["ward_commune"]}, headers=auth, timeout=30)
    offering = requests.post(base + "/offerings", json={
        "partner_id": siu, "title": "Bồi dưỡng kiến thức và kỹ năng ứng dụng AI trong công việc",
        "audience_groups": ["ward_commune"], "modules": [{"title": "AI trong công tác văn phòng", "hours": 8}],
        "starts_from": _bench_day(0), "ends_by": _bench_day(60)}, headers=auth, timeout=30)
    if agreement.status_code != 201 or offering.status_code != 201:
        raise SystemExit("bench: offering refused: {} {}".format(agreement.text, offering.text))
    return offering.json()["id"]


def _post_session(base, auth, body):
    """Schedule a session, once scheduling has heard of its offering (partners tells it by event)."""
    import requests
    deadline = time.monotonic() + 30
    while True:
        response = requests.post(base + "/sessions", json=body, headers=auth, timeout=30)
        if response.status_code == 201:
            return response.json()["id"]
        if time.monotonic() > deadline:
            raise SystemExit("bench: session refused: {}".format(response.text))
        time.sleep(0.2)


def _bench_session(base, auth, seeded):
    import requests
    day = _bench_day(14)
    body = {"offering_id": _bench_offering(base, auth, seeded), "venue_id": seeded["venue"]["id"],
            "room": "Hội trường lớn", "trainer": "Bench", "starts_at": "{}T08:00:00+07:00".format(day),
            "ends_at": "{}T17:00:00+07:00".format(day), "capacity": SESSION_CAPACITY, "eligible_units": [BENCH_UNITS[0]],
            "audience_groups": ["ward_commune"]}
    session = _post_session(base, auth, body)
    wait_until(lambda: requests.get(base + "/sessions/" + session, headers=auth, timeout=30).status_code == 200)
    # Registration learns of the session by event: wait until it can take registrations.
    time.sleep(1)
    return session


def declare_topology(config, subscribed=None):
    """Empty queues for what comes next: `subscribed` ({service: event types}), or every service's."""
    with Connection(config["AMQP_URI"]) as connection:
        topology.delete_queues(connection, list(topology.subscriptions([OutboxConsumer])) + list(config["SERVICES"]))
        topology.declare(connection, subscribed)


def main():
    from devstack import free_port
    from devstack.mongo import EmbeddedMongo
    from devstack.rabbit import delete_vhost, ensure_rabbitmq, make_vhost
    from devstack.smtp_sink import SmtpSink
    from devstack.sms_gateway import SmsGateway

    base_uri = os.environ.get("AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")
    ensure_rabbitmq(base_uri)
    vhost = "trainops-bench-{}".format(os.getpid())
    make_vhost(vhost)
    work = tempfile.mkdtemp(prefix="trainops-bench-")
    # At 100,000 officials the city (with the search keys) outgrew SecantusDB's default 1 GB cache and
    # the read models' rebuild failed inside the server; at 250,000 it holds several GB.
    mongo = EmbeddedMongo(cache_size=os.environ.get("BENCH_MONGO_CACHE", "8G"))
    mongo.start()
    smtp_sink = SmtpSink(directory=os.path.join(work, "mail"), log_path=os.path.join(work, "smtp-sink.log"))
    smtp_sink.start()
    sms = SmsGateway(directory=os.path.join(work, "sms"))
    sms.start()
    port = free_port()
    config = load(AMQP_URI=base_uri.rstrip("/") + "/" + vhost, MONGO_URI=mongo.uri,
                  DATABASE_PREFIX="bench{}".format(uuid.uuid4().hex[:6]),
                  WEB_SERVER_ADDRESS="127.0.0.1:{}".format(port), OPERATOR_TOKEN=uuid.uuid4().hex,
                  FEED_SECRET=secrets.token_urlsafe(32))  # config.yml commits no secret
    config["GATEWAY_URL"] = config["PUBLIC_URL"] = "http://127.0.0.1:{}".format(port)
    config["NOTIFICATIONS"]["unsubscribe_secret"] = secrets.token_urlsafe(32)
    config["SMTP"].update(host="127.0.0.1", port=smtp_sink.port)
    config["SMS"].update(gateway_url=sms.url)
    config["EVENTS"].update(relay_poll_seconds=0.05)
    config["HTTP"].update(rate_per_client=0, rate_per_token=0)  # capacity, not the limiter, is measured
    print("bench: {} HTTP requests, {} events, {} registrations, concurrency {} (2 cores; services, "
          "SecantusDB and the load generator share them)".format(HTTP_REQUESTS, EVENTS, REGISTRATIONS, CONCURRENCY))
    try:
        with nameko.config.patch(config, clear=True):
            # Like the bare events, the backbone's go to one consumer's queue only, until the flow.
            declare_topology(config, topology.subscriptions([OutboxConsumer]))
            if selected("http_rpc_bare"):
                bench_http_rpc(config["GATEWAY_URL"])
            if selected("events_bare"):
                bench_bare_events(config["AMQP_URI"])
            if selected("relay"):
                bench_relay(config)
                declare_topology(config, topology.subscriptions([OutboxConsumer]))  # the relay's events are not the next bench's
            if selected("events_backbone"):
                bench_backbone_events(config, mongo._process.pid)
            declare_topology(config)
            if selected("flow"):
                bench_flow(config, smtp_sink)
            if selected("registration"):
                bench_registration_burst(config)
                if selected("http_rpc_bare"):
                    bench_http_rpc(config["GATEWAY_URL"], "http_rpc_bare_after")
                    report_steadied("registration_burst", "http_rpc_bare", "http_rpc_bare_after")
            if selected("sweep"):
                bench_sweep(config, smtp_sink)
            if selected("notices"):
                declare_topology(config)  # the flow's events are not this bench's
                bench_notice_fanout(config, smtp_sink)
            if selected("scale"):
                declare_topology(config)
                bench_scale(config, mongo._process.pid, smtp_sink)
    finally:
        sms.stop()
        smtp_sink.stop()
        mongo.stop()
        delete_vhost(vhost)
        shutil.rmtree(work, ignore_errors=True)  # the sink's tens of thousands of messages



if __name__ == "__main__":
    main()
