"""Scheduling's rules on their own: who may read and change sessions, which offerings take which
sessions, rooms and trainers, agreements' ends, months in local time, and how a session is laid out
and moved. No servers: plain values in, outcome out."""
import unicodedata
from datetime import date, datetime, timedelta, timezone

import pytest

from backbone.auth import OPERATOR
from backbone.clock import LOCAL
from backbone.errors import DomainError
from services.scheduling import rules

SIU = {"role": "partner", "partner_id": "partner-siu"}
BUH = {"role": "partner", "partner_id": "partner-buh"}
NOW = datetime(2025, 3, 15, 3, 0, tzinfo=timezone.utc)  # 10:00 in Ho Chi Minh City


def local(y, m, d, hh=0, mm=0):
    """An instant written in Ho Chi Minh City time."""
    return datetime(y, m, d, hh, mm, tzinfo=LOCAL)


def refused(call, *args):
    """The DomainError `call(*args)` raises (the test fails if it raises none)."""
    with pytest.raises(DomainError) as caught:
        call(*args)
    return caught.value


# -- who asks -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("actor, status", [(OPERATOR, None), (SIU, None), (None, 401), ({}, 401)])
def test_any_operator_or_partner_token_reads_and_no_token_is_a_401(actor, status):
    if status is None:
        rules.require_reader(actor)
    else:
        assert refused(rules.require_reader, actor).status == status


@pytest.mark.parametrize("actor, seen", [(OPERATOR, None), (SIU, "partner-siu"), (BUH, "partner-buh")])
def test_the_operator_sees_every_session_and_a_partner_only_its_own(actor, seen):
    assert rules.whose_sessions(actor) == seen


def test_no_token_sees_no_session():
    assert refused(rules.whose_sessions, None).code == "unauthenticated"


@pytest.mark.parametrize("actor, moment, allowed", [
    (SIU, NOW + timedelta(minutes=1), True),
    (SIU, NOW, False),  # starting now is started
    (SIU, NOW - timedelta(days=30), False),
    (OPERATOR, NOW - timedelta(days=30), True),  # laying out the 2025 calendar after the fact
])
def test_partners_plan_ahead_and_only_the_operator_touches_what_has_started(actor, moment, allowed):
    if allowed:
        rules.require_future_unless_operator(actor, moment, NOW)
    else:
        error = refused(rules.require_future_unless_operator, actor, moment, NOW)
        assert (error.code, error.fields) == ("in_the_past", {"starts_at": ["In the past."]})


@pytest.mark.parametrize("status, refusal", [("scheduled", None), ("cancelled", "session_cancelled")])
def test_a_cancelled_session_stays_cancelled(status, refusal):
    session = {"status": status}
    if refusal:
        assert refused(rules.require_scheduled, session).code == refusal
    else:
        assert rules.require_scheduled(session) is session


SESSION_OF_SIU = {"partner_id": "partner-siu", "status": "scheduled", "starts_at": NOW + timedelta(days=3)}


@pytest.mark.parametrize("actor, changes, status, code", [
    (SIU, {}, None, None),
    (OPERATOR, {}, None, None),
    (BUH, {}, 403, "forbidden"),  # hosting the session is not delivering it
    (None, {}, 401, "unauthenticated"),
    (SIU, {"status": "cancelled"}, 422, "session_cancelled"),
    (OPERATOR, {"status": "cancelled"}, 422, "session_cancelled"),
    (SIU, {"starts_at": NOW - timedelta(hours=1)}, 422, "in_the_past"),
    (OPERATOR, {"starts_at": NOW - timedelta(hours=1)}, None, None),
])
def test_who_may_change_a_session_and_when(actor, changes, status, code):
    session = dict(SESSION_OF_SIU, **changes)
    if code is None:
        rules.require_changeable(actor, session, NOW)
    else:
        error = refused(rules.require_changeable, actor, session, NOW)
        assert (error.status, error.code) == (status, code)


# -- rooms and trainers --------------------------------------------------------------------------------

VENUE = {"_id": "venue-buh", "name": "Trường Đại học Ngân hàng", "address": "36 Tôn Thất Đạm, Quận 1",
         "host_partner_id": "partner-buh",
         "rooms": [{"name": "Hội trường lớn", "capacity": 160}, {"name": "Phòng máy 1", "capacity": 40}]}


