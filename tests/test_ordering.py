"""Events that arrive out of order or twice: state-carrying events (a session's time and seats, an
offering) carry their aggregate's revision, and a consumer ignores one older than what it applied.
Reordered through the real broker: the producer's own events, published again after newer ones under
a new event id (what a retry that lost the race looks like) or under the same id (a redelivery)."""
from datetime import datetime

import pytest

from backbone import counters
from backbone.database import mongo_client
from backbone.events import is_newer
from backbone.outbox import emitted_events, envelope_of
from services.registration.store import newer_for
from tests.helpers import Client, Programme, at, emitted, publish, publish_to, settled, wait_for


# -- the rule ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("applied, revision, applies", [
    (None, 1, True),     # a copy from before revisions: the event applies, as before
    (3, None, True),     # an event from before revisions: applied as it arrives, as before
    (2, 3, True),        # newer
    (3, 3, False),       # the same version again (a redelivery with another id)
    (4, 2, False),       # older: a retry that lost the race
])
def test_only_a_newer_revision_changes_a_copy(applied, revision, applies):
    assert is_newer(applied, revision) is applies


def test_a_copy_keeps_a_revision_per_part_so_a_newer_resize_does_not_hide_an_older_move():
    copy = {"revisions": {"time": 1, "capacity": 3}}
    assert newer_for(copy, "time", 2) and not newer_for(copy, "capacity", 2)
    assert newer_for({}, "time", 1)


# -- through the broker ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def programme(module_system):
    client = mongo_client(module_system["MONGO_URI"])
    db = lambda service: client["{}_{}".format(module_system["DATABASE_PREFIX"], service)]  # noqa: E731
    yield Programme(Client(module_system["GATEWAY_URL"], module_system["OPERATOR_TOKEN"]), db)
    client.close()


def events_of(programme, type_, session_id):
    return [p for p in emitted(programme.db, "scheduling", type_) if p["session_id"] == session_id]


def republish(module_system, type_, payloads, producer="scheduling"):
    """Each payload again, under a new event id, in the order given (the caller waits for them to be
    settled)."""
    for payload in payloads:
        publish(module_system, type_, payload, producer=producer)


def test_an_older_capacity_retried_after_a_newer_one_promotes_nobody(programme, module_system):
    operator = programme.operator
    session = programme.known_session(capacity=5)
    # Counted from before the changes: the copy can show the newest one a moment before its delivery
    # is counted as settled, and a count taken in that moment would be one short.
    start = settled("registration", "session_capacity_changed")
    for capacity in (4, 2):
        assert operator.post("/sessions/{}/capacity".format(session["id"]), {"capacity": capacity}).status_code == 200
    copy = lambda: programme.db("registration").sessions.find_one({"_id": session["id"]})  # noqa: E731
    wait_for(lambda: copy()["capacity"] == 2 and settled("registration", "session_capacity_changed") == start + 2)
    assert copy()["revisions"]["capacity"] == 3
    statuses = [programme.registered(session, programme.official())["status"] for _ in range(3)]
    assert statuses == ["confirmed", "confirmed", "waitlisted"]

    older, newer = events_of(programme, "session_capacity_changed", session["id"])
    assert (older["revision"], newer["revision"]) == (2, 3)
    before = start + 2
    # The 4-seat change again, after the 2-seat one: applied, it would promote the waitlisted
    # official into a third seat of a room scheduling gives two.
    republish(module_system, "session_capacity_changed", [older])
    # ...and the 2-seat one redelivered as it was (the same event id): a repeat, skipped.
    [delivered] = [r for r in emitted_events(programme.db("scheduling"), {"type": "session_capacity_changed"})
                   if r["payload"]["session_id"] == session["id"] and r["payload"]["revision"] == 3]
    duplicates = counters.EVENTS_DUPLICATE.labels("registration", "session_capacity_changed")._value.get()
    publish_to(module_system, "registration", envelope_of(delivered))
    wait_for(lambda: settled("registration", "session_capacity_changed") == before + 2)
    assert counters.EVENTS_DUPLICATE.labels("registration", "session_capacity_changed")._value.get() == duplicates + 1

    assert copy()["capacity"] == 2 and copy()["seats_taken"] == 2 and copy()["waitlist_length"] == 1
    shown = operator.get("/sessions/{}".format(session["id"])).json()
    assert shown["capacity"] == 2 and shown["seats_taken"] == 2
    assert len(programme.outbox("registration_promoted")) == 0


