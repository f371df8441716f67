"""The demo programme `make run` loads beside the history, and the console's coverage page over it: a
newcomer finds classes coming at both partners, a full one with a waitlist, classes held with
check-ins and certificates; the coverage page draws its charts as SVG images (no script), its tables
say the same numbers as the API, and the quarterly report downloads as XLSX and PDF. In headless
Chromium (screenshot in tests/artifacts/coverage.png)."""
import io
import re
import shutil
from datetime import datetime, timezone

import pytest
import requests
from openpyxl import load_workbook

from backbone.clock import local_date
from devstack import demo, seed
from tests.helpers import CHROMEDRIVER, CHROMIUM, headless_chromium, wait_for
from tests.test_console import ARTIFACTS, logged_in


def test_the_demo_fills_the_console_and_the_coverage_page_tells_it(operator, app_config, db, tmp_path):
    base, token = app_config["GATEWAY_URL"], app_config["OPERATOR_TOKEN"]
    quiet = lambda _: None  # noqa: E731
    seed.load(base, token, say=quiet)
    demo.load(base, token, local_date(), say=quiet)

    registrations = db("registration").registrations
    counts = {name: db(service)[name].count_documents({}) for service, name in (
        ("registration", "officials"), ("registration", "registrations"), ("scheduling", "sessions"),
        ("partners", "offerings"), ("partners", "agreements"), ("registration", "certificates"))}
    assert counts["officials"] == demo.OFFICIALS
    now = datetime.now(timezone.utc)
    sessions = operator.get("/sessions?status=scheduled&limit=200").json()["items"]
    coming = [s for s in sessions if datetime.fromisoformat(s["starts_at"]) > now]
    assert len(coming) >= 5
    assert {s["partner_id"] for s in coming} >= {p["id"] for p in operator.get("/partners").json()["items"]
                                                 if p["code"] in ("SIU", "HUB")}
    assert registrations.count_documents({"status": "waitlisted"}) == 10
    wait_for(lambda: registrations.count_documents({"status": "completed"}) > 100, timeout=30)
    wait_for(lambda: db("registration").certificates.count_documents({}) > 100, timeout=30)

    # Loaded again (as `make run` does at every start, after its idempotency keys have run out): nothing new.
    db("gateway").idempotency.delete_many({})
    demo.load(base, token, local_date(), say=quiet)
    assert counts == {name: db(service)[name].count_documents({}) for service, name in (
        ("registration", "officials"), ("registration", "registrations"), ("scheduling", "sessions"),
        ("partners", "offerings"), ("partners", "agreements"), ("registration", "certificates"))}

    # The coverage page's numbers are the API's.
    by_unit = operator.get("/reports/coverage?by=unit").json()
    assert by_unit["totals"]["trained"] > 100
    browser = logged_in(base, token)
    page = browser.get(base + "/console/coverage")
    assert page.status_code == 200, page.text[:3000]
    assert "<script" not in page.text
    sai_gon = next(r for r in by_unit["items"] if r["key"] == "26740")
    row = re.search(r"<tr><th scope=\"row\">Phường Sài Gòn</th>(.*?)</tr>", page.text, re.S).group(1)
    cells = re.findall(r"<td>(.*?)</td>", row)
    assert cells[:4] == [str(sai_gon["staff"]), str(sai_gon["trained"]), "{:.1f}%".format(sai_gon["coverage"] * 100),
                         "{:.1f}%".format(sai_gon["target"] * 100)]
    for chart in ("progress", "groups", "units", "map"):
        image = browser.get(base + "/console/coverage/{}.svg".format(chart))
        assert image.status_code == 200 and image.headers["Content-Type"].startswith("image/svg+xml"), chart
        assert "script-src" not in image.headers["Content-Security-Policy"]  # default-src 'none': none runs
    assert "Phường Sài Gòn" in browser.get(base + "/console/coverage/map.svg").text
    assert requests.get(base + "/console/coverage/map.svg").status_code == 401  # not signed in

    workbook = load_workbook(io.BytesIO(browser.get(base + "/console/coverage/report.xlsx").content))
    assert workbook.sheetnames == ["Theo đơn vị", "Theo đối tượng", "Theo tháng", "Theo đối tác"]
    rows = list(workbook["Theo đơn vị"].values)
    assert rows[0][:3] == ("key", "name", "staff")
    assert ("26740", "Phường Sài Gòn", sai_gon["staff"]) in [r[:3] for r in rows]
    groups = {r[0]: r[1] for r in workbook["Theo đối tượng"].values}
    assert groups["ward_commune"] == "Cán bộ, công chức cấp xã"
    pdf = browser.get(base + "/console/coverage/report.pdf?as_of=2025-06-30")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert "bao-cao-quy-2025-06-30.pdf" in pdf.headers["Content-Disposition"]

    if shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER):
        see_it_in_a_browser(base, token, tmp_path)


def see_it_in_a_browser(base, token, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.common.by import By

    driver = headless_chromium(tmp_path, "1200,2400")
    try:
        driver.set_page_load_timeout(60)
        driver.get(base + "/console/login")
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.ID, "login").click()
        wait_for(lambda: driver.find_elements(By.ID, "services"), timeout=10)
        driver.find_element(By.ID, "nav-coverage_page").click()
        wait_for(lambda: driver.find_elements(By.ID, "by-unit"), timeout=30)
        # Every chart arrived and was drawn (an image the browser could not decode has no width).
        images = driver.find_elements(By.CSS_SELECTOR, "figure img")
        assert len(images) == 4
        wait_for(lambda: all(driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)
                             for i in images), timeout=30)
        for image in images:
            assert image.get_attribute("alt")
        # A past quarter, by the form, keyboard only.
        field = driver.find_element(By.ID, "as_of")
        assert driver.find_element(By.CSS_SELECTOR, "label[for=as_of]").text
        driver.execute_script("arguments[0].value = '2025-06-30'", field)
        field.submit()
        wait_for(lambda: "as_of=2025-06-30" in driver.current_url, timeout=10)
        assert "30/06/2025" in driver.find_element(By.TAG_NAME, "main").text
        driver.get(base + "/console/coverage?lang=en")
        assert "Share trained" in driver.find_element(By.ID, "by-unit").text
        ARTIFACTS.mkdir(exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "coverage.png"))
    finally:
        driver.quit()


@pytest.mark.parametrize("url, leaves", [
    ("http://127.0.0.1:9025/sms", False), ("smtp://localhost", False), ("http://[::1]:80/", False),
    ("https://sms.example.vn/api", True), ("smtp://10.0.0.5", True)])
def test_the_demo_is_loaded_only_where_its_made_up_people_stay_on_this_machine(url, leaves):
    from devstack.run import is_loopback
    assert is_loopback(url) is not leaves
