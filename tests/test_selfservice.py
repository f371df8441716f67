"""Officials' self-service at /me, black-box over HTTP, the real SMTP sink and headless Chromium: an
official asks for a sign-in link (the same answer for an unknown address), signs in by the emailed
link (once: the second use is refused), sees their QR code, cancels, and the first on the waitlist
gets the promotion email; an official reaches nobody else's registration; forms need their CSRF
token; the certificate's PDF carries its code and absolute verification URL, and a revoked one says
so; every link in every notice sent opens."""
import io
import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import pytest
import requests

from backbone.database import mongo_client
from tests.helpers import (CHROMEDRIVER, CHROMIUM, assert_error, at, Client, headless_chromium, Programme,
                           wait_for)

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
LINK = re.compile(r"https?://[^\s\"'<>]+")


@pytest.fixture(scope="module")
def world(module_system, smtp_sink):
    config = module_system
    client = mongo_client(config["MONGO_URI"])
    db = lambda service: client["{}_{}".format(config["DATABASE_PREFIX"], service)]  # noqa: E731
    operator = Client(config["GATEWAY_URL"], config["OPERATOR_TOKEN"])
    # The sink is the session's: this module's notices are those after what earlier modules left there.
    yield SimpleNamespace(base=config["GATEWAY_URL"], operator=operator, db=db, programme=Programme(operator, db),
                          sink=smtp_sink, config=config, first_message=len(smtp_sink.messages()))
    client.close()


def mails_to(sink, address):
    return [m for m in sink.messages() if m["To"] == address]


def text_of(message):
    return message.get_body(("plain",)).get_content()


def html_of(message):
    return message.get_body(("html",)).get_content()


def sign_in_link(world, address, count=1):
    """The link of the `count`-th sign-in email to `address`."""
    mails = wait_for(lambda: [m for m in mails_to(world.sink, address) if "trainops" in m["Subject"]
                              and "/me/login?token=" in text_of(m)][count - 1:], timeout=20)
    return re.search(r"https?://\S+/me/login\?token=\S+", text_of(mails[0])).group(0)


def signed_in(world, official):
    """A browser-like session signed in as `official` through the emailed link."""
    browser = requests.Session()
    before = len([m for m in mails_to(world.sink, official["email"]) if "/me/login" in text_of(m)])
    assert browser.post(world.base + "/me/link", json={"email": official["email"]}).status_code == 202
    link = sign_in_link(world, official["email"], before + 1)
    assert browser.get(link, allow_redirects=False).status_code == 303
    return browser


def csrf_of(html):
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_the_link_answers_the_same_for_known_and_unknown_addresses_and_opens_once(world):
    official = world.programme.official(full_name="Trần Thị Bích")
    known = requests.post(world.base + "/me/link", json={"email": "  " + official["email"].upper() + " "})
    unknown = requests.post(world.base + "/me/link", json={"email": "nobody.here@q1.gov.vn"})
    assert (known.status_code, known.json()) == (unknown.status_code, unknown.json())
    assert known.status_code == 202
    # The link was issued in the request, before its answer: one, for the known official only.
    links = world.db("gateway").sign_in_links
    assert [x["subject_id"] for x in links.find({"audience": "official"})] == [official["id"]]
    assert_error(requests.post(world.base + "/me/link", json={"email": "not an address"}), 422, "invalid_fields")

    link = sign_in_link(world, official["email"])
    assert link.startswith(world.base + "/me/login?token=")
    # What the notices' log keeps of it: that it was sent, never the link.
    notice = wait_for(lambda: world.db("notifications").notices.find_one({"template": "sign_in_link"}))
    assert notice["status"] == "sent" and link.split("token=")[1] not in str(notice)

    browser = requests.Session()
    first = browser.get(link, allow_redirects=False)
    assert first.status_code == 303 and first.headers["Location"] == "/me?welcome=1"
    cookie = first.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/me" in cookie
    page = browser.get(world.base + "/me?welcome=1")
    assert page.status_code == 200 and "Trần Thị Bích" in page.text and 'href="/privacy"' in page.text
    assert "<script" not in page.text and 'lang="vi"' in page.text
    assert "My registrations" in browser.get(world.base + "/me?lang=en").text

    again = requests.get(link, allow_redirects=False)
    assert again.status_code == 410 and "đã được sử dụng hoặc đã hết hạn" in again.text and 'name="email"' in again.text

    # Signing out ends the session here: the old cookie opens nothing.
    stolen = dict(browser.cookies)
    out = browser.post(world.base + "/me/logout", data={"csrf": csrf_of(page.text)}, allow_redirects=False)
    assert out.status_code == 303
    assert requests.get(world.base + "/me", cookies=stolen, allow_redirects=False).headers["Location"] == "/me/link"

    # The page form works without JavaScript, and answers the same for anyone.
    form = requests.post(world.base + "/me/link", data={"email": "nobody.else@q3.gov.vn"})
    assert form.status_code == 202 and 'id="sent"' in form.text


