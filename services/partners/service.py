"""Partners: institutions, their cooperation agreements with the city, and the course offerings they post.

Publishes partner_onboarded, agreement_signed, offering_published. Reacts to nothing: the other
services learn from it, never the other way round.
"""
import hashlib
import secrets
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from nameko.rpc import rpc
from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from backbone import auth
from backbone.errors import conflict, forbidden, not_found, rule_broken, validated
from backbone.logs import Tracing
from backbone.openapi import schema_components
from backbone.store import Store, new_id, utcnow
from services.partners import schemas

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")

INDEXES = {
    "partners": [
        IndexModel([("code", ASCENDING)], unique=True),
        IndexModel([("api_keys.hash", ASCENDING)]),
    ],
    "agreements": [IndexModel([("partner_id", ASCENDING), ("valid_until", ASCENDING)])],
    "offerings": [IndexModel([("partner_id", ASCENDING), ("status", ASCENDING)])],
}


def local_today():
    return datetime.now(LOCAL).date()


def key_hash(api_key):
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def as_date(value):
    return date.fromisoformat(value) if isinstance(value, str) else value


def agreement_status(agreement, today=None):
    """pending before valid_from, active through valid_until (both local dates, inclusive), expired
    after; a terminated agreement ends the day before it was terminated."""
    today = today or local_today()
    until = as_date(agreement["valid_until"])
    if agreement.get("terminated_on"):
        until = min(until, as_date(agreement["terminated_on"]) - timedelta(days=1))
    if today < as_date(agreement["valid_from"]):
        return "pending"
    return "active" if today <= until else "expired"


def public_partner(doc):
    return {k: doc.get(k) for k in ("id", "code", "name", "kind", "contact_email", "created_at")}


def public_agreement(doc):
    out = {k: doc.get(k) for k in ("id", "partner_id", "title", "signed_on", "valid_from", "valid_until",
                                   "scope", "terminated_on")}
    out["status"] = agreement_status(doc)
    return out


def public_offering(doc):
    return {k: doc.get(k) for k in ("id", "partner_id", "agreement_id", "title", "title_en", "audience_groups",
                                    "modules",
                                    "starts_from", "ends_by", "status", "created_at")}


