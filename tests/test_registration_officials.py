"""Officials and their units through the public API: phones in +84 form, accent-insensitive search,
unique by email and phone, staff lists imported from CSV (Excel's BOM, broken rows, re-import that
changes nothing), and unit merges that carry officials, quotas, sessions and registrations along."""
from tests.helpers import assert_error

OFFICIAL = {"full_name": "Nguyễn Thị Ánh", "email": "Anh.Nguyen@q1.hochiminhcity.gov.vn", "phone": "0903 123 456",
            "unit_code": "Q1", "audience_group": "ward_commune"}


def test_phones_are_stored_in_plus_84_form_and_foreign_or_service_numbers_are_refused(programme):
    created = programme.operator.post("/officials", OFFICIAL)
    assert created.status_code == 201, created.text
    assert created.json()["phone"] == "+84903123456" and created.json()["email"] == "anh.nguyen@q1.hochiminhcity.gov.vn"
    landline = programme.operator.post("/officials", dict(OFFICIAL, email="vp@q1.gov.vn", phone="(028) 3829 1234"))
    assert landline.json()["phone"] == "+842838291234", landline.text
    for phone in ("+1 212 555 0100", "12345", "1900 1234", "not a phone"):
        fields = assert_error(programme.operator.post("/officials", dict(OFFICIAL, email="x@q1.gov.vn", phone=phone)),
                              422, "invalid_fields")["fields"]
        assert "phone" in fields, phone
    assert_error(programme.operator.post("/officials", dict(OFFICIAL, phone="+84 90 312 3456")), 409, "official_exists")
    assert_error(programme.operator.post("/officials", dict(OFFICIAL, email="other@q1.gov.vn")), 409, "official_exists")
    assert_error(programme.operator.post("/officials", dict(OFFICIAL, email="y@q1.gov.vn", phone="0903999888",
                                                            unit_code="Q99")), 422, "unknown_unit")
    assert programme.db("registration").officials.count_documents({}) == 2


def test_search_finds_vietnamese_names_without_accents_or_case(programme):
    programme.operator.post("/officials", OFFICIAL)
    programme.official(full_name="Trần Văn Đức")
    programme.official(full_name="Nguyễn Thị Anh Thư")
    programme.official(full_name="Lê Thị Ngân")

    def names(q):
        return sorted(o["full_name"] for o in programme.operator.get("/officials?q=" + q).json()["items"])

    assert names("nguyen thi anh") == ["Nguyễn Thị Anh Thư", "Nguyễn Thị Ánh"]
    assert names("NGUYỄN ánh") == ["Nguyễn Thị Anh Thư", "Nguyễn Thị Ánh"]
    assert names("duc") == ["Trần Văn Đức"]
    assert names("tran van d") == ["Trần Văn Đức"]
    assert names("ngan") == ["Lê Thị Ngân"]
    assert names("guyen") == []  # words match from their start
    assert names(".*") == []  # a query is text, never a pattern
    # A control character is in no name, email or phone (the fuzzer's NUL once reached a pattern: a 500).
    for q in ("an%00h@", "%C2%9E%40K.%12"):
        refused = programme.operator.get("/officials?q=" + q)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["fields"] == {"q": ["Must not contain control characters."]}
    assert programme.operator.get("/units?q=b%00").json()["error"]["fields"] == {
        "q": ["Must not contain control characters."]}

    # A page at a time, the search kept from page to page.
    first = programme.operator.get("/officials?q=nguyen&limit=1").json()
    second = programme.operator.get("/officials?q=nguyen&limit=1&cursor=" + first["next_cursor"]).json()
    assert second["next_cursor"] is None
    assert sorted(o["full_name"] for o in first["items"] + second["items"]) == ["Nguyễn Thị Anh Thư", "Nguyễn Thị Ánh"]