def test_an_official_reaches_nobody_elses_registration_and_forms_need_their_csrf_token(world):
    p = world.programme
    session = p.known_session(starts_at=at(12, "08:00"), ends_at=at(12, "11:00"), capacity=5)
    mine, theirs = p.official(), p.official()
    theirs_registration = p.registered(session, theirs)
    browser = signed_in(world, mine)
    page = browser.get(world.base + "/me").text
    csrf = csrf_of(page)
    assert 'data-id="{}"'.format(session["id"]) in page  # open to Quận 1: a register button

    # CSRF: without the token a form is refused, and nothing changes.
    refused = browser.post(world.base + "/me/sessions/{}/register".format(session["id"]), data={"x": "1"},
                           allow_redirects=False)
    assert refused.status_code == 403
    assert browser.get(world.base + "/me/registrations").json()["items"] == []
    done = browser.post(world.base + "/me/sessions/{}/register".format(session["id"]), data={"csrf": csrf},
                        allow_redirects=False)
    assert done.status_code == 303 and done.headers["Location"] == "/me?done=registered"
    [registration] = browser.get(world.base + "/me/registrations").json()["items"]
    assert registration["status"] == "confirmed" and registration["session"]["title"]

    # Another's registration is unknown to me, by cookie or by my me_ token; their QR code too.
    other = "/me/registrations/{}/cancel".format(theirs_registration["id"])
    assert_error(browser.post(world.base + other, json={}, headers={"X-CSRF-Token": csrf}), 404, "not_found")
    assert browser.get(world.base + "/me/registrations/{}/qr.svg".format(theirs_registration["id"])).status_code == 404
    token = browser.post(world.base + "/me/token", headers={"X-CSRF-Token": csrf}).json()["token"]
    assert token.startswith("me_")
    me = Client(world.base, token)
    assert [r["id"] for r in me.get("/me/registrations").json()["items"]] == [registration["id"]]
    assert_error(me.post(other, {}), 404, "not_found")
    assert_error(me.post("/registrations/{}/cancel".format(theirs_registration["id"])), 404, "not_found")
    assert_error(me.post("/sessions/{}/registrations".format(session["id"]), {"official_id": theirs["id"]}),
                 403, "forbidden")
    for path in ("/officials", "/notifications", "/officials/{}".format(theirs["id"])):
        assert me.get(path).status_code == 403, path
    assert_error(Client(world.base, "me_forged").get("/me/registrations"), 401, "unauthenticated")
    assert_error(Client(world.base).post("/me/token"), 401, "unauthenticated")
    assert world.db("registration").registrations.find_one({"_id": theirs_registration["id"]})["status"] == "confirmed"

    # Preferences: SMS off, English; the notifications service records the opt-out.
    saved = me.post("/me/preferences", {"language": "en", "sms": False})
    assert saved.status_code == 200 and saved.json() == {"email": True, "sms": False, "language": "en"}
    assert world.db("notifications").opt_outs.find_one({"official_id": mine["id"], "channel": "sms"})
    assert_error(me.post("/me/preferences", {"sms": "maybe"}), 422, "invalid_fields")

    # Download my data: mine, from every service, linked from /me; another official's is refused.
    assert 'href="/me/data"' in page
    mine_held = browser.get(world.base + "/me/data")
    assert mine_held.status_code == 200 and "attachment" in mine_held.headers["Content-Disposition"]
    held = mine_held.json()
    assert held["official_id"] == mine["id"] and set(held["services"]) == {
        "registration", "notifications", "partners", "scheduling"}
    assert mine["email"] in mine_held.text and theirs["email"] not in mine_held.text
    assert me.get("/me/data").json()["official_id"] == mine["id"]
    assert_error(me.get("/officials/{}/data".format(theirs["id"])), 403, "forbidden")


