"""Notifications, the parts that need no server: what an SMS costs (GSM 03.38 vectors), unaccented
Vietnamese, quiet hours, when a reminder is due, every template in both languages with seed data,
the calendar invite of a confirmation, its QR code, and the message as SMTP carries it."""
import random
import string
import struct
import zlib
from datetime import date, datetime, timedelta, timezone
from email import message_from_bytes
from email.policy import default as email_policy
from zoneinfo import ZoneInfo

import pytest
import segno
from icalendar import Calendar
from jinja2 import UndefinedError

from services.notifications import mail, qr
from services.notifications.delivery import quiet_until, reminder_due_at, storable, unsubscribe_signature
from services.notifications.sms import cost, prepare, segments, transliterate
from services.notifications.templates import KINDS, LANGUAGES, OFFICIAL_KINDS, Renderer

HCMC = ZoneInfo("Asia/Ho_Chi_Minh")


# -- segments: GSM 03.38 ----------------------------------------------------------------------------

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


def test_unaccented_vietnamese_keeps_the_words_and_drops_the_cost():
    text = "Lớp Bồi dưỡng ứng dụng AI – Đăng ký đã được xác nhận, 36 Tôn Thất Đạm, Quận 1"
    plain = transliterate(text)
    assert plain == "Lop Boi duong ung dung AI - Dang ky da duoc xac nhan, 36 Ton That Dam, Quan 1"
    assert cost(text)["segments"] == 2 and cost(plain) == {"encoding": "GSM-7", "units": 77, "segments": 1}


def test_transliteration_modes():
    short, long_ = "Đã xác nhận", "Đăng ký lớp học đã được xác nhận, " * 3
    assert prepare(short, "long")[0] == short                       # one segment as written: untouched
    assert prepare(long_, "long")[0] == transliterate(long_)
    assert prepare(short, "always")[0] == "Da xac nhan"
    assert prepare(long_, "never")[0] == long_ and prepare(long_, "never")[1]["encoding"] == "UCS-2"


# -- clocks -------------------------------------------------------------------------------------------

def local(*args):
    return datetime(*args, tzinfo=HCMC)


@pytest.mark.parametrize("now, resume", [
    (local(2026, 3, 21, 20, 59), None),
    (local(2026, 3, 21, 21, 0), local(2026, 3, 22, 7, 0)),
    (local(2026, 3, 21, 23, 30), local(2026, 3, 22, 7, 0)),
    (local(2026, 3, 22, 0, 15), local(2026, 3, 22, 7, 0)),
    (local(2026, 3, 22, 6, 59), local(2026, 3, 22, 7, 0)),
    (local(2026, 3, 22, 7, 0), None),
    (local(2026, 3, 22, 12, 0), None),
])
def test_quiet_hours_wrap_past_midnight_in_ho_chi_minh_city_time(now, resume):
    assert quiet_until(now.astimezone(timezone.utc), "21:00-07:00") == resume
    assert quiet_until(now, "") is None


def test_quiet_hours_within_one_day():
    assert quiet_until(local(2026, 3, 22, 12, 30), "12:00-13:30") == local(2026, 3, 22, 13, 30)
    assert quiet_until(local(2026, 3, 22, 13, 30), "12:00-13:30") is None


@pytest.mark.parametrize("starts_at, due", [
    (local(2025, 3, 22, 8, 0), local(2025, 3, 21, 8, 0)),
    (local(2025, 3, 22, 0, 30), local(2025, 3, 21, 8, 0)),     # 17:30 UTC the day before: still local days
    (local(2025, 3, 1, 13, 0), local(2025, 2, 28, 8, 0)),
])
def test_a_reminder_is_due_at_eight_local_time_the_day_before(starts_at, due):
    assert reminder_due_at(starts_at.astimezone(timezone.utc)) == due


def test_unsubscribe_signatures_are_bound_to_official_and_channel():
    sig = unsubscribe_signature("s3cret", "official-1", "email")
    assert sig == unsubscribe_signature("s3cret", "official-1", "email")
    assert sig != unsubscribe_signature("s3cret", "official-1", "sms")
    assert sig != unsubscribe_signature("s3cret", "official-2", "email")
    assert sig != unsubscribe_signature("other", "official-1", "email")


