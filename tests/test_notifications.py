"""Notifications as an official, a partner and an operator live them, with the service's real
container on the real broker and database, a real SMTP server (aiosmtpd) and the local SMS gateways.
Events are published the way producers publish them (an envelope checked against the contract)."""
import uuid
from datetime import datetime, timedelta, timezone
from email import message_from_bytes
from email.policy import default as email_policy
from types import SimpleNamespace
from urllib.parse import urlsplit

import eventlet
import nameko
import pytest
import requests
from eventlet.greenpool import GreenPool
from icalendar import Calendar
from kombu import Connection, Queue, binding
from pymongo import InsertOne, UpdateOne
from pymongo.errors import DuplicateKeyError, OperationFailure

from backbone import counters, topology
from backbone.clock import LOCAL, utcnow
from backbone.database import mongo_client
from backbone.events import make_envelope, read_envelope
from backbone.outbox import ConfirmedPublisher, emitted_events, event_message
from services.notifications.batching import Batches
from services.notifications.notices import Notices
from services.notifications.rules import notice_id, recipient_of
from services.notifications.service import NotificationsService
from tests.helpers import Client, wait_for


@pytest.fixture
def notices(app_config):
    """Fast sweeps and retries; no quiet hours unless a test sets them (the suite may run at night)."""
    nameko.config["NOTIFICATIONS_SWEEP_SECONDS"] = 0.2
    nameko.config["NOTIFICATIONS"].update(retry_delays=[0.3, 0.6, 1.0, 2.0, 4.0], quiet_hours="")
    # An event that arrives before what it depends on (an offering before its partner) is retried by
    # the subscriber: give it 7.5 s of retries, not 1.4, so a busy machine does not dead-letter it.
    nameko.config["EVENTS"]["retry_delays"] = [0.5, 1.0, 2.0, 4.0]
    return app_config


@pytest.fixture
def service(container_factory, notices):
    container = container_factory(NotificationsService)
    container.start()
    return container


@pytest.fixture
def gateway(container_factory, notices, service):
    from gateway.service import GatewayService
    container_factory(GatewayService).start()
    return Client(notices["GATEWAY_URL"], notices["OPERATOR_TOKEN"])


# -- events as producers publish them ---------------------------------------------------------------

def publish(app_config, *envelopes):
    publisher = ConfirmedPublisher(app_config["AMQP_URI"])
    try:
        publisher.publish_batch([event_message(e, topology.exchange_name()) for e in envelopes])
    finally:
        publisher.close()


def an_official(language="vi", phone=True):
    tag = uuid.uuid4().hex[:10]
    return {"id": "official-" + tag, "full_name": "Nguyễn Thị Ánh", "email": "anh.{}@q1.gov.vn".format(tag),
            "phone": "+849{:08d}".format(int(tag, 16) % 10 ** 8) if phone else None, "language": language}


def a_session(starts_at=None):
    starts_at = starts_at or datetime(2026, 12, 5, 8, 0, tzinfo=LOCAL)
    return {"id": "session-" + uuid.uuid4().hex[:8],
            "title": "Bồi dưỡng kiến thức và kỹ năng ứng dụng AI trong công việc",
            "venue_name": "Trường Đại học Ngân hàng TP.HCM",
            "address": "36 Tôn Thất Đạm, phường Nguyễn Thái Bình, Quận 1", "room": "Hội trường A",
            "starts_at": starts_at, "ends_at": starts_at + timedelta(hours=9)}


def registration_event(type_, official, session=None, registration_id=None, **extra):
    payload = dict({"registration_id": registration_id or "registration-" + uuid.uuid4().hex[:8],
                    "session": session or a_session(), "official": official}, **extra)
    return make_envelope(type_, payload, "registration", "corr-" + uuid.uuid4().hex[:8])


def confirmed(official, session=None, registration_id=None):
    return registration_event("registration_confirmed", official, session, registration_id,
                              qr_token="QR-" + uuid.uuid4().hex[:12])


# -- what arrived -------------------------------------------------------------------------------------

def mails_to(smtp_sink, address):
    """The messages the SMTP server accepted for this address (read cheaply: the sink keeps every run's)."""
    needle = address.encode()
    return [message_from_bytes(path.read_bytes().replace(b"\r\n", b"\n"), policy=email_policy)
            for path in sorted(smtp_sink.directory.glob("*.eml")) if needle in path.read_bytes()]


def sms_to(gateway, number):
    return [m for m in gateway.messages() if m["to"] == number]


