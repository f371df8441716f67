"""Notifications: tells officials and partners what happened, by email and SMS, once, in Vietnamese
(or English when the official chose it).

Owns the notices' log (`notices`, see notices.py), its copy of upcoming confirmed registrations (for
reminders), what partners' events said of partners and offerings, and officials' opt-outs.
Reacts to registration events (confirmed, waitlisted, promoted, cancelled, rescheduled, completed)
with a notice to the official, to partners' (onboarded, offering published or withdrawn,
agreement expired) with a notice to the partner's contact, and to scheduling's agreement_ending with
one to the partner's contact and one to the operators' address (NOTIFICATIONS.operator_email).
Publishes `notification_failed` for every notice that failed, and `notification_sent` when
NOTIFICATIONS.announce_sent is on.

Rules (rules.py): a notice is recorded before anything is sent, keyed by its event, so a repeated
event or a restart never sends it twice. Transient failures (SMTP 4xx, a server or provider that is
down) are retried with backoff by a sweep that runs in every replica, each claiming its own batches;
permanent ones (SMTP 5xx, an invalid number) fail at once with the reason. SMS wait out quiet hours; reminders go at 08:00 local
time the day before the session. An official may opt out of a channel, except for the cancellation
of their own class; the page behind the unsubscribe link in every email asks before it changes
anything, and takes them back too (subscriptions.py).
"""
import logging
from datetime import timedelta

from eventlet.greenpool import GreenPile
from marshmallow import EXCLUDE
from nameko import config

from backbone import auth
from backbone.clock import utcnow
from backbone.config import public_url
from backbone.database import Database
from backbone.errors import DomainError, forbidden, invalid, not_found, validated
from backbone.logs import Tracing
from backbone.openapi import describe
from backbone.operated import Operated
from backbone.paging import listed
from backbone.rpc import rpc
from backbone.subscriber import subscribe
from backbone.timer import leased_timer, replica_timer
from backbone import personal
from backbone.config import privacy_setting
import contracts  # noqa: F401  (registers the contracts of the events it publishes and handles)
from services.notifications import privacy, rules, schemas, store, subscriptions
from services.notifications.notices import Notices
from services.notifications.templates import with_every_field

log = logging.getLogger(__name__)

# Reminders of a claimed batch recorded at once: their writes join the same group-commit rounds.
REMINDERS_AT_ONCE = 20


