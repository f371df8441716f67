"""What operators and partners send to lay out venues and sessions, and the filters of the programme
calendar."""
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from contracts.common import AUDIENCE_GROUPS

Text = lambda n, **kw: fields.Str(validate=validate.Length(min=1, max=n), **kw)  # noqa: E731
Capacity = lambda **kw: fields.Int(strict=True, validate=validate.Range(min=1, max=5000), **kw)  # noqa: E731


class RoomIn(Schema):
    name = Text(100, required=True)
    capacity = Capacity(required=True)
    # What the room offers, e.g. "40 máy tính" for hands-on AI practice.
    equipment = fields.List(Text(100), load_default=list, validate=validate.Length(max=30))


class VenueIn(Schema):
    name = Text(200, required=True)
    address = Text(300, required=True)
    host_partner_id = Text(64, required=True)
    rooms = fields.List(fields.Nested(RoomIn), required=True, validate=validate.Length(min=1, max=200))

    @validates_schema
    def room_names_unique(self, data, **kwargs):
        names = [room["name"] for room in data["rooms"]]
        if len(names) != len(set(names)):
            raise ValidationError("Room names must be unique within a venue.", "rooms")


def parts_problem(starts_at, ends_at, parts):
    """Why `parts` do not fit a session from `starts_at` to `ends_at`, or None. Each part lies within
    the session and no two overlap (one may end as the next begins)."""
    ordered = sorted(parts, key=lambda part: part["starts_at"])
    if any(part["starts_at"] < starts_at or part["ends_at"] > ends_at for part in ordered):
        return "Each part must lie within starts_at and ends_at."
    if any(later["starts_at"] < earlier["ends_at"] for earlier, later in zip(ordered, ordered[1:])):
        return "Parts must not overlap."
    return None


class Interval(Schema):
    # AwareDateTime refuses a naive datetime: a time without an offset is ambiguous.
    starts_at = fields.AwareDateTime(required=True)
    ends_at = fields.AwareDateTime(required=True)

    @validates_schema
    def ends_after_start(self, data, **kwargs):
        if data["ends_at"] <= data["starts_at"]:
            raise ValidationError("Must be after starts_at.", "ends_at")


class _Timing(Interval):
    """When a session happens: its span, its parts (a full day with a lunch break is two parts;
    attendance is taken per part) and when registration closes (by default, at the start)."""
    registration_closes_at = fields.AwareDateTime(allow_none=True)

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


Parts = lambda **kw: fields.List(fields.Nested(Interval), validate=validate.Length(max=10), **kw)  # noqa: E731


class SessionIn(_Timing):
    offering_id = Text(64, required=True)
    venue_id = Text(64, required=True)
    room = Text(100, required=True)
    trainer = Text(200, required=True)
    capacity = Capacity(required=True)
    eligible_units = fields.List(Text(64), load_default=list, validate=validate.Length(max=500))
    audience_groups = fields.List(
        fields.Str(validate=validate.OneOf(AUDIENCE_GROUPS)), required=True,
        validate=validate.Length(min=1, max=len(AUDIENCE_GROUPS)))
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


class Page(Schema):
    limit = fields.Int(load_default=100, validate=validate.Range(min=1, max=500))
    cursor = Text(500)


class SessionQuery(Page):
    """The programme calendar's filters, from the query string."""
    # A calendar month in Ho Chi Minh City time: sessions that take place (at least partly) in it.
    month = fields.Str(validate=validate.Regexp(r"^\d{4}-(0[1-9]|1[0-2])$", error="Use YYYY-MM."))
    # Sessions an official of this unit may attend: those naming it, and those open to every unit.
    unit = Text(64)
    partner_id = Text(64)
    venue_id = Text(64)
    status = fields.Str(validate=validate.OneOf(("scheduled", "cancelled")))


# Documented at GET /openapi.json; the gateway's routes name them.
BODIES = {"VenueIn": VenueIn, "SessionIn": SessionIn, "RescheduleIn": RescheduleIn, "CapacityIn": CapacityIn,
          "CancelIn": CancelIn}
QUERIES = {"VenueQuery": Page, "SessionQuery": SessionQuery}
