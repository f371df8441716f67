"""Partners: institutions, their cooperation agreements with the city, and the course offerings they post.

Publishes partner_onboarded; agreement_signed, agreement_amended, agreement_terminated and
agreement_expired; offering_published, offering_updated and offering_withdrawn. Reacts to nothing:
the other services learn from it, never the other way round.

The rules:
- An agreement is valid on the local calendar days (Asia/Ho_Chi_Minh) from valid_from through
  valid_until, both included: `pending` before, `active` during, `expired` after. Termination ends it
  at once: from its termination day it is `expired`, with `terminated_on` set.
- An ended agreement (expired or terminated) is history: it is neither amended nor terminated; the
  parties sign a new one. Amendments and the termination are kept in the agreement's `history`.
- `agreement_expired` is published once per agreement, by the sweep after the local midnight that
  ends it. A terminated agreement publishes `agreement_terminated` when terminated, and never
  `agreement_expired`. Shortening an agreement publishes `agreement_amended`; if that ends it, the
  next sweep announces the expiry.
- An offering is published (and updated) only under an agreement of its partner that is active today
  and covers the offering's whole window and every one of its audience groups (an agreement whose
  scope names no audience group covers them all); otherwise 422 `no_active_agreement`. The one
  exception is the record of the past: the operator may record an offering whose window ended before
  today under the agreement that covered it (active on the window's last day), as when a new
  installation is given the programme's history.
- A partner acts on its own offerings and reads its own agreements; everything else is the operator's.
"""
import hashlib
import secrets
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError

from backbone import auth
from contracts.common import AUDIENCE_GROUPS
from backbone.errors import conflict, forbidden, invalid, not_found, rule_broken, validated
from backbone.logs import Tracing
from backbone.operated import Operated
from backbone.openapi import describe
from backbone.rpc import rpc
from backbone.clock import utcnow
from backbone.database import Database, new_id
from backbone.timer import leased_timer
import contracts  # noqa: F401  (registers the contracts of the events it publishes and handles)
from services.partners import schemas
from services.partners.storage import INDEXES, offering_filter, page

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")

# Two are enough to rotate without downtime; a few more leave room for several integrations.
MAX_API_KEYS = 5

OFFERING_EVENT_FIELDS = ("partner_id", "agreement_id", "title", "title_en", "audience_groups", "modules",
                         "starts_from", "ends_by")


def local_date(instant=None):
    """The calendar day in Ho Chi Minh City at `instant` (an aware datetime; now by default)."""
    return (instant or datetime.now(timezone.utc)).astimezone(LOCAL).date()


def as_date(value):
    return date.fromisoformat(value) if isinstance(value, str) else value


def agreement_status(agreement, today):
    """`pending`, `active` or `expired` on the local day `today` (see the rules above)."""
    if agreement.get("terminated_on") and today >= as_date(agreement["terminated_on"]):
        return "expired"
    if today < as_date(agreement["valid_from"]):
        return "pending"
    return "active" if today <= as_date(agreement["valid_until"]) else "expired"


def covers(agreement, offering, on):
    """Whether `agreement` is active on the day `on` and covers the offering's window and audiences."""
    scoped_audiences = set(agreement["scope"]) & set(AUDIENCE_GROUPS)
    return (agreement_status(agreement, on) == "active"
            and agreement["valid_from"] <= offering["starts_from"]
            and offering["ends_by"] <= agreement["valid_until"]
            and (not scoped_audiences or set(offering["audience_groups"]) <= scoped_audiences))


def require_caller(actor):
    """The operator or any partner (401 for nobody); each then sees only what it may."""
    if not auth.is_operator(actor):
        auth.require_operator_or_partner(actor, auth.partner_id_of(actor))


def key_hash(api_key):
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def new_api_key():
    """A fresh API key, and what is stored of it: its hash and last characters, never the key."""
    api_key = "tok_" + secrets.token_urlsafe(32)
    return api_key, {"id": new_id("key"), "hash": key_hash(api_key), "hint": api_key[-4:],
                     "issued_at": utcnow()}


