"""A demo programme beside the seed's history, for a newcomer to explore: the console, the coverage
charts and the officials' pages show real shapes on first start.

It is made up, and says so: its agreements and offerings are titled "(minh họa)", its 300 officials
have invented names, addresses on a reserved example domain (RFC 2606) and numbers that only the
embedded SMS gateway hears (`make run` loads the demo only when mail and SMS stay on this machine).
Dates are counted from the day it is loaded: two classes held in the last weeks (registrations,
check-ins from the sign-in sheet, certificates), five in the coming weeks at both partners (one full,
with a waitlist), headcounts for the units it covers. Loading it again finds what it made and adds
nothing (by name and date, as the seed does).

    python -m devstack.demo    (GATEWAY_URL or GATEWAY_PORT, OPERATOR_TOKEN; `make run` runs it)
"""
import os
import random
import sys
from datetime import date, datetime, time, timedelta, timezone

from devstack import seed

HCMC = timezone(timedelta(hours=7))
MARK = " (minh họa)"
DOMAIN = "demo.example"

# The wards the first class's districts became, and a few departments and the leadership.
WARDS = ["26740", "26737", "26743", "26758", "27160", "27139", "27142", "27259", "27265", "27286",
         "26944", "26929", "26905", "26956", "26911", "27043", "27058", "27073"]
DEPARTMENTS = ["SO-NOIVU", "SO-KHCN", "SO-TAICHINH", "SO-TUPHAP", "VP-UBND"]
LEADERSHIP = "LD-PHUONG-XA"
OFFICIALS = 300

FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô",
          "Dương", "Lý"]
MIDDLE = ["Thị", "Văn", "Minh", "Ngọc", "Thanh", "Hoàng", "Quốc", "Thu", "Hữu", "Bảo", "Kim", "Gia"]
GIVEN = ["An", "Bình", "Châu", "Dũng", "Giang", "Hà", "Hải", "Hạnh", "Hiếu", "Hoa", "Hùng", "Khánh", "Lan",
         "Linh", "Long", "Mai", "My", "Nam", "Ngân", "Nhung", "Phúc", "Phương", "Quân", "Quỳnh", "Sơn", "Tâm",
         "Thảo", "Thắng", "Trang", "Trung", "Tú", "Tuấn", "Uyên", "Vân", "Việt", "Yến"]

SIU_VENUE = {
    "name": "Trường Đại học Quốc tế Sài Gòn (SIU), cơ sở Thảo Điền" + MARK,
    "address": "8C Tống Hữu Định, phường An Khánh, TP. Hồ Chí Minh",
    "rooms": [{"name": "Phòng máy A1", "capacity": 30, "equipment": ["30 máy tính", "máy chiếu"]},
              {"name": "Hội trường B", "capacity": 120, "equipment": ["máy chiếu", "âm thanh", "wifi"]}],
}


def staff_list():
    """The demo's officials as a staff list (CSV), the same every time (a seeded generator)."""
    pick = random.Random(2025)
    lines = ["full_name,email,phone,unit_code,audience_group"]
    for n in range(OFFICIALS):
        name = "{} {} {}".format(pick.choice(FAMILY), pick.choice(MIDDLE), pick.choice(GIVEN))
        if n % 10 == 9:
            unit, group = LEADERSHIP, "leader"
        elif n % 5 == 4:
            unit, group = DEPARTMENTS[n % len(DEPARTMENTS)], "department"
        else:
            unit, group = WARDS[n % len(WARDS)], "ward_commune"
        lines.append("{},canbo{:03d}@{},09{:08d},{},{}".format(name, n, DOMAIN, 90000000 + n, unit, group))
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def weekday(day):
    """`day`, or the Monday after it when it falls on a weekend."""
    return day + timedelta(days=(7 - day.weekday()) % 7 if day.weekday() >= 5 else 0)


def at(day, hour, minute=0):
    return datetime.combine(day, time(hour, minute), HCMC).isoformat()


def full_day(day):
    return {"starts_at": at(day, 8), "ends_at": at(day, 17),
            "parts": [{"starts_at": at(day, 8), "ends_at": at(day, 11, 30)},
                      {"starts_at": at(day, 13, 30), "ends_at": at(day, 17)}]}


