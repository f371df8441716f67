"""Course offerings: published only under an active agreement that covers them, changed and withdrawn
by their partner, listed and filtered, and bad input refused with nothing stored."""
import json

import pytest
from kombu import Connection

from backbone import topology
from backbone.events import read_envelope
from backbone.outbox import emitted_events
from tests.helpers import MODULES, SIU, Client, iso_day, offering, onboard, sign, wait_for

def events(db, type_):
    return emitted_events(db("partners"), {"type": type_})


def error_of(response, status, code):
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    return response.json()["error"]["fields"]


def test_an_offering_refused_for_want_of_an_agreement_is_accepted_once_the_agreement_is_amended(operator, db):
    partner, siu = onboard(operator)
    agreement = sign(operator, partner["id"], iso_day(-10), iso_day(30))
    beyond = offering(ends_by=iso_day(60))

    fields = error_of(siu.post("/offerings", beyond), 422, "no_active_agreement")
    assert set(fields) == {"starts_from", "ends_by"}
    assert db("partners").offerings.count_documents({}) == 0

    operator.post("/agreements/{}/amend".format(agreement["id"]),
                  {"valid_until": iso_day(90), "reason": "Phụ lục gia hạn"}).raise_for_status()
    accepted = siu.post("/offerings", beyond)
    assert accepted.status_code == 201, accepted.text
    assert accepted.json() | {"status": "published", "partner_id": partner["id"],
                              "agreement_id": agreement["id"], "ends_by": iso_day(60)} == accepted.json()
    [published] = events(db, "offering_published")
    assert published["payload"]["offering_id"] == accepted.json()["id"]
    assert published["payload"]["agreement_id"] == agreement["id"]


def test_an_agreement_covers_its_window_to_the_day_and_only_the_audiences_in_its_scope(operator):
    partner, siu = onboard(operator)
    sign(operator, partner["id"], iso_day(-10), iso_day(30), scope=["ward_commune", "ai_office_work"])
    assert siu.post("/offerings", offering(starts_from=iso_day(-10), ends_by=iso_day(30),
                                           audience_groups=["ward_commune"])).status_code == 201
    error_of(siu.post("/offerings", offering(starts_from=iso_day(-11), ends_by=iso_day(30), audience_groups=["ward_commune"])),
             422, "no_active_agreement")
    error_of(siu.post("/offerings", offering(starts_from=iso_day(-10), ends_by=iso_day(31), audience_groups=["ward_commune"])),
             422, "no_active_agreement")
    error_of(siu.post("/offerings", offering(audience_groups=["ward_commune", "leader"])), 422, "no_active_agreement")
    # A pending agreement covers nothing yet.
    sign(operator, partner["id"], iso_day(1), iso_day(300))
    error_of(siu.post("/offerings", offering(starts_from=iso_day(40), ends_by=iso_day(50), audience_groups=["ward_commune"])),
             422, "no_active_agreement")


def test_the_operator_records_a_past_offering_under_the_agreement_that_covered_it_and_only_that(operator, db):
    # The programme's history given to a new installation after the agreement ended (the seed in 2027).
    partner, siu = onboard(operator)
    ended = sign(operator, partner["id"], iso_day(-400), iso_day(-30))
    past = offering(starts_from=iso_day(-390), ends_by=iso_day(-40))
    error_of(siu.post("/offerings", past), 422, "no_active_agreement")  # a partner posts only under a live one
    recorded = operator.post("/offerings", dict(past, partner_id=partner["id"]))
    assert recorded.status_code == 201, recorded.text
    assert recorded.json()["agreement_id"] == ended["id"] and recorded.json()["status"] == "published"
    # Not a way round the rule: a window that reaches today, goes beyond the agreement, or takes in
    # an audience outside its scope is refused.
    for change in ({"ends_by": iso_day(0)}, {"ends_by": iso_day(-20)}, {"starts_from": iso_day(-401)},
                   {"audience_groups": ["leader"]}):
        error_of(operator.post("/offerings", dict(past, partner_id=partner["id"], **change)), 422,
                 "no_active_agreement")
    assert [e["payload"]["offering_id"] for e in events(db, "offering_published")] == [recorded.json()["id"]]