def public_key(record):
    # .get: keys issued before keys had ids and hints (early dev databases) have neither.
    return {"key_id": record.get("id"), "hint": record.get("hint"), "issued_at": record["issued_at"],
            "revoked_at": record.get("revoked_at")}


def public_partner(doc):
    out = {k: doc.get(k) for k in ("id", "code", "name", "kind", "contact_email", "contacts", "created_at")}
    out["api_keys"] = [public_key(k) for k in doc["api_keys"]]
    out["revoked_api_keys"] = [public_key(k) for k in doc.get("revoked_api_keys", [])]
    return out


def public_agreement(doc):
    out = {k: doc.get(k) for k in ("id", "partner_id", "title", "parties", "signed_on", "valid_from",
                                   "valid_until", "scope", "terminated_on", "history", "created_at")}
    out["status"] = agreement_status(doc, local_date())
    return out


def public_offering(doc):
    return {k: doc.get(k) for k in (
        "id", "partner_id", "agreement_id", "title", "title_en", "audience_groups", "modules",
        "starts_from", "ends_by", "status", "withdrawal_reason", "created_at", "updated_at", "withdrawn_at")}


def agreement_event(doc, **extra):
    return dict({"agreement_id": doc["id"], "partner_id": doc["partner_id"], "title": doc["title"],
                 "valid_from": doc["valid_from"], "valid_until": doc["valid_until"], "scope": doc["scope"]},
                **extra)


def offering_event(doc):
    return dict({k: doc.get(k) for k in OFFERING_EVENT_FIELDS}, offering_id=doc["id"])


def no_active_agreement(offering):
    return rule_broken(
        "no_active_agreement",
        "No active agreement of this partner covers {} to {} for {}.".format(
            offering["starts_from"], offering["ends_by"], ", ".join(offering["audience_groups"])),
        {"starts_from": ["Not covered by an active agreement."],
         "ends_by": ["Not covered by an active agreement."]})


def agreement_ended(agreement):
    return rule_broken(
        "agreement_ended",
        "Agreement {} has ended{}; record a new agreement instead.".format(
            agreement["id"], " (terminated)" if agreement.get("terminated_on") else ""))


