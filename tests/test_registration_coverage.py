"""Coverage for leaders, counted by hand on a small programme and compared (pure rules)."""
from datetime import date, datetime, timezone

from services.registration import coverage


def at(day, hour=12):
    return datetime(2026, 3, day, hour, tzinfo=timezone.utc)


END_OF_MARCH_20 = at(20, 23)

# Two wards and a department; officials of two groups.
UNITS = {"SG": {"name": "Phường Sài Gòn", "headcount": {"ward_commune": 10}},
         "BT": {"name": "Phường Bến Thành"},
         "SO-KHCN": {"name": "Sở Khoa học và Công nghệ"}}
OFFICIALS = [
    {"_id": "a", "unit_code": "SG", "audience_group": "ward_commune"},
    {"_id": "b", "unit_code": "SG", "audience_group": "ward_commune"},
    {"_id": "c", "unit_code": "BT", "audience_group": "ward_commune"},
    {"_id": "d", "unit_code": "BT", "audience_group": "ward_commune"},
    {"_id": "e", "unit_code": "SO-KHCN", "audience_group": "department"},
    {"_id": "f", "unit_code": "SO-KHCN", "audience_group": "leader"},
]


def registration(official, status="confirmed", created=1, cancelled=None, checked_in=None, completed=None,
                 session="s-siu"):
    return {"official_id": official, "session_id": session, "status": status, "created_at": at(created),
            "cancelled_at": at(cancelled) if cancelled else None,
            "first_checkin_at": at(checked_in) if checked_in else None,
            "completed_at": at(completed) if completed else None}


REGISTRATIONS = [
    registration("a", "completed", 1, checked_in=5, completed=5),
    registration("a", "completed", 2, checked_in=10, completed=10, session="s-hub"),  # a second course: once
    registration("b", "confirmed", 3, checked_in=25),          # attended after the day asked: not yet
    registration("c", "cancelled", 3, cancelled=4),             # cancelled before: not registered
    registration("d", "cancelled", 3, cancelled=25),            # cancelled after: still registered then
    registration("e", "completed", 6, checked_in=7, completed=21),  # completed after: attended only
    registration("f", "completed", 6, checked_in=7, completed=8, session="s-hub"),
]
TARGETS = {"ward_commune": 0.5, "department": 0.8, "leader": 1.0}


def by(grouping, months=()):
    return coverage.report(grouping, OFFICIALS, REGISTRATIONS, UNITS, TARGETS, END_OF_MARCH_20,
                           sessions={"s-siu": "partner-siu", "s-hub": "partner-hub"}, months=months)


def test_coverage_by_unit_counts_each_official_once_against_roster_or_declared_headcount():
    rows = {r["key"]: r for r in by("unit")["items"]}
    # Sài Gòn declares 10 commune officials (2 imported): trained a; registered a, b; attended a.
    assert rows["SG"] == {"key": "SG", "name": "Phường Sài Gòn", "staff": 10, "trained": 1, "coverage": 0.1,
                          "registered": 2, "attended": 1, "target": 0.5, "gap": 4}
    # Bến Thành's roster of 2: d was still registered on the 20th, c was not.
    assert rows["BT"] == {"key": "BT", "name": "Phường Bến Thành", "staff": 2, "trained": 0, "coverage": 0.0,
                          "registered": 1, "attended": 0, "target": 0.5, "gap": 1}
    # The department: e (target 0.8) attended, f (a leader, target 1) trained: 0.8 + 1 = 1.8 of 2.
    assert rows["SO-KHCN"] == {"key": "SO-KHCN", "name": "Sở Khoa học và Công nghệ", "staff": 2, "trained": 1,
                               "coverage": 0.5, "registered": 2, "attended": 2, "target": 0.9, "gap": 1}


def test_totals_and_groups_add_up():
    found = by("audience_group")
    rows = {r["key"]: r for r in found["items"]}
    assert (rows["ward_commune"]["staff"], rows["ward_commune"]["trained"], rows["ward_commune"]["gap"]) == (12, 1, 5)
    assert (rows["leader"]["coverage"], rows["leader"]["gap"]) == (1.0, 0)
    totals = found["totals"]
    assert (totals["staff"], totals["trained"], totals["registered"], totals["attended"]) == (14, 2, 5, 3)
    # 12 × 0.5 + 1 × 0.8 + 1 × 1.0 = 7.8 officials to train: 6 more after 2.
    assert (totals["target"], totals["gap"]) == (round(7.8 / 14, 4), 6)


