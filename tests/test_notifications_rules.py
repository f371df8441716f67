"""The rules of notices (services/notifications/rules.py), no servers: which notice an event makes and
for whom, its id, quiet hours, reminders, retries, unsubscribe links, and what an SMS costs (GSM 03.38
vectors)."""
import hashlib
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from backbone.clock import LOCAL
from backbone.logs import mask
from services.notifications.rules import (
    addressed, cancellation_notice, carries_invite, carries_qr, cost, forgotten_before, is_gsm7, language_of,
    notice_id, opt_out_key, prepare, quiet_until, recipient_of, refusal_is_permanent, reminder_due_at,
    reminder_in_time, reminder_key, reminder_of, retry_delay, retry_round, segments, signed_by_us, transliterate,
    subscription_change, unsubscribe_signature, unsubscribe_url)


def local(*args):
    return datetime(*args, tzinfo=LOCAL)


ANH = {"id": "official-1", "full_name": "Nguyễn Thị Ánh", "email": "anh@q1.gov.vn", "phone": "+84903123456",
       "language": "vi"}


# -- which notices, to whom ----------------------------------------------------------------------------

def test_a_notice_id_is_one_per_event_channel_and_recipient_and_made_of_ids_only():
    first = notice_id("event-1", "email", recipient_of(official_id="official-1"))
    assert first.startswith("notice-") and len(first) == len("notice-") + 32
    # The same event to the same official by the same channel is the same notice, whoever handles it.
    assert notice_id("event-1", "email", recipient_of(official_id="official-1")) == first
    assert len({first, notice_id("event-2", "email", recipient_of(official_id="official-1")),
                notice_id("event-1", "sms", recipient_of(official_id="official-1")),
                notice_id("event-1", "email", recipient_of(official_id="official-2")),
                notice_id("event-1", "email", recipient_of(partner_id="official-1"))}) == 5
    with pytest.raises(ValueError):
        recipient_of()


def test_a_notice_id_cannot_be_walked_back_to_the_phone_its_masked_hint_half_shows():
    """The old id carried sha256(address)[:16]: with the hint `+8490***456` an operator (or anyone who
    saw an id and a hint) tried the 10,000 numbers that fit and found the phone. The id is now made of
    the event, the channel and the official's id: no number that fits the hint makes it."""
    phone, hint = "+84903123456", "+8490***456"
    assert mask(phone) == hint
    shown = notice_id("event-1", "sms", recipient_of(official_id="official-1"))
    fitting = ["+8490{:04d}456".format(n) for n in range(10000)]
    assert phone in fitting
    assert not any(hashlib.sha256(candidate.encode()).hexdigest()[:16] in shown for candidate in fitting)
    assert not any(notice_id("event-1", "sms", candidate) == shown for candidate in fitting)


def test_a_reminder_notice_id_is_the_same_for_the_same_reminder():
    key = reminder_key("registration-1", local(2026, 12, 5, 8, 0))
    official = recipient_of(official_id="official-1")
    assert notice_id(key, "sms", official) == notice_id(key, "sms", official)
    later = reminder_key("registration-1", local(2026, 12, 6, 8, 0))
    assert notice_id(later, "sms", official) != notice_id(key, "sms", official)


@pytest.mark.parametrize("requested, language", [
    ("vi", "vi"), ("en", "en"), ("fr", "vi"), (None, "vi"), ("", "vi"), ("EN", "vi")])
def test_an_official_hears_in_their_language_when_we_have_it_and_in_vietnamese_otherwise(requested, language):
    assert language_of(requested) == language


@pytest.mark.parametrize("email, phone, with_sms, expected", [
    ("anh@q1.gov.vn", "+84903123456", True, [("email", "anh@q1.gov.vn"), ("sms", "+84903123456")]),
    ("anh@q1.gov.vn", "+84903123456", False, [("email", "anh@q1.gov.vn")]),   # no SMS text for this kind
    ("anh@q1.gov.vn", None, True, [("email", "anh@q1.gov.vn")]),
    (None, "+84903123456", True, [("sms", "+84903123456")]),
    ("", "", True, []),
    (None, "+84903123456", False, []),
])
def test_an_official_is_told_on_every_channel_they_have_an_address_for(email, phone, with_sms, expected):
    assert addressed(dict(ANH, email=email, phone=phone), with_sms) == expected


@pytest.mark.parametrize("cause, notice", [
    ("session_cancelled", ("session_cancelled", True)),      # their class is off: sent whatever they opted out of
    ("official", ("registration_cancelled", False)),
    ("operator", ("registration_cancelled", False)),
])
def test_the_cancellation_of_ones_own_class_is_a_notice_of_its_own_that_ignores_opt_outs(cause, notice):
    assert cancellation_notice(cause) == notice


