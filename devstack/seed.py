"""The programme's seed data, loaded through the public API like any operator would, idempotently:
every POST carries a fixed Idempotency-Key, so running it again returns the first results and
creates nothing new.

The facts (shared/DOMAIN.md and the article it quotes): HCMC-DXCENTER operates the programme under
the joint plan of the Departments of Science and Technology and of Home Affairs, in the context of
Resolution 57-NQ/TW of 2024-12-22; SIU signed a cooperation agreement with it on 2025-03-13 for
2025–2026; the first class was on 2025-03-22, a full day at the Banking University of HCMC (HUB),
36 Tôn Thất Đạm, phường Nguyễn Thái Bình, Quận 1, for about 150 officials of Quận 1, 3, 4, Bình
Thạnh and Phú Nhuận, in two parts. Since 2025-07-01 the city has no districts: its 168 units of
today, its departments and the units of the first class (dissolved that day) come with the map.
Contact addresses are on reserved example domains (RFC 2606): a real relay writes to none of them.
"""
import os
import sys
import time
from datetime import datetime

import requests

PARTNERS = [
    {"code": "HCMC-DXCENTER", "name": "Trung tâm Chuyển đổi số TP. Hồ Chí Minh", "kind": "operator",
     "contact_email": "daotao-ai@dxcenter.example"},
    {"code": "SIU", "name": "Trường Đại học Quốc tế Sài Gòn (SIU)", "kind": "university",
     "contact_email": "hoptac@siu.example"},
    {"code": "HUB", "name": "Trường Đại học Ngân hàng TP. Hồ Chí Minh (HUB)", "kind": "venue_host",
     "contact_email": "hoptac@hub.example"},
]

SIU_AGREEMENT = {
    "title": "Thỏa thuận hợp tác tổ chức các chương trình bồi dưỡng, đào tạo cho cán bộ, công chức, viên chức "
             "và người lao động trên địa bàn Thành phố, thúc đẩy các hoạt động khoa học công nghệ giai đoạn 2025–2026",
    "parties": ["HCMC-DXCENTER", "SIU"],
    "signed_on": "2025-03-13", "valid_from": "2025-03-13", "valid_until": "2026-12-31",
    "scope": ["ward_commune", "district", "department", "leader", "ai_office_work", "ai_information_security"],
}

# The two parts of the class, as the article words them; a full day of two parts of 3.5 hours each
# (08:00–11:30 and 13:30–17:00).
MODULES = [
    {"title": "Tổng quan về xu hướng phát triển trí tuệ nhân tạo và các ứng dụng cụ thể trong công tác hành "
              "chính, văn phòng (tạo báo cáo, quản lý tài liệu, lịch làm việc, phân tích dữ liệu, tự động hóa "
              "công tác văn phòng); hướng dẫn sử dụng hiệu quả các nền tảng AI hiện đại để tối ưu hóa quy trình "
              "làm việc", "hours": 3.5},
    {"title": "Các vấn đề an toàn thông tin trong việc sử dụng trí tuệ nhân tạo; các công cụ công nghệ thông tin "
              "hỗ trợ cán bộ, công chức phường, xã triển khai tổng hợp thông tin đến các khu phố, ấp, tổ dân phố; "
              "ứng dụng AI để phân tích dữ liệu và nâng cao hiệu quả công việc", "hours": 3.5},
]
TITLE = "Bồi dưỡng kiến thức và kỹ năng ứng dụng AI trong công việc"
TITLE_EN = "Knowledge and skills for using AI tools at work"

# The class of 2025-03-22 was for district and ward officials: an offering of before the reform.
FIRST_OFFERING = {"title": TITLE, "title_en": TITLE_EN, "audience_groups": ["district", "ward_commune"],
                  "modules": MODULES, "starts_from": "2025-03-22", "ends_by": "2025-06-30"}
# Since 2025-07-01: commune-level officials, department officials and leaders.
OFFERING = {"title": TITLE, "title_en": TITLE_EN, "audience_groups": ["ward_commune", "department", "leader"],
            "modules": MODULES, "starts_from": "2025-07-01", "ends_by": "2026-12-31"}

