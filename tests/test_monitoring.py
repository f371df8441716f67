"""Operator monitoring, as the Digital Transformation Centre meets it: health that names a stopped
service fast, metrics that move when events flow, dead letters that can be replayed once a fix is in,
the audit trail of one correlation id, alert rules on metrics the system really exports, and logs
without contact details. All on the real broker and database."""
import json
import logging
import re
import time
from datetime import timedelta
from pathlib import Path

import eventlet
import pytest
import yaml
from nameko.testing.services import entrypoint_hook
from nameko.testing.utils import get_container
from prometheus_client.parser import text_string_to_metric_families

from backbone.logs import JsonFormatter, Tracing
from backbone.operated import Operated
from backbone.clock import utcnow
from backbone.database import Database
from ops import metrics
from tests.helpers import moved, publish_to, samples, settled, value, wait_for, withdrawn

ROOT = Path(__file__).resolve().parent.parent


def test_health_names_a_stopped_service_as_down_within_the_timeout(system, anonymous):
    from services.registration.service import RegistrationService
    healthy = anonymous.get("/health")
    assert healthy.status_code == 200, healthy.text
    assert healthy.json()["services"] == dict.fromkeys(("partners", "scheduling", "registration", "notifications"), "ok")
    assert healthy.json()["checks"]["partners"]["checks"] == {"mongodb": "ok", "broker": "ok", "outbox": "ok"}
    assert anonymous.get("/alive").json() == {"status": "alive"}

    get_container(system, RegistrationService).stop()
    took = []

    def answered():
        started = time.monotonic()
        response = anonymous.get("/health")
        took.append(time.monotonic() - started)
        return [response] if response.status_code == 503 else None  # a 503 Response is falsy

    # The answer is kept for a second (anyone may ask): the next one after that names it.
    [degraded] = wait_for(answered, timeout=6, interval=0.2)
    assert degraded.json()["services"]["registration"] == "down"
    assert degraded.json()["services"]["partners"] == "ok"
    assert max(took) < 3.5  # the 2 s timeout, not a hang
    assert anonymous.get("/alive").status_code == 200


def test_metrics_need_the_operator_and_count_published_and_handled_events(system, operator, anonymous):
    assert anonymous.get("/metrics").status_code == 401
    # Every service answers its metrics RPC once it is up (right after start a busy machine may miss
    # the scrape's short timeout; that shows as up 0, which is the point of the gauge).
    before = wait_for(lambda: (lambda found: found if all(
        value(found, "trainops_service_up", service=name) == 1
        for name in ("partners", "scheduling", "registration", "notifications")) else None)(samples(operator)),
        timeout=20)

    created = operator.post("/partners", {"code": "METRIC-UNI", "name": "Trường Đo đếm", "kind": "university",
                                          "contact_email": "daotao@metric.edu.vn"})
    assert created.status_code == 201, created.text

    def flowed():
        # The backlog too: partners reads its outbox before its counters, so one answer may hold both
        # the event still waiting and its publication counted.
        now = samples(operator)
        return now if moved(before, now, "trainops_events_published_total", service="partners") and moved(
            before, now, "trainops_events_handled_total", service="notifications") and value(
            now, "trainops_outbox_backlog", service="partners") == 0 else None
    after = wait_for(flowed, timeout=20)
    assert moved(before, after, "trainops_event_handler_seconds_count", service="notifications") >= 1
    assert moved(before, after, "trainops_http_requests_total", route="/partners", method="POST", status="201") == 1
    assert moved(before, after, "trainops_http_request_seconds_count", route="/partners", method="POST") == 1
    assert value(after, "trainops_outbox_backlog", service="partners") == 0
    assert ("trainops_queue_consumers", frozenset({"service": "scheduling", "queue": "trainops.scheduling"}.items())) in after
    assert value(after, "trainops_queue_consumers", queue="trainops.scheduling") == 1