@pytest.mark.parametrize("template, qr, invite", [
    ("registration_confirmed", True, True),
    ("registration_promoted", True, True),
    ("reminder", True, False),
    ("registration_rescheduled", False, True),
    ("registration_waitlisted", False, False),
    ("registration_cancelled", False, False),
    ("session_cancelled", False, False),
    ("course_completed", False, False),
    ("offering_published", False, False),
])
def test_the_qr_code_comes_with_a_seat_and_the_invite_with_a_time(template, qr, invite):
    assert carries_qr(template) is qr and carries_invite(template) is invite


def test_an_opt_out_is_one_per_official_and_channel():
    assert opt_out_key("official-1", "email") == "official-1:email"
    assert opt_out_key("official-1", "sms") != opt_out_key("official-1", "email")


# -- unsubscribe links ---------------------------------------------------------------------------------

def test_unsubscribe_signatures_are_bound_to_official_channel_and_secret():
    sig = unsubscribe_signature("s3cret", "official-1", "email")
    assert len(sig) == 32 and sig == unsubscribe_signature("s3cret", "official-1", "email")
    assert sig != unsubscribe_signature("s3cret", "official-1", "sms")
    assert sig != unsubscribe_signature("s3cret", "official-2", "email")
    assert sig != unsubscribe_signature("other", "official-1", "email")


def test_the_unsubscribe_link_goes_to_the_gateway_with_the_official_channel_and_signature():
    link = unsubscribe_url("https://daotao-ai.tphcm.gov.vn/", "s3cret", "official-1", "sms")
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "daotao-ai.tphcm.gov.vn",
                                                        "/notifications/unsubscribe")
    assert parse_qs(parts.query) == {"official": ["official-1"], "channel": ["sms"],
                                     "sig": [unsubscribe_signature("s3cret", "official-1", "sms")]}


@pytest.mark.parametrize("official_id, channel, signature, valid", [
    ("official-1", "email", unsubscribe_signature("s3cret", "official-1", "email"), True),
    ("official-1", "sms", unsubscribe_signature("s3cret", "official-1", "email"), False),   # another channel's
    ("official-2", "email", unsubscribe_signature("s3cret", "official-1", "email"), False),  # another official's
    ("official-1", "email", unsubscribe_signature("guess", "official-1", "email"), False),
    ("official-1", "email", "", False),
    ("official-1", "email", None, False),
    ("", "email", unsubscribe_signature("s3cret", "", "email"), False),                    # nobody to opt out
    (None, "email", unsubscribe_signature("s3cret", "", "email"), False),
    ("official-1", "email", "¡\x1aÏ\U0005c72fè", False),                                     # not even ASCII (fuzzing found a 500)
    ("Ðó", "sms", "\ud800", False),
    ("official-1", "email", "chữ-ký-giả", False),                                          # not ASCII: no error
])
def test_only_our_signature_for_that_official_and_channel_opts_out(official_id, channel, signature, valid):
    assert signed_by_us("s3cret", official_id, channel, signature) is valid


def test_the_link_of_an_official_who_reads_english_opens_the_page_in_english():
    assert "lang" not in parse_qs(urlsplit(unsubscribe_url("https://x.vn", "s3cret", "official-1", "email")).query)
    english = unsubscribe_url("https://x.vn", "s3cret", "official-1", "email", "en")
    assert parse_qs(urlsplit(english).query)["lang"] == ["en"]


@pytest.mark.parametrize("form, change", [
    ({"action": "unsubscribe"}, "unsubscribe"),
    ({"action": "resubscribe"}, "resubscribe"),
    ({"List-Unsubscribe": "One-Click"}, "unsubscribe"),                # RFC 8058, what mail providers POST
    ({"List-Unsubscribe": "One-Click", "action": "resubscribe"}, "unsubscribe"),
    ({"action": "delete"}, None),
    ({"List-Unsubscribe": "yes"}, None),
    ({}, None),
])
def test_the_pages_post_says_what_it_changes(form, change):
    assert subscription_change(form) == change


