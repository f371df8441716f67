"""Registration through the public API: eligibility, the cut-off, one registration per official,
seats that never over-book, waitlists that promote on cancellation and on more capacity, quotas per
unit, and what happens when scheduling moves, shrinks or cancels a session."""
from datetime import datetime

from backbone.outbox import emitted_events
from tests.helpers import wait_for
from tests.helpers import assert_error, at


def test_an_official_is_confirmed_once_and_a_second_registration_is_409(programme):
    session = programme.known_session()
    official = programme.official()
    registration = programme.registered(session, official)
    assert registration["status"] == "confirmed" and registration["qr_token"]
    assert "waitlist_position" not in registration

    assert_error(programme.register(session, official), 409, "already_registered")
    shown = programme.operator.get("/registrations/{}".format(registration["id"])).json()
    assert shown["status"] == "confirmed" and shown["qr_token"] == registration["qr_token"]
    assert programme.operator.get("/sessions/{}".format(session["id"])).json()["seats_taken"] == 1
    [confirmed] = programme.outbox("registration_confirmed")
    assert confirmed["official"]["phone"] == official["phone"] and confirmed["qr_token"] == registration["qr_token"]
    svg = programme.operator.get("/registrations/{}/qr.svg".format(registration["id"]))
    assert svg.status_code == 200 and svg.headers["Content-Type"].startswith("image/svg+xml") and "<svg" in svg.text


def test_only_invited_units_and_audiences_may_register_and_never_after_the_cut_off(programme):
    session = programme.known_session(eligible_units=["Q1"], audience_groups=["district"])
    assert_error(programme.register(session, programme.official(unit_code="Q4")), 422, "not_eligible")
    assert_error(programme.register(session, programme.official(audience_group="leader")), 422, "not_eligible")

    closed = programme.known_session(room="Phòng máy 1", trainer="ThS. Lê B", capacity=40,
                                     starts_at=at(3, "08:00"), ends_at=at(3, "12:00"),
                                     registration_closes_at=at(-1, "17:00"))
    official = programme.official()
    assert_error(programme.register(closed, official), 422, "registration_closed")
    # The operator may still record a registration of a class whose cut-off passed, explicitly.
    assert programme.register(closed, official, after_cutoff=True).json()["status"] == "confirmed"
    assert_error(programme.operator.post("/sessions/session-nope/registrations", {"official_id": official["id"]}),
                 404, "not_found")
    assert programme.db("registration").registrations.count_documents({}) == 1


