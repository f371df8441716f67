"""Registration's rules on their own, no servers: ids and tokens, accent-free search, units and their
merges, who may register, seat arithmetic and who is promoted next, cancellation, check-in parts and
completion."""
from datetime import datetime, timedelta, timezone

import pytest

from backbone.errors import DomainError
from services.registration import rules

NOW = datetime(2025, 3, 22, 2, 0, tzinfo=timezone.utc)  # 09:00 in Ho Chi Minh City, the first class


def refused(call, *args):
    """The DomainError `call(*args)` raises (the test fails if it raises none)."""
    with pytest.raises(DomainError) as caught:
        call(*args)
    return caught.value


def session(**fields):
    """Registration's copy of a session: 4 seats for Quận 1 and 3, district officials, open."""
    return dict({"_id": "session-1", "status": "scheduled", "capacity": 4, "seats_taken": 0,
                 "eligible_units": ["Q1", "Q3"], "audience_groups": ["district"], "quotas": {}, "unit_seats": {},
                 "registration_closes_at": NOW + timedelta(days=1), "partner_id": "partner-siu",
                 "starts_at": NOW, "ends_at": NOW + timedelta(hours=4)}, **fields)


def official(unit_code="Q1", audience_group="district"):
    return {"_id": "official-1", "unit_code": unit_code, "audience_group": audience_group}


# -- ids, keys and tokens ----------------------------------------------------------------------------------

def test_the_same_official_and_session_always_give_the_same_registration_id_and_others_differ():
    first = rules.registration_id("session-1", "official-1")
    assert first == rules.registration_id("session-1", "official-1")
    assert first.startswith("registration-") and len(first) == len("registration-") + 20
    assert len({first, rules.registration_id("session-2", "official-1"),
                rules.registration_id("session-1", "official-2")}) == 3


@pytest.mark.parametrize("session_id, official_id, secret", [
    ("session-1", "official-1", "s3cr3t-AbC_d"),
    ("session-3f2a", "official-9b1c", "x"),
    ("session-1", "official-1", "with.a.dot"),
])
def test_a_qr_token_names_its_registration_and_round_trips(session_id, official_id, secret):
    registration_id = rules.registration_id(session_id, official_id)
    token = rules.qr_token(registration_id, secret)
    assert token.endswith("." + secret) and registration_id not in token
    assert rules.registration_of_token(token) == registration_id
    assert not rules.is_legacy_token(token)


@pytest.mark.parametrize("token, legacy", [("abc.def", False), ("no-such-token", True), ("", True)])
def test_a_token_without_a_dot_is_a_legacy_token_looked_up_by_itself(token, legacy):
    assert rules.is_legacy_token(token) is legacy


def test_a_token_opens_only_its_own_registration_in_its_own_session():
    registration = {"_id": "registration-ab", "session_id": "session-1", "qr_token": "ab.secret"}
    assert rules.require_token(registration, "session-1", "ab.secret") is registration
    for found, session_id, token in ((None, "session-1", "ab.secret"),
                                     (registration, "session-2", "ab.secret"),
                                     (registration, "session-1", "ab.guess")):
        error = refused(rules.require_token, found, session_id, token)
        assert (error.status, error.code) == (404, "not_found")


def test_a_check_in_of_the_same_part_twice_has_the_same_attendance_id():
    assert rules.attendance_id("registration-ab", 2) == rules.attendance_id("registration-ab", 2) == "registration-ab:2"
    assert rules.attendance_id("registration-ab", 1) != rules.attendance_id("registration-ab", 2)


@pytest.mark.parametrize("code, key", [
    ("Q1", "Q1"), ("HCM.Q1", "HCM%2EQ1"), ("A$B", "A%24B"), ("50%", "50%25"), ("a%2Eb.c", "a%252Eb%2Ec")])
def test_unit_codes_become_keys_without_dots_or_dollars_and_come_back(code, key):
    assert rules.unit_key(code) == key
    assert "." not in key and "$" not in key
    assert rules.unit_code_of(key) == code