@pytest.mark.skipif(not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)),
                    reason="needs Debian's chromium and chromium-driver (`make browser` installs them)")
def test_an_official_signs_in_by_link_sees_the_qr_code_cancels_and_the_first_waiting_is_promoted(world, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.common.by import By

    p = world.programme
    session = p.known_session(starts_at=at(14, "08:00"), ends_at=at(14, "11:00"), capacity=1)
    anh, binh = p.official(full_name="Nguyễn Thị Ánh"), p.official(full_name="Lê Văn Bình")
    p.registered(session, anh)
    assert p.registered(session, binh)["status"] == "waitlisted"
    requests.post(world.base + "/me/link", json={"email": anh["email"]})
    link = sign_in_link(world, anh["email"])

    driver = headless_chromium(tmp_path, "420,900")
    try:
        driver.set_page_load_timeout(30)
        driver.get(link)
        card = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "div.registration[data-status=confirmed]"),
                        timeout=10)[0]
        assert "Đã xác nhận chỗ" in card.text and driver.find_element(By.ID, "privacy-first")
        qr = card.find_element(By.CSS_SELECTOR, ".qr img")
        assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", qr)
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "me.png"))
        card.find_element(By.CSS_SELECTOR, "button.cancel").click()
        banner = wait_for(lambda: driver.find_elements(By.ID, "done"), timeout=10)[0]
        assert "Đã hủy đăng ký" in banner.text
        assert driver.find_element(By.CSS_SELECTOR, "div.registration").get_attribute("data-status") == "cancelled"
    finally:
        driver.quit()
    promoted = wait_for(lambda: [m for m in mails_to(world.sink, binh["email"])
                                 if "/me" in text_of(m) and m["Subject"] and "chờ" not in m["Subject"]
                                 and world.db("notifications").notices.find_one(
                                     {"official_id": binh["id"], "template": "registration_promoted"})], timeout=20)
    assert promoted
    assert world.db("registration").registrations.find_one({"official_id": binh["id"]})["status"] == "confirmed"


