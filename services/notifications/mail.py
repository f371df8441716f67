"""Email notices: the message (text + HTML, the QR code inline, the ICS invite attached) and a small
pool of SMTP connections (a connection per message is what kills fan-out throughput).

The message is written straight to the bytes SMTP carries: its shape is always the same (alternative
text and HTML, the HTML related to its QR image, the whole mixed with the invite), and
`email.message.EmailMessage` (whose header registry parses every header, then again when flattening)
cost more than everything else in a notice.
"""
import base64
import hashlib
import smtplib
import uuid
from datetime import datetime
from email.utils import formataddr, formatdate, parseaddr
from functools import lru_cache

from eventlet.queue import LightQueue, Empty
from eventlet.semaphore import Semaphore
from icalendar import Calendar, Event, vCalAddress, vText

from backbone.clock import LOCAL
from services.notifications.qr import qr_png

CRLF = b"\r\n"
# SMTP's limit for a line (RFC 5321 4.5.3.1.6); a text part with a longer one goes base64.
MAX_LINE = 998
# Bytes of UTF-8 per RFC 2047 encoded word: base64 makes 60 characters of them, 72 with the
# `=?utf-8?b?...?=` around, within the 75 an encoded word may have.
ENCODED_WORD_BYTES = 45


def message_id(notice_id, domain="trainops.local"):
    """Deterministic from the notice: a resend after a crash carries the same Message-ID, so a
    receiving system that deduplicates on it shows one message."""
    return "<{}@{}>".format(hashlib.sha256(notice_id.encode("utf-8")).hexdigest()[:32], domain)


def invite(uid, session, organizer, attendee=None):
    """An iCalendar invite for one session, times in Asia/Ho_Chi_Minh (with its VTIMEZONE). What the
    session gives is serialized once per session (every official of a class gets the same); the
    official's own UID and ATTENDEE lines are added to it."""
    head, tail = _session_invite(session["title"], session["starts_at"], session["ends_at"], session["venue_name"],
                                 session["address"], session["room"], organizer)
    own = Event()
    own.add("uid", uid)
    if attendee:
        own.add("attendee", vCalAddress("mailto:" + attendee))
    lines = own.to_ical()
    # Without its BEGIN:VEVENT and END:VEVENT lines: they go inside the session's event.
    return head + lines[lines.index(CRLF) + 2:lines.rindex(b"END:VEVENT")] + tail


@lru_cache(maxsize=256)
def _session_invite(title, starts_at, ends_at, venue_name, address, room, organizer):
    """The invite around the official's lines: (up to them, from END:VEVENT on)."""
    calendar = Calendar()
    calendar.add("prodid", "-//trainops//notifications//VI")
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    event = Event()
    event.add("summary", title)
    event.add("dtstart", starts_at.astimezone(LOCAL))
    event.add("dtend", ends_at.astimezone(LOCAL))
    event.add("dtstamp", starts_at)
    event.add("location", vText("{}, {} ({})".format(venue_name, address, room)))
    event["organizer"] = vCalAddress("mailto:" + organizer)
    calendar.add_component(event)
    calendar.add_component(_vtimezone())
    raw = calendar.to_ical()
    cut = raw.index(b"END:VEVENT")
    return raw[:cut], raw[cut:]


_VTIMEZONE = []


def _vtimezone():
    """Asia/Ho_Chi_Minh as a VTIMEZONE, built once: building it is slow."""
    if not _VTIMEZONE:
        calendar = Calendar()
        event = Event()
        event.add("dtstart", datetime(2026, 1, 1, tzinfo=LOCAL))
        calendar.add_component(event)
        calendar.add_missing_timezones()
        _VTIMEZONE.append(calendar.walk("VTIMEZONE")[0])
    return _VTIMEZONE[0]


def build(notice_id, sender, to, subject, text, html, headers=None, qr_token=None, ics=None):
    """The message as SMTP carries it (bytes, CRLF line ends): multipart/alternative of the text and
    the HTML (multipart/related with the QR code as `cid:qr` when there is a token), inside
    multipart/mixed with the invite when there is one. Raises ValueError for a header value with a
    line break (which would let a recipient address add headers)."""
    html_part = _text_part("html", html)
    if qr_token:
        html_part = _multipart("related", [html_part, _leaf(
            [("Content-Type", "image/png"), ("Content-Transfer-Encoding", "base64"),
             ("Content-Disposition", 'inline; filename="qr.png"'), ("Content-ID", "<qr>")],
            base64.encodebytes(qr_png(qr_token)).replace(b"\n", CRLF))])
    body = _multipart("alternative", [_text_part("plain", text), html_part])
    if ics:
        body = _multipart("mixed", [body, _leaf(
            [("Content-Type", 'text/calendar; charset="utf-8"; method="PUBLISH"'),
             ("Content-Transfer-Encoding", "8bit"), ("Content-Disposition", 'attachment; filename="invite.ics"')],
            ics)])
    head = [("Subject", encode_header(subject)), ("From", address_header(sender)), ("To", to),
            ("Date", formatdate()), ("Message-ID", message_id(notice_id))]
    head += list((headers or {}).items())
    head.append(("MIME-Version", "1.0"))
    # The body starts with its own headers (Content-Type, ...): they join the message's.
    return _header_lines(head) + body


