"""Personal-data rights (Decree 13/2023/ND-CP), black-box over HTTP on the whole system (one system
for the module): an erased official's name, email and phone appear nowhere in any service's
database afterwards, nor in the gateway's (every collection scanned), whatever copied them (the
notices' log, archived events, dead letters, replayable answers); their certificate still verifies,
without the name; erasure is for admins, idempotent and says who and why. "Download my data" gathers
every service's answer. The privacy notice states the periods in force and every notice links it.
Retention sweeps are run with a clock the test sets."""
import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from email import message_from_bytes
from email.policy import default as email_policy

import pytest
import requests
from bson import json_util

from backbone import personal
from backbone.auth import SYSTEM
from backbone.clock import LOCAL
from backbone.database import mongo_client
from backbone.errors import DomainError
from backbone.events import make_envelope
from backbone.personal import ERASED_NAME
from tests.helpers import (CHROMEDRIVER, CHROMIUM, HALL, assert_error, Client, headless_chromium, Programme,
                           publish_to, wait_for)

SERVICES = ("partners", "scheduling", "registration", "notifications")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(scope="module")
def stack(module_system):
    client = mongo_client(module_system["MONGO_URI"])
    yield module_system, lambda name: client["{}_{}".format(module_system["DATABASE_PREFIX"], name)]
    client.close()


@pytest.fixture(scope="module")
def programme(stack):
    config, db = stack
    return Programme(Client(config["GATEWAY_URL"], config["OPERATOR_TOKEN"]), db)


def local_iso(moment):
    return moment.astimezone(LOCAL).isoformat(timespec="seconds")


def session_starting(programme, starts_in, hours=3):
    starts = datetime.now(LOCAL) + starts_in
    return programme.known_session(starts_at=local_iso(starts), ends_at=local_iso(starts + timedelta(hours=hours)),
                                   room=HALL, capacity=40)


def mails_to(smtp_sink, address):
    needle = address.encode()
    return [message_from_bytes(path.read_bytes().replace(b"\r\n", b"\n"), policy=email_policy)
            for path in sorted(smtp_sink.directory.glob("*.eml")) if needle in path.read_bytes()]


def text_of(message):
    return message.get_body(preferencelist=("plain",)).get_content()


def dump(doc):
    """A stored document as text, the way a person searching a dump would see it (accents as they are)."""
    return json_util.dumps(doc, ensure_ascii=False)


def leftovers(db, needles):
    """Every (database, collection, _id) whose document holds one of `needles`, raw or JSON-escaped."""
    forms = set(needles) | {json.dumps(n)[1:-1] for n in needles}
    found = []
    for name in SERVICES + ("gateway",):
        database = db(name)
        for collection in database.list_collection_names():
            for doc in database[collection].find({}):
                text = dump(doc)
                if any(form in text for form in forms):
                    found.append((name, collection, doc.get("_id")))
    return found


def handled(db, service, event_type):
    return db(service).handled_events.find_one({"event_type": event_type})


# -- erasure ---------------------------------------------------------------------------------------------------

