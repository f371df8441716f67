"""The delivery log and the sending of one notice.

One document per notice in `deliveries`, `_id` = (source event id, channel, hash of the recipient):
inserting it first is what makes "at most one notice per (event, recipient, channel)" hold when an
event arrives twice or the service restarts mid-send. Its status is a small state machine:

    queued ──> sent
       │  └──> retrying ──> sent
       └─────────┴────────> failed   (a permanent refusal, or given up after the last retry)

`queued` with a future `not_before` is an SMS deferred by quiet hours. Whoever sends a notice first
claims it (`claimed_until`), so the event handler and the sweep (a leased timer that sends what is
due: deferred SMS and retries) never send the same notice at once; a sender that dies leaves a claim
that runs out, and the sweep sends the notice then. The event handler records its notices and hands
them to the container's senders (a pool, `NOTIFICATIONS.senders`): the event is settled as soon as
its notices are in the log, and a slow mail server slows the consumer only once every sender is busy.

`failed` is written in one transaction with a `notification_failed` event in the outbox, so
operators' tools learn of every failure exactly as the log records it. `sent` is written with a
`notification_sent` event likewise when NOTIFICATIONS.announce_sent is on; off (the default), the
log alone records it: nobody subscribes to that event yet, and at fan-out its outbox write, relay
and archive were half of the database's work per notice.

Residual risk, by design: a crash after the SMTP server accepted a message but before the log says
`sent` sends it again once the claim runs out. The Message-ID is derived from the notice id, so the
second copy carries the same Message-ID as the first (mail systems that deduplicate show one). An
SMS has no such identifier; the window is one HTTP round trip.
"""
import hashlib
import hmac
from collections import ChainMap
import logging
import smtplib
from datetime import date, datetime, time, timedelta, timezone
from urllib.parse import urlencode

from eventlet.greenpool import GreenPool
from jinja2 import TemplateError
from nameko.extensions import DependencyProvider
from pymongo import InsertOne, UpdateOne

from backbone import logs
from backbone.events import make_envelope
from backbone.logs import mask
from backbone.clock import utcnow
from backbone.database import database_of, handled_record
from services.notifications import mail
from services.notifications.batching import Batches
from services.notifications.sms import SmsProviders, SmsRefused, SmsUnavailable, prepare
from services.notifications.templates import LOCAL, Renderer

log = logging.getLogger(__name__)

SENDABLE = ("queued", "retrying")
NEVER = datetime.fromtimestamp(0, timezone.utc)
# Which email notices carry the QR code inline and the calendar invite.
WITH_QR = ("registration_confirmed", "registration_promoted", "reminder")
WITH_INVITE = ("registration_confirmed", "registration_promoted", "registration_rescheduled")

DEFAULTS = {
    "retry_delays": [10, 60, 300, 1800, 7200],
    "quiet_hours": "21:00-07:00",
    "claim_seconds": 60,
    "public_url": "http://127.0.0.1:8000",
    "unsubscribe_secret": "",
    "reminder_hour": 8,
    "smtp_pool": 8,
    "senders": 32,
    "flushers": 3,
    "flush_linger_seconds": 0.005,
    "announce_sent": False,
}


def notice_id(event_id, channel, recipient):
    digest = hashlib.sha256(recipient.encode("utf-8")).hexdigest()[:16]
    return "{}:{}:{}".format(event_id, channel, digest)


def storable(value):
    """What MongoDB can keep: dates become midnight UTC datetimes (rendered back as the same date)."""
    if isinstance(value, dict):
        return {k: storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(v) for v in value]
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime.combine(value, time(), timezone.utc)
    return value


# -- clocks and signatures (pure) ------------------------------------------------------------------

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
    """08:00 Ho Chi Minh City time on the day before the session starts, in UTC."""
    day_before = starts_at.astimezone(LOCAL).date() - timedelta(days=1)
    return datetime.combine(day_before, time(hour), LOCAL).astimezone(timezone.utc)


def unsubscribe_signature(secret, official_id, channel):
    message = "{}:{}".format(official_id, channel).encode("utf-8")
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()[:32]


# -- the dependency --------------------------------------------------------------------------------

