"""Abuse tests of the secrets and of unsubscribing: no secret has a committed default, a service
started without the one it needs refuses to start and names it, and the unsubscribe link in every
email opens a page that asks before it changes anything (mail scanners follow every link), where the
official can opt back in too. Black-box over HTTP, the page also in a real browser without JavaScript."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
from email import message_from_bytes
from email.policy import default as email_policy
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from backbone.config import MissingSecret, required_secret
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent
# A setting named for a secret (not a limit counted per token, such as HTTP_RATE_PER_TOKEN).
SECRET_LIKE = re.compile(r"SECRET|(?<!PER_)TOKEN|PASSWORD|_KEY\b")


# -- no committed secret, and no start without one --------------------------------------------------------

def test_config_yml_commits_no_default_for_any_secret():
    settings = re.findall(r"\$\{(\w+):([^}]*)\}", (ROOT / "config.yml").read_text(encoding="utf-8"))
    secret = {name: default for name, default in settings if SECRET_LIKE.search(name)}
    assert {"OPERATOR_TOKEN", "UNSUBSCRIBE_SECRET", "FEED_SECRET", "SMTP_PASSWORD"} <= set(secret)
    assert {name: default for name, default in secret.items() if default} == {}
    # A URI's default carries no password but RabbitMQ's own guest account, which it accepts only
    # from loopback.
    uris = {name: default for name, default in settings if "://" in default}
    assert [name for name, default in uris.items() if re.search(r"://[^/@]+:[^/@]+@", default)] == ["AMQP_URI"]
    assert "guest:guest@127.0.0.1" in uris["AMQP_URI"]


@pytest.mark.parametrize("value, refused", [
    (None, "FEED_SECRET is not set"), ("", "FEED_SECRET is not set"), ("   ", "FEED_SECRET is not set"),
    ("dev", "FEED_SECRET is too short (3 characters)"), ("x" * 31, "FEED_SECRET is too short"),
])
def test_a_missing_or_short_secret_is_refused_by_name(value, refused):
    with pytest.raises(MissingSecret, match=re.escape(refused)):
        required_secret(value, "FEED_SECRET")


def test_a_secret_of_32_characters_or_more_is_taken():
    assert required_secret("k" * 32, "FEED_SECRET") == "k" * 32


def test_a_service_started_without_its_secret_refuses_to_start_and_names_it(app_config, tmp_path):
    """`nameko run` of a service, as deploy/ starts it, with every setting but its secret (and once
    with a short one): it exits, and its output says which."""
    base = {k: v for k, v in os.environ.items() if k not in ("FEED_SECRET", "UNSUBSCRIBE_SECRET")}
    base.update(AMQP_URI=app_config["AMQP_URI"], MONGO_URI=app_config["MONGO_URI"],
                DATABASE_PREFIX=app_config["DATABASE_PREFIX"], HEARTBEAT_DIR=str(tmp_path),
                PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                PUBLIC_URL="https://daotao-ai.example.gov.vn")
    nameko = str(Path(sys.executable).parent / "nameko")
    runs = {
        "UNSUBSCRIBE_SECRET is not set": ("services.notifications.service", {}),
        "FEED_SECRET is not set": ("services.scheduling.service", {}),
        "FEED_SECRET is too short": ("services.scheduling.service", {"FEED_SECRET": "dev-feed-secret"}),
    }
    started = {}
    for expected, (module, extra) in runs.items():
        log = open(tmp_path / "{}.log".format(len(started)), "w+b")
        started[expected] = (log, subprocess.Popen(
            [nameko, "run", "--config", "config.yml", module], cwd=ROOT, env=dict(base, **extra),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT))
    try:
        for expected, (log, process) in started.items():
            assert process.wait(timeout=60) != 0, expected
            log.seek(0)
            assert expected in log.read().decode("utf-8", "replace")
    finally:
        for log, process in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()


# -- the unsubscribe page -------------------------------------------------------------------------------------

def unsubscribe_link(programme, smtp_sink):
    """An official registered for a class, and the List-Unsubscribe address of their confirmation."""
    official = programme.official()
    programme.registered(programme.known_session(), official)
    needle = official["email"].encode()

    def mail():
        for path in sorted(smtp_sink.directory.glob("*.eml")):
            raw = path.read_bytes()
            if needle in raw:
                return message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email_policy)
        return None
    message = wait_for(mail)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    return official, message["List-Unsubscribe"].strip("<>")


def opted_out(db, official):
    return {d["channel"] for d in db("notifications").opt_outs.find({"official_id": official["id"]})}


def test_opening_the_link_asks_first_and_only_a_post_from_the_page_opts_out_or_back_in(programme, smtp_sink, db):
    official, link = unsubscribe_link(programme, smtp_sink)
    assert link.startswith(programme.operator.base_url + "/notifications/unsubscribe?")

    # A mail scanner follows the link, twice: the page asks, nothing changes.
    for _ in range(2):
        page = requests.get(link, timeout=10)
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
        assert '<html lang="vi">' in page.text and "<script" not in page.text
        assert '<form method="post">' in page.text and 'value="unsubscribe"' in page.text
        assert "Anh/Chị đang nhận thông báo" in page.text
    assert page.headers["Cache-Control"] == "no-store" and page.headers["Referrer-Policy"] == "no-referrer"
    assert "script-src" not in page.headers["Content-Security-Policy"]  # default-src 'none': no script at all
    assert opted_out(db, official) == set()

    english = requests.get(link + "&lang=en", timeout=10)
    assert '<html lang="en">' in english.text and "Stop notices by email" in english.text

    # The page's button posts to the link itself (a form without action keeps the query).
    done = requests.post(link, data={"action": "unsubscribe"}, timeout=10)
    assert done.status_code == 200 and 'role="status"' in done.text
    assert "Đã ngừng gửi thông báo qua email" in done.text and 'value="resubscribe"' in done.text
    assert opted_out(db, official) == {"email"}
    assert requests.post(link, data={"action": "unsubscribe"}, timeout=10).status_code == 200  # twice is once
    assert opted_out(db, official) == {"email"}

    back = requests.post(link, data={"action": "resubscribe"}, timeout=10)
    assert back.status_code == 200 and "Anh/Chị sẽ nhận lại thông báo qua email" in back.text
    assert opted_out(db, official) == set()

    # What mail providers send to List-Unsubscribe (RFC 8058).
    one_click = requests.post(link, data={"List-Unsubscribe": "One-Click"}, timeout=10)
    assert one_click.status_code == 200 and opted_out(db, official) == {"email"}


def test_a_forged_altered_or_broken_link_changes_nothing_and_says_so(programme, smtp_sink, db):
    official, link = unsubscribe_link(programme, smtp_sink)
    query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    base = link.split("?")[0]

    def at(**changes):
        return base + "?" + urlencode(dict(query, **changes))
    other = programme.official()
    for forged in (at(sig="0" * 32), at(official=other["id"]), at(channel="sms"), at(sig="chữ-ký")):
        for response in (requests.get(forged, timeout=10),
                         requests.post(forged, data={"action": "unsubscribe"}, timeout=10),
                         requests.post(forged, data={"List-Unsubscribe": "One-Click"}, timeout=10)):
            assert response.status_code == 403, forged
            assert "Liên kết không hợp lệ" in response.text and "<form" not in response.text
    for broken in (base, at(channel="fax"), base + "?" + urlencode({"official": query["official"]})):
        assert requests.post(broken, data={"action": "unsubscribe"}, timeout=10).status_code == 400
    unclear = requests.post(link, data={"action": "delete"}, timeout=10)
    assert unclear.status_code == 400 and 'role="alert"' in unclear.text
    assert opted_out(db, official) == opted_out(db, other) == set()
    # A mail tracker's parameters do not break a genuine link.
    assert requests.get(link + "&utm_source=newsletter", timeout=10).status_code == 200


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.mark.skipif(not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)),
                    reason="needs Debian's chromium and chromium-driver (`make browser` installs them)")
def test_an_official_opts_out_and_back_in_in_a_browser_with_javascript_off(programme, smtp_sink, db, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    official, link = unsubscribe_link(programme, smtp_sink)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--user-data-dir={}".format(tempfile.mkdtemp(dir=tmp_path))):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(30)
        driver.get(link)
        assert driver.find_element(By.TAG_NAME, "h1").text == "Nhận thông báo qua email"
        driver.find_element(By.CSS_SELECTOR, 'button[value="unsubscribe"]').click()
        status = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, '[role="status"]'), timeout=10)[0]
        assert status.text == "Đã ngừng gửi thông báo qua email cho Anh/Chị."
        assert opted_out(db, official) == {"email"}

        driver.find_element(By.CSS_SELECTOR, 'button[value="resubscribe"]').click()
        status = wait_for(lambda: [e for e in driver.find_elements(By.CSS_SELECTOR, '[role="status"]')
                                   if "nhận lại" in e.text], timeout=10)[0]
        assert opted_out(db, official) == set()

        driver.find_element(By.LINK_TEXT, "English").click()
        wait_for(lambda: driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en", timeout=10)
        assert driver.find_element(By.CSS_SELECTOR, 'button[value="unsubscribe"]').text == "Stop notices by email"
    finally:
        driver.quit()
