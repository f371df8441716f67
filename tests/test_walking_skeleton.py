"""One thin flow through all four services over HTTP: the operator onboards a partner and records its
agreement, the partner posts an offering with its own key, a session is scheduled, an official
registers, and a Vietnamese confirmation email arrives at the SMTP server."""
from datetime import timedelta

from backbone.clock import local_date
from tests.helpers import wait_for


def test_an_official_registers_and_gets_a_vietnamese_confirmation_email(operator, smtp_sink, db):
    # Dates from today: the class must still be open for registration whenever the test runs.
    today = local_date()
    day = today + timedelta(days=20)
    siu = operator.post("/partners", {"code": "SIU", "name": "Trường Đại học Quốc tế Sài Gòn",
                                      "kind": "university", "contact_email": "hoptac@siu.edu.vn"})
    assert siu.status_code == 201, siu.text
    partner = siu.json()
    assert partner["api_key"]

    agreement = operator.post("/partners/{}/agreements".format(partner["id"]), {
        "title": "Thỏa thuận hợp tác đào tạo 2025–2026", "signed_on": "2025-03-13",
        "valid_from": "2025-03-13", "valid_until": (today + timedelta(days=365)).isoformat(), "scope": ["ward_commune", "department"]})
    assert agreement.status_code == 201, agreement.text
    assert agreement.json()["status"] == "active"

    siu_client = operator.as_(partner["api_key"])
    offering = siu_client.post("/offerings", {
        "title": "Bồi dưỡng kiến thức và kỹ năng ứng dụng AI trong công việc",
        "audience_groups": ["ward_commune", "department"],
        "modules": [{"title": "AI trong công tác văn phòng", "hours": 4},
                    {"title": "An toàn thông tin khi sử dụng AI", "hours": 4}],
        "starts_from": today.isoformat(), "ends_by": (today + timedelta(days=60)).isoformat()})
    assert offering.status_code == 201, offering.text
    assert offering.json() | {"status": "published", "partner_id": partner["id"]} == offering.json()

    venue = operator.post("/venues", {
        "name": "Trường Đại học Ngân hàng TP.HCM", "address": "36 Tôn Thất Đạm, phường Sài Gòn",
        "host_partner_id": partner["id"], "rooms": [{"name": "Hội trường A", "capacity": 150}]}).json()

    # Scheduling learns of the offering from partners' event, asynchronously.
    def schedule():
        response = operator.post("/sessions", {
            "offering_id": offering.json()["id"], "venue_id": venue["id"], "room": "Hội trường A",
            "trainer": "TS. Nguyễn Văn A", "starts_at": "{}T08:00:00+07:00".format(day),
            "ends_at": "{}T17:00:00+07:00".format(day), "capacity": 150, "eligible_units": ["26740"],
            "audience_groups": ["ward_commune"]})
        return response if response.status_code == 201 else None
    session = wait_for(schedule).json()

    assert operator.post("/units", {"code": "26740", "name": "Phường Sài Gòn", "kind": "ward"}).status_code == 201
    official = operator.post("/officials", {
        "full_name": "Nguyễn Thị Ánh", "email": "anh.nguyen@saigon.hochiminhcity.gov.vn", "phone": "0903 123 456",
        "unit_code": "26740", "audience_group": "ward_commune"})
    assert official.status_code == 201, official.text
    assert official.json()["phone"] == "+84903123456"

    def register():
        response = operator.post("/sessions/{}/registrations".format(session["id"]),
                                 {"official_id": official.json()["id"]})
        return response if response.status_code != 404 else None
    registration = wait_for(register)
    assert registration.status_code == 201, registration.text
    assert registration.json()["status"] == "confirmed"

    mail = wait_for(lambda: [m for m in smtp_sink.messages()
                             if m["To"] == "anh.nguyen@saigon.hochiminhcity.gov.vn"])[0]
    assert mail["Subject"].startswith("Xác nhận đăng ký: Bồi dưỡng kiến thức")
    body = mail.get_body(("plain",)).get_content()
    assert "Kính gửi Nguyễn Thị Ánh" in body
    assert day.strftime("%d/%m/%Y 08:00") in body  # local time, dd/mm/yyyy HH:MM
    assert "36 Tôn Thất Đạm" in body
    assert registration.json()["qr_token"] in body

    # One correlation id follows the request through RPC and events to the notice it caused.
    # (the partner hears of its offering too: pick the official's confirmation email; the log says
    # `sent` a moment after the SMTP server accepted it)
    delivery = wait_for(lambda: db("notifications").notices.find_one(
        {"template": "registration_confirmed", "channel": "email", "status": "sent"}))
    assert delivery["correlation_id"] == registration.headers["X-Correlation-Id"]
    assert operator.get("/sessions/{}".format(session["id"])).json()["seats_taken"] == 1
