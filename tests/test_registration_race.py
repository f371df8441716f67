"""The race: 2,000 officials register for a 150-seat session at the same moment, through HTTP.
Exactly 150 are confirmed, the seat counter says 150, and the other 1,850 are waitlisted 1..1,850 in
the order they reached the seat, with no position given twice."""
import eventlet


OFFICIALS = 2000
SEATS = 150
CALLERS = 200


def staff_list(count):
    lines = ["full_name,email,phone,unit_code,audience_group"]
    lines += ["Trần Thị Đua {n},dua{n}@q1.gov.vn,0987{n:06d},Q1,ward_commune".format(n=n) for n in range(count)]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def test_two_thousand_at_once_for_150_seats_confirm_exactly_150_and_waitlist_the_rest_in_order(registration_only):
    programme = registration_only
    session = programme.known_session(capacity=SEATS)
    imported = programme.operator.post("/officials/import", data=staff_list(OFFICIALS),
                                       headers={"Content-Type": "text/csv"}).json()
    assert imported["created"] == OFFICIALS, imported["errors"][:3]
    ids = [o["_id"] for o in programme.db("registration").officials.find({}, {"_id": 1})]
    path = "/sessions/{}/registrations".format(session["id"])

    def register(official_id):
        # A connection per caller, closed once answered: left open, 2,000 of them held the gateway's
        # 1,000 connection slots for its keep-alive, and the next callers waited.
        client = programme.operator.as_(programme.operator.token)
        try:
            return client.post(path, {"official_id": official_id})
        finally:
            client.http.close()

    # All 2,000 are submitted at once; 200 connections at a time (the gateway runs in this very
    # process, and 2,000 simultaneous sockets overflow its listen backlog, which is not the point).
    pool = eventlet.GreenPool(CALLERS)
    answers = list(pool.imap(register, ids))
    assert {a.status_code for a in answers} == {201}, {a.status_code for a in answers}
    bodies = [a.json() for a in answers]
    confirmed = [b for b in bodies if b["status"] == "confirmed"]
    waitlisted = [b for b in bodies if b["status"] == "waitlisted"]
    assert len(confirmed) == SEATS
    assert sorted(b["waitlist_position"] for b in waitlisted) == list(range(1, OFFICIALS - SEATS + 1))

    stored = programme.db("registration")
    counters = stored.sessions.find_one({"_id": session["id"]})
    assert (counters["seats_taken"], counters["waitlist_length"]) == (SEATS, OFFICIALS - SEATS)
    assert stored.registrations.count_documents({"session_id": session["id"], "status": "confirmed"}) == SEATS
    # Arrival order is waitlist order: every confirmed seat was taken before the first waitlisting,
    # and the waitlist grew in the order registrations reached the seat counter.
    rows = {r["_id"]: r for r in stored.registrations.find({"session_id": session["id"]})}
    last_confirmed = max(rows[b["id"]]["created_at"] for b in confirmed)
    by_position = sorted(waitlisted, key=lambda b: b["waitlist_position"])
    arrivals = [rows[b["id"]]["created_at"] for b in by_position]
    assert last_confirmed <= arrivals[0] and arrivals == sorted(arrivals)
    assert len(programme.outbox("registration_confirmed")) == SEATS
    assert len(programme.outbox("registration_waitlisted")) == OFFICIALS - SEATS