def told(db, type_, **query):
    """The notification_sent / notification_failed events the service wrote (published or not yet)."""
    return [e for e in emitted_events(db("notifications"), {"type": type_})
            if all(e["payload"].get(k) == v for k, v in query.items())]


@pytest.fixture
def listener(notices):
    """A queue bound to the outcomes of notices, as another service would bind its own."""
    connection = Connection(notices["AMQP_URI"])
    topology.declare(connection)
    queue = Queue("test-notice-outcomes-" + uuid.uuid4().hex[:8], exclusive=True, bindings=[
        binding(topology.events_exchange(), routing_key=key) for key in ("notification_sent", "notification_failed")])
    inbox = connection.SimpleQueue(queue)
    yield inbox
    inbox.close()
    connection.release()


def heard(inbox, count, timeout=15):
    """The next `count` messages on the listener's queue (raw bodies and decoded envelopes)."""
    messages = []
    deadline = eventlet.hubs.get_hub().clock() + timeout
    while len(messages) < count:
        message = inbox.get(timeout=max(0.1, deadline - eventlet.hubs.get_hub().clock()))
        message.ack()
        body = message.body if isinstance(message.body, str) else message.body.decode("utf-8")
        messages.append((body, message.payload))
    return messages


def log_of(db, **query):
    return list(db("notifications").notices.find(query))


def settled(db, count, **query):
    """Wait until `count` notices matching the query exist and none is still being sent."""
    def check():
        docs = log_of(db, **query)
        return docs if len(docs) == count and all(d["status"] in ("sent", "failed") for d in docs) else None
    return wait_for(check)


# -- positive signals, before saying that something did not happen ----------------------------------------

def handled(event_type, outcome="handled"):
    """How many events of the type the notifications consumers of this process have handled so far
    (or, with outcome="retried", sent back for another attempt): the platform's counters."""
    return counters.REGISTRY.get_sample_value("trainops_events_{}_total".format(outcome), {
        "service": "notifications", "event_type": event_type}) or 0


def handled_since(before, event_type, count):
    """Wait until `count` more events of the type were handled since `before` (a `handled` reading)."""
    wait_for(lambda: handled(event_type) >= before + count)


def swept(db):
    """Wait until a whole sweep (reminders, then every notice due) has run from now on. Each sweep
    forgets the copies of registrations long past: once a second marker copy is forgotten, the sweep
    that forgot the first has finished, and another has done its reminders since."""
    upcoming = db("notifications").upcoming
    for _ in range(2):
        marker = "registration-marker-" + uuid.uuid4().hex[:8]
        upcoming.insert_one({"_id": marker, "status": "cancelled", "starts_at": utcnow() - timedelta(days=30)})
        wait_for(lambda: upcoming.find_one({"_id": marker}) is None)


def at_rest(db, *containers):
    """Wait until a whole sweep has run from now on and none of these containers' senders is busy:
    whatever the service was going to send by then, it has sent."""
    swept(db)
    for container in containers:
        notices = next(d for d in container.dependencies if isinstance(d, Notices))
        wait_for(lambda: notices.senders.running() == 0)


# -- officials ------------------------------------------------------------------------------------------

def test_a_confirmation_reaches_the_official_once_by_email_with_invite_and_qr_and_once_by_sms(
        service, app_config, smtp_sink, sms_gateway, db):
    official = an_official()
    event = confirmed(official)
    before = handled("registration_confirmed")
    publish(app_config, event, event)  # delivered twice
    docs = settled(db, 2, event_id=event["event_id"])
    publish(app_config, event)  # and again after it was handled
    handled_since(before, "registration_confirmed", 3)
    at_rest(db, service)

    [mail] = mails_to(smtp_sink, official["email"])
    assert mail["Subject"] == ("Xác nhận đăng ký: Bồi dưỡng kiến thức và kỹ năng ứng dụng AI trong công việc "
                               "(05/12/2026 08:00)")
    assert mail["Message-ID"].endswith("@trainops.local>")
    assert mail["List-Unsubscribe"].startswith("<{}/notifications/unsubscribe?".format(app_config["GATEWAY_URL"]))
    text = mail.get_body(("plain",)).get_content()
    assert "05/12/2026 08:00 – 17:00" in text and event["payload"]["qr_token"] in text
    html_part = mail.get_body(("related",))
    qr = [p for p in html_part.iter_parts() if p.get_content_type() == "image/png"]
    assert qr and qr[0]["Content-ID"] == "<qr>" and qr[0].get_content().startswith(b"\x89PNG")
    [invite] = [p for p in mail.iter_attachments() if p.get_content_type() == "text/calendar"]
    [vevent] = Calendar.from_ical(invite.get_content()).walk("VEVENT")
    assert vevent.decoded("dtstart") == datetime(2026, 12, 5, 8, 0, tzinfo=LOCAL)
    assert "36 Tôn Thất Đạm" in str(vevent["location"])

    [sms] = sms_to(sms_gateway, official["phone"])
    assert event["payload"]["qr_token"] in sms["text"]
    by_channel = {d["channel"]: d for d in docs}
    assert {d["status"] for d in docs} == {"sent"} and {d["attempts"] for d in docs} == {1}
    assert by_channel["sms"]["segments"] == sms["segments"] and by_channel["sms"]["provider"] == "primary"
    assert by_channel["email"]["official_id"] == official["id"]