def test_a_poisoned_event_is_dead_lettered_then_handled_once_after_the_fix_and_replay(
        system, operator, app_config, db, poison):
    before = samples(operator)
    event = withdrawn("corr-poison-1")
    publish_to(app_config, "scheduling", event)

    letters = wait_for(lambda: operator.get("/dead-letters?consumer=scheduling").json()["items"], timeout=15)
    letter = letters[0]
    assert letter["id"] == "scheduling:" + event["event_id"]
    assert letter["consumer"] == "scheduling" and letter["event_type"] == "offering_withdrawn"
    assert letter["attempts"] == 4 and letter["status"] == "parked"
    assert "downstream unavailable" in letter["error"]
    assert letter["event"] == event
    assert len(poison.calls) == 4
    found = samples(operator)
    kind = {"service": "scheduling", "event_type": "offering_withdrawn"}
    assert moved(before, found, "trainops_events_dead_lettered_total", **kind) == 1
    assert moved(before, found, "trainops_events_retried_total", **kind) == 3
    assert value(found, "trainops_dead_letters", service="scheduling") == 1

    poison.fix()
    # Counted before the replay: the event shows as handled a moment before its delivery is counted.
    start = settled("scheduling", "offering_withdrawn")
    replayed = operator.post("/dead-letters/{}/replay".format(letter["id"]))
    assert replayed.status_code == 200, replayed.text
    assert replayed.json() == {"replayed": [letter["id"]]}
    handled = db("scheduling").handled_events
    wait_for(lambda: handled.find_one({"_id": event["event_id"]}) and settled("scheduling", "offering_withdrawn") == start + 1)
    # Replaying again, one at a time or all of the kind, changes nothing: the event was handled.
    assert operator.post("/dead-letters/{}/replay".format(letter["id"])).status_code == 200
    wait_for(lambda: settled("scheduling", "offering_withdrawn") == start + 2)
    assert poison.calls == [event["event_id"]]
    assert operator.get("/dead-letters?consumer=scheduling&status=parked").json()["items"] == []
    assert value(samples(operator), "trainops_dead_letters", service="scheduling") == 0
    assert operator.post("/dead-letters/unknown:x/replay").status_code == 404


def test_replay_all_of_a_kind_handles_each_parked_event_once(system, operator, app_config, db, poison):
    events = [withdrawn("corr-kind-{}".format(n)) for n in range(3)]
    for event in events:
        publish_to(app_config, "scheduling", event)
    wait_for(lambda: len(operator.get("/dead-letters?status=parked").json()["items"]) == 3, timeout=15)
    poison.fix()
    refused = operator.post("/dead-letters/replay", {"consumer": "nobody"})
    assert refused.status_code == 422 and set(refused.json()["error"]["fields"]) == {"consumer", "event_type"}
    done = operator.post("/dead-letters/replay", {"consumer": "scheduling", "event_type": "offering_withdrawn"})
    assert done.status_code == 200 and len(done.json()["replayed"]) == 3
    handled = db("scheduling").handled_events
    wait_for(lambda: handled.count_documents({"_id": {"$in": [e["event_id"] for e in events]}}) == 3)
    assert sorted(poison.calls) == sorted(e["event_id"] for e in events)


def test_the_audit_trail_follows_one_correlation_id_across_services(system, operator, anonymous):
    assert anonymous.get("/events?correlation_id=x").status_code == 401
    created = operator.post("/partners", {"code": "TRAIL-UNI", "name": "Trường Dấu vết", "kind": "university",
                                          "contact_email": "daotao@trail.edu.vn"},
                            headers={"X-Correlation-Id": "support-ticket-42"})
    assert created.status_code == 201 and created.headers["X-Correlation-Id"] == "support-ticket-42"

    def trail():
        items = operator.get("/events?correlation_id=support-ticket-42").json()["items"]
        kinds = {(r["service"], r["kind"], r["event_type"]) for r in items}
        return items if {("partners", "published", "partner_onboarded"),
                         ("notifications", "handled", "partner_onboarded")} <= kinds else None
    items = wait_for(trail, timeout=15)
    assert [r["at"] for r in items] == sorted(r["at"] for r in items)
    assert operator.get("/events?correlation_id=nothing-here").json()["items"] == []


