"""The city as it is now (issue 17): its 2025 map loaded from the packages that keep it, and its
reorganisations as data, through the public API with the real services."""
from tests.helpers import assert_error, at, day


def units(client, **query):
    found, cursor = [], None
    while True:
        page = client.get("/units?" + "&".join("{}={}".format(k, v) for k, v in dict(
            query, limit=200, **({"cursor": cursor} if cursor else {})).items())).json()
        found += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return found


def test_the_map_loads_the_168_units_of_today_the_departments_and_the_first_classs_units(operator):
    first = operator.post("/units/load-map")
    assert first.status_code == 200, first.text
    again = operator.post("/units/load-map").json()
    assert again["created"] == 0 and again["known"] == first.json()["created"] + first.json()["known"]
    commune_level = [u for u in units(operator, status="active")
                     if u["kind"] in ("ward", "commune", "special_zone") and u["parent_code"] == "79"]
    assert len(commune_level) == 168
    assert {u["kind"] for u in commune_level} == {"ward", "commune", "special_zone"}
    assert any(u["code"] == "26732" and u["name"] == "Đặc khu Côn Đảo" for u in commune_level)
    departments = units(operator, kind="department")
    assert any(u["name"] == "Sở Khoa học và Công nghệ" for u in departments)
    assert units(operator, kind="leadership")
    # Quận 1 and its wards of early 2025: dissolved on 2025-07-01, with what they became.
    districts = {u["name"]: u for u in units(operator, status="dissolved", kind="district")}
    assert set(districts) == {"Quận 1", "Quận 3", "Quận 4", "Quận Bình Thạnh", "Quận Phú Nhuận"}
    assert districts["Quận 1"]["valid_until"] == "2025-06-30"
    [ntb] = units(operator, q="nguyen thai binh", status="dissolved")
    named = {u["code"]: u["name"] for u in units(operator, status="active")}
    assert [named[c] for c in ntb["successors"]] == ["Phường Bến Thành", "Phường Sài Gòn"]  # divided
    [sai_gon] = units(operator, q="sai gon", kind="ward")
    assert sai_gon["code"] == "26740" and "old-26740" in sai_gon["predecessors"]  # Bến Nghé became Sài Gòn


def test_a_split_places_officials_as_told_and_lists_the_others_to_reassign(programme):
    operator = programme.operator
    assert operator.post("/units", {"code": "NTB", "name": "Phường Nguyễn Thái Bình", "kind": "ward",
                                    "parent_code": "Q1"}).status_code == 201
    session = programme.known_session(eligible_units=["NTB"], audience_groups=["ward_commune"])
    a, b, c = (programme.official("NTB", "ward_commune") for _ in range(3))
    programme.registered(session, a)
    split = operator.post("/units/reorganize", {"effective_on": "2025-07-01", "changes": [{
        "from": ["NTB"], "into": [{"code": "BEN-THANH", "name": "Phường Bến Thành"},
                                  {"code": "SAI-GON", "name": "Phường Sài Gòn"}],
        "officials": {a["id"]: "SAI-GON"}}]})
    assert split.status_code == 200, split.text
    assert split.json()["officials_moved"] == 1
    assert sorted(split.json()["to_reassign"]) == sorted([b["id"], c["id"]])  # nothing silently dropped
    assert operator.get("/officials/" + a["id"]).json()["unit_code"] == "SAI-GON"
    assert operator.get("/officials/" + b["id"]).json()["unit_code"] == "NTB"
    stored = programme.db("registration").sessions.find_one({"_id": session["id"]})
    assert stored["eligible_units"] == ["BEN-THANH", "SAI-GON"] and stored["unit_seats"] == {"SAI-GON": 1}
    # With a rule for the others, a second split of such a unit places everyone.
    assert operator.post("/units", {"code": "DK", "name": "Phường Đa Kao", "kind": "ward"}).status_code == 201
    d, e = programme.official("DK", "ward_commune"), programme.official("DK", "ward_commune")
    split = operator.post("/units/reorganize", {"effective_on": "2025-07-01", "changes": [{
        "from": ["DK"], "into": [{"code": "TAN-DINH", "name": "Phường Tân Định"}, {"code": "SG2", "name": "Phường X"}],
        "officials": {d["id"]: "SG2"}, "default": "TAN-DINH"}]})
    assert (split.json()["officials_moved"], split.json()["to_reassign"]) == (2, [])
    assert operator.get("/officials/" + e["id"]).json()["unit_code"] == "TAN-DINH"


def test_a_bad_plan_is_refused_whole_naming_the_change(programme):
    before = programme.db("registration").units.count_documents({})
    refused = programme.operator.post("/units/reorganize", {"effective_on": "2025-07-01", "changes": [
        {"from": ["Q1"], "into": [{"code": "A1", "name": "A"}]},
        {"from": ["Q1", "Q3"], "into": [{"code": "A2", "name": "B"}]}]})
    error = assert_error(refused, 422, "invalid_reorganization")
    assert "also dissolved by change 0" in error["fields"]["changes"]["1"]["from"][0]
    assert programme.db("registration").units.count_documents({}) == before


