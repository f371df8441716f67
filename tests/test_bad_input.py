"""Bad input gets a clear 4xx in the public error shape, and nothing is written anywhere:
no document in any service's database, no event in any outbox."""
import pytest

from backbone.outbox import emitted_events

SERVICES = ("partners", "scheduling", "registration", "notifications", "gateway")


def nothing_written(db):
    for service in SERVICES:
        database = db(service)
        for name in database.list_collection_names():
            if name in ("leases", "idempotency", "sweeps", "migrations", "audit"):
                # The relay's lease, the gateway's own key records, the day scheduling's warnings sweep
                # last judged, the record of the database's migrations and the audit (which records
                # the refused write too: who tried what) are not domain data.
                continue
            assert database[name].count_documents({}) == 0, "{}.{} was written".format(service, name)


def assert_error(response, status, code):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "fields"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]["fields"]


PARTNER = {"code": "SIU", "name": "Trường Đại học Quốc tế Sài Gòn", "kind": "university",
           "contact_email": "hoptac@siu.edu.vn"}


@pytest.mark.parametrize("raw", [b"{", b"[1, 2]", b"\xff\xfe", b"", b"null"])
def test_malformed_json_is_400(operator, db, raw):
    response = operator.post("/partners", data=raw, headers={"Content-Type": "application/json"})
    assert_error(response, 400, "malformed_json")
    nothing_written(db)


def test_unknown_fields_are_refused_not_stored(operator, db):
    fields = assert_error(operator.post("/partners", dict(PARTNER, notes="x", **{"$where": "1"})),
                          422, "invalid_fields")
    assert fields["notes"] == ["Unknown field."]
    assert fields["$where"] == ["Unknown field."]
    nothing_written(db)


def test_wrong_types_and_missing_fields_are_named(operator, db):
    fields = assert_error(operator.post("/partners", {"code": 7, "kind": "bank", "contact_email": "nope"}),
                          422, "invalid_fields")
    assert set(fields) == {"code", "name", "kind", "contact_email"}
    assert fields["name"] == ["Missing data for required field."]
    nothing_written(db)


def test_nested_bad_input_is_named_field_by_field(operator, db):
    fields = assert_error(operator.post("/venues", {
        "name": "Trường Đại học Ngân hàng TP.HCM", "address": "36 Tôn Thất Đạm", "host_partner_id": "p",
        "rooms": [{"name": "A", "capacity": "many"}, {"name": "B", "capacity": 10, "$set": 1}]}),
        422, "invalid_fields")
    assert fields["rooms"]["0"]["capacity"] == ["Not a valid integer."]
    assert fields["rooms"]["1"]["$set"] == ["Unknown field."]
    nothing_written(db)


def test_a_phone_that_is_not_vietnamese_is_refused(operator, db):
    fields = assert_error(operator.post("/officials", {
        "full_name": "Trần Văn B", "email": "b@q3.gov.vn", "phone": "+1 202 555 0100",
        "unit_code": "Q3", "audience_group": "ward_commune"}), 422, "invalid_fields")
    assert fields == {"phone": ["Not a Vietnamese mobile or landline number."]}
    nothing_written(db)


def test_a_naive_datetime_is_refused(operator, db):
    fields = assert_error(operator.post("/sessions", {
        "offering_id": "o", "venue_id": "v", "room": "A", "trainer": "T", "capacity": 10,
        "starts_at": "2026-12-05T08:00:00", "ends_at": "2026-12-05T17:00:00+07:00",
        "audience_groups": ["ward_commune"]}), 422, "invalid_fields")
    assert list(fields) == ["starts_at"]
    nothing_written(db)


def test_no_token_is_401_and_a_partner_acting_as_operator_is_403(operator, anonymous, db):
    assert_error(anonymous.post("/partners", PARTNER), 401, "unauthenticated")
    assert_error(anonymous.as_("not-a-key").post("/partners", PARTNER), 401, "unauthenticated")
    nothing_written(db)
    partner = operator.post("/partners", PARTNER).json()
    assert_error(operator.as_(partner["api_key"]).post("/partners", dict(PARTNER, code="OTHER")),
                 403, "forbidden")
    assert db("partners").partners.count_documents({}) == 1


def test_an_idempotency_key_replays_the_first_result_and_refuses_another_body(operator, db):
    first = operator.post("/partners", PARTNER, headers={"Idempotency-Key": "k-1"})
    again = operator.post("/partners", PARTNER, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["api_key"] is None  # a secret shown once is not kept for replays
    assert_error(operator.post("/partners", dict(PARTNER, name="Khác"), headers={"Idempotency-Key": "k-1"}),
                 422, "idempotency_key_reused")
    assert db("partners").partners.count_documents({}) == 1
    assert len(emitted_events(db("partners"))) == 1