class PartnersService(Operated):
    name = "partners"

    db = Database(indexes=INDEXES)
    tracing = Tracing()

    # -- partners and their API keys --------------------------------------------------------------

    @rpc
    def create_partner(self, actor, data):
        """Onboard an institution (operator only). Returns it with `api_key` and its `key_id`: the key
        is shown this once and stored only as a hash. 409 `partner_exists` for a code already taken."""
        auth.require_operator(actor)
        fields = validated(schemas.PartnerIn(), data)
        api_key, key = new_api_key()
        partner = dict(fields, id=new_id("partner"), created_at=utcnow(), api_keys=[key], revoked_api_keys=[])
        partner["_id"] = partner["id"]

        def onboard(tx):
            tx.partners.insert_one(partner)
            tx.emit("partner_onboarded", {
                "partner_id": partner["id"], "code": partner["code"], "name": partner["name"],
                "kind": partner["kind"], "contact_email": partner["contact_email"]})

        try:
            self.db.transaction(onboard)
        except DuplicateKeyError:
            raise conflict("partner_exists", "A partner with code {} exists.".format(fields["code"]),
                           {"code": ["Already taken."]})
        return dict(public_partner(partner), api_key=api_key, key_id=key["id"])

    @rpc
    def issue_api_key(self, actor, partner_id):
        """Give a partner another API key (operator only), to rotate without downtime: issue, let the
        partner switch, revoke the old one. Returns {partner_id, key_id, api_key, ...}, the key shown
        this once. 404 unknown partner; 422 `too_many_api_keys` when it already has MAX_API_KEYS."""
        auth.require_operator(actor)
        api_key, key = new_api_key()
        done = self.db.partners.update_one(
            # The limit is part of the update, so two issues at once cannot both pass it.
            {"_id": partner_id, "api_keys.{}".format(MAX_API_KEYS - 1): {"$exists": False}},
            {"$push": {"api_keys": key}})
        if not done.matched_count:
            self._partner(partner_id)
            raise rule_broken("too_many_api_keys",
                              "This partner has {} API keys; revoke one first.".format(MAX_API_KEYS))
        return dict(public_key(key), partner_id=partner_id, api_key=api_key)

    @rpc
    def revoke_api_key(self, actor, partner_id, key_id):
        """Revoke one of a partner's API keys (operator only); it is refused from the next request on.
        Returns the key's record with `revoked_at`; revoking it again returns the same. 404 unknown
        partner or key."""
        auth.require_operator(actor)
        partner = self._partner(partner_id)
        key = next((k for k in partner["api_keys"] if k.get("id") == key_id), None)
        if key is None:
            revoked = next((k for k in partner.get("revoked_api_keys", []) if k["id"] == key_id), None)
            if revoked is None:
                raise not_found("API key", key_id)
            return public_key(revoked)
        record = {k: key[k] for k in ("id", "hint", "issued_at")} | {"revoked_at": utcnow()}
        # The hash leaves the partner with the key: `authenticate` can no longer find it.
        self.db.partners.update_one(
            {"_id": partner_id, "api_keys.id": key_id},
            {"$pull": {"api_keys": {"id": key_id}}, "$push": {"revoked_api_keys": record}})
        return public_key(record)

    @rpc
    def authenticate(self, api_key):
        """The partner an API key belongs to, or None (unknown or revoked key). Read from the database
        on every call, never cached, so a revoked key fails at once."""
        doc = self.db.partners.find_one({"api_keys.hash": key_hash(api_key or "")}, {"id": 1})
        return {"role": "partner", "partner_id": doc["id"]} if doc else None

    @rpc
    def get_partner(self, actor, partner_id):
        """One partner (the operator, or the partner itself), with its keys' ids and hints."""
        auth.require_operator_or_partner(actor, partner_id)
        return public_partner(self._partner(partner_id))

    @rpc
    def list_partners(self, actor, query):
        """{items, next_cursor} in order of code; a partner sees only itself. `query`: limit, cursor."""
        require_caller(actor)
        asked = validated(schemas.PageQuery(), query)
        selection = {} if auth.is_operator(actor) else {"_id": auth.partner_id_of(actor)}
        docs, cursor = page(self.db.partners, selection, asked["limit"], asked.get("cursor"), key="code")
        return {"items": [public_partner(d) for d in docs], "next_cursor": cursor}

    def _partner(self, partner_id):
        doc = self.db.partners.find_one({"_id": partner_id})
        if doc is None:
            raise not_found("partner", partner_id)
        return doc

    # -- agreements -------------------------------------------------------------------------------

    @rpc
    def create_agreement(self, actor, partner_id, data):
        """Record a signed cooperation agreement (operator only). Returns it with its status, which
        follows from its dates. 404 unknown partner."""
        auth.require_operator(actor)
        fields = validated(schemas.AgreementIn(), data)
        self._partner(partner_id)
        agreement = {
            "id": new_id("agreement"), "partner_id": partner_id, "title": fields["title"],
            "parties": fields["parties"], "signed_on": fields["signed_on"].isoformat(),
            "valid_from": fields["valid_from"].isoformat(), "valid_until": fields["valid_until"].isoformat(),
            "scope": fields["scope"], "history": [], "created_at": utcnow(),
        }
        agreement["_id"] = agreement["id"]

        def sign(tx):
            tx.agreements.insert_one(agreement)
            tx.emit("agreement_signed", agreement_event(agreement, signed_on=agreement["signed_on"]))

        self.db.transaction(sign)
        return public_agreement(agreement)

    @rpc
    def list_agreements(self, actor, partner_id, query):
        """{items, next_cursor}: a partner's agreements (the operator, or the partner itself).
        `query`: limit, cursor. 404 unknown partner."""
        auth.require_operator_or_partner(actor, partner_id)
        asked = validated(schemas.PageQuery(), query)
        self._partner(partner_id)
        docs, cursor = page(self.db.agreements, {"partner_id": partner_id}, asked["limit"], asked.get("cursor"))
        return {"items": [public_agreement(d) for d in docs], "next_cursor": cursor}

    @rpc
    def get_agreement(self, actor, agreement_id):
        """One agreement with its status and history (the operator, or the partner that is party to it)."""
        agreement = self._agreement(agreement_id)
        auth.require_operator_or_partner(actor, agreement["partner_id"])
        return public_agreement(agreement)

    @rpc
    def amend_agreement(self, actor, agreement_id, data):
        """Extend or shorten an agreement's validity (operator only): new valid_from and/or
        valid_until, and the reason, kept in its history. Returns the amended agreement. 422
        `agreement_ended` when it has expired or was terminated; 409 `agreement_changed` when it
        changed meanwhile (read it again)."""
        auth.require_operator(actor)
        fields = validated(schemas.AgreementAmendment(), data)
        agreement = self._agreement(agreement_id)
        if agreement_status(agreement, local_date()) == "expired":
            raise agreement_ended(agreement)
        before = {k: agreement[k] for k in ("valid_from", "valid_until")}
        after = {k: fields[k].isoformat() if k in fields else before[k] for k in before}
        if after["valid_until"] < after["valid_from"]:
            raise invalid({"valid_until": ["Must not be before valid_from ({}).".format(after["valid_from"])]})
        if after == before:
            raise invalid({"_schema": ["These are the agreement's dates already."]})
        entry = {"action": "amended", "at": utcnow(), "reason": fields["reason"], "before": before, "after": after}

        def amend(tx):
            # Conditional on the dates we read and on no expiry announced since: a concurrent amendment
            # or sweep makes this match nothing instead of being overwritten.
            done = tx.agreements.update_one(
                dict(before, _id=agreement_id, end_announced={"$ne": True}),
                {"$set": after, "$push": {"history": entry}})
            if not done.modified_count:
                raise conflict("agreement_changed", "The agreement changed meanwhile; read it again.")
            tx.emit("agreement_amended", agreement_event(
                dict(agreement, **after), reason=fields["reason"],
                previous_valid_from=before["valid_from"], previous_valid_until=before["valid_until"]))

        self.db.transaction(amend)
        return public_agreement(self._agreement(agreement_id))

    @rpc
    def terminate_agreement(self, actor, agreement_id, data):
        """End an agreement early, as of today (operator only): from today it is `expired`, and
        `agreement_terminated` tells the other services. Returns the agreement; terminating it again
        returns the same. 422 `agreement_ended` when it had already expired."""
        auth.require_operator(actor)
        fields = validated(schemas.AgreementTermination(), data)
        agreement = self._agreement(agreement_id)
        if agreement.get("terminated_on"):
            return public_agreement(agreement)
        if agreement_status(agreement, local_date()) == "expired":
            raise agreement_ended(agreement)
        today = local_date().isoformat()
        reason = fields.get("reason")
        entry = {"action": "terminated", "at": utcnow(), "reason": reason, "terminated_on": today}

        def terminate(tx):
            # Marked announced, so the expiry sweep never announces it as expired too; conditional
            # like an amendment, so the event carries the dates the agreement had.
            done = tx.agreements.update_one(
                {"_id": agreement_id, "end_announced": {"$ne": True},
                 "valid_from": agreement["valid_from"], "valid_until": agreement["valid_until"]},
                {"$set": {"terminated_on": today, "end_announced": True}, "$push": {"history": entry}})
            if not done.modified_count:
                raise conflict("agreement_changed", "The agreement changed meanwhile; read it again.")
            tx.emit("agreement_terminated", agreement_event(agreement, terminated_on=today, reason=reason))

        self.db.transaction(terminate)
        return public_agreement(self._agreement(agreement_id))

    @leased_timer("AGREEMENT_SWEEP_SECONDS", 60, lease="agreement-expiry")
    def expire_agreements(self):
        """Announce `agreement_expired` for every agreement whose last valid local day is before
        today's. Runs in one replica (the lease) and is safe to run twice at once (the conditional
        update): each agreement is announced exactly once. Returns how many it announced."""
        today = local_date().isoformat()
        announced = 0
        due = self.db.agreements.find({"end_announced": {"$ne": True}, "valid_until": {"$lt": today}})
        for agreement in due:
            def expire(tx, agreement=agreement):
                done = tx.agreements.update_one(
                    {"_id": agreement["_id"], "end_announced": {"$ne": True},
                     "valid_until": agreement["valid_until"]},
                    {"$set": {"end_announced": True},
                     "$push": {"history": {"action": "expired", "at": utcnow()}}})
                if done.modified_count:
                    tx.emit("agreement_expired", agreement_event(agreement))
                return done.modified_count

            announced += self.db.transaction(expire)
        return announced

    def _agreement(self, agreement_id):
        doc = self.db.agreements.find_one({"_id": agreement_id})
        if doc is None:
            raise not_found("agreement", agreement_id)
        return doc

    # -- offerings --------------------------------------------------------------------------------

    @rpc
    def create_offering(self, actor, data):
        """Publish a course offering. A partner posts its own; an operator names `partner_id`.
        Returns it with status `published` and the `agreement_id` that covers it. 422
        `no_active_agreement` unless an active agreement of that partner covers the whole window and
        every audience group (for the operator's record of an offering that ended before today: the
        agreement that covered it); 403 when a partner names another partner."""
        fields = validated(schemas.OfferingIn(), data)
        partner_id = auth.partner_id_of(actor) or fields.get("partner_id")
        if fields.get("partner_id") not in (None, partner_id):
            raise forbidden("A partner posts only its own offerings.")
        auth.require_operator_or_partner(actor, partner_id)
        if not partner_id:
            raise invalid({"partner_id": ["Required when the operator posts."]})
        self._partner(partner_id)
        created_at = utcnow()
        offering = {
            "id": new_id("offering"), "partner_id": partner_id, "title": fields["title"],
            "title_en": fields.get("title_en"), "audience_groups": fields["audience_groups"],
            "modules": fields["modules"], "starts_from": fields["starts_from"].isoformat(),
            "ends_by": fields["ends_by"].isoformat(), "status": "published", "created_at": created_at,
            "updated_at": created_at,
        }
        offering["_id"] = offering["id"]
        offering["agreement_id"] = self._covering_agreement(offering, actor)

        def publish(tx):
            tx.offerings.insert_one(offering)
            tx.emit("offering_published", offering_event(offering))

        self.db.transaction(publish)
        return public_offering(offering)

    @rpc
    def get_offering(self, actor, offering_id):
        """One offering (the operator, or the partner that owns it)."""
        offering = self._offering(offering_id)
        auth.require_operator_or_partner(actor, offering["partner_id"])
        return public_offering(offering)

    @rpc
    def update_offering(self, actor, offering_id, data):
        """Change a published offering (its partner or the operator): any of title, title_en,
        audience_groups, modules, starts_from, ends_by. The result must again be covered by an active
        agreement (422 `no_active_agreement`). Returns the offering. 422 `offering_withdrawn` once
        it is withdrawn; 409 `offering_changed` when it changed meanwhile (read it again)."""
        offering = self._offering(offering_id)
        auth.require_operator_or_partner(actor, offering["partner_id"])
        changes = validated(schemas.OfferingUpdate(), data)
        changes = {k: v.isoformat() if isinstance(v, date) else v for k, v in changes.items()}
        updated = dict(offering, **changes)
        if updated["ends_by"] < updated["starts_from"]:
            raise invalid({"ends_by": ["Must not be before starts_from ({}).".format(updated["starts_from"])]})
        if offering["status"] != "published":
            raise rule_broken("offering_withdrawn", "Offering {} is withdrawn.".format(offering_id))
        updated["agreement_id"] = self._covering_agreement(updated, actor)
        updated["updated_at"] = utcnow()

        def update(tx):
            # Conditional on the version we read, so the event describes the offering as stored.
            done = tx.offerings.update_one(
                {"_id": offering_id, "status": "published", "updated_at": offering.get("updated_at")},
                {"$set": {k: updated[k] for k in (*changes, "agreement_id", "updated_at")}})
            if not done.modified_count:
                raise conflict("offering_changed", "The offering changed meanwhile; read it again.")
            tx.emit("offering_updated", offering_event(updated))

        self.db.transaction(update)
        return public_offering(updated)

    @rpc
    def withdraw_offering(self, actor, offering_id, data):
        """Withdraw an offering (its partner or the operator), with an optional reason:
        `offering_withdrawn` tells scheduling to cancel its future sessions. Returns the offering;
        withdrawing it again returns the same and publishes nothing more."""
        offering = self._offering(offering_id)
        auth.require_operator_or_partner(actor, offering["partner_id"])
        fields = validated(schemas.OfferingWithdrawal(), data)
        if offering["status"] == "withdrawn":
            return public_offering(offering)
        withdrawal = {"status": "withdrawn", "withdrawal_reason": fields.get("reason"), "withdrawn_at": utcnow()}

        def withdraw(tx):
            # Conditional, so two withdrawals at once publish one event.
            done = tx.offerings.update_one({"_id": offering_id, "status": "published"}, {"$set": withdrawal})
            if done.modified_count:
                tx.emit("offering_withdrawn", {"offering_id": offering_id, "partner_id": offering["partner_id"],
                                               "reason": withdrawal["withdrawal_reason"]})

        self.db.transaction(withdraw)
        return public_offering(self._offering(offering_id))

    @rpc
    def list_offerings(self, actor, query):
        """{items, next_cursor}. `query`: partner_id, audience (a group), date (offerings whose window
        contains it), status, limit, cursor. A partner sees its own (403 for another's partner_id)."""
        require_caller(actor)
        asked = validated(schemas.OfferingQuery(), query)
        if not auth.is_operator(actor):
            if asked.get("partner_id") not in (None, auth.partner_id_of(actor)):
                raise forbidden("A partner sees only its own offerings.")
            asked["partner_id"] = auth.partner_id_of(actor)
        selection = offering_filter(asked.get("partner_id"), asked.get("audience"), asked.get("date"),
                                    asked.get("status"))
        docs, cursor = page(self.db.offerings, selection, asked["limit"], asked.get("cursor"))
        return {"items": [public_offering(d) for d in docs], "next_cursor": cursor}

    def _offering(self, offering_id):
        doc = self.db.offerings.find_one({"_id": offering_id})
        if doc is None:
            raise not_found("offering", offering_id)
        return doc

    def _covering_agreement(self, offering, actor):
        """The id of the partner's agreement that covers the offering (the longest-running one if
        several do), or 422 `no_active_agreement`: active today, or for the operator's record of an
        offering that ended before today, active on its last day."""
        today = local_date()
        last_day = date.fromisoformat(offering["ends_by"])
        on = last_day if auth.is_operator(actor) and last_day < today else today
        candidates = self.db.agreements.find({
            "partner_id": offering["partner_id"],
            "valid_from": {"$lte": offering["starts_from"]}, "valid_until": {"$gte": offering["ends_by"]},
        }).sort("valid_until", DESCENDING)
        for agreement in candidates:
            if covers(agreement, offering, on):
                return agreement["_id"]
        raise no_active_agreement(offering)

    # -- the service itself -----------------------------------------------------------------------

    @rpc
    def api_schemas(self):
        """The request bodies and list queries this service accepts, for the gateway's OpenAPI document."""
        return describe(schemas.BODIES, schemas.QUERIES)
