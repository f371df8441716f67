"""A city-sized data set, deterministic from a seed: officials over the 168 units of today and the
departments, sessions over two years (one per 50 officials: 5,000 at 250,000), two registrations per
official (500,000) with attendance and certificates for the sessions already held.

Written straight to registration's and scheduling's databases in bulk (records built by the
services' own rules, so they are what the services would have stored). `extend(..., start, stop)`
adds officials [start, stop) and what comes with them, so a bench grows one data set step by step:

    python -m bench.city MONGO_URI PREFIX 250000     # by hand: the full city into <PREFIX>_registration
"""
import functools
import os
import random
import sys
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone

from pymongo import UpdateOne

from services.registration import rules
from services.registration import map as citymap
from services.registration.schemas import official_ref, session_ref
from services.scheduling import rules as scheduling_rules

SEED = 2025
# The programme's two years of sessions, the same whatever the number of officials: the calendars'
# figures then show what officials and their registrations cost them (nothing), at a full calendar.
SESSIONS = int(os.environ.get("BENCH_CITY_SESSIONS", 5000))
# One session in four is open to a few units only (the rest to every unit).
RESTRICTED_EVERY = 4
REGISTRATIONS_PER_OFFICIAL = 2
# Surnames with roughly their share in Vietnam; middle and given names as the civil service has them.
SURNAMES = [("Nguyễn", 38), ("Trần", 11), ("Lê", 9), ("Phạm", 7), ("Hoàng", 5), ("Huỳnh", 5), ("Phan", 4),
            ("Vũ", 4), ("Võ", 4), ("Đặng", 2), ("Bùi", 2), ("Đỗ", 2), ("Hồ", 2), ("Ngô", 1), ("Dương", 1),
            ("Lý", 1), ("Trương", 1), ("Đinh", 1), ("Lâm", 1), ("Mai", 1)]
MIDDLE = ["Thị", "Văn", "Hữu", "Đức", "Ngọc", "Minh", "Thanh", "Quốc", "Hoàng", "Kim", "Thu", "Xuân", "Gia",
          "Bảo", "Phương", "Anh", "Hồng", "Công", "Tấn", "Thành"]
GIVEN = ["An", "Anh", "Ánh", "Bảo", "Bình", "Châu", "Chi", "Cường", "Dung", "Dũng", "Duy", "Dương", "Đạt", "Điệp",
         "Đông", "Giang", "Hà", "Hải", "Hạnh", "Hào", "Hậu", "Hiền", "Hiếu", "Hòa", "Hoài", "Hùng", "Huy", "Huyền",
         "Hương", "Khang", "Khánh", "Khoa", "Kiên", "Lan", "Linh", "Loan", "Long", "Lộc", "Luân", "Mai", "Minh",
         "My", "Nam", "Nga", "Ngân", "Nghĩa", "Ngọc", "Nguyên", "Nhân", "Nhi", "Nhung", "Oanh", "Phát", "Phong",
         "Phúc", "Phương", "Quân", "Quang", "Quyên", "Sơn", "Tài", "Tâm", "Tân", "Thảo", "Thắng", "Thanh", "Thịnh",
         "Thông", "Thu", "Thư", "Thủy", "Tiến", "Toàn", "Trang", "Trâm", "Trí", "Trinh", "Trung", "Tú", "Tuấn",
         "Tùng", "Tuyết", "Uyên", "Vân", "Việt", "Vinh", "Vy", "Xuân", "Yến", "Khôi", "Lâm", "Thiện", "Triết",
         "Quỳnh", "Diễm", "Đào", "Gấm", "Kha", "Liên", "Mỹ"]
# Two years of the programme: from its first class.
FIRST_DAY = datetime(2025, 3, 22, 1, 0, tzinfo=timezone.utc)
DAYS = 730


@functools.lru_cache(maxsize=1)
def units_of_today():
    """(code, audience group) of every unit officials belong to today: wards and communes, and the
    departments and leadership (their officials are the department and leader groups)."""
    out = []
    for unit in citymap.every_unit():
        if unit.get("status", "active") != "active":
            continue
        group = {"ward": "ward_commune", "commune": "ward_commune", "special_zone": "ward_commune",
                 "department": "department", "leadership": "leader"}.get(unit.get("kind"))
        if group:
            out.append((unit["code"], group))
    return out