def decoded_text(content):
    """The text drawn on a PDF's pages, as a reader extracts it."""
    from pypdf import PdfReader
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def test_a_certificate_prints_as_a_pdf_with_its_absolute_verification_url_and_says_when_revoked(world):
    p = world.programme
    # The operator records a class already held (the door is closed: from the sign-in sheet).
    session = p.known_session(starts_at=at(-1, "08:00"), ends_at=at(-1, "11:00"))
    official = p.official(full_name="Phạm Minh Châu")
    registered = world.operator.post("/sessions/{}/registrations".format(session["id"]),
                                     {"official_id": official["id"], "after_cutoff": True}).json()
    done = world.operator.post("/sessions/{}/checkins".format(session["id"]),
                               {"qr_token": registered["qr_token"], "after_session": True}).json()
    assert done["status"] == "completed", done
    url = done["certificate_url"]
    code = done["certificate_code"]
    assert url == "{}/certificates/{}".format(world.base, code)

    page = requests.get(url)
    assert page.status_code == 200 and "Phạm Minh Châu" in page.text and url in page.text
    pdf = requests.get(url + ".pdf")
    assert pdf.status_code == 200 and pdf.headers["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF") and pdf.content.rstrip().endswith(b"%%EOF")
    text = decoded_text(pdf.content)
    assert code in text and url in text and "Phạm Minh Châu" in text
    assert "AI trong công tác văn phòng" in text and "Trường Đại học Quốc tế Sài Gòn" in text
    # The certificate shows at /me too, and the completion email links to it absolutely.
    mail = wait_for(lambda: [m for m in mails_to(world.sink, official["email"]) if code in text_of(m)], timeout=20)[0]
    assert url in text_of(mail) and 'href="{}"'.format(url) in html_of(mail)

    anonymous = Client(world.base)
    assert_error(anonymous.post("/certificates/{}/revoke".format(code), {"reason": "x"}), 401, "unauthenticated")
    assert_error(world.operator.post("/certificates/{}/revoke".format(code), {}), 422, "invalid_fields")
    revoked = world.operator.post("/certificates/{}/revoke".format(code), {"reason": "Điểm danh sai"})
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert_error(world.operator.post("/certificates/{}/revoke".format(code), {"reason": "again"}), 409,
                 "certificate_revoked")
    assert 'id="revoked"' in requests.get(url).text and "Điểm danh sai" in requests.get(url).text
    assert "ĐÃ BỊ THU HỒI" in decoded_text(requests.get(url + ".pdf").content)
    assert requests.get(world.base + "/certificates/AAAAA-BBBBB-CCCCC-DDDDD.pdf").status_code == 404


def test_an_operator_finds_a_certificate_in_the_console_and_revokes_it(world):
    p = world.programme
    session = p.known_session(starts_at=at(-2, "08:00"), ends_at=at(-2, "11:00"))
    official = p.official(full_name="Võ Thị Duyên")
    registered = world.operator.post("/sessions/{}/registrations".format(session["id"]),
                                     {"official_id": official["id"], "after_cutoff": True}).json()
    code = world.operator.post("/sessions/{}/checkins".format(session["id"]),
                               {"qr_token": registered["qr_token"], "after_session": True}).json()["certificate_code"]
    browser = requests.Session()
    assert browser.post(world.base + "/console/login", data={"token": world.config["OPERATOR_TOKEN"]},
                        allow_redirects=False).status_code == 303
    page = browser.get(world.base + "/console/certificates?code=" + code.lower())
    assert page.status_code == 200 and "Võ Thị Duyên" in page.text and "Còn hiệu lực" in page.text
    assert 'id="missing"' in browser.get(world.base + "/console/certificates?code=NOPE").text
    form = {"code": code, "reason": "Cấp nhầm"}
    assert browser.post(world.base + "/console/certificates/revoke", data=form, allow_redirects=False).status_code == 403
    done = browser.post(world.base + "/console/certificates/revoke", data=dict(form, csrf=csrf_of(page.text)))
    assert done.status_code == 200 and 'id="outcome"' in done.text and "Đã thu hồi" in done.text
    assert "ĐÃ BỊ THU HỒI" in requests.get("{}/certificates/{}".format(world.base, code)).text


def test_every_link_in_every_notice_sent_opens(world):
    """Run last in the module: the notices of every scenario above. Sign-in links are single-use
    (spent by the scenarios that asked for them: their refusal is tested above)."""
    messages = wait_for(lambda: world.sink.messages()[world.first_message:], timeout=10)
    links = set()
    for message in messages:
        for part in (text_of(message), html_of(message)):
            links.update(LINK.findall(part))
    assert links, "no links in the notices"
    checked = 0
    for link in sorted(links):
        link = link.rstrip(".,);").replace("&amp;", "&")
        if "/me/login?token=" in link:
            continue
        assert urlparse(link).netloc == urlparse(world.base).netloc, link  # absolute, to us
        answer = requests.get(link, timeout=10)
        assert answer.status_code == 200, (link, answer.status_code)
        checked += 1
    assert checked >= 3
