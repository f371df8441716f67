"""The event contracts: one envelope for every event, and a marshmallow schema per event type and
version. Producers validate before the event is written to their outbox; consumers validate again on
receipt and dead-letter what does not fit. Both import this module: it is the only code services share."""
import uuid
from datetime import date, datetime, timezone

from marshmallow import Schema, ValidationError, fields, validate

AUDIENCE_GROUPS = ("ward_commune", "district", "department", "leader")

_SCHEMAS = {}


def event(type_, version=1):
    """Register a payload schema as the contract of (type, version)."""

    def register(schema_cls):
        _SCHEMAS[(type_, version)] = schema_cls
        schema_cls.event_type = type_
        schema_cls.event_version = version
        return schema_cls

    return register


def known_types():
    return sorted({type_ for type_, _ in _SCHEMAS})


def schema_for(type_, version=1):
    """The contract's schema, one instance per contract, reused: marshmallow schemas keep nothing
    between loads, and making one (with its nested schemas) costs three times loading an event."""
    try:
        return _INSTANCES[(type_, version)]
    except KeyError:
        pass
    try:
        schema = _SCHEMAS[(type_, version)]()
    except KeyError:
        raise ValidationError({"type": ["No contract for event {} v{}.".format(type_, version)]})
    return _INSTANCES.setdefault((type_, version), schema)


_INSTANCES = {}


class Envelope(Schema):
    event_id = fields.Str(required=True, validate=validate.Length(min=1, max=64))
    type = fields.Str(required=True, validate=validate.Length(min=1, max=64))
    version = fields.Int(required=True, strict=True)
    occurred_at = fields.AwareDateTime(required=True)
    producer = fields.Str(required=True)
    correlation_id = fields.Str(required=True)
    payload = fields.Dict(required=True)


_ENVELOPE = Envelope()


def make_envelope(type_, payload, producer, correlation_id, version=1):
    """A new event, its payload checked against the contract and stored in its JSON form."""
    schema = schema_for(type_, version)
    checked = schema.dump(schema.load(plain(payload)))
    return {
        "event_id": uuid.uuid4().hex,
        "type": type_,
        "version": version,
        "occurred_at": datetime.now(timezone.utc).isoformat(),
        "producer": producer,
        "correlation_id": correlation_id,
        "payload": checked,
    }


def plain(value):
    """Producers may pass datetimes and dates; the contract is checked on their JSON form."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def read_envelope(data):
    """Validate a received envelope and its payload. Returns (envelope, payload) with the payload
    loaded (datetimes as aware datetimes). Raises ValidationError naming what is wrong."""
    envelope = _ENVELOPE.load(data)
    payload = schema_for(envelope["type"], envelope["version"]).load(envelope["payload"])
    return envelope, payload


# -- shared pieces ---------------------------------------------------------------------------------

Id = lambda **kw: fields.Str(validate=validate.Length(min=1, max=64), **kw)  # noqa: E731
When = lambda **kw: fields.AwareDateTime(format="iso", **kw)  # noqa: E731


class Audience(fields.List):
    def __init__(self, **kwargs):
        super().__init__(fields.Str(validate=validate.OneOf(AUDIENCE_GROUPS)), **kwargs)


class Module(Schema):
    title = fields.Str(required=True)
    hours = fields.Float(required=True)


class OfficialRef(Schema):
    """What notifications need to reach an official, carried in the event so nobody reads another's data."""
    id = Id(required=True)
    full_name = fields.Str(required=True)
    email = fields.Str(allow_none=True)
    phone = fields.Str(allow_none=True)
    language = fields.Str(load_default="vi")


class SessionPart(Schema):
    starts_at = When(required=True)
    ends_at = When(required=True)


class SessionRef(Schema):
    id = Id(required=True)
    title = fields.Str(required=True)
    venue_name = fields.Str(required=True)
    address = fields.Str(required=True)
    room = fields.Str(required=True)
    starts_at = When(required=True)
    ends_at = When(required=True)


# -- partners --------------------------------------------------------------------------------------

@event("partner_onboarded")
class PartnerOnboarded(Schema):
    partner_id = Id(required=True)
    code = fields.Str(required=True)
    name = fields.Str(required=True)
    kind = fields.Str(required=True)
    contact_email = fields.Str(allow_none=True)


class _Agreement(Schema):
    agreement_id = Id(required=True)
    partner_id = Id(required=True)
    title = fields.Str(required=True)
    valid_from = fields.Date(required=True)
    valid_until = fields.Date(required=True)
    scope = fields.List(fields.Str(), load_default=list)


@event("agreement_signed")
class AgreementSigned(_Agreement):
    signed_on = fields.Date(required=True)


@event("agreement_amended")
class AgreementAmended(_Agreement):
    reason = fields.Str(allow_none=True)
    # The validity before the amendment: a consumer can tell an extension from a shortening.
    previous_valid_from = fields.Date(allow_none=True, load_default=None)
    previous_valid_until = fields.Date(allow_none=True, load_default=None)


