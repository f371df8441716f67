"""The programme's seed data loads through the API and loading it again duplicates nothing."""
from datetime import date

from devstack import seed
from backbone.clock import local_date


def test_seed_loads_the_first_class_once(operator, app_config, db):
    first = seed.load(app_config["GATEWAY_URL"], app_config["OPERATOR_TOKEN"], say=lambda _: None)
    again = seed.load(app_config["GATEWAY_URL"], app_config["OPERATOR_TOKEN"], say=lambda _: None)
    assert again["session"]["id"] == first["session"]["id"]
    assert db("partners").partners.count_documents({}) == 3
    assert db("partners").agreements.count_documents({}) == 1
    assert db("scheduling").sessions.count_documents({}) == 1
    assert db("registration").units.count_documents({}) == 6

    session = operator.get("/sessions/" + first["session"]["id"]).json()
    assert session["starts_at"] == "2025-03-22T08:00:00+07:00"  # shown in Ho Chi Minh City time
    assert session["capacity"] == 150
    assert session["address"].startswith("36 Tôn Thất Đạm")
    assert sorted(session["eligible_units"]) == ["BINH-THANH", "PHU-NHUAN", "Q1", "Q3", "Q4"]
    # The SIU agreement runs 2025-03-13 .. 2026-12-31 (Ho Chi Minh City calendar days).
    assert first["agreement"]["status"] == ("active" if local_date() <= date(2026, 12, 31) else "expired")