# -- templates ----------------------------------------------------------------------------------------

def seed_context():
    """What the events of the seed's first class carry (2025-03-22, Banking University, Quận 1)."""
    session = {"id": "session-1", "title": "Bồi dưỡng kiến thức và kỹ năng ứng dụng AI trong công việc",
               "venue_name": "Trường Đại học Ngân hàng TP.HCM",
               "address": "36 Tôn Thất Đạm, phường Nguyễn Thái Bình, Quận 1", "room": "Hội trường A",
               "starts_at": local(2025, 3, 22, 8, 0).astimezone(timezone.utc),
               "ends_at": local(2025, 3, 22, 17, 0).astimezone(timezone.utc)}
    return storable({
        "registration_id": "registration-1", "session": session, "qr_token": "QR-7f3a9c",
        "official": {"id": "official-1", "full_name": "Nguyễn Thị Ánh", "email": "anh@q1.gov.vn",
                     "phone": "+84903123456", "language": "vi"},
        "waitlist_position": 3, "reason": "Giảng viên bị ốm", "cause": "session_cancelled", "status": "confirmed",
        "previous_starts_at": local(2025, 3, 21, 8, 0), "previous_ends_at": local(2025, 3, 21, 17, 0),
        "certificate_code": "AI-2025-000123", "certificate_url": "https://trainops.local/certificates/AI-2025-000123",
        "unsubscribe": {"email": "https://x/unsub?c=email", "sms": "https://x/unsub?c=sms"},
        "partner": {"id": "partner-1", "name": "Trường Đại học Quốc tế Sài Gòn", "code": "SIU"},
        "offering": {"offering_id": "offering-1", "title": "Ứng dụng AI trong công tác văn phòng",
                     "starts_from": date(2025, 3, 13), "ends_by": date(2025, 12, 31)},
        "agreement": {"agreement_id": "agreement-1", "title": "Thỏa thuận hợp tác đào tạo 2025–2026",
                      "valid_from": date(2025, 3, 13), "valid_until": date(2026, 12, 31)},
    })


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_template_renders_in_both_languages_with_seed_data(kind, language):
    renderer = Renderer()
    subject, text, html = renderer.email(kind, language, seed_context())
    assert subject and "\n" not in subject and "{{" not in subject
    assert "{{" not in text and "{%" not in text and "{{" not in html
    assert "<html lang=\"{}\"".format(language) in html
    if kind in OFFICIAL_KINDS:
        assert ("Kính gửi Nguyễn Thị Ánh" if language == "vi" else "Dear Nguyễn Thị Ánh") in text
        assert "22/03/2025 08:00" in subject + text  # local time, dd/mm/yyyy HH:MM
        assert "https://x/unsub?c=email" in text and "https://x/unsub?c=email" in html
    else:
        assert "Trường Đại học Quốc tế Sài Gòn" in text
    if renderer.has_sms(kind, language):
        sms = renderer.sms(kind, language, seed_context())
        assert sms and "{{" not in sms and "\n" not in sms


def test_the_confirmation_says_where_when_what_to_bring_and_the_check_in_code():
    subject, text, html = Renderer().email("registration_confirmed", "vi", seed_context())
    assert subject == ("Xác nhận đăng ký: Bồi dưỡng kiến thức và kỹ năng ứng dụng AI trong công việc "
                       "(22/03/2025 08:00)")
    for fact in ("22/03/2025 08:00 – 17:00", "36 Tôn Thất Đạm", "Hội trường A", "QR-7f3a9c", "máy tính xách tay"):
        assert fact in text
    assert 'src="cid:qr"' in html


def test_html_is_escaped_and_text_is_not():
    context = seed_context()
    context["official"]["full_name"] = "<b>Ánh</b> & co"
    _, text, html = Renderer().email("registration_waitlisted", "vi", context)
    assert "&lt;b&gt;Ánh&lt;/b&gt; &amp; co" in html
    assert "<b>Ánh</b> & co" in text


@pytest.mark.parametrize("kind", OFFICIAL_KINDS)
def test_a_missing_variable_is_an_error_not_a_blank(kind):
    context = seed_context()
    del context["session"]["title"]
    with pytest.raises(UndefinedError):
        Renderer().email(kind, "vi", context)