def load(base_url, token, today, say=print):
    api = seed.Api(base_url, token)
    partners = {p["code"]: seed.ensure_partner(api, p) for p in seed.PARTNERS}
    window = {"valid_from": (today - timedelta(days=90)).isoformat(),
              "valid_until": (today + timedelta(days=365)).isoformat(),
              "scope": ["ward_commune", "department", "leader"]}
    offerings = {}
    for code in ("SIU", "HUB"):
        seed.ensure_agreement(api, partners[code]["id"], dict(
            window, title="Thỏa thuận hợp tác đào tạo" + MARK, signed_on=window["valid_from"],
            parties=["HCMC-DXCENTER", code]), "demo-agreement-" + code)
        offerings[code] = seed.ensure_offering(api, partners[code]["id"], {
            "title": seed.TITLE + MARK, "title_en": seed.TITLE_EN + " (demo)",
            "audience_groups": ["ward_commune", "department", "leader"], "modules": seed.MODULES,
            "starts_from": (today - timedelta(days=60)).isoformat(),
            "ends_by": (today + timedelta(days=120)).isoformat()}, "demo-offering-" + code)
    hub = seed.ensure_venue(api, dict(seed.VENUE, host_partner_id=partners["HUB"]["id"]), "seed-venue-HUB")
    siu = seed.ensure_venue(api, dict(SIU_VENUE, host_partner_id=partners["SIU"]["id"]), "demo-venue-SIU")

    imported = api.post("/officials/import", None, "demo-staff", data=staff_list(),
                        headers={"Content-Type": "text/csv"})
    officials = [o for o in api.every("/officials") if o["email"].endswith("@" + DOMAIN)]
    by_group = {g: [o for o in officials if o["audience_group"] == g] for g in ("ward_commune", "department", "leader")}
    for code in WARDS:
        api.post("/units/{}/headcount".format(code), {"audience_group": "ward_commune", "staff": 25},
                 "demo-headcount-" + code)

    # (partner, venue, room, day, capacity, audiences, units, how many register)
    classes = [
        ("SIU", hub, "Hội trường lớn", weekday(today - timedelta(days=21)), 150, ["ward_commune"], WARDS[:9], 80),
        ("HUB", siu, "Hội trường B", weekday(today - timedelta(days=14)), 120, ["department", "leader"], [], 60),
        ("SIU", siu, "Phòng máy A1", weekday(today + timedelta(days=4)), 30, ["ward_commune"], WARDS[9:], 40),
        ("HUB", hub, "Hội trường lớn", weekday(today + timedelta(days=8)), 150, ["ward_commune"], WARDS, 60),
        ("SIU", hub, "Phòng máy 1", weekday(today + timedelta(days=12)), 40, ["department", "leader"], [], 25),
        ("HUB", siu, "Hội trường B", weekday(today + timedelta(days=18)), 120, ["ward_commune"], WARDS[:9], 30),
        ("SIU", hub, "Hội trường lớn", weekday(today + timedelta(days=26)), 150, ["ward_commune", "department"], [], 0),
    ]
    made = {"registrations": 0, "checkins": 0}
    for n, (code, venue, room, day, capacity, groups, units, takers) in enumerate(classes):
        session = seed.ensure_session(api, dict(
            full_day(day), offering_id=offerings[code]["id"], venue_id=venue["id"], room=room,
            trainer="Giảng viên " + partners[code]["name"], capacity=capacity, eligible_units=units,
            audience_groups=groups), "demo-session-{}".format(n))
        past = day < today
        invited = [o for g in groups for o in by_group[g] if not units or o["unit_code"] in units]
        for k, official in enumerate(invited[:takers]):
            answer = api.post("/sessions/{}/registrations".format(session["id"]),
                              dict({"official_id": official["id"]}, **({"after_cutoff": True} if past else {})),
                              "demo-registration-{}-{}".format(n, official["id"]), accept=(200, 201, 409),
                              wait_for_events=True)
            made["registrations"] += "id" in answer
            # The sign-in sheet of a class held: most came to both parts, some to the morning only.
            if past and answer.get("status") == "confirmed":
                for part in (1, 2) if k % 10 != 7 else (1,):
                    api.post("/sessions/{}/checkins".format(session["id"]),
                             {"qr_token": answer["qr_token"], "part": part, "after_session": True},
                             "demo-checkin-{}-{}-{}".format(n, official["id"], part))
                    made["checkins"] += 1
    say("demo: {} officials ({} new), {} classes at {} and {}, {} registrations and {} check-ins made".format(
        len(officials), imported.get("created", 0), len(classes), hub["name"], siu["name"], made["registrations"],
        made["checkins"]))


def main():
    base_url = os.environ.get("GATEWAY_URL") or "http://127.0.0.1:{}".format(os.environ.get("GATEWAY_PORT", "8000"))
    token = os.environ.get("OPERATOR_TOKEN")
    if not token:
        sys.exit("demo: set OPERATOR_TOKEN (make run does)")
    load(base_url, token, datetime.now(HCMC).date())


if __name__ == "__main__":
    main()