def test_an_offering_is_updated_only_within_its_agreement(operator, db):
    partner, siu = onboard(operator)
    sign(operator, partner["id"], iso_day(-10), iso_day(30))
    created = siu.post("/offerings", offering()).json()
    path = "/offerings/{}/update".format(created["id"])

    error_of(siu.post(path, {"ends_by": iso_day(31)}), 422, "no_active_agreement")
    assert error_of(siu.post(path, {"starts_from": iso_day(26)}), 422, "invalid_fields") == {
        "ends_by": ["Must not be before starts_from ({}).".format(iso_day(26))]}
    assert siu.get("/offerings/" + created["id"]).json() == created
    assert events(db, "offering_updated") == []

    updated = siu.post(path, {"ends_by": iso_day(30), "title_en": None, "modules": MODULES[:1]})
    assert updated.status_code == 200, updated.text
    assert updated.json()["ends_by"] == iso_day(30) and updated.json()["title_en"] is None
    assert updated.json()["title"] == created["title"]
    [event] = events(db, "offering_updated")
    expected = {"offering_id": created["id"], "ends_by": iso_day(30), "modules": MODULES[:1], "title_en": None}
    assert event["payload"] | expected == event["payload"]


def test_withdrawal_puts_an_event_for_scheduling_in_its_queue(runner_factory, app_config, db):
    # Only partners and the gateway run: the event must wait in scheduling's durable queue.
    from gateway.service import GatewayService
    from services.partners.service import PartnersService
    runner_factory(PartnersService, GatewayService).start()
    operator = Client(app_config["GATEWAY_URL"], app_config["OPERATOR_TOKEN"])
    partner, siu = onboard(operator)
    sign(operator, partner["id"], iso_day(-10), iso_day(30))
    created = siu.post("/offerings", offering()).json()

    withdrawn = siu.post("/offerings/{}/withdraw".format(created["id"]), {"reason": "Giảng viên bận công tác"})
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["status"] == "withdrawn"
    assert siu.post("/offerings/{}/withdraw".format(created["id"])).json() == withdrawn.json()  # once is enough
    error_of(siu.post("/offerings/{}/update".format(created["id"]), {"title": "Khác"}), 422, "offering_withdrawn")

    wait_for(lambda: db("partners").outbox.count_documents({"state": "pending"}) == 0)
    waiting = []
    with Connection(app_config["AMQP_URI"]) as connection:
        channel = connection.default_channel
        while (message := channel.basic_get(topology.queue_name("scheduling"), no_ack=True)) is not None:
            waiting.append(read_envelope(json.loads(message.body)))
    [(envelope, payload)] = [(e, p) for e, p in waiting if e["type"] == "offering_withdrawn"]
    assert payload == {"offering_id": created["id"], "partner_id": partner["id"], "reason": "Giảng viên bận công tác"}
    assert envelope["correlation_id"] == withdrawn.headers["X-Correlation-Id"]


def test_offerings_are_listed_by_partner_audience_and_date_a_page_at_a_time(operator):
    siu_partner, siu = onboard(operator)
    buh_partner, buh = onboard(operator, dict(SIU, code="BUH", name="Trường Đại học Ngân hàng TP.HCM"))
    for partner in (siu_partner, buh_partner):
        sign(operator, partner["id"], iso_day(-10), iso_day(100), scope=[])
    march = siu.post("/offerings", offering(starts_from=iso_day(0), ends_by=iso_day(9))).json()
    april = siu.post("/offerings", offering(starts_from=iso_day(10), ends_by=iso_day(19), audience_groups=["leader"])).json()
    may = siu.post("/offerings", offering(starts_from=iso_day(20), ends_by=iso_day(29))).json()
    other = buh.post("/offerings", offering(starts_from=iso_day(0), ends_by=iso_day(29))).json()

    def ids(path, client=operator):
        response = client.get(path)
        assert response.status_code == 200, response.text
        return {item["id"] for item in response.json()["items"]}

    assert ids("/offerings") == {march["id"], april["id"], may["id"], other["id"]}
    assert ids("/offerings?partner_id=" + siu_partner["id"]) == {march["id"], april["id"], may["id"]}
    assert ids("/offerings?audience=leader") == {april["id"]}
    assert ids("/offerings?date=" + iso_day(9)) == {march["id"], other["id"]}
    assert ids("/offerings?date={}&audience=ward_commune&partner_id={}".format(iso_day(25), siu_partner["id"])) == {may["id"]}
    assert ids("/offerings", client=buh) == {other["id"]}

    seen, cursor = [], None
    while True:
        page = operator.get("/offerings?limit=3" + ("&cursor=" + cursor if cursor else "")).json()
        assert len(page["items"]) <= 3
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted([march["id"], april["id"], may["id"], other["id"]])
    assert error_of(operator.get("/offerings?limit=0"), 422, "invalid_fields") == {
        "limit": ["Must be greater than or equal to 1 and less than or equal to 200."]}
    assert set(error_of(operator.get("/offerings?audience=everyone&date=tomorrow"), 422, "invalid_fields")) == {
        "audience", "date"}