def test_an_official_who_chose_english_hears_in_english(service, app_config, smtp_sink, db):
    official = an_official(language="en", phone=False)
    publish(app_config, registration_event("registration_waitlisted", official, waitlist_position=4))
    [mail] = wait_for(lambda: mails_to(smtp_sink, official["email"]))
    assert mail["Subject"].startswith("Waiting list: ")
    assert "You are number 4 on the waiting list" in mail.get_body(("plain",)).get_content()


def test_every_registration_event_gives_its_own_notice(service, app_config, smtp_sink, sms_gateway, db):
    official = an_official()
    session = a_session()
    events = [
        registration_event("registration_waitlisted", official, session, waitlist_position=2),
        registration_event("registration_promoted", official, session, qr_token="QR-promoted"),
        registration_event("registration_rescheduled", official, a_session(datetime(2026, 12, 6, 8, 0, tzinfo=LOCAL)),
                           status="confirmed", previous_starts_at=session["starts_at"],
                           previous_ends_at=session["ends_at"]),
        registration_event("registration_cancelled", official, session, reason="Bận công tác", cause="official"),
        registration_event("course_completed", official, session, certificate_code="AI-2026-000001",
                           certificate_url="https://trainops.local/certificates/AI-2026-000001"),
    ]
    publish(app_config, *events)
    # SMS for promoted, rescheduled and cancelled; email for all five.
    settled(db, 8, official_id=official["id"])
    subjects = sorted(m["Subject"].split(":")[0] for m in mails_to(smtp_sink, official["email"]))
    assert subjects == sorted(["Danh sách chờ", "Đã có chỗ cho Anh/Chị", "Lớp học đổi lịch", "Đã hủy đăng ký",
                               "Chúc mừng hoàn thành khóa học"])
    assert len(sms_to(sms_gateway, official["phone"])) == 3
    assert {d["status"] for d in log_of(db, official_id=official["id"])} == {"sent"}


def test_an_smtp_server_refusing_for_a_while_gets_each_notice_once_when_it_returns(
        service, app_config, smtp_sink, db):
    nameko.config["NOTIFICATIONS"]["announce_sent"] = True
    officials = [an_official(phone=False) for _ in range(3)]
    smtp_sink.refuse(451)
    try:
        publish(app_config, *[confirmed(o) for o in officials])
        wait_for(lambda: len(log_of(db, status="retrying", channel="email")) == 3)
        retrying = log_of(db, status="retrying")
        assert all(d["last_error"].startswith("SMTP 451") for d in retrying)
    finally:
        smtp_sink.accept()
    docs = settled(db, 3, channel="email")
    assert {d["status"] for d in docs} == {"sent"} and all(d["attempts"] >= 2 for d in docs)
    at_rest(db, service)
    for official in officials:
        assert len(mails_to(smtp_sink, official["email"])) == 1
    # Retries are not outcomes: one notification_sent per notice, no notification_failed.
    assert sorted(e["payload"]["notice_id"] for e in told(db, "notification_sent")) == sorted(d["_id"] for d in docs)
    assert told(db, "notification_failed") == []


