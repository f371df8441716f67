"""Agreements that warn before they end, and renewals that carry on what they cover.

Partner and operators hear 60, 30 and 7 local days before an agreement's last day, once each, however
many replicas sweep, with the offerings it carries and the sessions that fall after its end; a day
missed while scheduling was down is caught up with the most urgent warning only. A renewal takes on
the offerings it covers, so their sessions outlive the old agreement, whichever order scheduling
hears the move and the old agreement's end in. The console lists what ends within 60 days.

Time is injected, never waited for: scheduling's calendar (the day its warnings sweep judges) and
partners' (the day its expiry sweep judges) are moved by the test."""
import shutil
import uuid
from datetime import timedelta
from email import message_from_bytes
from email.policy import default as email_policy

import eventlet
import nameko
import pytest
from nameko.testing.services import entrypoint_hook

from backbone.clock import local_date
from backbone.outbox import emitted_events
from services.scheduling import service as scheduling_service
from services.scheduling import store as scheduling_store
from tests.helpers import (CHROMEDRIVER, CHROMIUM, at, Client, day, headless_chromium, iso_day, offering,
                           onboard, publish, sign, wait_for)



def emitted(db, service, type_):
    return [e["payload"] for e in emitted_events(db(service), {"type": type_})]


def mails_to(smtp_sink, address):
    """The messages the SMTP server accepted for this address (the sink keeps every test's)."""
    needle = address.encode()
    return [message_from_bytes(path.read_bytes().replace(b"\r\n", b"\n"), policy=email_policy)
            for path in sorted(smtp_sink.directory.glob("*.eml")) if needle in path.read_bytes()]


def handled(db, service, type_, count=1):
    """Wait until `service` has handled `count` events of `type_` (their effects are committed)."""
    wait_for(lambda: db(service).handled_events.count_documents({"event_type": type_}) >= count)


@pytest.fixture
def calendar(monkeypatch):
    """Scheduling's local calendar, which the test moves: the day its warnings sweep takes for today."""
    clock = {"today": local_date()}
    monkeypatch.setattr(scheduling_service, "local_date", lambda instant=None: clock["today"])
    return clock


def swept(db, today):
    """Wait until a warnings sweep has judged the local day `today` to its end: the warnings it
    published are in scheduling's outbox by then."""
    wait_for(lambda: scheduling_store.last_swept(db("scheduling")) == today.isoformat())


def a_venue(operator, host_partner_id):
    response = operator.post("/venues", {
        "name": "Trường Đại học Ngân hàng TP.HCM", "address": "36 Tôn Thất Đạm, Quận 1, TP. Hồ Chí Minh",
        "host_partner_id": host_partner_id,
        "rooms": [{"name": "Hội trường A", "capacity": 150}, {"name": "Phòng máy 1", "capacity": 40}]})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def a_session(operator, offering_id, venue_id, offset, room="Hội trường A", trainer="TS. Nguyễn Văn A",
              audience="ward_commune"):
    response = operator.post("/sessions", {
        "offering_id": offering_id, "venue_id": venue_id, "room": room, "trainer": trainer,
        "starts_at": at(offset, "08:00"), "ends_at": at(offset, "11:30"), "capacity": 40,
        "eligible_units": [], "audience_groups": [audience]})
    return response


def posted(client, **changes):
    response = client.post("/offerings", offering(**changes))
    assert response.status_code == 201, response.text
    return response.json()


# -- renewal: the offerings it covers carry on -------------------------------------------------------