class Postbox(DependencyProvider):
    """One SMTP pool, one SMS adapter, the senders and the group-commit flusher (batching.py) per
    container; workers get a `Deliveries`."""

    def setup(self):
        from nameko import config
        # A view, not a copy: what the configuration says now (tests change quiet hours on the fly).
        self.settings = ChainMap(config.setdefault("NOTIFICATIONS", {}), DEFAULTS)
        if not self.settings["unsubscribe_secret"]:
            raise RuntimeError("NOTIFICATIONS.unsubscribe_secret is empty: set UNSUBSCRIBE_SECRET")
        smtp = config["SMTP"]
        self.sender = smtp["sender"]
        self.mailer = mail.Mailer(smtp["host"], smtp["port"], smtp.get("starttls"), smtp.get("user"),
                                  smtp.get("password"), size=int(self.settings["smtp_pool"]))
        sms = config.get("SMS") or {}
        self.sms_settings = sms
        self.sms = SmsProviders(sms["gateway_url"], sms.get("fallback_url") or "", sms.get("sender") or "")
        self.renderer = Renderer()
        # More senders than SMTP connections: while some wait for the server, others build messages
        # or record outcomes.
        self.senders = GreenPool(int(self.settings["senders"]))

    def start(self):
        # In start, not setup: the Database is set up by now (extensions are set up concurrently).
        self.store = database_of(self.container)
        self.batches = Batches(self.store, linger=float(self.settings["flush_linger_seconds"]))
        # Several flushers: while one round waits for the database, the next takes what queued
        # meanwhile, so the database and this process work at the same time (with one, each
        # waited for the other and neither was busy two thirds of the time).
        for n in range(int(self.settings["flushers"])):
            self.container.spawn_managed_thread(self.batches.run, identifier="notices-batches-{}".format(n))

    def stop(self):
        # The notices handed to the senders go out (or are set to retry) before the container stops;
        # the flusher they need is a managed thread, killed only after every dependency stopped.
        self.senders.waitall()
        self.mailer.close()
        self.sms.close()

    def kill(self):
        # What they were sending stays claimed in the log: the sweep sends it when the claim runs out.
        for sender in list(self.senders.coroutines_running):
            sender.kill()
        self.mailer.close()
        self.sms.close()

    def get_dependency(self, worker_ctx):
        return Deliveries(self.store.db, self, worker_ctx)


