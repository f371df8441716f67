"""The console's programme administration (issue 18, console item 5): venues, sessions (create,
reschedule, capacity, cancel) with scheduling's refusals said in words, a session's registrations
(waitlist order, cancel, move in two reported steps), officials (search, correct, import CSV/XLSX
with per-row results), and `POST /officials/{id}/update` behind the edit form. Against the real
stack; forms as a signed-in operator account (audited with it), a viewer's posts refused; the main
paths in a real headless Chromium (screenshots in tests/artifacts/console-*.png)."""
import io
import itertools
import re
import shutil
from pathlib import Path

import pytest
import requests
from openpyxl import Workbook

from backbone.database import mongo_client
from gateway import signin
from tests.helpers import (CHROMEDRIVER, CHROMIUM, HALL, LAB, assert_error, at, Client, day,
                           headless_chromium, Programme, wait_for)

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CSV_HEADER = "full_name,email,phone,unit_code,audience_group\n"
_days = itertools.count(30)


@pytest.fixture(scope="module")
def world(module_system):
    client = mongo_client(module_system["MONGO_URI"])

    def db(service):
        return client["{}_{}".format(module_system["DATABASE_PREFIX"], service)]

    operator = Client(module_system["GATEWAY_URL"], module_system["OPERATOR_TOKEN"])
    programme = Programme(operator, db)
    accounts = {}
    for key, role in (("staff", "operator"), ("viewer", "viewer")):
        made = operator.post("/operators", {"full_name": "Lâm {} Điều Hành".format(key.title()),
                                            "email": key + "@programme.dxcenter.example", "role": role})
        assert made.status_code == 201, made.text
        accounts[key] = made.json()
    yield {"base": module_system["GATEWAY_URL"], "operator": operator, "programme": programme, "db": db, **accounts}
    client.close()


def signed_in(world, account):
    """A browser session of the account, through a sign-in link issued as the console mails it."""
    token = signin.issue(world["db"]("gateway"), "operator", account["id"])
    browser = requests.Session()
    done = browser.post(world["base"] + "/console/login/link/redeem", data={"token": token}, allow_redirects=False)
    assert done.status_code == 303, done.text
    return browser


def csrf_of(html):
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def session_on_a_day_of_its_own(programme, **fields):
    n = next(_days)
    return programme.known_session(starts_at=at(n, "08:00"), ends_at=at(n, "12:00"), **fields)


def audited(world, route, account, status=200):
    return world["db"]("gateway").audit.find_one({"route": route, "actor": "operator:" + account["id"], "status": status})


def test_the_pages_need_a_session_and_their_forms_a_csrf_token(world):
    base = world["base"]
    for path in ("/console/venues", "/console/schedule", "/console/officials"):
        assert requests.get(base + path, allow_redirects=False).status_code == 303
    browser = signed_in(world, world["staff"])
    forged = browser.post(base + "/console/venues", data={"csrf": "nope", "name": "Giả", "address": "x",
                                                          "host_partner_id": world["programme"].buh_id,
                                                          "rooms": "P1; 10"})
    assert forged.status_code == 403
    assert not world["db"]("scheduling").venues.find_one({"name": "Giả"})
    for path in ("/console/venues", "/console/schedule", "/console/officials"):
        page = browser.get(base + path)
        assert page.status_code == 200 and "<script" not in page.text and 'name="csrf"' in page.text, path