def test_a_renewal_takes_on_the_offerings_it_covers_and_their_sessions_outlive_the_old_agreement(
        operator, system, db, monkeypatch):
    partner, siu = onboard(operator)
    old = sign(operator, partner["id"], iso_day(-10), iso_day(100), scope=())
    office = posted(siu, starts_from=iso_day(5), ends_by=iso_day(60), audience_groups=["ward_commune"])
    leaders = posted(siu, title="AI cho lãnh đạo", starts_from=iso_day(5), ends_by=iso_day(60),
                     audience_groups=["leader"])
    assert office["agreement_id"] == leaders["agreement_id"] == old["id"]
    venue_id = a_venue(operator, partner["id"])
    wait_for(lambda: db("scheduling").offerings.count_documents({}) == 2)
    kept = a_session(operator, office["id"], venue_id, 40).json()
    lost = a_session(operator, leaders["id"], venue_id, 40, room="Phòng máy 1", trainer="ThS. Trần Thị B",
                     audience="leader").json()

    # The renewal, for commune-level and department officials only: it takes on the office course (no
    # re-posting), not the leaders' one, which its scope does not cover.
    renewal = sign(operator, partner["id"], iso_day(-5), iso_day(400))
    assert siu.get("/offerings/" + office["id"]).json()["agreement_id"] == renewal["id"]
    assert siu.get("/offerings/" + leaders["id"]).json()["agreement_id"] == old["id"]
    [moved] = emitted(db, "partners", "offering_updated")
    assert (moved["offering_id"], moved["agreement_id"]) == (office["id"], renewal["id"])
    continued = [h for h in operator.get("/agreements/" + old["id"]).json()["history"] if h["action"] == "continued"]
    assert [(h["agreement_id"], h["offering_ids"]) for h in continued] == [(renewal["id"], [office["id"]])]

    # The old agreement is cut short to end in 20 days; on the 21st, partners' sweep expires it.
    assert operator.post("/agreements/{}/amend".format(old["id"]), {
        "valid_until": iso_day(20), "reason": "Phụ lục rút ngắn thời hạn"}).status_code == 200
    from services.partners import service as partners_service
    monkeypatch.setattr(partners_service, "local_date", lambda instant=None: day(21))
    partners = next(c for c in system.containers if c.service_name == "partners")
    with entrypoint_hook(partners, "expire_agreements") as expire_agreements:
        assert expire_agreements() == 1
    [expired] = emitted(db, "partners", "agreement_expired")
    assert expired["agreement_id"] == old["id"] and expired["offering_ids"] == [leaders["id"]]

    handled(db, "scheduling", "agreement_expired")
    assert operator.get("/sessions/" + lost["id"]).json()["status"] == "cancelled"
    assert operator.get("/sessions/" + lost["id"]).json()["cancel_reason"] == "Agreement expired."
    assert operator.get("/sessions/" + kept["id"]).json()["status"] == "scheduled"
    # And the office course still takes sessions after the old agreement's end; the leaders' does not.
    assert a_session(operator, office["id"], venue_id, 45).status_code == 201
    late = a_session(operator, leaders["id"], venue_id, 45, room="Phòng máy 1", trainer="ThS. Trần Thị B",
                     audience="leader")
    assert late.status_code == 422 and late.json()["error"]["code"] == "no_active_agreement"
    assert len(emitted(db, "partners", "offering_updated")) == 1


def moved_onto(programme, renewal_id):
    """offering_updated as partners writes it when a renewal takes on the programme's offering."""
    return {"offering_id": programme.offering_id, "partner_id": programme.siu_id, "agreement_id": renewal_id,
            "title": "Bồi dưỡng kiến thức và kỹ năng ứng dụng AI trong công việc",
            "audience_groups": ["district", "ward_commune"], "modules": [], "starts_from": iso_day(-365),
            "ends_by": iso_day(365)}


def expired(programme, **more):
    return dict({"agreement_id": programme.agreement_id, "partner_id": programme.siu_id, "title": "Thỏa thuận",
                 "valid_from": iso_day(-400), "valid_until": iso_day(10)}, **more)


@pytest.mark.parametrize("order, survives", [
    ("the old one's end, then the move", True),
    ("the move, then the old one's end from before ends listed offerings", True),
    ("an end that lists the offering: it had no renewal", False),
])
def test_whichever_order_scheduling_hears_the_move_and_the_old_agreements_end_in_sessions_survive(
        programme, app_config, db, order, survives):
    before = programme.scheduled(starts_at=at(5, "08:00"), ends_at=at(5, "12:00"))
    after = programme.scheduled(starts_at=at(20, "08:00"), ends_at=at(20, "12:00"))
    renewal_id = "agreement-" + uuid.uuid4().hex[:16]

    if order.startswith("the old one's end"):
        publish(app_config, "agreement_expired", expired(programme, offering_ids=[]))
        handled(db, "scheduling", "agreement_expired")
        publish(app_config, "offering_updated", moved_onto(programme, renewal_id))
        handled(db, "scheduling", "offering_updated")
    elif order.startswith("the move"):
        publish(app_config, "offering_updated", moved_onto(programme, renewal_id))
        handled(db, "scheduling", "offering_updated")
        publish(app_config, "agreement_expired", expired(programme))  # no offering_ids: written before they were said
        handled(db, "scheduling", "agreement_expired")
    else:
        publish(app_config, "agreement_expired", expired(programme, offering_ids=[programme.offering_id]))
        handled(db, "scheduling", "agreement_expired")

    assert programme.operator.get("/sessions/" + before["id"]).json()["status"] == "scheduled"
    assert programme.operator.get("/sessions/" + after["id"]).json()["status"] == (
        "scheduled" if survives else "cancelled")
    later = programme.schedule(trainer="ThS. Lê Văn C", starts_at=at(30, "08:00"), ends_at=at(30, "12:00"))
    assert later.status_code == (201 if survives else 422), later.text