def test_the_third_official_is_waitlisted_and_promoted_when_someone_cancels(programme):
    session = programme.known_session(capacity=2)
    first, second, third, fourth = (programme.official() for _ in range(4))
    a = programme.registered(session, first)
    programme.registered(session, second)
    c = programme.registered(session, third)
    d = programme.registered(session, fourth)
    assert (c["status"], c["waitlist_position"]) == ("waitlisted", 1)
    assert (d["status"], d["waitlist_position"]) == ("waitlisted", 2)

    cancelled = programme.operator.post("/registrations/{}/cancel".format(a["id"]), {"reason": "Bận công tác"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    promoted = programme.operator.get("/registrations/{}".format(c["id"])).json()
    assert promoted["status"] == "confirmed"
    assert programme.operator.get("/registrations/{}".format(d["id"])).json()["status"] == "waitlisted"
    seats = programme.operator.get("/sessions/{}".format(session["id"])).json()
    assert (seats["seats_taken"], seats["waitlist_length"]) == (2, 1)
    [event] = programme.outbox("registration_promoted")
    assert event["registration_id"] == c["id"] and event["qr_token"] == c["qr_token"]
    [gone] = programme.outbox("registration_cancelled")
    assert gone["cause"] == "official" and gone["reason"] == "Bận công tác"

    # Cancelling again changes nothing; a waitlisted official who cancels frees no seat.
    assert programme.operator.post("/registrations/{}/cancel".format(a["id"])).status_code == 200
    programme.operator.post("/registrations/{}/cancel".format(d["id"]))
    seats = programme.operator.get("/sessions/{}".format(session["id"])).json()
    assert (seats["seats_taken"], seats["waitlist_length"]) == (2, 0)
    listed = programme.operator.get("/sessions/{}/registrations?status=confirmed".format(session["id"])).json()
    assert {r["id"] for r in listed["items"]} == {c["id"], programme.db("registration").registrations.find_one(
        {"official_id": second["id"]})["_id"]}


def test_more_capacity_promotes_the_waitlist_and_less_drops_nobody_but_is_shown(programme):
    session = programme.known_session(capacity=2)
    regs = [programme.registered(session, programme.official()) for _ in range(5)]
    assert [r["status"] for r in regs] == ["confirmed"] * 2 + ["waitlisted"] * 3

    assert programme.operator.post("/sessions/{}/capacity".format(session["id"]), {"capacity": 4}).status_code == 200
    wait_for(lambda: programme.operator.get("/sessions/{}".format(session["id"])).json()["seats_taken"] == 4)
    statuses = [programme.operator.get("/registrations/{}".format(r["id"])).json()["status"] for r in regs]
    assert statuses == ["confirmed"] * 4 + ["waitlisted"]  # promoted in waitlist order
    assert len(programme.outbox("registration_promoted")) == 2

    programme.operator.post("/sessions/{}/capacity".format(session["id"]), {"capacity": 1})
    listing = wait_for(lambda: programme.operator.get("/reports/over-capacity").json()["items"])
    assert listing[0]["session_id"] == session["id"] and listing[0]["over_capacity"] == 3
    assert programme.operator.get("/sessions/{}".format(session["id"])).json()["seats_taken"] == 4  # nobody dropped
    assert not programme.outbox("registration_cancelled")
    # A cancellation now frees a seat that is not there: nobody is promoted, the excess shrinks.
    programme.operator.post("/registrations/{}/cancel".format(regs[0]["id"]))
    assert programme.operator.get("/reports/over-capacity").json()["items"][0]["over_capacity"] == 2
    assert programme.operator.get("/registrations/{}".format(regs[4]["id"])).json()["status"] == "waitlisted"


def test_a_unit_quota_waitlists_its_extra_officials_while_other_units_still_get_seats(programme):
    session = programme.known_session(capacity=4)
    quotas = programme.operator.post("/sessions/{}/quotas".format(session["id"]), {"quotas": {"Q1": 2}})
    assert quotas.status_code == 200, quotas.text
    q1 = [programme.registered(session, programme.official("Q1")) for _ in range(3)]
    q3 = [programme.registered(session, programme.official("Q3")) for _ in range(2)]
    assert [r["status"] for r in q1] == ["confirmed", "confirmed", "waitlisted"]
    assert [r["status"] for r in q3] == ["confirmed", "confirmed"]
    shown = programme.operator.get("/sessions/{}".format(session["id"])).json()
    assert shown["seats_taken"] == 4 and shown["quotas"] == {"Q1": {"seats": 2, "taken": 2}}

    # A Q3 official waitlisted after the Q1 one is promoted first when a Q3 seat frees: Q1 is at quota.
    late_q3 = programme.registered(session, programme.official("Q3"))
    programme.operator.post("/registrations/{}/cancel".format(q3[0]["id"]))
    assert programme.operator.get("/registrations/{}".format(late_q3["id"])).json()["status"] == "confirmed"
    assert programme.operator.get("/registrations/{}".format(q1[2]["id"])).json()["status"] == "waitlisted"
    # Raising the quota does not conjure seats; cancelling a Q1 seat promotes the Q1 official.
    programme.operator.post("/registrations/{}/cancel".format(q1[0]["id"]))
    assert programme.operator.get("/registrations/{}".format(q1[2]["id"])).json()["status"] == "confirmed"
    assert_error(programme.operator.post("/sessions/{}/quotas".format(session["id"]), {"quotas": {"Q4": 3}}),
                 422, "invalid_fields")  # Q4 is not invited


def test_a_cancelled_session_cancels_its_registrations_and_a_moved_one_keeps_them(programme):
    session = programme.known_session(capacity=1)
    confirmed = programme.registered(session, programme.official())
    waitlisted = programme.registered(session, programme.official())

    moved = programme.operator.post("/sessions/{}/reschedule".format(session["id"]),
                                    {"starts_at": at(12, "08:00"), "ends_at": at(12, "12:00")})
    assert moved.status_code == 200, moved.text
    told = wait_for(lambda: programme.outbox("registration_rescheduled") if len(
        programme.outbox("registration_rescheduled")) == 2 else None)
    assert {(e["registration_id"], e["status"]) for e in told} == {
        (confirmed["id"], "confirmed"), (waitlisted["id"], "waitlisted")}
    assert {datetime.fromisoformat(e["session"]["starts_at"]) for e in told} == {datetime.fromisoformat(at(12, "08:00"))}
    assert {datetime.fromisoformat(e["previous_starts_at"]) for e in told} == {datetime.fromisoformat(at(10, "08:00"))}

    programme.operator.post("/sessions/{}/cancel".format(session["id"]), {"reason": "Giảng viên ốm"})
    cancelled = wait_for(lambda: programme.outbox("registration_cancelled") if len(
        programme.outbox("registration_cancelled")) == 2 else None)
    assert {e["cause"] for e in cancelled} == {"session_cancelled"}
    for registration in (confirmed, waitlisted):
        shown = programme.operator.get("/registrations/{}".format(registration["id"])).json()
        assert (shown["status"], shown["cancel_cause"]) == ("cancelled", "session_cancelled")
    assert_error(programme.register(session, programme.official()), 422, "registration_closed")


def test_partners_see_their_own_sessions_registrations_and_nobody_else_does(programme, anonymous):
    session = programme.known_session()
    registration = programme.registered(session, programme.official())
    path = "/sessions/{}/registrations".format(session["id"])
    assert [r["id"] for r in programme.siu.get(path).json()["items"]] == [registration["id"]]
    assert programme.siu.get("/registrations/{}".format(registration["id"])).json()["status"] == "confirmed"
    # BUH hosts the venue but does not deliver the class: its registrations are not BUH's to read.
    assert_error(programme.buh.get(path), 403, "forbidden")
    assert_error(programme.siu.post(path, {"official_id": "x"}), 403, "forbidden")
    assert_error(programme.siu.get("/officials"), 403, "forbidden")
    assert_error(programme.siu.get("/reports/session"), 403, "forbidden")
    assert_error(anonymous.get(path), 401, "unauthenticated")
    assert_error(anonymous.post("/sessions/{}/checkins".format(session["id"]), {"qr_token": "x"}),
                 401, "unauthenticated")


def test_bad_registration_input_is_refused_and_nothing_is_stored(programme):
    session = programme.known_session()
    official = programme.official()
    path = "/sessions/{}/registrations".format(session["id"])
    fields = assert_error(programme.operator.post(path, {"official_id": official["id"], "seat": 1}),
                          422, "invalid_fields")["fields"]
    assert "seat" in fields
    assert_error(programme.operator.post(path, {}), 422, "invalid_fields")
    assert_error(programme.operator.post(path, data=b"{", headers={"Content-Type": "application/json"}),
                 400, "malformed_json")
    assert_error(programme.operator.post(path, {"official_id": "official-unknown"}), 422, "unknown_official")
    assert_error(programme.operator.post("/sessions/{}/quotas".format(session["id"]), {"quotas": {"Q1": -1}}),
                 422, "invalid_fields")
    assert programme.db("registration").registrations.count_documents({}) == 0
    assert not emitted_events(programme.db("registration"))
    assert programme.db("registration").sessions.find_one({"_id": session["id"]})["seats_taken"] == 0


def test_operators_see_seats_and_waitlist_of_upcoming_sessions_in_the_metrics(programme):
    from prometheus_client.parser import text_string_to_metric_families
    session = programme.known_session(capacity=1)
    programme.registered(session, programme.official())
    programme.registered(session, programme.official())  # waitlisted
    text = programme.operator.get("/metrics").text
    found = {(s.name, s.labels.get("session_id")): s.value
             for family in text_string_to_metric_families(text) for s in family.samples}
    assert found[("trainops_session_seats_taken", session["id"])] == 1
    assert found[("trainops_session_capacity", session["id"])] == 1
    assert found[("trainops_session_waitlist", session["id"])] == 1


def test_the_waitlist_pages_in_order_and_a_cursor_the_list_did_not_give_is_refused(programme):
    session = programme.known_session(capacity=1)
    registrations = [programme.registered(session, programme.official()) for _ in range(4)]
    path = "/sessions/{}/registrations".format(session["id"])

    first = programme.operator.get(path + "?status=waitlisted&limit=2").json()
    assert [r["waitlist_position"] for r in first["items"]] == [1, 2] and first["next_cursor"]
    rest = programme.operator.get(path + "?status=waitlisted&limit=2&cursor=" + first["next_cursor"]).json()
    assert [r["waitlist_position"] for r in rest["items"]] == [3] and rest["next_cursor"] is None
    assert [r["id"] for r in first["items"] + rest["items"]] == [r["id"] for r in registrations[1:]]

    everyone = programme.operator.get(path + "?limit=3").json()
    more = programme.operator.get(path + "?limit=3&cursor=" + everyone["next_cursor"]).json()
    ids = [r["id"] for r in everyone["items"] + more["items"]]
    assert ids == sorted(r["id"] for r in registrations) and more["next_cursor"] is None

    assert "cursor" in assert_error(programme.operator.get(path + "?cursor=3"), 422, "invalid_fields")["fields"]
    assert "limit" in assert_error(programme.operator.get(path + "?limit=201"), 422, "invalid_fields")["fields"]