CSV = ("full_name,email,phone,unit_code,audience_group\r\n"
       "Nguyễn Thị Ánh,anh.nguyen@q1.gov.vn,0903 123 456,Q1,district\r\n"
       "Trần Văn Đức,duc.tran@q1.gov.vn,0912345678,Q1,ward_commune\r\n"
       "Phạm Minh,not-an-email,0912345679,Q1,district\r\n"
       "Lê Thị Ngân,ngan.le@q1.gov.vn,+1 212 555 0100,Q1,district\r\n"
       "Võ Văn Kiệt,kiet.vo@q9.gov.vn,0912345670,Q9,district\r\n"
       "Nguyễn Thị Ánh,ANH.NGUYEN@q1.gov.vn,0903 123 457,Q1,district\r\n"
       "Hồ Thị Mai,mai.ho@q3.gov.vn,0912345671,Q3\r\n"
       "\r\n")


def test_a_staff_list_with_a_bom_and_broken_rows_imports_the_good_rows_and_a_re_import_changes_nothing(programme):
    path = "/officials/import"
    body = "\ufeff".encode("utf-8") + CSV.encode("utf-8")  # as Excel saves "CSV UTF-8"
    first = programme.operator.post(path, data=body, headers={"Content-Type": "text/csv"})
    assert first.status_code == 200, first.text
    result = first.json()
    assert (result["created"], result["updated"]) == (2, 0)
    assert {e["row"]: set(e["fields"]) for e in result["errors"]} == {
        4: {"email"}, 5: {"phone"}, 6: {"unit_code"}, 7: {"email"}, 8: {"_row"}}
    stored = programme.db("registration").officials.find_one({"email": "anh.nguyen@q1.gov.vn"})
    assert stored["full_name"] == "Nguyễn Thị Ánh" and stored["phone"] == "+84903123456"

    again = programme.operator.post(path, data=body, headers={"Content-Type": "text/csv"}).json()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 2)

    changed = CSV.replace("0912345678,Q1,ward_commune", "0912345678,Q3,ward_commune").encode("utf-8")
    third = programme.operator.post(path, data=changed, headers={"Content-Type": "text/csv"}).json()
    assert (third["created"], third["updated"], third["unchanged"]) == (0, 1, 1)
    assert programme.db("registration").officials.find_one({"email": "duc.tran@q1.gov.vn"})["unit_code"] == "Q3"
    assert programme.db("registration").officials.count_documents({}) == 2
    # Searchable like any other official.
    assert [o["full_name"] for o in programme.operator.get("/officials?q=duc tran").json()["items"]] == ["Trần Văn Đức"]


def test_a_file_with_unknown_columns_or_not_utf8_is_refused_whole(programme):
    assert_error(programme.operator.post("/officials/import", data="full_name,email,phone,unit_code,audience_group,"
                                         "salary\r\nA,a@b.vn,0903123456,Q1,district,1\r\n".encode("utf-8")),
                 422, "invalid_fields")
    assert_error(programme.operator.post("/officials/import", data="họ tên".encode("cp1258", "replace") + b"\xff"),
                 400, "malformed_csv")
    assert programme.db("registration").officials.count_documents({}) == 0