def test_a_notice_still_refused_after_the_last_retry_is_failed_with_the_reason(
        service, app_config, smtp_sink, db):
    nameko.config["NOTIFICATIONS"]["retry_delays"] = [0.2, 0.2]
    official = an_official(phone=False)
    smtp_sink.refuse(421)
    try:
        publish(app_config, confirmed(official))
        [doc] = settled(db, 1)
    finally:
        smtp_sink.accept()
    assert doc["status"] == "failed" and doc["attempts"] == 3
    assert doc["last_error"].startswith("gave up after 3 attempts: SMTP 421")
    assert mails_to(smtp_sink, official["email"]) == []
    [failed] = told(db, "notification_failed")
    assert failed["payload"]["notice_id"] == doc["_id"] and failed["payload"]["error"].startswith("gave up after 3")
    assert told(db, "notification_sent") == []


def test_an_unreachable_mail_server_is_retried_and_a_restarted_service_delivers_once(
        container_factory, notices, smtp_sink, db):
    from devstack import free_port
    official = an_official(phone=False)
    nameko.config["SMTP"]["port"] = free_port()  # nothing listens: connection refused
    first = container_factory(NotificationsService)
    first.start()
    publish(notices, confirmed(official))
    wait_for(lambda: log_of(db, status="retrying"))
    assert "ConnectionRefusedError" in log_of(db)[0]["last_error"]
    first.stop()  # the service goes down with the notice still to send

    nameko.config["SMTP"]["port"] = smtp_sink.port
    second = container_factory(NotificationsService)
    second.start()
    [doc] = settled(db, 1)
    assert doc["status"] == "sent" and doc["attempts"] >= 2
    at_rest(db, second)
    assert len(mails_to(smtp_sink, official["email"])) == 1


def test_a_permanent_refusal_fails_at_once_with_the_reason_and_an_operator_resends_it(
        gateway, app_config, smtp_sink, db):
    official = an_official(phone=False)
    smtp_sink.refuse(550)
    try:
        publish(app_config, confirmed(official))
        [doc] = settled(db, 1)
    finally:
        smtp_sink.accept()
    assert doc["status"] == "failed" and doc["attempts"] == 1
    assert doc["last_error"] == "SMTP 550 Mailbox unavailable"
    assert mails_to(smtp_sink, official["email"]) == []

    [listed] = gateway.get("/notifications?official_id={}&status=failed".format(official["id"])).json()["items"]
    assert listed["last_error"] == "SMTP 550 Mailbox unavailable" and listed["to"].startswith("a***@")
    resent = gateway.post("/notifications/{}/resend".format(listed["id"]))
    assert resent.status_code == 200, resent.text
    assert resent.json()["status"] == "sent" and resent.json()["attempts"] == 2
    assert len(mails_to(smtp_sink, official["email"])) == 1
    again = gateway.post("/notifications/{}/resend".format(listed["id"]))
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_failed"
    assert gateway.post("/notifications/nope/resend").status_code == 404
    assert len(mails_to(smtp_sink, official["email"])) == 1


def test_sms_goes_through_the_second_provider_while_the_first_is_down(
        container_factory, notices, sms_gateway, sms_fallback, db):
    nameko.config["SMS"]["fallback_url"] = sms_fallback.url
    container_factory(NotificationsService).start()
    official = an_official()
    sms_gateway.fail(503)
    try:
        publish(notices, confirmed(official))
        settled(db, 2, official_id=official["id"])
    finally:
        sms_gateway.recover()
    [sms] = sms_to(sms_fallback, official["phone"])
    assert sms_to(sms_gateway, official["phone"]) == []
    [doc] = log_of(db, channel="sms")
    assert doc["status"] == "sent" and doc["provider"] == "fallback" and doc["attempts"] == 1


def test_sms_with_every_provider_down_is_retried_and_sent_once_when_one_returns(
        container_factory, notices, sms_gateway, sms_fallback, db):
    nameko.config["SMS"]["fallback_url"] = sms_fallback.url
    service = container_factory(NotificationsService)
    service.start()
    official = an_official()
    sms_gateway.fail(503)
    sms_fallback.fail(502)
    try:
        publish(notices, confirmed(official))
        doc = wait_for(lambda: log_of(db, channel="sms", status="retrying"))[0]
        assert doc["last_error"] == "SmsUnavailable: primary: HTTP 503; fallback: HTTP 502"
    finally:
        sms_gateway.recover()
        sms_fallback.recover()
    [doc] = settled(db, 1, channel="sms")
    assert doc["status"] == "sent"
    at_rest(db, service)
    assert len(sms_to(sms_gateway, official["phone"]) + sms_to(sms_fallback, official["phone"])) == 1