def test_an_erased_officials_name_email_and_phone_are_nowhere_in_any_service_and_the_certificate_still_verifies(
        stack, programme, smtp_sink):
    config, db = stack
    operator = programme.operator
    name, email, phone = "Trương Thị Xóa Riêng", "xoa.rieng.18p@q1.gov.vn", "0912 345 678"
    created = operator.post("/officials", {"full_name": name, "email": email, "phone": phone, "unit_code": "Q1",
                                           "audience_group": "ward_commune"},
                            headers={"Idempotency-Key": "create-xoa-rieng"})
    assert created.status_code == 201, created.text
    official = created.json()
    stored_phone = official["phone"]
    assert stored_phone == "+84912345678"
    needles = [name, email, stored_phone, "0912345678", "0912 345 678"]

    # A class starting now: registered (confirmation email), checked in at the door, completed (certificate).
    session = session_starting(programme, timedelta(minutes=20))
    registration = programme.registered(session, official)
    assert registration["status"] == "confirmed"
    token = operator.get("/registrations/" + registration["id"]).json()["qr_token"]
    checked = programme.siu.post("/sessions/{}/checkins".format(session["id"]), {"qr_token": token})
    assert checked.status_code == 200, checked.text
    code = wait_for(lambda: db("registration").certificates.find_one({"official.id": official["id"]}))["_id"]
    wait_for(lambda: len(mails_to(smtp_sink, email)) >= 2)

    # Dead letters that quote them: one the notifications contract refuses, one partners has no handler for.
    quoting = {"id": official["id"], "full_name": name, "email": email, "phone": stored_phone, "language": "vi"}
    broken = make_envelope("registration_waitlisted", {
        "registration_id": "registration-x", "session": {"id": session["id"], "title": "t", "venue_name": "v",
                                                          "address": "a", "room": "r",
                                                          "starts_at": "2026-01-01T01:00:00+00:00",
                                                          "ends_at": "2026-01-01T04:00:00+00:00"},
        "official": quoting, "waitlist_position": 1}, "registration", "test-dead-letter")
    broken["payload"]["waitlist_position"] = "first"  # no contract takes that
    publish_to(config, "notifications", broken)
    stray = make_envelope("registration_waitlisted", dict(broken["payload"], waitlist_position=1),
                          "registration", "test-dead-letter")
    publish_to(config, "partners", stray)
    wait_for(lambda: db("notifications").dead_letters.find_one({"event_id": broken["event_id"]}))
    wait_for(lambda: db("partners").dead_letters.find_one({"event_id": stray["event_id"]}))
    # Before the erasure, every place that copied them holds them (the scan would find them).
    before = {(service, collection) for service, collection, _ in leftovers(db, needles)}
    assert {("registration", "officials"), ("registration", "registrations"), ("registration", "certificates"),
            ("registration", "published_events"), ("notifications", "notices"), ("notifications", "dead_letters"),
            ("partners", "dead_letters"), ("gateway", "idempotency")} <= before

    # Only an admin erases; a reason is required.
    assert_error(programme.siu.post("/officials/{}/erase".format(official["id"]), {"reason": "x"}), 403, "forbidden")
    assert_error(operator.post("/officials/{}/erase".format(official["id"]), {}), 422, "invalid_fields")
    assert_error(operator.post("/officials/official-0000000000000000/erase", {"reason": "x"}), 404, "not_found")

    erased = operator.post("/officials/{}/erase".format(official["id"]), {"reason": "Yêu cầu xóa dữ liệu số 18"})
    assert erased.status_code == 202, erased.text
    assert erased.json()["erased_by"] == "system" and erased.json()["reason"] == "Yêu cầu xóa dữ liệu số 18"
    for service in ("partners", "scheduling", "notifications"):
        wait_for(lambda: handled(db, service, "official_erased"))

    assert leftovers(db, needles) == []
    # Again: the same erasure, nothing new published.
    again = operator.post("/officials/{}/erase".format(official["id"]), {"reason": "lần hai"})
    assert again.status_code == 202 and again.json() == erased.json()
    assert db("registration").published_events.count_documents({"type": "official_erased"}) == 1
    assert db("registration").officials.find_one({"_id": official["id"]})["unit_code"] == "Q1"

    # The certificate still verifies, by its code, without the name.
    page = requests.get("{}/certificates/{}".format(config["GATEWAY_URL"], code), timeout=10)
    assert page.status_code == 200 and ERASED_NAME in page.text and name not in page.text
    # The registration stays counted; the notices' log keeps what was sent, to nobody known.
    assert operator.get("/registrations/" + registration["id"]).json()["status"] == "completed"
    notices = operator.get("/notifications?official_id=" + official["id"]).json()["items"]
    assert notices and all(n["to"] == "(erased)" for n in notices)
    assert_error(operator.post("/notifications/{}/resend".format(notices[0]["id"])), 409, "official_erased")
    # The dead letters keep their event, scrubbed: a replay would reach nobody.
    letter = json.loads(db("partners").dead_letters.find_one({"event_id": stray["event_id"]})["body"])
    assert letter["payload"]["official"] == dict(quoting, full_name=ERASED_NAME, email=None, phone=None)