def test_merging_units_moves_officials_quotas_sessions_and_registrations_and_keeps_history(programme):
    session = programme.known_session(capacity=3, eligible_units=["Q1", "Q3"])
    programme.operator.post("/sessions/{}/quotas".format(session["id"]), {"quotas": {"Q1": 1, "Q3": 1}})
    q1, q3 = programme.official("Q1"), programme.official("Q3")
    r1, r3 = programme.registered(session, q1), programme.registered(session, q3)
    assert (r1["status"], r3["status"]) == ("confirmed", "confirmed")

    merged = programme.operator.post("/units/merge", {"from": ["Q1", "Q3"],
                                                      "into": {"code": "TT", "name": "Quận Trung Tâm"}})
    assert merged.status_code == 201, merged.text
    assert merged.json()["predecessors"] == ["Q1", "Q3"] and merged.json()["kind"] == "district"

    assert programme.operator.get("/officials/{}".format(q1["id"])).json()["unit_code"] == "TT"
    assert programme.operator.get("/registrations/{}".format(r3["id"])).json()["unit_code"] == "TT"
    # ...and remembers the unit it was made under.
    assert programme.db("registration").registrations.find_one({"_id": r3["id"]})["unit_code_then"] == "Q3"
    seats = programme.operator.get("/sessions/{}".format(session["id"])).json()
    assert seats["quotas"] == {"TT": {"seats": 2, "taken": 2}}
    stored = programme.db("registration").sessions.find_one({"_id": session["id"]})
    assert stored["eligible_units"] == ["TT"]
    units = {u["code"]: u for u in programme.operator.get("/units").json()["items"]}
    assert units["Q1"]["status"] == "dissolved" and units["Q1"]["successors"] == ["TT"]
    assert units["BEN-NGHE"]["parent_code"] == "TT"
    [event] = programme.outbox("units_reorganized")
    assert event["changes"] == [{"kind": "merge", "from_codes": ["Q1", "Q3"], "into_codes": ["TT"]}]

    # The merged unit's officials register as before; the old codes take no one new.
    newcomer = programme.official("TT")
    assert programme.registered(session, newcomer)["status"] == "waitlisted"  # the TT quota (2) is full
    assert_error(programme.operator.post("/officials", dict(OFFICIAL, unit_code="Q1")), 422, "unit_dissolved")
    assert_error(programme.operator.post("/units/merge", {"from": ["Q1"], "into": {"code": "X", "name": "X"}}),
                 422, "invalid_reorganization")
    assert_error(programme.operator.post("/units/merge", {"from": ["Q4"], "into": {"code": "TT", "name": "X"}}),
                 409, "unit_exists")
    # A session scheduled later with the old codes (scheduling's copy did not follow) is open to TT.
    later = programme.known_session(room="Phòng máy 1", trainer="ThS. Lê B", capacity=40, eligible_units=["Q3"])
    assert programme.registered(later, newcomer)["status"] == "confirmed"


def test_the_import_cli_sends_a_large_list_in_chunks_with_progress_and_file_row_numbers(programme, app_config, tmp_path):
    import io
    from services.registration import import_cli
    rows = ["full_name,email,phone,unit_code,audience_group"]
    rows += ["Đặng Thị Lớn {n},lon{n}@q3.gov.vn,0977{n:06d},Q3,ward_commune".format(n=n) for n in range(2500)]
    rows[1234] = "Đặng Thị Hỏng,hong@q3.gov.vn,12,Q3,ward_commune"  # file row 1235
    path = tmp_path / "danh-sach.csv"
    path.write_bytes("\ufeff".encode("utf-8") + "\r\n".join(rows).encode("utf-8"))
    progress = io.StringIO()
    summary = import_cli.run(str(path), app_config["GATEWAY_URL"], app_config["OPERATOR_TOKEN"], chunk=1000,
                             out=progress)
    assert (summary["created"], [e["row"] for e in summary["errors"]]) == (2499, [1235])
    assert "2500/2500 rows (100%)" in progress.getvalue() and "1000/2500" in progress.getvalue()
    again = import_cli.run(str(path), app_config["GATEWAY_URL"], app_config["OPERATOR_TOKEN"], chunk=1000,
                           out=io.StringIO())
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 2499)


