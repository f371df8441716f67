"""Abuse tests of what the system shows of officials (Decree 13/2023/ND-CP: purpose limitation and
minimisation), black-box over HTTP on the whole system: the partner delivering a class sees who
registered, their status and attendance, never an email, a phone or a QR token (with the tokens it
could check in people who never came); check-in takes the token scanned at the door, on the
session's day only; a mail server's refusal that quotes the address is stored and served masked; a
notice's id gives nothing away that its masked recipient hides."""
import hashlib
import json
from datetime import datetime, timedelta

from backbone.clock import LOCAL
from backbone.outbox import emitted_events
from tests.helpers import HALL, LAB, assert_error, wait_for

PARTNER_VIEW = {"id", "session_id", "official", "unit_code", "audience_group", "status", "created_at",
                "cancelled_at", "attended_parts", "completed_at"}


def local_iso(moment):
    return moment.astimezone(LOCAL).isoformat(timespec="seconds")


def session_around(programme, starts_in, hours=3, room=HALL, trainer="TS. Nguyễn Văn A", capacity=40):
    """A session (scheduled by the operator, who may lay out the past) starting `starts_in` from now."""
    starts = datetime.now(LOCAL) + starts_in
    return programme.known_session(starts_at=local_iso(starts), ends_at=local_iso(starts + timedelta(hours=hours)),
                                   room=room, capacity=capacity, trainer=trainer)


def personal(official, registration):
    """What must never reach a partner: the official's contacts (as sent and as stored) and QR token."""
    return [official["email"], official["phone"], "0" + official["phone"][3:], registration["qr_token"]]


def test_the_partner_sees_who_registered_and_how_it_went_but_no_contact_or_qr_token(programme):
    session = session_around(programme, timedelta(minutes=30), capacity=1)
    officials = [programme.official() for _ in range(3)]
    registrations = [programme.registered(session, official) for official in officials]
    assert [r["status"] for r in registrations] == ["confirmed", "waitlisted", "waitlisted"]
    cancelled = programme.operator.post("/registrations/{}/cancel".format(registrations[1]["id"]))
    assert cancelled.status_code == 200, cancelled.text
    secrets_ = [value for official, registration in zip(officials, registrations)
                for value in personal(official, registration)]

    listed = programme.siu.get("/sessions/{}/registrations".format(session["id"])).json()["items"]
    waitlist = programme.siu.get(
        "/sessions/{}/registrations?status=waitlisted".format(session["id"])).json()["items"]
    one = programme.siu.get("/registrations/" + registrations[0]["id"]).json()
    # At the door: the token comes from the official's QR code (here, from the operator's view).
    at_door = programme.siu.post("/sessions/{}/checkins".format(session["id"]),
                                 {"qr_token": registrations[0]["qr_token"]})
    assert at_door.status_code == 200, at_door.text
    seen = json.dumps([listed, waitlist, one, at_door.json()], ensure_ascii=False)
    assert not [value for value in secrets_ if value in seen]
    for item in listed + [one]:
        assert set(item) - {"waitlist_position"} == PARTNER_VIEW
        assert set(item["official"]) == {"full_name"}
    assert {(r["official"]["full_name"], r["unit_code"], r["audience_group"], r["status"]) for r in listed} == {
        (o["full_name"], "Q1", "district", status)
        for o, status in zip(officials, ("confirmed", "cancelled", "waitlisted"))}
    assert [(r["id"], r["waitlist_position"]) for r in waitlist] == [
        (registrations[2]["id"], registrations[2]["waitlist_position"])]
    assert at_door.json()["full_name"] == officials[0]["full_name"] and "official_id" not in at_door.json()
    assert programme.siu.get("/registrations/" + registrations[0]["id"]).json()["attended_parts"] == [1]
    assert_error(programme.siu.get("/registrations/{}/qr.svg".format(registrations[0]["id"])), 403, "forbidden")

    # The operator sees everything it needs to run the programme.
    full = programme.operator.get("/registrations/" + registrations[0]["id"]).json()
    assert full["official"]["email"] == officials[0]["email"] and full["qr_token"] == registrations[0]["qr_token"]
    assert full["audience_group"] == "district"
    qr = programme.operator.get("/registrations/{}/qr.svg".format(registrations[0]["id"]))
    assert qr.status_code == 200 and qr.headers["Content-Type"].startswith("image/svg+xml")


