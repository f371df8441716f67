"""Scheduling through the public API: sessions of published offerings in rooms, never a room or a
trainer booked twice (not even by twenty callers at once), changes that publish events, and the
automatic cancellations when an offering is withdrawn or its agreement ends."""
from datetime import datetime, timedelta, timezone

import eventlet
import pytest

from backbone.outbox import emitted_events
from tests.helpers import HALL, LAB, assert_error, at, day, full_day, publish, wait_for

def events(db, type_):
    return [e["payload"] for e in emitted_events(db("scheduling"), {"type": type_})]


def handled(db, type_):
    """Wait until scheduling has handled an event of `type_` (its changes are committed with that
    record): what did not happen by then will not."""
    wait_for(lambda: db("scheduling").handled_events.find_one({"event_type": type_}))


# -- scheduling -------------------------------------------------------------------------------------

def test_a_full_day_is_stored_in_utc_shown_in_local_time_and_announced(programme, db):
    session = programme.scheduled(**full_day(10))
    assert session["starts_at"] == at(10, "08:00")
    assert [p["ends_at"] for p in session["parts"]] == [at(10, "11:30"), at(10, "17:00")]
    assert session["registration_closes_at"] == session["starts_at"]  # the cut-off defaults to the start
    assert session["status"] == "scheduled"

    stored = db("scheduling").sessions.find_one({"_id": session["id"]})
    assert stored["starts_at"].utcoffset() == timedelta(0)
    assert stored["starts_at"].hour == 1  # 08:00 in Ho Chi Minh City is 01:00 UTC
    [announced] = events(db, "session_scheduled")
    assert announced["session_id"] == session["id"] and len(announced["parts"]) == 2

    # An offset other than +07:00 is the same instant, shown back in local time.
    utc = programme.scheduled(room=LAB, trainer="ThS. Lê Thị B", starts_at=day(11).isoformat() + "T02:00:00Z",
                              ends_at=day(11).isoformat() + "T04:00:00Z", capacity=40)
    assert utc["starts_at"] == at(11, "09:00")


def test_touching_sessions_share_a_room_but_one_minute_of_overlap_is_a_room_conflict(programme):
    morning = programme.scheduled(starts_at=at(10, "08:00"), ends_at=at(10, "12:00"))
    # Touching on either side is fine: one ends as the other begins.
    programme.scheduled(trainer="B", starts_at=at(10, "12:00"), ends_at=at(10, "17:00"))
    programme.scheduled(trainer="C", starts_at=at(10, "06:00"), ends_at=at(10, "08:00"))

    for starts_at, ends_at in ((at(10, "11:59"), at(10, "12:00")), (at(10, "09:00"), at(10, "10:00"))):
        error = assert_error(programme.schedule(trainer="D", starts_at=starts_at, ends_at=ends_at),
                             409, "room_conflict")
        assert error["fields"]["other_session_id"] == [morning["id"]]
        assert morning["id"] in error["message"]


def test_a_trainer_cannot_be_in_two_venues_at_once(programme, operator):
    other_venue = operator.post("/venues", {
        "name": "Trường Đại học Quốc tế Sài Gòn", "address": "8C Tống Hữu Định, Thảo Điền, TP. Thủ Đức",
        "host_partner_id": programme.siu_id, "rooms": [{"name": "P.201", "capacity": 60}]}).json()
    first = programme.scheduled(trainer="TS. Nguyễn Văn A")
    clash = programme.session(venue_id=other_venue["id"], room="P.201", capacity=60,
                              trainer="ts.  nguyễn văn a", starts_at=at(10, "11:00"), ends_at=at(10, "13:00"))
    error = assert_error(operator.post("/sessions", clash), 409, "trainer_conflict")
    assert error["fields"]["other_session_id"] == [first["id"]]

    # Once the first session is cancelled, the trainer is free.
    cancelled = operator.post("/sessions/{}/cancel".format(first["id"]), {"reason": "Đổi giảng viên"})
    assert cancelled.status_code == 200
    assert operator.post("/sessions", clash).status_code == 201