def test_an_unknown_language_falls_back_to_vietnamese():
    from services.notifications.templates import language_of
    assert language_of("fr") == "vi" and language_of(None) == "vi" and language_of("en") == "en"


# -- the invite -----------------------------------------------------------------------------------------

def test_the_confirmation_invite_parses_with_the_session_in_ho_chi_minh_city_time():
    context = seed_context()
    raw = mail.invite("registration-1@trainops.local", context["session"], "daotao-ai@trainops.local",
                      "anh@q1.gov.vn")
    calendar = Calendar.from_ical(raw)
    [event] = calendar.walk("VEVENT")
    assert str(event["uid"]) == "registration-1@trainops.local"
    assert str(event["summary"]) == "Bồi dưỡng kiến thức và kỹ năng ứng dụng AI trong công việc"
    start = event.decoded("dtstart")
    assert start == local(2025, 3, 22, 8, 0) and start.utcoffset() == timedelta(hours=7)
    assert event.decoded("dtend") == local(2025, 3, 22, 17, 0)
    assert "36 Tôn Thất Đạm" in str(event["location"])
    assert calendar.walk("VTIMEZONE")[0]["tzid"] == "Asia/Ho_Chi_Minh"


# What each official notice is rendered from: the event type whose payload is its context.
EVENT_OF = {"registration_confirmed": "registration_confirmed", "registration_waitlisted": "registration_waitlisted",
            "registration_promoted": "registration_promoted", "registration_cancelled": "registration_cancelled",
            "session_cancelled": "registration_cancelled", "registration_rescheduled": "registration_rescheduled",
            "reminder": "registration_confirmed", "course_completed": "course_completed"}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", OFFICIAL_KINDS)
def test_templates_need_only_what_the_contract_requires(kind, language):
    """A producer may leave every optional field out (a cancellation without a reason): the notice
    still renders, from the payload as the service completes it."""
    from backbone.events import schema_for
    from services.notifications.service import with_every_field
    seed = seed_context()
    fields = schema_for(EVENT_OF[kind]).fields
    payload = {name: seed[name] for name, field in fields.items() if field.required}
    context = dict(with_every_field({"type": EVENT_OF[kind], "payload": payload}), language=language,
                   unsubscribe=seed["unsubscribe"])
    renderer = Renderer()
    subject, text, html = renderer.email(kind, language, context)
    assert "None" not in subject + text + html
    if renderer.has_sms(kind, language):
        assert "None" not in renderer.sms(kind, language, context)


# -- the QR code and the message as SMTP carries it ---------------------------------------------------

def qr_tokens():
    """Check-in tokens as registration makes them, and others of every length (other versions, a
    Micro QR code, patterns that trip segno's edge cases)."""
    rng = random.Random(20261205)
    alphabet = string.ascii_letters + string.digits + "-_"
    tokens = ["{:016x}.{}".format(rng.getrandbits(64), "".join(rng.choices(alphabet, k=16))) for _ in range(300)]
    tokens += ["".join(rng.choices(alphabet, k=rng.randint(1, 150))) for _ in range(300)]
    return tokens + ["QR-7f3a9c", "0" * 300, "A" * 200, "x" * 80]


def test_the_qr_code_is_the_symbol_segno_makes():
    for token in qr_tokens():
        assert qr.matrix(token) == b"".join(segno.make(token, error="m").matrix), token


def test_the_qr_png_shows_the_modules_four_pixels_each_with_a_quiet_zone():
    token = "3f2a9c7e1b5d4a60.dGhpcy1pcy1hLXRlc3Q"
    modules = qr.matrix(token)
    size = int(len(modules) ** 0.5)
    png = qr.qr_png(token)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height, depth = struct.unpack(">IIB", png[16:25])
    side = (size + 2 * qr.BORDER) * qr.SCALE
    assert (width, height, depth) == (side, side, 1)
    idat = png[png.index(b"IDAT") + 4:png.index(b"IEND") - 8]
    row_bytes = 1 + (side + 7) // 8
    pixels = zlib.decompress(idat)
    for y in range(side):
        row = pixels[y * row_bytes + 1:(y + 1) * row_bytes]
        bits = "".join("{:08b}".format(b) for b in row)[:side]
        for x in range(0, side, qr.SCALE):
            i, j = y // qr.SCALE - qr.BORDER, x // qr.SCALE - qr.BORDER
            dark = 0 <= i < size and 0 <= j < size and modules[i * size + j] == 1
            assert bits[x:x + qr.SCALE] == ("0" if dark else "1") * qr.SCALE, (i, j)


