"""Coordinators' rules on their own, no servers: which units a coordinator acts for (with what they
became), who may act for a unit, what a coordinator sees of sessions, coverage and registrations, and
its token."""
import hashlib

import pytest

from backbone import auth
from backbone.errors import DomainError
from services.registration import coverage, rules, schemas
from services.scheduling import rules as scheduling_rules

OPERATOR = auth.SYSTEM
VIEWER = {"role": "operator", "access": "viewer", "operator_id": "operator-v", "name": "V"}
PARTNER = {"role": "partner", "partner_id": "partner-siu"}
OFFICIAL = {"role": "official", "official_id": "official-1"}


def coordinator(*units):
    return {"role": "coordinator", "coordinator_id": "coordinator-1", "unit_codes": list(units)}


def refused(call, *args, **kwargs):
    with pytest.raises(DomainError) as caught:
        call(*args, **kwargs)
    return caught.value


@pytest.mark.parametrize("codes, successors, expected", [
    (["Q1"], {}, ["Q1"]),
    # Quận 4 and Bến Nghé merged into Khánh Hội: the coordinator of Quận 4 acts for it.
    (["Q4"], {"Q4": ["KH"]}, ["Q4", "KH"]),
    # Nguyễn Thái Bình split into Bến Thành and Sài Gòn, and Sài Gòn later merged again.
    (["NTB"], {"NTB": ["BT", "SG"], "SG": ["SG2"]}, ["NTB", "BT", "SG", "SG2"]),
    # Two of its units merged into one: named once.
    (["A", "B"], {"A": ["AB"], "B": ["AB"]}, ["A", "B", "AB"]),
    # A cycle (bad data) stops where it closes.
    (["X"], {"X": ["Y"], "Y": ["X"]}, ["X", "Y"]),
])
def test_a_coordinators_units_include_what_they_became_transitively(codes, successors, expected):
    assert rules.units_with_successors(codes, successors) == expected


def test_a_coordinator_acts_for_its_units_only_and_an_operator_for_every_unit():
    rules.require_acts_for(coordinator("Q1", "Q3"), "Q3")
    error = refused(rules.require_acts_for, coordinator("Q1"), "Q3")
    assert (error.status, error.code, error.fields) == (403, "unit_not_yours", {"unit_code": [
        "Not a unit of this coordinator."]})
    assert refused(rules.require_acts_for, coordinator("Q1"), "Q3", field="official_id").fields == {
        "official_id": ["Not a unit of this coordinator."]}
    rules.require_acts_for(OPERATOR, "Q3")
    rules.require_acts_for(VIEWER, "Q3", reading=True)
    assert refused(rules.require_acts_for, VIEWER, "Q3").status == 403  # a viewer writes nothing
    assert refused(rules.require_acts_for, PARTNER, "Q1").status == 403
    assert refused(rules.require_acts_for, OFFICIAL, "Q1").status == 403
    assert refused(rules.require_acts_for, None, "Q1").status == 401


def test_the_units_in_scope_are_a_coordinators_own_none_for_operators_and_nothing_for_others():
    assert rules.units_in_scope(coordinator("Q1", "Q3")) == {"Q1", "Q3"}
    assert rules.units_in_scope(OPERATOR) is None and rules.units_in_scope(VIEWER) is None
    assert refused(rules.units_in_scope, PARTNER).status == 403
    assert refused(rules.units_in_scope, None).status == 401


def test_a_coordinator_is_no_partner_with_no_partner_id():
    """None == None once let anyone without a partner id through the partners' check."""
    for actor in (coordinator("Q1"), OFFICIAL):
        assert refused(auth.require_operator_or_partner, actor, None).status == 403
    auth.require_operator_or_partner(PARTNER, "partner-siu")
    auth.require_operator_or_partner(OPERATOR, None)


def test_a_coordinator_sees_sessions_open_to_its_units():
    co = coordinator("Q1", "Q3")
    assert scheduling_rules.coordinator_open_to(co) == ["Q1", "Q3"]
    assert scheduling_rules.coordinator_open_to(co, "Q3") == ["Q3"]
    assert refused(scheduling_rules.coordinator_open_to, co, "Q4").code == "unit_not_yours"
    assert scheduling_rules.coordinator_open_to(OPERATOR, "Q4") is None and \
        scheduling_rules.coordinator_open_to(PARTNER) is None
    scheduling_rules.require_open_to(co, {"eligible_units": ["Q3", "Q9"]})
    scheduling_rules.require_open_to(co, {"eligible_units": []})  # open to every unit
    assert refused(scheduling_rules.require_open_to, co, {"eligible_units": ["Q9"]}).code == "unit_not_yours"


def test_coverage_for_a_coordinator_counts_its_units_officials_and_their_registrations_only():
    officials = [{"_id": "o1", "unit_code": "Q1"}, {"_id": "o2", "unit_code": "Q3"}]
    units = {"Q1": {"name": "Quận 1"}, "Q3": {"name": "Quận 3"}}
    registrations = [{"official_id": "o1"}, {"official_id": "o2"}]
    mine, their_units, theirs = coverage.within({"Q1"}, officials, units, registrations)
    assert ([o["_id"] for o in mine], list(their_units), theirs) == (["o1"], ["Q1"], [{"official_id": "o1"}])


def test_a_coordinators_token_is_shown_once_and_kept_as_its_digest():
    token, digest = rules.coordinator_token()
    assert token.startswith("co_") and len(token) > 40
    assert digest == hashlib.sha256(token.encode()).hexdigest() and token not in digest
    assert rules.coordinator_token()[0] != token
    stored = rules.new_coordinator({"full_name": "Trần Thị B", "email": "B@Q1.gov.vn"}, ["Q1"], "coordinator-1",
                                   digest, "system", None)
    assert stored["email"] == "b@q1.gov.vn" and token not in str(stored)
    assert "token_digest" not in schemas.public_coordinator(stored)


def test_unknown_or_dissolved_units_are_named_by_their_place_in_the_list():
    found = {"Q1": {"status": "active"}, "OLD": {"status": "dissolved", "successors": ["NEW"]}}
    assert rules.coordinator_unit_problems(["Q1", "NOPE", "OLD"], found) == {
        "1": ["NOPE: Unknown unit."], "2": ["OLD: Dissolved; it became NEW."]}


def test_a_coordinator_sees_its_registrations_without_the_qr_token():
    registration = {"id": "registration-1", "status": "confirmed", "qr_token": "abc.def",
                    "official": {"full_name": "A", "email": "a@q1.gov.vn", "phone": "+84903000001"}}
    shown = schemas.registration_for(coordinator("Q1"))(registration)
    assert "qr_token" not in shown and shown["official"]["email"] == "a@q1.gov.vn"
    assert schemas.registration_for(OPERATOR)(registration)["qr_token"] == "abc.def"


def test_a_coordinators_token_and_contacts_are_masked_in_any_log_line():
    from backbone.logs import mask
    token, _ = rules.coordinator_token()
    line = mask("asked with {} by dieuphoi@q1.gov.vn, 0903 111 222".format(token))
    assert token not in line and token[3:] not in line and "co_***" in line
    assert "dieuphoi@" not in line and "111 222" not in line