def test_a_merge_after_registrations_reports_units_as_of_then_and_as_of_now(programme):
    session = programme.known_session(eligible_units=["Q1", "Q3"], starts_at=at(3, "08:00"), ends_at=at(3, "11:00"))
    q1, q3 = programme.official("Q1"), programme.official("Q3")
    programme.registered(session, q1)
    programme.registered(session, q3)
    merged = programme.operator.post("/units/reorganize", {"effective_on": "2025-07-01", "changes": [
        {"from": ["Q1", "Q3"], "into": [{"code": "SAI-GON", "name": "Phường Sài Gòn", "kind": "ward"}]}]})
    assert merged.status_code == 200, merged.text

    def by_unit(units_as_of):
        report = programme.operator.get("/reports/unit?units=" + units_as_of).json()
        return {row["unit"]: row["registered"] for row in report["items"]}
    assert by_unit("then") == {"Q1": 1, "Q3": 1}
    assert by_unit("now") == {"SAI-GON": 2}
    # Newcomers of the new unit register as before; the old codes take no one new.
    newcomer = programme.official("SAI-GON")
    assert programme.registered(session, newcomer)["status"] == "confirmed"
    assert_error(programme.operator.post("/officials", {
        "full_name": "Lê Văn C", "email": "c@q1.gov.vn", "phone": "0909000111", "unit_code": "Q1",
        "audience_group": "ward_commune"}), 422, "unit_dissolved")


def test_coverage_of_a_small_programme_is_what_a_hand_count_says(programme, db):
    operator = programme.operator
    assert operator.post("/programme", {
        "name": "Chương trình thử", "legal_basis": "Nghị quyết số 57-NQ/TW", "starts_on": day(-30).isoformat(),
        "ends_on": day(300).isoformat(), "targets": {"ward_commune": {"share": 0.5, "deadline": day(300).isoformat()}}
    }).status_code == 200
    # Quận 1: four on its roster; Quận 3: two imported of the ten it declares.
    a, b, c, d = (programme.official("Q1") for _ in range(4))
    e, f = programme.official("Q3"), programme.official("Q3")
    assert operator.post("/units/Q3/headcount", {"audience_group": "ward_commune", "staff": 10}).status_code == 200
    held = programme.known_session(starts_at=at(-1, "08:00"), ends_at=at(-1, "11:00"))
    for official in (a, b, c, e, f):
        registration = programme.register(held, official, after_cutoff=True).json()
        if official in (a, b, e):  # they came (the sign-in sheet, recorded afterwards)
            checked = operator.post("/sessions/{}/checkins".format(held["id"]),
                                    {"qr_token": registration["qr_token"], "after_session": True})
            assert checked.status_code == 200, checked.text
        if official is f:
            assert operator.post("/registrations/{}/cancel".format(registration["id"]), {}).status_code == 200

    def report(**query):
        answer = operator.get("/reports/coverage?" + "&".join("{}={}".format(k, v) for k, v in query.items()))
        assert answer.status_code == 200, answer.text
        return answer.json()

    by_unit = {r["key"]: r for r in report(by="unit")["items"]}
    assert {k: by_unit[k] for k in ("Q1", "Q3")} == {
        "Q1": {"key": "Q1", "name": "Quận 1", "staff": 4, "trained": 2, "coverage": 0.5, "registered": 3,
               "attended": 2, "target": 0.5, "gap": 0},
        "Q3": {"key": "Q3", "name": "Quận 3", "staff": 10, "trained": 1, "coverage": 0.1, "registered": 1,
               "attended": 1, "target": 0.5, "gap": 4}}
    totals = report(by="audience_group")["totals"]
    assert (totals["staff"], totals["trained"], totals["registered"], totals["gap"]) == (14, 3, 4, 4)
    assert totals["coverage"] == round(3 / 14, 4)
    [siu] = report(by="partner")["items"]
    assert (siu["key"], siu["name"], siu["trained"]) == (programme.siu_id, "Trường Đại học Quốc tế Sài Gòn", 3)
    assert report(by="month")["items"][-1]["trained"] == 3
    # As things stood before anyone registered: nothing yet.
    earlier = report(by="unit", as_of=day(-2).isoformat())["totals"]
    assert (earlier["registered"], earlier["trained"]) == (0, 0)
    csv_text = operator.get("/reports/coverage?by=unit&format=csv").content.decode("utf-8-sig")
    assert csv_text.splitlines()[0] == "key,name,staff,trained,coverage,registered,attended,target,gap"
    assert "Q3,Quận 3,10,1,0.1,1,1,0.5,4" in csv_text.splitlines()
    assert operator.get("/reports/coverage?by=unit&format=pdf").content.startswith(b"%PDF")
    assert_error(operator.get("/reports/coverage?by=district"), 422, "invalid_fields")
    # A day outside the programme's century is a typo, not thousands of months to count (fuzzing found it).
    assert "as_of" in assert_error(operator.get("/reports/coverage?by=month&as_of=0520-01-24"), 422, "invalid_fields")["fields"]
    assert "ends_on" in assert_error(operator.post("/programme", {
        "name": "X", "legal_basis": "Y", "starts_on": "2026-01-01", "ends_on": "2025-01-01", "targets": {}}),
        422, "invalid_fields")["fields"]

    record = operator.get("/officials/{}/record".format(a["id"])).json()
    [entry] = record["registrations"]
    assert entry["session_id"] == held["id"] and entry["status"] == "completed" and entry["certificate"]["code"]
    assert [a_["part"] for a_ in entry["attendance"]] == [1] and entry["session"]["title"]
    assert operator.get("/officials/{}/record".format(d["id"])).json()["registrations"] == []
    assert_error(programme.siu.get("/officials/{}/record".format(a["id"])), 403, "forbidden")


def test_district_is_history_new_offerings_and_sessions_for_it_are_refused(programme):
    offering = programme.siu.post("/offerings", {
        "title": "Khóa học cho cán bộ quận", "audience_groups": ["district"], "modules": [],
        "starts_from": day(5).isoformat(), "ends_by": day(30).isoformat()})
    assert_error(offering, 422, "audience_group_retired")
    assert "audience_groups" in offering.json()["error"]["fields"]
    assert_error(programme.schedule(audience_groups=["district"]), 422, "audience_group_retired")