def test_an_invalid_number_fails_at_once_with_the_providers_reason(service, app_config, sms_gateway, db):
    official = dict(an_official(), phone="không có số")
    publish(app_config, confirmed(official))
    settled(db, 2, official_id=official["id"])
    [doc] = log_of(db, channel="sms")
    assert doc["status"] == "failed" and doc["attempts"] == 1
    assert "HTTP 400" in doc["last_error"] and "phone number" in doc["last_error"]
    assert log_of(db, channel="email")[0]["status"] == "sent"


def test_every_outcome_is_published_sent_or_failed_with_the_reason_and_no_address(
        service, app_config, listener, sms_gateway, db):
    nameko.config["NOTIFICATIONS"]["announce_sent"] = True
    official = dict(an_official(), phone="không có số")
    event = confirmed(official)
    publish(app_config, event)
    docs = {d["channel"]: d for d in settled(db, 2, official_id=official["id"])}
    messages = heard(listener, 2)
    by_type = {envelope["type"]: envelope for _, envelope in messages}
    sent, failed = by_type["notification_sent"], by_type["notification_failed"]
    assert sent["payload"] == {"notice_id": docs["email"]["_id"], "source_event_id": event["event_id"],
                               "channel": "email", "template": "registration_confirmed",
                               "official_id": official["id"], "partner_id": None}
    assert failed["payload"]["notice_id"] == docs["sms"]["_id"] and failed["payload"]["channel"] == "sms"
    assert "HTTP 400" in failed["payload"]["error"]
    # Under the correlation id of the event that caused them; the addresses stay in the notices' log.
    assert {m["correlation_id"] for m in (sent, failed)} == {event["correlation_id"]}
    assert all(official["email"] not in body and official["phone"] not in body for body, _ in messages)
    # Published, so gone from the outbox into the record of what the service said (the relay moves
    # them there once the broker confirmed them, which is also when the listener may hear them).
    wait_for(lambda: {e["state"] for e in emitted_events(
        db("notifications"), {"correlation_id": event["correlation_id"]})} == {"published"})
    at_rest(db, service)
    assert len(told(db, "notification_sent")) == 1 and len(told(db, "notification_failed")) == 1


def test_by_default_only_failures_are_announced_and_a_repeated_event_leaves_no_handled_record(
        service, app_config, sms_gateway, smtp_sink, db):
    official = dict(an_official(), phone="không có số")
    event = confirmed(official)
    before = handled("registration_confirmed")
    publish(app_config, event, event)
    docs = {d["channel"]: d for d in settled(db, 2, official_id=official["id"])}
    assert docs["email"]["status"] == "sent" and docs["sms"]["status"] == "failed"
    [failed] = told(db, "notification_failed")
    assert failed["payload"]["notice_id"] == docs["sms"]["_id"]
    # Both copies handled, and what they started is done: the repeat, had it been taken for new,
    # would have sent by now.
    handled_since(before, "registration_confirmed", 2)
    at_rest(db, service)
    assert told(db, "notification_sent") == [] and len(mails_to(smtp_sink, official["email"])) == 1
    # The notices' own keys make the repeat harmless: no handled-event record is kept for it.
    assert db("notifications").handled_events.count_documents({"_id": event["event_id"]}) == 0


def test_sms_in_quiet_hours_waits_until_morning_and_is_then_sent(service, app_config, sms_gateway, smtp_sink, db):
    here = datetime.now(LOCAL)
    window = "{:%H:%M}-{:%H:%M}".format(here - timedelta(hours=1), here + timedelta(hours=1))
    nameko.config["NOTIFICATIONS"]["quiet_hours"] = window
    official = an_official()
    publish(app_config, confirmed(official))
    wait_for(lambda: mails_to(smtp_sink, official["email"]))  # email is not held back
    doc = wait_for(lambda: log_of(db, channel="sms", status="queued", not_before={"$gt": utcnow()}))[0]
    assert doc["attempts"] == 0
    swept(db)  # a sweep came and went: still waiting
    assert sms_to(sms_gateway, official["phone"]) == [] and log_of(db, channel="sms")[0]["status"] == "queued"

    # Morning comes.
    nameko.config["NOTIFICATIONS"]["quiet_hours"] = ""
    db("notifications").notices.update_one({"_id": doc["_id"]}, {"$set": {"not_before": utcnow()}})
    [doc] = settled(db, 1, channel="sms")
    assert doc["status"] == "sent"
    assert len(sms_to(sms_gateway, official["phone"])) == 1