VENUE = {
    "name": "Trường Đại học Ngân hàng TP. Hồ Chí Minh (HUB)",
    "address": "36 Tôn Thất Đạm, phường Nguyễn Thái Bình, Quận 1, TP. Hồ Chí Minh",
    "rooms": [
        {"name": "Hội trường lớn", "capacity": 160, "equipment": ["máy chiếu", "âm thanh", "wifi"]},
        {"name": "Phòng máy 1", "capacity": 40, "equipment": ["40 máy tính", "máy chiếu"]},
    ],
}

# The first class's districts, as the map keeps them: their official codes of 2024.
FIRST_CLASS_UNITS = ["old-760", "old-770", "old-773", "old-765", "old-768"]
FIRST_CLASS = {
    "room": "Hội trường lớn", "trainer": "Giảng viên Trường Đại học Quốc tế Sài Gòn",
    "starts_at": "2025-03-22T08:00:00+07:00", "ends_at": "2025-03-22T17:00:00+07:00",
    "parts": [{"starts_at": "2025-03-22T08:00:00+07:00", "ends_at": "2025-03-22T11:30:00+07:00"},
              {"starts_at": "2025-03-22T13:30:00+07:00", "ends_at": "2025-03-22T17:00:00+07:00"}],
    "capacity": 150, "eligible_units": FIRST_CLASS_UNITS,
    "audience_groups": ["district", "ward_commune"],
    "registration_closes_at": "2025-03-20T17:00:00+07:00",
}

PROGRAMME = {
    "name": "Bồi dưỡng kiến thức và kỹ năng ứng dụng AI trong công việc cho cán bộ, công chức, viên chức "
            "Thành phố Hồ Chí Minh, giai đoạn 2025–2026",
    "legal_basis": "Nghị quyết số 57-NQ/TW ngày 22/12/2024 của Bộ Chính trị về đột phá phát triển khoa học, công "
                   "nghệ, đổi mới sáng tạo và chuyển đổi số quốc gia; Kế hoạch liên tịch của Sở Khoa học và Công "
                   "nghệ và Sở Nội vụ Thành phố Hồ Chí Minh",
    "starts_on": "2025-03-22", "ends_on": "2026-12-31",
    "targets": {"ward_commune": {"share": 0.8, "deadline": "2026-12-31"},
                "department": {"share": 0.7, "deadline": "2026-12-31"},
                "leader": {"share": 1.0, "deadline": "2026-06-30"}},
}


class Api:
    """The gateway, as the operator. Each thing the seed makes is looked for first by what names it
    (a partner's code, a venue's name, a session's room and start...): an Idempotency-Key answers
    the same only for a day, and `make run` seeds every time it starts."""

    def __init__(self, base_url, token):
        self.base_url = base_url.rstrip("/")
        self.http = requests.Session()
        self.http.headers["Authorization"] = "Bearer " + token

    def _send(self, method, path, **kwargs):
        """One request; waits out the gateway's rate limit (429 with Retry-After) instead of failing."""
        while True:
            response = self.http.request(method, self.base_url + path, timeout=60, **kwargs)
            if response.status_code != 429:
                return response
            time.sleep(float(response.headers.get("Retry-After", "1")))

    def post(self, path, body, key, accept=(200, 201), wait_for_events=False, data=None, headers=None):
        """POST with a fixed Idempotency-Key. With `wait_for_events`, retry while the services are
        still learning of what we just created (the events are on their way)."""
        deadline = time.monotonic() + 30
        while True:
            response = self._send("POST", path, json=body, data=data,
                                  headers=dict(headers or {}, **{"Idempotency-Key": key}))
            if response.status_code in accept:
                return response.json()
            if not (wait_for_events and response.status_code in (404, 422) and time.monotonic() < deadline):
                raise SystemExit("seed: POST {} failed: {} {}".format(path, response.status_code, response.text))
            time.sleep(0.3)

    def get(self, path):
        response = self._send("GET", path)
        if response.status_code != 200:
            raise SystemExit("seed: GET {} failed: {} {}".format(path, response.status_code, response.text))
        return response.json()

    def every(self, path):
        """Every item of a list, page after page."""
        found, cursor = [], None
        while True:
            joiner = "&" if "?" in path else "?"
            page = self.get(path + (joiner + "limit=200" + ("&cursor=" + cursor if cursor else "")))
            found += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return found

    def ensure(self, list_path, matches, path, body, key, **kwargs):
        """The item of `list_path` that `matches`, or a new one POSTed to `path`."""
        known = [item for item in self.every(list_path) if matches(item)]
        return known[0] if known else self.post(path, body, key, **kwargs)