# -- when -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("now, resume", [
    (local(2026, 3, 21, 20, 59), None),
    (local(2026, 3, 21, 21, 0), local(2026, 3, 22, 7, 0)),
    (local(2026, 3, 21, 23, 30), local(2026, 3, 22, 7, 0)),     # before midnight: ends tomorrow morning
    (local(2026, 3, 22, 0, 15), local(2026, 3, 22, 7, 0)),      # after midnight: ends this morning
    (local(2026, 3, 22, 6, 59), local(2026, 3, 22, 7, 0)),
    (local(2026, 3, 22, 7, 0), None),
    (local(2026, 3, 22, 12, 0), None),
    (local(2026, 12, 31, 22, 0), local(2027, 1, 1, 7, 0)),     # across the year's end
])
def test_quiet_hours_wrap_past_midnight_in_ho_chi_minh_city_time(now, resume):
    found = quiet_until(now.astimezone(timezone.utc), "21:00-07:00")
    assert found == resume
    assert found is None or found.tzinfo == timezone.utc


@pytest.mark.parametrize("spec, now, resume", [
    ("12:00-13:30", local(2026, 3, 22, 12, 30), local(2026, 3, 22, 13, 30)),   # within one day
    ("12:00-13:30", local(2026, 3, 22, 13, 30), None),
    ("12:00-13:30", local(2026, 3, 22, 11, 59), None),
    (" 21:00 - 7 ", local(2026, 3, 22, 6, 0), local(2026, 3, 22, 7, 0)),      # spaces, minutes left out
    ("", local(2026, 3, 22, 23, 0), None),                                     # empty: never quiet
    ("07:00-07:00", local(2026, 3, 22, 7, 0), None),                           # equal ends: never quiet
])
def test_quiet_hours_as_configured(spec, now, resume):
    assert quiet_until(now, spec) == resume


@pytest.mark.parametrize("starts_at, hour, due", [
    (local(2025, 3, 22, 8, 0), 8, local(2025, 3, 21, 8, 0)),
    (local(2025, 3, 22, 0, 30), 8, local(2025, 3, 21, 8, 0)),   # 17:30 UTC the day before: still local days
    (local(2025, 3, 1, 13, 0), 8, local(2025, 2, 28, 8, 0)),    # across a month's end
    (local(2026, 1, 1, 8, 0), 8, local(2025, 12, 31, 8, 0)),    # across the year's end
    (local(2025, 3, 22, 8, 0), 18, local(2025, 3, 21, 18, 0)),  # REMINDER_HOUR
])
def test_a_reminder_is_due_at_eight_local_time_the_day_before(starts_at, hour, due):
    found = reminder_due_at(starts_at.astimezone(timezone.utc), hour)
    assert found == due and found.tzinfo == timezone.utc


def test_a_reminder_is_due_at_eight_by_default():
    assert reminder_due_at(local(2025, 3, 22, 8, 0)) == local(2025, 3, 21, 8, 0)


def test_a_reminders_key_is_the_registration_and_its_start_time():
    start = local(2026, 12, 5, 8, 0)
    assert reminder_key("registration-1", start) == "reminder:registration-1:2026-12-05T01:00:00+00:00"
    # However the start time is written, one key; a new start time (rescheduled), another.
    assert reminder_key("registration-1", start.astimezone(timezone.utc)) == reminder_key("registration-1", start)
    assert reminder_key("registration-1", start + timedelta(days=1)) != reminder_key("registration-1", start)


def test_a_reminder_is_made_from_the_copy_of_a_confirmed_registration():
    start = local(2026, 12, 5, 8, 0)
    session = {"id": "session-1", "title": "Bồi dưỡng AI", "starts_at": start}
    copy = {"_id": "registration-1", "official": ANH, "session": session, "starts_at": start, "qr_token": "QR-1"}
    assert reminder_of(copy) == {
        "event_id": reminder_key("registration-1", start), "correlation_id": "reminder-registration-1",
        "payload": {"registration_id": "registration-1", "official": ANH, "session": session, "qr_token": "QR-1"}}
    assert reminder_of(dict(copy, qr_token=None))["payload"]["qr_token"] is None
    del copy["qr_token"]
    assert reminder_of(copy)["payload"]["qr_token"] is None


@pytest.mark.parametrize("starts_in, in_time", [
    (timedelta(hours=2), True), (timedelta(seconds=1), True), (timedelta(0), False), (-timedelta(hours=1), False)])
def test_a_reminder_after_the_session_began_is_too_late(starts_in, in_time):
    now = local(2026, 12, 5, 8, 0)
    assert reminder_in_time(now + starts_in, now) is in_time


def test_the_copy_of_a_registration_is_forgotten_a_week_after_its_session():
    now = local(2026, 12, 12, 9, 0)
    assert forgotten_before(now) == local(2026, 12, 5, 9, 0)


# -- retries ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("code, permanent", [(550, True), (554, True), (500, True), (451, False), (421, False)])
def test_an_smtp_5xx_is_for_good_and_a_4xx_is_retried(code, permanent):
    assert refusal_is_permanent(code) is permanent


