"""The rules of notices: which notice an event makes and for whom, its id, when an SMS may go, when a
reminder is due, how retries are spaced, what an unsubscribe link proves, and what an SMS costs.
Plain functions: no database, no broker, no clock (`now` is an argument)."""
import hashlib
import hmac
import unicodedata
from datetime import datetime, time, timedelta, timezone
from urllib.parse import urlencode

import gsm0338  # noqa: F401  (registers the gsm03.38 codec)

from backbone.clock import LOCAL

CHANNELS = ("email", "sms")
LANGUAGES = ("vi", "en")
DEFAULT_LANGUAGE = "vi"
# Which email notices carry the QR code inline, and which the calendar invite.
WITH_QR = ("registration_confirmed", "registration_promoted", "reminder")
WITH_INVITE = ("registration_confirmed", "registration_promoted", "registration_rescheduled")
# How long the service keeps its copy of a registration after the session started.
FORGET_AFTER = timedelta(days=7)


# -- which notices, to whom ------------------------------------------------------------------------

# The recipient of notices to the operators' address (NOTIFICATIONS.operator_email).
OPERATORS = "operators"


def recipient_of(official_id=None, partner_id=None, operators=False):
    """Whom a notice is for, by id (`official:<id>`, `partner:<id>`, or `operators`), never by address."""
    if operators:
        return OPERATORS
    if official_id:
        return "official:" + official_id
    if partner_id:
        return "partner:" + partner_id
    raise ValueError("A notice is for an official or a partner.")


def notice_id(event_id, channel, recipient):
    """`notice-<digest>`: one notice per (event, channel, recipient), whoever handles the event and
    however often it arrives. `recipient` is `recipient_of(...)`: an id, never an address. A digest of
    the address could be reversed from the masked hint operators see (`+8490***456` leaves four
    digits to guess), while the event id and recipient id are in the notice's row already."""
    digest = hashlib.sha256("\0".join((event_id, channel, recipient)).encode("utf-8")).hexdigest()[:32]
    return "notice-" + digest


def language_of(requested):
    """The official's language when we have templates in it; Vietnamese otherwise."""
    return requested if requested in LANGUAGES else DEFAULT_LANGUAGE


def addressed(official, with_sms):
    """[(channel, address)] an official's notice goes to: email when they have an address, SMS when
    they have a phone and the notice has an SMS text (`with_sms`)."""
    return [(channel, address) for channel, address in (("email", official.get("email")),
                                                        ("sms", official.get("phone")))
            if address and (channel == "email" or with_sms)]


def cancellation_notice(cause):
    """(template, mandatory) for a cancelled registration: the cancellation of one's own class
    reaches the official whatever they opted out of."""
    if cause == "session_cancelled":
        return "session_cancelled", True
    return "registration_cancelled", False


def carries_qr(template):
    """Whether the email carries the check-in QR code inline."""
    return template in WITH_QR


def carries_invite(template):
    """Whether the email carries the calendar invite of the session."""
    return template in WITH_INVITE


def opt_out_key(official_id, channel):
    """The key of an official's opt-out of a channel: one per pair, however often they click."""
    return "{}:{}".format(official_id, channel)


# -- unsubscribe links -----------------------------------------------------------------------------

def unsubscribe_signature(secret, official_id, channel):
    """What proves an unsubscribe link was ours: an HMAC of the official and the channel."""
    message = "{}:{}".format(official_id, channel).encode("utf-8")
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()[:32]


def unsubscribe_url(public_url, secret, official_id, channel, language=DEFAULT_LANGUAGE):
    """The signed link in every email. It opens a page that asks before it changes anything (the
    gateway's GET /notifications/unsubscribe), in the official's language."""
    fields = {"official": official_id, "channel": channel, "sig": unsubscribe_signature(secret, official_id, channel)}
    if language != DEFAULT_LANGUAGE:
        fields["lang"] = language
    return "{}/notifications/unsubscribe?{}".format(public_url.rstrip("/"), urlencode(fields))


def signed_by_us(secret, official_id, channel, signature):
    """Whether an unsubscribe request carries our signature for that official and channel."""
    expected = unsubscribe_signature(secret, official_id or "", channel)
    # As bytes: compare_digest refuses str with non-ASCII characters, and a link can carry any.
    return bool(official_id) and hmac.compare_digest(expected.encode(), (signature or "").encode("utf-8", "replace"))


def subscription_change(form):
    """What the page's POST asks: "unsubscribe" or "resubscribe" (its buttons), "unsubscribe" for the
    one-click POST mail providers send to the List-Unsubscribe address (RFC 8058:
    `List-Unsubscribe=One-Click`), None for anything else."""
    if form.get("List-Unsubscribe") == "One-Click":
        return "unsubscribe"
    action = form.get("action")
    return action if action in ("unsubscribe", "resubscribe") else None


# -- when ------------------------------------------------------------------------------------------

def quiet_until(now, spec):
    """When the quiet hours that `now` falls in end (UTC), or None outside them. `spec` is local
    `HH:MM-HH:MM` and may wrap past midnight (`21:00-07:00`); empty or equal ends: never quiet."""
    if not spec:
        return None
    start_text, _, end_text = spec.partition("-")
    start, end = _clock(start_text), _clock(end_text)
    if start == end:
        return None
    here = now.astimezone(LOCAL)
    today = here.date()
    moment = here.time().replace(tzinfo=None)
    if start < end:
        inside = start <= moment < end
        end_day = today
    else:
        inside = moment >= start or moment < end
        end_day = today + timedelta(days=1) if moment >= start else today
    if not inside:
        return None
    return datetime.combine(end_day, end, LOCAL).astimezone(timezone.utc)