def parsed(raw):
    return message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email_policy)


def a_confirmation_message(**overrides):
    context = seed_context()
    subject, text, html = Renderer().email("registration_confirmed", "vi", context)
    arguments = dict(notice_id="event-1:email:0123456789abcdef",
                     sender="Trung tâm Chuyển đổi số TP.HCM <daotao-ai@trainops.local>", to="anh@q1.gov.vn",
                     subject=subject, text=text, html=html,
                     headers={"List-Unsubscribe": "<https://x/unsub?c=email>"}, qr_token=context["qr_token"],
                     ics=mail.invite("registration-1@trainops.local", context["session"], "daotao-ai@trainops.local",
                                     "anh@q1.gov.vn"))
    arguments.update(overrides)
    return mail.build(**arguments), arguments


def test_the_message_carries_text_html_with_its_qr_code_and_the_invite():
    raw, sent = a_confirmation_message()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n")) and b"\n" not in raw.replace(b"\r\n", b"")
    message = parsed(raw)
    assert message.defects == [] and all(part.defects == [] for part in message.walk())
    assert message["Subject"] == sent["subject"]  # long and Vietnamese: folded, no space lost
    [sender] = message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Trung tâm Chuyển đổi số TP.HCM", "daotao-ai@trainops.local")
    assert message["To"] == "anh@q1.gov.vn"
    assert message["Message-ID"] == mail.message_id(sent["notice_id"])
    assert message["List-Unsubscribe"] == "<https://x/unsub?c=email>"
    assert message.get_body(("plain",)).get_content() == sent["text"]
    related = message.get_body(("related",))
    html, image = related.iter_parts()
    assert html.get_content() == sent["html"]
    assert image["Content-ID"] == "<qr>" and image.get_content() == qr.qr_png(sent["qr_token"])
    [invite] = [p for p in message.iter_attachments() if p.get_content_type() == "text/calendar"]
    assert invite.get_filename() == "invite.ics" and invite.get_param("method") == "PUBLISH"
    assert invite.get_content().encode("utf-8") == sent["ics"].replace(b"\r\n", b"\n")


def test_a_message_without_qr_code_or_invite_is_text_and_html():
    raw, sent = a_confirmation_message(qr_token=None, ics=None, headers=None)
    message = parsed(raw)
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]


def test_a_line_break_in_a_header_is_refused_not_sent():
    with pytest.raises(ValueError):
        a_confirmation_message(to="anh@q1.gov.vn\r\nBcc: everyone@q1.gov.vn")


def test_a_text_with_a_line_too_long_for_smtp_goes_base64():
    raw, _ = a_confirmation_message(text="Một dòng rất dài " * 100, qr_token=None, ics=None)
    part = parsed(raw).get_body(("plain",))
    assert part["Content-Transfer-Encoding"] == "base64" and part.get_content() == "Một dòng rất dài " * 100


def test_the_invite_of_each_official_of_a_class_has_their_own_uid_and_attendee():
    session = seed_context()["session"]
    first = Calendar.from_ical(mail.invite("registration-1@trainops.local", session, "daotao-ai@trainops.local",
                                           "anh@q1.gov.vn"))
    second = Calendar.from_ical(mail.invite("registration-2@trainops.local", session, "daotao-ai@trainops.local",
                                            "binh@q1.gov.vn"))
    [one], [two] = first.walk("VEVENT"), second.walk("VEVENT")
    assert (str(one["uid"]), str(one["attendee"])) == ("registration-1@trainops.local", "mailto:anh@q1.gov.vn")
    assert (str(two["uid"]), str(two["attendee"])) == ("registration-2@trainops.local", "mailto:binh@q1.gov.vn")
    assert one.decoded("dtstart") == two.decoded("dtstart") and str(one["summary"]) == str(two["summary"])