def test_twenty_concurrent_bookings_of_one_room_and_slot_create_exactly_one(programme, db):
    programme.scheduled(room=LAB, capacity=40, trainer="warm-up")  # everything started, offering known
    slot = {"starts_at": at(20, "08:00"), "ends_at": at(20, "17:00")}
    pool = eventlet.GreenPool(20)
    callers = [programme.operator.as_(programme.operator.token) for _ in range(20)]  # a connection each
    responses = list(pool.imap(lambda n: programme.schedule(callers[n], trainer="Giảng viên {}".format(n), **slot),
                               range(20)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 19, [r.text for r in responses if r.status_code not in (201, 409)]
    winner = next(r.json() for r in responses if r.status_code == 201)
    losers = [r.json()["error"] for r in responses if r.status_code == 409]
    assert {e["code"] for e in losers} == {"room_conflict"}
    assert {e["fields"]["other_session_id"][0] for e in losers} == {winner["id"]}
    assert db("scheduling").sessions.count_documents({"room": HALL}) == 1
    assert [e["session_id"] for e in events(db, "session_scheduled") if e["room"] == HALL] == [winner["id"]]


def test_capacity_above_the_room_is_refused_and_nothing_is_stored(programme, db):
    error = assert_error(programme.schedule(room=LAB, capacity=41), 422, "capacity_exceeds_room")
    assert error["fields"] == {"capacity": ["At most 40."]}
    assert db("scheduling").sessions.count_documents({}) == 0
    assert events(db, "session_scheduled") == []

    session = programme.scheduled(room=LAB, capacity=30)
    path = "/sessions/{}/capacity".format(session["id"])
    assert_error(programme.operator.post(path, {"capacity": 41}), 422, "capacity_exceeds_room")
    assert db("scheduling").sessions.find_one({"_id": session["id"]})["capacity"] == 30
    assert events(db, "session_capacity_changed") == []

    changed = programme.operator.post(path, {"capacity": 35})
    assert changed.status_code == 200 and changed.json()["capacity"] == 35
    assert events(db, "session_capacity_changed") == [
        {"session_id": session["id"], "capacity": 35, "previous_capacity": 30, "revision": 2}]


BAD_SESSIONS = [
    ("a naive start", {"starts_at": "2026-12-05T08:00:00"}, "invalid_fields", ["starts_at"]),
    ("an end before the start", {"ends_at": at(10, "07:00")}, "invalid_fields", ["ends_at"]),
    ("a part outside the session", {"parts": [{"starts_at": at(10, "07:00"), "ends_at": at(10, "09:00")}]},
     "invalid_fields", ["parts"]),
    ("overlapping parts", {"parts": [{"starts_at": at(10, "08:00"), "ends_at": at(10, "10:00")},
                                     {"starts_at": at(10, "09:59"), "ends_at": at(10, "12:00")}]},
     "invalid_fields", ["parts"]),
    ("a cut-off after the start", {"registration_closes_at": at(10, "09:00")}, "invalid_fields",
     ["registration_closes_at"]),
    ("an unknown field", {"notes": "x"}, "invalid_fields", ["notes"]),
    ("zero seats", {"capacity": 0}, "invalid_fields", ["capacity"]),
    ("an unknown room", {"room": "Phòng 999"}, "unknown_room", ["room"]),
    ("an unknown offering", {"offering_id": "offering-0"}, "offering_not_published", ["offering_id"]),
    ("an audience the offering is not for", {"audience_groups": ["leader"]}, "audience_not_offered",
     ["audience_groups"]),
    ("a day outside the offering's dates", {"starts_at": at(400, "08:00"), "ends_at": at(400, "12:00")},
     "outside_offering_dates", ["starts_at"]),
]


@pytest.mark.parametrize("body, code, fields", [case[1:] for case in BAD_SESSIONS],
                         ids=[case[0] for case in BAD_SESSIONS])
def test_bad_session_input_is_refused_with_the_field_named_and_nothing_stored(programme, db, body, code, fields):
    error = assert_error(programme.schedule(**body), 422, code)
    assert sorted(error["fields"]) == fields
    assert db("scheduling").sessions.count_documents({}) == 0
    assert not emitted_events(db("scheduling"))


def test_a_partner_schedules_its_own_offering_ahead_and_only_the_operator_the_past(programme, operator):
    assert programme.schedule(client=programme.siu).status_code == 201
    assert_error(programme.schedule(client=programme.buh, trainer="B"), 403, "forbidden")
    assert_error(programme.schedule(client=programme.siu, trainer="C", starts_at=at(-30, "08:00"),
                                    ends_at=at(-30, "12:00")), 422, "in_the_past")
    # Laying out the 2025 calendar after the fact is the operator's.
    past = programme.scheduled(trainer="C", starts_at=at(-30, "08:00"), ends_at=at(-30, "12:00"))
    assert_error(programme.siu.post("/sessions/{}/cancel".format(past["id"]), {"reason": "x"}), 422, "in_the_past")


# -- changes ----------------------------------------------------------------------------------------

def test_rescheduling_runs_the_same_checks_and_moves_the_lunch_break_with_the_day(programme, db):
    session = programme.scheduled(**full_day(10))
    taken = programme.scheduled(trainer="B", **full_day(12))
    path = "/sessions/{}/reschedule".format(session["id"])

    error = assert_error(programme.siu.post(path, {"starts_at": at(12, "13:00"), "ends_at": at(12, "17:00"),
                                                   "parts": []}), 409, "room_conflict")
    assert error["fields"]["other_session_id"] == [taken["id"]]
    assert_error(programme.siu.post(path, {"starts_at": at(11, "08:00"), "ends_at": at(11, "12:00")}),
                 422, "invalid_fields")  # the afternoon part would fall outside the new times

    moved = programme.siu.post(path, {"starts_at": at(11, "08:00"), "ends_at": at(11, "17:00"), "room": LAB})
    assert moved.status_code == 422 and moved.json()["error"]["code"] == "capacity_exceeds_room"
    moved = programme.siu.post(path, {"starts_at": at(11, "08:00"), "ends_at": at(11, "17:00")})
    assert moved.status_code == 200, moved.text
    moved = moved.json()
    assert [(p["starts_at"], p["ends_at"]) for p in moved["parts"]] == [
        (at(11, "08:00"), at(11, "11:30")), (at(11, "13:30"), at(11, "17:00"))]
    assert moved["registration_closes_at"] == at(11, "08:00")
    [announced] = events(db, "session_rescheduled")
    assert announced["previous_starts_at"] == datetime.fromisoformat(at(10, "08:00")).astimezone(
        timezone.utc).isoformat()
    assert announced["starts_at"] == datetime.fromisoformat(at(11, "08:00")).astimezone(timezone.utc).isoformat()

    # The old day is free again; a move to where the session already is publishes nothing.
    programme.scheduled(trainer="C", **full_day(10))
    assert programme.siu.post(path, {"starts_at": at(11, "08:00"), "ends_at": at(11, "17:00")}).status_code == 200
    assert len(events(db, "session_rescheduled")) == 1


def test_a_cancelled_session_frees_its_room_and_cannot_be_changed(programme, db):
    session = programme.scheduled()
    cancel = "/sessions/{}/cancel".format(session["id"])
    assert_error(programme.operator.post(cancel, {}), 422, "invalid_fields")  # a reason is required
    cancelled = programme.siu.post(cancel, {"reason": "Giảng viên ốm"})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["cancel_reason"] == "Giảng viên ốm"
    assert programme.siu.post(cancel, {"reason": "again"}).json()["cancel_reason"] == "Giảng viên ốm"
    assert events(db, "session_cancelled") == [{
        "session_id": session["id"], "offering_id": programme.offering_id, "partner_id": programme.siu_id,
        "starts_at": datetime.fromisoformat(session["starts_at"]).astimezone(timezone.utc).isoformat(),
        "reason": "Giảng viên ốm", "cause": "cancelled"}]

    programme.scheduled(trainer="B")  # the same room and slot
    assert_error(programme.operator.post("/sessions/{}/reschedule".format(session["id"]), {
        "starts_at": at(14, "08:00"), "ends_at": at(14, "12:00")}), 422, "session_cancelled")
    assert_error(programme.operator.post("/sessions/{}/capacity".format(session["id"]), {"capacity": 10}),
                 422, "session_cancelled")
    assert_error(programme.operator.post("/sessions/session-0/cancel", {"reason": "x"}), 404, "not_found")


# -- what partners tell us --------------------------------------------------------------------------

def test_withdrawing_an_offering_cancels_its_future_sessions_but_not_past_ones(programme, app_config, db):
    past = programme.scheduled(starts_at=at(-30, "08:00"), ends_at=at(-30, "12:00"))
    future = [programme.scheduled(starts_at=at(n, "08:00"), ends_at=at(n, "12:00")) for n in (5, 6)]

    publish(app_config, "offering_withdrawn", {
        "offering_id": programme.offering_id, "partner_id": programme.siu_id, "reason": "Đổi chương trình"})

    handled(db, "offering_withdrawn")
    assert db("scheduling").sessions.count_documents({"status": "cancelled"}) == 2
    for session in future:
        shown = programme.operator.get("/sessions/" + session["id"]).json()
        assert shown["status"] == "cancelled"
        assert shown["cancel_reason"] == "Offering withdrawn: Đổi chương trình"
    assert programme.operator.get("/sessions/" + past["id"]).json()["status"] == "scheduled"
    assert {e["session_id"] for e in events(db, "session_cancelled")} == {s["id"] for s in future}
    assert {e["cause"] for e in events(db, "session_cancelled")} == {"offering_withdrawn"}
    assert_error(programme.schedule(starts_at=at(7, "08:00"), ends_at=at(7, "12:00")), 422,
                 "offering_not_published")


def test_an_expired_agreement_cancels_the_future_sessions_of_its_offerings(programme, app_config, db):
    past = programme.scheduled(starts_at=at(-30, "08:00"), ends_at=at(-30, "12:00"))
    future = programme.scheduled(starts_at=at(5, "08:00"), ends_at=at(5, "12:00"))

    publish(app_config, "agreement_expired", {
        "agreement_id": programme.agreement_id, "partner_id": programme.siu_id, "title": "Thỏa thuận",
        "valid_from": day(-400).isoformat(), "valid_until": day(-1).isoformat()})

    handled(db, "agreement_expired")
    assert programme.operator.get("/sessions/" + future["id"]).json()["status"] == "cancelled"
    assert programme.operator.get("/sessions/" + future["id"]).json()["cancel_reason"] == "Agreement expired."
    assert programme.operator.get("/sessions/" + past["id"]).json()["status"] == "scheduled"
    assert_error(programme.schedule(starts_at=at(7, "08:00"), ends_at=at(7, "12:00")), 422, "no_active_agreement")


def test_a_termination_dated_ahead_keeps_the_sessions_before_it(programme, app_config, db):
    before = programme.scheduled(starts_at=at(5, "08:00"), ends_at=at(5, "12:00"))
    after = programme.scheduled(starts_at=at(20, "08:00"), ends_at=at(20, "12:00"))

    publish(app_config, "agreement_terminated", {
        "agreement_id": programme.agreement_id, "partner_id": programme.siu_id, "title": "Thỏa thuận",
        "valid_from": day(-400).isoformat(), "valid_until": day(400).isoformat(),
        "terminated_on": day(10).isoformat(), "reason": "Hai bên thống nhất"})

    handled(db, "agreement_terminated")
    assert programme.operator.get("/sessions/" + after["id"]).json()["status"] == "cancelled"
    assert programme.operator.get("/sessions/" + after["id"]).json()["cancel_reason"] == (
        "Agreement terminated: Hai bên thống nhất")
    assert programme.operator.get("/sessions/" + before["id"]).json()["status"] == "scheduled"
    assert programme.scheduled(trainer="B", starts_at=at(9, "08:00"), ends_at=at(9, "12:00"))
    assert_error(programme.schedule(trainer="B", starts_at=at(10, "08:00"), ends_at=at(10, "12:00")),
                 422, "no_active_agreement")


def test_a_partners_burst_of_offerings_and_withdrawals_taken_together_ends_as_if_handled_one_by_one(
        container_factory, app_config, db):
    """Scheduling's partner-event handlers group their transactions (backbone/grouped.py): a
    withdrawal in the same transaction as its offering's publication still wins, each event is
    handled once, and the burst takes fewer transactions than events."""
    from backbone import counters, topology
    from backbone.events import make_envelope
    from backbone.outbox import ConfirmedPublisher, event_message
    from services.scheduling.service import SchedulingService
    container_factory(SchedulingService).start()
    offerings = ["offering-burst-{:02d}".format(n) for n in range(12)]
    burst = [make_envelope("offering_published", {
        "offering_id": offering, "partner_id": "partner-burst", "title": "Kỹ năng số", "audience_groups": ["ward_commune"],
        "starts_from": day(1).isoformat(), "ends_by": day(60).isoformat(), "revision": 1}, "partners", "c-" + offering)
        for offering in offerings]
    burst += [make_envelope("offering_withdrawn", {"offering_id": offering, "partner_id": "partner-burst"},
                            "partners", "w-" + offering) for offering in offerings[::2]]
    sample = counters.REGISTRY.get_sample_value
    transactions = sample("trainops_event_group_size_count", {"service": "scheduling"}) or 0
    publisher = ConfirmedPublisher(app_config["AMQP_URI"])
    try:
        publisher.publish_batch([event_message(e, topology.exchange_name()) for e in burst])
    finally:
        publisher.close()

    handled_events = db("scheduling").handled_events
    wait_for(lambda: handled_events.count_documents({}) == 18)
    copies = {o["_id"]: o["status"] for o in db("scheduling").offerings.find()}
    assert copies == {o: "withdrawn" if n % 2 == 0 else "published" for n, o in enumerate(offerings)}
    assert {h["_id"]: h["correlation_id"] for h in handled_events.find()} == {
        e["event_id"]: e["correlation_id"] for e in burst}
    written = sample("trainops_event_group_size_count", {"service": "scheduling"}) - transactions
    assert written < 18, "18 events in {} transactions".format(written)
