"""Unit coordinators (issue 18): each ward, commune and department names a coordinator who nominates
its staff with a `co_` token of its own. Through the public API against the real stack: a coordinator
of unit A reads, creates, registers, cancels and reports for A, and for B is refused on every route
(the routes come from the OpenAPI document, so a new route without a decision here fails); an import
with rows of A and B; revocation at once; a coordinator of a unit that was merged acts for what it
became."""
import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import assert_error, at, programme_with_coordinator, wait_for

A, B = "Q1", "Q3"
CSV_HEADER = "full_name,email,phone,unit_code,audience_group\n"
_days = itertools.count(10)


def new_session(programme, **fields):
    """A session on a day of its own (the hall is booked once a morning)."""
    day = next(_days)
    return programme.known_session(starts_at=at(day, "08:00"), ends_at=at(day, "12:00"), **fields)


@pytest.fixture(scope="module")
def world(module_system):
    """The programme (units Q1, Q3, Q4, BEN-NGHE), a coordinator of Q1 (A), and for each of A and B
    an official, a session open to that unit alone and a registration."""
    client, db, operator, programme, coordinator = programme_with_coordinator(module_system, A, {
        "full_name": "Trần Thị Điều Phối", "email": "dieuphoi@q1.gov.vn", "phone": "0903 111 222"})
    made = {}
    for unit in (A, B):
        session = new_session(programme, eligible_units=[unit])
        official = programme.official(unit)
        made[unit] = {"session": session, "official": official,
                      "registration": programme.registered(session, official)}
    yield {"programme": programme, "operator": operator, "db": db, "coordinator": coordinator,
           "co": operator.as_(coordinator["api_token"]), "made": made}
    client.close()


def routes(client):
    document = client.get("/openapi.json").json()
    for path, operations in sorted(document["paths"].items()):
        for method, operation in sorted(operations.items()):
            yield method.upper(), path, operation


# What a coordinator of A may do with B's records, route by route: every route not named here is
# refused to coordinators outright (403), whatever it names. Each entry: the body to send (None: a GET
# or an empty POST) and the answer expected, as (status, error code) or a check of a 200's body.
def only_a_officials(world, body):
    units = {o["unit_code"] for o in body["items"]}
    return units <= {A} and world["made"][A]["official"]["id"] in {o["id"] for o in body["items"]}


def only_a_sessions(world, body):
    ids = {s["id"] for s in body["items"]}
    return world["made"][A]["session"]["id"] in ids and world["made"][B]["session"]["id"] not in ids


def only_a_rows(world, body):
    return body["items"] and {row["unit"] for row in body["items"]} <= {A}


def only_a_coverage(world, body):
    return body["items"] and {item["key"] for item in body["items"]} <= {A}


NOT_YOURS = (403, "unit_not_yours")
SCOPED = {
    ("POST", "/officials"): (lambda w: {"full_name": "Người Ngoài", "email": "ngoai@q3.gov.vn",
                                        "phone": "0903 999 001", "unit_code": B, "audience_group": "ward_commune"},
                             NOT_YOURS),
    ("POST", "/officials/import"): (lambda w: None, "import"),
    ("GET", "/officials"): (lambda w: None, only_a_officials),
    ("GET", "/officials/{official_id}"): (lambda w: None, NOT_YOURS),
    ("POST", "/officials/{official_id}/update"): (lambda w: {"full_name": "Tên Đổi Trộm"}, NOT_YOURS),
    ("GET", "/officials/{official_id}/record"): (lambda w: None, NOT_YOURS),
    ("POST", "/sessions/{session_id}/registrations"): (
        lambda w: {"official_id": w["made"][B]["official"]["id"]}, NOT_YOURS),
    ("GET", "/registrations/{registration_id}"): (lambda w: None, NOT_YOURS),
    ("POST", "/registrations/{registration_id}/cancel"): (lambda w: None, NOT_YOURS),
    ("GET", "/sessions"): (lambda w: None, only_a_sessions),
    ("GET", "/sessions/{session_id}"): (lambda w: None, NOT_YOURS),
    ("GET", "/reports/{by}"): (lambda w: None, only_a_rows),
    ("GET", "/reports/coverage"): (lambda w: None, only_a_coverage),
}