def test_a_room_is_found_by_its_name_in_its_venue():
    assert rules.room_of(VENUE, "Phòng máy 1")["capacity"] == 40


@pytest.mark.parametrize("name", ["Phòng 999", "phòng máy 1", ""])
def test_a_room_the_venue_does_not_have_is_refused_naming_room(name):
    error = refused(rules.room_of, VENUE, name)
    assert (error.code, list(error.fields)) == ("unknown_room", ["room"])


@pytest.mark.parametrize("capacity, fits", [(1, True), (39, True), (40, True), (41, False), (500, False)])
def test_a_session_seats_at_most_what_its_room_seats(capacity, fits):
    lab = VENUE["rooms"][1]
    if fits:
        rules.require_room_seats(lab, capacity)
    else:
        error = refused(rules.require_room_seats, lab, capacity)
        assert (error.code, error.fields) == ("capacity_exceeds_room", {"capacity": ["At most 40."]})


def test_a_room_key_names_the_venue_and_the_room():
    assert rules.room_key("venue-1", "P.201") == "venue-1/P.201"
    assert rules.room_key("venue-1", "P.201") != rules.room_key("venue-2", "P.201")


COMPOSED = unicodedata.normalize("NFC", "TS. Nguyễn Văn A")
DECOMPOSED = unicodedata.normalize("NFD", "TS. Nguyễn Văn A")


@pytest.mark.parametrize("typed", [
    "TS. Nguyễn Văn A", "ts. nguyễn văn a", "TS.  Nguyễn   Văn A", "  TS. Nguyễn Văn A ", "TS.\tNguyễn Văn A",
    COMPOSED, DECOMPOSED, unicodedata.normalize("NFD", "ts. NGUYỄN văn a"),
])
def test_a_trainer_is_one_person_however_the_name_is_typed(typed):
    assert DECOMPOSED != COMPOSED  # the two encodings really differ
    assert rules.trainer_key(typed) == "ts. nguyễn văn a"


@pytest.mark.parametrize("other", ["TS. Nguyễn Văn B", "TS. Nguyen Van A", "TS. Nguyễn Vân A"])
def test_different_trainers_keep_different_keys_even_without_or_with_other_accents(other):
    assert rules.trainer_key(other) != rules.trainer_key("TS. Nguyễn Văn A")


@pytest.mark.parametrize("field", ["room", "trainer"])
def test_a_double_booking_is_a_409_naming_the_other_session_in_local_time(field):
    session = {"room": "Hội trường lớn", "trainer": "TS. Nguyễn Văn A"}
    other = {"_id": "session-1", "title": "AI cho văn phòng",
             "starts_at": datetime(2025, 3, 22, 1, 0, tzinfo=timezone.utc),
             "ends_at": datetime(2025, 3, 22, 10, 0, tzinfo=timezone.utc)}
    error = rules.double_booking(field, session, other)
    assert (error.status, error.code) == (409, field + "_conflict")
    assert error.fields["other_session_id"] == ["session-1"]
    assert error.fields[field] == ["Booked by session session-1 (AI cho văn phòng), 22/03/2025 08:00 to "
                                   "22/03/2025 17:00."]
    assert session[field] in error.message


# -- offerings and agreements ---------------------------------------------------------------------------

def test_an_offering_that_is_not_published_is_refused_naming_offering_id():
    error = rules.not_published()
    assert (error.status, error.code, list(error.fields)) == (422, "offering_not_published", ["offering_id"])


OFFERING = {"status": "published", "starts_from": "2025-03-10", "ends_by": "2025-03-31",
            "audience_groups": ["district", "ward_commune"], "covered_until": None}


def booking(starts_at, ends_at, audience_groups=("district",)):
    return {"starts_at": starts_at, "ends_at": ends_at, "audience_groups": list(audience_groups)}


