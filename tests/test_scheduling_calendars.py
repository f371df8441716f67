"""The programme calendar: ICS files and feeds a calendar app can subscribe to (parsed back with
`icalendar`, times in Ho Chi Minh City), and the list an operator lays out the year with."""
from datetime import datetime, timedelta

import pytest
import requests
from icalendar import Calendar

from tests.helpers import HALL, LAB, at, day, full_day


def parse(response):
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/calendar")
    return Calendar.from_ical(response.content)


def by_uid(calendar):
    return {str(event["UID"]): event for event in calendar.events}


def test_a_session_file_has_local_times_the_place_and_a_uid_that_survives_a_reschedule(programme):
    session = programme.scheduled(registration_closes_at=at(8, "17:00"), **full_day(10))
    path = "/sessions/{}/calendar.ics".format(session["id"])
    [event] = parse(programme.siu.get(path)).events

    assert event.start == datetime.fromisoformat(at(10, "08:00"))
    assert event.start.tzinfo.key == "Asia/Ho_Chi_Minh" and event.start.hour == 8
    assert event.end.hour == 17
    assert str(event["SUMMARY"]) == "Bồi dưỡng kiến thức và kỹ năng ứng dụng AI trong công việc"
    assert str(event["LOCATION"]) == (
        "Hội trường lớn, Trường Đại học Ngân hàng TP. Hồ Chí Minh, 36 Tôn Thất Đạm, phường Nguyễn Thái Bình, "
        "Quận 1, TP. Hồ Chí Minh")
    assert "Các buổi: 08:00–11:30, 13:30–17:00" in str(event["DESCRIPTION"])
    assert "Hạn đăng ký: {} 17:00".format(day(8).strftime("%d/%m/%Y")) in str(event["DESCRIPTION"])
    assert str(event["STATUS"]) == "CONFIRMED"

    moved = programme.siu.post("/sessions/{}/reschedule".format(session["id"]),
                               {"starts_at": at(11, "08:00"), "ends_at": at(11, "17:00")})
    assert moved.status_code == 200, moved.text
    [again] = parse(programme.siu.get(path)).events
    assert str(again["UID"]) == str(event["UID"])  # the app updates its entry instead of adding one
    assert again["SEQUENCE"] == event["SEQUENCE"] + 1
    assert again.start == datetime.fromisoformat(at(11, "08:00"))


def test_a_venue_feed_takes_its_own_token_in_the_url_and_keeps_cancelled_sessions_marked(programme, anonymous):
    kept = programme.scheduled()
    dropped = programme.scheduled(room=LAB, capacity=40, trainer="B")
    programme.operator.post("/sessions/{}/cancel".format(dropped["id"]), {"reason": "Phòng máy bảo trì"})
    path = "/venues/{}/calendar.ics".format(programme.venue_id)

    assert anonymous.get(path).status_code == 401  # calendar apps send no header: the token is the key
    assert anonymous.get(path + "?token=not-a-key").status_code == 401
    assert anonymous.get(path + "?token=" + programme.operator.token).status_code == 401  # never a full-power key
    calendar_url = programme.operator.get("/venues/" + programme.venue_id).json()["calendar_url"]
    assert calendar_url.startswith(programme.operator.base_url + path + "?token=feed_")
    feed = parse(requests.get(calendar_url, timeout=10))
    assert str(feed["X-WR-CALNAME"]) == "Lớp bồi dưỡng AI — Trường Đại học Ngân hàng TP. Hồ Chí Minh"
    assert feed.walk("VTIMEZONE")[0]["TZID"] == "Asia/Ho_Chi_Minh"
    events = by_uid(feed)
    assert str(events[kept["id"] + "@trainops"]["STATUS"]) == "CONFIRMED"
    cancelled = events[dropped["id"] + "@trainops"]
    assert str(cancelled["STATUS"]) == "CANCELLED"
    assert "Đã hủy: Phòng máy bảo trì" in str(cancelled["DESCRIPTION"])
    # Only the feeds take a token in the URL.
    assert anonymous.get("/sessions/{}?token={}".format(kept["id"], programme.operator.token)).status_code == 401


def test_a_partners_feed_holds_what_it_delivers_or_hosts_and_is_its_own(programme, operator, anonymous):
    session = programme.scheduled()
    other = operator.post("/partners", {"code": "VNU", "name": "Đại học Quốc gia TP.HCM", "kind": "university",
                                        "contact_email": "hoptac@vnuhcm.edu.vn"}).json()
    vnu = operator.as_(other["api_key"])
    for partner_id, client in ((programme.siu_id, programme.siu), (programme.buh_id, programme.buh)):
        calendar_url = client.get("/partners/" + partner_id).json()["calendar_url"]
        assert set(by_uid(parse(requests.get(calendar_url, timeout=10)))) == {session["id"] + "@trainops"}
        # With a header instead, as before: the partner itself, never another.
        assert set(by_uid(parse(client.get("/partners/{}/calendar.ics".format(partner_id))))) == {
            session["id"] + "@trainops"}
    assert vnu.get("/partners/{}/calendar.ics".format(programme.siu_id)).status_code == 403
    assert parse(requests.get(vnu.get("/partners/" + other["id"]).json()["calendar_url"], timeout=10)).events == []


