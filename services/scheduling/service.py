"""Scheduling: venues, rooms and class sessions, with no room or trainer booked twice.

Learns which offerings are published from partners' events (never from their database). Publishes
session_scheduled.
"""
from datetime import timezone

from nameko.rpc import rpc
from pymongo import ASCENDING, IndexModel

from backbone import auth
from backbone.errors import conflict, not_found, rule_broken, validated
from backbone.logs import Tracing
from backbone.openapi import schema_components
from backbone.store import Store, new_id, utcnow
from backbone.subscriber import subscribe
from services.scheduling import schemas

INDEXES = {
    "sessions": [
        IndexModel([("room_key", ASCENDING), ("starts_at", ASCENDING)]),
        IndexModel([("trainer_key", ASCENDING), ("starts_at", ASCENDING)]),
        IndexModel([("offering_id", ASCENDING)]),
    ],
}


def trainer_key(name):
    return " ".join(name.casefold().split())


def public_session(doc):
    out = {k: doc.get(k) for k in (
        "id", "offering_id", "partner_id", "title", "venue_id", "venue_name", "address", "room", "trainer",
        "starts_at", "ends_at", "parts", "capacity", "eligible_units", "audience_groups",
        "registration_closes_at", "status", "cancel_reason")}
    return out


def public_venue(doc):
    return {k: doc.get(k) for k in ("id", "name", "address", "host_partner_id", "rooms")}


class SchedulingService:
    name = "scheduling"

    store = Store(indexes=INDEXES)
    tracing = Tracing()

    # -- what partners tell us -----------------------------------------------------------------------

    @subscribe("offering_published")
    def on_offering_published(self, event):
        self._remember_offering(event["payload"], "published")

    @subscribe("offering_updated")
    def on_offering_updated(self, event):
        self._remember_offering(event["payload"], "published")

    @subscribe("offering_withdrawn")
    def on_offering_withdrawn(self, event):
        payload = event["payload"]
        self.store.transaction(lambda tx: tx.offerings.update_one(
            {"_id": payload["offering_id"]}, {"$set": {"status": "withdrawn"}}, upsert=True))

    @subscribe("agreement_expired")
    def on_agreement_expired(self, event):
        pass  # sessions of an expired agreement: issue 4

    @subscribe("agreement_terminated")
    def on_agreement_terminated(self, event):
        pass  # sessions of a terminated agreement: issue 4

    def _remember_offering(self, payload, status):
        doc = {
            "partner_id": payload["partner_id"], "title": payload["title"],
            "audience_groups": payload["audience_groups"], "status": status,
            "starts_from": payload["starts_from"].isoformat(), "ends_by": payload["ends_by"].isoformat(),
        }
        self.store.transaction(lambda tx: tx.offerings.update_one(
            {"_id": payload["offering_id"]}, {"$set": doc}, upsert=True))

    # -- venues -----------------------------------------------------------------------------------

    @rpc
    def create_venue(self, actor, data):
        """A venue with its rooms (operator only)."""
        auth.require_operator(actor)
        fields = validated(schemas.VenueIn(), data)
        venue = dict(fields, id=new_id("venue"), created_at=utcnow())
        venue["_id"] = venue["id"]
        self.store.venues.insert_one(venue)
        return public_venue(venue)

    # -- sessions ---------------------------------------------------------------------------------

    @rpc
    def create_session(self, actor, data):
        """Schedule a session of a published offering in a room. 409 `room_conflict` or
        `trainer_conflict` naming the other session; 422 when the capacity exceeds the room or the
        offering is not published."""
        fields = validated(schemas.SessionIn(), data)
        offering = self.store.offerings.find_one({"_id": fields["offering_id"]})
        if offering is None or offering.get("status") != "published":
            raise rule_broken("offering_not_published", "The offering is not published.",
                              {"offering_id": ["Unknown or not published."]})
        auth.require_operator_or_partner(actor, offering["partner_id"])
        venue = self.store.venues.find_one({"_id": fields["venue_id"]})
        if venue is None:
            raise rule_broken("unknown_venue", "No such venue.", {"venue_id": ["Unknown venue."]})
        room = next((r for r in venue["rooms"] if r["name"] == fields["room"]), None)
        if room is None:
            raise rule_broken("unknown_room", "No such room in this venue.", {"room": ["Unknown room."]})
        if fields["capacity"] > room["capacity"]:
            raise rule_broken("capacity_exceeds_room", "The room seats {}.".format(room["capacity"]),
                              {"capacity": ["At most {}.".format(room["capacity"])]})
        starts_at = fields["starts_at"].astimezone(timezone.utc)
        ends_at = fields["ends_at"].astimezone(timezone.utc)
        session = {
            "id": new_id("session"), "offering_id": offering["_id"], "partner_id": offering["partner_id"],
            "title": offering["title"], "venue_id": venue["_id"], "venue_name": venue["name"],
            "address": venue["address"], "room": room["name"], "trainer": fields["trainer"],
            "room_key": "{}/{}".format(venue["_id"], room["name"]), "trainer_key": trainer_key(fields["trainer"]),
            "starts_at": starts_at, "ends_at": ends_at,
            "parts": [{"starts_at": p["starts_at"].astimezone(timezone.utc),
                       "ends_at": p["ends_at"].astimezone(timezone.utc)} for p in fields["parts"]],
            "capacity": fields["capacity"], "eligible_units": fields["eligible_units"],
            "audience_groups": fields["audience_groups"],
            "registration_closes_at": (fields.get("registration_closes_at") or fields["starts_at"]).astimezone(
                timezone.utc),
            "status": "scheduled", "created_at": utcnow(),
        }
        session["_id"] = session["id"]

        def book(tx):
            # Claim the room and the trainer first: two bookings racing for either conflict on these
            # writes inside the database, so the overlap check below cannot be raced.
            tx.locks.update_one({"_id": "room:" + session["room_key"]}, {"$inc": {"v": 1}}, upsert=True)
            tx.locks.update_one({"_id": "trainer:" + session["trainer_key"]}, {"$inc": {"v": 1}}, upsert=True)
            for key, code in (("room_key", "room_conflict"), ("trainer_key", "trainer_conflict")):
                other = tx.sessions.find_one({
                    key: session[key], "status": "scheduled",
                    "starts_at": {"$lt": ends_at}, "ends_at": {"$gt": starts_at}})
                if other:
                    raise conflict(code, "Overlaps session {} ({} to {}).".format(
                        other["_id"], other["starts_at"].isoformat(), other["ends_at"].isoformat()),
                        {"other_session_id": [other["_id"]]})
            tx.sessions.insert_one(session)
            tx.emit("session_scheduled", session_event(session))

        self.store.transaction(book)
        return public_session(session)

    @rpc
    def get_session(self, actor, session_id):
        doc = self.store.sessions.find_one({"_id": session_id})
        if doc is None:
            raise not_found("session", session_id)
        return public_session(doc)

    @rpc
    def api_schemas(self):
        """JSON schemas of what this service accepts, for the gateway's OpenAPI document."""
        return schema_components({"VenueIn": schemas.VenueIn, "SessionIn": schemas.SessionIn})

    @rpc
    def health(self):
        return self.store.health()


def session_event(session):
    payload = {k: session[k] for k in (
        "offering_id", "partner_id", "title", "venue_id", "venue_name", "address", "room", "trainer",
        "starts_at", "ends_at", "parts", "capacity", "eligible_units", "audience_groups",
        "registration_closes_at")}
    payload["session_id"] = session["id"]
    return payload