def encode_header(value):
    """ASCII as it is; otherwise RFC 2047 encoded words of whole characters, one per folded line.
    The spaces are inside the words, so none is lost where a line folds."""
    if value.isascii():
        return value
    words, word, length = [], [], 0
    for char in value:
        size = len(char.encode("utf-8"))
        if length + size > ENCODED_WORD_BYTES:
            words.append("".join(word))
            word, length = [], 0
        word.append(char)
        length += size
    words.append("".join(word))
    return "\r\n ".join("=?utf-8?b?{}?=".format(base64.b64encode(w.encode("utf-8")).decode("ascii"))
                         for w in words)


@lru_cache(maxsize=16)
def address_header(mailbox):
    """`Name <address>` with the name encoded when it is not ASCII (the sender: built once)."""
    name, address = parseaddr(mailbox)
    if not name:
        return mailbox
    if name.isascii():
        return formataddr((name, address))
    return "{} <{}>".format(encode_header(name), address)


def _header_lines(headers):
    lines = []
    for name, value in headers:
        unfolded = value.replace("\r\n ", " ")
        if "\r" in unfolded or "\n" in unfolded:
            raise ValueError("a line break in the {} header".format(name))
        lines.append("{}: {}\r\n".format(name, value))
    return "".join(lines).encode("utf-8")


def _leaf(headers, body):
    return _header_lines(headers) + CRLF + body


def _text_part(subtype, text):
    body = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n").encode("utf-8")
    encoding = "7bit" if body.isascii() else "8bit"
    if max(map(len, body.split(CRLF))) > MAX_LINE:
        encoding, body = "base64", base64.encodebytes(body).replace(b"\n", CRLF)
    return _leaf([("Content-Type", 'text/{}; charset="utf-8"'.format(subtype)),
                  ("Content-Transfer-Encoding", encoding)], body)


def _multipart(subtype, parts):
    boundary = "==trainops-" + uuid.uuid4().hex
    marker = b"--" + boundary.encode("ascii")
    # A line of a part starting with the boundary would cut the part short (never, in practice).
    while any(marker in part for part in parts):
        boundary = "==trainops-" + uuid.uuid4().hex
        marker = b"--" + boundary.encode("ascii")
    body = b"".join(marker + CRLF + part + CRLF for part in parts) + marker + b"--" + CRLF
    return _leaf([("Content-Type", 'multipart/{}; boundary="{}"'.format(subtype, boundary))], body)


class Mailer:
    """Sends through up to `size` open SMTP connections, reused across notices. A connection the
    server closed while idle is replaced once, before anything was sent on it."""

    def __init__(self, host, port, starttls=False, user="", password="", size=4, timeout=20):
        self.settings = (host, int(port), bool(starttls), user or "", password or "", timeout)
        self.idle = LightQueue()
        # At most `size` connections at once: a worker waits for one rather than opening its own.
        self.slots = Semaphore(size)

    def _connect(self):
        host, port, starttls, user, password, timeout = self.settings
        client = smtplib.SMTP(host, port, timeout=timeout)
        try:
            if starttls:
                client.starttls()
                client.ehlo()
            if user:
                client.login(user, password)
        except Exception:
            _close(client)
            raise
        return client

    def send(self, sender, to, message):
        """Send `message` (what `build` returns) from the address `sender` to the address `to`.
        Raises smtplib.SMTPResponseException (with smtp_code; a refused recipient too) or OSError."""
        with self.slots:
            try:
                client, reused = self.idle.get_nowait(), True
            except Empty:
                client, reused = self._connect(), False
            try:
                self._send_on(client, sender, to, message)
            except smtplib.SMTPServerDisconnected:
                if not reused:
                    raise
                # The server dropped a connection while it sat idle: one try on a fresh one.
                self._send_on(self._connect(), sender, to, message)

    def _send_on(self, client, sender, to, message):
        try:
            client.ehlo_or_helo_if_needed()
            options = []
            if client.has_extn("8bitmime"):
                options.append("BODY=8BITMIME")  # the text parts are UTF-8 as it is
            if not (sender.isascii() and to.isascii()):
                options.append("SMTPUTF8")  # raises SMTPNotSupportedError where the server has none
            client.sendmail(sender, [to], message, options)
        except smtplib.SMTPRecipientsRefused as exc:
            self._reset(client)
            code, reply = next(iter(exc.recipients.values()))
            raise smtplib.SMTPResponseException(code, reply)
        except smtplib.SMTPResponseException:
            self._reset(client)
            raise
        except Exception:
            _close(client)
            raise
        self._keep(client)

    def _reset(self, client):
        try:
            client.rset()  # a refused transaction leaves state behind
        except Exception:
            _close(client)
            return
        self._keep(client)

    def _keep(self, client):
        self.idle.put(client)

    def close(self):
        while True:
            try:
                _close(self.idle.get_nowait())
            except Empty:
                return


def _close(client):
    try:
        client.quit()
    except Exception:
        try:
            client.close()
        except Exception:  # already gone; nothing left to release
            return