def test_an_older_reschedule_after_a_newer_one_moves_nothing_and_tells_nobody(programme, module_system):
    operator = programme.operator
    session = programme.known_session(room="Phòng máy 1", trainer="ThS. Trần C", capacity=30,
                                      starts_at=at(12, "08:00"), ends_at=at(12, "12:00"))
    programme.registered(session, programme.official())
    path = "/sessions/{}/reschedule".format(session["id"])
    start = settled("registration", "session_rescheduled")
    for day in (13, 14):
        moved = operator.post(path, {"starts_at": at(day, "08:00"), "ends_at": at(day, "12:00")})
        assert moved.status_code == 200, moved.text
    copy = lambda: programme.db("registration").sessions.find_one({"_id": session["id"]})  # noqa: E731
    newest = operator.get("/sessions/{}".format(session["id"])).json()
    wait_for(lambda: copy()["revisions"]["time"] == 3 and settled("registration", "session_rescheduled") == start + 2)
    told = len([p for p in programme.outbox("registration_rescheduled") if p["session"]["id"] == session["id"]])
    assert told == 2

    to_13, to_14 = events_of(programme, "session_rescheduled", session["id"])
    before = start + 2
    republish(module_system, "session_rescheduled", [to_13, to_14])
    wait_for(lambda: settled("registration", "session_rescheduled") == before + 2)

    assert copy()["starts_at"] == programme.db("scheduling").sessions.find_one({"_id": session["id"]})["starts_at"]
    assert operator.get("/sessions/{}".format(session["id"])).json()["starts_at"] == newest["starts_at"]
    assert len([p for p in programme.outbox("registration_rescheduled") if p["session"]["id"] == session["id"]]) == told


def test_a_move_overtaken_by_a_later_resize_still_moves_the_copy(programme, module_system):
    """Revision 3 (seats) arrives before revision 2 (time): each part takes its newest."""
    session = programme.known_session(room="Phòng máy 1", trainer="ThS. Phạm D", capacity=30,
                                      starts_at=at(20, "08:00"), ends_at=at(20, "12:00"))
    [scheduled] = events_of(programme, "session_scheduled", session["id"])
    moved = dict(scheduled, starts_at=at(21, "08:00"), ends_at=at(21, "12:00"), revision=2,
                 previous_starts_at=scheduled["starts_at"], previous_ends_at=scheduled["ends_at"],
                 previous_room=scheduled["room"])
    resized = {"session_id": session["id"], "capacity": 25, "previous_capacity": 30, "revision": 3}
    before = (settled("registration", "session_capacity_changed"), settled("registration", "session_rescheduled"))
    republish(module_system, "session_capacity_changed", [resized])
    republish(module_system, "session_rescheduled", [moved])
    wait_for(lambda: (settled("registration", "session_capacity_changed"),
                      settled("registration", "session_rescheduled")) == (before[0] + 1, before[1] + 1))

    copy = programme.db("registration").sessions.find_one({"_id": session["id"]})
    assert copy["capacity"] == 25 and copy["revisions"] == {"time": 2, "capacity": 3}
    assert copy["starts_at"] == datetime.fromisoformat(at(21, "08:00"))


def test_a_redelivered_event_is_skipped_and_an_older_offering_version_changes_nothing(programme, module_system):
    operator = programme.operator
    path = "/offerings/{}".format(programme.offering_id)
    start = settled("scheduling", "offering_updated")
    for title in ("Ứng dụng AI (bản 2)", "Ứng dụng AI (bản 3)"):
        response = programme.siu.post(path + "/update", {"title": title})
        assert response.status_code == 200, response.text
    copy = lambda: programme.db("scheduling").offerings.find_one({"_id": programme.offering_id})  # noqa: E731
    wait_for(lambda: copy()["title"] == "Ứng dụng AI (bản 3)" and settled("scheduling", "offering_updated") == start + 2)
    updates = [p for p in emitted(programme.db, "partners", "offering_updated") if p["offering_id"] == programme.offering_id]
    second = next(p for p in updates if p["title"] == "Ứng dụng AI (bản 2)")
    assert (second["revision"], copy()["revision"]) == (2, 3)

    before = start + 2
    republish(module_system, "offering_updated", [second], producer="partners")
    wait_for(lambda: settled("scheduling", "offering_updated") == before + 1)
    assert copy()["title"] == "Ứng dụng AI (bản 3)" and copy()["revision"] == 3
    assert operator.get(path).json()["title"] == "Ứng dụng AI (bản 3)"