class NotificationsService(Operated):
    name = "notifications"

    db = Database(indexes=store.INDEXES, migrations=store.MIGRATIONS)
    tracing = Tracing()
    notices = Notices()

    # -- officials --------------------------------------------------------------------------------
    # keyed: a notice's _id is made from the event id and the copy of a registration changes only
    # for a newer event, so a repeated event writes nothing and sends nothing (see _notify_official).

    @subscribe("registration_confirmed", keyed=True)
    def on_registration_confirmed(self, event):
        self._notify_official(event, "registration_confirmed", now="confirmed")

    @subscribe("registration_waitlisted", keyed=True)
    def on_registration_waitlisted(self, event):
        self._notify_official(event, "registration_waitlisted")

    @subscribe("registration_promoted", keyed=True)
    def on_registration_promoted(self, event):
        self._notify_official(event, "registration_promoted", now="confirmed")

    @subscribe("registration_cancelled", keyed=True)
    def on_registration_cancelled(self, event):
        template, mandatory = rules.cancellation_notice(event["payload"]["cause"])
        self._notify_official(event, template, mandatory=mandatory, now="cancelled")

    @subscribe("registration_rescheduled", keyed=True)
    def on_registration_rescheduled(self, event):
        self._notify_official(event, "registration_rescheduled", now=event["payload"]["status"])

    @subscribe("course_completed", keyed=True)
    def on_course_completed(self, event):
        self._notify_official(event, "course_completed")

    def _notify_official(self, event, template, mandatory=False, now=None):
        """Record the official's notices (and, with `now`, the registration's status in the service's
        copy) and hand them to the senders."""
        payload = with_every_field(event)
        official = payload["official"]
        language = rules.language_of(official.get("language"))
        addresses = rules.addressed(official, self.notices.has_sms(template, language))
        opted_out = set() if mandatory or not addresses else self.notices.opted_out(
            official["id"], [channel for channel, _ in addresses])
        for channel in opted_out:
            log.info("%s by %s not sent: the official opted out", template, channel)
        base = public_url(config)
        # Every notice to an official leads to their page (/me: the sign-in page when not signed in),
        # and every link in it is absolute.
        context = dict(payload, language=language, me_url=base + "/me",
                       unsubscribe=self.notices.unsubscribe_links(official["id"], language))
        if payload.get("certificate_url"):
            context["certificate_url"] = rules.absolute(base, payload["certificate_url"])
        new = [self.notices.new(event, channel, address, template, language, context,
                                official_id=official["id"], mandatory=mandatory)
               for channel, address in addresses if channel not in opted_out]
        tracking = []
        if now:
            remind_at = rules.reminder_due_at(payload["session"]["starts_at"],
                                              int(self.notices.settings["reminder_hour"]))
            tracking.append(store.tracking_registration(event, now, remind_at))
        for notice in self.notices.record(event, new, tracking):
            self.notices.send_soon(notice)

    # -- partners ---------------------------------------------------------------------------------

    @subscribe("partner_onboarded")
    def on_partner_onboarded(self, event):
        payload = event["payload"]
        store.remember_partner(self.db, payload["partner_id"], payload["code"], payload["name"],
                               payload.get("contact_email"))

    @subscribe("offering_published")
    def on_offering_published(self, event):
        payload = event["payload"]
        store.remember_offering(self.db, payload["offering_id"], payload["title"], payload["partner_id"])
        self._notify_partner(event, "offering_published", {"offering": payload})

    @subscribe("offering_withdrawn")
    def on_offering_withdrawn(self, event):
        payload = event["payload"]
        known = store.offering(self.db, payload["offering_id"]) or {}
        offering = {"offering_id": payload["offering_id"], "title": known.get("title") or payload["offering_id"]}
        self._notify_partner(event, "offering_withdrawn", {"offering": offering, "reason": payload.get("reason")})

    @subscribe("agreement_expired")
    def on_agreement_expired(self, event):
        self._notify_partner(event, "agreement_expired", {"agreement": event["payload"]})

    @subscribe("agreement_ending")
    def on_agreement_ending(self, event):
        """The warning before an agreement ends: to the partner's contact, and to the operators."""
        self._notify_partner(event, "agreement_ending", {"agreement": with_every_field(event)},
                             to_operators="agreement_ending_operator")

    def _notify_partner(self, event, template, context, to_operators=None):
        """The partner's notice and, with `to_operators` (its template), the operators' copy."""
        partner_id = event["payload"]["partner_id"]
        partner = store.partner(self.db, partner_id)
        if partner is None:
            # Onboarding may not have reached us yet: raising lets the subscriber retry with backoff,
            # then dead-letter it for an operator if the partner never becomes known.
            raise LookupError("partner {} is not known to notifications yet".format(partner_id))
        context = dict(context, partner={"id": partner_id, "name": partner["name"], "code": partner["code"]},
                       language="vi")
        new = []
        if partner.get("contact_email"):
            new.append(self.notices.new(event, "email", partner["contact_email"], template, "vi", context,
                                        partner_id=partner_id))
        else:
            log.info("%s for partner %s not sent: no contact email", template, partner_id)
        operator_email = self.notices.settings["operator_email"]
        if to_operators and operator_email:
            new.append(self.notices.new(event, "email", operator_email, to_operators, "vi", context,
                                        partner_id=partner_id, operators=True))
        if not new:
            return
        for notice in self.notices.record(event, new):
            self.notices.send_soon(notice)

    # -- the sweep: reminders, retries, deferred SMS ----------------------------------------------

    @replica_timer("NOTIFICATIONS_SWEEP_SECONDS", 10)
    def sweep(self):
        """Reminders that are due, then every notice due for a (re)try. Runs in every replica: each
        claims its own batches, so more replicas send more."""
        self._send_reminders()
        self.notices.send_due()

    def _send_reminders(self, limit=None, rounds=10):
        """The reminders due, a claimed batch at a time: their notices recorded (several at once, in
        the group commit's rounds) and handed to the senders, then the batch marked reminded."""
        limit = limit or int(self.notices.settings["sweep_batch"])
        claim_seconds = float(self.notices.settings["claim_seconds"])
        now = utcnow()
        sent = 0
        for _ in range(rounds):
            claimed = store.claim_due_reminders(self.db, now, claim_seconds, limit)
            reminders = [(registration, rules.reminder_of(registration)) for registration in claimed]
            pile = GreenPile(REMINDERS_AT_ONCE)
            for registration, reminder in reminders:
                if rules.reminder_in_time(registration["starts_at"], now):
                    pile.spawn(self._notify_official, reminder, "reminder")
                    sent += 1
            for _ in pile:
                pass
            store.mark_reminded(self.db, [store.marking_reminded(registration["_id"], registration["starts_at"],
                                                                 reminder["event_id"])
                                          for registration, reminder in reminders])
            if len(claimed) < limit:
                break
        store.forget_registrations(self.db, rules.forgotten_before(now))
        return sent

    # -- operators --------------------------------------------------------------------------------

    def domain_gauges(self):
        """Notices by channel and status (failed ones are what operators look for)."""
        return [{"name": "trainops_notices", "help": "Notices in the log by channel and status.",
                 "labels": ["channel", "status"], "rows": store.notice_counts(self.db)}]

    @rpc
    def list_notices(self, actor, filters):
        """The notices' log, oldest first, recipients masked: {items, next_cursor}. Filters (a dict):
        official_id, partner_id, status, channel, template, event_id (a blank one is no filter);
        `limit` (1 to 200, default 50) and `cursor` (the last page's next_cursor). 403 unless an
        operator; 422 `invalid_fields` naming `limit` or `cursor`."""
        auth.require_operator(actor, reading=True)
        asked = validated(schemas.NoticeQuery(), {k: v for k, v in (filters or {}).items() if v not in (None, "")},
                          unknown=EXCLUDE)
        limit, cursor = asked.pop("limit"), asked.pop("cursor", None)
        return listed(store.notice_page(self.db, asked, limit, cursor), schemas.public_notice)

    @rpc
    def resend(self, actor, notice_id):
        """Give a failed notice a new attempt now (and its retries): the notice as it is then. 404
        unknown; 409 `not_failed` when it is not failed (a sent notice is never sent twice), 409
        `official_erased` when its official was erased."""
        auth.require_operator(actor)
        existing = store.notice(self.db, notice_id, {"status": 1, "personal_erased_at": 1})
        if existing is None:
            raise not_found("notice", notice_id)
        if existing.get("personal_erased_at"):
            raise DomainError("official_erased", "This notice's official was erased: there is nobody to send it to.",
                              {}, 409)
        notice = self.notices.resend(notice_id)
        if notice is None:
            raise DomainError("not_failed", "Only a failed notice can be resent; this one is {}.".format(
                existing["status"]), {}, 409)
        return schemas.public_notice(notice)

    # -- officials' choices: the page behind the unsubscribe link in every email -----------------------

    @rpc
    def subscription_page(self, query):
        """The page an email's unsubscribe link opens ({"status", "html"}): whether the official gets
        notices by that channel, and the button that changes it. Changes nothing: mail scanners follow
        links. 400 for a malformed link, 403 for one not signed by us (the page says so)."""
        found, status = subscriptions.read_link(query, self.notices.settings["unsubscribe_secret"])
        if found is None:
            return subscriptions.invalid(query, status)
        official_id, channel = found
        return subscriptions.page(query, channel, subscribed=not store.is_opted_out(self.db, official_id, channel))

    @rpc
    def change_subscription(self, query, form):
        """The page's POST ({"status", "html"}): `action=unsubscribe` opts the official out of the
        link's channel, `action=resubscribe` back in; RFC 8058's `List-Unsubscribe=One-Click` (what
        mail providers send) opts out. Doing it twice is doing it once. 400 for a request that asks
        neither (the page again, saying so), and as for the page."""
        found, status = subscriptions.read_link(query, self.notices.settings["unsubscribe_secret"])
        if found is None:
            return subscriptions.invalid(query, status)
        official_id, channel = found
        change = rules.subscription_change(form or {})
        if change == "unsubscribe":
            store.opt_out(self.db, official_id, channel, utcnow())
        elif change == "resubscribe":
            store.opt_in(self.db, official_id, channel)
        subscribed = not store.is_opted_out(self.db, official_id, channel)
        if change is None:
            return subscriptions.page(query, channel, subscribed, status=400, problem=True)
        log.info("official %s %s by %s", official_id, "opted out" if change == "unsubscribe" else "opted back in",
                 channel)
        return subscriptions.page(query, channel, subscribed, done=change)

    # -- sign-in links and officials' own choices (/me) ---------------------------------------------------

    @rpc
    def send_sign_in_link(self, to, name, language, link, audience):
        """Email a sign-in link (`audience`: "official" or "operator") to `to` at once, through the
        mail senders; {"status": "sent"|"failed"}. The notices' log records that it was sent, to
        whom and with which template, never the link (it opens a session until it is used). 422
        `invalid_fields` for a link that is not to our own sign-in pages."""
        if audience not in ("official", "operator"):
            raise invalid({"audience": ["official or operator"]})
        if not rules.sign_in_link_allowed(public_url(config), link, audience):
            raise invalid({"link": ["Only a link to this system's sign-in page."]})
        language = rules.language_of(language)
        return {"status": self.notices.send_at_once(
            "sign_in_link", to, language, {"name": name or "", "link": link}, {"audience": audience})}

    @rpc
    def my_channels(self, actor):
        """{email: bool, sms: bool}: whether the official (themself only) gets notices by each channel."""
        official_id = auth.official_id_of(actor)
        if official_id is None:
            raise forbidden("Only the official sees their own choices.")
        return {channel: not store.is_opted_out(self.db, official_id, channel) for channel in rules.CHANNELS}

    @rpc
    def set_my_channel(self, actor, channel, on):
        """The official (themself only) opts out of a channel (`on` False) or back in; as the
        unsubscribe link does. Returns my_channels."""
        official_id = auth.official_id_of(actor)
        if official_id is None:
            raise forbidden("Only the official changes their own choices.")
        if channel not in rules.CHANNELS:
            raise invalid({"channel": ["email or sms"]})
        if on:
            store.opt_in(self.db, official_id, channel)
        else:
            store.opt_out(self.db, official_id, channel, utcnow())
        return self.my_channels(actor)

    # -- personal data (Decree 13/2023/ND-CP) -----------------------------------------------------------

    @subscribe("official_erased")
    def on_official_erased(self, event):
        """The official's addresses, names and tokens go from the notices' log, the copy of upcoming
        registrations and the opt-outs, and from the platform's records of events."""
        official_id, now = event["payload"]["official_id"], utcnow()
        privacy.erase(self.db, official_id, now)
        personal.erase_official_records(self.db, official_id, now)

    @rpc
    def personal_data(self, actor, official_id):
        """What notifications holds about one official (an admin, or the official themself)."""
        personal.require_subject_or_admin(actor, official_id)
        return privacy.held_about(self.db, official_id)

    @leased_timer("PRIVACY_SWEEP_SECONDS", 3600, lease="notifications-retention")
    def retention_sweep(self):
        """Addresses, names and QR tokens in notices about sessions that ended longer ago than their
        retention periods (README: Personal data); officials erased in the last day once more (an
        event of theirs handled alongside the erasure)."""
        self.sweep_retention(utcnow())

    def sweep_retention(self, now):
        for official_id in privacy.recently_erased(self.db, now - timedelta(days=1)):
            privacy.erase(self.db, official_id, now)
            personal.erase_official_records(self.db, official_id, now)
        periods = (("qr_token", now - timedelta(hours=float(privacy_setting("qr_token_hours")))),
                   ("personal", now - timedelta(days=float(privacy_setting("personal_data_days")))))
        for what, before in periods:
            privacy.strip_contexts(self.db, before, now, what)

    @rpc
    def api_schemas(self):
        """The list queries this service accepts, for the gateway's OpenAPI document."""
        return describe(schemas.BODIES, schemas.QUERIES)