def test_a_venue_is_created_and_a_bad_room_is_said_next_to_the_field(world):
    base, programme = world["base"], world["programme"]
    browser = signed_in(world, world["staff"])
    csrf = csrf_of(browser.get(base + "/console/venues").text)
    refused = browser.post(base + "/console/venues", data={
        "csrf": csrf, "name": "Nhà văn hóa Thanh Niên", "address": "4 Phạm Ngọc Thạch, phường Sài Gòn",
        "host_partner_id": programme.buh_id, "rooms": "Phòng 1; bốn mươi"})
    assert refused.status_code == 422
    assert 'id="error-rooms"' in refused.text and "Phải là số nguyên" in refused.text
    assert "Nhà văn hóa Thanh Niên" in refused.text  # what was typed stays
    made = browser.post(base + "/console/venues", data={
        "csrf": csrf, "name": "Nhà văn hóa Thanh Niên", "address": "4 Phạm Ngọc Thạch, phường Sài Gòn",
        "host_partner_id": programme.buh_id, "rooms": "Phòng 1; 40; máy chiếu, 40 máy tính\nHội trường; 300"})
    assert made.status_code == 201 and "Đã thêm địa điểm Nhà văn hóa Thanh Niên." in made.text
    venue = world["db"]("scheduling").venues.find_one({"name": "Nhà văn hóa Thanh Niên"})
    assert [(r["name"], r["capacity"]) for r in venue["rooms"]] == [("Phòng 1", 40), ("Hội trường", 300)]
    assert venue["rooms"][0]["equipment"] == ["máy chiếu", "40 máy tính"]
    assert audited(world, "console: create venue", world["staff"])["target"] == {"venue_id": venue["_id"]}


def test_scheduling_refusals_are_said_in_words_in_vietnamese_and_english(world):
    base, programme = world["base"], world["programme"]
    taken = session_on_a_day_of_its_own(programme)
    browser = signed_in(world, world["staff"])
    csrf = csrf_of(browser.get(base + "/console/schedule").text)
    taken_day = "/".join(reversed(taken["starts_at"][:10].split("-")))
    form = {"csrf": csrf, "offering_id": programme.offering_id, "venue_id": programme.venue_id, "room": HALL,
            "trainer": "ThS. Trần Khác", "day": taken_day, "start": "09:00", "end": "11:00", "capacity": "50",
            "eligible_units": "Q1", "audience_groups": "ward_commune"}
    clash = browser.post(base + "/console/schedule", data=form)
    assert clash.status_code == 409
    assert "Phòng đã có lớp khác vào thời gian này." in clash.text
    assert "Đã có lớp «{}» ngày {}, 08:00–12:00.".format(taken["title"], taken_day) in clash.text
    assert 'id="error-room"' in clash.text and "room_conflict" not in clash.text
    english = browser.post(base + "/console/schedule?lang=en", data=dict(form, trainer=taken["trainer"], room=LAB, capacity="30"))
    assert english.status_code == 409 and "The trainer teaches another session at that time." in english.text
    n = next(_days)
    over_room = browser.post(base + "/console/schedule?lang=vi", data=dict(  # the language is remembered: back to vi
        form, room=LAB, day=day(n).strftime("%d/%m/%Y"), capacity="41"))
    assert over_room.status_code == 422 and "Sức chứa vượt quá số chỗ của phòng. Phòng chỉ có 40 chỗ." in over_room.text
    bad_time = browser.post(base + "/console/schedule", data=dict(form, day="32/13/2026"))
    assert bad_time.status_code == 422 and 'id="error-start"' in bad_time.text
    assert audited(world, "console: create session", world["staff"], 409)