def test_download_my_data_gathers_every_services_answer_for_an_admin_and_nobody_else(stack, programme):
    config, db = stack
    official = programme.official()
    session = session_starting(programme, timedelta(days=3))
    programme.registered(session, official)
    wait_for(lambda: db("notifications").notices.find_one({"official_id": official["id"]}))
    found = programme.operator.get("/officials/{}/data".format(official["id"]))
    assert found.status_code == 200, found.text
    held = found.json()["services"]
    assert set(held) == set(SERVICES)
    assert held["registration"]["official"]["email"] == official["email"]
    assert [r["session_id"] for r in held["registration"]["registrations"]] == [session["id"]]
    assert {n["to"] for n in held["notifications"]["notices"]} >= {official["email"]}
    assert held["partners"] == {"records": {"events": 0, "dead_letters": 0}}
    assert_error(programme.siu.get("/officials/{}/data".format(official["id"])), 403, "forbidden")
    assert_error(Client(config["GATEWAY_URL"]).get("/officials/{}/data".format(official["id"])), 401,
                 "unauthenticated")


def test_what_is_held_about_an_official_is_theirs_to_read_and_an_admins_only():
    mine = {"role": "official", "official_id": "official-1"}
    personal.require_subject_or_admin(mine, "official-1")
    personal.require_subject_or_admin(SYSTEM, "official-1")
    for other in ({"role": "official", "official_id": "official-2"},
                  {"role": "operator", "access": "operator", "operator_id": "op-1", "name": "A"},
                  {"role": "operator", "access": "viewer", "operator_id": "op-2", "name": "B"},
                  {"role": "coordinator", "coordinator_id": "c-1", "unit_codes": ["Q1"]},
                  {"role": "partner", "partner_id": "partner-1"}):
        with pytest.raises(DomainError) as refused:
            personal.require_subject_or_admin(other, "official-1")
        assert refused.value.status == 403


# -- the privacy notice ------------------------------------------------------------------------------------------

def test_the_privacy_notice_names_the_controller_and_the_periods_in_force_and_every_notice_links_it(
        stack, programme, smtp_sink):
    config, db = stack
    vi = requests.get(config["GATEWAY_URL"] + "/privacy", timeout=10)
    assert vi.status_code == 200 and vi.headers["Content-Type"].startswith("text/html")
    assert '<html lang="vi">' in vi.text and "Trung tâm Chuyển đổi số TP. Hồ Chí Minh" in vi.text
    assert "Sở Khoa học và Công nghệ" in vi.text and "Sở Nội vụ" in vi.text
    days = "{:g}".format(config["PRIVACY"]["personal_data_days"])
    assert "{} ngày sau khi lớp kết thúc".format(days) in vi.text
    en = requests.get(config["GATEWAY_URL"] + "/privacy?lang=en", timeout=10)
    assert '<html lang="en">' in en.text and "{} days after the class ends".format(days) in en.text

    official = programme.official()
    session = session_starting(programme, timedelta(days=4))
    programme.registered(session, official)
    mail = wait_for(lambda: mails_to(smtp_sink, official["email"]))[0]
    link = config["PUBLIC_URL"] + "/privacy"
    assert link in text_of(mail) and 'href="{}"'.format(link) in mail.get_body(("html",)).get_content()
    assert requests.get(link, timeout=10).status_code == 200


# -- retention -------------------------------------------------------------------------------------------------

def test_handled_event_records_expire_by_a_ttl_index_of_the_configured_period(stack):
    config, db = stack
    seconds = int(config["PRIVACY"]["handled_events_hours"] * 3600)
    for service in SERVICES:
        indexes = db(service).handled_events.index_information()
        assert indexes["handled_at_ttl"]["expireAfterSeconds"] == seconds, service
    # Idempotency records: a day.
    ttl = [i for i in db("gateway").idempotency.index_information().values() if "expireAfterSeconds" in i]
    assert [i["expireAfterSeconds"] for i in ttl] == [24 * 3600]


def test_a_changed_handled_event_period_is_applied_in_place_by_the_next_release(stack):
    config, db = stack
    from backbone.migrate import indexes_migration
    database = db("retention-drill")
    for hours in (168, 72):
        indexes_migration({"handled_events": [personal.handled_events_index(hours * 3600)]}).apply(database)
        assert database.handled_events.index_information()["handled_at_ttl"]["expireAfterSeconds"] == hours * 3600
    database.client.drop_database(database.name)