@pytest.mark.parametrize("case, offering, session, code", [
    ("a morning inside the offering's dates", {}, booking(local(2025, 3, 22, 8), local(2025, 3, 22, 12)), None),
    ("from the first minute of its first day", {},
     booking(local(2025, 3, 10), local(2025, 3, 10, 4)), None),
    ("to the last minute of its last day", {},
     booking(local(2025, 3, 31, 20), local(2025, 4, 1)), None),
    ("an offering not published", {"status": "withdrawn"},
     booking(local(2025, 3, 22, 8), local(2025, 3, 22, 12)), "offering_not_published"),
    ("a minute before its first day", {},
     booking(local(2025, 3, 9, 23, 59), local(2025, 3, 10, 4)), "outside_offering_dates"),
    ("a minute after its last day", {},
     booking(local(2025, 3, 31, 20), local(2025, 4, 1, 0, 1)), "outside_offering_dates"),
    ("ending as its agreement ends", {"covered_until": local(2025, 3, 23).astimezone(timezone.utc)},
     booking(local(2025, 3, 22, 20), local(2025, 3, 23)), None),
    ("ending after its agreement ended", {"covered_until": local(2025, 3, 23).astimezone(timezone.utc)},
     booking(local(2025, 3, 22, 20), local(2025, 3, 23, 0, 1)), "no_active_agreement"),
    ("for an audience it is not for", {},
     booking(local(2025, 3, 22, 8), local(2025, 3, 22, 12), ("district", "leader")), "audience_not_offered"),
])
def test_an_offering_takes_sessions_within_its_dates_its_agreement_and_its_audiences(case, offering, session,
                                                                                      code):
    refusal = rules.offering_refusal(dict(OFFERING, **offering), session)
    assert (refusal.code if refusal else None) == code, case


def test_an_offering_never_heard_of_takes_no_session():
    refusal = rules.offering_refusal(None, booking(local(2025, 3, 22, 8), local(2025, 3, 22, 12)))
    assert refusal.code == "offering_not_published"


def test_the_agreements_end_is_shown_in_local_time():
    refusal = rules.offering_refusal(
        dict(OFFERING, covered_until=local(2025, 3, 23).astimezone(timezone.utc)),
        booking(local(2025, 3, 23, 8), local(2025, 3, 23, 12)))
    assert refusal.message == "The agreement covering this offering ended at 23/03/2025 00:00."


@pytest.mark.parametrize("status, final", [("withdrawn", True), ("published", False), (None, False)])
def test_a_withdrawal_is_final(status, final):
    assert rules.withdrawal_is_final(status) is final


@pytest.mark.parametrize("valid_until, terminated_on, first_day_without", [
    (date(2025, 12, 31), None, date(2026, 1, 1)),  # valid through its last day
    (date(2026, 12, 31), date(2025, 6, 1), date(2025, 6, 1)),  # over from the start of its termination day
    (date(2025, 3, 31), date(2025, 6, 1), date(2025, 4, 1)),  # terminated after it expired: expiry counts
    (date(2025, 3, 31), date(2025, 4, 1), date(2025, 4, 1)),
])
def test_an_agreement_covers_through_its_last_day_or_until_its_termination_day(valid_until, terminated_on,
                                                                               first_day_without):
    ends_at = rules.agreement_ends_at(valid_until, terminated_on)
    assert ends_at == datetime.combine(first_day_without, datetime.min.time(), LOCAL)
    assert ends_at.utcoffset() == timedelta(0) and ends_at.hour == 17  # local midnight is 17:00 UTC


@pytest.mark.parametrize("ends_at, first", [
    (NOW + timedelta(days=10), NOW + timedelta(days=10)),  # ahead: the sessions from its end
    (NOW - timedelta(days=10), NOW),  # behind: only those still to come, the past stays
])
def test_an_ended_agreement_cancels_only_sessions_still_to_come(ends_at, first):
    assert rules.first_lost_start(ends_at, NOW) == first


# -- warnings before an agreement ends ----------------------------------------------------------------

LAST = date(2026, 12, 31)  # SIU's agreement: valid through 31/12/2026


@pytest.mark.parametrize("valid_until, terminated_on, last", [
    (LAST, None, LAST), (LAST, date(2026, 7, 1), date(2026, 6, 30)), (date(2026, 3, 31), date(2026, 7, 1), date(2026, 3, 31)),
], ids=["its valid_until", "the day before its termination", "its valid_until, terminated later"])
def test_an_agreements_last_day(valid_until, terminated_on, last):
    assert rules.last_day(valid_until, terminated_on) == last