def test_a_session_is_created_rescheduled_resized_and_cancelled(world):
    base, programme = world["base"], world["programme"]
    browser = signed_in(world, world["staff"])
    csrf = csrf_of(browser.get(base + "/console/schedule").text)
    n = next(_days)
    made = browser.post(base + "/console/schedule", data={
        "csrf": csrf, "offering_id": programme.offering_id, "venue_id": programme.venue_id, "room": LAB,
        "trainer": "ThS. Võ Thị Lan", "day": day(n).strftime("%d/%m/%Y"), "start": "13:30", "end": "16:30",
        "capacity": "30", "eligible_units": "Q1, Q3", "audience_groups": ["ward_commune", "department"]},
        allow_redirects=False)
    assert made.status_code == 303, made.text
    session_id = made.headers["Location"].split("/console/schedule/")[1].split("?")[0]
    page = browser.get(base + made.headers["Location"])
    assert "Đã lên lịch lớp học." in page.text
    session = world["operator"].get("/sessions/" + session_id).json()
    assert session["starts_at"].startswith(day(n).isoformat()) and session["eligible_units"] == ["Q1", "Q3"]
    assert session["audience_groups"] == ["ward_commune", "department"] and session["capacity"] == 30

    moved = browser.post(base + "/console/schedule/{}/reschedule".format(session_id), data={
        "csrf": csrf, "day": day(n + 1).strftime("%d/%m/%Y"), "start": "08:00", "end": "11:00", "room": ""})
    assert "Đã đổi lịch lớp." in moved.text
    assert world["operator"].get("/sessions/" + session_id).json()["starts_at"].startswith(day(n + 1).isoformat())
    refused = browser.post(base + "/console/schedule/{}/capacity".format(session_id), data={"csrf": csrf, "capacity": "41"})
    assert refused.status_code == 422 and 'id="error-capacity-capacity"' in refused.text and "Phòng chỉ có 40 chỗ." in refused.text
    resized = browser.post(base + "/console/schedule/{}/capacity".format(session_id), data={"csrf": csrf, "capacity": "35"})
    assert "Đã đổi sức chứa." in resized.text and world["operator"].get("/sessions/" + session_id).json()["capacity"] == 35
    cancelled = browser.post(base + "/console/schedule/{}/cancel".format(session_id), data={"csrf": csrf, "reason": "Giảng viên ốm"})
    assert "Đã hủy lớp." in cancelled.text
    assert world["operator"].get("/sessions/" + session_id).json()["status"] == "cancelled"
    listed = browser.get(base + "/console/schedule?status=cancelled")
    assert session_id in listed.text
    assert session_id not in browser.get(base + "/console/schedule").text  # by default: scheduled, still to come
    on_the_day = browser.get(base + "/console/schedule?day=" + day(n + 1).strftime("%d/%m/%Y") + "&status=cancelled")
    assert session_id in on_the_day.text
    for action in ("reschedule session", "change session capacity", "cancel session"):
        assert audited(world, "console: " + action, world["staff"])["target"] == {"session_id": session_id}


