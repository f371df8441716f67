"""Registrations that arrive together are written together (one transaction per batch), and each
caller still gets its own answer: refusals stay with whoever was refused, the same official sent
twice at once is registered once, and every event carries the correlation id of its own request."""
import eventlet

from backbone.outbox import emitted_events
from tests.helpers import wait_for

SEATS = 3


def test_a_burst_with_refusals_and_a_double_send_gives_everyone_their_own_answer(programme):
    session = programme.known_session(capacity=SEATS, eligible_units=["Q1"], audience_groups=["ward_commune"])
    invited = [programme.official() for _ in range(8)]
    outsider = programme.official(unit_code="Q4")
    twice = invited[0]
    sends = [(o["id"], "burst-{}".format(n)) for n, o in enumerate(invited + [outsider])]
    sends.append((twice["id"], "burst-again"))
    sends.append(("official-nobody", "burst-unknown"))
    path = "/sessions/{}/registrations".format(session["id"])

    def send(item):
        official_id, correlation_id = item
        client = programme.operator.as_(programme.operator.token)  # a connection per caller
        response = client.post(path, {"official_id": official_id}, headers={"X-Correlation-Id": correlation_id})
        return correlation_id, response

    answers = dict(eventlet.GreenPool(len(sends)).imap(send, sends))

    assert answers["burst-8"].status_code == 422 and answers["burst-8"].json()["error"]["code"] == "not_eligible"
    assert answers["burst-unknown"].json()["error"]["code"] == "unknown_official"
    # The same official twice at once: one registration, one 409, whichever arrived second.
    pair = sorted([answers["burst-0"].status_code, answers["burst-again"].status_code])
    assert pair == [201, 409]
    created = {c: r.json() for c, r in answers.items() if r.status_code == 201}
    assert len(created) == len(invited)
    assert {r["official_id"] for r in created.values()} == {o["id"] for o in invited}
    confirmed = [r for r in created.values() if r["status"] == "confirmed"]
    waitlisted = sorted(r["waitlist_position"] for r in created.values() if r["status"] == "waitlisted")
    assert len(confirmed) == SEATS and waitlisted == list(range(1, len(invited) - SEATS + 1))

    stored = programme.db("registration")
    counters = stored.sessions.find_one({"_id": session["id"]})
    assert (counters["seats_taken"], counters["waitlist_length"]) == (SEATS, len(invited) - SEATS)
    assert counters["unit_seats"] == {"Q1": SEATS}
    # Each event is told under the correlation id of the request that caused it.
    events = {e["payload"]["registration_id"]: e for e in emitted_events(stored) if e["type"].startswith("registration_")}
    assert len(events) == len(invited)
    for correlation_id, registration in created.items():
        assert events[registration["id"]]["correlation_id"] == correlation_id
        assert answers[correlation_id].headers["X-Correlation-Id"] == correlation_id


def test_a_cancellation_in_the_middle_of_a_burst_promotes_and_the_counters_still_add_up(programme):
    session = programme.known_session(capacity=SEATS)
    first = programme.registered(session, programme.official())
    others = [programme.official() for _ in range(12)]
    path = "/sessions/{}/registrations".format(session["id"])

    def send(official):
        client = programme.operator.as_(programme.operator.token)
        return client.post(path, {"official_id": official["id"]})

    stored = programme.db("registration")
    burst = eventlet.spawn(lambda: list(eventlet.GreenPool(len(others)).imap(send, others)))
    # The cancellation comes once the burst is being written: its first registration is in.
    wait_for(lambda: stored.registrations.count_documents({"session_id": session["id"]}) > 1, interval=0.002)
    cancelled = programme.operator.post("/registrations/{}/cancel".format(first["id"]), {"reason": "Bận"})
    answers = burst.wait()
    assert cancelled.status_code == 200 and {a.status_code for a in answers} == {201}

    live = list(stored.registrations.find({"session_id": session["id"], "status": {"$in": ["confirmed", "waitlisted"]}}))
    confirmed = [r for r in live if r["status"] == "confirmed"]
    waitlisted = sorted(r["waitlist_position"] for r in live if r["status"] == "waitlisted")
    counters = stored.sessions.find_one({"_id": session["id"]})
    assert len(confirmed) == SEATS == counters["seats_taken"]
    assert len(waitlisted) == counters["waitlist_length"] == len(others) - SEATS
    assert len(set(waitlisted)) == len(waitlisted)