# -- the warnings ---------------------------------------------------------------------------------------

def test_partner_and_operators_are_warned_60_30_and_7_days_before_the_end_once_each_with_two_replicas(
        runner_factory, container_factory, app_config, smtp_sink, db, calendar):
    from gateway.service import GatewayService
    from services.notifications.service import NotificationsService
    from services.partners.service import PartnersService
    from services.scheduling.service import SchedulingService
    tag = uuid.uuid4().hex[:8]
    operators = "vanhanh.{}@dxcenter.example".format(tag)
    nameko.config["NOTIFICATIONS"]["operator_email"] = operators
    nameko.config["AGREEMENT_WARNING_SECONDS"] = 0.1
    runner_factory(PartnersService, NotificationsService, GatewayService).start()
    for _ in range(2):
        container_factory(SchedulingService).start()
    operator = Client(app_config["GATEWAY_URL"], app_config["OPERATOR_TOKEN"])
    contact = "hoptac.{}@siu.example".format(tag)
    partner, siu = onboard(operator, {"code": "SIU", "name": "Trường Đại học Quốc tế Sài Gòn", "kind": "university",
                                      "contact_email": contact})

    today = calendar["today"]
    agreement = sign(operator, partner["id"], iso_day(-10), iso_day(100), scope=())
    course = posted(siu, starts_from=iso_day(5), ends_by=iso_day(90), audience_groups=["ward_commune"])
    venue_id = a_venue(operator, partner["id"])
    wait_for(lambda: db("scheduling").offerings.find_one({"_id": course["id"]}))
    session = a_session(operator, course["id"], venue_id, 80).json()
    copies = db("scheduling").agreements
    wait_for(lambda: (copies.find_one({"_id": agreement["id"]}) or {}).get("last_day") == iso_day(100))

    def on(offset, count):
        """Scheduling's day moves to `offset` days from today; once a sweep judged it, `count`
        warnings were published in all."""
        calendar["today"] = today + timedelta(days=offset)
        swept(db, calendar["today"])
        return emitted(db, "scheduling", "agreement_ending")[:count + 1]

    assert on(39, 0) == []  # 61 days before its last day
    [sixty] = on(40, 1)
    assert (sixty["threshold"], sixty["days_left"], sixty["last_day"]) == (60, 60, iso_day(100))
    assert [(o["offering_id"], o["runs_past_end"]) for o in sixty["offerings"]] == [(course["id"], False)]
    assert sixty["sessions_after_end"] == [] and sixty["renewal"] is None
    assert len(on(41, 1)) == 1

    # Cut short to end in 70 days: its new end is warned of at once, on the same day (the 30-day
    # warning: 29 days left), with the session that now falls after it.
    assert operator.post("/agreements/{}/amend".format(agreement["id"]), {
        "valid_until": iso_day(70), "reason": "Phụ lục rút ngắn thời hạn"}).status_code == 200
    wait_for(lambda: len(emitted(db, "scheduling", "agreement_ending")) >= 2)
    sixty_, thirty = on(41, 2)
    assert (thirty["threshold"], thirty["days_left"], thirty["last_day"]) == (30, 29, iso_day(70))
    assert [(o["offering_id"], o["runs_past_end"]) for o in thirty["offerings"]] == [(course["id"], True)]
    assert [s["session_id"] for s in thirty["sessions_after_end"]] == [session["id"]]
    assert len(on(42, 2)) == 2
    *_, seven = on(63, 3)
    assert (seven["threshold"], seven["days_left"]) == (7, 7)
    assert len(on(70, 3)) == 3  # its last day: warned already
    assert len(on(71, 3)) == 3  # over

    warnings = db("scheduling").agreement_warnings
    assert sorted((w["last_day"], w["threshold"]) for w in warnings.find()) == [
        (iso_day(70), 7), (iso_day(70), 30), (iso_day(100), 60)]
    wait_for(lambda: len(mails_to(smtp_sink, contact)) >= 4 and len(mails_to(smtp_sink, operators)) == 3)
    to_partner = [m["Subject"] for m in mails_to(smtp_sink, contact) if "sắp hết hạn" in m["Subject"]]
    assert to_partner == ["Thỏa thuận hợp tác sắp hết hạn (còn {} ngày): {}".format(n, agreement["title"])
                          for n in (60, 29, 7)]
    to_operators = [m["Subject"] for m in mails_to(smtp_sink, operators)]
    assert to_operators == ["Thỏa thuận với SIU sắp hết hạn (còn {} ngày): {}".format(n, agreement["title"])
                            for n in (60, 29, 7)]
    text = next(m for m in mails_to(smtp_sink, contact) if "(còn 29 ngày)" in m["Subject"]).get_body(
        ("plain",)).get_content()
    assert "có hiệu lực đến hết ngày {}".format(day(70).strftime("%d/%m/%Y")) in text
    assert "kéo dài quá ngày hết hiệu lực" in text
    assert "{} 08:00, Trường Đại học Ngân hàng TP.HCM".format(day(80).strftime("%d/%m/%Y")) in text
    notices = db("notifications").notices
    assert notices.count_documents({"template": "agreement_ending_operator", "partner_id": partner["id"]}) == 3


