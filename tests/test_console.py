"""The operator console at /console: a login that keeps the token out of the browser, forms that
need their CSRF token, Vietnamese with English on ?lang=en, and, in a real headless Chromium, an
operator who finds a dead letter and replays it (screenshot in tests/artifacts/console.png)."""
import json
import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests

from backbone.events import make_envelope
from backbone.clock import local_date
from tests.helpers import CHROMEDRIVER, CHROMIUM, headless_chromium, publish_to, wait_for, withdrawn

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def test_the_console_needs_a_login_keeps_the_token_out_of_the_cookie_and_checks_forms(system, app_config):
    base = app_config["GATEWAY_URL"]
    browser = requests.Session()
    first = browser.get(base + "/console", allow_redirects=False)
    assert first.status_code == 303 and first.headers["Location"] == "/console/login"

    wrong = browser.post(base + "/console/login", data={"token": "guess"}, allow_redirects=False)
    assert wrong.status_code == 401 and "Mã không đúng." in wrong.text

    login = browser.post(base + "/console/login", data={"token": app_config["OPERATOR_TOKEN"]},
                         allow_redirects=False)
    assert login.status_code == 303
    cookie = login.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert app_config["OPERATOR_TOKEN"] not in cookie

    overview = browser.get(base + "/console")
    assert overview.status_code == 200 and "Hoạt động tốt" in overview.text and "<script" not in overview.text
    assert "Healthy" in browser.get(base + "/console?lang=en").text
    assert "Upcoming sessions" in browser.get(base + "/console/sessions").text  # the choice is remembered
    for page in ("/console/dead-letters", "/console/notifications", "/console/partners", "/console/events?correlation_id=x"):
        assert browser.get(base + page).status_code == 200, page

    forged = browser.post(base + "/console/dead-letters/replay", data={"id": "scheduling:x"}, allow_redirects=False)
    assert forged.status_code == 403
    tampered = requests.get(base + "/console", cookies={"trainops_console": "9999999999.abc.def"},
                            allow_redirects=False)
    assert tampered.status_code == 303


@pytest.mark.skipif(not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)),
                    reason="needs Debian's chromium and chromium-driver (`make browser` installs them)")
def test_an_operator_logs_in_finds_the_dead_letter_and_replays_it_in_a_browser(
        system, app_config, db, poison, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.common.by import By

    event = withdrawn("corr-console-1")
    publish_to(app_config, "scheduling", event)
    letters = db("scheduling").dead_letters
    wait_for(lambda: letters.find_one({"status": "parked"}), timeout=15)
    poison.fix()

    driver = headless_chromium(tmp_path, "1400,900")
    try:
        driver.set_page_load_timeout(30)
        driver.get(app_config["GATEWAY_URL"] + "/console")
        driver.find_element(By.ID, "token").send_keys(app_config["OPERATOR_TOKEN"])
        driver.find_element(By.ID, "login").click()
        wait_for(lambda: driver.find_elements(By.ID, "services"), timeout=10)
        assert "scheduling" in driver.find_element(By.ID, "services").text

        driver.find_element(By.ID, "nav-dead_letters").click()
        row = wait_for(lambda: driver.find_elements(
            By.CSS_SELECTOR, 'tr.letter[data-id="scheduling:{}"]'.format(event["event_id"])), timeout=10)[0]
        assert "downstream unavailable" in row.text and "Đang chờ xử lý" in row.text
        row.find_element(By.CSS_SELECTOR, "button.replay").click()

        banner = wait_for(lambda: driver.find_elements(By.ID, "replayed"), timeout=10)[0]
        assert banner.text == "Đã phát lại 1 sự kiện."
        row = driver.find_element(By.CSS_SELECTOR, 'tr.letter[data-id="scheduling:{}"]'.format(event["event_id"]))
        assert "Đã phát lại" in row.find_element(By.CSS_SELECTOR, "td.status").text
        wait_for(lambda: db("scheduling").handled_events.find_one({"_id": event["event_id"]}), timeout=10)
        assert poison.calls == [event["event_id"]]

        # The trail of the replayed event, from the dead letter's link.
        driver.find_element(By.LINK_TEXT, "corr-console-1").click()
        trail = wait_for(lambda: driver.find_elements(By.ID, "trail"), timeout=10)[0]
        assert "đã xử lý" in trail.text and "thư lỗi" in trail.text

        driver.get(app_config["GATEWAY_URL"] + "/console/dead-letters")
        ARTIFACTS.mkdir(exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "console.png"))
    finally:
        driver.quit()


def logged_in(base, token):
    browser = requests.Session()
    assert browser.post(base + "/console/login", data={"token": token}, allow_redirects=False).status_code == 303
    return browser