def test_a_handled_event_window_no_longer_than_the_retry_ladder_is_refused_at_start():
    from backbone.config import load
    from backbone.settings import SettingsError, check
    data = load()
    data["EVENTS"]["retry_delays"] = [1, 5, 30, 120, 600]
    data["PRIVACY"]["handled_events_hours"] = "0.2"
    with pytest.raises(SettingsError) as refused:
        check(data)
    assert "PRIVACY.handled_events_hours" in str(refused.value) and "756" in str(refused.value)
    data["PRIVACY"]["handled_events_hours"] = "0.25"
    assert check(data)["PRIVACY"]["handled_events_hours"] == 0.25


def _archived(event_id, ends_at, official_id="official-r"):
    return {"_id": event_id, "type": "registration_confirmed", "state": "published", "payload": {
        "registration_id": "registration-" + event_id, "qr_token": "QR-" + event_id,
        "session": {"id": "session-r", "ends_at": ends_at.astimezone(timezone.utc).isoformat()},
        "official": {"id": official_id, "full_name": "Lê Văn Hết Hạn", "email": "het.han@q3.gov.vn",
                     "phone": "+84987654321", "language": "vi"}}}


def test_archived_events_lose_qr_tokens_and_then_personal_fields_after_their_periods_as_the_clock_says(stack):
    config, db = stack
    from services.registration.service import RegistrationService
    archive = db("registration")
    now = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
    archive.published_events.insert_many([
        _archived("ev-old", now - timedelta(days=91)),      # past both periods
        _archived("ev-recent", now - timedelta(hours=30)),  # past the QR token's only
        _archived("ev-future", now + timedelta(days=2)),    # not ended
    ])
    archive.sessions.insert_many([
        {"_id": "session-ended", "ends_at": now - timedelta(hours=25)},
        {"_id": "session-running", "ends_at": now + timedelta(hours=1)}])
    archive.registrations.insert_many([
        {"_id": "reg-ended", "session_id": "session-ended", "qr_token": "QR-ended"},
        {"_id": "reg-running", "session_id": "session-running", "qr_token": "QR-running"}])

    class Registration:  # the service's sweep, on its database, at a time the test sets
        db = archive
        sweep_retention = RegistrationService.sweep_retention

    Registration().sweep_retention(now)
    events = {e["_id"]: e["payload"] for e in archive.published_events.find({"_id": {"$in": [
        "ev-old", "ev-recent", "ev-future"]}})}
    assert events["ev-old"]["official"] == {"id": "official-r", "full_name": ERASED_NAME, "email": None,
                                            "phone": None, "language": "vi"}
    assert events["ev-old"]["qr_token"] == "" and events["ev-recent"]["qr_token"] == ""
    assert events["ev-recent"]["official"]["email"] == "het.han@q3.gov.vn"
    assert events["ev-future"] == _archived("ev-future", now + timedelta(days=2))["payload"]
    assert "qr_token" not in archive.registrations.find_one({"_id": "reg-ended"})
    assert archive.registrations.find_one({"_id": "reg-running"})["qr_token"] == "QR-running"
    # A day later, the recent one has lost its personal fields too? Not before its period: 90 days.
    Registration().sweep_retention(now + timedelta(days=1))
    assert archive.published_events.find_one({"_id": "ev-recent"})["payload"]["official"]["phone"] == "+84987654321"
    Registration().sweep_retention(now + timedelta(days=90))
    assert archive.published_events.find_one({"_id": "ev-recent"})["payload"]["official"]["phone"] is None