@event("agreement_terminated")
class AgreementTerminated(_Agreement):
    terminated_on = fields.Date(required=True)
    reason = fields.Str(allow_none=True)


@event("agreement_expired")
class AgreementExpired(_Agreement):
    pass


class _Offering(Schema):
    offering_id = Id(required=True)
    partner_id = Id(required=True)
    # The agreement that covers it: when that agreement ends, the offering's future sessions end too.
    agreement_id = Id(allow_none=True, load_default=None)
    title = fields.Str(required=True)
    title_en = fields.Str(allow_none=True)
    audience_groups = Audience(required=True)
    modules = fields.List(fields.Nested(Module), load_default=list)
    starts_from = fields.Date(required=True)
    ends_by = fields.Date(required=True)


@event("offering_published")
class OfferingPublished(_Offering):
    pass


@event("offering_updated")
class OfferingUpdated(_Offering):
    pass


@event("offering_withdrawn")
class OfferingWithdrawn(Schema):
    offering_id = Id(required=True)
    partner_id = Id(required=True)
    reason = fields.Str(allow_none=True)


# -- scheduling ------------------------------------------------------------------------------------

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


@event("session_scheduled")
class SessionScheduled(_Session):
    pass


@event("session_rescheduled")
class SessionRescheduled(_Session):
    previous_starts_at = When(allow_none=True)
    previous_ends_at = When(allow_none=True)
    previous_room = fields.Str(allow_none=True)


@event("session_capacity_changed")
class SessionCapacityChanged(Schema):
    session_id = Id(required=True)
    capacity = fields.Int(required=True)
    previous_capacity = fields.Int(allow_none=True)


@event("session_cancelled")
class SessionCancelled(Schema):
    session_id = Id(required=True)
    offering_id = Id(required=True)
    reason = fields.Str(required=True)
    # Who or what cancelled it: `cancelled` (a person, with a reason), `offering_withdrawn`,
    # `agreement_expired` or `agreement_terminated`.
    cause = fields.Str(allow_none=True)
    partner_id = Id(allow_none=True)
    starts_at = When(allow_none=True)


# -- registration ----------------------------------------------------------------------------------

class _Registration(Schema):
    registration_id = Id(required=True)
    session = fields.Nested(SessionRef, required=True)
    official = fields.Nested(OfficialRef, required=True)


@event("registration_confirmed")
class RegistrationConfirmed(_Registration):
    qr_token = fields.Str(required=True)


@event("registration_waitlisted")
class RegistrationWaitlisted(_Registration):
    waitlist_position = fields.Int(required=True)


@event("registration_promoted")
class RegistrationPromoted(_Registration):
    qr_token = fields.Str(required=True)


@event("registration_cancelled")
class RegistrationCancelled(_Registration):
    reason = fields.Str(allow_none=True)
    # who or what ended it: the official (or their unit), an operator, or the session's cancellation.
    cause = fields.Str(load_default="official",
                       validate=validate.OneOf(("official", "operator", "session_cancelled")))


@event("registration_rescheduled")
class RegistrationRescheduled(_Registration):
    """Per registration of a rescheduled session, so each official can be told (`session` is the new time)."""
    status = fields.Str(required=True, validate=validate.OneOf(("confirmed", "waitlisted")))
    previous_starts_at = When(allow_none=True)
    previous_ends_at = When(allow_none=True)


@event("attendance_recorded")
class AttendanceRecorded(Schema):
    registration_id = Id(required=True)
    session_id = Id(required=True)
    official_id = Id(required=True)
    part = fields.Int(required=True)
    checked_in_at = When(required=True)


@event("course_completed")
class CourseCompleted(_Registration):
    certificate_code = fields.Str(required=True)
    certificate_url = fields.Str(required=True)


@event("units_merged")
class UnitsMerged(Schema):
    from_codes = fields.List(fields.Str(), required=True, validate=validate.Length(min=1))
    into_code = fields.Str(required=True)
    into_name = fields.Str(required=True)


# -- notifications ---------------------------------------------------------------------------------

class _Notice(Schema):
    # Longer than an Id: a notice id is "<source event id>:<channel>:<hash>", and a reminder's source
    # event id is "reminder:<registration id>:<start time>".
    notice_id = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    source_event_id = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    channel = fields.Str(required=True, validate=validate.OneOf(("email", "sms")))
    template = fields.Str(required=True)
    # Whom it was for (one of the two); never the address itself.
    official_id = Id(load_default=None, allow_none=True)
    partner_id = Id(load_default=None, allow_none=True)


@event("notification_sent")
class NotificationSent(_Notice):
    pass


@event("notification_failed")
class NotificationFailed(_Notice):
    error = fields.Str(required=True)
