"""The programme's seed data, loaded through the public API like any operator would, idempotently:
every POST carries a fixed Idempotency-Key, so running it again returns the first results and
creates nothing new.

Facts (shared/DOMAIN.md): HCMC-DXCENTER operates the programme; SIU signed a cooperation agreement on
2025-03-13 for 2025–2026 training; the first class was on 2025-03-22, a full day at the Banking
University of HCMC, 36 Tôn Thất Đạm, Quận 1, for about 150 officials of Quận 1, 3, 4, Bình Thạnh and
Phú Nhuận.
"""
import os
import sys
import time

import requests

PARTNERS = [
    {"code": "HCMC-DXCENTER", "name": "Trung tâm Chuyển đổi số TP. Hồ Chí Minh", "kind": "operator",
     "contact_email": "daotao-ai@dxcenter.hochiminhcity.gov.vn"},
    {"code": "SIU", "name": "Trường Đại học Quốc tế Sài Gòn (SIU)", "kind": "university",
     "contact_email": "hoptac@siu.edu.vn"},
    {"code": "BUH", "name": "Trường Đại học Ngân hàng TP. Hồ Chí Minh", "kind": "venue_host",
     "contact_email": "hoptac@hub.edu.vn"},
]

SIU_AGREEMENT = {
    "title": "Thỏa thuận hợp tác đào tạo, bồi dưỡng cán bộ, công chức, viên chức, người lao động và "
             "thúc đẩy khoa học công nghệ giai đoạn 2025–2026",
    "signed_on": "2025-03-13", "valid_from": "2025-03-13", "valid_until": "2026-12-31",
    "scope": ["ward_commune", "district", "department", "leader", "ai_office_work", "ai_information_security"],
}

OFFERING = {
    "title": "Bồi dưỡng kiến thức và kỹ năng ứng dụng AI trong công việc",
    "title_en": "Knowledge and skills for using AI tools at work",
    "audience_groups": ["ward_commune", "district", "department", "leader"],
    "modules": [
        {"title": "Xu hướng và ứng dụng AI trong công tác hành chính, văn phòng: báo cáo, quản lý văn bản, "
                  "lịch làm việc, phân tích dữ liệu, tự động hóa văn phòng", "hours": 4},
        {"title": "An toàn thông tin khi sử dụng AI; công cụ hỗ trợ cán bộ phường, xã đưa thông tin đến "
                  "khu phố, ấp, tổ dân phố; AI trong phân tích dữ liệu", "hours": 4},
    ],
    "starts_from": "2025-03-22", "ends_by": "2026-12-31",
}

VENUE = {
    "name": "Trường Đại học Ngân hàng TP. Hồ Chí Minh",
    "address": "36 Tôn Thất Đạm, phường Nguyễn Thái Bình, Quận 1, TP. Hồ Chí Minh",
    "rooms": [
        {"name": "Hội trường lớn", "capacity": 160, "equipment": ["máy chiếu", "âm thanh", "wifi"]},
        {"name": "Phòng máy 1", "capacity": 40, "equipment": ["40 máy tính", "máy chiếu"]},
    ],
}

UNITS = [
    {"code": "HCM", "name": "Thành phố Hồ Chí Minh", "kind": "city"},
    {"code": "Q1", "name": "Quận 1", "kind": "district", "parent_code": "HCM"},
    {"code": "Q3", "name": "Quận 3", "kind": "district", "parent_code": "HCM"},
    {"code": "Q4", "name": "Quận 4", "kind": "district", "parent_code": "HCM"},
    {"code": "BINH-THANH", "name": "Quận Bình Thạnh", "kind": "district", "parent_code": "HCM"},
    {"code": "PHU-NHUAN", "name": "Quận Phú Nhuận", "kind": "district", "parent_code": "HCM"},
]

FIRST_CLASS = {
    "room": "Hội trường lớn", "trainer": "Giảng viên Trường Đại học Quốc tế Sài Gòn",
    "starts_at": "2025-03-22T08:00:00+07:00", "ends_at": "2025-03-22T17:00:00+07:00",
    "parts": [{"starts_at": "2025-03-22T08:00:00+07:00", "ends_at": "2025-03-22T11:30:00+07:00"},
              {"starts_at": "2025-03-22T13:30:00+07:00", "ends_at": "2025-03-22T17:00:00+07:00"}],
    "capacity": 150, "eligible_units": ["Q1", "Q3", "Q4", "BINH-THANH", "PHU-NHUAN"],
    "audience_groups": ["ward_commune", "district"],
    "registration_closes_at": "2025-03-20T17:00:00+07:00",
}


class Api:
    def __init__(self, base_url, token):
        self.base_url = base_url.rstrip("/")
        self.http = requests.Session()
        self.http.headers["Authorization"] = "Bearer " + token

    def post(self, path, body, key, accept=(200, 201), wait_for_events=False):
        """POST with a fixed Idempotency-Key. With `wait_for_events`, retry while the services are
        still learning of what we just created (the events are on their way)."""
        deadline = time.monotonic() + 30
        while True:
            response = self.http.post(self.base_url + path, json=body, headers={"Idempotency-Key": key},
                                      timeout=30)
            if response.status_code in accept:
                return response.json()
            if not (wait_for_events and response.status_code in (404, 422) and time.monotonic() < deadline):
                raise SystemExit("seed: POST {} failed: {} {}".format(path, response.status_code, response.text))
            time.sleep(0.3)


def load(base_url, token, say=print):
    api = Api(base_url, token)
    partners = {p["code"]: api.post("/partners", p, "seed-partner-" + p["code"]) for p in PARTNERS}
    agreement = api.post("/partners/{}/agreements".format(partners["SIU"]["id"]), SIU_AGREEMENT,
                         "seed-agreement-SIU-2025")
    offering = api.post("/offerings", dict(OFFERING, partner_id=partners["SIU"]["id"]), "seed-offering-ai-2025")
    venue = api.post("/venues", dict(VENUE, host_partner_id=partners["BUH"]["id"]), "seed-venue-BUH")
    for unit in UNITS:
        api.post("/units", unit, "seed-unit-" + unit["code"])
    session = api.post("/sessions", dict(FIRST_CLASS, offering_id=offering["id"], venue_id=venue["id"]),
                       "seed-session-2025-03-22", wait_for_events=True)
    say("seed: partners {}, agreement {} ({}), offering {}, venue {}, first class {}".format(
        ", ".join(sorted(partners)), agreement["id"], agreement["status"], offering["id"], venue["id"],
        session["id"]))
    return {"partners": partners, "agreement": agreement, "offering": offering, "venue": venue,
            "session": session}


def main():
    base_url = os.environ.get("GATEWAY_URL") or "http://127.0.0.1:{}".format(os.environ.get("GATEWAY_PORT", "8000"))
    token = os.environ.get("OPERATOR_TOKEN")
    if not token:
        sys.exit("seed: set OPERATOR_TOKEN (make run does)")
    load(base_url, token)


if __name__ == "__main__":
    main()