def test_opting_out_by_the_email_link_stops_that_channel_but_not_the_cancellation_of_ones_class(
        gateway, app_config, smtp_sink, sms_gateway, db):
    official = an_official()
    session = a_session()
    publish(app_config, confirmed(official, session))
    [mail] = wait_for(lambda: mails_to(smtp_sink, official["email"]))
    link = mail["List-Unsubscribe"].strip("<>")
    assert urlsplit(link).path == "/notifications/unsubscribe"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert requests.post(link.replace("sig=", "sig=0"), data={"action": "unsubscribe"}, timeout=10).status_code == 403
    assert requests.get(link, timeout=10).status_code == 200  # the page asks; opening it changes nothing
    answer = requests.post(link, data={"action": "unsubscribe"}, timeout=10)
    assert answer.status_code == 200 and 'value="resubscribe"' in answer.text

    publish(app_config, registration_event("registration_cancelled", official, session, cause="official"))
    wait_for(lambda: log_of(db, template="registration_cancelled", status="sent"))
    publish(app_config, registration_event("registration_cancelled", official, session, cause="session_cancelled",
                                           reason="Giảng viên bị ốm"))
    wait_for(lambda: len(log_of(db, template="session_cancelled", status="sent")) == 2)
    subjects = [m["Subject"] for m in mails_to(smtp_sink, official["email"])]
    assert len(subjects) == 2 and subjects[1].startswith("Lớp học bị hủy")  # no mail for the opted-out notice
    assert [d["channel"] for d in log_of(db, template="registration_cancelled")] == ["sms"]
    assert len(sms_to(sms_gateway, official["phone"])) == 3


def test_reminders_go_out_once_the_day_before_at_eight_even_with_two_replicas(
        container_factory, notices, smtp_sink, db):
    replicas = [container_factory(NotificationsService) for _ in range(2)]
    for replica in replicas:
        replica.start()
    soon, later, dropped = an_official(phone=False), an_official(phone=False), an_official(phone=False)
    now = datetime.now(timezone.utc)
    # Starts in two hours: its 08:00 of the day before has passed, whenever the suite runs.
    cancelled = confirmed(dropped, a_session(now + timedelta(days=3)))
    publish(notices, confirmed(soon, a_session(now + timedelta(hours=2))),
            confirmed(later, a_session(now + timedelta(days=3))), cancelled)
    settled(db, 3, template="registration_confirmed")
    publish(notices, registration_event("registration_cancelled", dropped, cancelled["payload"]["session"],
                                        cancelled["payload"]["registration_id"], cause="official"))
    wait_for(lambda: log_of(db, template="registration_cancelled", status="sent"))
    # The day before the cancelled one's session comes: still no reminder for a cancelled registration.
    db("notifications").upcoming.update_one({"_id": cancelled["payload"]["registration_id"]},
                                            {"$set": {"remind_at": now - timedelta(minutes=1)}})

    wait_for(lambda: log_of(db, template="reminder", status="sent"))
    at_rest(db, *replicas)  # a sweep later, in whichever replica holds the lease
    [reminder] = log_of(db, template="reminder")
    assert reminder["official_id"] == soon["id"] and reminder["event_id"].startswith("reminder:")
    subjects = [m["Subject"] for m in mails_to(smtp_sink, soon["email"])]
    assert len(subjects) == 2 and subjects[1].startswith("Nhắc lịch: ")
    assert len(mails_to(smtp_sink, later["email"])) == 1
    assert [m["Subject"].split(":")[0] for m in mails_to(smtp_sink, dropped["email"])] == [
        "Xác nhận đăng ký", "Đã hủy đăng ký"]


def test_a_notice_left_claimed_by_a_crashed_sender_is_sent_once_by_the_sweep(service, app_config, smtp_sink, db):
    """The service died after writing the notice and before sending it: the claim runs out, the
    sweep sends it, and the event delivered again does not make a second one."""
    official = an_official(phone=False)
    event = confirmed(official)
    _, payload = read_envelope(event)
    context = dict(payload, language="vi", unsubscribe={"email": "u", "sms": "u"})
    now = utcnow()
    db("notifications").notices.insert_one({
        "_id": notice_id(event["event_id"], "email", recipient_of(official_id=official["id"])),
        "event_id": event["event_id"],
        "channel": "email", "to": official["email"], "template": "registration_confirmed", "language": "vi",
        "official_id": official["id"], "partner_id": None, "mandatory": False, "context": context,
        "status": "queued", "attempts": 0, "provider": None, "last_error": None, "not_before": now,
        "correlation_id": "c", "claimed_until": now + timedelta(seconds=1), "created_at": now, "sent_at": None})
    before = handled("registration_confirmed")
    publish(app_config, event)
    [doc] = settled(db, 1)
    assert doc["status"] == "sent" and doc["attempts"] == 1
    handled_since(before, "registration_confirmed", 1)
    at_rest(db, service)
    assert len(mails_to(smtp_sink, official["email"])) == 1


