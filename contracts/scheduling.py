"""What scheduling publishes: sessions scheduled, rescheduled, resized and cancelled. Consumer:
registration (its copy of each session, with the seat counters). No personal data."""
from marshmallow import Schema, fields

from backbone.events import contract
from backbone.fields import Id, When
from contracts.common import Audience


class SessionPart(Schema):
    starts_at = When(required=True)
    ends_at = When(required=True)


class _Session(Schema):
    session_id = Id(required=True)
    offering_id = Id(required=True)
    partner_id = Id(required=True)
    title = fields.Str(required=True)
    venue_id = Id(required=True)
    venue_name = fields.Str(required=True)
    address = fields.Str(required=True)
    room = fields.Str(required=True)
    trainer = fields.Str(required=True)
    starts_at = When(required=True)
    ends_at = When(required=True)
    parts = fields.List(fields.Nested(SessionPart), load_default=list)
    capacity = fields.Int(required=True)
    eligible_units = fields.List(fields.Str(), load_default=list)
    audience_groups = Audience(required=True)
    registration_closes_at = When(allow_none=True)


@contract("session_scheduled")
class SessionScheduled(_Session):
    pass


@contract("session_rescheduled")
class SessionRescheduled(_Session):
    previous_starts_at = When(allow_none=True)
    previous_ends_at = When(allow_none=True)
    previous_room = fields.Str(allow_none=True)


@contract("session_capacity_changed")
class SessionCapacityChanged(Schema):
    session_id = Id(required=True)
    capacity = fields.Int(required=True)
    previous_capacity = fields.Int(allow_none=True)


@contract("session_cancelled")
class SessionCancelled(Schema):
    session_id = Id(required=True)
    offering_id = Id(required=True)
    reason = fields.Str(required=True)
    # Who or what cancelled it: `cancelled` (a person, with a reason), `offering_withdrawn`,
    # `agreement_expired` or `agreement_terminated`.
    cause = fields.Str(allow_none=True)
    partner_id = Id(allow_none=True)
    starts_at = When(allow_none=True)
