"""Operator accounts at the console: sign-in by a link sent to the account's email (the same answer
for an address nobody has), the link good once, the header naming who signed in, a viewer who sees
no write forms and whose posts are refused, an admin who creates and deactivates accounts from the
accounts page (errors next to the form) and reads the console's actions in the audit page, in a
real headless Chromium (screenshot in tests/artifacts/console-operators.png)."""
import re
import shutil
from pathlib import Path

import pytest
import requests

from backbone.database import mongo_client
from gateway import signin
from tests.helpers import CHROMEDRIVER, CHROMIUM, Client, headless_chromium, wait_for

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(scope="module")
def world(module_system, smtp_sink):
    base = module_system["GATEWAY_URL"]
    system = Client(base, module_system["OPERATOR_TOKEN"])
    client = mongo_client(module_system["MONGO_URI"])
    gateway_db = client["{}_gateway".format(module_system["DATABASE_PREFIX"])]
    made = {}
    for key, name, role in (("admin", "Trần Quản Trị", "admin"), ("viewer", "Phạm Tường Vy", "viewer"),
                            ("leaving", "Võ Văn Đi", "operator")):
        response = system.post("/operators", {"full_name": name, "email": key + "@console.dxcenter.example",
                                              "role": role})
        assert response.status_code == 201, response.text
        made[key] = response.json()
    yield {"base": base, "system": system, "db": gateway_db, "smtp": smtp_sink, **made}
    client.close()


def link_for(world, account):
    """A sign-in link for the account as the console mails it: asked for on the login page; read from
    the mail when notifications sends it (its `send_sign_in_link`), else issued the same way
    (`gateway/signin.py`) for the rest of the scenario."""
    before = len(world["smtp"].messages())
    asked = requests.post(world["base"] + "/console/login/link", data={"email": account["email"].upper()})
    assert asked.status_code == 202, asked.text
    from services.notifications.service import NotificationsService
    if hasattr(NotificationsService, "send_sign_in_link"):
        mail = wait_for(lambda: [m for m in world["smtp"].messages()[before:] if account["email"] in m["To"]])[0]
        text = mail.get_body(("plain", "html")).get_content()
        return re.search(r"https?://\S+/console/login/link\?token=[\w-]+", text).group(0)
    token = signin.issue(world["db"], "operator", account["id"])
    return "{}/console/login/link?token={}".format(world["base"], token)


def signed_in(world, account):
    browser = requests.Session()
    link = link_for(world, account)
    page = browser.get(link)
    assert page.status_code == 200 and page.headers["Referrer-Policy"] == "no-referrer"
    token = link.split("token=", 1)[1]
    done = browser.post(world["base"] + "/console/login/link/redeem", data={"token": token}, allow_redirects=False)
    assert done.status_code == 303, done.text
    return browser, token


def csrf_of(html):
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_a_link_is_asked_for_the_same_way_known_or_not_and_opens_the_console_once(world):
    base = world["base"]
    known = requests.post(base + "/console/login/link", data={"email": world["admin"]["email"]})
    unknown = requests.post(base + "/console/login/link", data={"email": "nobody@console.dxcenter.example"})
    assert known.status_code == unknown.status_code == 202
    assert known.text == unknown.text

    browser, token = signed_in(world, world["admin"])
    overview = browser.get(base + "/console")
    assert overview.status_code == 200 and "Trần Quản Trị" in overview.text
    again = requests.post(base + "/console/login/link/redeem", data={"token": token}, allow_redirects=False)
    assert again.status_code == 401 and "hết hạn" in again.text
    session = world["db"].console_sessions.find_one({"operator_id": world["admin"]["id"]})
    assert session["who"] == "operator:" + world["admin"]["id"]


def test_a_viewer_sees_no_write_forms_and_its_posts_are_refused_and_audited(world):
    base = world["base"]
    browser, _ = signed_in(world, world["viewer"])
    letters = browser.get(base + "/console/dead-letters")
    assert letters.status_code == 200 and "Phạm Tường Vy" in letters.text and "Chỉ xem" in letters.text
    assert 'action="/console/dead-letters/replay"' not in letters.text
    assert "nav-operators" not in letters.text
    refused = browser.post(base + "/console/notifications/resend", data={"csrf": csrf_of(letters.text), "id": "x"})
    assert refused.status_code == 403 and "chỉ xem" in refused.text
    assert browser.get(base + "/console/operators").status_code == 403
    record = world["db"].audit.find_one({"route": "console: resend notice", "actor": "operator:" + world["viewer"]["id"]})
    assert record and record["status"] == 403