def _surname(rnd):
    total = sum(w for _, w in SURNAMES)
    pick = rnd.uniform(0, total)
    for name, weight in SURNAMES:
        pick -= weight
        if pick <= 0:
            return name
    return SURNAMES[0][0]


def official(seed, n, units, now):
    """Official number `n`: the same for the same seed, whatever else was generated."""
    rnd = random.Random("{}:official:{}".format(seed, n))
    code, group = units[n % len(units)]
    name = "{} {} {}".format(_surname(rnd), rnd.choice(MIDDLE), rnd.choice(GIVEN))
    return rules.new_official({"full_name": name, "email": "canbo{}@u{}.tphcm.gov.vn".format(n, code),
                               "phone": "+849{:08d}".format(n), "unit_code": code, "audience_group": group,
                               "language": "vi"}, "official-city{:07d}".format(n), now)


def session(seed, k, partner_id, venue, now, open_to_every_unit=False):
    """Session number `k`: (scheduling's record, registration's copy); one in RESTRICTED_EVERY is open
    to three units only, unless `open_to_every_unit`."""
    rnd = random.Random("{}:session:{}".format(seed, k))
    starts = FIRST_DAY + timedelta(days=rnd.randrange(DAYS), hours=rnd.choice((0, 5)))
    ends = starts + timedelta(hours=4)
    session_id = "session-city{:06d}".format(k)
    offering = {"_id": "offering-city", "partner_id": partner_id, "title": "Ứng dụng AI trong công việc (minh họa)"}
    room = venue["rooms"][0]
    units = [code for code, _ in units_of_today()]
    restricted = k % RESTRICTED_EVERY == RESTRICTED_EVERY - 1 and not open_to_every_unit
    eligible = sorted(rnd.sample(units, 3)) if restricted else []
    fields = {"trainer": "Giảng viên {}".format(k % 40), "starts_at": starts, "ends_at": ends,
              "parts": [{"starts_at": starts, "ends_at": ends}], "capacity": 200, "eligible_units": eligible,
              "audience_groups": ["ward_commune", "department", "leader"]}
    scheduled = scheduling_rules.new_session(session_id, fields, offering, venue, room, now)
    copy = {k_: scheduled[k_] for k_ in ("offering_id", "partner_id", "title", "venue_name", "address", "room",
                                         "starts_at", "ends_at", "parts", "capacity", "audience_groups",
                                         "registration_closes_at")}
    copy.update(_id=session_id, eligible_units=eligible, status="scheduled", seats_taken=0, waitlist_length=0,
                waitlist_next=0, quotas={}, unit_seats={})
    return scheduled, copy


def extend(registration_db, scheduling_db, start, stop, partner_id, venue, seed=SEED, chunk=5000, now=None):
    """Add officials [start, stop) and their registrations, attendance and certificates; with the
    first officials (`start` 0), the SESSIONS sessions of the programme. Returns what was written,
    by collection."""
    now = now or datetime.now(timezone.utc)
    units = units_of_today()
    written = defaultdict(int)
    sessions = {k: session(seed, k, partner_id, venue, now) for k in range(SESSIONS)}
    if start == 0:
        for begin in range(0, SESSIONS, chunk):
            keys = range(begin, min(SESSIONS, begin + chunk))
            scheduling_db.sessions.insert_many([sessions[k][0] for k in keys], ordered=False)
            registration_db.sessions.insert_many([sessions[k][1] for k in keys], ordered=False)
            written["sessions"] += len(keys)
    sessions = {k: copy for k, (_, copy) in sessions.items()}
    for begin in range(start, stop, chunk):
        # Counted by coverage's rebuild (`python -m services.registration.coverage_rebuild`), as a data
        # set loaded in bulk is, not one official at a time.
        officials = [official(seed, n, units, now) for n in range(begin, min(stop, begin + chunk))]
        for person in officials:
            person.pop("coverage_stale", None)
        registration_db.officials.insert_many(officials, ordered=False)
        written["officials"] += len(officials)
        registrations, attendance, certs, seats = [], [], [], defaultdict(lambda: defaultdict(int))
        for person in officials:
            n = int(person["_id"][len("official-city"):])
            rnd = random.Random("{}:registrations:{}".format(seed, n))
            for k in sorted({_open_to(rnd, person["unit_code"], sessions) for _ in range(REGISTRATIONS_PER_OFFICIAL)}):
                registrations.append(_registration(rnd, person, sessions[k], now, attendance, certs, seats))
        for collection, docs in (("registrations", registrations), ("attendance", attendance),
                                 ("certificates", certs)):
            if docs:
                registration_db[collection].insert_many(docs, ordered=False)
                written[collection] += len(docs)
        registration_db.sessions.bulk_write([UpdateOne({"_id": sid}, {"$inc": dict(
            {"seats_taken": sum(by_unit.values())},
            **{"unit_seats." + rules.unit_key(code): taken for code, taken in by_unit.items()})})
            for sid, by_unit in seats.items()], ordered=False)
    return dict(written)