def test_registrations_are_listed_with_the_waitlist_in_order_cancelled_and_moved_in_two_reported_steps(world):
    base, programme, operator = world["base"], world["programme"], world["operator"]
    source = session_on_a_day_of_its_own(programme, capacity=1)
    target = session_on_a_day_of_its_own(programme, capacity=1)
    officials = [programme.official("Q1", full_name="Người Thứ {}".format(i)) for i in range(4)]
    seated = programme.registered(source, officials[0])
    first_waiting = programme.registered(source, officials[1])
    second_waiting = programme.registered(source, officials[2])
    browser = signed_in(world, world["staff"])
    page = browser.get(base + "/console/schedule/" + source["id"])
    waitlist = page.text.split('id="registrations-waitlisted"')[1].split("</table>")[0]
    assert waitlist.index("Người Thứ 1") < waitlist.index("Người Thứ 2")
    assert "Chuyển gồm hai bước" in page.text
    csrf = csrf_of(page.text)

    # The seated official moves to a session with a free seat: seated there, cancelled here, and the
    # first on the waitlist here is promoted.
    moved = browser.post(base + "/console/registrations/move", data={
        "csrf": csrf, "registration_id": seated["id"], "session_id": source["id"], "target_session_id": target["id"]})
    assert moved.status_code == 200, moved.text
    assert "Bước 1: đã nhận chỗ ở lớp chuyển đến." in moved.text and "Bước 2: đã hủy đăng ký ở lớp này" in moved.text
    assert operator.get("/registrations/" + seated["id"]).json()["status"] == "cancelled"
    assert wait_for(lambda: operator.get("/registrations/" + first_waiting["id"]).json()["status"] == "confirmed")

    # The target is full now: the next one is only waitlisted there, so the seat here is kept.
    kept = browser.post(base + "/console/registrations/move", data={
        "csrf": csrf, "registration_id": first_waiting["id"], "session_id": source["id"], "target_session_id": target["id"]})
    assert kept.status_code == 409
    assert "danh sách chờ (thứ tự 1)" in kept.text and "chỗ ở lớp này được giữ nguyên" in kept.text
    assert operator.get("/registrations/" + first_waiting["id"]).json()["status"] == "confirmed"

    # Refused at step 1 (a session that does not invite Q3): nothing changes, and it says why.
    outsider = programme.official("Q4", full_name="Người Quận Bốn")
    q4_source = session_on_a_day_of_its_own(programme, eligible_units=["Q4"])
    registration = programme.registered(q4_source, outsider)
    refused = browser.post(base + "/console/registrations/move", data={
        "csrf": csrf, "registration_id": registration["id"], "session_id": q4_source["id"], "target_session_id": target["id"]})
    assert refused.status_code == 409
    assert "Bước 1: lớp chuyển đến từ chối đăng ký — Cán bộ không thuộc đơn vị hoặc đối tượng được mời." in refused.text
    assert operator.get("/registrations/" + registration["id"]).json()["status"] == "confirmed"

    cancelled = browser.post(base + "/console/registrations/cancel", data={
        "csrf": csrf, "registration_id": second_waiting["id"], "session_id": source["id"], "reason": "Bận họp",
        "cause": "official"}, allow_redirects=False)
    assert cancelled.status_code == 303
    answer = operator.get("/registrations/" + second_waiting["id"]).json()
    assert answer["status"] == "cancelled" and answer["cancel_reason"] == "Bận họp"
    audit = world["db"]("gateway").audit
    assert audit.find_one({"route": "console: move registration: register on target", "status": 200,
                           "target.from_registration_id": seated["id"]})
    assert audit.find_one({"route": "console: move registration: cancel here",
                           "target.registration_id": seated["id"], "actor": "operator:" + world["staff"]["id"]})
    assert audited(world, "console: cancel registration", world["staff"])["target"]["registration_id"] == second_waiting["id"]


def test_an_official_is_found_corrected_and_a_taken_address_is_said_next_to_the_field(world):
    base, programme = world["base"], world["programme"]
    official = programme.official("Q1", full_name="Đặng Thị Sửa Tên")
    other = programme.official("Q1")
    browser = signed_in(world, world["staff"])
    found = browser.get(base + "/console/officials?q=dang thi sua")
    assert official["id"] in found.text and other["id"] not in found.text
    page = browser.get(base + "/console/officials/" + official["id"])
    csrf = csrf_of(page.text)
    fields = {"csrf": csrf, "full_name": "Đặng Thị Đã Sửa", "email": official["email"], "phone": official["phone"],
              "unit_code": "Q3", "audience_group": "ward_commune", "language": "en"}
    taken = browser.post(base + "/console/officials/" + official["id"], data=dict(fields, email=other["email"]))
    assert taken.status_code == 409 and 'id="error-email"' in taken.text and "Đã có cán bộ khác dùng." in taken.text
    saved = browser.post(base + "/console/officials/" + official["id"], data=fields)
    assert "Đã lưu thông tin cán bộ." in saved.text
    now = world["operator"].get("/officials/" + official["id"]).json()
    assert (now["full_name"], now["unit_code"], now["language"]) == ("Đặng Thị Đã Sửa", "Q3", "en")
    assert world["operator"].get("/officials?q=da sua").json()["items"][0]["id"] == official["id"]
    assert audited(world, "console: update official", world["staff"])["target"] == {"official_id": official["id"]}


