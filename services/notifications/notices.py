"""The notices' log and the sending of one notice.

One document per notice in `notices`, `_id` derived from (source event id, channel, the recipient's
id; never from an address: rules.notice_id): inserting it first is what makes "at most one notice per
(event, recipient, channel)" hold when an event arrives twice or the service restarts mid-send. Its
status is a small state machine:

    queued ──> sent
       │  └──> retrying ──> sent
       └─────────┴────────> failed   (a permanent refusal, or given up after the last retry)

`queued` with a future `not_before` is an SMS deferred by quiet hours. Whoever sends a notice first
claims it (`claimed_until`), so the event handler and the sweeps (a timer in every replica that
claims what is due a batch at a time: deferred SMS and retries) never send the same notice at once;
a sender that dies leaves a claim that runs out, and a sweep sends the notice then. The event handler records its notices and hands
them to the container's senders (a pool, `NOTIFICATIONS.senders`): the event is settled as soon as
its notices are in the log, and a slow mail server slows the consumer only once every sender is busy.

`failed` is written in one transaction with a `notification_failed` event in the outbox, so
operators' tools learn of every failure exactly as the log records it. `sent` is written with a
`notification_sent` event likewise when NOTIFICATIONS.announce_sent is on; off (the default), the
log alone records it: nobody subscribes to that event yet, and its outbox write, relay and archive
would be a large share of the database's work per notice at fan-out.

Residual risk, by design: a crash after the SMTP server accepted a message but before the log says
`sent` sends it again once the claim runs out. The Message-ID is derived from the notice id, so the
second copy carries the same Message-ID as the first (mail systems that deduplicate show one). An
SMS has no such identifier; the window is one HTTP round trip.
"""
import logging
import secrets
import smtplib
from collections import ChainMap
from datetime import timedelta
from email.utils import parseaddr

from eventlet.greenpool import GreenPile, GreenPool
from jinja2 import TemplateError
from nameko.extensions import DependencyProvider

from backbone import logs
from backbone.clock import utcnow
from backbone.config import public_url, required_secret
from backbone.database import database_of
from backbone.events import make_envelope
from backbone.lease import holder_id
from backbone.logs import mask
from services.notifications import mail, rules, store
from services.notifications.batching import Batches
from services.notifications.sms import SmsProviders, SmsRefused, SmsUnavailable
from services.notifications.templates import Renderer

log = logging.getLogger(__name__)

DEFAULTS = {
    "retry_delays": [10, 60, 300, 1800, 7200],
    "quiet_hours": "21:00-07:00",
    "claim_seconds": 60,
    "unsubscribe_secret": "",
    "reminder_hour": 8,
    "smtp_pool": 8,
    "senders": 32,
    "flushers": 3,
    "sweep_batch": 200,
    "flush_linger_seconds": 0.005,
    "announce_sent": False,
    "operator_email": "",
}


class Notices(DependencyProvider):
    """One SMTP pool, one SMS adapter, the senders and the group-commit flushers (batching.py) per
    container; workers get a `NoticeLog`."""

    def setup(self):
        from nameko import config
        # A view, not a copy: what the configuration says now (tests change quiet hours on the fly).
        self.settings = ChainMap(config.setdefault("NOTIFICATIONS", {}), DEFAULTS)
        required_secret(self.settings["unsubscribe_secret"], "UNSUBSCRIBE_SECRET")
        smtp = config["SMTP"]
        self.sender = smtp["sender"]
        self.mailer = mail.Mailer(smtp["host"], smtp["port"], smtp.get("starttls"), smtp.get("user"),
                                  smtp.get("password"), size=int(self.settings["smtp_pool"]))
        sms = config.get("SMS") or {}
        self.sms_settings = sms
        self.sms = SmsProviders(sms["gateway_url"], sms.get("fallback_url") or "", sms.get("sender") or "")
        self.renderer = Renderer()
        # Every notice links the privacy notice (Decree 13/2023/ND-CP), at the address people reach.
        self.renderer.env.globals["privacy_url"] = "{}/privacy".format(public_url(config).rstrip("/"))
        # More senders than SMTP connections: while some wait for the server, others build messages
        # or record outcomes.
        self.senders = GreenPool(int(self.settings["senders"]))
        # This container among the service's replicas, in the claims its sweeps take.
        self.replica = holder_id()

    def start(self):
        # In start, not setup: the Database is set up by now (extensions are set up concurrently).
        self.database = database_of(self.container)
        self.batches = Batches(self.database, linger=float(self.settings["flush_linger_seconds"]))
        # Several flushers: while one round waits for the database, the next takes what queued
        # meanwhile, so the database and this process work at the same time.
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
        return NoticeLog(self.database.db, self, worker_ctx)