def test_check_in_happens_at_the_door_on_the_day_and_afterwards_only_the_operator_records_it(programme):
    later = session_around(programme, timedelta(hours=2), room=LAB, trainer="ThS. Trần Thị B")
    soon = session_around(programme, timedelta(minutes=50))
    over = session_around(programme, timedelta(hours=-6))
    official = programme.official()
    early, now = programme.registered(later, official), programme.registered(soon, official)
    past = programme.register(over, official, after_cutoff=True).json()

    def check_in(client, session, registration, **extra):
        body = dict({"qr_token": registration["qr_token"]}, **extra)
        return client.post("/sessions/{}/checkins".format(session["id"]), body)
    # Two hours ahead: nobody checks in yet (tokens collected beforehand are no attendance).
    assert_error(check_in(programme.siu, later, early), 422, "checkin_not_open")
    assert_error(check_in(programme.operator, later, early), 422, "checkin_not_open")
    # Within the hour before the start: the door is open.
    opened = check_in(programme.siu, soon, now)
    assert opened.status_code == 200 and opened.json()["already_checked_in"] is False
    # After the end: closed to the partner; the operator records the sign-in sheet, saying so.
    assert past["status"] == "confirmed"
    assert_error(check_in(programme.siu, over, past), 422, "checkin_closed")
    assert_error(check_in(programme.siu, over, past, after_session=True), 403, "forbidden")
    assert_error(check_in(programme.operator, over, past), 422, "checkin_closed")
    recorded = check_in(programme.operator, over, past, after_session=True)
    assert recorded.status_code == 200 and recorded.json()["status"] == "completed"
    # A token of one session opens no check-in at another.
    assert_error(check_in(programme.siu, soon, early), 404, "not_found")

VIETNAMESE_ADDRESS = "nguyễn.ánh@bộnội.vn"


def test_a_refusal_quoting_the_address_is_stored_served_and_published_masked(programme, smtp_sink, db):
    official = programme.operator.post("/officials", {
        "full_name": "Nguyễn Thị Ánh", "email": VIETNAMESE_ADDRESS, "phone": "(+84) 903 123 456",
        "unit_code": "Q1", "audience_group": "district"}).json()
    session = programme.known_session()
    smtp_sink.refuse(550, "5.1.1 <{rcpt}>: Recipient address rejected: User unknown")
    try:
        programme.registered(session, official)
        failed = wait_for(lambda: db("notifications").notices.find_one({"official_id": official["id"],
                                                                         "channel": "email", "status": "failed"}))
    finally:
        smtp_sink.accept()

    masked = "SMTP 550 5.1.1 <n***@bộnội.vn>: Recipient address rejected: User unknown"
    assert failed["last_error"] == masked  # as stored
    [listed] = [n for n in programme.operator.get("/notifications?official_id=" + official["id"]).json()["items"]
                if n["channel"] == "email"]
    assert listed["last_error"] == masked and listed["to"] == "n***@bộnội.vn"
    [event] = wait_for(lambda: [e for e in emitted_events(db("notifications"), {"type": "notification_failed"})
                                if e["payload"]["notice_id"] == failed["_id"]])
    assert event["payload"]["error"] == masked
    everything = json.dumps([failed["last_error"], listed, event["payload"]], ensure_ascii=False)
    assert VIETNAMESE_ADDRESS not in everything


def test_a_notice_id_does_not_lead_back_to_the_phone_its_masked_recipient_hides(programme, db):
    official = programme.official()
    programme.registered(programme.known_session(), official)
    sms = wait_for(lambda: [n for n in programme.operator.get(
        "/notifications?official_id={}&channel=sms".format(official["id"])).json()["items"]])[0]
    phone = official["phone"]
    assert sms["to"] == "+8490***" + phone[-3:]
    # What the hint leaves open: the four digits it hides. The old id carried a digest of the phone,
    # so trying them found it; nothing in the new id depends on the phone at all.
    fitting = ["+8490{:04d}{}".format(n, phone[-3:]) for n in range(10000)]
    assert phone in fitting
    assert not any(hashlib.sha256(c.encode()).hexdigest()[:16] in sms["id"] for c in fitting)
    assert sms["id"].startswith("notice-") and official["id"] not in sms["id"]