def test_the_update_route_checks_fields_and_scope_and_the_live_registrations_follow(world):
    operator, programme = world["operator"], world["programme"]
    official = programme.official("Q1")
    session = session_on_a_day_of_its_own(programme)
    registration = programme.registered(session, official)
    assert_error(operator.post("/officials/{}/update".format(official["id"]), {}), 422, "invalid_fields")
    assert_error(operator.post("/officials/{}/update".format(official["id"]), {"email": "khong-phai"}), 422,
                 "invalid_fields")
    assert_error(operator.post("/officials/{}/update".format(official["id"]), {"colour": "red"}), 422, "invalid_fields")
    assert_error(operator.post("/officials/{}/update".format(official["id"]), {"unit_code": "NOPE"}), 422, "unknown_unit")
    assert_error(operator.post("/officials/nope/update", {"full_name": "X"}), 404, "not_found")
    changed = operator.post("/officials/{}/update".format(official["id"]),
                            {"email": "Moi.Dia.Chi@Q1.gov.vn", "phone": "0903 888 777"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["email"] == "moi.dia.chi@q1.gov.vn" and changed.json()["phone"] == "+84903888777"
    # The notices still to come for the live registration go to the corrected address.
    kept = world["db"]("registration").registrations.find_one({"_id": registration["id"]})
    assert kept["official"]["email"] == "moi.dia.chi@q1.gov.vn"

    coordinator = operator.post("/units/Q1/coordinators", {"full_name": "Điều Phối Q1", "email": "dp.sua@q1.gov.vn"})
    co = operator.as_(coordinator.json()["api_token"])
    mine = co.post("/officials/{}/update".format(official["id"]), {"full_name": "Sửa Bởi Điều Phối"})
    assert mine.status_code == 200, mine.text
    assert_error(co.post("/officials/{}/update".format(official["id"]), {"unit_code": "Q3"}), 403, "unit_not_yours")
    q3 = programme.official("Q3")
    assert_error(co.post("/officials/{}/update".format(q3["id"]), {"full_name": "Trộm"}), 403, "unit_not_yours")
    viewer = signed_in(world, world["viewer"])  # a viewer's console session: no API token needed here
    assert viewer.get(world["base"] + "/console/officials").status_code == 200


def xlsx_of(rows):
    book = Workbook()
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_a_staff_list_is_imported_as_csv_or_xlsx_with_counts_and_each_refused_row(world, monkeypatch):
    base = world["base"]
    browser = signed_in(world, world["staff"])
    csrf = csrf_of(browser.get(base + "/console/officials").text)
    text = CSV_HEADER + "Hồ Văn Một,mot.nhap@q1.gov.vn,0903 444 001,Q1,ward_commune\n" \
                        "Hồ Văn Hai,khong-phai-email,0903 444 002,Q1,ward_commune\n" \
                        "Hồ Văn Ba,ba.nhap@q1.gov.vn,0903 444 003,NOPE,ward_commune\n"
    answer = browser.post(base + "/console/officials/import", data={"csrf": csrf},
                          files={"file": ("danh-sach.csv", text.encode("utf-8-sig"), "text/csv")})
    assert answer.status_code == 200, answer.text
    assert re.search(r'id="created-n">1<', answer.text) and re.search(r'id="errors-n">2<', answer.text)
    assert 'data-row="3"' in answer.text and "Email không hợp lệ." in answer.text
    assert 'data-row="4"' in answer.text and "Không có đơn vị này." in answer.text
    again = browser.post(base + "/console/officials/import", data={"csrf": csrf},
                         files={"file": ("danh-sach.csv", text.encode(), "text/csv")})
    assert re.search(r'id="unchanged-n">1<', again.text) and re.search(r'id="created-n">0<', again.text)

    book = xlsx_of([["full_name", "email", "phone", "unit_code", "audience_group"],
                    ["Hồ Thị Bốn", "bon.nhap@q1.gov.vn", "0903444004", "Q1", "ward_commune"],
                    ["Hồ Thị Năm", "nam.nhap@q1.gov.vn", 903444005, "Q1", "department"]])
    from_excel = browser.post(base + "/console/officials/import", data={"csrf": csrf},
                              files={"file": ("danh-sach.xlsx", book, "application/octet-stream")})
    assert re.search(r'id="created-n">2<', from_excel.text), from_excel.text
    assert world["operator"].get("/officials?q=ho thi nam").json()["items"][0]["phone"] == "+84903444005"

    formula = xlsx_of([["full_name", "email", "phone", "unit_code", "audience_group"],
                       ['=HYPERLINK("http://x.example","Bấm")', "sau.nhap@q1.gov.vn", "0903444006", "Q1", "ward_commune"]])
    refused = browser.post(base + "/console/officials/import", data={"csrf": csrf},
                           files={"file": ("xau.xlsx", formula, "application/octet-stream")})
    assert refused.status_code == 400 and "Ô A2 chứa công thức" in refused.text
    assert not world["operator"].get("/officials?q=sau.nhap").json()["items"]
    assert audited(world, "console: import officials", world["staff"])
    assert audited(world, "console: import officials", world["staff"], 400)

    # Past what a console request imports in time, the file is refused before it is sent, in words.
    from ops.console import programme as console_programme
    monkeypatch.setattr(console_programme, "IMPORT_ROWS", 1)
    too_many = browser.post(base + "/console/officials/import", data={"csrf": csrf},
                            files={"file": ("lon.csv", text.encode(), "text/csv")})
    assert too_many.status_code == 413 and "Tệp có hơn 1 dòng" in too_many.text and "import_cli" in too_many.text


def test_a_viewer_sees_the_lists_but_no_write_forms_and_its_posts_are_refused_and_audited(world):
    base, programme = world["base"], world["programme"]
    session = session_on_a_day_of_its_own(programme)
    viewer = signed_in(world, world["viewer"])
    for path in ("/console/venues", "/console/schedule", "/console/schedule/" + session["id"], "/console/officials"):
        page = viewer.get(base + path)
        assert page.status_code == 200, path
        assert 'method="post" action="/console/logout"' in page.text
        assert len(re.findall(r'method="post"', page.text)) == 1, path  # the logout form only
    csrf = csrf_of(viewer.get(base + "/console/schedule").text)
    refused = viewer.post(base + "/console/schedule/{}/cancel".format(session["id"]), data={"csrf": csrf, "reason": "x"})
    assert refused.status_code == 403 and "chỉ xem" in refused.text
    assert world["operator"].get("/sessions/" + session["id"]).json()["status"] == "scheduled"
    assert audited(world, "console: cancel session", world["viewer"], 403)


@pytest.mark.skipif(not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)),
                    reason="needs Debian's chromium and chromium-driver (`make browser` installs them)")
