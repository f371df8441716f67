"""Notifications: tells officials and partners what happened, by email and SMS, once, in Vietnamese
(or English when the official chose it).

Every notice is a document in the delivery log (see delivery.py) inserted before anything is sent,
so a repeated event or a restart never sends it twice. Transient failures (SMTP 4xx, a server or
provider that is down) are retried with backoff by a sweep that runs in one replica (`@leased_timer`);
permanent ones (SMTP 5xx, an invalid number) fail at once with the reason. The same sweep sends SMS
deferred by quiet hours and the reminders due the day before each session at 08:00 local time, from
the service's own copy of upcoming confirmed registrations (built from registration events).
"""
import base64
import hmac
import logging
from datetime import datetime, timedelta, timezone

from pymongo import ASCENDING, IndexModel, InsertOne, UpdateOne

from backbone import auth
from backbone.events import schema_for
from backbone.errors import DomainError, invalid, not_found
from backbone.logs import Tracing, mask
from backbone.operated import Operated
from backbone.rpc import rpc
from backbone.clock import utcnow
from backbone.database import Database
from backbone.subscriber import subscribe
from backbone.timer import leased_timer
import contracts  # noqa: F401  (registers the contracts of the events it publishes and handles)
from services.notifications.delivery import (
    Postbox, reminder_due_at, unsubscribe_signature)
from services.notifications.templates import language_of

log = logging.getLogger(__name__)

INDEXES = {
    "deliveries": [
        IndexModel([("official_id", ASCENDING), ("created_at", ASCENDING)]),
        IndexModel([("status", ASCENDING), ("not_before", ASCENDING)]),
        IndexModel([("created_at", ASCENDING), ("_id", ASCENDING)]),
    ],
    # The service's copy of registrations that may need a reminder.
    "upcoming": [IndexModel([("status", ASCENDING), ("remind_at", ASCENDING)]),
                 IndexModel([("starts_at", ASCENDING)])],
    "partners": [],
    "offerings": [],
    "opt_outs": [],
}

CHANNELS = ("email", "sms")
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