class PartnersService:
    name = "partners"

    store = Store(indexes=INDEXES)
    tracing = Tracing()

    # -- partners ---------------------------------------------------------------------------------

    @rpc
    def create_partner(self, actor, data):
        """Onboard an institution (operator only). Returns it with its API key, which is shown this
        once and stored only as a hash. 409 `partner_exists` for a code already taken."""
        auth.require_operator(actor)
        fields = validated(schemas.PartnerIn(), data)
        api_key = "tok_" + secrets.token_urlsafe(32)
        partner = dict(fields, id=new_id("partner"), created_at=utcnow(),
                       api_keys=[{"hash": key_hash(api_key), "issued_at": utcnow()}])
        partner["_id"] = partner["id"]

        def onboard(tx):
            tx.partners.insert_one(partner)
            tx.emit("partner_onboarded", {
                "partner_id": partner["id"], "code": partner["code"], "name": partner["name"],
                "kind": partner["kind"], "contact_email": partner["contact_email"]})

        try:
            self.store.transaction(onboard)
        except DuplicateKeyError:
            raise conflict("partner_exists", "A partner with code {} exists.".format(fields["code"]),
                           {"code": ["Already taken."]})
        return dict(public_partner(partner), api_key=api_key)

    @rpc
    def authenticate(self, api_key):
        """The partner an API key belongs to, or None (unknown or revoked key)."""
        doc = self.store.partners.find_one({"api_keys.hash": key_hash(api_key or "")}, {"id": 1})
        return {"role": "partner", "partner_id": doc["id"]} if doc else None

    @rpc
    def get_partner(self, actor, partner_id):
        auth.require_operator_or_partner(actor, partner_id)
        doc = self.store.partners.find_one({"_id": partner_id})
        if doc is None:
            raise not_found("partner", partner_id)
        return public_partner(doc)

    @rpc
    def list_partners(self, actor):
        if auth.is_operator(actor):
            query = {}
        else:
            auth.require_operator_or_partner(actor, auth.partner_id_of(actor))
            query = {"_id": auth.partner_id_of(actor)}
        return [public_partner(d) for d in self.store.partners.find(query).sort("code", ASCENDING)]

    # -- agreements -------------------------------------------------------------------------------

    @rpc
    def create_agreement(self, actor, partner_id, data):
        """Record a signed cooperation agreement (operator only); its status follows from its dates."""
        auth.require_operator(actor)
        fields = validated(schemas.AgreementIn(), data)
        if self.store.partners.find_one({"_id": partner_id}, {"_id": 1}) is None:
            raise not_found("partner", partner_id)
        agreement = {
            "id": new_id("agreement"), "partner_id": partner_id, "title": fields["title"],
            "signed_on": fields["signed_on"].isoformat(), "valid_from": fields["valid_from"].isoformat(),
            "valid_until": fields["valid_until"].isoformat(), "scope": fields["scope"],
            "history": [], "created_at": utcnow(),
        }
        agreement["_id"] = agreement["id"]

        def sign(tx):
            tx.agreements.insert_one(agreement)
            tx.emit("agreement_signed", {
                "agreement_id": agreement["id"], "partner_id": partner_id, "title": agreement["title"],
                "signed_on": agreement["signed_on"], "valid_from": agreement["valid_from"],
                "valid_until": agreement["valid_until"], "scope": agreement["scope"]})

        self.store.transaction(sign)
        return public_agreement(agreement)

    # -- offerings --------------------------------------------------------------------------------

    @rpc
    def create_offering(self, actor, data):
        """Publish a course offering. A partner posts its own; an operator names `partner_id`.
        422 `no_active_agreement` unless an active agreement of that partner covers the whole
        window and every audience group."""
        fields = validated(schemas.OfferingIn(), data)
        partner_id = auth.partner_id_of(actor) or fields.get("partner_id")
        if fields.get("partner_id") not in (None, partner_id):
            raise forbidden("A partner posts only its own offerings.")
        auth.require_operator_or_partner(actor, partner_id)
        if not partner_id:
            raise rule_broken("invalid_fields", "Name the partner.", {"partner_id": ["Required for operators."]})
        if self.store.partners.find_one({"_id": partner_id}, {"_id": 1}) is None:
            raise not_found("partner", partner_id)
        agreement = self._covering_agreement(partner_id, fields)
        if not agreement:
            raise rule_broken(
                "no_active_agreement",
                "No active agreement of this partner covers {} to {} for these audiences.".format(
                    fields["starts_from"], fields["ends_by"]),
                {"starts_from": ["Not covered by an active agreement."]})
        offering = {
            "id": new_id("offering"), "partner_id": partner_id, "agreement_id": agreement["_id"],
            "title": fields["title"],
            "title_en": fields.get("title_en"), "audience_groups": fields["audience_groups"],
            "modules": fields["modules"], "starts_from": fields["starts_from"].isoformat(),
            "ends_by": fields["ends_by"].isoformat(), "status": "published", "created_at": utcnow(),
        }
        offering["_id"] = offering["id"]

        def publish(tx):
            tx.offerings.insert_one(offering)
            tx.emit("offering_published", {k: offering[k] for k in (
                "partner_id", "agreement_id", "title", "title_en", "audience_groups", "modules", "starts_from", "ends_by")}
                | {"offering_id": offering["id"]})

        self.store.transaction(publish)
        return public_offering(offering)

    def _covering_agreement(self, partner_id, fields):
        audiences = set(fields["audience_groups"])
        for agreement in self.store.agreements.find({"partner_id": partner_id}):
            if agreement_status(agreement) != "active":
                continue
            if not (as_date(agreement["valid_from"]) <= fields["starts_from"]
                    and fields["ends_by"] <= as_date(agreement["valid_until"])):
                continue
            scoped_audiences = set(agreement["scope"]) & set(schemas.AUDIENCE_GROUPS)
            if scoped_audiences and not audiences <= scoped_audiences:
                continue
            return agreement
        return None

    @rpc
    def list_offerings(self, actor, partner_id=None):
        if not actor:
            auth.require_operator(actor)
        query = {}
        if not auth.is_operator(actor):
            query["partner_id"] = auth.partner_id_of(actor)
        elif partner_id:
            query["partner_id"] = partner_id
        return [public_offering(d) for d in self.store.offerings.find(query).sort("created_at", ASCENDING)]

    @rpc
    def api_schemas(self):
        """JSON schemas of what this service accepts, for the gateway's OpenAPI document."""
        return schema_components({"PartnerIn": schemas.PartnerIn, "AgreementIn": schemas.AgreementIn, "OfferingIn": schemas.OfferingIn})

    @rpc
    def health(self):
        return self.store.health()
