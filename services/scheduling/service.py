"""Scheduling: venues and their rooms, and class sessions (an offering delivered in a room by a
trainer), with no room or trainer ever booked twice for overlapping times.

Learns which offerings are published, and which agreements have ended, from partners' events (never
from their database); when an offering is withdrawn or its agreement expires or is terminated, its
future sessions are cancelled with that reason. Publishes session_scheduled, session_rescheduled,
session_capacity_changed and session_cancelled. Serves the programme calendar as a list and as ICS.

Times are accepted only with an offset and stored in UTC.
"""
from datetime import timedelta

from backbone import auth
from backbone.errors import invalid, not_found, rule_broken, validated
from backbone.logs import Tracing
from backbone.operated import Operated
from backbone.openapi import describe
from backbone.rpc import rpc
from backbone.clock import utcnow
from backbone.database import Database, new_id
from backbone.subscriber import subscribe
import contracts  # noqa: F401  (registers the contracts of the events it publishes and handles)
from services.scheduling import calendars, schemas, storage
from services.scheduling.storage import in_utc, public_session, public_venue


def require_reader(actor):
    """Any operator or partner token may read sessions, venues and calendars; no token is a 401."""
    auth.require_operator_or_partner(actor, auth.partner_id_of(actor))


def visible_to(actor):
    """The sessions `actor` sees in lists and feeds: all for the operator, for a partner those it
    delivers or hosts."""
    require_reader(actor)
    partner_id = auth.partner_id_of(actor)
    return {} if partner_id is None else {"$or": [{"partner_id": partner_id}, {"host_partner_id": partner_id}]}


def require_future_unless_operator(actor, moment):
    """Partners plan ahead; only the operator lays out or corrects sessions that have started (the
    2025 programme began before this system did)."""
    if not auth.is_operator(actor) and moment <= utcnow():
        raise rule_broken("in_the_past", "Only the operator may schedule or change a session that has started.",
                          {"starts_at": ["In the past."]})


def require_room_seats(room, capacity):
    if capacity > room["capacity"]:
        raise rule_broken("capacity_exceeds_room", "Room {} seats {}.".format(room["name"], room["capacity"]),
                          {"capacity": ["At most {}.".format(room["capacity"])]})