def test_the_programme_calendar_filters_by_month_unit_partner_and_venue_and_pages(programme, operator):
    next_month = (day(0).replace(day=1) + timedelta(days=32)).replace(day=1)
    month_after = (next_month + timedelta(days=32)).replace(day=1)
    offset = (next_month - day(0)).days
    # 06:00 on the 1st in Ho Chi Minh City is still the month before in UTC: the local month counts.
    first = programme.scheduled(starts_at=at(offset, "06:00"), ends_at=at(offset, "07:00"), eligible_units=["Q1"])
    open_to_all = programme.scheduled(starts_at=at(offset + 1, "08:00"), ends_at=at(offset + 1, "12:00"),
                                      eligible_units=[])
    lab = programme.scheduled(room=LAB, capacity=40, trainer="B", starts_at=at(offset + 2, "08:00"),
                              ends_at=at(offset + 2, "12:00"), eligible_units=["Q3"])
    later = programme.scheduled(starts_at=at((month_after - day(0)).days, "08:00"),
                                ends_at=at((month_after - day(0)).days, "12:00"))

    def ids(query):
        response = operator.get("/sessions?" + query)
        assert response.status_code == 200, response.text
        return [s["id"] for s in response.json()["items"]]

    month = next_month.strftime("%Y-%m")
    assert ids("month=" + month) == [first["id"], open_to_all["id"], lab["id"]]
    assert ids("month={}&unit=Q1".format(month)) == [first["id"], open_to_all["id"]]
    assert ids("month={}&unit=Q3".format(month)) == [open_to_all["id"], lab["id"]]
    assert ids("month=" + month_after.strftime("%Y-%m")) == [later["id"]]
    # A session stored before sessions knew their months is found once the migration has run.
    from services.scheduling import store as scheduling_store
    scheduling_db = programme.db("scheduling")
    scheduling_db.sessions.update_one({"_id": first["id"]}, {"$unset": {"months": "", "calendar_keys": ""}})
    assert ids("month=" + month) == [open_to_all["id"], lab["id"]]
    assert ids("month={}&unit=Q1".format(month)) == [open_to_all["id"]]
    for migration in scheduling_store.MIGRATIONS:
        migration.apply(scheduling_db)
    assert ids("month=" + month) == [first["id"], open_to_all["id"], lab["id"]]
    assert ids("month={}&unit=Q1".format(month)) == [first["id"], open_to_all["id"]]
    assert ids("venue_id={}&partner_id={}".format(programme.venue_id, programme.siu_id)) == [
        first["id"], open_to_all["id"], lab["id"], later["id"]]
    assert ids("partner_id=partner-0") == []

    seen, cursor = [], ""
    while True:
        page = operator.get("/sessions?limit=3" + ("&cursor=" + cursor if cursor else "")).json()
        seen += [s["id"] for s in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [first["id"], open_to_all["id"], lab["id"], later["id"]]

    # A partner sees the sessions it delivers or hosts, and no one else's.
    vnu = operator.post("/partners", {"code": "VNU", "name": "Đại học Quốc gia TP.HCM", "kind": "university",
                                      "contact_email": "hoptac@vnuhcm.edu.vn"}).json()
    assert operator.as_(vnu["api_key"]).get("/sessions").json() == {"items": [], "next_cursor": None}
    assert len(programme.buh.get("/sessions").json()["items"]) == 4


@pytest.mark.parametrize("query, field", [
    ("month=2025-13", "month"), ("month=March", "month"), ("limit=0", "limit"), ("limit=201", "limit"),
    ("cursor=bm9wZQ", "cursor"), ("status=maybe", "status"), ("colour=red", "colour"), ("token=x", "token")])
def test_bad_calendar_filters_are_named(operator, query, field):
    response = operator.get("/sessions?" + query)
    assert response.status_code == 422, response.text
    assert list(response.json()["error"]["fields"]) == [field]


def test_venues_are_listed_with_their_rooms_and_equipment(programme, anonymous):
    venues = programme.buh.get("/venues").json()
    assert [v["name"] for v in venues["items"]] == ["Trường Đại học Ngân hàng TP. Hồ Chí Minh"]
    venue = programme.siu.get("/venues/" + programme.venue_id).json()
    assert venue["host_partner_id"] == programme.buh_id
    assert {r["name"]: (r["capacity"], r["equipment"]) for r in venue["rooms"]} == {
        HALL: (160, ["máy chiếu", "âm thanh"]), LAB: (40, ["40 máy tính", "máy chiếu"])}
    assert programme.siu.get("/venues/venue-0").status_code == 404

    # Paged by name like every list: the Banking University, then SIU's campus.
    programme.operator.post("/venues", {
        "name": "Trường Đại học Quốc tế Sài Gòn", "address": "8C Tống Hữu Định",
        "host_partner_id": programme.siu_id, "rooms": [{"name": "P.201", "capacity": 60}]})
    first = programme.buh.get("/venues?limit=1").json()
    second = programme.buh.get("/venues?limit=1&cursor=" + first["next_cursor"]).json()
    assert [v["name"] for v in first["items"] + second["items"]] == [
        "Trường Đại học Ngân hàng TP. Hồ Chí Minh", "Trường Đại học Quốc tế Sài Gòn"]
    assert second["next_cursor"] is None
    assert programme.buh.get("/venues?cursor=bm9wZQ").status_code == 422
    assert anonymous.get("/venues").status_code == 401
    assert programme.siu.post("/venues", {"name": "X", "address": "Y", "host_partner_id": programme.siu_id,
                                          "rooms": [{"name": "A", "capacity": 1}]}).status_code == 403