# -- search ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, folded", [
    ("Nguyễn Thị Ánh", "nguyen thi anh"),
    ("Trần Văn Đức", "tran van duc"),
    ("đường ĐÔNG", "duong dong"),
    ("  Lê   Thị\tNgân ", "le thi ngan"),
    ("NGUYỄN ánh", "nguyen anh"),
    ("anh.nguyen@q1.gov.vn", "anh.nguyen@q1.gov.vn"),
])
def test_search_folds_accents_case_and_spaces_and_d_with_stroke(text, folded):
    assert rules.fold(text) == folded


def test_an_official_is_found_by_name_email_and_phone_folded():
    text = rules.search_text({"full_name": "Trần Văn Đức", "email": "Duc.Tran@Q1.gov.vn", "phone": "+84912345678"})
    assert text == "tran van duc duc.tran@q1.gov.vn +84912345678"



@pytest.mark.parametrize("q, name", [
    ("nguyen van an", True), ("NGUYỄN ánh", True), ("an", False), ("nguyen", False),
    ("an.nguyen", False), ("an.nguyen@q1.gov.vn", False), ("0903 123 456", False), ("nguyen 0903", False),
    ("canbo12", False), (".*", False), ("", False),
])
def test_several_plain_words_are_a_name_and_anything_with_a_digit_or_a_contact_mark_is_not(q, name):
    assert rules.is_name_query(q) is name


def test_a_name_has_keys_of_each_word_after_one_or_two_others_and_no_key_of_a_contact_like_word():
    words = rules.name_words("Nguyễn Văn An")
    assert words == ["an", "nguyen", "van"]
    assert rules.search_keys(words) == [
        "an\tnguyen", "an\tvan", "an nguyen\tvan", "an van\tnguyen", "nguyen\tan", "nguyen\tvan",
        "nguyen van\tan", "van\tan", "van\tnguyen"]
    assert rules.name_words("Nguyễn Thị Bench 12") == ["bench", "nguyen", "thi"]
    assert len(rules.search_keys(rules.name_words("Nguyễn Thị Ngọc Anh"))) == 24
    assert rules.search_keys(rules.name_words("An")) == []


def found_by_name(full_name, q):
    """What the name query's read finds: a key of the name in the range, the rest among its words."""
    words = rules.name_words(full_name)
    bounds, rest = rules.name_key_range(rules.query_words(q))
    in_range = any(bounds["$gte"] <= key < bounds["$lt"] for key in rules.search_keys(words))
    return in_range and set(rest) <= set(words)


@pytest.mark.parametrize("full_name, q, found", [
    ("Nguyễn Văn An", "nguyen van an", True),
    ("Nguyễn Văn Anh", "nguyen van an", True),  # the last word typed is the start of a word
    ("Nguyễn Văn An", "ngu van an", False),  # the others are whole words
    ("Nguyễn Văn An", "van an", True),
    ("Nguyễn Văn Anh", "van an", True),
    ("Nguyễn Văn An", "an van", True),  # in any order
    ("Nguyễn Văn Anh", "an van", False),
    ("Nguyễn Văn Anh", "an nguyen", False),
    ("Nguyễn Thị Anh Thư", "nguyen thi anh", True),
    ("Nguyễn Thị Ánh", "NGUYỄN ánh", True),
    ("Trần Văn Đức", "duc tran", True),
    ("Trần Văn Đức", "tran van d", True),
    ("Trần Văn Đức", "tran van duc", True),
    ("Trần Văn Đức", "tran thi duc", False),
    ("Quách Thị Đã Nhập", "quach thi da nhap", True),  # a third whole word is checked on what was read
    ("Quách Văn Đã Nhập", "quach thi da nhap", False),
    ("Nguyễn Văn An", "an an", False),  # the last word begins another word than the whole ones
    ("Nguyễn An Anh", "an an", True),
    ("Nguyễn Văn An", "nguyen nguyen an", True),  # a word typed twice counts once
])
def test_a_name_query_reads_the_keys_of_exactly_the_names_it_matches(full_name, q, found):
    assert found_by_name(full_name, q) is found