def _clock(text):
    hours, _, minutes = text.strip().partition(":")
    return time(int(hours), int(minutes or 0))


def reminder_due_at(starts_at, hour=8):
    """`hour`:00 Ho Chi Minh City time on the local day before the session starts, in UTC."""
    day_before = starts_at.astimezone(LOCAL).date() - timedelta(days=1)
    return datetime.combine(day_before, time(hour), LOCAL).astimezone(timezone.utc)


def reminder_key(registration_id, starts_at):
    """The reminder's event id: one per registration and start time, so a rescheduled session gets
    its own reminder and a repeat does not get a second."""
    return "reminder:{}:{}".format(registration_id, starts_at.astimezone(timezone.utc).isoformat())


def reminder_of(registration):
    """The event a reminder is made from, out of the service's copy of a confirmed registration."""
    return {"event_id": reminder_key(registration["_id"], registration["starts_at"]),
            "correlation_id": "reminder-" + registration["_id"], "payload": {
                "registration_id": registration["_id"], "official": registration["official"],
                "session": registration["session"], "qr_token": registration.get("qr_token")}}


def reminder_in_time(starts_at, now):
    """A reminder is sent only before the session starts (after a day down, it is too late)."""
    return starts_at > now


def forgotten_before(now):
    """Copies of registrations whose session started before this are no longer needed."""
    return now - FORGET_AFTER


# -- retries ---------------------------------------------------------------------------------------

def refusal_is_permanent(smtp_code):
    """An SMTP 5xx is for good (no retry would change it); a 4xx is worth retrying."""
    return smtp_code >= 500


def retry_round(attempts, round_starts_after=0):
    """Which attempt of the current round this is: an operator's resend starts a new round of
    retries while `attempts` keeps counting them all."""
    return attempts - round_starts_after


def retry_delay(round_, delays):
    """Seconds before the next attempt after the `round_`-th failed one, or None: given up."""
    if round_ > len(delays):
        return None
    return float(delays[round_ - 1])


# -- what an SMS costs (GSM 03.38, 3GPP TS 23.038) -----------------------------------------------------
# A text the GSM alphabet can write travels 7-bit, 160 septets in one
# segment, 153 per segment once split (an extension-table character, such as €, takes two septets);
# any other character (Vietnamese diacritics: ả, ộ, ư, đ) makes the whole text UCS-2, 70 code units in
# one segment, 67 once split. The alphabet is the `gsm0338` codec's.
GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


def septets(text):
    """The text's length in GSM-7 septets, or None when a character has no GSM-7 form. The escape
    itself is no character: the codec writes it, but a phone reads the next septet as escaped."""
    if "\x1b" in text:
        return None
    try:
        return len(text.encode("gsm03.38"))
    except UnicodeEncodeError:
        return None


def is_gsm7(text):
    """Whether the text travels 7-bit."""
    return septets(text) is not None


def cost(text):
    """{"encoding": "GSM-7"|"UCS-2", "units": septets or UCS-2 code units, "segments": n}."""
    units = septets(text)
    if units is not None:
        single, part, encoding = GSM7_SINGLE, GSM7_PART, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, part, encoding = UCS2_SINGLE, UCS2_PART, "UCS-2"
    segments = 1 if units <= single else -(-units // part)
    return {"encoding": encoding, "units": units, "segments": segments}


def segments(text):
    """How many SMS segments the text is billed as."""
    return cost(text)["segments"]


# Typography that has no GSM-7 form but an obvious plain one.
_PLAIN = str.maketrans({"đ": "d", "Đ": "D", "–": "-", "—": "-", "‘": "'", "’": "'", "“": '"', "”": '"',
                        "…": "...", "\u00a0": " "})


def transliterate(text):
    """Unaccented Vietnamese (`Xác nhận đăng ký` → `Xac nhan dang ky`): diacritics removed, đ → d."""
    decomposed = unicodedata.normalize("NFD", text.translate(_PLAIN))
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def prepare(text, mode="long"):
    """The text to send under `SMS.transliterate`: `never`, `always`, or `long` (only when the text as
    written would take more than one segment). Returns (text, cost)."""
    if mode == "always" or (mode == "long" and cost(text)["segments"] > 1):
        text = transliterate(text)
    return text, cost(text)


# -- links in notices -----------------------------------------------------------------------------

def absolute(public_url, link):
    """A link as a notice carries it: absolute under PUBLIC_URL (a path alone opens nothing in a mail
    reader); one that is absolute already stays as it is."""
    if not link or "://" in link:
        return link
    return "{}/{}".format(public_url.rstrip("/"), link.lstrip("/"))


def sign_in_link_allowed(public_url, link, audience):
    """Only a link to our own sign-in pages goes out in a sign-in email (officials' at /me/login,
    operators' under /console/): the RPC cannot be made to mail anyone anything else under our name."""
    base = public_url.rstrip("/")
    path = {"official": "/me/login?", "operator": "/console/"}.get(audience)
    return bool(path) and isinstance(link, str) and len(link) <= 600 and link.startswith(base + path)