def test_a_coordinator_of_unit_a_is_refused_unit_b_on_every_route(world):
    """B's ids in every path; every answer is a refusal, or (lists and reports) holds A's records only."""
    made, co = world["made"], world["co"]
    values = {"code": B, "official_id": made[B]["official"]["id"], "session_id": made[B]["session"]["id"],
              "registration_id": made[B]["registration"]["id"], "by": "unit",
              "coordinator_id": world["coordinator"]["id"], "partner_id": world["programme"].siu_id,
              "agreement_id": world["programme"].agreement_id, "offering_id": world["programme"].offering_id,
              "venue_id": world["programme"].venue_id, "key_id": "key-x", "notice_id": "n", "letter_id": "x:y"}
    wrong, asked = [], 0
    for method, path, operation in routes(world["operator"]):
        if operation["description"].startswith("No authentication"):
            continue  # public pages: nobody's records
        url = path
        for name, value in values.items():
            url = url.replace("{" + name + "}", value)
        body, expected = SCOPED.get((method, path), (lambda w: None, (403, None)))
        if expected == "import":
            answer = co.post(url, data=(CSV_HEADER + "Người Ngoài,ngoai2@q3.gov.vn,0903999002,{},ward_commune\n".format(
                B)).encode(), headers={"Content-Type": "text/csv"})
            ok = answer.status_code == 200 and answer.json()["created"] == 0 and [
                e.get("code") for e in answer.json()["errors"]] == ["unit_not_yours"]
        elif method == "GET":
            answer = co.get(url + ("?unit={}".format(A) if path == "/sessions" else ""))
        else:
            answer = co.post(url, body(world) if body(world) is not None else {})
        asked += 1
        if expected == "import":
            pass
        elif callable(expected):
            ok = answer.status_code == 200 and expected(world, answer.json())
        else:
            status, code = expected
            ok = answer.status_code == status and (code is None or answer.json()["error"]["code"] == code)
        if not ok:
            wrong.append("{} {}: {} {}".format(method, path, answer.status_code, answer.text[:160]))
    assert asked >= 50
    assert not wrong, "\n".join(wrong)
    # Nothing of B's changed on the way.
    db = world["db"]("registration")
    assert db.registrations.find_one({"_id": made[B]["registration"]["id"]})["status"] == "confirmed"
    assert db.officials.count_documents({"unit_code": B, "email": {"$regex": "^ngoai"}}) == 0


def test_a_coordinator_asking_for_another_units_sessions_is_told_so(world):
    co = world["co"]
    assert_error(co.get("/sessions?unit=" + B), 403, "unit_not_yours")
    mine = co.get("/sessions").json()["items"]  # without unit=: the sessions open to its units
    assert world["made"][A]["session"]["id"] in {s["id"] for s in mine}
    assert world["made"][B]["session"]["id"] not in {s["id"] for s in mine}
    # A month of the calendar too, with and without its unit named (scheduling's calendar keys).
    session = world["made"][A]["session"]
    month = datetime.fromisoformat(session["starts_at"]).astimezone(ZoneInfo("Asia/Ho_Chi_Minh")).strftime("%Y-%m")
    for query in ("month=" + month, "month={}&unit={}".format(month, A)):
        found = {s["id"] for s in co.get("/sessions?" + query).json()["items"]}
        assert session["id"] in found and world["made"][B]["session"]["id"] not in found, query
    assert_error(co.get("/sessions?month={}&unit={}".format(month, B)), 403, "unit_not_yours")
    assert co.get("/sessions/" + session["id"]).status_code == 200


