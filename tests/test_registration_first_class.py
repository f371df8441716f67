"""The first class of 2025-03-22, through the API as the operator lived it: the seeded full-day class
for Quận 1, 3, 4, Bình Thạnh and Phú Nhuận is filled from the districts' staff lists (its cut-off had
passed, so the operator records it explicitly), the extra officials wait, everyone is checked in by
QR token for the morning and the afternoon (the class is over: the operator records it from the
sign-in sheet, explicitly), those who attended both parts are certified, and the operator's reports
add it all up."""
import io
from concurrent.futures import ThreadPoolExecutor

import openpyxl

from backbone.outbox import emitted_events
from devstack import seed
from tests.helpers import wait_for
from tests.helpers import assert_error

# The class was for Quận 1, 3, 4, Bình Thạnh and Phú Nhuận; their officials are recorded today in the
# wards those districts became (one each: Sài Gòn, Bàn Cờ, Khánh Hội, Bình Thạnh, Phú Nhuận).
WARDS = ["26740", "27160", "27265", "26929", "27073"]


def staff_list(count):
    lines = ["full_name,email,phone,unit_code,audience_group"]
    for n in range(count):
        unit = WARDS[n % len(WARDS)]
        lines.append("Nguyễn Văn Học Viên {n},hocvien{n}@p{u}.ubnd.example,0913{n:06d},{U},{g}".format(
            n=n, u=unit, U=unit, g="district" if n % 2 else "ward_commune"))
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def test_the_first_class_is_filled_waitlisted_checked_in_and_certified(operator, anonymous, app_config, db):
    seeded = seed.load(app_config["GATEWAY_URL"], app_config["OPERATOR_TOKEN"], say=lambda _: None)
    session_id = seeded["session"]["id"]
    wait_for(lambda: db("registration").sessions.find_one({"_id": session_id}))

    imported = operator.post("/officials/import", data=staff_list(152), headers={"Content-Type": "text/csv"}).json()
    assert (imported["created"], imported["errors"]) == (152, [])
    officials = operator.get("/officials?limit=200").json()["items"]

    path = "/sessions/{}/registrations".format(session_id)
    assert_error(operator.post(path, {"official_id": officials[0]["id"]}), 422, "registration_closed")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda o: operator.post(path, {"official_id": o["id"], "after_cutoff": True}),
                                officials))
    assert {a.status_code for a in answers} == {201}
    registrations = [a.json() for a in answers]
    confirmed = [r for r in registrations if r["status"] == "confirmed"]
    waitlisted = [r for r in registrations if r["status"] == "waitlisted"]
    assert (len(confirmed), sorted(r["waitlist_position"] for r in waitlisted)) == (150, [1, 2])
    session = operator.get("/sessions/" + session_id).json()
    assert (session["seats_taken"], session["waitlist_length"]) == (150, 2)

    # The class is over: the door is closed to everyone, and only the operator records the sign-in
    # sheet, saying so (the part is named).
    checkins = "/sessions/{}/checkins".format(session_id)
    anh = confirmed[0]
    siu = operator.as_(seeded["partners"]["SIU"]["api_key"])
    assert_error(operator.post(checkins, {"qr_token": anh["qr_token"], "part": 1}), 422, "checkin_closed")
    assert_error(siu.post(checkins, {"qr_token": anh["qr_token"], "part": 1}), 422, "checkin_closed")
    assert_error(siu.post(checkins, {"qr_token": anh["qr_token"], "part": 1, "after_session": True}), 403, "forbidden")
    late = {"after_session": True}
    morning = operator.post(checkins, dict(late, qr_token=anh["qr_token"], part=1))
    assert morning.status_code == 200, morning.text
    assert (morning.json()["already_checked_in"], morning.json()["status"]) == (False, "confirmed")
    again = operator.post(checkins, dict(late, qr_token=anh["qr_token"], part=1)).json()
    assert again["already_checked_in"] is True and again["checked_in_at"] == morning.json()["checked_in_at"]
    afternoon = operator.post(checkins, dict(late, qr_token=anh["qr_token"], part=2)).json()
    # Absolute: it is mailed and printed, where a path alone opens nothing.
    assert afternoon["status"] == "completed" and afternoon["certificate_url"] == "{}/certificates/{}".format(
        app_config["PUBLIC_URL"], afternoon["certificate_code"])
    assert operator.post(checkins, dict(late, qr_token=anh["qr_token"], part=2)).json()["already_checked_in"] is True

    attended = len(emitted_events(db("registration"), {"type": "attendance_recorded"}))
    assert attended == 2
    [completed] = [e["payload"] for e in emitted_events(db("registration"), {"type": "course_completed"})]
    assert completed["registration_id"] == anh["id"] and completed["certificate_code"] == afternoon["certificate_code"]

    # Anyone with the code verifies the certificate: a printable Vietnamese page.
    page = anonymous.get("/certificates/" + afternoon["certificate_code"])
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "GIẤY CHỨNG NHẬN" in page.text and anh["official_id"] not in page.text
    name = operator.get("/officials/{}".format(anh["official_id"])).json()["full_name"]
    assert name in page.text and "22/03/2025" in page.text and afternoon["certificate_code"] in page.text
    assert anonymous.get("/certificates/AAAAA-BBBBB-CCCCC-DDDDD").status_code == 404

    # Only the morning for a second official: attended, not completed.
    operator.post(checkins, dict(late, qr_token=confirmed[1]["qr_token"], part=1))
    assert_error(operator.post(checkins, dict(late, qr_token=waitlisted[0]["qr_token"], part=1)), 422, "not_confirmed")
    assert_error(operator.post(checkins, dict(late, qr_token="no-such-token")), 404, "not_found")
    assert_error(operator.post(checkins, dict(late, qr_token=anh["qr_token"], part=3)), 422, "unknown_part")

    report = operator.get("/reports/session").json()["items"]
    assert [(r["registered"], r["confirmed"], r["waitlisted"], r["attended"], r["completed"]) for r in report] == [
        (152, 149, 2, 2, 1)]
    by_unit = {r["unit"]: r for r in operator.get("/reports/unit").json()["items"]}
    assert sum(r["registered"] for r in by_unit.values()) == 152 and set(by_unit) == set(WARDS)
    csv_export = operator.get("/reports/unit?format=csv")
    assert csv_export.headers["Content-Type"].startswith("text/csv")
    assert csv_export.content.startswith("\ufeff".encode("utf-8")) and "Phường Sài Gòn" in csv_export.content.decode("utf-8")
    xlsx = operator.get("/reports/partner?format=xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:2] == ("partner", "name") and rows[1][0] == seeded["partners"]["SIU"]["id"]
    assert_error(operator.get("/reports/nothing"), 404, "not_found")

    # Coverage's read model, kept current registration by registration (imports, registrations, a
    # cancellation that promotes, check-ins, a completion), agrees with one rebuilt from scratch.
    assert operator.post("/registrations/{}/cancel".format(confirmed[2]["id"]), {"reason": "Bận"}).status_code == 200
    from services.registration import store

    def model():
        counters = {}
        for c in db("registration").coverage_counters.find({}):
            totals = {k: v for k, v in (c.get("totals") or {}).items() if v}
            days = {d: {k: v for k, v in n.items() if v} for d, n in (c.get("days") or {}).items()}
            counters[c["_id"]] = (totals, {d: n for d, n in days.items() if n})
        return {k: v for k, v in counters.items() if v[0] or v[1]}

    # The reports' counters give the tables a count over every registration gives (a report folds
    # what was changed since the last fold first).
    from services.registration import reports
    for grouping in reports.GROUPINGS:
        for units in ("now", "then"):
            table = operator.get("/reports/{}?units={}".format(grouping, units)).json()
            recount = reports.build(db("registration"), grouping, units)
            assert [list(r.values()) for r in table["items"]] == recount["rows"], (grouping, units)
    reported = {g: operator.get("/reports/" + g).json() for g in reports.GROUPINGS}
    kept = model()
    answered = operator.get("/reports/coverage?by=unit").json()
    by_month = operator.get("/reports/coverage?by=month&as_of=2025-03-31").json()
    assert answered["totals"]["registered"] == 151 and answered["totals"]["trained"] == 1, answered["totals"]
    assert answered["totals"]["attended"] == 2
    assert store.rebuild_coverage(db("registration")) == 152
    assert model() == kept
    assert operator.get("/reports/coverage?by=unit").json() == answered
    assert operator.get("/reports/coverage?by=month&as_of=2025-03-31").json() == by_month
    assert {g: operator.get("/reports/" + g).json() for g in reports.GROUPINGS} == reported
