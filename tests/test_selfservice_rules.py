"""The pure rules behind /me: who may register or cancel whom, which sessions are open to an
official, links in notices made absolute, and which links a sign-in email may carry."""
from datetime import datetime, timedelta, timezone

import pytest

from backbone.errors import DomainError
from gateway.selfservice import normal_email
from services.notifications import rules as notices
from services.registration import rules

OPERATOR = {"role": "operator", "access": "operator", "operator_id": "op-1", "name": "A"}
VIEWER = dict(OPERATOR, access="viewer")
ANH = {"role": "official", "official_id": "official-anh"}
NOW = datetime(2026, 12, 1, 1, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("actor, official_id, refused", [
    (OPERATOR, "official-binh", None), (ANH, "official-anh", None), (ANH, "official-binh", 403),
    (VIEWER, "official-anh", 403), (None, "official-anh", 401),
    ({"role": "partner", "partner_id": "p"}, "official-anh", 403)])
def test_an_official_registers_only_themself(actor, official_id, refused):
    if refused is None:
        rules.require_registrant(actor, official_id)
    else:
        with pytest.raises(DomainError) as error:
            rules.require_registrant(actor, official_id)
        assert error.value.status == refused


@pytest.mark.parametrize("actor, owner, refused", [
    (OPERATOR, "official-binh", None), (ANH, "official-anh", None), (ANH, "official-binh", 404),
    (VIEWER, "official-anh", 403)])
def test_another_officials_registration_is_unknown_to_an_official(actor, owner, refused):
    registration = {"_id": "registration-1", "official_id": owner}
    if refused is None:
        rules.require_own_registration(actor, registration)
    else:
        with pytest.raises(DomainError) as error:
            rules.require_own_registration(actor, registration)
        assert error.value.status == refused


OFFICIAL = {"audience_group": "ward_commune", "unit_code": "Q1"}
SESSION = {"status": "scheduled", "starts_at": NOW + timedelta(days=3), "registration_closes_at": NOW + timedelta(days=2),
           "audience_groups": ["ward_commune"], "eligible_units": ["Q1", "Q3"]}


@pytest.mark.parametrize("change, open_", [
    ({}, True), ({"eligible_units": []}, True), ({"eligible_units": ["Q3"]}, False),
    ({"audience_groups": ["department"]}, False), ({"status": "cancelled"}, False),
    ({"registration_closes_at": NOW - timedelta(minutes=1)}, False), ({"registration_closes_at": None}, True),
    ({"starts_at": NOW - timedelta(hours=1), "registration_closes_at": None}, False)])
def test_the_sessions_open_to_an_official(change, open_):
    assert rules.open_to(dict(SESSION, **change), OFFICIAL, NOW) is open_


@pytest.mark.parametrize("link, expected", [
    ("/certificates/ABC", "https://trainops.example/certificates/ABC"),
    ("certificates/ABC", "https://trainops.example/certificates/ABC"),
    ("https://elsewhere.example/x", "https://elsewhere.example/x"), (None, None)])
def test_links_in_notices_are_absolute(link, expected):
    assert notices.absolute("https://trainops.example/", link) == expected


@pytest.mark.parametrize("link, audience, allowed", [
    ("https://trainops.example/me/login?token=abc", "official", True),
    ("https://trainops.example/me/login?token=abc", "operator", False),
    ("https://trainops.example/console/login/link?token=abc", "operator", True),
    ("https://evil.example/me/login?token=abc", "official", False),
    ("https://trainops.example.evil.example/me/login?token=abc", "official", False),
    ("https://trainops.example/me/login?token=" + "a" * 700, "official", False),
    ("https://trainops.example/me/login?token=abc", "partner", False)])
def test_a_sign_in_email_carries_only_our_own_sign_in_links(link, audience, allowed):
    assert notices.sign_in_link_allowed("https://trainops.example", link, audience) is allowed


@pytest.mark.parametrize("given, normal", [
    ("  Anh.Nguyen@Q1.gov.vn ", "anh.nguyen@q1.gov.vn"), ("no-at-sign", None), ("a b@c.vn", None),
    (None, None), ("x" * 250 + "@q1.vn", None)])
def test_addresses_are_looked_up_in_lower_case_without_spaces(given, normal):
    assert normal_email(given) == normal