def test_a_deactivated_accounts_console_session_ends_at_once(world):
    base = world["base"]
    browser, _ = signed_in(world, world["leaving"])
    assert browser.get(base + "/console", allow_redirects=False).status_code == 200
    assert world["system"].post("/operators/{}/deactivate".format(world["leaving"]["id"])).status_code == 200
    assert browser.get(base + "/console", allow_redirects=False).status_code == 303
    # And no new link opens it.
    token = signin.issue(world["db"], "operator", world["leaving"]["id"])
    refused = requests.post(base + "/console/login/link/redeem", data={"token": token}, allow_redirects=False)
    assert refused.status_code == 401


@pytest.mark.skipif(not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)),
                    reason="needs Debian's chromium and chromium-driver (`make browser` installs them)")
def test_an_admin_signs_in_by_link_manages_accounts_and_reads_the_audit_in_a_browser(world, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = headless_chromium(tmp_path, "1400,900")
    try:
        driver.set_page_load_timeout(30)
        driver.get(link_for(world, world["admin"]))
        driver.find_element(By.ID, "redeem").click()
        who = wait_for(lambda: driver.find_elements(By.ID, "who"), timeout=10)[0]
        assert "Trần Quản Trị" in who.text

        driver.find_element(By.ID, "nav-operators").click()
        wait_for(lambda: driver.find_elements(By.ID, "new-operator"), timeout=10)
        driver.find_element(By.ID, "full_name").send_keys("Lý Thu Hà")
        driver.find_element(By.ID, "email").send_keys("khong-phai-email")
        Select(driver.find_element(By.ID, "role")).select_by_value("viewer")
        driver.find_element(By.ID, "create").click()
        error = wait_for(lambda: driver.find_elements(By.ID, "error-email"), timeout=10)[0]
        assert error.text  # the problem, next to the field, with what was typed kept
        assert driver.find_element(By.ID, "full_name").get_attribute("value") == "Lý Thu Hà"

        driver.find_element(By.ID, "email").clear()
        driver.find_element(By.ID, "email").send_keys("ha.ly@console.dxcenter.example")
        driver.find_element(By.ID, "create").click()
        banner = wait_for(lambda: driver.find_elements(By.ID, "outcome"), timeout=10)[0]
        assert banner.text == "Đã tạo tài khoản."
        row = [r for r in driver.find_elements(By.CSS_SELECTOR, "tr.account") if "Lý Thu Hà" in r.text][0]
        assert "Chỉ xem" in row.text and "Đang hoạt động" in row.text
        ha_id = row.get_attribute("data-id")
        row.find_element(By.CSS_SELECTOR, "button.deactivate").click()
        # The page after the post (the one before it had a banner too).
        wait_for(lambda: [b for b in driver.find_elements(By.ID, "outcome") if b.text == "Đã khóa tài khoản."],
                 timeout=10)
        row = driver.find_element(By.CSS_SELECTOR, 'tr.account[data-id="{}"]'.format(ha_id))
        assert "Đã khóa" in row.find_element(By.CSS_SELECTOR, "td.state").text

        driver.find_element(By.ID, "nav-audit").click()
        driver.find_element(By.ID, "actor").send_keys("operator:" + world["admin"]["id"])
        driver.find_element(By.ID, "filter").click()
        # The filtered page, not the one the click left (its table goes stale as the new one loads).
        wait_for(lambda: "actor=" in driver.current_url, timeout=10)
        table = wait_for(lambda: driver.find_elements(By.ID, "audit"), timeout=10)[0]
        assert "console: create operator account" in table.text
        assert "console: deactivate operator account" in table.text and ha_id in table.text
        assert "console: sign in" in table.text
        ARTIFACTS.mkdir(exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "console-audit.png"))
        driver.get(world["base"] + "/console/operators?lang=en")
        assert "Operator accounts" in driver.find_element(By.TAG_NAME, "h1").text
        assert driver.save_screenshot(str(ARTIFACTS / "console-operators.png"))
    finally:
        driver.quit()


def test_links_to_one_address_are_limited_known_or_not(world):
    answers = [requests.post(world["base"] + "/console/login/link", data={"email": "flood@console.dxcenter.example"})
               for _ in range(6)]
    assert [a.status_code for a in answers] == [202] * 5 + [429]
    assert int(answers[-1].headers["Retry-After"]) > 0


@pytest.mark.skipif(not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)),
                    reason="needs Debian's chromium and chromium-driver (`make browser` installs them)")