def test_search_reads_a_range_of_the_word_index_and_officials_stored_before_it_get_their_words(programme):
    from services.registration import rules, store
    db = programme.db("registration")
    programme.operator.post("/officials", OFFICIAL)
    # Stored before search words existed: the migration gives it its words.
    older = rules.new_official(dict(OFFICIAL, full_name="Phạm Văn Cũ", email="cu@q1.gov.vn", phone="+84903000111"),
                               "official-older", None)
    for field in ("search_words", "name_words", "search_keys", "coverage_stale"):
        del older[field]
    db.officials.insert_one(older)
    assert programme.operator.get("/officials?q=pham cu").json()["items"] == []
    assert programme.operator.get("/officials?q=cu").json()["items"] == []
    for migration in store.MIGRATIONS:
        migration.apply(db)
    stored = db.officials.find_one({"_id": "official-older"})
    assert stored["search_words"] == ["84903000111", "cu", "gov", "pham", "q1", "van", "vn"]
    assert stored["name_words"] == ["cu", "pham", "van"] and "cu pham\tvan" in stored["search_keys"]
    assert [o["id"] for o in programme.operator.get("/officials?q=pham cu").json()["items"]] == ["official-older"]
    assert [o["id"] for o in programme.operator.get("/officials?q=cu").json()["items"]] == ["official-older"]
    # The leading word is a range of the index, not a scan of the collection; so is a name's key.
    leading = rules.leading_word(rules.query_words("Nguyễn Ánh"))
    plan = db.officials.find({"search_words": rules.prefix_range(leading)}).explain()["queryPlanner"]["winningPlan"]
    assert "IXSCAN" in str(plan) and "search_words" in str(plan), plan
    bounds, _ = rules.name_key_range(rules.query_words("Nguyễn Ánh"))
    plan = db.officials.find({"search_keys": bounds}).explain()["queryPlanner"]["winningPlan"]
    assert "IXSCAN" in str(plan) and "search_keys" in str(plan), plan


def test_a_name_query_takes_whole_words_in_any_order_and_the_start_of_the_last_one(programme):
    an, anh = programme.official(full_name="Nguyễn Văn An"), programme.official(full_name="Nguyễn Văn Anh", unit_code="Q3")
    thi_anh = programme.official(full_name="Nguyễn Thị Ánh")

    def found(q, client=programme.operator):
        return sorted(o["id"] for o in client.get("/officials?q=" + q).json()["items"])

    assert found("nguyen van an") == found("van an") == found("VĂN An") == sorted([an["id"], anh["id"]])
    assert found("an van") == found("an nguyen v") == [an["id"]]  # "an" whole: not Anh
    assert found("anh van") == found("van nguyen anh") == [anh["id"]]
    assert found("ngu van an") == []  # only the last word may be the start of one
    assert found("nguyen an") == sorted([an["id"], anh["id"], thi_anh["id"]])
    assert found("an") == sorted([an["id"], anh["id"], thi_anh["id"]])  # one word: the start of any word
    # A page at a time.
    first = programme.operator.get("/officials?q=van an&limit=1").json()
    second = programme.operator.get("/officials?q=van an&limit=1&cursor=" + first["next_cursor"]).json()
    assert second["next_cursor"] is None
    assert sorted(o["id"] for o in first["items"] + second["items"]) == sorted([an["id"], anh["id"]])
    # A coordinator of Q1 finds Q1's alone, and nobody when asking for another unit.
    made = programme.operator.post("/units/Q1/coordinators", {
        "full_name": "Trần Thị Điều Phối", "email": "dieuphoi@q1.gov.vn", "phone": "0903 111 222"})
    assert made.status_code == 201, made.text
    coordinator = programme.operator.as_(made.json()["api_token"])
    assert found("van an", coordinator) == [an["id"]]
    assert found("van an&unit_code=Q1", coordinator) == [an["id"]]
    assert found("van an&unit_code=Q3", programme.operator) == [anh["id"]]


def test_an_edited_official_is_found_by_the_new_name_and_an_erased_one_by_neither(programme):
    official = programme.official(full_name="Lê Văn Cũ")

    def found(q):
        return [o["id"] for o in programme.operator.get("/officials?q=" + q).json()["items"]]

    edited = programme.operator.post("/officials/{}/update".format(official["id"]), {"full_name": "Lê Văn Mới"})
    assert edited.status_code == 200, edited.text
    assert found("le van moi") == found("moi le") == [official["id"]]
    assert found("le van cu") == found("cu") == []
    erased = programme.operator.post("/officials/{}/erase".format(official["id"]), {"reason": "Yêu cầu xóa dữ liệu"})
    assert erased.status_code == 202, erased.text
    assert found("le van moi") == found("moi") == found("da xoa du lieu") == []
