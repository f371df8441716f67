"""What operators and partners send to lay out venues and sessions."""
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from backbone.contracts import AUDIENCE_GROUPS

Text = lambda n, **kw: fields.Str(validate=validate.Length(min=1, max=n), **kw)  # noqa: E731


class RoomIn(Schema):
    name = Text(100, required=True)
    capacity = fields.Int(required=True, strict=True, validate=validate.Range(min=1, max=5000))
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


class Interval(Schema):
    # AwareDateTime refuses a naive datetime: a time without an offset is ambiguous.
    starts_at = fields.AwareDateTime(required=True)
    ends_at = fields.AwareDateTime(required=True)

    @validates_schema
    def ends_after_start(self, data, **kwargs):
        if data["ends_at"] <= data["starts_at"]:
            raise ValidationError("Must be after starts_at.", "ends_at")


class SessionIn(Interval):
    offering_id = Text(64, required=True)
    venue_id = Text(64, required=True)
    room = Text(100, required=True)
    trainer = Text(200, required=True)
    capacity = fields.Int(required=True, strict=True, validate=validate.Range(min=1, max=5000))
    eligible_units = fields.List(Text(64), load_default=list, validate=validate.Length(max=500))
    audience_groups = fields.List(
        fields.Str(validate=validate.OneOf(AUDIENCE_GROUPS)), required=True,
        validate=validate.Length(min=1, max=len(AUDIENCE_GROUPS)))
    # A full day with a lunch break is two parts; attendance is taken per part.
    parts = fields.List(fields.Nested(Interval), load_default=list, validate=validate.Length(max=10))
    registration_closes_at = fields.AwareDateTime(allow_none=True)
