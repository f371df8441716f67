"""Notifications, the parts that need no server besides the rules (test_notifications_rules.py): every
template in both languages with seed data, the calendar invite of a confirmation, its QR code, the
message as SMTP carries it, and what the service says of its list query."""
import random
import string
import struct
import zlib
from datetime import date, datetime, timedelta, timezone
from email import message_from_bytes
from email.policy import default as email_policy

import pytest
import segno
from icalendar import Calendar
from jinja2 import UndefinedError

from backbone.clock import LOCAL
from backbone.events import schema_for
from backbone.openapi import describe
from services.notifications import mail, qr, schemas
from services.notifications.rules import LANGUAGES
from services.notifications.store import storable
from services.notifications.templates import KINDS, OFFICIAL_KINDS, Renderer, with_every_field


def local(*args):
    return datetime(*args, tzinfo=LOCAL)


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
                      "valid_from": date(2025, 3, 13), "valid_until": date(2026, 12, 31),
                      # agreement_ending: 30 days before its last day, one offering and one class after it
                      "last_day": date(2026, 12, 31), "days_left": 30, "threshold": 30,
                      "offerings": [{"offering_id": "offering-1", "title": "Ứng dụng AI trong công tác văn phòng",
                                     "starts_from": date(2026, 11, 1), "ends_by": date(2027, 1, 31),
                                     "runs_past_end": True}],
                      "sessions_after_end": [{"session_id": "session-2", "offering_id": "offering-1",
                                              "title": "Ứng dụng AI trong công tác văn phòng",
                                              "venue_name": "Trường Đại học Ngân hàng TP.HCM",
                                              "starts_at": local(2027, 1, 8, 8, 0).astimezone(timezone.utc),
                                              "ends_at": local(2027, 1, 8, 11, 30).astimezone(timezone.utc)}],
                      "renewal": None},
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


# -- what is stored, what leaves the service ------------------------------------------------------------

def test_dates_are_stored_as_midnight_utc_and_render_back_as_the_same_day():
    stored = storable({"agreement": {"valid_until": date(2026, 12, 31)}, "days": (date(2026, 1, 1),),
                       "at": local(2026, 1, 1, 8, 0), "n": 3})
    assert stored == {"agreement": {"valid_until": datetime(2026, 12, 31, tzinfo=timezone.utc)},
                      "days": [datetime(2026, 1, 1, tzinfo=timezone.utc)], "at": local(2026, 1, 1, 8, 0), "n": 3}
    _, text, _ = Renderer().email("agreement_expired", "vi", seed_context())
    assert "31/12/2026" in text


def test_a_template_sees_every_field_of_the_contract_and_nothing_else():
    payload = {"registration_id": "registration-1", "session": seed_context()["session"],
               "official": seed_context()["official"], "cause": "official"}
    context = with_every_field({"type": "registration_cancelled", "payload": payload})
    assert context["reason"] is None and context["cause"] == "official"
    assert set(context) == set(schema_for("registration_cancelled").fields)
    # A reminder is made by the service itself: its payload is what it is.
    assert with_every_field({"event_id": "reminder:x", "payload": {"a": 1}}) == {"a": 1}


def test_operators_see_a_notice_with_its_recipient_masked_and_without_its_context():
    notice = {"_id": "event-1:email:0123456789abcdef", "event_id": "event-1", "channel": "email",
              "to": "anh@q1.gov.vn", "template": "registration_confirmed", "language": "vi", "status": "sent",
              "attempts": 1, "provider": "smtp", "last_error": None, "official_id": "official-1",
              "partner_id": None, "created_at": local(2026, 1, 1, 8, 0), "sent_at": local(2026, 1, 1, 8, 0),
              "not_before": local(2026, 1, 1, 8, 0), "context": {"qr_token": "QR-7f3a9c"}, "claimed_until": None}
    shown = schemas.public_notice(notice)
    assert shown["id"] == notice["_id"] and shown["to"] == "a***@q1.gov.vn"
    assert set(shown) == {"id", "to", "event_id", "channel", "template", "language", "status", "attempts",
                          "provider", "last_error", "official_id", "partner_id", "segments", "created_at",
                          "sent_at", "not_before"}
    assert shown["segments"] is None and "QR-7f3a9c" not in str(shown)


def test_the_list_query_is_described_for_the_openapi_document():
    described = describe(schemas.BODIES, schemas.QUERIES)
    assert described["bodies"] == {}
    parameters = {p["name"]: p for p in described["queries"]["NoticeQuery"]}
    assert set(parameters) == {"official_id", "partner_id", "status", "channel", "template", "event_id",
                               "limit", "cursor"}
    assert parameters["limit"]["schema"]["maximum"] == 200 and not any(p["required"] for p in parameters.values())