def warnings_over(seen_on):
    """Run the rule on each local day of `seen_on` (the days the sweep ran), recording what it
    sends as the sweep does: {day: threshold}."""
    warned, sent = set(), {}
    for today in seen_on:
        due = rules.warning_due(LAST, today, warned)
        if due is not None:
            warned.add(due)
            sent[today] = due
    return sent


def test_every_day_swept_the_warnings_go_60_30_and_7_days_before_the_last_day_once_each():
    every_day = [LAST - timedelta(days=n) for n in range(90, -5, -1)]
    assert warnings_over(every_day) == {date(2026, 11, 1): 60, date(2026, 12, 1): 30, date(2026, 12, 24): 7}


@pytest.mark.parametrize("seen_on, sent", [
    # Down from 62 to 46 days before: the 60-day warning goes when it is back, then the others on their days.
    ([62, 46, 45, 30, 7], {46: 60, 30: 30, 7: 7}),
    # Down from 61 to 20 days before: only the most urgent due (30), never 60 and 30 at once.
    ([61, 20, 19, 7], {20: 30, 7: 7}),
    # Back 3 days before the end after missing all of them: the 7-day warning alone.
    ([80, 3, 2, 0], {3: 7}),
    # Back on the last day itself: still warned; the day after, nothing.
    ([90, 0], {0: 7}),
    ([90, -1], {}),
], ids=["60 caught up late", "60 and 30 due: only 30", "all missed: only 7", "the last day", "after the end"])
def test_a_day_missed_is_caught_up_with_the_most_urgent_warning_only(seen_on, sent):
    got = warnings_over([LAST - timedelta(days=n) for n in seen_on])
    assert {(LAST - day).days: threshold for day, threshold in got.items()} == sent


@pytest.mark.parametrize("days_left, warned, due", [
    (61, set(), None), (60, set(), 60), (60, {60}, None), (31, {60}, None), (30, {60}, 30), (29, set(), 30),
    (7, {60, 30}, 7), (7, {7}, None), (0, {60, 30}, 7), (-1, set(), None),
])
def test_the_warning_due_is_the_most_urgent_threshold_reached_and_not_yet_warned(days_left, warned, due):
    assert rules.warning_due(LAST, LAST - timedelta(days=days_left), warned) == due


def copy(agreement_id, valid_from, last_day, **more):
    """Scheduling's copy of an agreement (dates as ISO days)."""
    return dict({"_id": agreement_id, "partner_id": "partner-siu", "title": agreement_id, "valid_from": valid_from,
                 "last_day": last_day}, **more)


@pytest.mark.parametrize("others, renewal", [
    ([], None),
    ([copy("renewal", "2027-01-01", "2028-12-31")], "renewal"),
    ([copy("renewal", "2026-06-01", "2028-12-31")], "renewal"),
    ([copy("renewal", "2027-01-02", "2028-12-31")], None),
    ([copy("renewal", "2026-01-01", "2026-12-31")], None),
    ([copy("renewal", "2027-01-01", "2028-12-31", ended=True)], None),
    ([copy("short", "2027-01-01", "2027-06-30"), copy("long", "2026-12-01", "2028-12-31")], "long"),
], ids=["none", "from the next day", "overlapping", "a day's gap", "ending the same day", "ended", "the longest"])
def test_a_renewal_follows_an_agreement_without_a_gap_and_runs_past_it(others, renewal):
    agreement = copy("agreement-1", "2025-03-13", "2026-12-31")
    found = rules.renewal_of(agreement, [agreement] + others)
    assert (found or {}).get("_id") == renewal


@pytest.mark.parametrize("what, detail, reason", [
    ("Offering withdrawn", "Đổi chương trình", "Offering withdrawn: Đổi chương trình"),
    ("Offering withdrawn", None, "Offering withdrawn."),
    ("Agreement terminated", "", "Agreement terminated."),
])
def test_a_cancellation_reason_says_what_happened_and_why_when_told(what, detail, reason):
    assert rules.cancel_reason(what, detail) == reason