def test_an_operator_sees_why_a_notice_failed_and_resends_it_from_the_console(system, app_config, smtp_sink, db):
    starts = datetime(2026, 12, 5, 8, 0, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh"))
    official = {"id": "official-00000000000000cc", "full_name": "Lê Thị Cúc", "email": "cuc.le@q3.gov.vn",
                "phone": None, "language": "vi"}
    event = make_envelope("registration_confirmed", {
        "registration_id": "registration-00000000000000dd", "qr_token": "QR-console",
        "official": official,
        "session": {"id": "session-00000000000000ee", "title": "Bồi dưỡng kiến thức và kỹ năng ứng dụng AI",
                    "venue_name": "Trường Đại học Ngân hàng TP.HCM", "address": "36 Tôn Thất Đạm, Quận 1",
                    "room": "Hội trường A", "starts_at": starts, "ends_at": starts + timedelta(hours=9)}},
        "registration", "corr-notice-1")
    notices = db("notifications").notices
    smtp_sink.refuse(550)  # the city's mail server refuses the message
    try:
        publish_to(app_config, "notifications", json.loads(json.dumps(event, default=lambda v: v.isoformat())))
        wait_for(lambda: notices.find_one({"status": "failed"}), timeout=15)
    finally:
        smtp_sink.accept()

    base = app_config["GATEWAY_URL"]
    browser = logged_in(base, app_config["OPERATOR_TOKEN"])
    page = browser.get(base + "/console/notifications").text
    assert "550" in page and "c***@q3.gov.vn" in page and "cuc.le@q3.gov.vn" not in page
    notice_id = re.search(r'<tr class="notice" data-id="([^"]+)"', page).group(1)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)

    resent = browser.post(base + "/console/notifications/resend", data={"id": notice_id, "csrf": csrf})
    assert resent.status_code == 200 and "Đã gửi lại thông báo." in resent.text
    assert notices.find_one({"_id": notice_id})["status"] == "sent"
    again = browser.post(base + "/console/notifications/resend", data={"id": notice_id, "csrf": csrf})
    assert "not_failed" in again.text  # a sent notice is never sent twice


def test_the_console_shows_upcoming_sessions_with_seats_and_partners_with_agreement_expiry(operator, app_config):
    # Dates from today: the session must be upcoming whenever the test runs.
    today = local_date()
    day, until = today + timedelta(days=20), today + timedelta(days=365)
    partner = operator.post("/partners", {"code": "SIU", "name": "Trường Đại học Quốc tế Sài Gòn",
                                          "kind": "university", "contact_email": "hoptac@siu.edu.vn"}).json()
    assert operator.post("/partners/{}/agreements".format(partner["id"]), {
        "title": "Thỏa thuận hợp tác đào tạo 2025–2026", "signed_on": "2025-03-13", "valid_from": "2025-03-13",
        "valid_until": until.isoformat(), "scope": ["ward_commune"]}).status_code == 201
    offering = operator.as_(partner["api_key"]).post("/offerings", {
        "title": "Bồi dưỡng kiến thức và kỹ năng ứng dụng AI trong công việc", "audience_groups": ["ward_commune"],
        "modules": [{"title": "AI trong công tác văn phòng", "hours": 8}],
        "starts_from": today.isoformat(), "ends_by": (today + timedelta(days=60)).isoformat()}).json()
    venue = operator.post("/venues", {"name": "Trường Đại học Ngân hàng TP.HCM", "address": "36 Tôn Thất Đạm, Quận 1",
                                      "host_partner_id": partner["id"],
                                      "rooms": [{"name": "Hội trường A", "capacity": 150}]}).json()

    def schedule():
        response = operator.post("/sessions", {
            "offering_id": offering["id"], "venue_id": venue["id"], "room": "Hội trường A",
            "trainer": "TS. Nguyễn Văn A", "starts_at": "{}T08:00:00+07:00".format(day),
            "ends_at": "{}T17:00:00+07:00".format(day), "capacity": 150, "eligible_units": ["Q1"],
            "audience_groups": ["ward_commune"]})
        return response if response.status_code == 201 else None
    wait_for(schedule)

    base = app_config["GATEWAY_URL"]
    browser = logged_in(base, app_config["OPERATOR_TOKEN"])
    sessions = browser.get(base + "/console/sessions?lang=en").text
    row = re.search(r"<tr><td>Bồi dưỡng kiến thức.*?</tr>", sessions, re.S).group(0)
    assert day.strftime("%d/%m/%Y 08:00:00") in row and "Hội trường A" in row
    assert [cell for cell in re.findall(r"<td>([^<]*)</td>", row)][-4:] == ["150", "0", "0", "0"]
    partners = browser.get(base + "/console/partners").text
    assert "Trường Đại học Quốc tế Sài Gòn" in partners and until.isoformat() in partners and "active" in partners