def same_instant(a, b):
    return datetime.fromisoformat(a) == datetime.fromisoformat(b)


def ensure_partner(api, partner):
    return api.ensure("/partners", lambda p: p["code"] == partner["code"], "/partners", partner,
                      "seed-partner-" + partner["code"])


def ensure_agreement(api, partner_id, agreement, key):
    return api.ensure("/partners/{}/agreements".format(partner_id),
                      lambda a: a["title"] == agreement["title"] and a["valid_from"] == agreement["valid_from"],
                      "/partners/{}/agreements".format(partner_id), agreement, key)


def ensure_offering(api, partner_id, offering, key):
    return api.ensure("/offerings?partner_id=" + partner_id,
                      lambda o: o["title"] == offering["title"] and o["starts_from"] == offering["starts_from"],
                      "/offerings", dict(offering, partner_id=partner_id), key)


def ensure_venue(api, venue, key):
    return api.ensure("/venues", lambda v: v["name"] == venue["name"], "/venues", venue, key)


def ensure_session(api, session, key):
    month = session["starts_at"][:7]
    return api.ensure("/sessions?venue_id={}&month={}".format(session["venue_id"], month),
                      lambda s: s["room"] == session["room"] and same_instant(s["starts_at"], session["starts_at"]),
                      "/sessions", session, key, wait_for_events=True)


def load(base_url, token, say=print):
    """The map, the programme, its partners and agreement, and the first class as history."""
    api = Api(base_url, token)
    units = api.post("/units/load-map", None, "seed-map-2025")
    programme = api.post("/programme", PROGRAMME, "seed-programme-2025")
    partners = {p["code"]: ensure_partner(api, p) for p in PARTNERS}
    agreement = ensure_agreement(api, partners["SIU"]["id"], SIU_AGREEMENT, "seed-agreement-SIU-2025")
    first_offering = ensure_offering(api, partners["SIU"]["id"], FIRST_OFFERING, "seed-offering-ai-2025-03")
    offering = ensure_offering(api, partners["SIU"]["id"], OFFERING, "seed-offering-ai-2025-07")
    venue = ensure_venue(api, dict(VENUE, host_partner_id=partners["HUB"]["id"]), "seed-venue-HUB")
    session = ensure_session(api, dict(FIRST_CLASS, offering_id=first_offering["id"], venue_id=venue["id"]),
                             "seed-session-2025-03-22")
    say("seed: map ({} units new), programme, partners {}, agreement {} ({}), offerings {} and {}, venue {}, "
        "first class {}".format(units["created"], ", ".join(sorted(partners)), agreement["id"], agreement["status"],
                                first_offering["id"], offering["id"], venue["id"], session["id"]))
    return {"partners": partners, "agreement": agreement, "first_offering": first_offering, "offering": offering,
            "venue": venue, "session": session, "programme": programme}


def main():
    base_url = os.environ.get("GATEWAY_URL") or "http://127.0.0.1:{}".format(os.environ.get("GATEWAY_PORT", "8000"))
    token = os.environ.get("OPERATOR_TOKEN")
    if not token:
        sys.exit("seed: set OPERATOR_TOKEN (make run does)")
    load(base_url, token)


if __name__ == "__main__":
    main()