# -- times -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("month, begins, ends", [
    ("2025-03", local(2025, 3, 1), local(2025, 4, 1)),
    ("2025-11", local(2025, 11, 1), local(2025, 12, 1)),
    ("2025-12", local(2025, 12, 1), local(2026, 1, 1)),  # across the year's end
    ("2024-02", local(2024, 2, 1), local(2024, 3, 1)),
])
def test_a_month_is_a_local_month_from_its_first_midnight_to_the_next_months(month, begins, ends):
    span = rules.month_span(month)
    assert span == (begins, ends)
    assert all(moment.utcoffset() == timedelta(0) for moment in span)
    assert span[0].day in (28, 29, 30, 31) and span[0].hour == 17  # the evening before, in UTC


def test_an_instant_is_stored_in_utc_and_stays_the_same_instant():
    moment = rules.in_utc(local(2025, 3, 22, 8))
    assert (moment.utcoffset(), moment.hour) == (timedelta(0), 1)
    assert moment == local(2025, 3, 22, 8)


def test_a_sessions_parts_are_stored_in_utc():
    parts = rules.utc_parts([{"starts_at": local(2025, 3, 22, 8), "ends_at": local(2025, 3, 22, 11, 30)}])
    assert parts == [{"starts_at": datetime(2025, 3, 22, 1, tzinfo=timezone.utc),
                      "ends_at": datetime(2025, 3, 22, 4, 30, tzinfo=timezone.utc)}]
    assert parts[0]["starts_at"].tzinfo == timezone.utc


def part(start, end):
    return {"starts_at": local(2025, 3, 22, *start), "ends_at": local(2025, 3, 22, *end)}


@pytest.mark.parametrize("case, parts, problem", [
    ("no parts", [], None),
    ("a full day with a lunch break", [part((8,), (11, 30)), part((13, 30), (17,))], None),
    ("given out of order", [part((13, 30), (17,)), part((8,), (11, 30))], None),
    ("one ending as the next begins", [part((8,), (12,)), part((12,), (17,))], None),
    ("one starting before the session", [part((7, 59), (11,))], "Each part must lie within starts_at and ends_at."),
    ("one ending after the session", [part((13,), (17, 1))], "Each part must lie within starts_at and ends_at."),
    ("two overlapping by a minute", [part((8,), (12,)), part((11, 59), (17,))], "Parts must not overlap."),
])
def test_parts_lie_within_their_session_and_do_not_overlap(case, parts, problem):
    assert rules.parts_problem(local(2025, 3, 22, 8), local(2025, 3, 22, 17), parts) == problem, case


# -- sessions -----------------------------------------------------------------------------------------

OFFERING_DOC = {"_id": "offering-1", "partner_id": "partner-siu", "title": "AI trong công việc"}
FIELDS = {"trainer": "TS.  Nguyễn Văn A", "starts_at": local(2025, 3, 22, 8), "ends_at": local(2025, 3, 22, 17),
          "parts": [part((8,), (11, 30)), part((13, 30), (17,))], "capacity": 150, "eligible_units": ["Q1"],
          "audience_groups": ["district"]}


def test_a_new_session_carries_its_offering_and_venue_in_utc_with_the_cut_off_at_its_start():
    session = rules.new_session("session-1", FIELDS, OFFERING_DOC, VENUE, VENUE["rooms"][0], NOW)
    assert session["_id"] == session["id"] == "session-1"
    assert (session["partner_id"], session["host_partner_id"]) == ("partner-siu", "partner-buh")
    assert (session["title"], session["venue_name"], session["address"]) == (
        "AI trong công việc", "Trường Đại học Ngân hàng", "36 Tôn Thất Đạm, Quận 1")
    assert (session["room_key"], session["trainer_key"]) == ("venue-buh/Hội trường lớn", "ts. nguyễn văn a")
    assert session["trainer"] == "TS.  Nguyễn Văn A"  # shown as typed
    assert session["starts_at"] == session["registration_closes_at"] == datetime(2025, 3, 22, 1, tzinfo=timezone.utc)
    assert session["starts_at"].tzinfo == timezone.utc and session["parts"][1]["ends_at"].hour == 10
    assert (session["status"], session["sequence"], session["created_at"]) == ("scheduled", 0, NOW)