def test_a_coordinator_nominates_registers_and_cancels_for_its_own_unit_under_the_usual_rules(world):
    co, programme, operator = world["co"], world["programme"], world["operator"]
    created = co.post("/officials", {"full_name": "Phạm Văn Mới", "email": "moi@q1.gov.vn", "phone": "0903 777 001",
                                     "unit_code": A, "audience_group": "ward_commune"})
    assert created.status_code == 201, created.text
    official = created.json()
    assert co.get("/officials/" + official["id"]).json()["full_name"] == "Phạm Văn Mới"
    assert co.get("/officials/{}/record".format(official["id"])).status_code == 200
    assert official["id"] in {o["id"] for o in co.get("/officials?unit_code=" + A).json()["items"]}

    # One seat for Q1 on a fresh session: the second official waits, as anyone's would.
    session = new_session(programme, eligible_units=[A], capacity=10)
    assert operator.post("/sessions/{}/quotas".format(session["id"]), {"quotas": {A: 1}}).status_code == 200
    first = co.post("/sessions/{}/registrations".format(session["id"]), {"official_id": official["id"]})
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "confirmed" and "qr_token" not in first.json()  # the official shows it
    second = co.post("/sessions/{}/registrations".format(session["id"]),
                     {"official_id": world["made"][A]["official"]["id"]})
    assert second.status_code == 201 and second.json()["status"] == "waitlisted", second.text
    assert_error(co.post("/sessions/{}/registrations".format(session["id"]), {"official_id": official["id"]}),
                 409, "already_registered")
    # B's session does not invite Q1: eligibility applies to coordinators too.
    assert_error(co.post("/sessions/{}/registrations".format(world["made"][B]["session"]["id"]),
                         {"official_id": official["id"]}), 422, "not_eligible")
    # Only the operator records a registration after the cut-off.
    assert co.post("/sessions/{}/registrations".format(world["made"][A]["session"]["id"]),
                   {"official_id": official["id"], "after_cutoff": True}).status_code == 403

    cancelled = co.post("/registrations/{}/cancel".format(first.json()["id"]), {"reason": "Trùng lịch họp"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
    promoted = wait_for(lambda: co.get("/registrations/" + second.json()["id"]).json()["status"] == "confirmed")
    assert promoted

    rows = co.get("/reports/unit").json()["items"]
    assert [row["unit"] for row in rows] == [A]
    coverage = co.get("/reports/coverage").json()
    assert [item["key"] for item in coverage["items"]] == [A]
    assert coverage["totals"]["staff"] == world["db"]("registration").officials.count_documents({"unit_code": A})


def test_an_import_with_rows_of_a_and_b_imports_a_and_names_each_b_row(world):
    co, db = world["co"], world["db"]("registration")
    b_official = world["made"][B]["official"]
    text = CSV_HEADER + "\n".join([
        "Lê Văn Một,mot@q1.gov.vn,0903 555 001,{},ward_commune".format(A),
        "Lê Văn Hai,hai@q3.gov.vn,0903 555 002,{},ward_commune".format(B),
        # B's official, claimed for A by its email: no coordinator takes another unit's staff.
        "{},{},{},{},ward_commune".format(b_official["full_name"], b_official["email"], "0903 555 003", A),
        "Lê Văn Bốn,bon@q1.gov.vn,0903 555 004,{},ward_commune".format(A),
    ]) + "\n"
    answer = co.post("/officials/import", data=text.encode(), headers={"Content-Type": "text/csv"})
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert (found["created"], found["updated"]) == (2, 0)
    assert [(e["row"], e["code"]) for e in found["errors"]] == [(3, "unit_not_yours"), (4, "unit_not_yours")]
    assert db.officials.find_one({"email": "hai@q3.gov.vn"}) is None
    assert db.officials.find_one({"_id": b_official["id"]})["unit_code"] == B


def test_a_coordinator_is_made_with_checked_units_and_its_token_stops_at_once_when_revoked(world):
    operator, db = world["operator"], world["db"]("registration")
    refused = operator.post("/units/{}/coordinators".format(A), {
        "full_name": "X", "email": "x@q1.gov.vn", "unit_codes": [A, "NO-SUCH"]})
    error = assert_error(refused, 422, "unknown_unit")
    assert list(error["fields"]["unit_codes"]) == ["1"]
    assert_error(operator.post("/units/NO-SUCH/coordinators", {"full_name": "X", "email": "x@q1.gov.vn"}),
                 404, "not_found")
    assert_error(operator.post("/units/{}/coordinators".format(A), {"full_name": "X", "email": "not-an-email"}),
                 422, "invalid_fields")

    made = operator.post("/units/{}/coordinators".format(B), {
        "full_name": "Đỗ Văn Tạm", "email": "tam@q3.gov.vn", "unit_codes": [B, A]}).json()
    assert made["unit_codes"] == [B, A] and made["api_token"].startswith("co_")
    stored = db.coordinators.find_one({"_id": made["id"]})
    assert made["api_token"] not in str(stored) and len(stored["token_digest"]) == 64  # the digest only
    listed = operator.get("/units/{}/coordinators".format(B)).json()["items"]
    assert [c["id"] for c in listed] == [made["id"]] and "api_token" not in listed[0]
    assert "token_digest" not in listed[0]

    co = operator.as_(made["api_token"])
    assert co.get("/officials?unit_code=" + B).status_code == 200
    revoked = operator.post("/coordinators/{}/revoke".format(made["id"]))
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert_error(co.get("/officials"), 401, "unauthenticated")  # the very next request
    assert operator.post("/coordinators/{}/revoke".format(made["id"])).json()["status"] == "revoked"
    assert_error(operator.post("/coordinators/coordinator-0000000000000000/revoke"), 404, "not_found")
    # A coordinator creates no coordinator, and revokes none.
    assert world["co"].post("/units/{}/coordinators".format(A), {"full_name": "Y", "email": "y@q1.gov.vn"}
                            ).status_code == 403
    assert world["co"].post("/coordinators/{}/revoke".format(world["coordinator"]["id"])).status_code == 403


def test_a_coordinator_of_a_unit_later_merged_acts_for_what_it_became(world):
    operator, programme = world["operator"], world["programme"]
    old = programme.official("Q4")
    co = operator.as_(operator.post("/units/Q4/coordinators", {
        "full_name": "Võ Thị Sáp Nhập", "email": "sapnhap@q4.gov.vn"}).json()["api_token"])
    assert co.get("/officials/" + old["id"]).status_code == 200
    merged = operator.post("/units/merge", {"from": ["Q4", "BEN-NGHE"],
                                            "into": {"code": "Q4-BN", "name": "Phường Khánh Hội"}})
    assert merged.status_code == 201, merged.text

    # Its official moved to the new unit, and so did the coordinator's reach.
    assert co.get("/officials/" + old["id"]).json()["unit_code"] == "Q4-BN"
    created = co.post("/officials", {"full_name": "Ngô Văn Sau", "email": "sau@q4bn.gov.vn", "phone": "0903 666 001",
                                     "unit_code": "Q4-BN", "audience_group": "ward_commune"})
    assert created.status_code == 201, created.text
    session = new_session(programme, eligible_units=["Q4-BN"])
    assert co.post("/sessions/{}/registrations".format(session["id"]),
                   {"official_id": created.json()["id"]}).status_code == 201
    assert session["id"] in {s["id"] for s in co.get("/sessions?unit=Q4-BN").json()["items"]}
    # ... and no further than that.
    assert_error(co.get("/officials/" + world["made"][A]["official"]["id"]), 403, "unit_not_yours")
