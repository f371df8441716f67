"""What operators and partners send to lay out venues and sessions, the filters of the programme
calendar, and what leaves the service: sessions and venues as callers see them, and the payloads of
the events it publishes (contracts/scheduling.py)."""
from datetime import date

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from backbone.fields import Id, OneOf, Text, When
from backbone.paging import PageQuery
from contracts.common import AUDIENCE_GROUPS
from services.scheduling.rules import parts_problem


def Capacity(**kwargs):  # noqa: N802 (used like a field class)
    """Seats: a whole number from 1 to 5000 (a JSON number, not text)."""
    return fields.Int(strict=True, validate=validate.Range(min=1, max=5000), **kwargs)


class RoomIn(Schema):
    name = Text(100, required=True)
    capacity = Capacity(required=True)
    # What the room offers, e.g. "40 máy tính" for hands-on AI practice.
    equipment = fields.List(Text(100), load_default=list, validate=validate.Length(max=30))


class VenueIn(Schema):
    name = Text(200, required=True)
    address = Text(300, required=True)
    host_partner_id = Id(required=True)
    rooms = fields.List(fields.Nested(RoomIn), required=True, validate=validate.Length(min=1, max=200))

    @validates_schema
    def room_names_unique(self, data, **kwargs):
        names = [room["name"] for room in data["rooms"]]
        if len(names) != len(set(names)):
            raise ValidationError("Room names must be unique within a venue.", "rooms")


class Interval(Schema):
    # When() refuses a naive datetime: a time without an offset is ambiguous.
    starts_at = When(required=True)
    ends_at = When(required=True)

    @validates_schema
    def ends_after_start(self, data, **kwargs):
        if data["ends_at"] <= data["starts_at"]:
            raise ValidationError("Must be after starts_at.", "ends_at")


def Parts(**kwargs):  # noqa: N802
    """A session's parts (at most ten), each a span of its own."""
    return fields.List(fields.Nested(Interval), validate=validate.Length(max=10), **kwargs)


class _Timing(Interval):
    """When a session happens: its span, its parts (a full day with a lunch break is two parts;
    attendance is taken per part) and when registration closes (by default, at the start)."""
    registration_closes_at = When(allow_none=True)

    @validates_schema
    def parts_and_cut_off_fit(self, data, **kwargs):
        if data["ends_at"] <= data["starts_at"]:
            return  # already refused; nothing else can be judged against a backwards span
        problem = parts_problem(data["starts_at"], data["ends_at"], data.get("parts") or [])
        if problem:
            raise ValidationError(problem, "parts")
        closes = data.get("registration_closes_at")
        if closes and closes > data["starts_at"]:
            raise ValidationError("Must not be after starts_at.", "registration_closes_at")


class SessionIn(_Timing):
    offering_id = Id(required=True)
    venue_id = Id(required=True)
    room = Text(100, required=True)
    trainer = Text(200, required=True)
    capacity = Capacity(required=True)
    eligible_units = fields.List(Id(), load_default=list, validate=validate.Length(max=500))
    audience_groups = fields.List(
        OneOf(AUDIENCE_GROUPS), required=True, validate=validate.Length(min=1, max=len(AUDIENCE_GROUPS)))
    parts = Parts(load_default=list)


class RescheduleIn(_Timing):
    # Without `room` the session keeps its room; without `parts` its parts move with its start (and
    # must still fit); without `registration_closes_at` the cut-off keeps its lead time.
    room = Text(100)
    parts = Parts()


class CapacityIn(Schema):
    capacity = Capacity(required=True)


class CancelIn(Schema):
    reason = Text(500, required=True)


class VenueQuery(PageQuery):
    """Venues, by name."""


class FeedQuery(Schema):
    """The query of a calendar feed (`.ics`): its read-only token, for calendar apps, which cannot send
    an Authorization header. Only a feed token goes here (401 for an API key or the operator token);
    without one, the Authorization header decides as on every route."""
    token = fields.Str(metadata={"description": "The feed's own token, as in the calendar_url of the partner, "
                                                "venue or session (`feed_...`)."})