def test_a_new_session_keeps_a_cut_off_it_is_given():
    fields = dict(FIELDS, registration_closes_at=local(2025, 3, 20, 17))
    session = rules.new_session("session-1", fields, OFFERING_DOC, VENUE, VENUE["rooms"][0], NOW)
    assert session["registration_closes_at"] == datetime(2025, 3, 20, 10, tzinfo=timezone.utc)


SCHEDULED = rules.new_session("session-1", dict(FIELDS, registration_closes_at=local(2025, 3, 20, 17)),
                              OFFERING_DOC, VENUE, VENUE["rooms"][0], NOW)


def test_a_moved_session_takes_its_lunch_break_and_its_cut_off_lead_with_it():
    change = rules.moved(SCHEDULED, VENUE["rooms"][1],
                         {"starts_at": local(2025, 3, 24, 8), "ends_at": local(2025, 3, 24, 17)})
    assert (change["room"], change["room_key"]) == ("Phòng máy 1", "venue-buh/Phòng máy 1")
    assert [(p["starts_at"], p["ends_at"]) for p in change["parts"]] == [
        (local(2025, 3, 24, 8), local(2025, 3, 24, 11, 30)), (local(2025, 3, 24, 13, 30), local(2025, 3, 24, 17))]
    assert change["registration_closes_at"] == local(2025, 3, 22, 17)  # still two days and 15 hours ahead


def test_a_moved_session_takes_new_parts_and_a_new_cut_off_when_given():
    change = rules.moved(SCHEDULED, VENUE["rooms"][0], {
        "starts_at": local(2025, 3, 24, 8), "ends_at": local(2025, 3, 24, 12), "parts": [],
        "registration_closes_at": local(2025, 3, 24, 7)})
    assert change["parts"] == [] and change["registration_closes_at"] == local(2025, 3, 24, 7)
    assert change["starts_at"].tzinfo == timezone.utc


def test_parts_that_no_longer_fit_the_moved_session_are_refused_naming_parts():
    error = refused(rules.moved, SCHEDULED, VENUE["rooms"][0],
                    {"starts_at": local(2025, 3, 24, 8), "ends_at": local(2025, 3, 24, 12)})
    assert (error.code, list(error.fields)) == ("invalid_fields", ["parts"])
    assert "Each part must lie within starts_at and ends_at." in error.fields["parts"][0]


@pytest.mark.parametrize("fields, changes", [
    ({"starts_at": local(2025, 3, 22, 8), "ends_at": local(2025, 3, 22, 17)}, False),  # where it already is
    ({"starts_at": local(2025, 3, 22, 8), "ends_at": local(2025, 3, 22, 17, 30)}, True),
    ({"starts_at": local(2025, 3, 22, 8), "ends_at": local(2025, 3, 22, 17), "parts": []}, True),
])
def test_a_move_to_where_the_session_already_is_changes_nothing(fields, changes):
    change = rules.moved(SCHEDULED, VENUE["rooms"][0], fields)
    assert rules.changes_anything(SCHEDULED, change) is changes


def test_another_room_is_a_change():
    change = rules.moved(SCHEDULED, VENUE["rooms"][1],
                         {"starts_at": local(2025, 3, 22, 8), "ends_at": local(2025, 3, 22, 17)})
    assert rules.changes_anything(SCHEDULED, change)


# -- calendar feeds -------------------------------------------------------------------------------------

SECRET = "k" * 32


def test_a_feed_token_is_its_kind_target_and_generation_signed_and_opens_only_that():
    token = rules.feed_token(SECRET, "venue", "venue-1", 0)
    assert token.startswith("feed_") and len(token) == len("feed_") + 32
    assert rules.feed_token(SECRET, "venue", "venue-1", 0) == token  # derived, never stored
    others = {rules.feed_token(SECRET, "session", "venue-1", 0), rules.feed_token(SECRET, "venue", "venue-2", 0),
              rules.feed_token(SECRET, "venue", "venue-1", 1), rules.feed_token("j" * 32, "venue", "venue-1", 0),
              # The separator keeps ("venue", "1\0x") from meeting ("venue\01", "x").
              rules.feed_token(SECRET, "partner", "venue-1", 0)}
    assert token not in others and len(others) == 5
    assert rules.feed_token_opens(SECRET, "venue", "venue-1", 0, token)
    for kind, target, generation in (("session", "venue-1", 0), ("venue", "venue-2", 0), ("venue", "venue-1", 1)):
        assert not rules.feed_token_opens(SECRET, kind, target, generation, token)