def test_two_sweeps_at_the_same_moment_still_warn_of_each_agreement_once(container_factory, app_config, db):
    # The lease keeps the timer to one replica; this proves the sweep is safe even when it fails to.
    from services.scheduling.service import SchedulingService
    replicas = [container_factory(SchedulingService, {"AGREEMENT_WARNING_SECONDS": 3600}) for _ in range(2)]
    for replica in replicas:
        replica.start()
    last = day(100)
    ids = ["agreement-{:016x}".format(n) for n in range(8)]
    for agreement_id in ids:
        publish(app_config, "agreement_signed", {
            "agreement_id": agreement_id, "partner_id": "partner-siu", "title": "Thỏa thuận hợp tác",
            "signed_on": iso_day(-10), "valid_from": iso_day(-10), "valid_until": last.isoformat()})
    handled(db, "scheduling", "agreement_signed", len(ids))

    def sweep(replica):
        with entrypoint_hook(replica, "warn_of_ending_agreements") as warn:
            return warn(today=last - timedelta(days=30))

    assert sum(eventlet.GreenPool(2).imap(sweep, replicas)) == len(ids)
    assert sorted(e["agreement_id"] for e in emitted(db, "scheduling", "agreement_ending")) == ids
    assert {e["threshold"] for e in emitted(db, "scheduling", "agreement_ending")} == {30}
    assert sum(eventlet.GreenPool(2).imap(sweep, replicas)) == 0


def test_a_warning_missed_while_scheduling_was_down_goes_out_when_it_is_back_and_only_the_most_urgent(
        container_factory, app_config, smtp_sink, db, calendar):
    from services.notifications.service import NotificationsService
    from services.scheduling.service import SchedulingService
    tag = uuid.uuid4().hex[:8]
    operators, contact = "vanhanh.{}@dxcenter.example".format(tag), "hoptac.{}@hub.example".format(tag)
    nameko.config["NOTIFICATIONS"]["operator_email"] = operators
    config = {"AGREEMENT_WARNING_SECONDS": 0.1}
    container_factory(NotificationsService).start()
    last = calendar["today"] + timedelta(days=100)
    calendar["today"] = last - timedelta(days=70)
    scheduling = container_factory(SchedulingService, config)
    scheduling.start()
    publish(app_config, "partner_onboarded", {
        "partner_id": "partner-hub", "code": "HUB", "name": "Trường Đại học Ngân hàng TP. Hồ Chí Minh",
        "kind": "university", "contact_email": contact})
    publish(app_config, "agreement_signed", {
        "agreement_id": "agreement-hub-2025", "partner_id": "partner-hub", "title": "Thỏa thuận hợp tác đào tạo",
        "signed_on": iso_day(-10), "valid_from": iso_day(-10), "valid_until": last.isoformat()})
    handled(db, "scheduling", "agreement_signed")
    swept(db, calendar["today"])
    assert emitted(db, "scheduling", "agreement_ending") == []

    def down_until(days_before_the_end):
        nonlocal scheduling
        scheduling.stop()
        calendar["today"] = last - timedelta(days=days_before_the_end)
        scheduling = container_factory(SchedulingService, config)
        scheduling.start()
        swept(db, calendar["today"])

    # Down over both the 60-day and the 30-day warning; back 20 days before the end: the 30-day one alone.
    down_until(20)
    [late] = emitted(db, "scheduling", "agreement_ending")
    assert (late["threshold"], late["days_left"]) == (30, 20)
    calendar["today"] = last - timedelta(days=19)
    swept(db, calendar["today"])
    assert len(emitted(db, "scheduling", "agreement_ending")) == 1

    # Down again over the 7-day warning, back two days before the end: it goes then.
    down_until(2)
    assert [(e["threshold"], e["days_left"]) for e in emitted(db, "scheduling", "agreement_ending")] == [
        (30, 20), (7, 2)]
    calendar["today"] = last + timedelta(days=1)
    swept(db, calendar["today"])
    assert len(emitted(db, "scheduling", "agreement_ending")) == 2

    wait_for(lambda: len(mails_to(smtp_sink, contact)) == 2 and len(mails_to(smtp_sink, operators)) == 2)
    assert [m["Subject"] for m in mails_to(smtp_sink, contact)] == [
        "Thỏa thuận hợp tác sắp hết hạn (còn {} ngày): Thỏa thuận hợp tác đào tạo".format(n) for n in (20, 2)]


