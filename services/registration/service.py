"""Registration: officials and their units, registrations that never over-book, waitlists.

Learns sessions from scheduling's events. Publishes registration_confirmed / registration_waitlisted.
"""
import secrets
from datetime import datetime, timezone

from nameko.rpc import rpc
from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from backbone import auth
from backbone.errors import conflict, not_found, rule_broken, validated
from backbone.logs import Tracing
from backbone.openapi import schema_components
from backbone.store import Store, new_id, utcnow
from backbone.subscriber import subscribe
from services.registration import schemas

INDEXES = {
    "units": [IndexModel([("code", ASCENDING)], unique=True)],
    "officials": [
        IndexModel([("email", ASCENDING)], unique=True),
        IndexModel([("phone", ASCENDING)], unique=True),
        IndexModel([("unit_code", ASCENDING)]),
    ],
    "registrations": [
        IndexModel([("session_id", ASCENDING), ("official_id", ASCENDING)], unique=True),
        IndexModel([("session_id", ASCENDING), ("status", ASCENDING)]),
        IndexModel([("qr_token", ASCENDING)]),
    ],
}


def public_official(doc):
    return {k: doc.get(k) for k in ("id", "full_name", "email", "phone", "unit_code", "audience_group",
                                    "language")}


def public_registration(doc):
    return {k: doc.get(k) for k in ("id", "session_id", "official_id", "status", "waitlist_position",
                                    "qr_token", "created_at")}


def session_ref(session):
    return {k: session[k] for k in ("title", "venue_name", "address", "room", "starts_at", "ends_at")} | {
        "id": session["_id"]}


def official_ref(official):
    return {"id": official["_id"], "full_name": official["full_name"], "email": official["email"],
            "phone": official["phone"], "language": official.get("language", "vi")}


class RegistrationService:
    name = "registration"

    store = Store(indexes=INDEXES)
    tracing = Tracing()

    # -- what scheduling tells us -------------------------------------------------------------------

    @subscribe("session_scheduled")
    def on_session_scheduled(self, event):
        payload = event["payload"]
        session = {k: payload[k] for k in (
            "offering_id", "partner_id", "title", "venue_name", "address", "room", "starts_at", "ends_at",
            "capacity", "eligible_units", "audience_groups", "registration_closes_at")}
        session.update(status="scheduled", seats_taken=0, waitlist_length=0, waitlist_next=0)

        def remember(tx):
            tx.sessions.update_one({"_id": payload["session_id"]}, {"$setOnInsert": session}, upsert=True)

        self.store.transaction(remember)

    # -- units and officials ------------------------------------------------------------------------

    @rpc
    def create_unit(self, actor, data):
        auth.require_operator(actor)
        fields = validated(schemas.UnitIn(), data)
        unit = dict(fields, _id=fields["code"], created_at=utcnow())
        try:
            self.store.units.insert_one(unit)
        except DuplicateKeyError:
            raise conflict("unit_exists", "Unit {} exists.".format(fields["code"]), {"code": ["Already taken."]})
        return {k: unit.get(k) for k in ("code", "name", "kind", "parent_code")}

    @rpc
    def create_official(self, actor, data):
        """An official, phone in +84 form. 409 `official_exists` for a known email or phone."""
        auth.require_operator(actor)
        fields = validated(schemas.OfficialIn(), data)
        fields["email"] = fields["email"].lower()
        if self.store.units.find_one({"_id": fields["unit_code"]}, {"_id": 1}) is None:
            raise rule_broken("unknown_unit", "No unit {}.".format(fields["unit_code"]),
                              {"unit_code": ["Unknown unit."]})
        official = dict(fields, id=new_id("official"), created_at=utcnow())
        official["_id"] = official["id"]
        try:
            self.store.officials.insert_one(official)
        except DuplicateKeyError:
            raise conflict("official_exists", "An official with this email or phone exists.",
                           {"email": ["Email or phone already registered."]})
        return public_official(official)

    # -- registrations --------------------------------------------------------------------------------

    @rpc
    def register(self, actor, session_id, data):
        """Register an official: `confirmed` while seats remain, else `waitlisted` with a position.
        409 `already_registered`; 422 `not_eligible` / `registration_closed`."""
        auth.require_operator(actor)
        fields = validated(schemas.RegistrationIn(), data)
        session = self.store.sessions.find_one({"_id": session_id})
        if session is None:
            raise not_found("session", session_id)
        official = self.store.officials.find_one({"_id": fields["official_id"]})
        if official is None:
            raise rule_broken("unknown_official", "No such official.", {"official_id": ["Unknown official."]})
        if session["status"] != "scheduled" or datetime.now(timezone.utc) > session["registration_closes_at"]:
            raise rule_broken("registration_closed", "Registration for this session is closed.")
        if official["audience_group"] not in session["audience_groups"] or (
                session["eligible_units"] and official["unit_code"] not in session["eligible_units"]):
            raise rule_broken("not_eligible", "This official's unit or audience group is not invited.",
                              {"official_id": ["Not eligible for this session."]})
        registration = {
            "id": new_id("registration"), "session_id": session_id, "official_id": official["_id"],
            "qr_token": secrets.token_urlsafe(16), "created_at": utcnow(),
        }
        registration["_id"] = registration["id"]

        def take_seat(tx):
            # The seat counter moves only if a seat is left: a conditional update, never read-then-write.
            seat = tx.sessions.update_one(
                {"_id": session_id, "$expr": {"$lt": ["$seats_taken", "$capacity"]}},
                {"$inc": {"seats_taken": 1}})
            reg = dict(registration)
            if seat.modified_count:
                reg["status"] = "confirmed"
            else:
                after = tx.sessions.find_one_and_update(
                    {"_id": session_id}, {"$inc": {"waitlist_length": 1, "waitlist_next": 1}},
                    projection={"waitlist_next": 1}, return_document=True)
                reg.update(status="waitlisted", waitlist_position=after["waitlist_next"])
            tx.registrations.insert_one(reg)
            base = {"registration_id": reg["id"], "session": session_ref(session),
                    "official": official_ref(official)}
            if reg["status"] == "confirmed":
                tx.emit("registration_confirmed", dict(base, qr_token=reg["qr_token"]))
            else:
                tx.emit("registration_waitlisted", dict(base, waitlist_position=reg["waitlist_position"]))
            return reg

        try:
            created = self.store.transaction(take_seat)
        except DuplicateKeyError:
            raise conflict("already_registered", "This official is already registered for this session.",
                           {"official_id": ["Already registered."]})
        return public_registration(created)

    @rpc
    def get_registration(self, actor, registration_id):
        auth.require_operator(actor)
        doc = self.store.registrations.find_one({"_id": registration_id})
        if doc is None:
            raise not_found("registration", registration_id)
        return public_registration(doc)

    @rpc
    def seats(self, session_id):
        """Seats taken and waitlist length, for the gateway's view of a session."""
        doc = self.store.sessions.find_one({"_id": session_id}, {"seats_taken": 1, "waitlist_length": 1})
        return {"seats_taken": (doc or {}).get("seats_taken", 0),
                "waitlist_length": (doc or {}).get("waitlist_length", 0)}

    @rpc
    def api_schemas(self):
        """JSON schemas of what this service accepts, for the gateway's OpenAPI document."""
        return schema_components({"UnitIn": schemas.UnitIn, "OfficialIn": schemas.OfficialIn, "RegistrationIn": schemas.RegistrationIn})

    @rpc
    def health(self):
        return self.store.health()