def test_every_alert_rule_watches_a_metric_the_system_exports(system, operator, app_config, poison):
    publish_to(app_config, "scheduling", withdrawn("corr-alerts"))  # so the event counters have series
    operator.post("/partners", {"code": "ALERT-UNI", "name": "Trường Cảnh báo", "kind": "university",
                                "contact_email": "daotao@alert.edu.vn"})
    wait_for(lambda: operator.get("/dead-letters").json()["items"], timeout=15)
    exported = {name for name, _ in samples(operator)}
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    assert config["scrape_configs"][0]["metrics_path"] == "/metrics"
    rules = [rule for group in yaml.safe_load(
        (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())["groups"] for rule in group["rules"]]
    assert {"TrainopsServiceDown", "TrainopsOutboxStalled", "TrainopsDeadLetters"} <= {r["alert"] for r in rules}
    for rule in rules:
        for name in re.findall(r"\btrainops_\w+", rule["expr"]):
            assert name in exported, "{} watches {}, which nothing exports".format(rule["alert"], name)


def test_logs_of_a_flow_and_of_a_dead_letter_show_no_phone_or_email(system, operator, app_config, poison):
    lines = []

    class Capture(logging.Handler):
        def emit(self, record):
            lines.append(self.format(record))

    handler = Capture()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        operator.post("/units", {"code": "Q1", "name": "Quận 1", "kind": "district"})
        official = operator.post("/officials", {
            "full_name": "Trần Văn Bình", "email": "binh.tran@q1.hochiminhcity.gov.vn", "phone": "0912 345 678",
            "unit_code": "Q1", "audience_group": "ward_commune"})
        assert official.status_code == 201, official.text
        # A failing handler whose error and event carry contact details: still masked in every line.
        event = withdrawn("corr-logs", contact=" binh.tran@q1.hochiminhcity.gov.vn 0912 345 678")
        poison_error = "{} binh.tran@q1.hochiminhcity.gov.vn +84912345678"
        publish_to(app_config, "scheduling", event)
        wait_for(lambda: operator.get("/dead-letters").json()["items"], timeout=15)
        logging.getLogger("trainops.test").error(poison_error.format("contact"))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    text = "\n".join(lines)
    assert '"entrypoint": "create_official"' in text and '"outcome": "ok"' in text
    assert any(json.loads(line).get("event_type") == "offering_withdrawn" for line in lines)
    for secret in ("binh.tran@q1.hochiminhcity.gov.vn", "0912 345 678", "+84912345678", "0912345678"):
        assert secret not in text


@pytest.fixture
def stuck_relay(monkeypatch):
    """Every relay stops publishing (a relay stuck on a broken broker channel, say)."""
    from backbone.outbox import OutboxRelay
    monkeypatch.setattr(OutboxRelay, "publish_pending", lambda self: 0)


def test_an_outbox_that_stopped_publishing_shows_in_health_and_metrics(stuck_relay, system, operator, db):
    event = withdrawn("corr-stuck")
    db("partners").outbox.insert_one(dict(event, _id=event["event_id"], state="pending",
                                          created_at=utcnow() - timedelta(seconds=90)))
    health = operator.get("/health")
    assert health.status_code == 503
    assert health.json()["services"]["partners"] == "degraded"
    assert health.json()["checks"]["partners"]["checks"]["outbox"].startswith("stalled: 1 events")
    found = samples(operator)
    assert value(found, "trainops_outbox_backlog", service="partners") == 1
    assert value(found, "trainops_outbox_oldest_pending_seconds", service="partners") >= 90


class Counting(Operated):
    """A service that adds its own numbers to its metrics, as notifications and registration may."""
    name = "probe_counting"
    db = Database()
    tracing = Tracing()

    def domain_gauges(self):
        rows = [[row["_id"]["channel"], row["_id"]["status"], row["n"]] for row in self.db.notices.aggregate(
            [{"$group": {"_id": {"channel": "$channel", "status": "$status"}, "n": {"$sum": 1}}}])]
        return [{"name": "trainops_notices", "help": "Notices by channel and status.",
                 "labels": ["channel", "status"], "rows": rows}]


def test_a_service_adds_its_own_numbers_through_domain_gauges(container_factory, app_config, db):
    notices = db("probe_counting").notices
    notices.insert_many([{"channel": "email", "status": "sent"}, {"channel": "email", "status": "sent"},
                            {"channel": "sms", "status": "failed"}])
    container = container_factory(Counting)
    container.start()
    with entrypoint_hook(container, "metrics") as scrape:
        text = metrics.service_text(scrape())
    found = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for f in text_string_to_metric_families(text) for s in f.samples}
    assert found[("trainops_notices", (("channel", "email"), ("status", "sent")))] == 2
    assert found[("trainops_notices", (("channel", "sms"), ("status", "failed")))] == 1
    assert found[("trainops_outbox_backlog", (("service", "probe_counting"),))] == 0
    assert found[("trainops_broker_up", (("service", "probe_counting"),))] == 1