def test_an_operator_onboards_a_partner_and_keeps_its_agreement_from_the_console(world, tmp_path):
    """Create a partner (its key shown once), an agreement in dd/mm/yyyy with a refusal in words next
    to the field first, then extend and terminate it; each action audited with the account."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    made = world["system"].post("/operators", {"full_name": "Ngô Thị Mai", "email": "mai@console.dxcenter.example",
                                               "role": "operator"}).json()
    driver = headless_chromium(tmp_path, "1400,1400")

    def banner(element_id, text):
        def shown():
            try:
                return [b for b in driver.find_elements(By.ID, element_id) if text in b.text]
            except StaleElementReferenceException:  # the page was still being replaced: look again
                return []
        return wait_for(shown, timeout=10)[0]
    try:
        driver.set_page_load_timeout(30)
        driver.get(link_for(world, made))
        driver.find_element(By.ID, "redeem").click()
        wait_for(lambda: driver.find_elements(By.ID, "who"), timeout=10)
        driver.find_element(By.ID, "nav-partners").click()
        driver.find_element(By.ID, "p-code").send_keys("CONSOLE-U")
        driver.find_element(By.ID, "p-name").send_keys("Trường Đại học Bảng Điều Khiển")
        driver.find_element(By.ID, "p-email").send_keys("hoptac@console-u.edu.vn")
        driver.find_element(By.ID, "create-partner").click()
        key = banner("api-key", "")
        api_key = key.find_element(By.TAG_NAME, "code").text
        assert api_key and Client(world["base"], api_key).get("/offerings").status_code == 200
        partner_id = [p for p in world["system"].get("/partners?limit=200").json()["items"]
                      if p["code"] == "CONSOLE-U"][0]["id"]

        Select(driver.find_element(By.ID, "a-partner")).select_by_value(partner_id)
        driver.find_element(By.ID, "a-title").send_keys("Thỏa thuận đào tạo qua bảng điều khiển")
        for name, value in (("signed_on", "01/02/2026"), ("valid_from", "01/02/2026"), ("valid_until", "31/13/2026")):
            driver.find_element(By.ID, "a-" + name).send_keys(value)
        driver.find_element(By.ID, "create-agreement").click()
        assert banner("error-agreement-valid_until", "").text  # the service's words, next to the field
        assert driver.find_element(By.ID, "a-title").get_attribute("value") == "Thỏa thuận đào tạo qua bảng điều khiển"
        driver.find_element(By.ID, "a-valid_until").clear()
        driver.find_element(By.ID, "a-valid_until").send_keys("31/12/2026")
        driver.find_element(By.ID, "create-agreement").click()
        banner("done", "Đã ghi thỏa thuận.")
        agreement = world["system"].get("/partners/{}/agreements".format(partner_id)).json()["items"][0]
        assert (agreement["valid_from"], agreement["valid_until"]) == ("2026-02-01", "2026-12-31")

        row = driver.find_element(By.CSS_SELECTOR, 'tr.agreement[data-id="{}"]'.format(agreement["id"]))
        row.find_element(By.TAG_NAME, "summary").click()
        row.find_element(By.ID, "until-" + agreement["id"]).send_keys("30/06/2027")
        row.find_element(By.ID, "amend-reason-" + agreement["id"]).send_keys("Gia hạn theo phụ lục 01")
        row.find_element(By.CSS_SELECTOR, "form.amend button").click()
        banner("done", "Đã sửa thời hạn thỏa thuận.")
        row = driver.find_element(By.CSS_SELECTOR, 'tr.agreement[data-id="{}"]'.format(agreement["id"]))
        assert row.find_element(By.CSS_SELECTOR, "td.until").text == "2027-06-30"
        row.find_element(By.TAG_NAME, "summary").click()
        row.find_element(By.ID, "end-reason-" + agreement["id"]).send_keys("Đối tác đề nghị dừng")
        row.find_element(By.CSS_SELECTOR, "form.terminate button").click()
        banner("done", "Đã chấm dứt thỏa thuận.")
        assert world["system"].get("/agreements/" + agreement["id"]).json()["status"] == "expired"
        ARTIFACTS.mkdir(exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "console-partners.png"))
    finally:
        driver.quit()
    done = [(r["route"], r["status"]) for r in world["db"].audit.find({"actor": "operator:" + made["id"]}).sort("at", 1)]
    assert done == [("console: sign in", 303), ("console: create partner", 200), ("console: create agreement", 422),
                    ("console: create agreement", 200), ("console: amend agreement", 200),
                    ("console: terminate agreement", 200)]
