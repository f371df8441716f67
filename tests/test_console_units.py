"""The console's units and coordinators page (issue 18): an operator finds a unit, names its
coordinator (the token shown once, on the page only), and revokes it; in a real headless Chromium,
Vietnamese first, every form with its CSRF token (screenshot in tests/artifacts/console-units.png)."""
import re
import shutil
from pathlib import Path

import pytest
import requests

from tests.helpers import CHROMEDRIVER, CHROMIUM, UNITS, Client, headless_chromium, wait_for

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(scope="module")
def stack(module_system):
    operator = Client(module_system["GATEWAY_URL"], module_system["OPERATOR_TOKEN"])
    for unit in UNITS:
        assert operator.post("/units", unit).status_code == 201
    return {"base": module_system["GATEWAY_URL"], "operator": operator, "token": module_system["OPERATOR_TOKEN"]}


def logged_in(base, token):
    browser = requests.Session()
    assert browser.post(base + "/console/login", data={"token": token}, allow_redirects=False).status_code == 303
    return browser


def test_the_units_page_needs_a_session_and_its_forms_their_csrf_token(stack):
    base = stack["base"]
    assert requests.get(base + "/console/units", allow_redirects=False).status_code == 303
    assert requests.post(base + "/console/units/Q1/coordinators", data={"full_name": "X", "email": "x@q1.gov.vn"},
                         allow_redirects=False).status_code == 303
    browser = logged_in(base, stack["token"])
    forged = browser.post(base + "/console/units/Q1/coordinators",
                          data={"full_name": "Giả Mạo", "email": "giamao@q1.gov.vn", "csrf": "nope"})
    assert forged.status_code == 403
    assert stack["operator"].get("/units/Q1/coordinators").json()["items"] == []  # nothing was made

    page = browser.get(base + "/console/units/Q1")
    assert page.status_code == 200 and "Điều phối viên" in page.text and "<script" not in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    # A bad address and an unknown unit are said next to their fields, in the page.
    refused = browser.post(base + "/console/units/Q1/coordinators", data={
        "csrf": csrf, "full_name": "Lý Thị Sai", "email": "not-an-email", "unit_codes": "Q1, NOPE"})
    assert refused.status_code == 422 and 'id="email-error"' in refused.text
    assert "Lý Thị Sai" in refused.text  # what was typed stays
    english = browser.get(base + "/console/units/Q1?lang=en")
    assert "Add a coordinator" in english.text
    assert browser.get(base + "/console/units/NOPE").status_code == 200  # says "no such unit", in words


@pytest.mark.skipif(not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)),
                    reason="needs Debian's chromium and chromium-driver (`make browser` installs them)")
def test_an_operator_names_a_coordinator_sees_the_token_once_and_revokes_it_in_a_browser(stack, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.common.by import By

    driver = headless_chromium(tmp_path, "412,915")  # a phone's width: the pages must work there too
    base = stack["base"]
    try:
        driver.set_page_load_timeout(30)
        driver.get(base + "/console")
        driver.find_element(By.ID, "token").send_keys(stack["token"])
        driver.find_element(By.ID, "login").click()
        wait_for(lambda: driver.find_elements(By.ID, "services"), timeout=10)

        driver.find_element(By.ID, "nav-units_page").click()
        driver.find_element(By.ID, "q").send_keys("quan 3")  # accents ignored
        driver.find_element(By.ID, "find").click()
        # The found page, not the one the click left (its rows go stale as the new one loads).
        wait_for(lambda: "q=" in driver.current_url, timeout=10)
        rows = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "tr.unit"), timeout=10)
        assert [row.get_attribute("data-code") for row in rows] == ["Q3"]
        rows[0].find_element(By.LINK_TEXT, "Quận 3").click()
        wait_for(lambda: driver.find_elements(By.ID, "no-coordinators"), timeout=10)

        driver.find_element(By.ID, "full_name").send_keys("Nguyễn Thị Điều Phối")
        driver.find_element(By.ID, "email").send_keys("dieuphoi@q3.gov.vn")
        driver.find_element(By.ID, "phone").send_keys("0903 222 333")
        driver.find_element(By.ID, "create-coordinator").click()
        shown = wait_for(lambda: driver.find_elements(By.ID, "token"), timeout=10)[0]
        token = shown.get_attribute("value")
        assert token.startswith("co_") and "chỉ hiện một lần" in driver.find_element(By.ID, "token-once").text
        assert "co_" not in driver.current_url  # never in an address
        row = driver.find_element(By.CSS_SELECTOR, "tr.coordinator")
        assert "Nguyễn Thị Điều Phối" in row.text and "Đang dùng" in row.text
        ARTIFACTS.mkdir(exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "console-units.png"))

        coordinator = stack["operator"].as_(token)
        assert coordinator.get("/officials").status_code == 200  # the token works for its unit
        driver.get(base + "/console/units/Q3")
        assert not driver.find_elements(By.ID, "token")  # shown once: not on the page any more
        driver.find_element(By.CSS_SELECTOR, "button.revoke").click()
        wait_for(lambda: driver.find_elements(By.ID, "revoked"), timeout=10)
        assert "Đã thu hồi" in driver.find_element(By.CSS_SELECTOR, "tr.coordinator td.state").text
        assert coordinator.get("/officials").status_code == 401
    finally:
        driver.quit()