class NoticeLog:
    """A worker's view of the notices: record new ones, hand them to the senders, send what is due."""

    def __init__(self, db, shared, worker_ctx):
        self.db = db
        self.shared = shared  # the container's Notices: SMTP pool, SMS providers, senders, flushers
        self.batches = shared.batches
        self.worker_ctx = worker_ctx
        self.settings = shared.settings
        self.renderer = shared.renderer

    # -- recording notices --------------------------------------------------------------------------

    def new(self, event, channel, to, template, language, context, official_id=None, partner_id=None,
            mandatory=False, operators=False):
        """A new notice of `event`, claimed by us (for `record`)."""
        now = utcnow()
        return store.new_notice(now, self._claim_ends(now), event["event_id"], channel, to, template, language,
                                context, event["correlation_id"], official_id=official_id,
                                partner_id=partner_id, mandatory=mandatory, operators=operators)

    def record(self, event, notices, steps=()):
        """Insert the notices, then the write `steps` (see Batches.write; a duplicate key there means
        "recorded already"), then, in an event handler, the record that the event was handled: in
        that order, in one round with other workers' writes. Returns the notices that are new; one
        that exists already (a repeated event, a restart) was sent, is being sent, or the sweep will
        send it. Once this returns the notices are safe: if nobody sends them, the sweep will."""
        steps = [store.inserting_notice(notice) for notice in notices] + list(steps)
        handling = getattr(self.worker_ctx.entrypoint, "marks_handled", False) and self.worker_ctx.args[0] is event
        if handling:
            steps.append(store.marking_handled(event))
        results = self.batches.write(*steps) if steps else []
        if handling:
            # The subscriber would otherwise write that record on its own, one at a time.
            self.worker_ctx.handled_recorded = True
        return [notice for notice, duplicate in zip(notices, results) if duplicate is None]

    def has_sms(self, template, language):
        return self.renderer.has_sms(template, language)

    def opted_out(self, official_id, channels):
        """The channels among these that the official opted out of."""
        return store.opted_out(self.batches, official_id, channels)

    def unsubscribe_links(self, official_id, language=rules.DEFAULT_LANGUAGE):
        """{channel: the signed link to the page where the official opts out of it (or back in)}."""
        return {channel: self.unsubscribe_url(official_id, channel, language) for channel in rules.CHANNELS}

    def unsubscribe_url(self, official_id, channel, language=rules.DEFAULT_LANGUAGE):
        from nameko import config
        return rules.unsubscribe_url(public_url(config), self.settings["unsubscribe_secret"], official_id, channel,
                                     language)

    def send_at_once(self, template, to, language, context, recorded):
        """Send an email now, in this worker, and record it already settled ("sent" or "failed"):
        for what must not wait in the log or be retried from it (a sign-in link: `context` holds it,
        only `recorded` is kept). Returns the status."""
        now = utcnow()
        event_id = "direct-" + secrets.token_hex(12)
        notice = store.new_notice(now, store.NEVER, event_id, "email", to, template, language, recorded,
                                  self.worker_ctx.context_data.get("correlation_id") or "none", operators=True)
        # Addressed by who asked, not to an official's or partner's id: no event names the recipient.
        notice["_id"] = rules.notice_id(event_id, "email", "direct:" + template)
        subject, text, html = self.renderer.email(template, language, context)
        try:
            message = mail.build(notice["_id"], self.shared.sender, to, subject, text, html)
            self.shared.mailer.send(_address_of(self.shared.sender), to, message)
            notice.update(status="sent", attempts=1, provider="smtp", sent_at=utcnow())
        except (smtplib.SMTPException, OSError, ValueError) as exc:
            notice.update(status="failed", attempts=1, last_error=mask(str(exc)))
            log.warning("%s to %s not sent: %s", template, mask(to), notice["last_error"])
        self.batches.write(store.inserting_notice(notice))
        return notice["status"]

    # -- sending ----------------------------------------------------------------------------------

    def send_soon(self, notice):
        """Hand a claimed notice to the container's senders; waits only while every one is busy."""
        self.shared.senders.spawn(self._attempt_apart, notice)

    def _attempt_apart(self, notice):
        logs.bind(service=self.shared.container.service_name, correlation_id=notice.get("correlation_id"))
        try:
            self.attempt(notice)
        except Exception:
            # The outcome could not be recorded (the database is away): the claim runs out and the
            # sweep tries again.
            log.exception("notice %s: outcome not recorded", notice["_id"])
        finally:
            logs.clear()

    def _claim_ends(self, now):
        return now + timedelta(seconds=float(self.settings["claim_seconds"]))

    def attempt(self, notice):
        """Send a claimed notice once; record the outcome. Returns the new status."""
        now = utcnow()
        if notice["channel"] == "sms":
            resume = rules.quiet_until(now, self.settings["quiet_hours"])
            if resume:
                self._set(notice, {"status": "queued", "not_before": resume, "claimed_until": store.NEVER})
                log.info("sms %s deferred to %s (quiet hours)", notice["_id"], resume.isoformat())
                return "queued"
        attempts = notice["attempts"] + 1
        try:
            if notice["channel"] == "email":
                provider, extra = self._send_email(notice), {}
            else:
                provider, extra = self._send_sms(notice)
        except TemplateError as exc:
            return self._fail(notice, attempts, "template {}: {}".format(notice["template"], exc))
        except (smtplib.SMTPResponseException, SmsRefused) as exc:
            code = getattr(exc, "smtp_code", 0)
            reason = _smtp_reason(exc) if code else str(exc)
            if isinstance(exc, SmsRefused) or rules.refusal_is_permanent(code):
                return self._fail(notice, attempts, reason)
            return self._retry_later(notice, attempts, reason)
        except (OSError, SmsUnavailable) as exc:
            return self._retry_later(notice, attempts, "{}: {}".format(type(exc).__name__, exc))
        except Exception as exc:
            # A notice we cannot even build would fail the same way at every sweep: failed, with the
            # reason, for an operator to look at (and resend once fixed), instead of looping.
            log.exception("notice %s could not be sent", notice["_id"])
            return self._fail(notice, attempts, "{}: {}".format(type(exc).__name__, exc))
        self._set(notice, dict(extra, status="sent", attempts=attempts, provider=provider, last_error=None,
                               sent_at=utcnow(), claimed_until=store.NEVER),
                  self._event("notification_sent", notice) if self.settings["announce_sent"] else None)
        return "sent"

    def _send_email(self, notice):
        context = notice["context"]
        subject, text, html = self.renderer.email(notice["template"], notice["language"], context)
        headers = {}
        if notice.get("official_id"):
            headers["List-Unsubscribe"] = "<{}>".format(
                self.unsubscribe_url(notice["official_id"], "email", notice["language"]))
            # RFC 8058: mail providers opt out with a POST to that address, never by following it.
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        qr = context.get("qr_token") if rules.carries_qr(notice["template"]) else None
        ics = None
        if rules.carries_invite(notice["template"]) and context.get("session"):
            ics = mail.invite("{}@trainops.local".format(context.get("registration_id")), context["session"],
                              _address_of(self.shared.sender), notice["to"])
        message = mail.build(notice["_id"], self.shared.sender, notice["to"], subject, text, html, headers, qr, ics)
        self.shared.mailer.send(_address_of(self.shared.sender), notice["to"], message)
        return "smtp"

    def _send_sms(self, notice):
        text = self.renderer.sms(notice["template"], notice["language"], notice["context"])
        if text is None:
            raise SmsRefused("no SMS template {}.{}".format(notice["template"], notice["language"]))
        text, cost = rules.prepare(text, self.shared.sms_settings.get("transliterate") or "long")
        provider, message_id = self.shared.sms.send(notice["to"], text)
        return provider, {"segments": cost["segments"], "encoding": cost["encoding"],
                          "provider_message_id": message_id}

    def _retry_later(self, notice, attempts, error):
        # Masked before it is stored: an SMTP reply quotes the address, a provider's error the number.
        error = mask(error)
        round_ = rules.retry_round(attempts, notice.get("round_starts_after", 0))
        delay = rules.retry_delay(round_, self.settings["retry_delays"])
        if delay is None:
            return self._fail(notice, attempts, "gave up after {} attempts: {}".format(round_, error))
        self._set(notice, {"status": "retrying", "attempts": attempts, "last_error": error,
                           "not_before": utcnow() + timedelta(seconds=delay), "claimed_until": store.NEVER})
        log.warning("notice %s: attempt %d failed, retrying: %s", notice["_id"], attempts, error)
        return "retrying"

    def _fail(self, notice, attempts, error):
        error = mask(error)  # as in _retry_later: stored, published and logged masked
        self._set(notice, {"status": "failed", "attempts": attempts, "last_error": error,
                           "claimed_until": store.NEVER},
                  self._event("notification_failed", notice, error=error))
        log.error("notice %s failed: %s", notice["_id"], error)
        return "failed"

    def _set(self, notice, fields, event=None):
        """Record the notice's new state: with an event that tells others, in one transaction (`sent`
        and notification_sent happen together or not at all); without, as one document's update."""
        update = store.updating_notice(notice["_id"], fields)
        if event is None:
            self.batches.write(update)  # one document: atomic on its own
        else:
            self.batches.commit([update], [event])
        notice.update(fields)

    def _event(self, type_, notice, **fields):
        """notification_sent or notification_failed about the notice, under the correlation id of the
        event that caused it; no address (the notice id names the notice)."""
        payload = dict(notice_id=notice["_id"], source_event_id=notice["event_id"], channel=notice["channel"],
                       template=notice["template"], official_id=notice.get("official_id"),
                       partner_id=notice.get("partner_id"), **fields)
        return make_envelope(type_, payload, self.shared.container.service_name,
                             notice.get("correlation_id") or "none")

    # -- the sweep and operators ----------------------------------------------------------------------

    def send_due(self, limit=None, rounds=10):
        """Send what is due (deferred SMS, retries, notices a dead sender left claimed): a batch claimed
        at once, sent through the container's senders, then the next batch, while batches come full
        (at most `rounds` a sweep: the timer's next tick goes on). Every replica sweeps; each claims
        its own batches. Returns how many were attempted."""
        limit = limit or int(self.settings["sweep_batch"])
        attempted = 0
        for _ in range(rounds):
            claimed = store.claim_due_notices(self.db, utcnow(), float(self.settings["claim_seconds"]), limit,
                                              self.shared.replica)
            self.send_all(claimed)
            attempted += len(claimed)
            if len(claimed) < limit:
                break
        return attempted

    def send_all(self, notices):
        """Send claimed notices through the container's senders, several at once; returns when each
        was attempted (or its outcome could not be recorded: its claim then runs out)."""
        pile = GreenPile(self.shared.senders)
        for notice in notices:
            pile.spawn(self._attempt_apart, notice)
        for _ in pile:
            pass

    def _claim(self, notice_id):
        return store.claim_notice(self.db, notice_id, utcnow(), float(self.settings["claim_seconds"]))

    def resend(self, notice_id):
        """A failed notice gets a new attempt now (and the retries after it, if that one fails too).
        The notice as it is then, or None when it was not failed."""
        if not store.reopen_failed(self.db, notice_id, utcnow()):
            return None
        notice = self._claim(notice_id)
        if notice is not None:
            self.attempt(notice)
        return store.notice(self.db, notice_id)


def _smtp_reason(exc):
    reply = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
    return "SMTP {} {}".format(exc.smtp_code, reply)


def _address_of(sender):
    return parseaddr(sender)[1] or sender