def _open_to(rnd, unit_code, sessions):
    """A session that the unit's officials may register for, drawn at random."""
    while True:
        k = rnd.randrange(len(sessions))
        if not sessions[k]["eligible_units"] or unit_code in sessions[k]["eligible_units"]:
            return k


def _registration(rnd, person, held, now, attendance, certs, seats):
    """One registration of `person` for `held`, made a few weeks before it; cancelled one time in
    ten; completed (with its check-in and certificate) nine times in ten once the session is over."""
    session_id = held["_id"]
    registration_id = rules.registration_id(session_id, person["_id"])
    created = min(now, held["starts_at"] - timedelta(days=rnd.randrange(3, 30)))
    doc = {"_id": registration_id, "id": registration_id, "session_id": session_id, "official_id": person["_id"],
           "unit_code": person["unit_code"], "unit_code_then": person["unit_code"],
           "audience_group": person["audience_group"], "official": official_ref(person),
           "qr_token": rules.qr_token(registration_id, "city{:x}".format(rnd.getrandbits(48))),
           "created_at": created, "status": "confirmed"}
    if rnd.random() < 0.1:
        doc.update(rules.cancellation("confirmed", None, "official_request",
                                      min(now, created + timedelta(days=rnd.randrange(1, 3)))))
        return doc
    seats[session_id][person["unit_code"]] += 1
    if held["ends_at"] < now and rnd.random() < 0.9:
        at = held["starts_at"] + timedelta(minutes=rnd.randrange(0, 30))
        code = "city-" + registration_id.split("-", 1)[1][:12]
        attendance.append({"_id": rules.attendance_id(registration_id, 1), "registration_id": registration_id,
                           "session_id": session_id, "official_id": person["_id"], "part": 1, "checked_in_at": at})
        certs.append({"_id": code, "registration_id": registration_id, "session_id": session_id,
                      "official": doc["official"], "unit_code": person["unit_code"], "session": session_ref(held),
                      "partner_id": held.get("partner_id"), "issued_at": at})
        doc.update(status="completed", attended_parts=[1], first_checkin_at=at, certificate_code=code,
                   completed_at=at)
    return doc


VENUE = {"_id": "venue-city", "name": "Hội trường thành phố (minh họa)", "address": "86 Lê Thánh Tôn, Sài Gòn",
         "host_partner_id": "partner-city", "rooms": [{"name": "Hội trường A", "capacity": 400}]}


def main(argv):
    from backbone.database import mongo_client
    uri, prefix, size = argv[0], argv[1], int(argv[2])
    client = mongo_client(uri)
    started = time.monotonic()
    written = extend(client["{}_registration".format(prefix)], client["{}_scheduling".format(prefix)], 0, size,
                     "partner-city", VENUE)
    print("city: {} in {:.0f} s".format(written, time.monotonic() - started))


if __name__ == "__main__":
    main(sys.argv[1:])