def test_notices_lose_the_address_and_the_officials_contacts_after_the_period_unless_still_to_send(stack):
    config, db = stack
    from services.notifications.service import NotificationsService
    log = db("notifications")
    now = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)

    def notice(notice_id, status, ends_at):
        return {"_id": notice_id, "official_id": "official-n", "status": status, "channel": "email",
                "to": "con.lien.lac@q4.gov.vn", "template": "registration_confirmed", "created_at": now,
                "context": {"qr_token": "QR-n", "session": {"ends_at": ends_at},
                            "official": {"id": "official-n", "full_name": "Phạm Thị Thông Báo",
                                         "email": "con.lien.lac@q4.gov.vn", "phone": "+84977777777"}}}

    log.notices.insert_many([notice("n-old", "sent", now - timedelta(days=100)),
                             notice("n-day", "failed", now - timedelta(days=2)),
                             notice("n-queued", "queued", now - timedelta(days=100))])

    class Notifications:
        db = log
        sweep_retention = NotificationsService.sweep_retention

    # A notice of an official erased an hour ago, written after the erasure (an event of theirs that
    # was being retried): the sweep erases it too.
    log.erased_officials.insert_one({"_id": "official-late", "erased_at": now - timedelta(hours=1)})
    log.notices.insert_one(dict(notice("n-late", "sent", now + timedelta(days=3)), official_id="official-late"))

    Notifications().sweep_retention(now)
    assert log.notices.find_one({"_id": "n-late"})["to"] == "(erased)"
    old, day_, queued = (log.notices.find_one({"_id": i}) for i in ("n-old", "n-day", "n-queued"))
    assert old["to"] == "(erased)" and old["context"]["qr_token"] == ""
    assert old["context"]["official"] == {"id": "official-n", "full_name": ERASED_NAME, "email": None, "phone": None}
    assert day_["to"] == "con.lien.lac@q4.gov.vn" and day_["context"]["qr_token"] == ""
    assert queued["to"] == "con.lien.lac@q4.gov.vn" and queued["context"]["qr_token"] == "QR-n"


# -- dead letters ------------------------------------------------------------------------------------------------

def test_dead_letters_are_listed_with_names_contacts_and_qr_tokens_masked_and_replay_keeps_the_original(
        stack, programme):
    config, db = stack
    person = {"id": "official-dl", "full_name": "Đỗ Thị Thư Chết", "email": "thu.chet@q3.gov.vn",
              "phone": "+84905111222", "language": "vi"}
    letter = make_envelope("registration_promoted", {
        "registration_id": "registration-dl", "qr_token": "QR-SECRET-DL",
        "session": {"id": "session-dl", "title": "t", "venue_name": "v", "address": "a", "room": "r",
                    "starts_at": "2026-01-01T01:00:00+00:00", "ends_at": "2026-01-01T04:00:00+00:00"},
        "official": person}, "registration", "test-masked-letter")
    publish_to(config, "scheduling", letter)  # scheduling has no handler for it: parked
    wait_for(lambda: db("scheduling").dead_letters.find_one({"event_id": letter["event_id"]}))
    listed = programme.operator.get("/dead-letters?consumer=scheduling")
    assert listed.status_code == 200, listed.text
    shown = [d for d in listed.json()["items"] if d["event_id"] == letter["event_id"]]
    assert shown, listed.text
    text = json.dumps(shown, ensure_ascii=False)
    assert not [v for v in (person["full_name"], person["email"], person["phone"], "QR-SECRET-DL") if v in text]
    official = shown[0]["event"]["payload"]["official"]
    assert official["full_name"] == "Đ***" and official["email"].startswith("t***@")
    # The original is kept for the replay.
    kept = json.loads(db("scheduling").dead_letters.find_one({"event_id": letter["event_id"]})["body"])
    assert kept["payload"]["official"] == person and kept["payload"]["qr_token"] == "QR-SECRET-DL"




@pytest.mark.skipif(not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)),
                    reason="needs Debian's chromium and chromium-driver (`make browser` installs them)")
def test_the_privacy_notice_reads_on_a_phone_and_switches_language_from_the_keyboard(stack, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    config, _ = stack
    driver = headless_chromium(tmp_path, "390,844")
    try:
        driver.set_page_load_timeout(30)
        driver.get(config["GATEWAY_URL"] + "/privacy")
        assert driver.find_element(By.TAG_NAME, "h1").text == "Thông báo về xử lý dữ liệu cá nhân"
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        # The language link is the first thing the keyboard reaches.
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
        assert driver.switch_to.active_element.get_attribute("id") == "lang"
        driver.switch_to.active_element.send_keys(Keys.ENTER)
        wait_for(lambda: driver.find_element(By.TAG_NAME, "h1").text == "Privacy notice", timeout=10)
        assert "days after the class ends" in driver.find_element(By.ID, "retention").find_element(
            By.XPATH, "following-sibling::table").text
        ARTIFACTS.mkdir(exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "privacy-phone.png"))
    finally:
        driver.quit()