class Deliveries:
    def __init__(self, db, postbox, worker_ctx):
        self.db = db
        self.log = db.deliveries
        self.postbox = postbox
        self.batches = postbox.batches
        self.worker_ctx = worker_ctx
        self.settings = postbox.settings
        self.renderer = postbox.renderer

    # -- creating a notice ------------------------------------------------------------------------

    def notice(self, event_id, channel, to, template, language, context, correlation_id,
               official_id=None, partner_id=None, mandatory=False):
        """A new notice's document, claimed by us (for `record`)."""
        now = utcnow()
        return {
            "_id": notice_id(event_id, channel, to), "event_id": event_id, "channel": channel, "to": to,
            "template": template, "language": language, "official_id": official_id, "partner_id": partner_id,
            "mandatory": mandatory, "context": storable(context), "status": "queued", "attempts": 0,
            "provider": None, "last_error": None, "not_before": now, "correlation_id": correlation_id,
            "claimed_until": now + timedelta(seconds=float(self.settings["claim_seconds"])),
            "created_at": now, "sent_at": None,
        }

    def record(self, event, notices, steps=()):
        """Insert the notices, then the write `steps` (see Batches.write; a duplicate key there means
        "recorded already"), then, in an event handler, the record that the event was handled: in
        that order, in one round with other workers' writes. Returns the notices that are new; one
        that exists already (a repeated event, a restart) was sent, is being sent, or the sweep will
        send it. Once this returns the notices are safe: if nobody sends them, the sweep will."""
        steps = [("deliveries", InsertOne(doc)) for doc in notices] + list(steps)
        handling = getattr(self.worker_ctx.entrypoint, "marks_handled", False) and self.worker_ctx.args[0] is event
        if handling:
            steps.append(("handled_events", InsertOne(handled_record(event))))
        results = self.batches.write(*steps) if steps else []
        if handling:
            # The subscriber would otherwise write that record on its own, one at a time.
            self.worker_ctx.handled_recorded = True
        return [doc for doc, duplicate in zip(notices, results) if duplicate is None]

    def opted_out(self, official_id, channels):
        """The channels among these that the official opted out of."""
        keys = {"{}:{}".format(official_id, channel): channel for channel in channels}
        return {keys[key] for key in self.batches.existing("opt_outs", list(keys))}

    def unsubscribe_url(self, official_id, channel):
        query = urlencode({"official": official_id, "channel": channel,
                           "sig": unsubscribe_signature(self.settings["unsubscribe_secret"], official_id, channel)})
        return "{}/notifications/unsubscribe?{}".format(self.settings["public_url"].rstrip("/"), query)

    # -- sending ----------------------------------------------------------------------------------

    def send_soon(self, doc):
        """Hand a claimed notice to the container's senders; waits only while every one is busy."""
        self.postbox.senders.spawn(self._attempt_apart, doc)

    def _attempt_apart(self, doc):
        logs.bind(service=self.postbox.container.service_name, correlation_id=doc.get("correlation_id"))
        try:
            self.attempt(doc)
        except Exception:
            # The outcome could not be recorded (the database is away): the claim runs out and the
            # sweep tries again.
            log.exception("notice %s: outcome not recorded", doc["_id"])
        finally:
            logs.clear()

    def claim(self, delivery_id):
        """Take a queued or retrying notice whose claim ran out; the claimed document or None."""
        now = utcnow()
        result = self.log.update_one(
            {"_id": delivery_id, "status": {"$in": list(SENDABLE)}, "claimed_until": {"$lt": now}},
            {"$set": {"claimed_until": now + timedelta(seconds=float(self.settings["claim_seconds"]))}})
        return self.log.find_one({"_id": delivery_id}) if result.modified_count == 1 else None

    def attempt(self, doc):
        """Send a claimed notice once; record the outcome. Returns the new status."""
        now = utcnow()
        if doc["channel"] == "sms":
            resume = quiet_until(now, self.settings["quiet_hours"])
            if resume:
                self._set(doc, {"status": "queued", "not_before": resume, "claimed_until": NEVER})
                log.info("sms %s deferred to %s (quiet hours)", doc["_id"], resume.isoformat())
                return "queued"
        attempts = doc["attempts"] + 1
        try:
            if doc["channel"] == "email":
                provider, extra = self._send_email(doc), {}
            else:
                provider, extra = self._send_sms(doc)
        except TemplateError as exc:
            return self._fail(doc, attempts, "template {}: {}".format(doc["template"], exc))
        except (smtplib.SMTPResponseException, SmsRefused) as exc:
            code = getattr(exc, "smtp_code", 0)
            reason = _smtp_reason(exc) if code else str(exc)
            if isinstance(exc, SmsRefused) or code >= 500:
                return self._fail(doc, attempts, reason)
            return self._retry_later(doc, attempts, reason)
        except (OSError, SmsUnavailable) as exc:
            return self._retry_later(doc, attempts, "{}: {}".format(type(exc).__name__, exc))
        except Exception as exc:
            # A notice we cannot even build would fail the same way at every sweep: failed, with the
            # reason, for an operator to look at (and resend once fixed), instead of looping.
            log.exception("notice %s could not be sent", doc["_id"])
            return self._fail(doc, attempts, "{}: {}".format(type(exc).__name__, exc))
        self._set(doc, dict(extra, status="sent", attempts=attempts, provider=provider, last_error=None,
                            sent_at=utcnow(), claimed_until=NEVER),
                  self._event("notification_sent", doc) if self.settings["announce_sent"] else None)
        return "sent"

    def _send_email(self, doc):
        context = doc["context"]
        subject, text, html = self.renderer.email(doc["template"], doc["language"], context)
        registration = context.get("registration_id")
        headers = {}
        if doc.get("official_id"):
            headers["List-Unsubscribe"] = "<{}>".format(self.unsubscribe_url(doc["official_id"], "email"))
        qr = context.get("qr_token") if doc["template"] in WITH_QR else None
        ics = None
        if doc["template"] in WITH_INVITE and context.get("session"):
            ics = mail.invite("{}@trainops.local".format(registration), context["session"],
                              _address_of(self.postbox.sender), doc["to"])
        message = mail.build(doc["_id"], self.postbox.sender, doc["to"], subject, text, html, headers, qr, ics)
        self.postbox.mailer.send(_address_of(self.postbox.sender), doc["to"], message)
        return "smtp"

    def _send_sms(self, doc):
        text = self.renderer.sms(doc["template"], doc["language"], doc["context"])
        if text is None:
            raise SmsRefused("no SMS template {}.{}".format(doc["template"], doc["language"]))
        text, cost = prepare(text, self.postbox.sms_settings.get("transliterate") or "long")
        provider, message_id = self.postbox.sms.send(doc["to"], text)
        return provider, {"segments": cost["segments"], "encoding": cost["encoding"],
                          "provider_message_id": message_id}

    def _retry_later(self, doc, attempts, error):
        delays = [float(d) for d in self.settings["retry_delays"]]
        # An operator's resend starts a new round of retries; `attempts` keeps counting them all.
        round_ = attempts - doc.get("round_starts_after", 0)
        if round_ > len(delays):
            return self._fail(doc, attempts, "gave up after {} attempts: {}".format(round_, error))
        self._set(doc, {"status": "retrying", "attempts": attempts, "last_error": error,
                        "not_before": utcnow() + timedelta(seconds=delays[round_ - 1]), "claimed_until": NEVER})
        log.warning("notice %s: attempt %d failed, retrying: %s", doc["_id"], attempts, mask(error))
        return "retrying"

    def _fail(self, doc, attempts, error):
        self._set(doc, {"status": "failed", "attempts": attempts, "last_error": error, "claimed_until": NEVER},
                  self._event("notification_failed", doc, error=mask(error)))
        log.error("notice %s failed: %s", doc["_id"], mask(error))
        return "failed"

    def _set(self, doc, fields, event=None):
        """Record the notice's new state: with an event that tells others, in one transaction (`sent`
        and notification_sent happen together or not at all); without, as one document's update."""
        update = UpdateOne({"_id": doc["_id"]}, {"$set": fields})
        if event is None:
            self.batches.write(("deliveries", update))  # one document: atomic on its own
        else:
            self.batches.commit([("deliveries", update)], [event])
        doc.update(fields)

    def _event(self, type_, doc, **fields):
        """notification_sent or notification_failed about the notice, under the correlation id of the
        event that caused it; no address (the notice id names the notice)."""
        payload = dict(notice_id=doc["_id"], source_event_id=doc["event_id"], channel=doc["channel"],
                       template=doc["template"], official_id=doc.get("official_id"),
                       partner_id=doc.get("partner_id"), **fields)
        return make_envelope(type_, payload, self.postbox.container.service_name, doc.get("correlation_id") or "none")

    # -- the sweep --------------------------------------------------------------------------------

    def send_due(self, limit=200):
        """Send what is due (deferred SMS, retries, notices a dead sender left claimed). Returns how many
        were attempted."""
        now = utcnow()
        due = list(self.log.find(
            {"status": {"$in": list(SENDABLE)}, "not_before": {"$lte": now}, "claimed_until": {"$lt": now}},
            {"_id": 1}).limit(limit))
        attempted = 0
        for row in due:
            doc = self.claim(row["_id"])
            if doc is not None:
                self.attempt(doc)
                attempted += 1
        return attempted

    def resend(self, delivery_id):
        """A failed notice gets a new attempt now (and the retries after it, if that one fails too)."""
        doc = self.log.find_one({"_id": delivery_id, "status": "failed"}, {"attempts": 1})
        if doc is None:
            return None
        result = self.log.update_one(
            {"_id": delivery_id, "status": "failed"},
            {"$set": {"status": "retrying", "not_before": utcnow(), "claimed_until": NEVER,
                      "round_starts_after": doc["attempts"]},
             "$inc": {"resends": 1}})
        if result.modified_count != 1:
            return None
        doc = self.claim(delivery_id)
        if doc is not None:
            self.attempt(doc)
        return self.log.find_one({"_id": delivery_id})


def _smtp_reason(exc):
    reply = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
    return "SMTP {} {}".format(exc.smtp_code, reply)


def _address_of(sender):
    from email.utils import parseaddr
    return parseaddr(sender)[1] or sender