@pytest.mark.parametrize("token", [None, "", "feed_", "tok_abc", "feed_ảnh-giả", "x" * 1000])
def test_nothing_else_opens_a_feed_and_nothing_raises(token):
    assert rules.feed_token_opens(SECRET, "venue", "venue-1", 0, token) is False


def test_a_feed_url_is_absolute_with_the_id_quoted_and_the_token_in_the_query():
    url = rules.feed_url("https://daotao-ai.example.gov.vn/", "session", "session-1", "feed_AbC-_9")
    assert url == "https://daotao-ai.example.gov.vn/sessions/session-1/calendar.ics?token=feed_AbC-_9"
    assert rules.feed_url("http://x", "venue", "a/b?c", "feed_1") == "http://x/venues/a%2Fb%3Fc/calendar.ics?token=feed_1"


HOSTED = {"id": "venue-1", "host_partner_id": "partner-buh"}
DELIVERED = {"id": "session-1", "partner_id": "partner-siu", "host_partner_id": "partner-buh"}


@pytest.mark.parametrize("actor, kind, target, holds", [
    (OPERATOR, "venue", HOSTED, True), (OPERATOR, "session", DELIVERED, True),
    (OPERATOR, "partner", {"id": "partner-x"}, True),
    (SIU, "partner", {"id": "partner-siu"}, True), (SIU, "partner", {"id": "partner-buh"}, False),
    (BUH, "venue", HOSTED, True), (SIU, "venue", HOSTED, False),            # the venue's feed: its host's
    (SIU, "session", DELIVERED, True), (BUH, "session", DELIVERED, True),     # who delivers it, who hosts it
    ({"role": "partner", "partner_id": "partner-vnu"}, "session", DELIVERED, False),
    (None, "venue", HOSTED, False), ({}, "partner", {"id": "partner-siu"}, False),
])
def test_the_operator_and_the_partners_a_feed_is_about_hold_it(actor, kind, target, holds):
    assert rules.holds_feed(actor, kind, target) is holds
    if holds:
        rules.require_feed_holder(actor, kind, target)
    else:
        assert refused(rules.require_feed_holder, actor, kind, target).status == (401 if not actor else 403)


def test_the_months_a_session_takes_place_in_are_local_months():
    from services.scheduling import rules as scheduling_rules
    at = lambda *a: datetime(*a, tzinfo=LOCAL)  # noqa: E731
    assert scheduling_rules.months_of(at(2025, 3, 31, 23, 0), at(2025, 4, 1, 1, 0)) == ["2025-03", "2025-04"]
    # 2025-04-30 20:00 UTC is already May in Ho Chi Minh City.
    assert scheduling_rules.months_of(datetime(2025, 4, 30, 20, tzinfo=timezone.utc),
                                      datetime(2025, 4, 30, 22, tzinfo=timezone.utc)) == ["2025-05"]
    assert scheduling_rules.months_of(at(2025, 12, 31, 8), at(2026, 2, 1, 0)) == ["2025-12", "2026-01"]


def test_a_session_is_found_in_each_month_it_takes_place_for_each_unit_it_is_open_to():
    from services.scheduling import rules as scheduling_rules
    assert scheduling_rules.calendar_keys(["2025-03", "2025-04"], []) == ["2025-03|*", "2025-04|*"]
    assert scheduling_rules.calendar_keys(["2025-03"], ["Q1", "Q3"]) == ["2025-03|Q1", "2025-03|Q3"]
    assert scheduling_rules.calendar_keys(["2025-03"], None) == ["2025-03|*"]
    assert scheduling_rules.open_to_key("2025-03") == "2025-03|*"
    assert scheduling_rules.open_to_key("2025-03", "Q1") == "2025-03|Q1"