@pytest.mark.parametrize("attempts, round_starts_after, round_", [(1, 0, 1), (3, 0, 3), (4, 3, 1), (6, 3, 3)])
def test_an_operators_resend_starts_a_new_round_of_retries(attempts, round_starts_after, round_):
    assert retry_round(attempts, round_starts_after) == round_


@pytest.mark.parametrize("round_, delay", [(1, 10.0), (2, 60.0), (5, 7200.0), (6, None), (9, None)])
def test_retries_wait_longer_each_time_then_give_up(round_, delay):
    assert retry_delay(round_, [10, 60, 300, 1800, "7200"]) == delay


def test_with_no_retries_the_first_failure_gives_up():
    assert retry_delay(1, []) is None


# -- segments: GSM 03.38 ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, encoding, units, count", [
    ("", "GSM-7", 0, 1),
    ("A" * 160, "GSM-7", 160, 1),                  # one full 7-bit segment
    ("A" * 161, "GSM-7", 161, 2),                  # split: 153 per part
    ("A" * 306, "GSM-7", 306, 2),
    ("A" * 307, "GSM-7", 307, 3),
    ("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà", "GSM-7", 42, 1),  # basic table, not ASCII
    ("Café à Paris", "GSM-7", 12, 1),              # é and à are in the basic table
    ("€" * 80, "GSM-7", 160, 1),                   # extension table: two septets each
    ("€" * 81, "GSM-7", 162, 2),
    ("[{~}]|^\\\f", "GSM-7", 18, 1),
    ("A" * 159 + "€", "GSM-7", 161, 2),            # the escape pushes it over
    ("ç", "UCS-2", 1, 1),                          # only capital Ç is GSM-7
    ("Đăng ký", "UCS-2", 7, 1),
    ("ệ" * 70, "UCS-2", 70, 1),                    # Vietnamese: 70 in one
    ("ệ" * 71, "UCS-2", 71, 2),                    # then 67 per part
    ("ệ" * 134, "UCS-2", 134, 2),
    ("ệ" * 135, "UCS-2", 135, 3),
    ("Hello Việt Nam " + "A" * 60, "UCS-2", 75, 2),  # one diacritic turns the whole text UCS-2
    ("😀" * 35, "UCS-2", 70, 1),                    # outside the BMP: two UCS-2 units each
    ("😀" * 36, "UCS-2", 72, 2),
])
def test_segments_follow_gsm_03_38(text, encoding, units, count):
    assert cost(text) == {"encoding": encoding, "units": units, "segments": count}
    assert segments(text) == count
    assert is_gsm7(text) is (encoding == "GSM-7")


@pytest.mark.parametrize("text, gsm7", [
    ("Xac nhan dang ky", True), ("€[]", True), ("\x1b", False), ("Xác nhận", False), ("đ", False), ("", True)])
def test_a_text_is_7_bit_only_if_every_character_is_in_the_gsm_tables(text, gsm7):
    assert is_gsm7(text) is gsm7


@pytest.mark.parametrize("text, plain", [
    ("Lớp Bồi dưỡng ứng dụng AI – Đăng ký đã được xác nhận, 36 Tôn Thất Đạm, Quận 1",
     "Lop Boi duong ung dung AI - Dang ky da duoc xac nhan, 36 Ton That Dam, Quan 1"),
    ("“Nhắc lịch” … ‘mai’ — 08:00", '"Nhac lich" ... \'mai\' - 08:00'),
    ("Already plain", "Already plain"),
])
def test_unaccented_vietnamese_keeps_the_words_and_drops_the_cost(text, plain):
    assert transliterate(text) == plain
    assert is_gsm7(transliterate(text))


def test_unaccented_vietnamese_fits_one_segment_where_the_accented_took_two():
    text = "Lớp Bồi dưỡng ứng dụng AI – Đăng ký đã được xác nhận, 36 Tôn Thất Đạm, Quận 1"
    assert cost(text)["segments"] == 2
    assert cost(transliterate(text)) == {"encoding": "GSM-7", "units": 77, "segments": 1}


@pytest.mark.parametrize("mode, text, sent", [
    ("long", "Đã xác nhận", "Đã xác nhận"),                    # one segment as written: untouched
    ("long", "Đăng ký lớp học đã được xác nhận, " * 3, transliterate("Đăng ký lớp học đã được xác nhận, " * 3)),
    ("always", "Đã xác nhận", "Da xac nhan"),
    ("never", "Đăng ký lớp học đã được xác nhận, " * 3, "Đăng ký lớp học đã được xác nhận, " * 3),
])
def test_transliteration_modes(mode, text, sent):
    assert prepare(text, mode) == (sent, cost(sent))

