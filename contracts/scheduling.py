"""What scheduling publishes: sessions scheduled, rescheduled, resized and cancelled, and agreements
about to end. Consumers: registration (its copy of each session, with the seat counters),
notifications (the warnings to partner and operators). No personal data: a session's trainer (a
person's name) stays in scheduling, as no consumer needs it.

State-carrying (each with the session's `revision`; a consumer ignores one older than what it applied):
session_scheduled, session_rescheduled (the session's time and place), session_capacity_changed (its
seats). Facts: session_cancelled (final: a cancelled session never changes again), agreement_ending."""
from marshmallow import Schema, fields

from backbone.events import Revision, contract
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
    # No consumer reads it: scheduling no longer sends it (a person's name); optional so that events
    # written before still load.
    trainer = fields.Str(allow_none=True, metadata={
        "personal": "none: no consumer reads it, and scheduling no longer sends it."})
    starts_at = When(required=True)
    ends_at = When(required=True)
    parts = fields.List(fields.Nested(SessionPart), load_default=list)
    capacity = fields.Int(required=True)
    eligible_units = fields.List(fields.Str(), load_default=list)
    audience_groups = Audience(required=True)
    registration_closes_at = When(allow_none=True)
    # The session's version after this change: reschedules and resizes count it up, so a consumer
    # tells an older time or capacity, retried or redelivered, from the newer one it already has.
    revision = Revision()


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
    revision = Revision()


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


class EndingOffering(Schema):
    offering_id = Id(required=True)
    title = fields.Str(required=True)
    starts_from = fields.Date(required=True)
    ends_by = fields.Date(required=True)
    # Its window goes past the agreement's last day (the agreement was shortened, or ends early).
    runs_past_end = fields.Bool(required=True)


class EndingSession(Schema):
    session_id = Id(required=True)
    offering_id = Id(required=True)
    title = fields.Str(required=True)
    venue_name = fields.Str(required=True)
    starts_at = When(required=True)
    ends_at = When(required=True)


class Renewal(Schema):
    agreement_id = Id(required=True)
    title = fields.Str(required=True)
    valid_until = fields.Date(required=True)


@contract("agreement_ending")
class AgreementEnding(Schema):
    """An agreement's last day is `days_left` local days away: the warning of `threshold` (60, 30 or
    7 days), once per agreement, end and threshold. `offerings`: those it carries whose window has
    not ended; `sessions_after_end`: their sessions that start after its last day, cancelled when it
    ends unless another agreement takes the offering on; `renewal`: the partner's agreement that
    follows it without a gap, if any."""
    agreement_id = Id(required=True)
    partner_id = Id(required=True)
    title = fields.Str(required=True)
    valid_from = fields.Date(allow_none=True)
    last_day = fields.Date(required=True)
    days_left = fields.Int(required=True)
    threshold = fields.Int(required=True)
    offerings = fields.List(fields.Nested(EndingOffering), load_default=list)
    sessions_after_end = fields.List(fields.Nested(EndingSession), load_default=list)
    renewal = fields.Nested(Renewal, allow_none=True, load_default=None)