def test_a_name_query_keys_on_its_two_least_common_looking_whole_words():
    bounds, rest = rules.name_key_range(["nguyen", "thi", "quach", "da", "nhap"])
    assert bounds == {"$gte": "da quach\tnhap", "$lt": "da quach\tnhaq"} and rest == ["nguyen", "thi"]


# -- units and officials ------------------------------------------------------------------------------------------

def test_a_unit_is_found_by_the_words_of_its_name_or_code_without_accents():
    assert rules.unit_search_text({"code": "26740", "name": "Phường Sài Gòn"}) == "phuong sai gon 26740"


def test_a_parent_unit_must_exist_when_one_is_named():
    rules.require_known_parent(None, None)
    rules.require_known_parent("Q1", {"_id": "Q1"})
    error = refused(rules.require_known_parent, "Q99", None)
    assert (error.code, error.fields) == ("unknown_unit", {"parent_code": ["Unknown unit."]})


@pytest.mark.parametrize("unit, problem, code", [
    ({"_id": "Q1", "status": "active"}, None, None),
    (None, "Unknown unit.", "unknown_unit"),
    ({"_id": "Q1", "status": "dissolved", "successors": ["26740", "26743"]},
     "Dissolved; it became 26740, 26743.", "unit_dissolved"),
    ({"_id": "Q1", "status": "merged", "merged_into": "TT"}, "Dissolved; it became TT.", "unit_dissolved"),
])
def test_officials_are_placed_only_in_units_that_exist_and_were_not_dissolved(unit, problem, code):
    assert rules.unit_problem(unit) == problem
    if code is None:
        assert rules.require_active_unit(unit, "Q1") is unit
    else:
        error = refused(rules.require_active_unit, unit, "Q1", "quotas")
        assert (error.code, error.fields) == (code, {"quotas": [problem]})


def test_a_new_official_has_a_lower_case_email_an_id_and_a_search_text():
    made = rules.new_official({"full_name": "Nguyễn Thị Ánh", "email": "Anh.Nguyen@Q1.gov.vn",
                               "phone": "+84903123456", "unit_code": "Q1"}, "official-7", NOW)
    assert (made["_id"], made["id"], made["email"], made["created_at"]) == (
        "official-7", "official-7", "anh.nguyen@q1.gov.vn", NOW)
    assert made["search"] == "nguyen thi anh anh.nguyen@q1.gov.vn +84903123456"


@pytest.mark.parametrize("codes, successors, current", [
    (["Q1", "Q3"], {}, ["Q1", "Q3"]),
    (["Q1", "Q3"], {"Q1": ["TT"], "Q3": ["TT"]}, ["TT"]),  # both merged into one: named once
    (["BEN-NGHE"], {"BEN-NGHE": ["Q1-NEW"], "Q1-NEW": ["SAI-GON"]}, ["SAI-GON"]),  # followed transitively
    (["A"], {"A": ["B"], "B": ["A"]}, ["A"]),  # a cycle stops where it closes
    (["X"], {"X": ["Y", "Z"], "Y": ["D"], "Z": ["D"], "D": ["E"]}, ["E"]),  # two ways to one unit
    (["Q4", "Q1"], {"Q1": ["Q4"]}, ["Q4"]),
    (["NTB"], {"NTB": ["BEN-THANH", "SAI-GON"]}, ["BEN-THANH", "SAI-GON"]),  # a split: open to each part
])
def test_a_session_naming_dissolved_units_is_open_to_the_units_of_today(codes, successors, current):
    assert rules.current_codes(codes, successors) == current


# -- who may read and register -----------------------------------------------------------------------------

@pytest.mark.parametrize("actor, status", [
    ({"role": "operator"}, None),
    ({"role": "partner", "partner_id": "partner-siu"}, None),
    ({"role": "partner", "partner_id": "partner-buh"}, 403),
    (None, 401),
])
def test_the_operator_and_the_delivering_partner_read_a_sessions_registrations(actor, status):
    if status is None:
        rules.require_session_reader(actor, session())
    else:
        assert refused(rules.require_session_reader, actor, session()).status == status


