"""Sessions as iCalendar (RFC 5545) for calendar apps: one session, or a feed of a venue's or a
partner's sessions that an app subscribes to and refreshes.

Times are written in Asia/Ho_Chi_Minh with its VTIMEZONE, so an app anywhere shows a class that starts
at 08:00 in the city at 08:00 +07:00. Each session is one VEVENT whose UID never changes, so a
rescheduled or cancelled session updates the entry already in the app (SEQUENCE counts the changes)
instead of adding a second one; a cancelled session stays in the feed as STATUS:CANCELLED."""
from datetime import timedelta

from icalendar import STATUS, Calendar, Event, vDuration

from backbone.clock import LOCAL, shown
PRODID = "-//Trung tam Chuyen doi so TP.HCM//trainops//VI"
# How often a subscribed app should fetch the feed again.
REFRESH = timedelta(hours=1)


def session_uid(session):
    return "{}@trainops".format(session["id"])


def calendar(uid, name, sessions):
    """The ICS text of `sessions` in one calendar named `name` (shown by the app)."""
    cal = Calendar.new(prodid=PRODID, uid=uid, name=name, method="PUBLISH", refresh_interval=REFRESH)
    cal["REFRESH-INTERVAL"].params["VALUE"] = "DURATION"  # RFC 7986 requires it; icalendar leaves it out
    cal.add("X-PUBLISHED-TTL", vDuration(REFRESH))  # what Outlook and Apple Calendar read instead
    cal.add("X-WR-TIMEZONE", LOCAL.key)
    for session in sessions:
        cal.add_component(session_event(session))
    cal.add_missing_timezones()
    return cal.to_ical().decode("utf-8")


def session_event(session):
    cancelled = session["status"] == "cancelled"
    return Event.new(
        uid=session_uid(session),
        summary=session["title"],
        start=session["starts_at"].astimezone(LOCAL),
        end=session["ends_at"].astimezone(LOCAL),
        location=", ".join((session["room"], session["venue_name"], session["address"])),
        description=description(session),
        status=STATUS.CANCELLED if cancelled else STATUS.CONFIRMED,
        sequence=session["sequence"],
        # The time of the last change, not of the download: an unchanged feed is the same bytes.
        stamp=session["updated_at"],
        created=session["created_at"],
        last_modified=session["updated_at"],
    )


def description(session):
    """What an official needs besides time and place, in Vietnamese like every notice they get."""
    lines = ["Giảng viên: {}".format(session["trainer"])]
    if session["parts"]:
        one_day = len({shown(part["starts_at"], "%x") for part in session["parts"]}) == 1
        start = "%H:%M" if one_day else "%d/%m %H:%M"
        lines.append("Các buổi: {}".format(", ".join(
            "{}–{}".format(shown(part["starts_at"], start), shown(part["ends_at"], "%H:%M"))
            for part in session["parts"])))
    lines.append("Hạn đăng ký: {}".format(shown(session["registration_closes_at"])))
    if session["status"] == "cancelled":
        lines.append("Đã hủy: {}".format(session["cancel_reason"]))
    return "\n".join(lines)