# -- partners ----------------------------------------------------------------------------------------

def test_partners_hear_of_their_offerings_and_expired_agreement_even_if_onboarding_arrives_late(
        service, app_config, smtp_sink, db):
    tag = uuid.uuid4().hex[:8]
    partner_id, contact = "partner-" + tag, "hoptac.{}@siu.edu.vn".format(tag)
    offering = {"offering_id": "offering-" + tag, "partner_id": partner_id, "title": "Ứng dụng AI trong văn phòng",
                "audience_groups": ["ward_commune"], "starts_from": "2026-01-01", "ends_by": "2026-06-30"}
    before = handled("offering_published", "retried")
    publish(app_config, make_envelope("offering_published", offering, "partners", "c1"))
    # The partner is not known yet: the event is retried.
    wait_for(lambda: handled("offering_published", "retried") > before)
    publish(app_config, make_envelope("partner_onboarded", {
        "partner_id": partner_id, "code": "SIU-" + tag, "name": "Trường Đại học Quốc tế Sài Gòn",
        "kind": "university", "contact_email": contact}, "partners", "c0"))
    wait_for(lambda: mails_to(smtp_sink, contact))
    publish(app_config,
            make_envelope("offering_withdrawn", {"offering_id": offering["offering_id"], "partner_id": partner_id,
                                                 "reason": "Đổi giảng viên"}, "partners", "c2"),
            make_envelope("agreement_expired", {
                "agreement_id": "agreement-" + tag, "partner_id": partner_id,
                "title": "Thỏa thuận hợp tác đào tạo 2025–2026", "valid_from": "2025-03-13",
                "valid_until": "2026-12-31"}, "partners", "c3"))
    settled(db, 3, partner_id=partner_id)
    mails = mails_to(smtp_sink, contact)
    by_subject = {m["Subject"]: m.get_body(("plain",)).get_content() for m in mails}
    assert len(mails) == 3 and sorted(by_subject) == [
        "Thỏa thuận hợp tác đã hết hạn: Thỏa thuận hợp tác đào tạo 2025–2026",
        "Đã rút chương trình: Ứng dụng AI trong văn phòng",
        "Đã đăng chương trình: Ứng dụng AI trong văn phòng"]
    assert "từ 01/01/2026 đến 30/06/2026" in by_subject["Đã đăng chương trình: Ứng dụng AI trong văn phòng"]
    assert "Lý do: Đổi giảng viên" in by_subject["Đã rút chương trình: Ứng dụng AI trong văn phòng"]
    assert db("notifications").dead_letters.count_documents({}) == 0


# -- operators -----------------------------------------------------------------------------------------

def test_operators_page_through_the_notices_log_with_recipients_masked(gateway, app_config, db):
    official = an_official()
    session = a_session()
    publish(app_config, confirmed(official, session),
            registration_event("registration_cancelled", official, session, cause="operator"))
    settled(db, 4, official_id=official["id"])
    seen, cursor = [], None
    while True:
        page = gateway.get("/notifications?official_id={}&limit=3{}".format(
            official["id"], "&cursor=" + cursor if cursor else ""))
        assert page.status_code == 200, page.text
        seen += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 4 and len({n["id"] for n in seen}) == 4
    assert {n["channel"] for n in seen} == {"email", "sms"} and {n["status"] for n in seen} == {"sent"}
    assert all(official["email"] not in str(n) and official["phone"] not in str(n) for n in seen)
    assert {n["to"] for n in seen} == {"a***@q1.gov.vn", "+8490***" + official["phone"][-3:]} or all(
        "***" in n["to"] for n in seen)
    sms_only = gateway.get("/notifications?official_id={}&channel=sms".format(official["id"])).json()["items"]
    assert len(sms_only) == 2
    for query, field in (("limit=0", "limit"), ("limit=201", "limit"), ("limit=many", "limit"),
                         ("cursor=not-one-of-ours", "cursor")):
        refused = gateway.get("/notifications?" + query)
        assert refused.status_code == 422 and field in refused.json()["error"]["fields"], (query, refused.text)
    # A blank filter is no filter.
    assert len(gateway.get("/notifications?official_id={}&status=".format(official["id"])).json()["items"]) == 4
    assert gateway.as_(None).get("/notifications").status_code == 401


