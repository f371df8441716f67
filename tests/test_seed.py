"""The programme's seed data loads through the API, loading it again duplicates nothing, and it says
what the article says: the dates, the address, the audiences and the two parts of the first class."""
from datetime import date

from backbone.clock import local_date
from devstack import seed


def test_seed_loads_the_programme_once(operator, app_config, db):
    first = seed.load(app_config["GATEWAY_URL"], app_config["OPERATOR_TOKEN"], say=lambda _: None)
    again = seed.load(app_config["GATEWAY_URL"], app_config["OPERATOR_TOKEN"], say=lambda _: None)
    assert again["session"]["id"] == first["session"]["id"]
    # `make run` seeds every time it starts, also after its Idempotency-Keys have run out (a day).
    assert db("gateway").idempotency.delete_many({}).deleted_count > 0
    later = seed.load(app_config["GATEWAY_URL"], app_config["OPERATOR_TOKEN"], say=lambda _: None)
    assert {k: v["id"] for k, v in later["partners"].items()} == {k: v["id"] for k, v in first["partners"].items()}
    assert later["session"]["id"] == first["session"]["id"] and later["venue"]["id"] == first["venue"]["id"]
    assert db("partners").partners.count_documents({}) == 3
    assert db("partners").agreements.count_documents({}) == 1
    assert db("partners").offerings.count_documents({}) == 2
    assert db("scheduling").sessions.count_documents({}) == 1
    units = db("registration").units
    assert units.count_documents({"status": "active", "kind": {"$in": ["ward", "commune", "special_zone"]}}) == 168
    # The SIU agreement runs 2025-03-13 .. 2026-12-31 (Ho Chi Minh City calendar days).
    assert first["agreement"]["status"] == ("active" if local_date() <= date(2026, 12, 31) else "expired")
    assert operator.get("/programme").json()["targets"]["ward_commune"]["share"] == 0.8


def test_the_first_class_is_the_one_the_article_describes(operator, app_config):
    seeded = seed.load(app_config["GATEWAY_URL"], app_config["OPERATOR_TOKEN"], say=lambda _: None)
    session = operator.get("/sessions/" + seeded["session"]["id"]).json()
    # "Lớp đầu tiên dự kiến diễn ra ngày 22/3/2025 (cả ngày) tại Trường Đại học Ngân hàng TPHCM
    # (36 Tôn Thất Đạm, phường Nguyễn Thái Bình, Quận 1) dành cho khoảng 150 người"
    assert session["starts_at"] == "2025-03-22T08:00:00+07:00" and session["ends_at"] == "2025-03-22T17:00:00+07:00"
    assert session["capacity"] == 150
    assert session["address"].startswith("36 Tôn Thất Đạm, phường Nguyễn Thái Bình, Quận 1")
    assert "HUB" in session["venue_name"]
    # ...cán bộ, công chức thuộc Quận 1, Quận 3, Quận 4, Bình Thạnh và Phú Nhuận: the units of then.
    units = {u["code"]: u for u in operator.get("/units?status=dissolved&kind=district").json()["items"]}
    assert sorted(units[c]["name"] for c in session["eligible_units"]) == [
        "Quận 1", "Quận 3", "Quận 4", "Quận Bình Thạnh", "Quận Phú Nhuận"]
    assert all(units[c]["valid_until"] == "2025-06-30" for c in session["eligible_units"])
    # Two parts, whose hours add up to the day's two parts (3.5 h each, around lunch).
    offering = operator.get("/offerings/" + seeded["first_offering"]["id"]).json()
    [first_part, second_part] = offering["modules"]
    assert "xu hướng phát triển trí tuệ nhân tạo" in first_part["title"]
    assert "an toàn thông tin" in second_part["title"]
    assert "khu phố, ấp, tổ dân phố" in second_part["title"]
    assert [m["hours"] for m in offering["modules"]] == [3.5, 3.5] == [
        (int(p["ends_at"][11:13]) * 60 + int(p["ends_at"][14:16]) - int(p["starts_at"][11:13]) * 60
         - int(p["starts_at"][14:16])) / 60 for p in session["parts"]]
    assert set(offering["audience_groups"]) == {"district", "ward_commune"}
    # The agreement of 2025-03-13, and addresses nobody can receive mail at.
    agreement = seeded["agreement"]
    assert (agreement["signed_on"], agreement["valid_from"], agreement["valid_until"]) == (
        "2025-03-13", "2025-03-13", "2026-12-31")
    for partner in seeded["partners"].values():
        assert partner["contact_email"].endswith(".example")
    programme = operator.get("/programme").json()
    assert "57-NQ/TW" in programme["legal_basis"] and "Sở Nội vụ" in programme["legal_basis"]