def test_messages_that_go_nowhere_are_counted_in_metrics(system, operator, app_config):
    """An event published with no queue bound to its type lands in trainops.unrouted; one a quorum
    queue gave up on is dead-lettered to trainops.undeliverable (here put there as the broker would)."""
    from backbone import topology
    from backbone.events import make_envelope
    from backbone.outbox import ConfirmedPublisher, event_message
    before = samples(operator)
    nobody = make_envelope("notification_failed", {
        "notice_id": "n-1", "source_event_id": "e-1", "channel": "email", "template": "registration_confirmed",
        "official_id": "official-00000000000000aa", "error": "SMTP 550"}, "notifications", "corr-stray")
    given_up = withdrawn("corr-stray")
    publisher = ConfirmedPublisher(app_config["AMQP_URI"])
    try:
        publisher.publish_batch([event_message(nobody, topology.exchange_name()),
                                 event_message(given_up, topology.UNDELIVERABLE)])
    finally:
        publisher.close()

    def stray(found, queue):
        return max(v for (n, ls), v in found.items() if n == "trainops_stray_messages" and ("queue", queue) in ls)

    after = wait_for(lambda: (lambda found: found if stray(found, topology.UNDELIVERABLE) == 1 else None)(
        samples(operator)))
    assert stray(after, topology.UNROUTED) == stray(before, topology.UNROUTED) + 1
    assert stray(before, topology.UNDELIVERABLE) == 0


class _PausableRelay:
    """A TCP relay to the real broker that can stop passing bytes while keeping both sockets open:
    a node that still holds its connections but no longer answers on them."""

    def __init__(self, target):
        self.target = target
        self.paused = False
        self.server = eventlet.listen(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.sockets = [self.server]
        self.threads = [eventlet.spawn(self._accept)]

    def _pipe(self, source, sink):
        while True:
            data = source.recv(65536)
            if not data:
                return
            while self.paused:
                eventlet.sleep(0.05)
            sink.sendall(data)

    def _accept(self):
        while True:
            client, _ = self.server.accept()
            upstream = eventlet.connect(self.target)
            self.sockets += [client, upstream]
            self.threads += [eventlet.spawn(self._pipe, client, upstream),
                             eventlet.spawn(self._pipe, upstream, client)]

    def close(self):
        for thread in self.threads:
            thread.kill()
        for sock in self.sockets:
            sock.close()


def test_a_broker_that_stops_answering_is_reported_down_at_once_not_waited_for(app_config, db):
    """The kept connection of the health check goes through a relay that then stops passing bytes:
    the check says the broker is down within its bound (the gateway waits 2 s for any answer), and
    the service's next check opens a new connection rather than queueing behind the stuck one."""
    from urllib.parse import urlsplit

    from kombu import Connection

    from ops.rpcs import BROKER_TIMEOUT, health_report
    broker = urlsplit(app_config["AMQP_URI"])
    relay = _PausableRelay((broker.hostname, broker.port))
    uri = app_config["AMQP_URI"].replace(":{}/".format(broker.port), ":{}/".format(relay.port))
    connection = Connection(uri, connect_timeout=BROKER_TIMEOUT)
    try:
        assert health_report("scheduling", db("scheduling"), (), connection)["checks"]["broker"] == "ok"
        relay.paused = True
        began = time.monotonic()
        with eventlet.Timeout(10):  # a check without its own bound waits here forever
            report = health_report("scheduling", db("scheduling"), (), connection)
        assert time.monotonic() - began < 2
        assert report["checks"]["broker"].startswith("down") and report["status"] == "down"
        assert report["checks"]["mongodb"] == "ok"
    finally:
        relay.close()
        connection.collect()