# -- the console ------------------------------------------------------------------------------------------

@pytest.mark.skipif(not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)),
                    reason="needs Debian's chromium and chromium-driver (`make browser` installs them)")
def test_the_console_lists_the_agreements_ending_within_60_days_with_the_warnings_sent(
        operator, system, app_config, db, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    siu, _ = onboard(operator)
    hub, _ = onboard(operator, {"code": "HUB", "name": "Trường Đại học Ngân hàng TP. Hồ Chí Minh",
                                "kind": "university", "contact_email": "hoptac@hub.example"})
    soon = sign(operator, siu["id"], iso_day(-300), iso_day(25))
    renewed = sign(operator, hub["id"], iso_day(-300), iso_day(45))
    renewal = operator.post("/partners/{}/agreements".format(hub["id"]), {
        "title": "Thỏa thuận hợp tác 2027–2028", "signed_on": iso_day(0), "valid_from": iso_day(46),
        "valid_until": iso_day(800)}).json()
    sign(operator, siu["id"], iso_day(60), iso_day(90))  # ends later (not listed), after a gap (no renewal)
    copies = db("scheduling").agreements
    wait_for(lambda: copies.count_documents({"last_day": {"$exists": True}}) == 4)
    scheduling = next(c for c in system.containers if c.service_name == "scheduling")
    with entrypoint_hook(scheduling, "warn_of_ending_agreements") as warn:
        warn()  # today: 25 days before one end (the 30-day warning), 45 before the other (60)
    # (its own timer may have sent them first: each is sent once either way)
    assert sorted(e["threshold"] for e in emitted(db, "scheduling", "agreement_ending")) == [30, 60]

    driver = headless_chromium(tmp_path, "1400,900")
    try:
        driver.set_page_load_timeout(30)
        driver.get(app_config["GATEWAY_URL"] + "/console")
        driver.find_element(By.ID, "token").send_keys(app_config["OPERATOR_TOKEN"])
        driver.find_element(By.ID, "login").click()
        wait_for(lambda: driver.find_elements(By.ID, "services"), timeout=10)
        driver.find_element(By.ID, "nav-partners").click()
        table = wait_for(lambda: driver.find_elements(By.ID, "ending"), timeout=10)[0]
        assert "Thỏa thuận sắp hết hạn (trong 60 ngày)" in driver.page_source
        rows = [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
                for row in table.find_elements(By.TAG_NAME, "tr")[1:]]
        assert rows == [
            ["Trường Đại học Quốc tế Sài Gòn", "SIU", soon["title"], iso_day(25), "25", "30", "—"],
            ["Trường Đại học Ngân hàng TP. Hồ Chí Minh", "HUB", renewed["title"], iso_day(45), "45", "60",
             renewal["title"]],
        ]
        driver.get(app_config["GATEWAY_URL"] + "/console/partners?lang=en")
        assert "Agreements ending within 60 days" in driver.find_element(By.TAG_NAME, "body").text
        assert "Continued by" in driver.find_element(By.ID, "ending").text
    finally:
        driver.quit()
