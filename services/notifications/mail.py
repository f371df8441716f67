"""Email notices: the message (text + HTML, the QR code inline, the ICS invite attached) and a small
pool of SMTP connections (a connection per message is what kills fan-out throughput)."""
import hashlib
import io
import smtplib
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import formatdate

import segno
from eventlet.queue import LightQueue, Empty
from eventlet.semaphore import Semaphore
from icalendar import Calendar, Event, vCalAddress, vText

from services.notifications.templates import LOCAL


def message_id(notice_id, domain="trainops.local"):
    """Deterministic from the notice: a resend after a crash carries the same Message-ID, so a
    receiving system that deduplicates on it shows one message."""
    return "<{}@{}>".format(hashlib.sha256(notice_id.encode("utf-8")).hexdigest()[:32], domain)


def qr_png(token):
    buffer = io.BytesIO()
    segno.make(token, error="m").save(buffer, kind="png", scale=4, border=2)
    return buffer.getvalue()


def invite(uid, session, organizer, attendee=None):
    """An iCalendar invite for one session, times in Asia/Ho_Chi_Minh (with its VTIMEZONE)."""
    calendar = Calendar()
    calendar.add("prodid", "-//trainops//notifications//VI")
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    event = Event()
    event.add("uid", uid)
    event.add("summary", session["title"])
    event.add("dtstart", session["starts_at"].astimezone(LOCAL))
    event.add("dtend", session["ends_at"].astimezone(LOCAL))
    event.add("dtstamp", session["starts_at"])
    event.add("location", vText("{}, {} ({})".format(session["venue_name"], session["address"], session["room"])))
    event["organizer"] = vCalAddress("mailto:" + organizer)
    if attendee:
        event.add("attendee", vCalAddress("mailto:" + attendee))
    calendar.add_component(event)
    calendar.add_component(_vtimezone())
    return calendar.to_ical()


_VTIMEZONE = []


def _vtimezone():
    """Asia/Ho_Chi_Minh as a VTIMEZONE, built once: building it takes ~30 ms of CPU."""
    if not _VTIMEZONE:
        calendar = Calendar()
        event = Event()
        event.add("dtstart", datetime(2026, 1, 1, tzinfo=LOCAL))
        calendar.add_component(event)
        calendar.add_missing_timezones()
        _VTIMEZONE.append(calendar.walk("VTIMEZONE")[0])
    return _VTIMEZONE[0]


# Headers are not folded below SMTP's hard limit: Python's folding of long encoded words loses the
# space at a fold ("trong công" arrives as "trongcông") and encodes a long List-Unsubscribe URL.
POLICY = policy.SMTP.clone(max_line_length=998)


def build(notice_id, sender, to, subject, text, html, headers=None, qr_token=None, ics=None):
    message = EmailMessage(policy=POLICY)
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = to
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = message_id(notice_id)
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    if qr_token:
        # The HTML refers to it as cid:qr (see the templates).
        message.get_payload()[1].add_related(qr_png(qr_token), "image", "png", cid="<qr>",
                                              filename="qr.png")
    if ics:
        message.add_attachment(ics.decode("utf-8"), subtype="calendar", filename="invite.ics",
                               params={"method": "PUBLISH"})
    return message


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

    def send(self, message):
        """Raises smtplib.SMTPResponseException (with smtp_code; a refused recipient too) or OSError."""
        with self.slots:
            try:
                client, reused = self.idle.get_nowait(), True
            except Empty:
                client, reused = self._connect(), False
            try:
                self._send_on(client, message)
            except smtplib.SMTPServerDisconnected:
                if not reused:
                    raise
                # The server dropped a connection while it sat idle: one try on a fresh one.
                self._send_on(self._connect(), message)

    def _send_on(self, client, message):
        try:
            client.send_message(message)
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