def test_by_partner_counts_the_officials_each_partner_trained():
    rows = {r["key"]: r for r in by("partner")["items"]}
    assert (rows["partner-siu"]["trained"], rows["partner-siu"]["registered"]) == (1, 4)
    assert (rows["partner-hub"]["trained"], rows["partner-hub"]["attended"]) == (2, 2)


def test_by_month_is_the_progress_month_after_month():
    months = coverage.month_ends(date(2026, 2, 1), date(2026, 3, 20), lambda d: datetime(
        d.year, d.month, d.day, 23, tzinfo=timezone.utc))
    assert [label for label, _ in months] == ["2026-02", "2026-03"]
    rows = by("month", months)["items"]
    assert [(r["key"], r["trained"]) for r in rows] == [("2026-02", 0), ("2026-03", 2)]


def test_a_month_series_crosses_the_year():
    months = coverage.month_ends(date(2025, 11, 15), date(2026, 1, 3), lambda d: d)
    assert months == [("2025-11", date(2025, 11, 30)), ("2025-12", date(2025, 12, 31)), ("2026-01", date(2026, 1, 3))]


def counters_of(officials, registrations):
    """The read model's counters as the store sums them: every official's contribution added up."""
    from collections import defaultdict

    def local_day(instant):  # UTC stands in for local time: the same for both sides compared
        return instant.date()
    buckets = {}
    for official in officials:
        mine = [r for r in registrations if r["official_id"] == official["_id"]]
        for (unit, group, month, day), counts in coverage.contribution(official, mine, local_day).items():
            bucket = buckets.setdefault((unit, group, month), {"unit": unit, "group": group, "month": month,
                                                              "totals": [0, 0, 0], "days": defaultdict(lambda: [0, 0, 0])})
            for i in range(3):
                bucket["totals"][i] += counts[i]
                if day:
                    bucket["days"][day][i] += counts[i]
    return list(buckets.values())


def test_the_read_model_answers_what_a_recount_answers_by_unit_group_and_month_on_any_day():
    counters = counters_of(OFFICIALS, REGISTRATIONS)
    for day in (2, 4, 8, 20, 25, 31):
        day_end = at(day, 23)
        for grouping in ("unit", "audience_group"):
            recounted = coverage.report(grouping, OFFICIALS, REGISTRATIONS, UNITS, TARGETS, day_end)
            assert coverage.report_from_counters(grouping, counters, UNITS, TARGETS, "2026-03",
                                                 "{:02d}".format(day)) == recounted, (grouping, day)
    months = coverage.month_ends(date(2026, 1, 1), date(2026, 3, 20), lambda d: datetime(
        d.year, d.month, d.day, 23, tzinfo=timezone.utc))
    assert coverage.report_from_counters("month", counters, UNITS, TARGETS, "2026-03", "20", months) == by(
        "month", months)


def test_an_official_share_of_the_read_model_follows_cancellations_and_re_registrations():
    official = {"_id": "x", "unit_code": "SG", "audience_group": "ward_commune"}
    share = coverage.contribution(official, [registration("x", "cancelled", 3, cancelled=4),
                                             registration("x", "confirmed", 4)], lambda i: i.date())
    # Registered on the 3rd; cancelled and registered again on the 4th: standing throughout.
    city = (coverage.CITY, coverage.CITY, "2026-03", "03")
    assert share == {("SG", "ward_commune", coverage.STAFF, ""): [1, 0, 0], ("SG", "ward_commune", "2026-03", "03"): [1, 0, 0],
                     ("SG", "ward_commune", coverage.TOTAL, ""): [1, 0, 0], city: [1, 0, 0]}
    moved = coverage.contribution(dict(official, unit_code="BT"), [registration("x", "cancelled", 3, cancelled=4)],
                                  lambda i: i.date())
    assert coverage.difference(share, moved) == {
        ("SG", "ward_commune", coverage.STAFF, ""): [-1, 0, 0], ("SG", "ward_commune", "2026-03", "03"): [-1, 0, 0],
        ("SG", "ward_commune", coverage.TOTAL, ""): [-1, 0, 0],
        ("BT", "ward_commune", coverage.STAFF, ""): [1, 0, 0], ("BT", "ward_commune", "2026-03", "03"): [1, 0, 0],
        ("BT", "ward_commune", "2026-03", "04"): [-1, 0, 0],  # BT's total: +1 and -1, nothing
        (coverage.CITY, coverage.CITY, "2026-03", "04"): [-1, 0, 0]}  # the city: the same 3rd, one less on the 4th