@pytest.mark.parametrize("changes, who, after_cutoff, code", [
    ({}, official(), False, None),
    ({}, None, False, "unknown_official"),
    ({}, official(unit_code="Q4"), False, "not_eligible"),
    ({}, official(audience_group="leader"), False, "not_eligible"),
    ({"eligible_units": []}, official(unit_code="Q4"), False, None),  # every unit invited
    ({"status": "cancelled"}, official(), False, "registration_closed"),
    ({"status": "cancelled"}, official(), True, "registration_closed"),
    ({"registration_closes_at": NOW - timedelta(minutes=1)}, official(), False, "registration_closed"),
    ({"registration_closes_at": NOW - timedelta(minutes=1)}, official(), True, None),  # the operator, explicitly
    ({"registration_closes_at": None}, official(), False, None),
])
def test_invited_officials_register_before_the_cut_off_and_the_operator_after_it_when_asked(
        changes, who, after_cutoff, code):
    if code is None:
        rules.require_registrable(session(**changes), who, after_cutoff, NOW)
    else:
        assert refused(rules.require_registrable, session(**changes), who, after_cutoff, NOW).code == code


# -- seats, quotas and the waitlist --------------------------------------------------------------------------

@pytest.mark.parametrize("capacity, seats_taken, unit_taken, quota, free", [
    (150, 149, 0, None, True),
    (150, 150, 0, None, False),  # the 151st waits
    (4, 2, 1, 2, True),
    (4, 2, 2, 2, False),  # the unit's quota is used up while seats remain
    (4, 4, 0, 2, False),
    (0, 0, 0, None, False),
])
def test_a_seat_is_free_while_the_session_has_one_and_the_unit_is_under_its_quota(
        capacity, seats_taken, unit_taken, quota, free):
    assert rules.seat_free(capacity, seats_taken, unit_taken, quota) is free


@pytest.mark.parametrize("changes, open_", [
    ({"seats_taken": 3}, True), ({"seats_taken": 4}, False), ({"seats_taken": 5, "capacity": 4}, False),
    ({"status": "cancelled"}, False)])
def test_a_scheduled_session_with_fewer_seats_taken_than_it_has_has_an_open_seat(changes, open_):
    assert rules.has_open_seat(session(**changes)) is open_


@pytest.mark.parametrize("quotas, unit_seats, full", [
    ({}, {"Q1": 3}, []),
    ({"Q1": 2, "Q3": 2}, {"Q1": 2, "Q3": 1}, ["Q1"]),
    ({"Q1": 2}, {}, []),
    ({"HCM%2EQ1": 1}, {"HCM%2EQ1": 1}, ["HCM.Q1"]),
])
def test_units_whose_quota_is_used_up_are_full(quotas, unit_seats, full):
    assert rules.full_units(session(quotas=quotas, unit_seats=unit_seats)) == full


WAITLIST = [{"_id": "w3", "unit_code": "Q3", "waitlist_position": 3},
            {"_id": "w1", "unit_code": "Q1", "waitlist_position": 1},
            {"_id": "w2", "unit_code": "Q1", "waitlist_position": 2}]


@pytest.mark.parametrize("changes, waitlisted, promoted", [
    ({"seats_taken": 3}, WAITLIST, "w1"),  # lowest position first
    ({"seats_taken": 3, "quotas": {"Q1": 2}, "unit_seats": {"Q1": 2}}, WAITLIST, "w3"),  # Q1 at quota: Q3 goes first
    ({"seats_taken": 3, "quotas": {"Q1": 3}, "unit_seats": {"Q1": 2}}, WAITLIST, "w1"),  # a raised quota lets Q1 in
    ({"seats_taken": 3, "quotas": {"Q1": 2, "Q3": 1}, "unit_seats": {"Q1": 2, "Q3": 1}}, WAITLIST, None),
    ({"seats_taken": 4}, WAITLIST, None),  # no seat
    ({"seats_taken": 3, "status": "cancelled"}, WAITLIST, None),
    ({"seats_taken": 0}, [], None),  # nobody waits
])
def test_a_free_seat_goes_to_the_first_waitlisted_official_whose_unit_is_under_its_quota(
        changes, waitlisted, promoted):
    chosen = rules.promoted_next(session(**changes), waitlisted)
    assert (chosen and chosen["_id"]) == promoted