# -- fan-out ---------------------------------------------------------------------------------------------

def test_writes_made_at_one_moment_share_a_round_trip_and_each_worker_hears_its_own_outcome(app_config):
    """What makes fan-out affordable (batching.py): ten workers' inserts go in one bulk write, then
    their next steps in another; a duplicate is that worker's news only, and a worker whose write
    failed has its later steps (its handled-event record) left unwritten."""
    client = mongo_client(app_config["MONGO_URI"])
    database = client["{}_notifications".format(app_config["DATABASE_PREFIX"])]
    database.notices.insert_one({"_id": "notice-3"})
    batches = Batches(SimpleNamespace(db=database, client=client))
    rounds = []
    bulk = batches._bulk
    batches._bulk = lambda writes: rounds.append(len(writes)) or bulk(writes)
    flusher = eventlet.spawn(batches.run)
    outcomes = {}

    def worker(n):
        first = (("notices", UpdateOne({"_id": "notice-3"}, {"$set": {"_id": "moved"}})) if n == 5
                 else ("notices", InsertOne({"_id": "notice-{}".format(n)})))
        try:
            outcomes[n] = batches.write(first, ("handled_events", InsertOne({"_id": "event-{}".format(n)})))
        except OperationFailure as exc:
            outcomes[n] = exc

    pool = GreenPool()
    for n in range(10):
        pool.spawn(worker, n)
    pool.waitall()
    flusher.kill()
    assert rounds == [10, 9]
    assert isinstance(outcomes[3][0], DuplicateKeyError) and outcomes[3][1] is None
    assert isinstance(outcomes[5], OperationFailure)
    assert all(outcomes[n] == [None, None] for n in range(10) if n not in (3, 5))
    assert sorted(d["_id"] for d in database.handled_events.find()) == sorted(
        "event-{}".format(n) for n in range(10) if n != 5)
    client.close()


def test_two_replicas_share_the_due_notices_a_claimed_batch_at_a_time_and_send_each_once(
        container_factory, notices, smtp_sink, db):
    """Due notices (retries, SMS held over quiet hours, what a dead sender left) are claimed a batch
    at a time by whichever replica sweeps: every one is sent once, and both replicas sent some."""
    # Batches of 10, twenty in all: a sweep takes at most ten (100 notices), so the work spans several
    # ticks of both replicas. With batches of 25, one replica's first sweep could take all 200 while a
    # loaded machine held the other's tick back (seen once in a full run).
    notices["NOTIFICATIONS"]["sweep_batch"] = 10
    replicas = [container_factory(NotificationsService) for _ in range(2)]
    for replica in replicas:
        replica.start()
    now, count = utcnow(), 200
    officials = [an_official(phone=False) for _ in range(count)]
    docs = []
    for official in officials:
        event = confirmed(official)
        _, payload = read_envelope(event)
        docs.append({
            "_id": notice_id(event["event_id"], "email", recipient_of(official_id=official["id"])),
            "event_id": event["event_id"], "channel": "email", "to": official["email"],
            "template": "registration_confirmed", "language": "vi", "official_id": official["id"],
            "partner_id": None, "mandatory": False,
            "context": dict(payload, language="vi", unsubscribe={"email": "u", "sms": "u"}),
            "status": "retrying", "attempts": 1, "provider": None, "last_error": "SMTP 451", "not_before": now,
            "correlation_id": "c", "claimed_until": now - timedelta(seconds=1), "created_at": now, "sent_at": None})
    db("notifications").notices.insert_many(docs)

    sent = wait_for(lambda: len(log_of(db, event_id={"$in": [d["event_id"] for d in docs]}, status="sent")) == count
                    and log_of(db, event_id={"$in": [d["event_id"] for d in docs]}), timeout=120)
    at_rest(db, *replicas)
    stored = [path.read_bytes() for path in smtp_sink.directory.glob("*.eml")]
    assert all(sum(official["email"].encode() in blob for blob in stored) == 1 for official in officials)
    assert all(doc["attempts"] == 2 for doc in sent)
    by_replica = {doc["claimed_by"] for doc in sent}
    assert len(by_replica) == 2, by_replica