class NotificationsService(Operated):
    name = "notifications"

    db = Database(indexes=INDEXES)
    tracing = Tracing()
    deliveries = Postbox()

    # -- officials --------------------------------------------------------------------------------
    # keyed: a notice's _id is made from the event id and the tracking copy changes only for a newer
    # event, so a repeated event writes nothing and sends nothing (see notify_official).

    @subscribe("registration_confirmed", keyed=True)
    def on_registration_confirmed(self, event):
        self.notify_official(event, "registration_confirmed", now="confirmed")

    @subscribe("registration_waitlisted", keyed=True)
    def on_registration_waitlisted(self, event):
        self.notify_official(event, "registration_waitlisted")

    @subscribe("registration_promoted", keyed=True)
    def on_registration_promoted(self, event):
        self.notify_official(event, "registration_promoted", now="confirmed")

    @subscribe("registration_cancelled", keyed=True)
    def on_registration_cancelled(self, event):
        # The cancellation of their own class reaches them whatever they opted out of.
        if event["payload"]["cause"] == "session_cancelled":
            self.notify_official(event, "session_cancelled", mandatory=True, now="cancelled")
        else:
            self.notify_official(event, "registration_cancelled", now="cancelled")

    @subscribe("registration_rescheduled", keyed=True)
    def on_registration_rescheduled(self, event):
        self.notify_official(event, "registration_rescheduled", now=event["payload"]["status"])

    @subscribe("course_completed", keyed=True)
    def on_course_completed(self, event):
        self.notify_official(event, "course_completed")

    def notify_official(self, event, template, mandatory=False, now=None):
        """Record the official's notices (and, with `now`, the registration's status in the service's
        copy) and hand them to the senders."""
        payload = with_every_field(event)
        official = payload["official"]
        language = language_of(official.get("language"))
        context = dict(payload, language=language, unsubscribe={
            channel: self.deliveries.unsubscribe_url(official["id"], channel) for channel in CHANNELS})
        addresses = [(channel, address) for channel, address in (("email", official.get("email")),
                                                                  ("sms", official.get("phone")))
                     if address and (channel == "email" or self.deliveries.renderer.has_sms(template, language))]
        opted_out = set() if mandatory or not addresses else self.deliveries.opted_out(
            official["id"], [channel for channel, _ in addresses])
        for channel in opted_out:
            log.info("%s by %s not sent: the official opted out", template, channel)
        notices = [self.deliveries.notice(event["event_id"], channel, address, template, language, context,
                                          event["correlation_id"], official_id=official["id"], mandatory=mandatory)
                   for channel, address in addresses if channel not in opted_out]
        for notice in self.deliveries.record(event, notices, [self.tracking(event, now)] if now else []):
            self.deliveries.send_soon(notice)

    def tracking(self, event, status):
        """The write step that keeps the service's copy of a registration that may need a reminder:
        an insert (a registration's first event, the common case, and the cheapest write), or when
        the copy exists, an update that only a newer event makes. `status` is what it is now."""
        payload = event["payload"]
        occurred_at = event["occurred_at"]
        if isinstance(occurred_at, str):
            occurred_at = datetime.fromisoformat(occurred_at)
        starts_at = payload["session"]["starts_at"]
        # `reminded` goes back to False with every event: the reminder's own key (registration and
        # start time) keeps a repeat from sending a second one, and lets a new start time have its own.
        fields = {"status": status, "as_of": occurred_at, "official": payload["official"], "reminded": False,
                  "session": payload["session"], "starts_at": starts_at,
                  "remind_at": reminder_due_at(starts_at, int(self.deliveries.settings["reminder_hour"]))}
        if payload.get("qr_token"):
            fields["qr_token"] = payload["qr_token"]
        # A rescheduled registration keeps the code its confirmation carried.
        first = dict(fields, _id=payload["registration_id"], qr_token=payload.get("qr_token"))
        newer = UpdateOne({"_id": payload["registration_id"], "as_of": {"$lte": occurred_at}}, {"$set": fields})
        return ("upcoming", InsertOne(first), newer)

    # -- partners ---------------------------------------------------------------------------------

    @subscribe("partner_onboarded")
    def on_partner_onboarded(self, event):
        payload = event["payload"]
        self.db.partners.update_one({"_id": payload["partner_id"]}, {"$set": {
            "code": payload["code"], "name": payload["name"], "contact_email": payload.get("contact_email")}},
            upsert=True)

    @subscribe("offering_published")
    def on_offering_published(self, event):
        payload = event["payload"]
        self.db.offerings.update_one({"_id": payload["offering_id"]}, {"$set": {
            "title": payload["title"], "partner_id": payload["partner_id"]}}, upsert=True)
        self.notify_partner(event, "offering_published", {"offering": payload})

    @subscribe("offering_withdrawn")
    def on_offering_withdrawn(self, event):
        payload = event["payload"]
        known = self.db.offerings.find_one({"_id": payload["offering_id"]}) or {}
        offering = {"offering_id": payload["offering_id"], "title": known.get("title") or payload["offering_id"]}
        self.notify_partner(event, "offering_withdrawn", {"offering": offering, "reason": payload.get("reason")})

    @subscribe("agreement_expired")
    def on_agreement_expired(self, event):
        self.notify_partner(event, "agreement_expired", {"agreement": event["payload"]})

    def notify_partner(self, event, template, context):
        partner_id = event["payload"]["partner_id"]
        partner = self.db.partners.find_one({"_id": partner_id})
        if partner is None:
            # Onboarding may not have reached us yet: raising lets the subscriber retry with backoff,
            # then dead-letter it for an operator if the partner never becomes known.
            raise LookupError("partner {} is not known to notifications yet".format(partner_id))
        if not partner.get("contact_email"):
            log.info("%s for partner %s not sent: no contact email", template, partner_id)
            return
        context = dict(context, partner={"id": partner_id, "name": partner["name"], "code": partner["code"]},
                       language="vi")
        notice = self.deliveries.notice(event["event_id"], "email", partner["contact_email"], template, "vi",
                                        context, event["correlation_id"], partner_id=partner_id)
        for notice in self.deliveries.record(event, [notice]):
            self.deliveries.send_soon(notice)

    # -- the sweep: retries, deferred SMS, reminders ------------------------------------------------

    @leased_timer("NOTIFICATIONS_SWEEP_SECONDS", 10, lease="notifications-sweep")
    def sweep(self):
        """Reminders that are due, then every notice due for a (re)try."""
        self.send_reminders()
        self.deliveries.send_due()

    def send_reminders(self, limit=200):
        now = utcnow()
        due = list(self.db.upcoming.find(
            {"status": "confirmed", "remind_at": {"$lte": now}, "reminded": False}).limit(limit))
        sent = 0
        for registration in due:
            start = registration["starts_at"]
            key = "reminder:{}:{}".format(registration["_id"], start.astimezone(timezone.utc).isoformat())
            if start > now:  # a session that began already (the service was down that day): too late
                event = {"event_id": key, "correlation_id": "reminder-" + registration["_id"], "payload": {
                    "registration_id": registration["_id"], "official": registration["official"],
                    "session": registration["session"], "qr_token": registration.get("qr_token")}}
                self.notify_official(event, "reminder")
                sent += 1
            # Marked for this start time: a rescheduled session gets its own reminder.
            self.db.upcoming.update_one({"_id": registration["_id"], "starts_at": start},
                                           {"$set": {"reminded": True, "reminder_key": key}})
        # Sessions long past need no copy any more.
        self.db.upcoming.delete_many({"starts_at": {"$lt": now - timedelta(days=7)}})
        return sent

    # -- operators --------------------------------------------------------------------------------

    def domain_gauges(self):
        """Notices by channel and status (failed ones are what operators look for)."""
        rows = [[row["_id"]["channel"], row["_id"]["status"], row["n"]] for row in self.db.deliveries.aggregate(
            [{"$group": {"_id": {"channel": "$channel", "status": "$status"}, "n": {"$sum": 1}}}])]
        return [{"name": "trainops_notices", "help": "Notices in the delivery log by channel and status.",
                 "labels": ["channel", "status"], "rows": sorted(rows)}]

    @rpc
    def list_notices(self, actor, filters):
        """The delivery log, oldest first, recipients masked: {items, next_cursor}. Filters:
        official_id, partner_id, status, channel, template, event_id; `limit` (≤ 500) and `cursor`."""
        auth.require_operator(actor)
        filters = dict(filters or {})
        query = {k: filters[k] for k in ("official_id", "partner_id", "status", "channel", "template", "event_id")
                 if filters.get(k)}
        try:
            limit = min(int(filters.get("limit") or PAGE_SIZE), MAX_PAGE_SIZE)
            if limit < 1:
                raise ValueError
        except ValueError:
            raise invalid({"limit": ["A whole number from 1 to {}.".format(MAX_PAGE_SIZE)]})
        if filters.get("cursor"):
            created_at, last_id = decode_cursor(filters["cursor"])
            query["$or"] = [{"created_at": {"$gt": created_at}},
                            {"created_at": created_at, "_id": {"$gt": last_id}}]
        docs = list(self.db.deliveries.find(query, {"context": 0})
                    .sort([("created_at", ASCENDING), ("_id", ASCENDING)]).limit(limit + 1))
        next_cursor = encode_cursor(docs[limit - 1]) if len(docs) > limit else None
        return {"items": [public_delivery(d) for d in docs[:limit]], "next_cursor": next_cursor}

    @rpc
    def resend(self, actor, delivery_id):
        """Give a failed notice a new attempt now (and its retries). 404 unknown; 409 `not_failed`
        when it is not failed (a sent notice is never sent twice)."""
        auth.require_operator(actor)
        existing = self.db.deliveries.find_one({"_id": delivery_id}, {"status": 1})
        if existing is None:
            raise not_found("notice", delivery_id)
        doc = self.deliveries.resend(delivery_id)
        if doc is None:
            raise DomainError("not_failed", "Only a failed notice can be resent; this one is {}.".format(
                existing["status"]), {}, 409)
        return public_delivery(doc)

    @rpc
    def unsubscribe(self, official_id, channel, signature):
        """Opt an official out of a channel, from the signed link in every email. 403 `bad_signature`."""
        if channel not in CHANNELS:
            raise invalid({"channel": ["One of: {}.".format(", ".join(CHANNELS))]})
        expected = unsubscribe_signature(self.deliveries.settings["unsubscribe_secret"], official_id or "", channel)
        if not official_id or not hmac.compare_digest(expected, signature or ""):
            raise DomainError("bad_signature", "This unsubscribe link is not valid.", {}, 403)
        self.db.opt_outs.update_one({"_id": "{}:{}".format(official_id, channel)}, {
            "$set": {"official_id": official_id, "channel": channel},
            "$setOnInsert": {"created_at": utcnow()}}, upsert=True)
        return {"official_id": official_id, "channel": channel, "subscribed": False}


def with_every_field(event):
    """The payload with every field of its contract, None where the producer left an optional one out:
    a template may then test `{% if reason %}`, while a name no contract has stays an error."""
    if "type" not in event:
        return event["payload"]
    fields = schema_for(event["type"], event.get("version", 1)).fields
    return dict({name: None for name in fields}, **event["payload"])


def public_delivery(doc):
    out = {k: doc.get(k) for k in ("event_id", "channel", "template", "language", "status", "attempts",
                                   "provider", "last_error", "official_id", "partner_id", "segments",
                                   "created_at", "sent_at", "not_before")}
    out["id"] = doc["_id"]
    out["to"] = mask(doc["to"])
    return out


def encode_cursor(doc):
    millis = int(doc["created_at"].timestamp() * 1000)
    return base64.urlsafe_b64encode("{}|{}".format(millis, doc["_id"]).encode()).decode()


def decode_cursor(cursor):
    try:
        millis, _, last_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromtimestamp(int(millis) / 1000, timezone.utc), last_id
    except (ValueError, UnicodeDecodeError):
        raise invalid({"cursor": ["Not a cursor this endpoint returned."]})