@pytest.mark.parametrize("code, unit, eligible, refusal", [
    ("Q1", {"_id": "Q1", "status": "active"}, ["Q1", "Q3"], None),
    ("Q4", {"_id": "Q4", "status": "active"}, ["Q1", "Q3"], "invalid_fields"),  # not invited
    ("Q4", {"_id": "Q4", "status": "active"}, [], None),  # every unit invited
    ("Q99", None, ["Q1"], "unknown_unit"),
    ("Q1", {"_id": "Q1", "status": "dissolved", "successors": ["TT"]}, ["Q1"], "unit_dissolved"),
])
def test_a_quota_is_for_an_active_unit_the_session_invites(code, unit, eligible, refusal):
    if refusal is None:
        rules.require_quota_unit(session(eligible_units=eligible), code, unit)
    else:
        error = refused(rules.require_quota_unit, session(eligible_units=eligible), code, unit)
        assert (error.code, list(error.fields)) == (refusal, ["quotas"])


@pytest.mark.parametrize("seats_taken, capacity, over", [(4, 1, 3), (4, 4, 0), (2, 4, 0), (0, 0, 0)])
def test_fewer_seats_than_confirmed_officials_shows_how_many_too_many(seats_taken, capacity, over):
    assert rules.over_capacity(seats_taken, capacity) == over


# -- cancellation --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("status, cancel", [("confirmed", True), ("waitlisted", True), ("cancelled", False)])
def test_live_registrations_are_cancelled_and_a_cancelled_one_is_left_as_it_is(status, cancel):
    assert rules.must_cancel({"status": status}) is cancel


def test_a_completed_course_cannot_be_cancelled():
    assert refused(rules.must_cancel, {"status": "completed"}).code == "registration_completed"


def test_a_cancellation_says_when_why_by_whom_and_what_it_was_before():
    assert rules.cancellation("waitlisted", "Bận công tác", "official", NOW) == {
        "status": "cancelled", "cancelled_at": NOW, "cancel_reason": "Bận công tác", "cancel_cause": "official",
        "status_before_cancel": "waitlisted"}


# -- check-in and completion -------------------------------------------------------------------------------------

MORNING = {"starts_at": NOW - timedelta(hours=1), "ends_at": NOW + timedelta(hours=2)}
AFTERNOON = {"starts_at": NOW + timedelta(hours=4), "ends_at": NOW + timedelta(hours=7)}


def test_a_session_without_parts_is_one_part_and_a_full_day_keeps_its_two():
    single = session()
    assert rules.parts_of(single) == [{"starts_at": single["starts_at"], "ends_at": single["ends_at"]}]
    assert rules.parts_of(session(parts=[MORNING, AFTERNOON])) == [MORNING, AFTERNOON]


@pytest.mark.parametrize("status, refused_", [
    ("confirmed", False), ("completed", False), ("waitlisted", True), ("cancelled", True)])
def test_only_confirmed_or_completed_registrations_are_checked_in(status, refused_):
    if refused_:
        assert refused(rules.require_confirmed, {"status": status}).code == "not_confirmed"
    else:
        rules.require_confirmed({"status": status})


@pytest.mark.parametrize("now, part", [
    (NOW, 1), (NOW + timedelta(hours=5), 2),
    (NOW + timedelta(hours=3), 1),  # lunch: no part runs, the first
    (MORNING["starts_at"], 1), (AFTERNOON["ends_at"], 1)])  # a part runs from its start until (not at) its end
def test_the_part_running_now_is_the_default_else_the_first(now, part):
    assert rules.part_now([MORNING, AFTERNOON], now) == part


@pytest.mark.parametrize("asked, now, part", [
    (None, NOW + timedelta(hours=5), 2), (2, NOW, 2), (1, NOW + timedelta(hours=5), 1)])
def test_a_check_in_records_the_part_asked_for_else_the_one_running(asked, now, part):
    assert rules.part_to_check_in([MORNING, AFTERNOON], asked, now) == part


def test_a_part_the_session_does_not_have_is_refused():
    error = refused(rules.part_to_check_in, [MORNING, AFTERNOON], 3, NOW)
    assert (error.code, error.fields) == ("unknown_part", {"part": ["At most 2."]})