@pytest.mark.parametrize("body, field", [
    (offering(title=None), "title"),
    (offering(title="   "), "title"),
    (offering(starts_from=iso_day(20), ends_by=iso_day(10)), "ends_by"),
    (offering(audience_groups=["district", "citizens"]), "audience_groups"),
    (offering(audience_groups=[]), "audience_groups"),
    (offering(title="Đ" * 301), "title"),
    (offering(modules=[{"title": "m" * 301, "hours": 4}]), "modules"),
    (offering(modules=[{"title": "AI", "hours": 4, "$inc": {"hours": 1}}]), "modules"),
    (dict(offering(), **{"$set": {"status": "withdrawn"}}), "$set"),
    (offering(starts_from="22/03/2026"), "starts_from"),
], ids=["no Vietnamese title", "blank title", "dates reversed", "unknown audience", "no audience",
        "oversized title", "oversized module title", "$-key in a module", "$-key", "not a date"])
def test_bad_offerings_are_refused_and_nothing_is_stored(operator, db, body, field):
    partner, siu = onboard(operator)
    sign(operator, partner["id"], iso_day(-10), iso_day(30))
    outbox_before = len(emitted_events(db("partners")))
    assert field in error_of(siu.post("/offerings", body), 422, "invalid_fields")
    assert db("partners").offerings.count_documents({}) == 0
    assert len(emitted_events(db("partners"))) == outbox_before


def test_bad_partners_and_agreements_are_refused_and_nothing_is_stored(operator, db):
    bad_partners = [
        (dict(SIU, name="S" * 201), "name"),
        (dict(SIU, contacts=[{"name": "Nguyễn Văn A", "$where": "1"}]), "contacts"),
        (dict(SIU, kind="bank"), "kind"),
    ]
    for body, field in bad_partners:
        assert field in error_of(operator.post("/partners", body), 422, "invalid_fields")
    assert db("partners").partners.count_documents({}) == 0

    partner, _ = onboard(operator)
    outbox_before = len(emitted_events(db("partners")))
    good = {"title": "Thỏa thuận", "signed_on": iso_day(0), "valid_from": iso_day(0), "valid_until": iso_day(30)}
    bad_agreements = [
        (dict(good, valid_from=iso_day(30), valid_until=iso_day(0)), "valid_until"),
        (dict(good, title="T" * 301), "title"),
        (dict(good, scope=["x" * 65]), "scope"),
        (dict(good, **{"$currentDate": {"signed_on": True}}), "$currentDate"),
    ]
    for body, field in bad_agreements:
        response = operator.post("/partners/{}/agreements".format(partner["id"]), body)
        assert field in error_of(response, 422, "invalid_fields")
    assert db("partners").agreements.count_documents({}) == 0
    assert len(emitted_events(db("partners"))) == outbox_before


def test_an_idempotency_key_posts_an_offering_once(operator, db):
    partner, siu = onboard(operator)
    sign(operator, partner["id"], iso_day(-10), iso_day(30))
    first = siu.post("/offerings", offering(), headers={"Idempotency-Key": "offering-ai-1"})
    again = siu.post("/offerings", offering(), headers={"Idempotency-Key": "offering-ai-1"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["Idempotent-Replay"] == "true"
    error_of(siu.post("/offerings", offering(title="Khác"), headers={"Idempotency-Key": "offering-ai-1"}),
             422, "idempotency_key_reused")
    assert db("partners").offerings.count_documents({}) == 1
    assert len(events(db, "offering_published")) == 1


def test_a_partner_finds_every_partners_route_and_body_in_the_api_document(anonymous):
    from openapi_spec_validator import validate
    document = anonymous.get("/openapi.json").json()
    validate(document)
    routes = {(path, method) for path, operations in document["paths"].items() for method in operations}
    assert {
        ("/partners/{partner_id}/keys", "post"), ("/partners/{partner_id}/keys/{key_id}/revoke", "post"),
        ("/partners/{partner_id}/agreements", "get"), ("/agreements/{agreement_id}", "get"),
        ("/agreements/{agreement_id}/amend", "post"), ("/agreements/{agreement_id}/terminate", "post"),
        ("/offerings/{offering_id}", "get"), ("/offerings/{offering_id}/update", "post"),
        ("/offerings/{offering_id}/withdraw", "post"),
    } <= routes
    schemas = document["components"]["schemas"]
    for name in ("AgreementAmendment", "AgreementTermination", "OfferingUpdate", "OfferingWithdrawal"):
        assert schemas[name]["additionalProperties"] is False
    assert schemas["OfferingIn"]["properties"]["title"]["maxLength"] == 300
    update = document["paths"]["/offerings/{offering_id}/update"]["post"]
    assert update["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OfferingUpdate"}
