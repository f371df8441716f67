"""Abuse tests of what the system shows of officials (Decree 13/2023/ND-CP: purpose limitation and
minimisation), black-box over HTTP on the whole system: a mail server's refusal that quotes the
address is stored and served masked, and a notice's id gives nothing away that its masked recipient
hides."""
import hashlib
import json

from backbone.outbox import emitted_events
from tests.helpers import wait_for

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