@pytest.mark.parametrize("status, attended, parts, completes", [
    ("confirmed", [1, 2], [MORNING, AFTERNOON], True),
    ("confirmed", [2, 1], [MORNING, AFTERNOON], True),
    ("confirmed", [1], [MORNING, AFTERNOON], False),  # the morning only: attended, not completed
    ("confirmed", [1], [MORNING], True),
    ("confirmed", [], [MORNING], False),
    ("confirmed", None, [MORNING], False),
    ("completed", [1, 2], [MORNING, AFTERNOON], False),  # completed once: no second certificate
])
def test_attending_every_part_completes_the_course_once(status, attended, parts, completes):
    assert rules.completes_course(status, attended, parts) is completes


# -- who sees what, and when the door is open ------------------------------------------------------------

OPERATOR = {"role": "operator"}
SIU = {"role": "partner", "partner_id": "partner-siu"}


@pytest.mark.parametrize("actor, sees", [(OPERATOR, True), (SIU, False), (None, False), ({}, False)])
def test_only_the_operator_sees_officials_contacts_and_qr_tokens(actor, sees):
    assert rules.sees_personal_data(actor) is sees


def test_check_in_opens_an_hour_before_the_start_and_closes_at_the_end():
    opens, closes = rules.checkin_window(session())
    assert (opens, closes) == (NOW - timedelta(hours=1), NOW + timedelta(hours=4))


@pytest.mark.parametrize("now, actor, after_session, outcome", [
    (NOW - timedelta(hours=1, seconds=1), OPERATOR, False, "checkin_not_open"),
    (NOW - timedelta(hours=1, seconds=1), OPERATOR, True, "checkin_not_open"),  # attendance never precedes
    (NOW - timedelta(days=3), SIU, False, "checkin_not_open"),
    (NOW - timedelta(hours=1), SIU, False, None),                              # people arrive early
    (NOW + timedelta(hours=2), SIU, False, None),
    (NOW + timedelta(hours=4), SIU, False, None),                              # the last minute counts
    (NOW + timedelta(hours=4, seconds=1), SIU, False, "checkin_closed"),
    (NOW + timedelta(hours=4, seconds=1), OPERATOR, False, "checkin_closed"),  # only when it says so
    (NOW + timedelta(days=300), OPERATOR, True, None),                         # the sign-in sheet, later
    (NOW + timedelta(hours=2), OPERATOR, True, None),
    (NOW + timedelta(hours=5), SIU, True, 403),
    (NOW + timedelta(hours=2), SIU, True, 403),
])
def test_check_in_is_at_the_door_on_the_day_and_afterwards_only_the_operator_records_it(
        now, actor, after_session, outcome):
    if outcome is None:
        rules.require_checkin_open(session(), now, actor, after_session)
        return
    error = refused(rules.require_checkin_open, session(), now, actor, after_session)
    assert (error.status, error.code) == ((403, "forbidden") if outcome == 403 else (422, outcome))


def test_search_words_and_the_leading_word_of_a_query():
    official = rules.new_official({"full_name": "Nguyễn Thị Ánh", "email": "Anh.Nguyen@q1.gov.vn",
                                   "phone": "+84903123456", "unit_code": "Q1", "audience_group": "ward_commune"},
                                  "official-1", None)
    assert official["search_words"] == ["84903123456", "anh", "gov", "nguyen", "q1", "thi", "vn"]
    # The common words of Vietnamese names lead only when nothing else is asked.
    assert rules.query_words("Nguyễn  Thị.ÁNH") == ["nguyen", "thi", "anh"]
    assert rules.leading_word(["nguyen", "thi", "tuyet"]) == "tuyet"
    assert rules.leading_word(["tuyet", "nguyen", "canbo123"]) == "canbo123"
    assert rules.leading_word(["nguyen", "thi", "anh"]) == "anh"  # all common: the given name
    assert rules.prefix_range("ngu") == {"$gte": "ngu", "$lt": "ngv"}
    assert rules.prefix_range("a9") == {"$gte": "a9", "$lt": "a:"}