class SchedulingService(Operated):
    name = "scheduling"

    db = Database(indexes=storage.INDEXES)
    tracing = Tracing()

    # -- what partners tell us -----------------------------------------------------------------------

    @subscribe("offering_published")
    def on_offering_published(self, event):
        self._remember_offering(event["payload"])

    @subscribe("offering_updated")
    def on_offering_updated(self, event):
        self._remember_offering(event["payload"])

    @subscribe("offering_withdrawn")
    def on_offering_withdrawn(self, event):
        payload = event["payload"]
        reason = "Offering withdrawn" + (": " + payload["reason"] if payload.get("reason") else ".")

        def withdraw(tx):
            tx.offerings.update_one({"_id": payload["offering_id"]}, {"$set": {
                "status": "withdrawn", "partner_id": payload["partner_id"]}}, upsert=True)
            storage.cancel_sessions(tx, {"offering_id": payload["offering_id"], "starts_at": {"$gt": utcnow()}},
                                    reason, "offering_withdrawn")

        self.db.transaction(withdraw)

    @subscribe("agreement_expired")
    def on_agreement_expired(self, event):
        payload = event["payload"]
        self._end_agreement(payload, payload["valid_until"] + timedelta(days=1), "Agreement expired.",
                            "agreement_expired")

    @subscribe("agreement_terminated")
    def on_agreement_terminated(self, event):
        payload = event["payload"]
        # Partners' rule: a terminated agreement is over from the start of its termination day.
        first_day_without = min(payload["terminated_on"], payload["valid_until"] + timedelta(days=1))
        reason = "Agreement terminated" + (": " + payload["reason"] if payload.get("reason") else ".")
        self._end_agreement(payload, first_day_without, reason, "agreement_terminated")

    def _remember_offering(self, payload):
        offering_id = payload["offering_id"]
        doc = {
            "partner_id": payload["partner_id"], "agreement_id": payload["agreement_id"],
            "title": payload["title"], "audience_groups": payload["audience_groups"], "status": "published",
            "starts_from": payload["starts_from"].isoformat(), "ends_by": payload["ends_by"].isoformat(),
        }

        def remember(tx):
            known = tx.offerings.find_one({"_id": offering_id}, {"status": 1})
            if known and known["status"] == "withdrawn":
                return  # a withdrawal is final: a late published/updated event must not revive it
            # The agreement may have ended before this event arrived (events can overtake each other).
            ended = tx.agreements.find_one({"_id": payload["agreement_id"]}) if payload["agreement_id"] else None
            doc["covered_until"] = ended["ends_at"] if ended else None
            tx.offerings.update_one({"_id": offering_id}, {"$set": doc}, upsert=True)

        self.db.transaction(remember)

    def _end_agreement(self, payload, first_day_without, reason, cause):
        """From the local midnight that begins `first_day_without` the agreement covers nothing: its
        offerings may not have sessions ending later, and their scheduled sessions that start later
        (and are still to come: the past stays as it was) are cancelled with `reason`."""
        agreement_id = payload["agreement_id"]
        ends_at = storage.local_midnight(first_day_without)

        def end(tx):
            # $min: an agreement that is terminated and later also expires ends at the earlier time.
            tx.agreements.update_one({"_id": agreement_id}, {
                "$min": {"ends_at": ends_at}, "$set": {"partner_id": payload["partner_id"]}}, upsert=True)
            offering_ids = [o["_id"] for o in tx.offerings.find({"agreement_id": agreement_id}, {"_id": 1})]
            # Not $min here: an offering covered without end has covered_until None, which sorts first.
            tx.offerings.update_many(
                {"agreement_id": agreement_id,
                 "$or": [{"covered_until": None}, {"covered_until": {"$gt": ends_at}}]},
                {"$set": {"covered_until": ends_at}})
            storage.cancel_sessions(
                tx, {"offering_id": {"$in": offering_ids}, "starts_at": {"$gte": max(utcnow(), ends_at)}},
                reason, cause)

        self.db.transaction(end)

    # -- venues -----------------------------------------------------------------------------------

    @rpc
    def create_venue(self, actor, data):
        """A venue with its rooms, each with its seats and equipment (operator only). Returns it."""
        auth.require_operator(actor)
        fields = validated(schemas.VenueIn(), data)
        venue = dict(fields, id=new_id("venue"), created_at=utcnow())
        venue["_id"] = venue["id"]
        self.db.venues.insert_one(venue)
        return public_venue(venue)

    @rpc
    def list_venues(self, actor, query):
        """Venues by name, paged with `limit` and `cursor`: {"items", "next_cursor"}."""
        require_reader(actor)
        paging = validated(schemas.Page(), query)
        venues, next_cursor = storage.page(self.db.venues, {}, "name", paging["limit"], paging.get("cursor"))
        return {"items": [public_venue(v) for v in venues], "next_cursor": next_cursor}

    @rpc
    def get_venue(self, actor, venue_id):
        """A venue and its rooms. 404 for an unknown id."""
        require_reader(actor)
        return public_venue(self._venue(venue_id))

    # -- sessions ---------------------------------------------------------------------------------

    @rpc
    def create_session(self, actor, data):
        """Schedule a session of a published offering in a room (the operator, or the offering's
        partner). Returns the session, its registration cut-off defaulting to its start.
        409 `room_conflict` / `trainer_conflict` naming the other session. 422: `capacity_exceeds_room`;
        `offering_not_published`; `outside_offering_dates`; `audience_not_offered`;
        `no_active_agreement` (the offering's agreement has ended); `unknown_venue` / `unknown_room`;
        `in_the_past` (only the operator schedules sessions that have started)."""
        fields = validated(schemas.SessionIn(), data)
        offering = self.db.offerings.find_one({"_id": fields["offering_id"]})
        if offering is None:
            raise storage.not_published()
        auth.require_operator_or_partner(actor, offering["partner_id"])
        venue = self._venue(fields["venue_id"], refusal=True)
        room = self._room(venue, fields["room"])
        require_room_seats(room, fields["capacity"])
        require_future_unless_operator(actor, fields["starts_at"])
        now = utcnow()
        session = {
            "id": new_id("session"), "offering_id": offering["_id"], "partner_id": offering["partner_id"],
            "host_partner_id": venue["host_partner_id"], "title": offering["title"],
            "venue_id": venue["_id"], "venue_name": venue["name"], "address": venue["address"],
            "room": room["name"], "room_key": "{}/{}".format(venue["_id"], room["name"]),
            "trainer": fields["trainer"], "trainer_key": storage.trainer_key(fields["trainer"]),
            "starts_at": in_utc(fields["starts_at"]), "ends_at": in_utc(fields["ends_at"]),
            "parts": storage.utc_parts(fields["parts"]),
            "capacity": fields["capacity"], "eligible_units": fields["eligible_units"],
            "audience_groups": fields["audience_groups"],
            "registration_closes_at": in_utc(fields.get("registration_closes_at") or fields["starts_at"]),
            "status": "scheduled", "sequence": 0, "created_at": now, "updated_at": now,
        }
        session["_id"] = session["id"]

        def book(tx):
            storage.claim(tx, session)
            tx.sessions.insert_one(session)
            tx.emit("session_scheduled", storage.event_payload(session))

        self.db.transaction(book)
        return public_session(session)

    @rpc
    def reschedule_session(self, actor, session_id, data):
        """Move a session to new times, optionally to another room of its venue or with new parts
        (the operator, or the session's partner). Without `parts`, its parts move with its start; without
        `registration_closes_at`, the cut-off keeps its lead time. Returns the session. The same
        refusals as scheduling it, and 422 `session_cancelled`. A move to where it already is changes
        nothing and publishes nothing."""
        fields = validated(schemas.RescheduleIn(), data)
        current = self._changeable(actor, session_id)
        room = self._room(self._venue(current["venue_id"]), fields.get("room", current["room"]))
        require_room_seats(room, current["capacity"])
        require_future_unless_operator(actor, fields["starts_at"])
        starts_at, ends_at = in_utc(fields["starts_at"]), in_utc(fields["ends_at"])
        shift = starts_at - current["starts_at"]
        if "parts" in fields:
            parts = storage.utc_parts(fields["parts"])
        else:
            parts = [{edge: moment + shift for edge, moment in part.items()} for part in current["parts"]]
            problem = schemas.parts_problem(starts_at, ends_at, parts)
            if problem:
                raise invalid({"parts": ["The session's parts, moved with it, do not fit: {} Send its new parts."
                                         .format(problem)]})
        closes = fields.get("registration_closes_at")
        moved = {
            "room": room["name"], "room_key": "{}/{}".format(current["venue_id"], room["name"]),
            "starts_at": starts_at, "ends_at": ends_at, "parts": parts,
            "registration_closes_at": in_utc(closes) if closes else current["registration_closes_at"] + shift,
        }
        if all(current[key] == value for key, value in moved.items()):
            return public_session(current)

        def move(tx):
            latest = self._still_scheduled(tx, session_id)
            session = dict(latest, **moved, updated_at=utcnow(), sequence=latest["sequence"] + 1)
            storage.claim(tx, session)
            tx.sessions.update_one({"_id": session_id}, {
                "$set": dict(moved, updated_at=session["updated_at"]), "$inc": {"sequence": 1}})
            tx.emit("session_rescheduled", dict(
                storage.event_payload(session), previous_starts_at=latest["starts_at"],
                previous_ends_at=latest["ends_at"], previous_room=latest["room"]))
            return session

        return public_session(self.db.transaction(move))

    @rpc
    def change_capacity(self, actor, session_id, data):
        """Set how many officials a session seats, at most what its room seats (the operator, or the
        session's partner). Returns the session. 422 `capacity_exceeds_room` / `session_cancelled`.
        What happens to seats already taken is registration's to decide: it hears
        session_capacity_changed."""
        fields = validated(schemas.CapacityIn(), data)
        current = self._changeable(actor, session_id)
        require_room_seats(self._room(self._venue(current["venue_id"]), current["room"]), fields["capacity"])
        if fields["capacity"] == current["capacity"]:
            return public_session(current)

        def resize(tx):
            latest = self._still_scheduled(tx, session_id)
            session = dict(latest, capacity=fields["capacity"], updated_at=utcnow())
            tx.sessions.update_one({"_id": session_id}, {"$set": {
                "capacity": session["capacity"], "updated_at": session["updated_at"]}})
            tx.emit("session_capacity_changed", {
                "session_id": session_id, "capacity": session["capacity"],
                "previous_capacity": latest["capacity"]})
            return session

        return public_session(self.db.transaction(resize))

    @rpc
    def cancel_session(self, actor, session_id, data):
        """Cancel a session with a reason (the operator, or the session's partner); its room and
        trainer are free again. Returns the session; cancelling a cancelled session changes nothing.
        422 `in_the_past` for a partner once the session has started."""
        fields = validated(schemas.CancelIn(), data)
        current = self._session(session_id)
        auth.require_operator_or_partner(actor, current["partner_id"])
        if current["status"] == "cancelled":
            return public_session(current)
        require_future_unless_operator(actor, current["starts_at"])
        self.db.transaction(
            lambda tx: storage.cancel_sessions(tx, {"_id": session_id}, fields["reason"], "cancelled"))
        return public_session(self._session(session_id))

    @rpc
    def get_session(self, actor, session_id):
        """A session (any operator or partner token). 404 for an unknown id."""
        require_reader(actor)
        return public_session(self._session(session_id))

    @rpc
    def list_sessions(self, actor, query):
        """The programme calendar, by start time: {"items", "next_cursor"}. Filters: `month`
        (YYYY-MM in Ho Chi Minh City time: sessions taking place in it), `unit` (sessions its officials
        may attend: those naming it and those open to every unit), `partner_id`, `venue_id`, `status`;
        paged with `limit` and `cursor`. A partner sees the sessions it delivers or hosts."""
        filters = validated(schemas.SessionQuery(), query)
        clauses = [visible_to(actor)]
        if "month" in filters:
            begins, ends = storage.month_span(filters["month"])
            clauses.append({"starts_at": {"$lt": ends}, "ends_at": {"$gt": begins}})
        if "unit" in filters:
            clauses.append({"$or": [{"eligible_units": filters["unit"]}, {"eligible_units": []}]})
        clauses.extend({key: filters[key]} for key in ("partner_id", "venue_id", "status") if key in filters)
        sessions, next_cursor = storage.page(
            self.db.sessions, {"$and": clauses}, "starts_at", filters["limit"], filters.get("cursor"))
        return {"items": [public_session(s) for s in sessions], "next_cursor": next_cursor}

    # -- calendars (ICS text) -------------------------------------------------------------------------

    @rpc
    def session_calendar(self, actor, session_id):
        """One session as an iCalendar file. 404 for an unknown id."""
        require_reader(actor)
        session = self._session(session_id)
        return calendars.calendar(calendars.session_uid(session), session["title"], [session])

    @rpc
    def venue_calendar(self, actor, venue_id):
        """The feed of a venue's sessions, cancelled ones marked so. 404 for an unknown venue."""
        venue = self._venue(venue_id)
        sessions = self.db.sessions.find(
            {"$and": [visible_to(actor), {"venue_id": venue_id}]}).sort("starts_at")
        return calendars.calendar("{}@trainops".format(venue_id), "Lớp bồi dưỡng AI — {}".format(venue["name"]),
                                  sessions)

    @rpc
    def partner_calendar(self, actor, partner_id):
        """The feed of the sessions a partner delivers or hosts (the operator, or that partner)."""
        auth.require_operator_or_partner(actor, partner_id)
        sessions = self.db.sessions.find(
            {"$or": [{"partner_id": partner_id}, {"host_partner_id": partner_id}]}).sort("starts_at")
        return calendars.calendar("{}@trainops".format(partner_id),
                                  "Lớp bồi dưỡng AI — đối tác {}".format(partner_id), sessions)

    @rpc
    def api_schemas(self):
        """The request bodies and list queries this service accepts, for the gateway's OpenAPI document."""
        return describe(schemas.BODIES, schemas.QUERIES)


    # -- lookups ------------------------------------------------------------------------------------

    def _venue(self, venue_id, refusal=False):
        """The venue; unknown is a 404, or with `refusal` (a venue named in a body) a 422."""
        venue = self.db.venues.find_one({"_id": venue_id})
        if venue is None:
            if refusal:
                raise rule_broken("unknown_venue", "No such venue.", {"venue_id": ["Unknown venue."]})
            raise not_found("venue", venue_id)
        return venue

    @staticmethod
    def _room(venue, name):
        room = next((r for r in venue["rooms"] if r["name"] == name), None)
        if room is None:
            raise rule_broken("unknown_room", "{} has no room {}.".format(venue["name"], name),
                              {"room": ["Unknown room."]})
        return room

    def _session(self, session_id):
        session = self.db.sessions.find_one({"_id": session_id})
        if session is None:
            raise not_found("session", session_id)
        return session

    def _changeable(self, actor, session_id):
        """The session if `actor` may change it: 404 unknown, 403 another partner's, 422
        `session_cancelled`, or `in_the_past` for a partner once it has started."""
        session = self._session(session_id)
        auth.require_operator_or_partner(actor, session["partner_id"])
        if session["status"] == "cancelled":
            raise rule_broken("session_cancelled", "The session was cancelled.")
        require_future_unless_operator(actor, session["starts_at"])
        return session

    @staticmethod
    def _still_scheduled(tx, session_id):
        """The session as the transaction sees it: a cancellation that won a race is refused here,
        and one that commits later conflicts with this transaction's write and re-runs it."""
        session = tx.sessions.find_one({"_id": session_id})
        if session["status"] != "scheduled":
            raise rule_broken("session_cancelled", "The session was cancelled.")
        return session