class SessionQuery(PageQuery):
    """The programme calendar's filters, from the query string."""
    # A calendar month in Ho Chi Minh City time: sessions that take place (at least partly) in it.
    # The programme's calendar spans this century; a year outside it is no month anyone plans.
    month = fields.Str(validate=validate.Regexp(r"^20\d\d-(0[1-9]|1[0-2])$", error="Use YYYY-MM (2000-2099)."))
    # Sessions an official of this unit may attend: those naming it, and those open to every unit.
    unit = Id()
    partner_id = Id()
    venue_id = Id()
    status = OneOf(("scheduled", "cancelled"))


# -- what leaves the service --------------------------------------------------------------------------

def public_session(doc):
    return {k: doc.get(k) for k in (
        "id", "offering_id", "partner_id", "title", "venue_id", "venue_name", "address", "room", "trainer",
        "starts_at", "ends_at", "parts", "capacity", "eligible_units", "audience_groups",
        "registration_closes_at", "status", "cancel_reason", "cancelled_at")}


def public_venue(doc):
    return {k: doc.get(k) for k in ("id", "name", "address", "host_partner_id", "rooms")}


def scheduled_payload(session):
    """The session as session_scheduled carries it (not its trainer: no consumer needs a person's name)."""
    payload = {k: session[k] for k in (
        "offering_id", "partner_id", "title", "venue_id", "venue_name", "address", "room",
        "starts_at", "ends_at", "parts", "capacity", "eligible_units", "audience_groups",
        "registration_closes_at")}
    payload["session_id"] = session["id"]
    payload["revision"] = session.get("revision")
    return payload


def rescheduled_payload(session, previous):
    """session_rescheduled: the session as it is now, and where and when it was."""
    return dict(scheduled_payload(session), previous_starts_at=previous["starts_at"],
                previous_ends_at=previous["ends_at"], previous_room=previous["room"])


def capacity_changed_payload(session, previous):
    return {"session_id": session["id"], "capacity": session["capacity"],
            "previous_capacity": previous["capacity"], "revision": session.get("revision")}


def cancelled_payload(session, reason, cause):
    return {"session_id": session["id"], "offering_id": session["offering_id"],
            "partner_id": session["partner_id"], "starts_at": session["starts_at"], "reason": reason,
            "cause": cause}


def ending_payload(agreement, threshold, today, offerings, sessions, renewal):
    """agreement_ending: the agreement (our copy), how far its last day is, what it carries and what
    falls after its end, and the agreement that follows it."""
    last = date.fromisoformat(agreement["last_day"])
    return {
        "agreement_id": agreement["_id"], "partner_id": agreement["partner_id"], "title": agreement["title"],
        "valid_from": agreement.get("valid_from"), "last_day": agreement["last_day"],
        "days_left": (last - today).days, "threshold": threshold,
        "offerings": [{"offering_id": o["_id"], "title": o["title"], "starts_from": o["starts_from"],
                       "ends_by": o["ends_by"], "runs_past_end": o["ends_by"] > agreement["last_day"]}
                      for o in offerings],
        "sessions_after_end": [{"session_id": s["_id"], "offering_id": s["offering_id"], "title": s["title"],
                                "venue_name": s["venue_name"], "starts_at": s["starts_at"], "ends_at": s["ends_at"]}
                               for s in sessions],
        "renewal": {"agreement_id": renewal["_id"], "title": renewal["title"],
                    "valid_until": renewal["last_day"]} if renewal else None,
    }


def public_ending(agreement, today, warned, renewal):
    """An agreement about to end as the console lists it."""
    return {"agreement_id": agreement["_id"], "partner_id": agreement["partner_id"], "title": agreement["title"],
            "last_day": agreement["last_day"],
            "days_left": (date.fromisoformat(agreement["last_day"]) - today).days,
            "warned": sorted(warned, reverse=True),
            "renewal_id": renewal["_id"] if renewal else None}


class EndingQuery(Schema):
    """Agreements whose last day is at most this many local days away (not ended)."""
    within_days = fields.Int(load_default=60, validate=validate.Range(min=0, max=366))


# Documented at GET /openapi.json; the gateway's routes name them.
BODIES = {"VenueIn": VenueIn, "SessionIn": SessionIn, "RescheduleIn": RescheduleIn, "CapacityIn": CapacityIn,
          "CancelIn": CancelIn}
QUERIES = {"VenueQuery": VenueQuery, "SessionQuery": SessionQuery, "FeedQuery": FeedQuery}