def test_an_operator_schedules_a_session_moves_a_registration_and_imports_staff_in_a_browser(world, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    base, programme, operator = world["base"], world["programme"], world["operator"]
    official = programme.official("Q1", full_name="Trịnh Văn Chuyển Lớp")
    source = session_on_a_day_of_its_own(programme, capacity=5)
    registration = programme.registered(source, official)
    driver = headless_chromium(tmp_path, "412,1400")  # a phone's width: the pages must work there too

    def shown(element_id, text=""):
        return wait_for(lambda: [e for e in driver.find_elements(By.ID, element_id) if text in e.text], timeout=10)[0]
    try:
        driver.set_page_load_timeout(30)
        driver.get("{}/console/login/link?token={}".format(base, signin.issue(world["db"]("gateway"), "operator",
                                                                              world["staff"]["id"])))
        driver.find_element(By.ID, "redeem").click()
        shown("who")

        # Schedule a session; first with a trainer booked elsewhere, refused in words.
        driver.find_element(By.ID, "nav-schedule_page").click()
        n = next(_days)
        Select(driver.find_element(By.ID, "s-venue")).select_by_value(programme.venue_id)
        for name, value in (("room", LAB), ("trainer", source["trainer"]), ("day", day(n - 1).strftime("%d/%m/%Y")),
                            ("start", "08:30"), ("end", "11:30"), ("capacity", "20"), ("eligible_units", "Q1")):
            driver.find_element(By.ID, "s-" + name).send_keys(value)
        driver.find_element(By.ID, "s-group-ward_commune").click()
        driver.find_element(By.ID, "create-session").click()
        assert "Giảng viên đã dạy lớp khác vào thời gian này." in shown("refused").text
        assert shown("error-trainer").text.startswith("Đã có lớp «")
        trainer = driver.find_element(By.ID, "s-trainer")
        trainer.clear()
        trainer.send_keys("ThS. Lê Thị Mới")
        driver.find_element(By.ID, "s-day").clear()
        driver.find_element(By.ID, "s-day").send_keys(day(n).strftime("%d/%m/%Y"))
        if not driver.find_element(By.ID, "s-group-ward_commune").is_selected():
            driver.find_element(By.ID, "s-group-ward_commune").click()
        driver.find_element(By.ID, "create-session").click()
        shown("done", "Đã lên lịch lớp học.")
        target_id = driver.current_url.split("/console/schedule/")[1].split("?")[0]
        wait_for(lambda: world["db"]("registration").sessions.find_one({"_id": target_id}))

        # Move the registration there from its session's page.
        driver.get(base + "/console/schedule/" + source["id"])
        row = driver.find_element(By.CSS_SELECTOR, 'tr.registration[data-id="{}"]'.format(registration["id"]))
        row.find_element(By.TAG_NAME, "summary").click()
        Select(row.find_element(By.CSS_SELECTOR, "select[name=target_session_id]")).select_by_value(target_id)
        row.find_element(By.CSS_SELECTOR, "button.move").click()
        steps = shown("move-steps", "Bước 2")
        assert "Bước 1: đã nhận chỗ" in steps.text and "Bước 2: đã hủy đăng ký ở lớp này" in steps.text
        assert operator.get("/registrations/" + registration["id"]).json()["status"] == "cancelled"
        ARTIFACTS.mkdir(exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "console-move.png"))

        # Import a staff list, then find one of it and correct their name.
        path = tmp_path / "nhan-su.csv"
        path.write_text(CSV_HEADER + "Quách Thị Nhập,quach.nhap@q1.gov.vn,0903 666 001,Q1,ward_commune\n"
                                     "Quách Văn Lỗi,,0903 666 002,Q1,ward_commune\n", encoding="utf-8")
        driver.find_element(By.ID, "nav-officials_page").click()
        driver.find_element(By.ID, "file").send_keys(str(path))
        driver.find_element(By.ID, "do-import").click()
        assert shown("created-n").text == "1" and shown("errors-n").text == "1"
        assert "Email không hợp lệ." in driver.find_element(By.CSS_SELECTOR, 'tr.row-error[data-row="3"]').text
        assert driver.save_screenshot(str(ARTIFACTS / "console-import.png"))
        driver.find_element(By.ID, "q").send_keys("quach thi nhap")
        driver.find_element(By.ID, "find").click()
        wait_for(lambda: "q=quach" in driver.current_url, timeout=10)
        wait_for(lambda: driver.find_elements(By.LINK_TEXT, "Quách Thị Nhập"), timeout=10)[0].click()
        name = driver.find_element(By.ID, "full_name")
        name.clear()
        name.send_keys("Quách Thị Đã Nhập")
        driver.find_element(By.ID, "save").click()
        shown("done", "Đã lưu thông tin cán bộ.")
        assert operator.get("/officials?q=quach thi da nhap").json()["items"]

        driver.get(base + "/console/schedule?lang=en")
        assert driver.find_element(By.TAG_NAME, "h1").text == "Sessions"
        assert driver.save_screenshot(str(ARTIFACTS / "console-schedule.png"))
    finally:
        driver.quit()
